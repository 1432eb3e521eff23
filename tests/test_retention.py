"""Retention and quotas: the oldest studies go, files and rows together, crash-safely.

Against ``dicomnet listen --max-storage`` fed by DCMTK's storescu and pynetdicom,
``dicomnet archive prune`` killed with SIGKILL mid-way, and the index on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
)

from dicomnet.archive.archive import Archive
from dicomnet.archive.index import ArchiveIndex, IndexEntry
from dicomnet.archive.maintenance import verify
from dicomnet.archive.retention import Pruner, RetentionPolicy, _delete_rows
from dicomnet.net import client
from dicomnet.net.listener import Listener

from factory import ct_dataset, make_study, write_part10
from peers import dcmtk_env, free_port, run_dcmtk, wait_for_port
from postgres_server import postgres_server

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def run(coro, timeout: float = 120.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def entry(study: str, series: str, uid: str, stored_at: float, size: int = 1000) -> IndexEntry:
    attributes = dict.fromkeys(
        ["PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName",
         "SeriesNumber", "SeriesDescription", "BodyPartExamined", "InstanceNumber",
         "SpecificCharacterSet"], "",
    )  # fmt: skip
    attributes.update(
        PatientID="P-" + study[-4:],
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        SOPInstanceUID=uid,
        SOPClassUID=CT,
        Modality="CT",
    )
    return IndexEntry(f"/nonexistent/{uid}.dcm", size, EXPLICIT, "", attributes, "", stored_at)


async def fill(index: ArchiveIndex, studies: list[tuple[str, float, int]]) -> None:
    """Studies of ``count`` instances of 1000 bytes, last received at ``when``."""
    for study, when, count in studies:
        series = generate_uid()
        for n in range(count):
            await index.add(entry(study, series, generate_uid(), when - count + n + 1))


def plan_scenario(location: str) -> None:
    now = 1_000_000.0
    old, middle, new, arriving = (generate_uid() for _ in range(4))

    async def scenario() -> None:
        index = ArchiveIndex(location, durable=False)
        try:
            await fill(
                index,
                [(old, now - 10 * 86400, 3), (middle, now - 5 * 86400, 2),
                 (new, now - 3600, 4), (arriving, now - 5, 1)],
            )  # fmt: skip
            quota = Pruner(index, RetentionPolicy(max_storage=6000, arriving_window=60))
            report = await quota.plan(now)
            # 10,000 bytes: the two oldest studies go (5,000), then 5,000 <= 6,000.
            assert [s.study_uid for s in report.studies] == [old, middle]
            assert {s.reason for s in report.studies} == {"quota"}
            assert report.total_before == 10_000

            expiry = Pruner(index, RetentionPolicy(keep_days=7, arriving_window=60))
            assert [s.study_uid for s in (await expiry.plan(now)).studies] == [old]

            # A quota only the arriving study could meet: it is kept, and said so.
            tight = Pruner(index, RetentionPolicy(max_storage=0, arriving_window=60))
            report = await tight.plan(now)
            assert [s.study_uid for s in report.studies] == [old, middle, new]
            assert report.kept_arriving == 1

            done = await tight.prune(now)
            assert [s.study_uid for s in done.studies] == [old, middle, new]
            left = await index.find("STUDY", {"StudyInstanceUID": ("", "UI")})
            assert [row["StudyInstanceUID"] for row in left] == [arriving]
            assert await index.count() == 1
            patients = await index.find("PATIENT", {"PatientID": ("", "LO")})
            assert [row["PatientID"] for row in patients] == ["P-" + arriving[-4:]]
        finally:
            await index.close()

    run(scenario())


def test_plan_oldest_first_by_last_received_on_sqlite(tmp_path: Path) -> None:
    plan_scenario(str(tmp_path / "index.sqlite"))


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_plan_oldest_first_by_last_received_on_postgresql(postgres: str) -> None:
    with psycopg.connect(postgres, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS instances, series, studies, patients, pruned_files")
    plan_scenario(postgres)


def test_a_study_that_receives_an_instance_after_the_plan_is_kept(tmp_path: Path) -> None:
    study = generate_uid()

    async def scenario() -> tuple[object, int]:
        index = ArchiveIndex(tmp_path / "index.sqlite", durable=False)
        try:
            await fill(index, [(study, 1000.0, 2)])
            pruner = Pruner(index, RetentionPolicy(keep_days=0, arriving_window=0))
            (planned,) = (await pruner.plan()).studies
            await index.add(entry(study, generate_uid(), generate_uid(), 2000.0))
            paths = await index.run_on_index(_delete_rows, planned, time.time())
            return paths, await index.count()
        finally:
            await index.close()

    assert run(scenario()) == (None, 3)


async def store(port: int, paths: list[Path]) -> list[int]:
    async with client.connect(
        "127.0.0.1", port, contexts=[(CT, [EXPLICIT])], max_operations_invoked=4
    ) as assoc:
        return [int((await assoc.store(p)).status) for p in paths]


def test_a_study_arriving_while_its_siblings_are_pruned(tmp_path: Path) -> None:
    """Old studies go while a new one streams in; the new one is whole, files and rows."""
    old = [make_study(tmp_path / f"old{n}", 5) for n in range(3)]
    new_study, new_paths = make_study(tmp_path / "new", 40)

    async def scenario() -> tuple[list[int], list[str], int]:
        listener = Listener("ARCHIVE", accept_any_storage=True)
        archive = Archive(tmp_path / "archive", fsync=False)
        archive.attach(listener)
        await listener.listen("127.0.0.1", 0)
        try:
            for _, paths in old:
                assert await store(listener.port, paths) == [0] * 5
            await asyncio.sleep(1.2)  # the old studies are stable now
            pruner = Pruner(
                archive.index, RetentionPolicy(keep_days=0, arriving_window=1.0), archive.folder
            )
            statuses: list[int] = []

            async def arrive() -> None:
                for path in new_paths:
                    statuses.extend(await store(listener.port, [path]))

            async def prune() -> int:
                passes = 0
                while not arriving.done():
                    await pruner.prune()
                    passes += 1
                return passes

            arriving = asyncio.ensure_future(arrive())
            passes = await prune()
            await arriving
            left = await archive.index.find("STUDY", {"StudyInstanceUID": ("", "UI")})
            return statuses, [r["StudyInstanceUID"] for r in left], passes
        finally:
            await listener.close(timeout=0)
            await archive.close()

    statuses, left, passes = run(scenario())
    assert passes >= 1
    assert statuses == [0] * 40
    assert left == [new_study]
    files = sorted((tmp_path / "archive").rglob("*.dcm"))
    assert len(files) == 40
    assert all(f.parent.parent.name == new_study for f in files)
    for study, _ in old:
        assert not (tmp_path / "archive" / study).exists()  # folders removed once empty
    report = verify(tmp_path / "archive")
    assert report.ok, report
    assert report.checked == 40


def listen(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE", "--host", "127.0.0.1",
         "--port", str(port), "--dir", str(folder), "--fsync", "never", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dcmtk_env(),
    )  # fmt: skip
    wait_for_port("127.0.0.1", port, 30)
    return process


def pynetdicom_store(port: int, paths: list[Path]) -> None:
    from pydicom import dcmread

    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(CTImageStorage, EXPLICIT)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    try:
        for path in paths:
            assert assoc.send_c_store(dcmread(path)).Status == 0
    finally:
        assoc.release()


def pynetdicom_studies(port: int) -> list[str]:
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    try:
        return sorted(
            str(ds.StudyInstanceUID)
            for status, ds in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
            if status and status.Status == 0xFF00
        )
    finally:
        assoc.release()


@pytest.mark.interop
@pytest.mark.slow
def test_quota_reached_mid_run_with_storescu_and_pynetdicom(tmp_path: Path) -> None:
    """Six studies of ~33 KB under a 100 KB quota: the oldest go, the newest three stay."""
    studies = [make_study(tmp_path / f"s{n}", 4) for n in range(6)]
    size = sum(p.stat().st_size for p in studies[0][1])
    port = free_port()
    process = listen(
        tmp_path / "archive", port,
        "--max-storage", str(3 * size + size // 2), "--prune-interval", "0.2",
        "--study-stable-after", "0.5",
    )  # fmt: skip
    try:
        for n, (_, paths) in enumerate(studies):
            if n % 2:
                pynetdicom_store(port, paths)
            else:
                done = run_dcmtk("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port),
                                 *map(str, paths))  # fmt: skip
                assert done.returncode == 0, done.stderr
            time.sleep(0.8)  # stable before the next one arrives
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = pynetdicom_studies(port)
            if len(left) == 3:
                break
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    assert left == sorted(study for study, _ in studies[3:]), errors.decode()
    assert b"pruned study" in errors
    report = verify(tmp_path / "archive")
    assert report.ok and report.checked == 12 and report.files == 12, report


def make_archive(root: Path, studies: int, per_study: int) -> list[str]:
    """An archive folder of real files, indexed by ``dicomnet archive reindex``."""
    uids = []
    for n in range(studies):
        study = generate_uid()
        series = generate_uid()
        uids.append(study)
        folder = root / study / series
        folder.mkdir(parents=True)
        for i in range(per_study):
            ds = ct_dataset(i, pixels=8, study=study)
            ds.SeriesInstanceUID = series
            ds.PatientID = f"PID{n}"
            write_part10(ds, folder / f"{ds.SOPInstanceUID}.dcm")
    done = subprocess.run(
        [sys.executable, "-m", "dicomnet", "archive", "reindex", str(root)],
        capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return uids


def test_dry_run_deletes_nothing_and_says_what_it_would(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    uids = make_archive(root, 3, 2)
    done = subprocess.run(
        [sys.executable, "-m", "dicomnet", "archive", "prune", "--keep-days", "0",
         "--study-stable-after", "0", "--json", str(root)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(line["study_uid"] for line in lines) == sorted(uids)
    assert {line["action"] for line in lines} == {"would delete"}
    assert len(list(root.rglob("*.dcm"))) == 6
    assert verify(root).checked == 6

    done = subprocess.run(
        [sys.executable, "-m", "dicomnet", "archive", "prune", "--keep-days", "0",
         "--study-stable-after", "0", "--apply", str(root)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "deleted 3 studies, 6 instances" in done.stdout
    assert list(root.rglob("*.dcm")) == []
    assert verify(root).checked == 0


@pytest.mark.slow
def test_kill_9_mid_prune_then_verify_is_clean(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    make_archive(root, 60, 25)
    total = 60 * 25
    prune = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "archive", "prune", "--keep-days", "0",
         "--study-stable-after", "0", "--apply", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # Kill it while its journal holds files: rows deleted, files not all unlinked.
    deadline = time.monotonic() + 60
    journalled = 0
    while time.monotonic() < deadline and prune.poll() is None and not journalled:
        try:
            with sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True) as db:
                journalled = db.execute("SELECT count(*) FROM pruned_files").fetchone()[0]
        except sqlite3.OperationalError:
            pass  # the table is being created, or the database is locked a moment
        time.sleep(0.001)
    os.kill(prune.pid, signal.SIGKILL)
    prune.wait(timeout=30)
    assert prune.returncode == -signal.SIGKILL, "the prune ended before it could be killed"
    remaining = sum(1 for _ in root.rglob("*.dcm"))
    assert remaining > 0

    report = verify(root)
    assert report.ok, report  # journalled files are pending, not orphans; no row lacks its file
    assert report.pending_deletion > 0
    assert report.files == report.checked + report.pending_deletion
    with sqlite3.connect(root / "index.sqlite") as db:
        (rows,) = db.execute("SELECT count(*) FROM instances").fetchone()
    assert rows == report.checked < total  # the rows of the journalled studies are gone

    done = subprocess.run(
        [sys.executable, "-m", "dicomnet", "archive", "prune", "--keep-days", "0",
         "--study-stable-after", "0", "--apply", str(root)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = verify(root)
    assert report.ok and report.checked == 0 and report.pending_deletion == 0, report
    assert list(root.rglob("*.dcm")) == []
    with sqlite3.connect(root / "index.sqlite") as db:
        assert db.execute("SELECT count(*) FROM pruned_files").fetchone() == (0,)
