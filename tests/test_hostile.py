"""Hostile and malformed input from a raw socket (docs/hostile-inputs.md).

Each case sends what a broken or hostile peer sends and asserts the answer:
the A-ABORT (source 2, service provider, once associated; source 0 in Sta2,
PS3.8 AA-1), the A-ASSOCIATE-RJ with its reason, or the failure status. The
harness (tests/hostile.py) then checks that the listener kept serving and
leaked nothing. Numbers in brackets refer to ../docs/hostile-inputs.md.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dicomnet.core.pdu import AssociateAC
from dicomnet.dataset.encoding import encode_dataset
from dicomnet.testing import RawPeer, raw
from hostile import (
    AE,
    CONTEXTS,
    CT,
    EXPLICIT,
    FIND,
    IMPLICIT,
    VERIFICATION,
    Harness,
    ct_bytes,
    echo,
    run,
    settle,
    status_of_response,
    under_attack,
)

from factory import ct_dataset, nested_sequences

Case = Callable[[Harness], Awaitable[None]]
CASES: dict[str, Case] = {}


TOLERATED: set[str] = set()
"""Inputs that are odd but valid, or that PS3.8 says to ignore: served, not logged."""


def case(function: Case) -> Case:
    """A hostile input: refused, and the refusal logged."""
    CASES[function.__name__] = function
    return function


def tolerated(function: Case) -> Case:
    TOLERATED.add(function.__name__)
    return case(function)


async def aborted_by_provider(peer: RawPeer, reason: int = 6) -> None:
    """A-ABORT (2, reason): 6 invalid parameter value, 2 unexpected PDU, 1 unrecognized PDU."""
    value = await peer.expect_abort()
    assert (value.source, value.reason) == (2, reason), value


async def aborted_before_association(peer: RawPeer) -> None:
    """PS3.8 AA-1 in Sta2: an A-ABORT of the service-user source (0), then close."""
    value = await peer.expect_abort()
    assert (value.source, value.reason) == (0, 0), value


def store_message(uid: str, data: bytes, context_id: int = 3, split: int = 0) -> bytes:
    """A whole C-STORE: the command, then the dataset cut in PDVs of ``split`` bytes
    (default 8000), packed into P-DATA-TFs within the listener's 16 KiB maximum."""
    command = raw.p_data(raw.pdv(context_id, 0x03, raw.c_store_rq(CT, uid)))
    size = split or 8000
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    pdus, group, used = [], [], 0
    for i, piece in enumerate(pieces):
        item = raw.pdv(context_id, 0x02 if i == len(pieces) - 1 else 0x00, piece)
        if used + len(item) > 16384:
            pdus.append(raw.p_data(*group))
            group, used = [], 0
        group.append(item)
        used += len(item)
    pdus.append(raw.p_data(*group))
    return command + b"".join(pdus)


def rq_body(*items: bytes, called: bytes = AE.encode(), version: int = 1) -> bytes:
    """The body of an A-ASSOCIATE-RQ built from raw items."""
    titles = called.ljust(16, b" ")[:16] + b"TESTING".ljust(16, b" ")
    return struct.pack(">HH", version, 0) + titles + bytes(32) + b"".join(items)


APP = raw.item(0x10, raw.APPLICATION_CONTEXT.encode())


# -- A. PDU framing -------------------------------------------------------------------------


