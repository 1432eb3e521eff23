"""The archive's folder layout, its duplicate policy, and what it refuses to file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomnet.archive.archive import INDEX_NAME, Archive
from dicomnet.net import client
from dicomnet.net.listener import Listener
from dicomnet.services.storage import FolderStorage, remove_leftovers

from factory import ct_dataset, dataset_bytes, write_part10

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def send(folder: Path, items: list[Dataset | Path], **options) -> list[int]:
    """Store ``items`` one after another into an archive at ``folder``; their statuses."""
    listener = Listener("ARCHIVE", accept_any_storage=True)
    archive = Archive(folder, fsync=True, **options)
    archive.attach(listener)
    await listener.listen("127.0.0.1", 0)
    statuses = []
    async with listener:
        async with client.connect("127.0.0.1", listener.port, contexts=[(CT, [EXPLICIT])]) as a:
            for item in items:
                statuses.append(int((await a.store(item)).status))
    await archive.close()
    return statuses


def index_rows(folder: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(folder / INDEX_NAME) as db:
        return db.execute("SELECT sop_instance_uid, series_uid, path FROM instances").fetchall()


def stored_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm") if ".incoming" not in p.parts)


def test_instances_are_filed_by_study_and_series(tmp_path: Path) -> None:
    first, second = ct_dataset(1), ct_dataset(2)
    second.StudyInstanceUID = first.StudyInstanceUID
    assert run(send(tmp_path / "archive", [first, second])) == [0, 0]
    archive = tmp_path / "archive"
    expected = {
        archive / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        for ds in (first, second)
    }
    assert set(stored_files(archive)) == expected
    assert {Path(path) for _, _, path in index_rows(archive)} == expected
    assert not list((archive / ".incoming").iterdir())


@pytest.mark.parametrize(
    ("policy", "second_status", "kept"),
    [("keep", 0xB000, "first"), ("replace", 0x0000, "second"), ("reject", 0x0111, "first")],
)
def test_duplicate_policy(tmp_path: Path, policy: str, second_status: int, kept: str) -> None:
    ds = ct_dataset(3)
    first = write_part10(ds, tmp_path / "first.dcm")
    ds.PatientName = "CHANGED^NAME"
    second = write_part10(ds, tmp_path / "second.dcm")
    archive = tmp_path / "archive"
    statuses = run(send(archive, [first, second], duplicates=policy))
    assert statuses == [0x0000, second_status]
    (stored,) = stored_files(archive)
    expected = first if kept == "first" else second
    assert dataset_bytes(stored) == dataset_bytes(expected)
    assert [Path(path) for _, _, path in index_rows(archive)] == [stored]
    with sqlite3.connect(archive / INDEX_NAME) as db:
        (sha256,) = db.execute("SELECT sha256 FROM instances").fetchone()
        (name,) = db.execute(
            "SELECT p.patient_name FROM studies st JOIN patients p ON p.pk = st.patient_pk"
        ).fetchone()
    assert sha256 == hashlib.sha256(dataset_bytes(expected)).hexdigest()
    assert name == ("CHANGED^NAME" if kept == "second" else "TEST^PATIENT0")


@pytest.mark.parametrize("policy", ["keep", "replace", "reject"])
def test_duplicate_filed_under_another_series(tmp_path: Path, policy: str) -> None:
    """The same SOP Instance UID under another series: the index, not the path, decides."""
    ds = ct_dataset(4)
    first = write_part10(ds, tmp_path / "first.dcm")
    first_series = ds.SeriesInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    second = write_part10(ds, tmp_path / "second.dcm")
    archive = tmp_path / "archive"
    statuses = run(send(archive, [first, second], duplicates=policy))
    expected_status = {"keep": 0xB000, "replace": 0x0000, "reject": 0x0111}[policy]
    assert statuses == [0x0000, expected_status]
    (stored,) = stored_files(archive)
    ((uid, series, path),) = index_rows(archive)
    assert Path(path) == stored and uid == ds.SOPInstanceUID
    assert series == (ds.SeriesInstanceUID if policy == "replace" else first_series)
    assert stored.parent.name == series


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
def test_unsafe_or_missing_uids_in_the_dataset_are_refused(tmp_path: Path) -> None:
    traversal = ct_dataset(5)
    traversal.StudyInstanceUID = "../../../tmp"
    no_series = ct_dataset(6)
    del no_series.SeriesInstanceUID
    long_series = ct_dataset(7)
    long_series.SeriesInstanceUID = "1." * 40 + "1"
    archive = tmp_path / "archive"
    items = [traversal, no_series, long_series, ct_dataset(8)]
    assert run(send(archive, items)) == [0xC000, 0xC000, 0xC000, 0x0000]
    assert len(stored_files(archive)) == 1
    assert len(index_rows(archive)) == 1
    assert not list((archive / ".incoming").iterdir())
    assert not (tmp_path / "tmp").exists()


def test_dataset_uid_other_than_the_command_is_refused(tmp_path: Path) -> None:
    ds = ct_dataset(9)
    raw = dataset_bytes(write_part10(ds, tmp_path / "in.dcm"))
    archive = tmp_path / "archive"

    async def scenario() -> int:
        listener = Listener("ARCHIVE", accept_any_storage=True)
        store = Archive(archive, fsync=False)
        store.attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            async with client.connect(
                "127.0.0.1", listener.port, contexts=[(CT, [EXPLICIT])]
            ) as assoc:
                response = await assoc.store(
                    raw,
                    sop_class_uid=CT,
                    sop_instance_uid=generate_uid(),  # not the dataset's
                    transfer_syntax=EXPLICIT,
                )
        await store.close()
        return int(response.status)

    assert run(scenario()) == 0xC000
    assert stored_files(archive) == []


def test_leftovers_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    incoming = tmp_path / "archive" / ".incoming"
    incoming.mkdir(parents=True)
    dead = incoming / f"1.2.3.{2**22 + 12345}.0.part"  # above pid_max's default
    alive = incoming / f"1.2.4.{os.getppid()}.0.part"
    dead.write_bytes(b"half")
    alive.write_bytes(b"half")
    FolderStorage(tmp_path / "archive", layout="study")
    assert not dead.exists() and alive.exists()
    assert remove_leftovers(incoming) == 0


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicates"):
        FolderStorage(tmp_path, duplicates="overwrite")
    with pytest.raises(ValueError, match="layout"):
        FolderStorage(tmp_path, layout="by-date")
