# ruff: noqa: E501  (the grid keeps the 13 columns of PS3.8 Table 9-10 on one line per event)
"""PS3.8 Table 9-10, cell by cell, against dicomnet.core.ul.

The grid below is the standard's table in its own shape: one row per event
(Evt1-Evt19), one column per state (Sta1-Sta13), each cell the action the
standard names there or "" where the event cannot happen. The first tests
compare it with ``ul.TRANSITIONS``; the last one drives a real
:class:`~dicomnet.core.ul.Connection` into every state by real event sequences,
fires every event there and checks what the action named in the grid must do
(PS3.8 Tables 9-6 to 9-9): the next state, the bytes sent, the user event,
ARTIM and the transport close.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from dicomnet.core import ul
from dicomnet.core.codec import encode_pdu
from dicomnet.core.pdu import (
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    PresentationContextAC,
    PresentationContextRQ,
)
from dicomnet.core.ul import Evt, Role, State
from dicomnet.errors import LocalProtocolError

# fmt: off
#                Sta1    Sta2    Sta3    Sta4    Sta5    Sta6    Sta7    Sta8    Sta9    Sta10    Sta11   Sta12   Sta13
TABLE_9_10 = {
    "Evt1":  ("AE-1", "",     "",     "",     "",     "",     "",     "",     "",     "",      "",     "",     ""),
    "Evt2":  ("",     "",     "",     "AE-2", "",     "",     "",     "",     "",     "",      "",     "",     ""),
    "Evt3":  ("",     "AA-1", "AA-8", "",     "AE-3", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    "Evt4":  ("",     "AA-1", "AA-8", "",     "AE-4", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    "Evt5":  ("AE-5", "",     "",     "",     "",     "",     "",     "",     "",     "",      "",     "",     ""),
    "Evt6":  ("",     "AE-6", "AA-8", "",     "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-7"),
    "Evt7":  ("",     "",     "AE-7", "",     "",     "",     "",     "",     "",     "",      "",     "",     ""),
    "Evt8":  ("",     "",     "AE-8", "",     "",     "",     "",     "",     "",     "",      "",     "",     ""),
    "Evt9":  ("",     "",     "",     "",     "",     "DT-1", "",     "AR-7", "",     "",      "",     "",     ""),
    "Evt10": ("",     "AA-1", "AA-8", "",     "AA-8", "DT-2", "AR-6", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    "Evt11": ("",     "",     "",     "",     "",     "AR-1", "",     "",     "",     "",      "",     "",     ""),
    "Evt12": ("",     "AA-1", "AA-8", "",     "AA-8", "AR-2", "AR-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-6"),
    "Evt13": ("",     "AA-1", "AA-8", "",     "AA-8", "AA-8", "AR-3", "AA-8", "AA-8", "AR-10", "AR-3", "AA-8", "AA-6"),
    "Evt14": ("",     "",     "",     "",     "",     "",     "",     "AR-4", "AR-9", "",      "",     "AR-4", ""),
    "Evt15": ("",     "",     "AA-1", "AA-2", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1", "AA-1",  "AA-1", "AA-1", ""),
    "Evt16": ("",     "AA-2", "AA-3", "",     "AA-3", "AA-3", "AA-3", "AA-3", "AA-3", "AA-3",  "AA-3", "AA-3", "AA-2"),
    "Evt17": ("",     "AA-5", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4", "AA-4",  "AA-4", "AA-4", "AR-5"),
    "Evt18": ("",     "AA-2", "",     "",     "",     "",     "",     "",     "",     "",      "",     "",     "AA-2"),
    "Evt19": ("",     "AA-1", "AA-8", "",     "AA-8", "AA-8", "AA-8", "AA-8", "AA-8", "AA-8",  "AA-8", "AA-8", "AA-7"),
}
# fmt: on

NEXT_STATE = {
    # PS3.8 Table 9-6
    "AE-1": 4, "AE-2": 5, "AE-3": 6, "AE-4": 1, "AE-5": 2,
    "AE-6": 3,  # dicomnet: the user decides acceptance, so AE-6 always goes to Sta3
    "AE-7": 6, "AE-8": 13,
    # Table 9-7
    "DT-1": 6, "DT-2": 6,
    # Table 9-8
    "AR-1": 7, "AR-2": 8, "AR-3": 1, "AR-4": 13, "AR-5": 1, "AR-6": 7, "AR-7": 8,
    "AR-8": None,  # Sta9 for the association-requestor, Sta10 for the acceptor
    "AR-9": 11, "AR-10": 12,
    # Table 9-9
    "AA-1": 13, "AA-2": 1, "AA-3": 1, "AA-4": 1, "AA-5": 1, "AA-6": 13, "AA-7": 13, "AA-8": 13,
}  # fmt: skip

CELLS = [
    (State(column), Evt(int(name[3:])), action)
    for name, row in TABLE_9_10.items()
    for column, action in enumerate(row, start=1)
]


def cell_id(cell: tuple[State, Evt, str]) -> str:
    state, event, action = cell
    return f"Sta{state.value}-Evt{event.value}-{action or 'none'}"


# -- the table as data --------------------------------------------------------------------


def test_grid_has_the_standard_shape() -> None:
    assert list(TABLE_9_10) == [f"Evt{n}" for n in range(1, 20)]
    assert all(len(row) == 13 for row in TABLE_9_10.values())
    assert sum(1 for _, _, action in CELLS if action) == 123


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_transitions_match_the_grid(cell: tuple[State, Evt, str]) -> None:
    state, event, action = cell
    if not action:
        assert (state, event) not in ul.TRANSITIONS
        return
    function, next_state = ul.TRANSITIONS[(state, event)]
    assert function.__name__ == action.replace("-", "_")
    assert function is getattr(ul, action.replace("-", "_"))
    expected = NEXT_STATE[action]
    assert next_state == (None if expected is None else State(expected))


def test_transitions_hold_no_cell_outside_the_grid() -> None:
    in_grid = {(state, event) for state, event, action in CELLS if action}
    assert set(ul.TRANSITIONS) == in_grid


def test_every_action_of_tables_9_6_to_9_9_is_named_after_the_standard() -> None:
    for name, state in NEXT_STATE.items():
        action = getattr(ul, name.replace("-", "_"))
        assert ul.NEXT_STATE[action] == (None if state is None else State(state))
        assert action.__doc__ and f"PS3.8 {name}" in action.__doc__
    assert len(ul.NEXT_STATE) == len(NEXT_STATE) == 28


def test_state_and_event_enumerations() -> None:
    assert [s.value for s in State] == list(range(1, 14))
    assert [e.value for e in Evt] == list(range(1, 20))
    assert State.STA13.description.startswith("awaiting transport connection close")
    assert Evt.EVT19.description == "unrecognized or invalid PDU received"


def test_derived_state_sets() -> None:
    assert {s.value for s in ul.ABORTABLE_STATES} == set(range(3, 13))
    assert {s.value for s in ul.RELEASE_RESPONSE_STATES} == {8, 9, 12}
    assert {s.value for s in ul.ESTABLISHED_STATES} == set(range(6, 13))


# -- every cell, driven through a real Connection -------------------------------------------

RQ = AssociateRQ(
    "ACCEPTOR",
    "REQUESTOR",
    (PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),),
)
AC = AssociateAC("ACCEPTOR", "REQUESTOR", (PresentationContextAC(1, 0, "1.2.840.10008.1.2"),))
RJ = AssociateRJ(1, 1, 1)
RQ_BYTES = encode_pdu(RQ)
AC_BYTES = encode_pdu(AC)
RJ_BYTES = bytes.fromhex("03 00 00000004 00 01 01 01")
PDATA_BYTES = bytes.fromhex("04 00 00000008 00000004 01 03 ABCD")
RELEASE_RQ = bytes.fromhex("05 00 00000004 00000000")
RELEASE_RP = bytes.fromhex("06 00 00000004 00000000")
PEER_ABORT = bytes.fromhex("07 00 00000004 00 00 02 06")
UNKNOWN_PDU = bytes.fromhex("08 00 00000000")


def abort_bytes(source: int, reason: int) -> bytes:
    return bytes.fromhex("07 00 00000004 00 00") + bytes([source, reason])


STATE_ROLES = {
    1: {Role.REQUESTOR, Role.ACCEPTOR},
    2: {Role.ACCEPTOR},
    3: {Role.ACCEPTOR},
    4: {Role.REQUESTOR},
    5: {Role.REQUESTOR},
    6: {Role.REQUESTOR, Role.ACCEPTOR},
    7: {Role.REQUESTOR, Role.ACCEPTOR},
    8: {Role.REQUESTOR, Role.ACCEPTOR},
    9: {Role.REQUESTOR},
    10: {Role.ACCEPTOR},
    11: {Role.REQUESTOR},
    12: {Role.ACCEPTOR},
    13: {Role.REQUESTOR, Role.ACCEPTOR},
}
"""Which role can be in each state (Sta9/Sta11 requestor, Sta10/Sta12 acceptor)."""

EVENT_ROLES = {1: {Role.REQUESTOR}, 2: {Role.REQUESTOR}, 5: {Role.ACCEPTOR}}
"""Evt1 and Evt2 exist for the requestor only, Evt5 for the acceptor only."""

LOCAL_EVENTS = {1, 2, 5, 7, 8, 9, 11, 14, 15}
PEER_EVENTS = {3, 4, 6, 10, 12, 13, 16, 19}


def peer(conn: ul.Connection, data: bytes) -> ul.Event | None:
    conn.receive_data(data)
    return conn.next_event()


def reach(state: int, role: Role) -> ul.Connection:
    """A connection brought into ``state`` by real events, with its outputs drained."""
    conn = ul.Connection(role)
    requestor = role is Role.REQUESTOR
    steps: list[Callable[[], object]] = []
    if state == 1:
        pass
    elif state in (2, 3) or (state >= 6 and not requestor):
        steps += [conn.connection_made]
        if state != 2:
            steps += [lambda: peer(conn, RQ_BYTES)]
        if state >= 6:
            steps += [lambda: conn.accept(AC)]
    else:
        steps += [lambda: conn.request_association(RQ)]
        if state != 4:
            steps += [conn.connection_made]
        if state >= 6:
            steps += [lambda: peer(conn, AC_BYTES)]
    if state in (7, 9, 10, 11, 12):
        steps += [conn.release]
    if state == 8:
        steps += [lambda: peer(conn, RELEASE_RQ)]
    if state in (9, 10, 11, 12):
        steps += [lambda: peer(conn, RELEASE_RQ)]  # release collision
    if state == 11:
        steps += [conn.release_response]
    if state == 12:
        steps += [lambda: peer(conn, RELEASE_RP)]
    if state == 13:
        steps += [conn.abort]
    for step in steps:
        step()
    assert conn.state == State(state)
    conn.data_to_send()
    assert conn.next_event() is None
    return conn


def fire(conn: ul.Connection, event: int) -> ul.Event | None:
    """Produce ``event`` through the Connection's public inputs."""
    local: dict[int, Callable[[], None]] = {
        1: lambda: conn.request_association(RQ),
        2: conn.connection_made,
        5: conn.connection_made,
        7: lambda: conn.accept(AC),
        8: lambda: conn.reject(RJ),
        9: lambda: conn.send_pdata([PDATA_BYTES]),
        11: conn.release,
        14: conn.release_response,
        15: conn.abort,
        17: conn.connection_lost,
        18: conn.artim_expired,
    }
    received = {
        3: AC_BYTES,
        4: RJ_BYTES,
        6: RQ_BYTES,
        10: PDATA_BYTES,
        12: RELEASE_RQ,
        13: RELEASE_RP,
        16: PEER_ABORT,
        19: UNKNOWN_PDU,
    }
    if event in received:
        return peer(conn, received[event])
    local[event]()
    return conn.next_event()