@case
async def http_request_instead_of_a_pdu(h: Harness) -> None:  # [1]
    async with await h.peer() as peer:
        await peer.send(b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
        await aborted_before_association(peer)


@case
async def tls_client_hello_to_a_plain_port(h: Harness) -> None:  # [1]
    async with await h.peer() as peer:
        await peer.send(bytes.fromhex("160301020001") + bytes(40))
        await aborted_before_association(peer)


@case
async def unknown_pdu_type_when_associated(h: Harness) -> None:  # [2]
    async with await h.associated_peer() as peer:
        await peer.send(raw.pdu(0x08, b""))
        await aborted_by_provider(peer, reason=1)


@case
async def pdu_type_ff_when_associated(h: Harness) -> None:  # [2]
    async with await h.associated_peer() as peer:
        await peer.send(raw.pdu(0xFF, b"\0\0"))
        await aborted_by_provider(peer, reason=1)


@case
async def p_data_declaring_4_gib(h: Harness) -> None:  # [3] [5]
    async with await h.associated_peer() as peer:
        await peer.send(raw.pdu(0x04, bytes(10), length=0xFFFFFFFF))
        await aborted_by_provider(peer)


@case
async def p_data_length_with_the_top_bit_set(h: Harness) -> None:  # [5]
    async with await h.associated_peer() as peer:
        await peer.send(raw.pdu(0x04, bytes(10), length=0x80000000))
        await aborted_by_provider(peer)


@case
async def p_data_one_byte_past_our_maximum(h: Harness) -> None:  # [75]
    async with await h.associated_peer() as peer:
        fragment = bytes(16384 - 6 + 2)
        await peer.send(raw.p_data(raw.pdv(1, 0x00, fragment)))
        await aborted_by_provider(peer)


@case
async def associate_rq_declaring_64_mib(h: Harness) -> None:  # [4]
    async with await h.peer() as peer:
        await peer.send(raw.pdu(0x01, bytes(100), length=64 << 20))
        await aborted_before_association(peer)


@tolerated
async def request_trickled_one_byte_per_write(h: Harness) -> None:  # [6]
    async with await h.peer() as peer:
        await peer.trickle(raw.associate_rq(AE, contexts=CONTEXTS[:1]), delay=0.001)
        answer = await peer.read_pdu()
        assert answer is not None and isinstance(answer.decoded(), AssociateAC)
        await peer.trickle(echo(), delay=0.001)
        assert await status_of_response(peer) == 0x0000


@tolerated
async def several_pdus_in_one_segment(h: Harness) -> None:  # [7]
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq(AE, contexts=CONTEXTS[:1]) + echo() + raw.release_rq())
        received = await peer.read_until_closed()
        assert [p.pdu_type for p in received] == [0x02, 0x04, 0x06]


@tolerated
async def three_p_data_in_one_segment_within_the_window(h: Harness) -> None:  # [7]
    window = raw.item(0x53, struct.pack(">HH", 3, 3))  # asynchronous operations window
    async with await h.peer() as peer:
        info = raw.user_information(extra=window)
        await peer.send(raw.associate_rq(AE, contexts=CONTEXTS[:1], user_info=info))
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type == 0x02
        await peer.send(echo(message_id=1) + echo(message_id=2) + echo(message_id=3))
        assert [await status_of_response(peer) for _ in range(3)] == [0, 0, 0]


@case
async def pdu_cut_off_by_close_during_a_dataset(h: Harness) -> None:  # [8] [73]
    uid, data = ct_bytes(pixels=300)  # 180 KB, under the 1 MiB limit
    message = store_message(uid, data, split=4096)
    async with await h.associated_peer() as peer:
        await peer.send_partial(message, len(message) - 3000)
    await settle(lambda: len(h.listener.associations) <= 1)  # the witness's alone
    assert h.stored() == []


@case
async def abort_pdu_of_length_2(h: Harness) -> None:  # [9]
    async with await h.associated_peer() as peer:
        await peer.send(raw.abort(length=2))
        await aborted_by_provider(peer)


@case
async def release_rq_of_length_6(h: Harness) -> None:  # [9]
    async with await h.associated_peer() as peer:
        await peer.send(raw.release_rq(length=6))
        await aborted_by_provider(peer)


@tolerated
async def reserved_bytes_and_control_bits_set(h: Harness) -> None:  # [10]
    async with await h.peer() as peer:
        rq = bytearray(raw.associate_rq(AE, contexts=CONTEXTS[:1]))
        rq[1] = 0xAA  # reserved byte of the PDU header
        await peer.send(bytes(rq))
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type == 0x02
        await peer.send(raw.p_data(raw.pdv(1, 0xFF, raw.c_echo_rq())))  # bits 2-7 set
        assert await status_of_response(peer) == 0x0000


@case
async def p_data_without_any_pdv(h: Harness) -> None:  # [11]
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data())
        await aborted_by_provider(peer)


@tolerated
async def unknown_items_and_user_sub_items(h: Harness) -> None:  # [12]
    async with await h.peer() as peer:
        extra = raw.item(0x60, b"future") + raw.item(0xEE, b"")
        info = raw.user_information(extra=raw.item(0x5A, b"x" * 10) + raw.item(0xFF, b""))
        await peer.send(
            raw.associate_rq(AE, contexts=CONTEXTS[:1], user_info=info, extra_items=extra)
        )
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type == 0x02


# -- B. A-ASSOCIATE-RQ content ----------------------------------------------------------------


@case
async def associate_rq_shorter_than_its_fixed_part(h: Harness) -> None:  # [13]
    async with await h.peer() as peer:
        await peer.send(raw.pdu(0x01, bytes(40)))
        await aborted_before_association(peer)


