"""Every DIMSE-N service both ways against pynetdicom, and status handling."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydicom.dataset import Dataset

from dicomnet.core.dimse import CommandField
from dicomnet.core.pdu import RoleSelection
from dicomnet.net import client
from dicomnet.net.association import IncomingRequest, Reply
from dicomnet.net.listener import Listener

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


def test_every_status_class_and_the_fields_of_each_response() -> None:
    from dicomnet.core.status import StatusClass, status_class
    from dicomnet.net.store_client import NoAcceptedContext

    seen: list = []

    async def scenario() -> dict:
        listener = Listener("NSCP")

        async def n_get(request: IncomingRequest) -> Reply:
            seen.append(request.message.attribute_identifier_list)
            return Reply(0x0001, attributes(Manufacturer="dicomnet"))  # optional attrs missing

        async def n_set(request: IncomingRequest) -> Reply:
            return Reply(0x0116, request.dataset)  # value out of range, coerced

        async def n_create(request: IncomingRequest) -> Reply:
            fields = {"affected_sop_instance_uid": "1.2.3.4.8"}
            return Reply(0x0107, attributes(NumberOfCopies="1"), fields)

        async def n_action(request: IncomingRequest) -> Reply:
            if request.message.action_type_id == 7:
                return Reply(0x0213, None, {"error_comment": "busy", "error_id": 0x1234})
            return Reply(0x0000, attributes(FilmSessionLabel="DONE"))

        async def n_delete(request: IncomingRequest) -> int:
            raise RuntimeError("the handler fails")

        async def n_event_report(request: IncomingRequest) -> int:
            return 0x0000

        listener.on_n_service(CommandField.N_GET_RQ, n_get, [DISPLAY_SYSTEM])
        for field, handler in (
            (CommandField.N_SET_RQ, n_set),
            (CommandField.N_CREATE_RQ, n_create),
            (CommandField.N_ACTION_RQ, n_action),
            (CommandField.N_DELETE_RQ, n_delete),
        ):
            listener.on_n_service(field, handler, [FILM_SESSION])
        listener.on_n_service(CommandField.N_EVENT_REPORT_RQ, n_event_report, [COMMITMENT])
        await listener.listen("127.0.0.1", 0)
        async with listener:
            async with client.connect(
                "127.0.0.1",
                listener.port,
                contexts=[(uid, [IMPLICIT]) for uid in (DISPLAY_SYSTEM, FILM_SESSION, COMMITMENT)],
            ) as assoc:
                with pytest.raises(NoAcceptedContext):
                    await assoc.n_get("1.2.840.10008.5.1.1.16", "1.2.840.10008.5.1.1.17")
                return {
                    "get": await assoc.n_get(
                        DISPLAY_SYSTEM, DISPLAY_SYSTEM_INSTANCE, ["Manufacturer", 0x00081090]
                    ),
                    "set": await assoc.n_set(FILM_SESSION, "1.2", attributes(NumberOfCopies="9")),
                    "create": await assoc.n_create(FILM_SESSION, None, attributes()),
                    "action": await assoc.n_action(FILM_SESSION, "1.2", 3),
                    "busy": await assoc.n_action(FILM_SESSION, "1.2", 7),
                    "delete": await assoc.n_delete(FILM_SESSION, "1.2"),
                    "event": await assoc.n_event_report(COMMITMENT, COMMITMENT_INSTANCE, 2),
                }

    results = run(scenario())
    assert seen == [(0x00080070, 0x00081090)]
    classes = {name: status_class(result.status) for name, result in results.items()}
    assert classes == {
        "get": StatusClass.WARNING,
        "set": StatusClass.WARNING,
        "create": StatusClass.WARNING,
        "action": StatusClass.SUCCESS,
        "busy": StatusClass.FAILURE,
        "delete": StatusClass.FAILURE,
        "event": StatusClass.SUCCESS,
    }
    assert [name for name, result in results.items() if result.ok] == [
        "get",
        "set",
        "create",
        "action",
        "event",
    ]
    assert results["get"].attributes.Manufacturer == "dicomnet"
    assert results["set"].attributes.NumberOfCopies == "9"
    created = results["create"]
    assert created.message.affected_sop_instance_uid == "1.2.3.4.8"
    assert created.message.affected_sop_class_uid == FILM_SESSION
    assert created.attributes.NumberOfCopies == "1"
    action = results["action"]
    assert action.message.action_type_id == 3 and action.attributes.FilmSessionLabel == "DONE"
    assert action.message.affected_sop_instance_uid == "1.2"
    busy = results["busy"]
    assert (busy.status, busy.message.error_comment, busy.message.error_id) == (
        0x0213,
        "busy",
        0x1234,
    )
    assert busy.attributes is None
    assert results["delete"].status == 0x0110  # the handler raised: processing failure
    event = results["event"]
    assert event.message.event_type_id == 2
    assert event.message.affected_sop_instance_uid == COMMITMENT_INSTANCE
    assert event.attributes is None


def test_pynetdicom_scp_statuses_and_error_fields_reach_our_scu() -> None:
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

    def status(code: int, comment: str | None = None, error_id: int | None = None) -> Dataset:
        ds = Dataset()
        ds.Status = code
        if comment is not None:
            ds.ErrorComment = comment
        if error_id is not None:
            ds.ErrorID = error_id
        return ds

    handlers = [
        (evt.EVT_N_GET, lambda event: (status(0x0107), attributes(Manufacturer="pyn"))),
        (evt.EVT_N_SET, lambda event: (status(0x0106, "bad label", 0x0042), None)),
        (evt.EVT_N_CREATE, lambda event: (status(0x0111, "exists"), None)),
        (evt.EVT_N_ACTION, lambda event: (status(0x0123), None)),
        (evt.EVT_N_DELETE, lambda event: status(0x0112, "gone")),
        (evt.EVT_N_EVENT_REPORT, lambda event: (status(0x0113), None)),
    ]
    ae = AE(ae_title="PYNSCP")
    for uid in (DISPLAY_SYSTEM, FILM_SESSION):
        ae.add_supported_context(uid, IMPLICIT)
    ae.add_supported_context(COMMITMENT, IMPLICIT, scu_role=True, scp_role=True)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:

        async def scenario() -> list:
            async with client.connect(
                "127.0.0.1",
                port,
                called_ae_title="PYNSCP",
                contexts=[(uid, [IMPLICIT]) for uid in (DISPLAY_SYSTEM, FILM_SESSION, COMMITMENT)],
                roles=[RoleSelection(COMMITMENT, False, True)],
            ) as assoc:
                return [
                    await assoc.n_get(DISPLAY_SYSTEM, DISPLAY_SYSTEM_INSTANCE, ["Manufacturer"]),
                    await assoc.n_set(FILM_SESSION, "1.2", attributes(FilmSessionLabel="?")),
                    await assoc.n_create(FILM_SESSION, "1.2", attributes(NumberOfCopies="1")),
                    await assoc.n_action(FILM_SESSION, "1.2", 99),
                    await assoc.n_delete(FILM_SESSION, "1.2"),
                    await assoc.n_event_report(COMMITMENT, COMMITMENT_INSTANCE, 9),
                ]

        got, set_, create, action, delete, event = run(scenario())
    finally:
        server.shutdown()
    assert (got.status, got.ok, got.attributes.Manufacturer) == (0x0107, True, "pyn")
    assert (set_.status, set_.ok) == (0x0106, False)
    assert (set_.message.error_comment, set_.message.error_id) == ("bad label", 0x0042)
    assert (create.status, create.message.error_comment) == (0x0111, "exists")
    assert action.status == 0x0123
    assert (delete.status, delete.message.error_comment) == (0x0112, "gone")
    assert event.status == 0x0113


def test_our_scp_error_fields_reach_pynetdicom_scu() -> None:
    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

    def pynetdicom_side(port: int) -> tuple[Dataset, Dataset]:
        ae = AE(ae_title="PYNSCU")
        ae.add_requested_context(FILM_SESSION, IMPLICIT)
        assoc = ae.associate("127.0.0.1", port, ae_title="NSCP")
        assert assoc.is_established
        try:
            set_status, _ = assoc.send_n_set(attributes(FilmSessionLabel="X"), FILM_SESSION, "1.2")
            create_status, created = assoc.send_n_create(
                attributes(NumberOfCopies="1"), FILM_SESSION, None
            )
        finally:
            assoc.release()
        return set_status, create_status, created

    async def scenario():
        listener = Listener("NSCP")

        async def refuse(request: IncomingRequest) -> Reply:
            return Reply(0x0106, None, {"error_comment": "bad value", "error_id": 0x0A01})

        async def create(request: IncomingRequest) -> Reply:
            assert request.message.affected_sop_instance_uid is None
            fields = {"affected_sop_instance_uid": "1.2.3.4.9"}
            return Reply(0x0000, attributes(NumberOfCopies="4"), fields)

        listener.on_n_service(CommandField.N_SET_RQ, refuse, [FILM_SESSION])
        listener.on_n_service(CommandField.N_CREATE_RQ, create, [FILM_SESSION])
        await listener.listen("127.0.0.1", 0)
        async with listener:
            return await asyncio.to_thread(pynetdicom_side, listener.port)

    set_status, create_status, created = run(scenario())
    assert int(set_status.Status) == 0x0106
    assert (set_status.ErrorComment, int(set_status.ErrorID)) == ("bad value", 0x0A01)
    assert int(create_status.Status) == 0x0000
    assert created.NumberOfCopies == "4"


def test_attribute_identifier_list_of_a_refusal_reaches_the_caller() -> None:
    async def scenario() -> None:
        listener = Listener("NSCP")

        async def refuse(request: IncomingRequest) -> Reply:
            return Reply(0x0105, None, {"attribute_identifier_list": (0x00081090, 0x00100010)})

        listener.on_n_service(CommandField.N_SET_RQ, refuse, [FILM_SESSION])
        await listener.listen("127.0.0.1", 0)
        async with listener:
            async with client.connect(
                "127.0.0.1", listener.port, contexts=[(FILM_SESSION, [IMPLICIT])]
            ) as assoc:
                refused = await assoc.n_set(FILM_SESSION, "1.2", attributes(FilmSessionLabel="X"))
        assert refused.status == 0x0105  # no such attribute
        assert refused.message.attribute_identifier_list == (0x00081090, 0x00100010)

    run(scenario())
