"""The archive index on PostgreSQL: the same behaviour as SQLite, shared by listeners."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomnet.archive import index as index_module
from dicomnet.archive.archive import Archive
from dicomnet.archive.index import ArchiveIndex, IndexEntry
from dicomnet.archive.relational import relational_request
from dicomnet.core.uids import STUDY_ROOT_FIND
from dicomnet.net import client
from dicomnet.net.listener import Listener

from factory import dataset_bytes, make_study
from postgres_server import postgres_server

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def database(server: str) -> str:
    """The server's database, emptied for this test."""
    with psycopg.connect(server, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS instances, series, studies, patients")
    return server


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def entry(uid: str, series: str, study: str, patient: str = "P1", path: str = "") -> IndexEntry:
    attributes = dict.fromkeys(
        ["PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName", "Modality",
         "SeriesNumber", "SeriesDescription", "BodyPartExamined", "SOPClassUID",
         "InstanceNumber"], "",
    )  # fmt: skip
    attributes.update(
        PatientID=patient,
        PatientName="DOE^JANE",
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        SOPInstanceUID=uid,
        SOPClassUID=CT,
        Modality="CT",
        StudyDate="20260102",
    )
    return IndexEntry(path or f"/a/{uid}.dcm", 3_000_000_000, EXPLICIT, "ab" * 32, attributes)


def test_index_adds_finds_and_replaces_like_sqlite(database: str, tmp_path: Path) -> None:
    async def scenario(location: str) -> list[object]:
        index = ArchiveIndex(location)
        try:
            added = await asyncio.gather(
                *(index.add(entry(f"1.2.3.{i}", f"1.2.4.{i % 2}", "1.2.5")) for i in range(6))
            )
            duplicate = await index.add(entry("1.2.3.0", "1.2.4.0", "1.2.5", path="/b/x.dcm"))
            replaced = await index.add(
                entry("1.2.3.1", "1.2.4.1", "1.2.5", path="/b/y.dcm"), replace=True
            )
            studies = await index.find("STUDY", {"StudyDate": ("20260101-20260131", "DA")})
            series = await index.find("SERIES", {"StudyInstanceUID": ("1.2.5", "UI")})
            return [
                added,
                duplicate,
                replaced,
                [(s["StudyInstanceUID"], s["NumberOfStudyRelatedInstances"]) for s in studies],
                sorted(s["SeriesInstanceUID"] for s in series),
                await index.path_of("1.2.3.0"),
                await index.path_of("1.2.3.1"),
                await index.count(),
                sorted(await index.instances("SERIES", {"SeriesInstanceUID": ("1.2.4.0", "UI")})),
            ]
        finally:
            await index.close()

    on_postgres = run(scenario(database))
    on_sqlite = run(scenario(str(tmp_path / "index.sqlite")))
    assert on_postgres == on_sqlite
    assert on_postgres[1] == "/a/1.2.3.0.dcm" and on_postgres[2] == "/a/1.2.3.1.dcm"
    assert on_postgres[3] == [("1.2.5", "6")]
    assert str(on_postgres[6]) == "/b/y.dcm"  # replaced; sizes past 2**31 are kept


def test_two_listeners_share_one_postgresql_index(database: str, tmp_path: Path) -> None:
    """The HAProxy deployment in miniature: two archives, one folder, one database."""
    study, paths = make_study(tmp_path / "in", 6)
    shared = tmp_path / "shared"
    sent = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}

    async def scenario() -> tuple[list[int], list[str]]:
        listeners, archives = [], []
        for name in ("NODE1", "NODE2"):
            listener = Listener(name, accept_any_storage=True)
            archive = Archive(shared, fsync=True, index=database)
            archive.attach(listener)
            await listener.listen("127.0.0.1", 0)
            listeners.append(listener)
            archives.append(archive)
        try:
            statuses = []
            for index, path in enumerate(paths + paths[:1]):  # the last is a duplicate
                port = listeners[index % 2].port
                async with client.connect("127.0.0.1", port, contexts=[(CT, [EXPLICIT])]) as a:
                    statuses.append(int((await a.store(path)).status))
            async with client.connect(
                "127.0.0.1",
                listeners[1].port,
                contexts=[(STUDY_ROOT_FIND, [EXPLICIT])],
                extended=[relational_request(STUDY_ROOT_FIND)],  # an IMAGE query by study
            ) as assoc:
                query = Dataset()
                query.QueryRetrieveLevel = "IMAGE"
                query.StudyInstanceUID = study
                query.SOPInstanceUID = ""
                found = [
                    str(r.identifier.SOPInstanceUID)
                    async for r in assoc.find(query, STUDY_ROOT_FIND)
                    if r.status == 0xFF00
                ]
        finally:
            for listener in listeners:
                await listener.close(timeout=0)
            for archive in archives:
                await archive.close()
        return statuses, found

    statuses, found = run(scenario())
    assert statuses == [0] * 6 + [0xB000]  # node 2 saw node 1's copy in the shared index
    assert sorted(found) == sorted(sent)
    with psycopg.connect(database) as db:
        rows = db.execute("SELECT sop_instance_uid, path FROM instances").fetchall()
    assert {uid for uid, _ in rows} == set(sent)
    for uid, path in rows:
        assert Path(path).parent.parent.parent == shared
        assert dataset_bytes(Path(path)) == dataset_bytes(sent[uid])


def test_nodes_writing_the_same_new_series_in_opposite_orders_never_deadlock(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two listeners' batches start the same new studies and series, one ascending,
    one descending: each transaction takes its row locks in one order, so neither
    waits for the other in a cycle (with a single attempt allowed, a deadlock fails)."""
    monkeypatch.setattr(index_module, "INSERT_ATTEMPTS", 1)
    nodes = [ArchiveIndex(database), ArchiveIndex(database)]
    rounds, width = 6, 12
    start = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def node(number: int) -> None:
        index = nodes[number]
        for r in range(rounds):
            batch = [
                (entry(f"1.9.{r}.{k}.{number}", f"1.8.{r}.{k}", f"1.7.{r}.{k}", f"P{k % 3}"), False)
                for k in range(width)
            ]
            if number:
                batch.reverse()
            start.wait()
            try:
                assert index._insert(batch) == [None] * width
            except BaseException as exc:
                errors.append(exc)
                start.abort()
                return

    threads = [threading.Thread(target=node, args=(n,)) for n in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for index in nodes:
            run(index.close())
    assert not errors, errors
    with psycopg.connect(database) as db:
        count = db.execute("SELECT count(*) FROM instances").fetchone()
        series = db.execute("SELECT count(*) FROM series").fetchone()
    assert count == (2 * rounds * width,)
    assert series == (rounds * width,)