@case
async def context_item_length_past_the_pdu(h: Harness) -> None:  # [14]
    async with await h.peer() as peer:
        context = raw.item(0x20, bytes(4) + raw.item(0x30, b"1.2"), length=0xFFFF)
        await peer.send(raw.pdu(0x01, rq_body(APP, context)))
        await aborted_before_association(peer)


@case
async def sub_item_longer_than_its_context(h: Harness) -> None:  # [15]
    async with await h.peer() as peer:
        inner = raw.item(0x30, VERIFICATION.encode(), length=60)
        context = raw.item(0x20, bytes([1, 0, 0, 0]) + inner + raw.item(0x40, IMPLICIT.encode()))
        await peer.send(raw.pdu(0x01, rq_body(APP, context, raw.user_information())))
        await aborted_before_association(peer)


@case
async def maximum_length_sub_item_of_length_2(h: Harness) -> None:  # [16]
    async with await h.peer() as peer:
        info = raw.item(0x50, raw.item(0x51, b"\0\0") + raw.item(0x52, b"1.2.3"))
        await peer.send(raw.associate_rq(AE, contexts=CONTEXTS[:1], user_info=info))
        await aborted_before_association(peer)


@case
async def role_selection_uid_past_its_item(h: Harness) -> None:  # [17]
    async with await h.peer() as peer:
        role = raw.item(0x54, struct.pack(">H", 200) + CT.encode() + b"\1\1")
        info = raw.user_information(extra=role)
        await peer.send(raw.associate_rq(AE, contexts=CONTEXTS[:1], user_info=info))
        await aborted_before_association(peer)


@case
async def many_requests_malformed_in_the_last_sub_item(h: Harness) -> None:  # [18]
    info = raw.user_information(extra=raw.item(0x55, b"\xff" * 4, length=40))
    for _ in range(200):
        async with await h.peer() as peer:
            await peer.send(raw.associate_rq(AE, contexts=CONTEXTS, user_info=info))
            await aborted_before_association(peer)


@case
async def no_presentation_context(h: Harness) -> None:  # [19]
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq(AE, contexts=[]))
        rj = await peer.expect_reject()
        assert (rj.result, rj.source, rj.reason) == (1, 1, 1)


@case
async def even_and_duplicate_context_ids(h: Harness) -> None:  # [20]
    async with await h.peer() as peer:
        contexts = [
            raw.presentation_context(2, VERIFICATION, [IMPLICIT]),
            raw.presentation_context(1, VERIFICATION, [IMPLICIT]),
            raw.presentation_context(1, CT, [IMPLICIT]),
        ]
        await peer.send(raw.associate_rq(AE, contexts=contexts))
        answer = await peer.read_pdu()
        assert answer is not None
        if answer.pdu_type == 0x02:  # AC: the bad contexts are not accepted
            accepted = [c for c in answer.decoded().presentation_contexts if c.result == 0]
            assert accepted == [], accepted
        else:
            raise AssertionError(f"expected an AC refusing every context, got {answer!r}")


@case
async def more_than_128_contexts(h: Harness) -> None:  # [21]
    async with await h.peer() as peer:
        contexts = [raw.presentation_context(1 + 2 * (i % 128), CT, [IMPLICIT]) for i in range(129)]
        await peer.send(raw.associate_rq(AE, contexts=contexts))
        rj = await peer.expect_reject()
        assert (rj.result, rj.source, rj.reason) == (1, 1, 1)


@case
async def thousands_of_presentation_contexts(h: Harness) -> None:  # [21]
    async with await h.peer() as peer:
        contexts = [
            raw.presentation_context(1 + 2 * (i % 128), CT, [IMPLICIT]) for i in range(5000)
        ]
        await peer.send(raw.associate_rq(AE, contexts=contexts))  # about 300 KB
        rj = await peer.expect_reject()
        assert (rj.result, rj.source, rj.reason) == (1, 1, 1)


@case
async def ae_titles_of_spaces_only(h: Harness) -> None:  # [25], PS3.8 9.3.2
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq(AE, b" " * 16, contexts=CONTEXTS[:1]))
        rj = await peer.expect_reject()
        assert (rj.result, rj.source, rj.reason) == (1, 1, 3)
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq(b" " * 16, contexts=CONTEXTS[:1]))
        rj = await peer.expect_reject()
        assert (rj.result, rj.source, rj.reason) == (1, 1, 7)


