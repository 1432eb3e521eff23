"""The Modality Worklist SCP: items from a folder, sequence matching, DCMTK and pynetdicom."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomnet.core.uids import MODALITY_WORKLIST_FIND
from dicomnet.net.listener import Listener
from dicomnet.services.worklist import WorklistProvider

from peers import dcmtk, dcmtk_env

STEP = "ScheduledProcedureStepSequence[0]"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def item(name: str, patient_id: str, modality: str, station: str, date: str) -> Dataset:
    ds = Dataset()
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.AccessionNumber = f"ACC{patient_id}"
    ds.StudyInstanceUID = f"1.2.3.{patient_id[-1]}"
    step = Dataset()
    step.Modality = modality
    step.ScheduledStationAETitle = station
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledProcedureStepID = f"SPS{patient_id}"
    ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


@pytest.fixture
def worklist(tmp_path: Path) -> Path:
    folder = tmp_path / "worklist"
    folder.mkdir()
    ct = item("DOE^JANE", "W1", "CT", "CT01", "20261122")
    mr = item("DOE^JOHN", "W2", "MR", "MR01", "20261123")
    late = item("ROE^RICHARD", "W3", "CT", "CT01", "20261201")
    (folder / "w1.json").write_text(json.dumps(ct.to_json_dict()))
    (folder / "w2.json").write_text(json.dumps(mr.to_json_dict()))
    late.file_meta = Dataset()
    late.save_as(folder / "w3.wl", implicit_vr=False, little_endian=True)
    (folder / "broken.json").write_text("{ not json")
    return folder


def worklist_query(**step_keys: str) -> Dataset:
    query = Dataset()
    query.PatientName = ""
    query.PatientID = ""
    query.AccessionNumber = ""
    step = Dataset()
    step.Modality = ""
    step.ScheduledStationAETitle = ""
    step.ScheduledProcedureStepStartDate = ""
    for keyword, value in step_keys.items():
        setattr(step, keyword, value)
    query.ScheduledProcedureStepSequence = Sequence([step])
    return query


@pytest.mark.interop
def test_dcmtk_findscu_worklist_queries(worklist: Path, tmp_path: Path) -> None:
    out = tmp_path / "responses"
    out.mkdir()

    async def scenario() -> str:
        listener = Listener("WLSCP")
        WorklistProvider(worklist).attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            process = await asyncio.create_subprocess_exec(
                dcmtk("findscu"), "-W", "-X", "-od", str(out), "-aec", "WLSCP",
                "-k", "PatientName", "-k", "PatientID",
                "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
                "-k", f"{STEP}.ScheduledProcedureStepStartDate=20261101-20261130",
                "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
                "127.0.0.1", str(listener.port),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dcmtk_env(),
            )  # fmt: skip
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, output.decode(errors="replace")
            return output.decode(errors="replace")

    run(scenario())
    responses = [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    assert [r.PatientID for r in responses] == ["W1"]
    step = responses[0].ScheduledProcedureStepSequence[0]
    assert (step.Modality, step.ScheduledStationAETitle) == ("CT", "CT01")


@pytest.mark.interop
def test_pynetdicom_worklist_query_by_name_and_station(worklist: Path) -> None:
    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

    def query_side(port: int, query: Dataset) -> list[str]:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(MODALITY_WORKLIST_FIND)
        assoc = ae.associate("127.0.0.1", port, ae_title="WLSCP")
        assert assoc.is_established
        found = []
        try:
            for status, identifier in assoc.send_c_find(query, MODALITY_WORKLIST_FIND):
                if status and status.Status in (0xFF00, 0xFF01):
                    found.append(str(identifier.PatientID))
        finally:
            assoc.release()
        return found

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        listener = Listener("WLSCP")
        WorklistProvider(worklist).attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            by_name = worklist_query()
            by_name.PatientName = "doe*"
            by_station = worklist_query(ScheduledStationAETitle="CT01")
            everything = worklist_query()
            return (
                await asyncio.to_thread(query_side, listener.port, by_name),
                await asyncio.to_thread(query_side, listener.port, by_station),
                await asyncio.to_thread(query_side, listener.port, everything),
            )

    by_name, by_station, everything = run(scenario())
    assert by_name == ["W1", "W2"]
    assert by_station == ["W1", "W3"]
    assert everything == ["W1", "W2", "W3"]


def test_listen_serves_worklist_and_mpps_from_the_command_line(
    worklist: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from dicomnet.core.uids import MPPS
    from dicomnet.net import client
    from dicomnet.services.mpps import complete_procedure_step, start_procedure_step

    from peers import free_port, wait_for_port

    port = free_port()
    listener = subprocess.Popen(
        [
            sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1",
            "--port", str(port), "--dir", str(tmp_path / "archive"),
            "--worklist", str(worklist), "--mpps", str(tmp_path / "mpps"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)

        async def scenario() -> tuple[list[str], int]:
            async with client.connect(
                "127.0.0.1",
                port,
                contexts=[
                    (MODALITY_WORKLIST_FIND, ["1.2.840.10008.1.2"]),
                    (MPPS, ["1.2.840.10008.1.2"]),
                ],
            ) as assoc:
                found = [
                    str(r.identifier.PatientID)
                    async for r in assoc.find(worklist_query(Modality="MR"), MODALITY_WORKLIST_FIND)
                    if r.pending
                ]
                step = Dataset()
                step.PatientID = "W2"
                created = await start_procedure_step(assoc, step)
                uid = created.message.affected_sop_instance_uid
                done = await complete_procedure_step(assoc, uid, Dataset())
                return found, done.status

        found, status = run(scenario())
    finally:
        listener.terminate()
        listener.wait(timeout=30)
    assert found == ["W2"]
    assert status == 0
    assert len(list((tmp_path / "mpps").glob("*.json"))) == 1


# -- matching, without a network -----------------------------------------------------------
def two_step_item() -> Dataset:
    ds = item("SMITH^ANNA", "W4", "CT", "CT02", "20261124")
    step = Dataset()
    step.Modality = "MR"
    step.ScheduledStationAETitle = "MR02"
    step.ScheduledProcedureStepStartDate = "20261126"
    step.ScheduledProcedureStepID = "SPSW4B"
    ds.ScheduledProcedureStepSequence.append(step)
    return ds


@pytest.mark.parametrize(
    ("keys", "step_keys", "matched"),
    [
        ({"PatientName": "SMITH^ANN?"}, {}, True),
        ({"PatientName": "SMITH^AN?"}, {}, False),  # ? is exactly one character
        ({"PatientName": "smith*"}, {}, True),  # PN case-insensitive
        ({"PatientName": "*ANNA"}, {}, True),
        ({"PatientID": "W4"}, {}, True),
        ({"PatientID": "W"}, {}, False),  # single value matching is exact
        ({}, {"Modality": "MR"}, True),  # any scheduled step may match
        ({}, {"Modality": "US"}, False),
        ({}, {"Modality": "MR", "ScheduledStationAETitle": "CT02"}, False),  # same item
        ({}, {"ScheduledProcedureStepStartDate": "20261125-"}, True),
        ({}, {"ScheduledProcedureStepStartDate": "-20261123"}, False),
        ({}, {"ScheduledProcedureStepStartDate": "20261124"}, True),
        ({}, {"ScheduledProcedureStepStartDate": "20261201-20261231"}, False),
    ],
)
def test_item_matching(keys: dict[str, str], step_keys: dict[str, str], matched: bool) -> None:
    from dicomnet.services.worklist import item_matches

    query = worklist_query(**step_keys)
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    assert item_matches(query, two_step_item()) is matched


def test_response_holds_requested_keys_and_matching_steps_only(tmp_path: Path) -> None:
    from dicomnet.services.worklist import _response

    query = worklist_query(Modality="MR")
    query.PatientBirthDate = ""  # a return key the item lacks: returned empty
    response = _response(query, two_step_item())
    assert response.PatientName == "SMITH^ANNA" and response.PatientID == "W4"
    assert response.PatientBirthDate in ("", None)
    assert "StudyInstanceUID" not in response  # not asked for
    (step,) = response.ScheduledProcedureStepSequence
    assert (step.Modality, step.ScheduledStationAETitle) == ("MR", "MR02")
    assert "ScheduledProcedureStepID" not in step


def test_items_read_from_part10_json_and_headerless_files(tmp_path: Path) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder = tmp_path / "items"
    folder.mkdir()
    with_meta = item("A^B", "P1", "CT", "CT01", "20261122")
    with_meta.file_meta = FileMetaDataset()
    with_meta.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with_meta.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
    with_meta.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.77"
    with_meta.save_as(folder / "a.dcm", enforce_file_format=True)
    (folder / "b.json").write_text(
        json.dumps(item("C^D", "P2", "MR", "MR01", "20261122").to_json_dict())
    )
    (folder / "notes.txt").write_text("not an item")
    (folder / "c.wl").write_bytes(b"\x00" * 10)  # unreadable: skipped, not fatal
    found = WorklistProvider(folder).items()
    assert sorted(str(ds.PatientID) for ds in found) == ["P1", "P2"]