@dataclass(frozen=True)
class Outcome:
    state: State
    sent: list[bytes]
    event: object
    artim: bool
    close: bool


def expected(action: str, state: State, event: int, role: Role, before: Outcome) -> Outcome:
    """What the action of a cell must do, from PS3.8 Tables 9-6 to 9-9."""
    reason = 1 if event == 19 else 2  # unknown PDU type, else a valid PDU out of place
    pdata = ul.PDataReceived(memoryview(PDATA_BYTES[6:]))
    closed = ul.TransportClosed()
    s = State
    table: dict[str, tuple[State, list[bytes], object, bool, bool]] = {
        "AE-1": (s.STA4, [], None, False, False),
        "AE-2": (s.STA5, [RQ_BYTES], None, False, False),
        "AE-3": (s.STA6, [], ul.AssociateAccepted(AC), False, False),
        "AE-4": (s.STA1, [], ul.AssociateRejected(RJ), False, True),
        "AE-5": (s.STA2, [], None, True, False),
        "AE-6": (s.STA3, [], ul.AssociateRequested(RQ), False, False),
        "AE-7": (s.STA6, [AC_BYTES], None, False, False),
        "AE-8": (s.STA13, [RJ_BYTES], None, True, False),
        "DT-1": (s.STA6, [PDATA_BYTES], None, False, False),
        "DT-2": (s.STA6, [], pdata, False, False),
        "AR-1": (s.STA7, [RELEASE_RQ], None, False, False),
        "AR-2": (s.STA8, [], ul.ReleaseRequested(collision=False), False, False),
        "AR-3": (s.STA1, [], ul.ReleaseConfirmed(), False, True),
        "AR-4": (s.STA13, [RELEASE_RP], None, True, False),
        "AR-5": (s.STA1, [], closed, False, True),
        "AR-6": (s.STA7, [], pdata, False, False),
        "AR-7": (s.STA8, [PDATA_BYTES], None, False, False),
        "AR-8": (
            s.STA9 if role is Role.REQUESTOR else s.STA10,
            [],
            ul.ReleaseRequested(collision=True),
            False,
            False,
        ),
        "AR-9": (s.STA11, [RELEASE_RP], None, False, False),
        "AR-10": (s.STA12, [], ul.ReleaseConfirmed(), False, False),
        "AA-1": (s.STA13, [abort_bytes(0, 0)], None, True, False),
        "AA-2": (s.STA1, [], None, False, True),
        "AA-3": (s.STA1, [], ul.Aborted(2, 6, by_peer=True), False, True),
        "AA-4": (s.STA1, [], closed, False, True),
        "AA-5": (s.STA1, [], closed, False, True),
        "AA-6": (s.STA13, [], None, before.artim, False),
        "AA-7": (s.STA13, [abort_bytes(2, reason)], None, before.artim, False),
        "AA-8": (s.STA13, [abort_bytes(2, reason)], ul.Aborted(2, reason, False), True, False),
    }
    if not action:
        # An impossible event: a local primitive is refused, peer bytes in
        # Sta1/Sta4 are not read, a stale ARTIM expiry is ignored; nothing
        # changes, except that Evt17 always ends with TransportClosed.
        return Outcome(state, [], closed if event == 17 else None, before.artim, before.close)
    next_state, sent, user_event, artim, close = table[action]
    if event == 17:
        user_event = closed
    return Outcome(next_state, sent, user_event, artim, close)