@tolerated
async def contexts_128_with_64_transfer_syntaxes_each(h: Harness) -> None:  # [21]
    syntaxes = [f"1.2.840.10008.1.2.4.{n}" for n in range(63)] + [IMPLICIT]
    async with await h.peer() as peer:
        contexts = [raw.presentation_context(1 + 2 * i, CT, syntaxes) for i in range(128)]
        await peer.send(raw.associate_rq(AE, contexts=contexts))
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type == 0x02
        chosen = {c.transfer_syntax for c in answer.decoded().presentation_contexts}
        assert chosen == {IMPLICIT}


@case
async def wrong_application_context(h: Harness) -> None:  # [22]
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq(AE, application_context="1.2.3.4"))
        rj = await peer.expect_reject()
        assert (rj.result, rj.source, rj.reason) == (1, 1, 2)


@case
async def protocol_version_bit_0_clear(h: Harness) -> None:  # [23]
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq(AE, protocol_version=2))
        rj = await peer.expect_reject()
        assert (rj.result, rj.source, rj.reason) == (1, 2, 2)


@case
async def called_ae_title_not_ours(h: Harness) -> None:  # [24]
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq("SOMEONE-ELSE"))
        rj = await peer.expect_reject()
        assert (rj.result, rj.source, rj.reason) == (1, 1, 7)


@tolerated
async def calling_ae_title_with_nul_high_bytes_path_and_newline(h: Harness) -> None:  # [25]
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq(AE, b"../\x00\xff\r\n/\\x", contexts=CONTEXTS[:1]))
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type == 0x02
        await peer.send(echo())
        assert await status_of_response(peer) == 0x0000
    assert "\r\n/" not in h.log.lines()  # never raw in a log line


FORGING = b"EV\r\nFORGED\x1b[2J"
"""A calling AE title that would end a log line, forge another and clear the screen."""


@tolerated
async def calling_ae_title_forging_a_log_line(h: Harness) -> None:  # [25]
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq(AE, FORGING, contexts=CONTEXTS[:1]))
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type == 0x02
        await peer.send(echo())
        assert await status_of_response(peer) == 0x0000
        await peer.send(raw.release_rq())
        assert await peer.read_pdu() is not None  # A-RELEASE-RP
    escaped = "EV\\x0d\\x0aFORGED\\x1b[2J -> HOSTILE"
    assert await settle(lambda: escaped in h.log.lines())  # the association log, escaped


@case
async def calling_ae_title_forging_a_log_line_rejected(h: Harness) -> None:  # [24] [25]
    async with await h.peer() as peer:
        await peer.send(raw.associate_rq("NOT-OURS", FORGING, contexts=CONTEXTS[:1]))
        rj = await peer.expect_reject()
        assert (rj.result, rj.source, rj.reason) == (1, 1, 7)
    assert await settle(lambda: "rejected (result 1, source 1, reason 7)" in h.log.lines())
    assert "EV\\x0d\\x0aFORGED\\x1b[2J" in h.log.lines()


@tolerated
async def implementation_names_with_control_characters(h: Harness) -> None:  # [27]
    async with await h.peer() as peer:
        info = raw.user_information(
            implementation_class_uid=b"1.2\r\nFORGED\x1b", extra=raw.item(0x55, b"V\r\n\x1b[2J")
        )
        await peer.send(raw.associate_rq(AE, FORGING, contexts=CONTEXTS[:1], user_info=info))
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type == 0x02
        await peer.send(echo())
        assert await status_of_response(peer) == 0x0000


@case
async def uids_too_long_or_not_digits(h: Harness) -> None:  # [26]
    async with await h.peer() as peer:
        contexts = [
            raw.presentation_context(1, "1." + "2" * 70, [IMPLICIT]),
            raw.presentation_context(3, "1.2.840.abc", [IMPLICIT]),
            raw.presentation_context(5, CT, ["1.2.840.10008.1.2\0\0"]),
            raw.presentation_context(7, VERIFICATION, [IMPLICIT]),
        ]
        await peer.send(raw.associate_rq(AE, contexts=contexts))
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type == 0x02
        results = {c.context_id: c.result for c in answer.decoded().presentation_contexts}
        assert results == {1: 3, 3: 3, 5: 4, 7: 0}  # not supported, not supported, no syntax


@tolerated
async def implementation_uid_and_version_too_long(h: Harness) -> None:  # [27]
    async with await h.peer() as peer:
        info = raw.user_information(
            implementation_class_uid="1." + "3" * 80, extra=raw.item(0x55, b"V" * 40)
        )
        await peer.send(raw.associate_rq(AE, contexts=CONTEXTS[:1], user_info=info))
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type == 0x02


