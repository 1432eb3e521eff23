"""The whole blocking API (dicomnet.sync) against real peers.

DCMTK storescp receives the three kinds of C-STORE source; dcmqrscp answers
find, move and get consumed as plain iterators; pynetdicom sees the C-CANCEL
sent when an iteration stops early and answers the six DIMSE-N requests;
the dicomnet archive grants storage commitment; pynetdicom is the SCU of the
blocking listener, whose handlers are plain functions.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

import dicomnet.sync
from dicomnet.core.dimse import CommandField
from dicomnet.core.uids import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from dicomnet.net.association import IncomingRequest
from dicomnet.net.retrieve import get_contexts
from dicomnet.services.commitment import commitment_contexts

from factory import ct_dataset, dataset_bytes, make_study, write_part10
from peers import dcmqrscp, dcmtk_server, free_port

pytestmark = pytest.mark.interop

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"


def loop_threads() -> int:
    return len([t for t in threading.enumerate() if t.name == "dicomnet-loop"])


def study_query(study: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    return query


def test_store_a_dataset_bytes_and_a_file_into_storescp(tmp_path: Path) -> None:
    out = tmp_path / "received"
    out.mkdir()
    from_dataset, from_bytes, from_file = ct_dataset(0), ct_dataset(1), ct_dataset(2)
    path = write_part10(from_file, tmp_path / "file.dcm")
    raw = write_part10(from_bytes, tmp_path / "raw.dcm")
    port = free_port()
    with dcmtk_server("storescp", ["-od", str(out), "+xe", str(port)], port):
        with dicomnet.sync.connect(
            "127.0.0.1", port, called_ae_title="STORESCP", contexts=[(CT, [EXPLICIT])]
        ) as assoc:
            assert assoc.store(from_dataset).status == 0x0000
            assert (
                assoc.store(
                    dataset_bytes(raw),
                    sop_class_uid=CT,
                    sop_instance_uid=str(from_bytes.SOPInstanceUID),
                    transfer_syntax=EXPLICIT,
                ).status
                == 0x0000
            )
            assert assoc.store(path).status == 0x0000
    received = {str(dcmread(p).SOPInstanceUID): p for p in out.iterdir()}
    assert set(received) == {str(d.SOPInstanceUID) for d in (from_dataset, from_bytes, from_file)}
    assert dataset_bytes(received[str(from_file.SOPInstanceUID)]) == dataset_bytes(path)
    assert dataset_bytes(received[str(from_bytes.SOPInstanceUID)]) == dataset_bytes(raw)
    assert dcmread(received[str(from_dataset.SOPInstanceUID)]).PixelData == from_dataset.PixelData
    assert loop_threads() == 1


def test_find_move_and_get_as_plain_iterators_against_dcmqrscp(tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "study", 3)
    moved: list[str] = []
    fetched: list[str] = []
    destination_port = free_port()

    def stored(into: list[str]) -> Any:
        def handle(request: IncomingRequest) -> int:
            # a plain function, run in the loop's worker pool, never on the loop thread
            assert threading.current_thread().name != "dicomnet-loop"
            into.append(str(request.dataset.SOPInstanceUID))
            return 0x0000

        return handle

    destination = dicomnet.sync.Listener(
        "DEST", host="127.0.0.1", port=destination_port, accept_any_storage=True
    )
    destination.on_c_store(stored(moved))
    with destination, dcmqrscp(tmp_path / "qr", destination_port) as port:
        with dicomnet.sync.connect(
            "127.0.0.1", port, called_ae_title="QRSCP", contexts=[(CT, [EXPLICIT])]
        ) as assoc:
            for path in paths:
                assert assoc.store(path).status == 0x0000
        with dicomnet.sync.connect(
            "127.0.0.1",
            port,
            called_ae_title="QRSCP",
            calling_ae_title="DEST",
            contexts=[(STUDY_ROOT_FIND, [EXPLICIT]), (STUDY_ROOT_MOVE, [EXPLICIT])],
        ) as assoc:
            query = study_query(study)
            query.PatientID = ""
            found = list(assoc.find(query, STUDY_ROOT_FIND))
            assert [r.pending for r in found] == [True, False]
            assert found[0].identifier.StudyInstanceUID == study
            responses = list(assoc.move(study_query(study), STUDY_ROOT_MOVE, "DEST"))
            assert responses[-1].status == 0x0000
            assert responses[-1].message.number_of_completed_suboperations == 3
        contexts, roles = get_contexts(STUDY_ROOT_GET, [CT])
        with dicomnet.sync.connect(
            "127.0.0.1",
            port,
            called_ae_title="QRSCP",
            contexts=contexts,
            roles=roles,
            handlers={CommandField.C_STORE_RQ: stored(fetched)},
        ) as assoc:
            responses = list(assoc.get(study_query(study), STUDY_ROOT_GET))
            assert responses[-1].status == 0x0000
    expected = sorted(str(dcmread(p).SOPInstanceUID) for p in paths)
    assert sorted(moved) == expected
    assert sorted(fetched) == expected


@pytest.fixture
def pynetdicom_scp() -> Any:
    """A pynetdicom SCP: a C-FIND that records C-CANCEL, and the six DIMSE-N services."""
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    seen: dict[str, Any] = {"cancelled": threading.Event(), "n": []}

    def on_find(event: Any) -> Any:
        for index in range(200):
            if event.is_cancelled:
                seen["cancelled"].set()
                yield 0xFE00, None
                return
            match = Dataset()
            match.QueryRetrieveLevel = "STUDY"
            match.StudyInstanceUID = f"1.2.3.{index}"
            yield 0xFF00, match
            time.sleep(0.02)

    def attributes(**values: Any) -> Dataset:
        ds = Dataset()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        return ds

    def on_n(name: str, reply: Dataset | None) -> Any:
        def handle(event: Any) -> Any:
            seen["n"].append(name)
            return 0x0000 if name == "delete" else (0x0000, reply)

        return handle

    ae = AE(ae_title="PYSCP")
    ae.add_supported_context(STUDY_ROOT_FIND, [EXPLICIT, IMPLICIT])
    ae.add_supported_context("1.2.840.10008.1.1")
    for uid in (PRINTER, FILM_SESSION):
        ae.add_supported_context(uid, [EXPLICIT, IMPLICIT])
    handlers = [
        (evt.EVT_C_FIND, on_find),
        (evt.EVT_N_GET, on_n("get", attributes(PrinterName="P1"))),
        (evt.EVT_N_SET, on_n("set", attributes(NumberOfCopies=2))),
        (evt.EVT_N_ACTION, on_n("action", None)),
        (evt.EVT_N_CREATE, on_n("create", attributes(NumberOfCopies=1))),
        (evt.EVT_N_DELETE, on_n("delete", None)),
        (evt.EVT_N_EVENT_REPORT, on_n("event", None)),
    ]
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:
        yield port, seen
    finally:
        server.shutdown()


PRINTER = "1.2.840.10008.5.1.1.16"
FILM_SESSION = "1.2.840.10008.5.1.1.1"


def test_stopping_a_find_iteration_sends_c_cancel(pynetdicom_scp: Any) -> None:
    port, seen = pynetdicom_scp
    with dicomnet.sync.connect(
        "127.0.0.1", port, called_ae_title="PYSCP", contexts=[(STUDY_ROOT_FIND, [EXPLICIT])]
    ) as assoc:
        query = study_query("")
        taken = []
        for response in assoc.find(query, STUDY_ROOT_FIND):
            taken.append(response.identifier.StudyInstanceUID)
            if len(taken) == 3:
                break
        assert seen["cancelled"].wait(10)
        assert taken == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]
        # the association is still usable: the cancelled request was answered
        assert assoc.echo().status == 0x0000
        iterator = assoc.find(query, STUDY_ROOT_FIND)
        assert next(iterator).pending
        iterator.close()  # explicit: C-CANCEL again, and the final response awaited
        assert assoc.echo().status == 0x0000


def test_the_six_n_services_against_pynetdicom(pynetdicom_scp: Any) -> None:
    port, seen = pynetdicom_scp
    with dicomnet.sync.connect(
        "127.0.0.1",
        port,
        called_ae_title="PYSCP",
        contexts=[(PRINTER, [EXPLICIT]), (FILM_SESSION, [EXPLICIT])],
    ) as assoc:
        got = assoc.n_get(PRINTER, "1.2.840.10008.5.1.1.17", ["PrinterName"])
        assert got.ok and got.attributes.PrinterName == "P1"
        change = Dataset()
        change.NumberOfCopies = 2
        assert assoc.n_set(FILM_SESSION, "1.2.3.9", change).attributes.NumberOfCopies == 2
        created = assoc.n_create(FILM_SESSION, "1.2.3.9", change)
        assert created.ok and created.attributes.NumberOfCopies == 1
        assert assoc.n_action(FILM_SESSION, "1.2.3.9", 1).status == 0x0000
        assert assoc.n_event_report(PRINTER, "1.2.840.10008.5.1.1.17", 1).status == 0x0000
        assert assoc.n_delete(FILM_SESSION, "1.2.3.9").status == 0x0000
    assert seen["n"] == ["get", "set", "create", "action", "event", "delete"]


def test_storage_commitment_from_the_blocking_api(tmp_path: Path) -> None:
    listener = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dicomnet",
            "listen",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--aet",
            "ARCHIVE",
            "--dir",
            str(tmp_path / "archive"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert listener.stdout is not None
        port = int(listener.stdout.readline().strip().rsplit(":", 1)[1])
        stored = ct_dataset(0)
        contexts, roles = commitment_contexts()
        with dicomnet.sync.connect(
            "127.0.0.1", port, contexts=[*contexts, (CT, [EXPLICIT])], roles=roles
        ) as assoc:
            assert assoc.store(stored).status == 0x0000
            result = assoc.request_commitment(
                [(CT, str(stored.SOPInstanceUID)), (CT, "1.2.3.4.404")], timeout=20
            )
        assert result.committed == [(CT, str(stored.SOPInstanceUID))]
        assert [(uid, reason) for _, uid, reason in result.failed] == [("1.2.3.4.404", 0x0112)]
    finally:
        listener.terminate()
        listener.wait(timeout=15)


def test_blocking_listener_with_plain_handlers_serves_pynetdicom(tmp_path: Path) -> None:
    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    stored: list[str] = []
    scp = dicomnet.sync.Listener("SYNCSCP", host="127.0.0.1", accept_any_storage=True)

    @scp.on_c_store
    def store(request: IncomingRequest) -> int:
        stored.append(str(request.dataset.SOPInstanceUID))
        return 0x0000

    @scp.on_c_find
    def find(request: IncomingRequest) -> Any:
        for uid in ("1.2.3.1", "1.2.3.2"):
            match = Dataset()
            match.QueryRetrieveLevel = "STUDY"
            match.StudyInstanceUID = uid
            yield 0xFF00, match

    with pytest.raises(RuntimeError, match="listen"):
        scp.port  # noqa: B018 - not listening yet
    with scp:
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        ae.add_requested_context(CT, EXPLICIT)
        ae.add_requested_context(STUDY_ROOT_FIND, EXPLICIT)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="SYNCSCP")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        dataset = ct_dataset(3)
        write_part10(dataset, Path(tmp_path) / "sent.dcm")
        assert assoc.send_c_store(dataset).Status == 0x0000
        found = [
            identifier for _, identifier in assoc.send_c_find(study_query(""), STUDY_ROOT_FIND)
        ]
        assoc.release()
    assert stored == [str(dataset.SOPInstanceUID)]
    assert [f.StudyInstanceUID for f in found if f is not None] == ["1.2.3.1", "1.2.3.2"]
    assert loop_threads() == 1


def test_serve_forever_blocks_until_closed_from_another_thread() -> None:
    scp = dicomnet.sync.Listener("FOREVER", host="127.0.0.1")
    served = threading.Thread(target=scp.serve_forever, name="serving")
    served.start()
    port = None
    for _ in range(100):
        try:
            port = scp.port
            break
        except RuntimeError:  # not listening yet
            time.sleep(0.05)
    assert port is not None
    with dicomnet.sync.connect("127.0.0.1", port, called_ae_title="FOREVER") as assoc:
        assert assoc.echo().status == 0x0000
    assert served.is_alive()  # still serving after the association
    scp.close()
    served.join(10)
    assert not served.is_alive()
    assert loop_threads() == 1
