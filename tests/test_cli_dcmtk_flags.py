"""The command line a DCMTK user expects (docs/cli.md), each flag against a real peer.

``--propose`` against storescp accepting Implicit VR only; ``find --cancel``
against a pynetdicom SCP that records the C-CANCEL; ``-f`` DICOM JSON queries
against dcmqrscp; ``store --retries`` against a pynetdicom SCP that aborts
the first association part way; skipped files and ``--report`` against
storescp.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomnet.cli.main import main
from dicomnet.core.uids import STUDY_ROOT_FIND

from factory import ct_dataset, dataset_bytes, make_study, write_part10
from peers import dcmqrscp, dcmtk_server, free_port, run_dcmtk

pytestmark = pytest.mark.interop

CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def invoke(*args: str) -> Any:
    return CliRunner(env={"COLUMNS": "400"}).invoke(main, list(args))


# -- --propose ------------------------------------------------------------------------------
def test_propose_against_storescp_accepting_implicit_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ds = ct_dataset(0)
    path = write_part10(ds, tmp_path / "ct.dcm", EXPLICIT)
    port = free_port()
    with dcmtk_server("storescp", ["+xi", "-od", str(out), str(port)], port):
        refused = invoke("echo", "--propose", "explicit", "127.0.0.1", str(port))
        assert refused.exit_code != 0
        assert invoke("echo", "--propose", "implicit", "127.0.0.1", str(port)).exit_code == 0
        stored = invoke("store", "-q", "--propose", "implicit", "127.0.0.1", str(port), str(path))
        assert stored.exit_code == 0, stored.output
    (received,) = out.iterdir()
    assert dcmread(received).file_meta.TransferSyntaxUID == IMPLICIT
    converted = dcmread(received)
    assert converted.SOPInstanceUID == ds.SOPInstanceUID
    assert converted.PixelData == ds.PixelData


def test_propose_rejects_an_unknown_name() -> None:
    result = invoke("echo", "--propose", "implicit,nonsense", "127.0.0.1", "104")
    assert result.exit_code == 2
    assert "nonsense" in result.output


# -- find --cancel N ------------------------------------------------------------------------
def test_find_cancel_after_n_matches_against_pynetdicom() -> None:
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    cancelled = threading.Event()
    sent: list[int] = []

    def on_find(event: Any) -> Any:
        for index in range(100):
            if event.is_cancelled:
                cancelled.set()
                yield 0xFE00, None
                return
            match = Dataset()
            match.QueryRetrieveLevel = "STUDY"
            match.StudyInstanceUID = f"1.2.3.{index}"
            sent.append(index)
            yield 0xFF00, match
            time.sleep(0.05)

    ae = AE(ae_title="PYSCP")
    ae.add_supported_context(STUDY_ROOT_FIND, [EXPLICIT, IMPLICIT])
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)]
    )
    try:
        result = invoke("find", "--json", "--cancel", "3", "127.0.0.1", str(port))
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    matches = json.loads(result.stdout)
    assert [m["0020000D"]["Value"] for m in matches] == [["1.2.3.0"], ["1.2.3.1"], ["1.2.3.2"]]
    assert cancelled.is_set()
    assert len(sent) < 100
    assert "cancelled after 3 matches" in result.stderr


# -- -f query.json --------------------------------------------------------------------------
def test_query_from_a_dicom_json_file_against_dcmqrscp(tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "archive", 2)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "NO-SUCH-PATIENT"  # overridden by -k below
    query.StudyInstanceUID = ""
    query.StudyDescription = ""
    query_file = tmp_path / "query.json"
    query_file.write_text(json.dumps(query.to_json_dict()))
    with dcmqrscp(tmp_path / "qr", free_port()) as port:
        loaded = run_dcmtk("storescu", "-aec", "QRSCP", "127.0.0.1", str(port), *map(str, paths))
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        common = ("find", "--aec", "QRSCP", "--json", "-f", str(query_file))
        none = invoke(*common, "127.0.0.1", str(port))
        assert none.exit_code == 0, none.output
        assert json.loads(none.stdout) == []
        found = invoke(*common, "-k", "PatientID=PID-RETRIEVE", "127.0.0.1", str(port))
        assert found.exit_code == 0, found.output
        (match,) = json.loads(found.stdout)
        assert match["0020000D"]["Value"] == [study]
        assert "00081030" in match  # asked for by the file, no default keys added
        assert "00080061" not in match
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert invoke("find", "-f", str(bad), "127.0.0.1", "104").exit_code == 2


# -- store --retries N, skipping, --report --------------------------------------------------
def aborting_scp(abort_after: int) -> tuple[Any, int, list[str], list[int]]:
    """A pynetdicom storage SCP that aborts its first association after N stores."""
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    stored: list[str] = []
    associations: list[int] = []

    def on_store(event: Any) -> int:
        if id(event.assoc) not in associations:
            associations.append(id(event.assoc))
        if len(associations) == 1 and len(stored) >= abort_after:
            event.assoc.abort()
            return 0xA700
        stored.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="PYSTORE")
    ae.add_supported_context(CT, [EXPLICIT, IMPLICIT])
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    return server, port, stored, associations


def test_store_retries_unacknowledged_files_on_a_new_association(tmp_path: Path) -> None:
    paths = [write_part10(ct_dataset(i), tmp_path / f"{i}.dcm") for i in range(6)]
    uids = sorted(str(dcmread(p).SOPInstanceUID) for p in paths)
    report = tmp_path / "report.jsonl"
    server, port, stored, associations = aborting_scp(abort_after=2)
    try:
        result = invoke(
            "store", "-q", "--window", "1", "--retries", "2", "--report", str(report),
            "127.0.0.1", str(port), *map(str, paths),
        )  # fmt: skip
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert len(associations) == 2  # the first aborted, the rest went on a new one
    assert sorted(stored) == uids
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(line["sop_instance_uid"] for line in lines) == uids
    assert {line["outcome"] for line in lines} == {"success"}
    assert {line["status"] for line in lines} == {0}


def test_store_without_retries_reports_the_unacknowledged_files(tmp_path: Path) -> None:
    paths = [write_part10(ct_dataset(i), tmp_path / f"{i}.dcm") for i in range(4)]
    report = tmp_path / "report.jsonl"
    server, port, stored, associations = aborting_scp(abort_after=2)
    try:
        result = invoke(
            "store", "-q", "--window", "1", "--retries", "0", "--report", str(report),
            "127.0.0.1", str(port), *map(str, paths),
        )  # fmt: skip
    finally:
        server.shutdown()
    assert result.exit_code == 1
    assert len(associations) == 1 and len(stored) == 2
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    outcomes = sorted(line["outcome"] for line in lines)
    assert outcomes == ["failure", "failure", "success", "success"]


def test_non_dicom_files_and_dicomdir_are_skipped_with_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = [write_part10(ct_dataset(i), folder / f"{i}.dcm") for i in range(2)]
    (folder / "README.txt").write_text("not DICOM at all")
    dicomdir = Dataset()
    dicomdir.SOPClassUID = "1.2.840.10008.1.3.10"
    dicomdir.SOPInstanceUID = "1.2.3.4.5"
    write_part10(dicomdir, folder / "DICOMDIR")
    out = tmp_path / "out"
    out.mkdir()
    report = tmp_path / "report.jsonl"
    port = free_port()
    with dcmtk_server("storescp", ["-od", str(out), str(port)], port):
        result = invoke(
            "store", "-q", "-r", "--report", str(report), "127.0.0.1", str(port), str(folder)
        )
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and "README.txt" in result.stderr
    assert "DICOMDIR" in result.stderr
    assert sorted(dataset_bytes(p) for p in out.iterdir()) == sorted(dataset_bytes(p) for p in good)
    lines = {
        Path(line["path"]).name: line for line in map(json.loads, report.read_text().splitlines())
    }
    assert lines["README.txt"]["outcome"] == "skipped"
    assert lines["DICOMDIR"]["outcome"] == "skipped"
    assert lines["0.dcm"]["outcome"] == "success" and lines["1.dcm"]["status"] == 0


def test_propose_names_and_store_contexts() -> None:
    from types import SimpleNamespace

    from dicomnet.cli.network import parse_propose
    from dicomnet.cli.store_support import contexts_for

    assert parse_propose("implicit, explicit,big,deflated") == (
        IMPLICIT, EXPLICIT, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    )  # fmt: skip
    assert parse_propose("1.2.840.10008.1.2.4.80,implicit,implicit") == (
        "1.2.840.10008.1.2.4.80", IMPLICIT,
    )  # fmt: skip
    jpeg_ls = "1.2.840.10008.1.2.4.80"
    jobs = [
        SimpleNamespace(sop_class_uid=CT, transfer_syntax=EXPLICIT),
        SimpleNamespace(sop_class_uid=CT, transfer_syntax=jpeg_ls),
        SimpleNamespace(sop_class_uid="1.2.3", transfer_syntax=EXPLICIT),
    ]
    # the proposed syntaxes per class; a compressed file's own only when not convertible
    assert contexts_for(jobs, (IMPLICIT,)) == [
        (CT, [IMPLICIT]), (CT, [jpeg_ls]), ("1.2.3", [IMPLICIT]),
    ]  # fmt: skip
    assert contexts_for(jobs, (jpeg_ls, IMPLICIT)) == [
        (CT, [jpeg_ls, IMPLICIT]), ("1.2.3", [jpeg_ls, IMPLICIT]),
    ]  # fmt: skip