@case
async def second_associate_rq_when_associated(h: Harness) -> None:  # [28]
    async with await h.associated_peer() as peer:
        await peer.send(raw.associate_rq(AE))
        await aborted_by_provider(peer, reason=2)


@case
async def associate_ac_sent_to_the_acceptor(h: Harness) -> None:  # [28]
    async with await h.associated_peer() as peer:
        await peer.send(raw.pdu(0x02, rq_body(APP)))
        await aborted_by_provider(peer, reason=2)


@case
async def release_rq_before_any_association(h: Harness) -> None:  # [28]
    async with await h.peer() as peer:
        await peer.send(raw.release_rq())
        await aborted_before_association(peer)


@tolerated
async def user_identity_of_65535_bytes(h: Harness) -> None:  # [79]
    async with await h.peer() as peer:
        token = b"j" * 65000
        identity = raw.item(0x58, bytes([2, 0]) + struct.pack(">H", len(token)) + token + b"\0\0")
        info = raw.user_information(extra=identity)
        await peer.send(raw.associate_rq(AE, contexts=CONTEXTS[:1], user_info=info))
        answer = await peer.read_pdu()
        assert answer is not None and answer.pdu_type in (0x02, 0x03)


# -- D. P-DATA, PDV and DIMSE ----------------------------------------------------------------


@case
async def pdv_length_below_2(h: Harness) -> None:  # [40]
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, b"", length=1)))
        await aborted_by_provider(peer)


@case
async def pdv_length_past_its_pdu(h: Harness) -> None:  # [40]
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, raw.c_echo_rq(), length=0xFFFFFFF0)))
        await aborted_by_provider(peer)


@case
async def pdv_on_a_context_never_proposed(h: Harness) -> None:  # [41]
    async with await h.associated_peer() as peer:
        await peer.send(echo(context_id=99))
        await aborted_by_provider(peer)


@case
async def pdv_on_an_even_context_id(h: Harness) -> None:  # [41]
    async with await h.associated_peer() as peer:
        await peer.send(echo(context_id=2))
        await aborted_by_provider(peer)


@case
async def context_changes_inside_one_message(h: Harness) -> None:  # [42]
    command = raw.c_echo_rq()
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x01, command[:10]), raw.pdv(3, 0x03, command[10:])))
        await aborted_by_provider(peer)


@case
async def dataset_before_its_command(h: Harness) -> None:  # [43]
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(3, 0x02, b"\x08\x00\x16\x00\0\0\0\0")))
        await aborted_by_provider(peer)


@case
async def command_while_a_dataset_is_expected(h: Harness) -> None:  # [43] [44]
    uid, data = ct_bytes()
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(3, 0x03, raw.c_store_rq(CT, uid))))
        await peer.send(raw.p_data(raw.pdv(3, 0x00, data[:100])))
        await peer.send(echo())  # a new command before the last dataset fragment
        await aborted_by_provider(peer)
    assert h.stored() == []


@case
async def dataset_fragment_after_the_last(h: Harness) -> None:  # [43]
    async with await h.associated_peer() as peer:
        await peer.send(echo())
        assert await status_of_response(peer) == 0x0000
        await peer.send(raw.p_data(raw.pdv(1, 0x02, b"\0\0")))
        await aborted_by_provider(peer)


@case
async def odd_length_fragment(h: Harness) -> None:  # [45]
    command = raw.c_echo_rq()
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x01, command[:7]), raw.pdv(1, 0x03, command[7:])))
        await aborted_by_provider(peer)


@case
async def dataset_that_never_ends(h: Harness) -> None:  # [46]
    uid, _ = ct_bytes()
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(3, 0x03, raw.c_store_rq(CT, uid))))
        chunk = raw.p_data(raw.pdv(3, 0x00, bytes(16000)))
        for _ in range(80):  # 1.28 MB against a 1 MiB limit
            await peer.send(chunk)
            if peer.reader.at_eof():
                break
        await aborted_by_provider(peer)
    assert h.stored() == []


@case
async def identifier_past_the_buffered_limit(h: Harness) -> None:  # [46]
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(5, 0x03, raw.c_find_rq(FIND))))
        for _ in range(6):  # 96 KB held in memory against 64 KiB
            await peer.send(raw.p_data(raw.pdv(5, 0x00, bytes(16000))))
        await aborted_by_provider(peer)


