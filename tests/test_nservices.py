"""Every DIMSE-N service both ways against pynetdicom, and status handling."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydicom.dataset import Dataset

from dicomnet import client
from dicomnet.association import IncomingRequest, Reply
from dicomnet.dimse import CommandField
from dicomnet.pdu import RoleSelection
from dicomnet.server import Listener

from peers import free_port

pytestmark = pytest.mark.interop

FILM_SESSION = "1.2.840.10008.5.1.1.1"
DISPLAY_SYSTEM = "1.2.840.10008.5.1.1.40"
DISPLAY_SYSTEM_INSTANCE = "1.2.840.10008.5.1.1.40.1"
COMMITMENT = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
IMPLICIT = "1.2.840.10008.1.2"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def attributes(**values: str) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


async def n_listener(seen: list) -> Listener:
    """Our SCP of every N service, recording each request it gets."""
    listener = Listener("NSCP")

    async def n_get(request: IncomingRequest) -> Reply:
        seen.append(("get", request.message.attribute_identifier_list))
        return Reply(0x0000, attributes(Manufacturer="dicomnet", ManufacturerModelName="N"))

    async def n_set(request: IncomingRequest) -> Reply:
        seen.append(("set", str(request.dataset.FilmSessionLabel)))
        return Reply(0x0000, request.dataset)

    async def n_action(request: IncomingRequest) -> Reply:
        seen.append(("action", request.message.action_type_id))
        return Reply(0x0000, None)

    async def n_create(request: IncomingRequest) -> Reply:
        uid = request.message.affected_sop_instance_uid or "1.2.3.4.5.6"
        seen.append(("create", uid, str(request.dataset.NumberOfCopies)))
        return Reply(0x0000, request.dataset, {"affected_sop_instance_uid": uid})

    async def n_delete(request: IncomingRequest) -> int:
        seen.append(("delete", request.message.requested_sop_instance_uid))
        return 0x0112 if request.message.requested_sop_instance_uid == "9.9" else 0x0000

    async def n_event_report(request: IncomingRequest) -> Reply:
        seen.append(("event", request.message.event_type_id, str(request.dataset.TransactionUID)))
        return Reply(0x0000, None)

    listener.on_n_service(CommandField.N_GET_RQ, n_get, [DISPLAY_SYSTEM])
    listener.on_n_service(CommandField.N_SET_RQ, n_set, [FILM_SESSION])
    listener.on_n_service(CommandField.N_ACTION_RQ, n_action, [FILM_SESSION])
    listener.on_n_service(CommandField.N_CREATE_RQ, n_create, [FILM_SESSION])
    listener.on_n_service(CommandField.N_DELETE_RQ, n_delete, [FILM_SESSION])
    listener.on_n_service(
        CommandField.N_EVENT_REPORT_RQ, n_event_report, [COMMITMENT], requestor_scp=True
    )
    await listener.listen("127.0.0.1", 0)
    return listener


def test_pynetdicom_scu_against_our_n_services() -> None:
    from pynetdicom import AE, build_role

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    seen: list = []

    def pynetdicom_side(port: int) -> dict[str, int]:
        ae = AE(ae_title="PYNSCU")
        for uid in (DISPLAY_SYSTEM, FILM_SESSION, COMMITMENT):
            ae.add_requested_context(uid, IMPLICIT)
        assoc = ae.associate(
            "127.0.0.1",
            port,
            ae_title="NSCP",
            ext_neg=[build_role(COMMITMENT, scu_role=False, scp_role=True)],
        )
        assert assoc.is_established
        statuses = {}
        try:
            status, values = assoc.send_n_get(
                [0x00080070, 0x00081090], DISPLAY_SYSTEM, DISPLAY_SYSTEM_INSTANCE
            )
            statuses["get"] = int(status.Status)
            assert values.Manufacturer == "dicomnet"
            status, _ = assoc.send_n_create(
                attributes(NumberOfCopies="2"), FILM_SESSION, "1.2.3.4.5.6"
            )
            statuses["create"] = int(status.Status)
            status, values = assoc.send_n_set(
                attributes(FilmSessionLabel="LABEL"), FILM_SESSION, "1.2.3.4.5.6"
            )
            statuses["set"] = int(status.Status)
            assert values.FilmSessionLabel == "LABEL"
            status, _ = assoc.send_n_action(None, 1, FILM_SESSION, "1.2.3.4.5.6")
            statuses["action"] = int(status.Status)
            status = assoc.send_n_delete(FILM_SESSION, "9.9")
            statuses["delete unknown"] = int(status.Status)
            status = assoc.send_n_delete(FILM_SESSION, "1.2.3.4.5.6")
            statuses["delete"] = int(status.Status)
            status, _ = assoc.send_n_event_report(
                attributes(TransactionUID="1.2.3.99"), 1, COMMITMENT, COMMITMENT_INSTANCE
            )
            statuses["event"] = int(status.Status)
        finally:
            assoc.release()
        return statuses

    async def scenario() -> dict[str, int]:
        async with await n_listener(seen) as listener:
            return await asyncio.to_thread(pynetdicom_side, listener.port)

    statuses = run(scenario())
    assert statuses == {
        "get": 0,
        "create": 0,
        "set": 0,
        "action": 0,
        "delete unknown": 0x0112,
        "delete": 0,
        "event": 0,
    }
    assert seen == [
        ("get", (0x00080070, 0x00081090)),
        ("create", "1.2.3.4.5.6", "2"),
        ("set", "LABEL"),
        ("action", 1),
        ("delete", "9.9"),
        ("delete", "1.2.3.4.5.6"),
        ("event", 1, "1.2.3.99"),
    ]


def test_our_scu_against_pynetdicom_n_services() -> None:
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    seen: list = []

    def on_get(event):
        seen.append(("get", [int(t) for t in event.request.AttributeIdentifierList]))
        return 0x0000, attributes(Manufacturer="pynetdicom")

    def on_create(event):
        seen.append(("create", str(event.attribute_list.NumberOfCopies)))
        ds = attributes(NumberOfCopies="3")
        ds.AffectedSOPInstanceUID = "1.2.3.4.7"  # pynetdicom's way to assign the UID
        return 0x0000, ds

    def on_set(event):
        seen.append(("set", str(event.attribute_list.FilmSessionLabel)))
        return 0x0000, event.attribute_list

    def on_action(event):
        seen.append(("action", int(event.action_type)))
        return 0x0000, None

    def on_delete(event):
        seen.append(("delete", str(event.request.RequestedSOPInstanceUID)))
        return 0x0000

    def on_event(event):
        seen.append(("event", int(event.event_type), str(event.event_information.TransactionUID)))
        return 0x0000, None

    ae = AE(ae_title="PYNSCP")
    ae.add_supported_context(DISPLAY_SYSTEM, IMPLICIT)
    ae.add_supported_context(FILM_SESSION, IMPLICIT)
    ae.add_supported_context(COMMITMENT, IMPLICIT, scu_role=True, scp_role=True)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[
            (evt.EVT_N_GET, on_get),
            (evt.EVT_N_CREATE, on_create),
            (evt.EVT_N_SET, on_set),
            (evt.EVT_N_ACTION, on_action),
            (evt.EVT_N_DELETE, on_delete),
            (evt.EVT_N_EVENT_REPORT, on_event),
        ],
    )
    try:

        async def scenario() -> None:
            async with client.connect(
                "127.0.0.1",
                port,
                called_ae_title="PYNSCP",
                contexts=[(uid, [IMPLICIT]) for uid in (DISPLAY_SYSTEM, FILM_SESSION, COMMITMENT)],
                roles=[RoleSelection(COMMITMENT, False, True)],
            ) as assoc:
                got = await assoc.n_get(
                    DISPLAY_SYSTEM, DISPLAY_SYSTEM_INSTANCE, [0x00080070, 0x00081090]
                )
                assert got.ok and got.attributes.Manufacturer == "pynetdicom"
                created = await assoc.n_create(FILM_SESSION, None, attributes(NumberOfCopies="2"))
                assert created.status == 0
                assert created.message.affected_sop_instance_uid == "1.2.3.4.7"
                assert created.attributes.NumberOfCopies == "3"
                changed = await assoc.n_set(
                    FILM_SESSION, "1.2.3.4.7", attributes(FilmSessionLabel="LABEL")
                )
                assert changed.status == 0 and changed.attributes.FilmSessionLabel == "LABEL"
                assert (await assoc.n_action(FILM_SESSION, "1.2.3.4.7", 1)).status == 0
                assert (await assoc.n_delete(FILM_SESSION, "1.2.3.4.7")).status == 0
                reported = await assoc.n_event_report(
                    COMMITMENT, COMMITMENT_INSTANCE, 2, attributes(TransactionUID="1.2.3.98")
                )
                assert reported.status == 0

        run(scenario())
    finally:
        server.shutdown()
    assert seen == [
        ("get", [0x00080070, 0x00081090]),
        ("create", "2"),
        ("set", "LABEL"),
        ("action", 1),
        ("delete", "1.2.3.4.7"),
        ("event", 2, "1.2.3.98"),
    ]


def test_unhandled_n_request_answers_no_such_sop_class_and_failure_fields() -> None:
    async def scenario() -> None:
        listener = Listener("NSCP")

        async def refuse(request: IncomingRequest) -> Reply:
            return Reply(
                0x0106, None, {"error_comment": "bad value", "offending_element": (0x00080070,)}
            )

        listener.on_n_service(CommandField.N_SET_RQ, refuse, [FILM_SESSION])
        listener.support(DISPLAY_SYSTEM)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            async with client.connect(
                "127.0.0.1",
                listener.port,
                contexts=[(FILM_SESSION, [IMPLICIT]), (DISPLAY_SYSTEM, [IMPLICIT])],
            ) as assoc:
                unhandled = await assoc.n_get(DISPLAY_SYSTEM, DISPLAY_SYSTEM_INSTANCE)
                assert unhandled.status == 0x0112 and not unhandled.ok
                refused = await assoc.n_set(FILM_SESSION, "1.2", attributes(FilmSessionLabel="X"))
                assert refused.status == 0x0106
                assert refused.message.error_comment == "bad value"
                assert refused.message.offending_element == (0x00080070,)

    run(scenario())