def snapshot(conn: ul.Connection, event: object) -> Outcome:
    sent = [bytes(b) for b in conn.data_to_send()]
    return Outcome(conn.state, sent, event, conn.artim_running, conn.should_close)


CASES = [
    pytest.param(state, event, action, role, id=f"{cell_id((state, event, action))}-{role.value}")
    for state, event, action in CELLS
    for role in sorted(STATE_ROLES[state] & EVENT_ROLES.get(event, STATE_ROLES[state]), key=str)
]


@pytest.mark.parametrize(("state", "event", "action", "role"), CASES)
def test_every_cell_drives_its_action(state: State, event: Evt, action: str, role: Role) -> None:
    conn = reach(state, role)
    before = snapshot(conn, None)
    if not action and event in LOCAL_EVENTS:
        with pytest.raises(LocalProtocolError):
            fire(conn, event)
        assert snapshot(conn, conn.next_event()) == before
        return
    outcome = snapshot(conn, fire(conn, event))
    assert outcome == expected(action, state, event, role, before)
    if outcome.event is not None:  # one event per cell
        assert conn.next_event() is None


def test_cells_no_role_can_fire_are_empty() -> None:
    """Evt1/Evt2 in acceptor-only states and Evt5 in requestor-only states cannot happen."""
    unreachable = [
        (state, event, action)
        for state, event, action in CELLS
        if not STATE_ROLES[state] & EVENT_ROLES.get(event, STATE_ROLES[state])
    ]
    assert unreachable  # Sta2 x Evt1, Sta4 x Evt5, ...
    assert all(action == "" for _, _, action in unreachable)
    acceptor = reach(2, Role.ACCEPTOR)
    with pytest.raises(LocalProtocolError):
        acceptor.request_association(RQ)  # Evt1 is the requestor's primitive
    assert acceptor.state is State.STA2
    assert acceptor.data_to_send() == []


def test_every_cell_is_exercised() -> None:
    fired = {(case.values[0], case.values[1]) for case in CASES}
    missing = {(state, event) for state, event, _ in CELLS} - fired
    # only the cells that no role can produce are left out of the drive test
    assert all(
        not STATE_ROLES[state] & EVENT_ROLES.get(event, STATE_ROLES[state])
        for state, event in missing
    )
    assert {(s, e) for s, e, a in CELLS if a} <= fired