@tolerated
async def every_layout_of_one_message(h: Harness) -> None:  # [47] [80]
    async with await h.associated_peer() as peer:
        for index, split in enumerate((0, 2, 1000)):
            uid, data = ct_bytes(index)
            if split == 1000:  # every PDV in its own PDU
                command = raw.p_data(raw.pdv(3, 0x03, raw.c_store_rq(CT, uid)))
                pieces = [data[i : i + split] for i in range(0, len(data), split)]
                last = len(pieces) - 1
                message = command + b"".join(
                    raw.p_data(raw.pdv(3, 0x02 if i == last else 0, p))
                    for i, p in enumerate(pieces)
                )
            else:  # one PDU of whole fragments, or thousands of 2-byte PDVs
                message = store_message(uid, data, split=split)
            await peer.send(message)
            assert await status_of_response(peer) == 0x0000
    assert len(h.stored()) == 3


@case
async def command_with_a_wrong_group_length(h: Harness) -> None:  # [48]
    command = bytearray(raw.c_echo_rq())
    command[8:12] = struct.pack("<I", 4)  # CommandGroupLength says 4
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, bytes(command))))
        await aborted_by_provider(peer)


@case
async def command_without_command_field(h: Harness) -> None:  # [48]
    command = raw.command({0x00000002: VERIFICATION, 0x00000110: 1, 0x00000800: 0x0101})
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, command)))
        await aborted_by_provider(peer)


@case
async def command_without_message_id(h: Harness) -> None:  # [48]
    command = raw.command({0x00000002: VERIFICATION, 0x00000100: 0x0030, 0x00000800: 0x0101})
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, command)))
        await aborted_by_provider(peer)


@case
async def command_element_declaring_80ffffff(h: Harness) -> None:  # [49]
    element = struct.pack("<HHI", 0x0000, 0x0002, 0x80FFFFFF) + b"1.2\0"
    command = struct.pack("<HHII", 0, 0, 4, len(element)) + element
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, command)))
        await aborted_by_provider(peer)


@case
async def non_command_group_in_a_command_set(h: Harness) -> None:  # [48]
    echo_fields = raw.c_echo_rq()[12:]  # past CommandGroupLength
    extra = struct.pack("<HHI", 0x0008, 0x0018, 4) + b"1.2\0"
    command = struct.pack("<HHII", 0, 0, 4, len(echo_fields) + len(extra)) + echo_fields + extra
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, command)))
        await aborted_by_provider(peer)


@case
async def unknown_command_field(h: Harness) -> None:  # [50]
    command = raw.command(
        {0x00000002: VERIFICATION, 0x00000100: 0x0ABC, 0x00000110: 9, 0x00000800: 0x0101}
    )
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, command)))
        await aborted_by_provider(peer)


@case
async def response_sent_to_the_scp(h: Harness) -> None:  # [50]
    command = raw.command(
        {
            0x00000002: VERIFICATION,
            0x00000100: 0x8030,
            0x00000120: 1,
            0x00000800: 0x0101,
            0x00000900: 0,
        }
    )
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, command)))
        await peer.send(echo(message_id=2))  # ignored, logged; the association goes on
        assert await status_of_response(peer) == 0x0000


@case
async def echo_carrying_a_dataset(h: Harness) -> None:  # [51]
    command = raw.command(
        {0x00000002: VERIFICATION, 0x00000100: 0x0030, 0x00000110: 1, 0x00000800: 0x0000}
    )
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(1, 0x03, command), raw.pdv(1, 0x02, b"\0\0\0\0")))
        assert await status_of_response(peer) == 0x0212  # mistyped argument


@case
async def store_with_an_instance_uid_of_70_bytes(h: Harness) -> None:  # [51]
    _, data = ct_bytes()
    long_uid = "1." + "5" * 68
    async with await h.associated_peer() as peer:
        await peer.send(
            raw.p_data(raw.pdv(3, 0x03, raw.c_store_rq(CT, long_uid)), raw.pdv(3, 0x02, data))
        )
        assert await status_of_response(peer) == 0xC000
        forged = "1.2.3\r\nFORGED"  # refused by the request's own validation too
        await peer.send(
            raw.p_data(raw.pdv(3, 0x03, raw.c_store_rq(CT, forged, 2)), raw.pdv(3, 0x02, data))
        )
        assert await status_of_response(peer) == 0xC000
    assert h.stored() == []
    # refused before any handler ran, yet each leaves its event-log line
    assert [(e.sop_instance_uid, e.status, e.stored) for e in h.events] == [
        (long_uid, 0xC000, False),
        (forged, 0xC000, False),
    ]
    assert "\r" not in "".join(e.as_json() for e in h.events)


@case
async def store_whose_dataset_uid_differs_from_the_command(h: Harness) -> None:  # [52]
    _, data = ct_bytes()
    async with await h.associated_peer() as peer:
        await peer.send(store_message("1.2.3.999", data))
        assert await status_of_response(peer) == 0xC000
    assert h.stored() == []


@case
async def store_whose_dataset_class_differs_from_the_command(h: Harness) -> None:  # [52]
    ds = ct_dataset(0)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # an MR dataset under a CT command
    async with await h.associated_peer() as peer:
        await peer.send(store_message(str(ds.SOPInstanceUID), encode_dataset(ds, IMPLICIT)))
        assert await status_of_response(peer) == 0xA900
    assert h.stored() == []


@case
async def store_of_a_class_other_than_its_context(h: Harness) -> None:  # [52]
    uid, data = ct_bytes()
    command = raw.c_store_rq("1.2.840.10008.5.1.4.1.1.4", uid)  # MR on the CT context
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(3, 0x03, command), raw.pdv(3, 0x02, data)))
        assert await status_of_response(peer) == 0xA900
    assert h.stored() == []
    assert [(e.sop_class_uid, e.status, e.bytes) for e in h.events] == [
        ("1.2.840.10008.5.1.4.1.1.4", 0xA900, len(data))
    ]


@tolerated
async def store_with_priority_3(h: Harness) -> None:  # [53]: tolerated
    uid, data = ct_bytes()
    command = raw.c_store_rq(CT, uid, priority=3)
    async with await h.associated_peer() as peer:
        await peer.send(raw.p_data(raw.pdv(3, 0x03, command), raw.pdv(3, 0x02, data)))
        assert await status_of_response(peer) == 0x0000


@tolerated
async def deeply_nested_sequences(h: Harness) -> None:
    uid, data = ct_bytes()
    nested = nested_sequences(2000, (0x0040, 0xA730))  # SQ of undefined length, one item each
    async with await h.associated_peer() as peer:
        await peer.send(store_message(uid, data + nested))  # (0040,...) sorts after the UIDs
        status = await status_of_response(peer)
        assert status == 0x0000 or status >> 12 in (0xA, 0xC)


def deflate_bomb() -> bytes:
    """200 MB of zeros deflated to about 200 KB (an even length, as PDVs need)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = packer.compress(bytes(200 << 20)) + packer.flush()
    return bomb + b"\0" * (len(bomb) & 1)


@case
async def deflated_dataset_that_inflates_without_bound(h: Harness) -> None:
    uid, _ = ct_bytes()
    bomb = await asyncio.to_thread(deflate_bomb)  # seconds of CPU: not on the event loop
    async with await h.associated_peer() as peer:
        await peer.send(
            raw.p_data(raw.pdv(7, 0x03, raw.c_store_rq(CT, uid)))
            + b"".join(
                raw.p_data(raw.pdv(7, 0x02 if i + 8000 >= len(bomb) else 0, bomb[i : i + 8000]))
                for i in range(0, len(bomb), 8000)
            )
        )
        assert await status_of_response(peer, timeout=20) == 0xC000
    assert h.stored() == []


def implicit_element(group: int, element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, element, len(value)) + value


@case
async def dataset_carrying_a_file_meta_group(h: Harness) -> None:
    uid, data = ct_bytes()
    meta = (
        implicit_element(0x0002, 0x0001, b"\x00\x01")
        + implicit_element(0x0002, 0x0010, b"1.2.840.10008.1.2\x00")
        + implicit_element(0x0002, 0x0013, b"FORGED")
    )
    async with await h.associated_peer() as peer:  # PS3.5 7.1: no group below 0008
        await peer.send(store_message(uid, meta + data))
        assert await status_of_response(peer) == 0xC000
    assert h.stored() == []
    assert "File Meta group inside the dataset" in h.log.lines()


@case
async def explicit_vr_dataset_on_an_implicit_context(h: Harness) -> None:
    ds = ct_dataset(0)
    data = encode_dataset(ds, EXPLICIT)  # context 3 negotiated implicit VR
    async with await h.associated_peer() as peer:
        await peer.send(store_message(str(ds.SOPInstanceUID), data))
        assert await status_of_response(peer) == 0xC000
        # the reverse: implicit VR data on an explicit context
        implicit_uid, implicit_data = ct_bytes(1)
        contexts = [raw.presentation_context(9, CT, [EXPLICIT])]
    assert h.stored() == []
    async with await h.associated_peer(contexts) as peer:
        await peer.send(store_message(implicit_uid, implicit_data, context_id=9))
        assert await status_of_response(peer) == 0xC000
    assert h.stored() == []


@case
async def dataset_elements_out_of_order(h: Harness) -> None:
    ds = ct_dataset(0)
    data = encode_dataset(ds, IMPLICIT)
    late = implicit_element(0x0008, 0x0005, b"ISO_IR 100")  # belongs before (0008,0016)
    position = data.index(struct.pack("<HH", 0x0020, 0x000D))
    async with await h.associated_peer() as peer:
        await peer.send(
            store_message(str(ds.SOPInstanceUID), data[:position] + late + data[position:])
        )
        assert await status_of_response(peer) == 0xC000
    assert h.stored() == []


@case
async def more_requests_than_the_operations_window(h: Harness) -> None:  # [76]
    async with await h.associated_peer() as peer:  # no window negotiated: one at a time
        await peer.send(b"".join(echo(message_id=n) for n in range(1, 21)))
        await aborted_by_provider(peer)


# -- G. Resource exhaustion -------------------------------------------------------------------


@case
async def abort_storm(h: Harness) -> None:  # [73]
    for _ in range(100):
        async with await h.associated_peer() as peer:
            await peer.send(raw.abort(0, 0))
    assert await settle(lambda: len(h.listener.associations) <= 1)


@case
async def probes_that_connect_and_close(h: Harness) -> None:  # [71]
    for _ in range(200):
        peer = await h.peer()
        peer.close()
    assert await settle(lambda: len(h.listener.associations) <= 1)


@case
async def connections_that_never_send_a_request(h: Harness) -> None:  # [70]
    peers = [await h.peer() for _ in range(20)]
    closed = await asyncio.gather(*(p.closed(timeout=5) for p in peers))
    for peer in peers:
        peer.close()
    assert all(closed)  # ARTIM (1 s here) closed every one


@case
async def slow_drip_inside_an_association(h: Harness) -> None:  # [70]
    async with await h.associated_peer() as peer:
        await peer.trickle(echo()[:8], delay=0.6)  # 8 bytes over 4.8 s, never a whole PDU
        value = await peer.expect_abort()  # the listener's own decision: service-user source
        assert (value.source, value.reason) == (0, 0), value


@tolerated
async def peer_maximum_lengths_1_13_4095_and_0(h: Harness) -> None:  # [74]
    from dicomnet.core.codec import Assembler

    for declared, limit in ((1, 8), (13, 13), (4095, 4095), (0, 1 << 20)):
        async with await h.peer() as peer:
            info = raw.user_information(max_length=declared)
            await peer.send(raw.associate_rq(AE, contexts=CONTEXTS[:1], user_info=info))
            answer = await peer.read_pdu()
            assert answer is not None and answer.pdu_type == 0x02
            await peer.send(echo())
            assembler, messages = Assembler(), []
            for _ in range(200):  # bounded: an echo response is about 100 bytes
                pdu = await peer.read_pdu()
                assert pdu is not None and pdu.pdu_type == 0x04
                # 1 is below any usable size: we send at our floor of 8 (2 bytes a PDV);
                # 0 means no limit, and we keep to our own cap of 1 MiB.
                assert len(pdu.body) <= limit, (declared, len(pdu.body))
                messages += assembler.feed(pdu.body)
                if messages:
                    break
            assert messages and messages[0][1][0x00000900] == 0x0000, declared


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(name: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with under_attack(tmp_path) as harness:
            await CASES[name](harness)
        if name not in TOLERATED:
            assert harness.case_records, "the listener logged nothing about it"

    run(scenario())


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


def test_per_ae_cap_holds_for_a_title_with_control_characters(tmp_path: Path) -> None:  # [24]
    """The cap counts the title as sent, the same value it checks: escaping is for logs."""
    from dataclasses import replace

    from hostile import LIMITS

    async def scenario() -> None:
        limits = replace(LIMITS, max_associations_per_calling_ae=1)
        async with under_attack(tmp_path, limits=limits) as h:
            first = await h.peer()
            await first.associate(CONTEXTS[:1], called=AE, calling="EV\r\n\x1b")
            async with await h.peer() as second:
                await second.send(raw.associate_rq(AE, b"EV\r\n\x1b", contexts=CONTEXTS[:1]))
                rj = await second.expect_reject()
                assert (rj.result, rj.source, rj.reason) == (2, 3, 2)
            first.close()

    run(scenario())
