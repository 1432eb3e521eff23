"""The embedded archive: store, index, query and retrieve; DCMTK against `dicomnet listen`."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomnet.archive.archive import INDEX_NAME, Archive
from dicomnet.archive.index import ArchiveIndex, IndexEntry
from dicomnet.archive.relational import relational_request
from dicomnet.core.dimse import CommandField
from dicomnet.core.uids import STUDY_ROOT_FIND, STUDY_ROOT_GET
from dicomnet.net import client
from dicomnet.net.listener import Listener
from dicomnet.net.retrieve import get_contexts
from dicomnet.services.storage import FolderStorage

from factory import dataset_bytes, make_study
from peers import dcmtk_env, free_port, run_dcmtk, wait_for_port

CT = "1.2.840.10008.5.1.4.1.1.2"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def by_uid(paths) -> dict[str, bytes]:
    return {
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): dataset_bytes(Path(p))
        for p in paths
    }


def query(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


async def archive_listener(folder: Path) -> tuple[Listener, Archive]:
    listener = Listener("ARCHIVE", accept_any_storage=True)
    archive = Archive(folder, fsync=False)
    archive.attach(listener)
    await listener.listen("127.0.0.1", 0)
    return listener, archive


async def store_all(port: int, paths: list[Path]) -> list[int]:
    async with client.connect(
        "127.0.0.1", port, contexts=[(CT, ["1.2.840.10008.1.2.1"])], max_operations_invoked=8
    ) as assoc:
        responses = await asyncio.gather(*(assoc.store(p) for p in paths))
    return [int(r.status) for r in responses]


def test_store_then_query_every_level(tmp_path: Path) -> None:
    study_a, paths_a = make_study(tmp_path / "a", 3)
    study_b, paths_b = make_study(tmp_path / "b", 2)

    async def scenario() -> None:
        listener, archive = await archive_listener(tmp_path / "archive")
        async with listener:
            assert await store_all(listener.port, paths_a + paths_b) == [0] * 5
            assert await archive.index.count() == 5
            async with client.connect(
                "127.0.0.1", listener.port, contexts=[(STUDY_ROOT_FIND, ["1.2.840.10008.1.2"])]
            ) as assoc:

                async def find(identifier: Dataset) -> list[Dataset]:
                    found = [r async for r in assoc.find(identifier, STUDY_ROOT_FIND)]
                    assert found[-1].status == 0x0000
                    return [r.identifier for r in found[:-1]]

                studies = await find(
                    query(
                        "STUDY",
                        PatientName="retrieve*",
                        StudyInstanceUID="",
                        NumberOfStudyRelatedInstances="",
                        ModalitiesInStudy="",
                    )
                )
                counts = {s.StudyInstanceUID: int(s.NumberOfStudyRelatedInstances) for s in studies}
                assert counts == {study_a: 3, study_b: 2}
                assert {s.ModalitiesInStudy for s in studies} == {"CT"}
                assert all(s.PatientName == "RETRIEVE^PATIENT" for s in studies)

                series = await find(query("SERIES", StudyInstanceUID=study_a, SeriesInstanceUID=""))
                assert len(series) == 3  # one series per instance in the test data

                # a list of studies and no series: relational, refused without negotiation
                relational_query = query(
                    "IMAGE", StudyInstanceUID=f"{study_a}\\{study_b}", SOPInstanceUID=""
                )
                refused = [r async for r in assoc.find(relational_query, STUDY_ROOT_FIND)]
                assert [r.status for r in refused] == [0xA900]

                assert await find(query("STUDY", PatientID="NOBODY", StudyInstanceUID="")) == []
                bad = [r async for r in assoc.find(query("NOLEVEL"), STUDY_ROOT_FIND)]
                assert [r.status for r in bad] == [0xA900]
            async with client.connect(
                "127.0.0.1",
                listener.port,
                contexts=[(STUDY_ROOT_FIND, ["1.2.840.10008.1.2"])],
                extended=[relational_request(STUDY_ROOT_FIND)],
            ) as assoc:
                assert assoc.negotiated.sop_class_extended == {STUDY_ROOT_FIND: b"\x01"}
                found = [r async for r in assoc.find(relational_query, STUDY_ROOT_FIND)]
                assert found[-1].status == 0x0000
                images = {r.identifier.SOPInstanceUID for r in found[:-1]}
                assert images == set(by_uid(paths_a + paths_b))
        await archive.close()

    run(scenario())


def test_get_from_the_archive_returns_the_stored_bytes(tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "a", 3)
    received = tmp_path / "received"

    async def scenario() -> None:
        listener, archive = await archive_listener(tmp_path / "archive")
        async with listener:
            await store_all(listener.port, paths)
            storage = FolderStorage(received)
            contexts, roles = get_contexts(STUDY_ROOT_GET)
            async with client.connect(
                "127.0.0.1",
                listener.port,
                contexts=contexts,
                roles=roles,
                handlers={CommandField.C_STORE_RQ: storage.handle},
                dataset_sink=storage.sink,
            ) as assoc:
                responses = [
                    r
                    async for r in assoc.get(query("STUDY", StudyInstanceUID=study), STUDY_ROOT_GET)
                ]
            assert responses[-1].status == 0x0000
            assert responses[-1].message.number_of_completed_suboperations == 3
        await archive.close()

    run(scenario())
    assert by_uid(received.glob("*.dcm")) == by_uid(paths)


def test_failed_indexing_answers_a700_and_removes_the_file(tmp_path: Path) -> None:
    _, paths = make_study(tmp_path / "a", 1)

    async def scenario() -> list[int]:
        listener, archive = await archive_listener(tmp_path / "archive")

        async def broken(*args, **kwargs) -> None:
            raise OSError(28, "No space left on device")

        archive.index.add = broken  # type: ignore[method-assign]
        async with listener:
            statuses = await store_all(listener.port, paths)
        await archive.close()
        return statuses

    assert run(scenario()) == [0xA700]
    assert list((tmp_path / "archive").rglob("*.dcm")) == []


def entry(index: int) -> IndexEntry:
    """An index row of instance ``index`` of one series."""
    from dicomnet.archive.index import ATTRIBUTES

    attributes = dict.fromkeys(ATTRIBUTES, "")
    attributes.update(
        PatientID="P",
        StudyInstanceUID="1.2.3",
        SeriesInstanceUID="1.2.3.4",
        SOPInstanceUID=f"1.2.3.4.{index}",
        SOPClassUID=CT,
    )
    return IndexEntry(f"/x/{index}", 1, "1.2.840.10008.1.2", "0" * 64, attributes)


def test_index_group_commits_concurrent_adds(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        index = ArchiveIndex(tmp_path / INDEX_NAME)
        await asyncio.gather(*(index.add(entry(i)) for i in range(200)))
        counted = await index.count()
        transactions = index.transactions
        await index.close()
        return counted, transactions

    counted, transactions = run(scenario())
    assert counted == 200
    assert 1 <= transactions < 200


@pytest.mark.interop
def test_dcmtk_store_find_move_get_against_dicomnet_listen(tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "sent", 4)
    port = free_port()
    move_port = free_port()
    listener = subprocess.Popen(
        [
            sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE",
            "--host", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path / "archive"),
            "--move-destination", f"MOVESCU=127.0.0.1:{move_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dcmtk_env(),
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)
        stored = run_dcmtk("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port), *map(str, paths))
        assert stored.returncode == 0, stored.stderr

        found = run_dcmtk(
            "findscu", "-v", "-S", "-aec", "ARCHIVE",
            "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=PID-RETRIEVE",
            "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances",
            "127.0.0.1", str(port),
        )  # fmt: skip
        assert found.returncode == 0, found.stderr
        assert study in found.stdout + found.stderr
        assert re.search(r"\(0020,1208\) IS \[4 ?\]", found.stdout + found.stderr)

        moved = tmp_path / "moved"
        moved.mkdir()
        move = run_dcmtk(
            "movescu", "-S", "-aet", "MOVESCU", "-aec", "ARCHIVE", "-aem", "MOVESCU",
            "--port", str(move_port), "-od", str(moved),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "127.0.0.1", str(port),
        )  # fmt: skip
        assert move.returncode == 0, move.stderr

        fetched = tmp_path / "fetched"
        fetched.mkdir()
        get = run_dcmtk(
            "getscu", "-S", "-aec", "ARCHIVE", "-od", str(fetched),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "127.0.0.1", str(port),
        )  # fmt: skip
        assert get.returncode == 0, get.stderr
    finally:
        listener.terminate()
        listener.wait(timeout=30)
    assert by_uid(moved.iterdir()) == by_uid(paths)
    assert by_uid(fetched.iterdir()) == by_uid(paths)
    assert (tmp_path / "archive" / INDEX_NAME).exists()


def test_an_unreadable_file_fails_alone_in_its_batch(tmp_path: Path) -> None:
    _, paths = make_study(tmp_path / "a", 2)

    async def scenario() -> list[object]:
        index = ArchiveIndex(tmp_path / INDEX_NAME)
        outcomes = await asyncio.gather(
            index.add_file(paths[0], 1, "1.2.840.10008.1.2.1", "0" * 64),
            index.add_file(tmp_path / "missing.dcm", 1, "1.2.840.10008.1.2.1", "0" * 64),
            index.add_file(paths[1], 1, "1.2.840.10008.1.2.1", "0" * 64),
            return_exceptions=True,
        )
        assert await index.count() == 2
        await index.close()
        return outcomes

    outcomes = run(scenario())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], FileNotFoundError)


def test_commit_command_against_the_archive(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dicomnet.cli.main import main

    _, paths = make_study(tmp_path / "a", 2)
    stranger = make_study(tmp_path / "b", 1)[1][0]
    port = free_port()
    listener = subprocess.Popen(
        [
            sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE",
            "--host", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path / "archive"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)
        stored = run_dcmtk("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port), *map(str, paths))
        assert stored.returncode == 0, stored.stderr
        runner = CliRunner(env={"COLUMNS": "300"})
        ok = runner.invoke(
            main, ["commit", "--aec", "ARCHIVE", "127.0.0.1", str(port), *map(str, paths)]
        )
        assert ok.exit_code == 0, ok.output
        assert ok.output.count("committed") == 2
        mixed = runner.invoke(
            main,
            ["commit", "--aec", "ARCHIVE", "127.0.0.1", str(port), str(paths[0]), str(stranger)],
        )
        assert mixed.exit_code == 1
        assert "failed 0x0112" in mixed.output and "committed" in mixed.output
    finally:
        listener.terminate()
        listener.wait(timeout=30)


@pytest.mark.parametrize("digest", [True, False])
def test_the_digest_is_indexed_unless_turned_off(tmp_path: Path, digest: bool) -> None:
    import hashlib
    import sqlite3

    from dicomnet.archive.maintenance import verify

    _, paths = make_study(tmp_path / "in", 3)

    async def scenario() -> None:
        listener = Listener("ARCHIVE", accept_any_storage=True)
        archive = Archive(tmp_path / "archive", fsync=False, digest=digest)
        archive.attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            assert await store_all(listener.port, paths) == [0] * 3
        await archive.close()

    run(scenario())
    with sqlite3.connect(tmp_path / "archive" / INDEX_NAME) as db:
        rows = db.execute("SELECT path, sha256 FROM instances").fetchall()
    assert len(rows) == 3
    for path, sha256 in rows:
        expected = hashlib.sha256(dataset_bytes(Path(path))).hexdigest() if digest else ""
        assert sha256 == expected
    report = verify(tmp_path / "archive")
    assert report.checked == 3 and report.problems == 0


def test_a_non_durable_sqlite_index_commits_on_the_loop_when_its_thread_is_idle(
    tmp_path: Path,
) -> None:
    async def scenario(durable: bool) -> tuple[int, int, int]:
        index = ArchiveIndex(tmp_path / f"{durable}.sqlite", durable=durable)
        for number in range(5):  # one at a time, as a lock-step sender's instances come
            assert await index.add(entry(number)) is None
        await asyncio.gather(*(index.add(entry(number)) for number in range(5, 50)))
        counted = await index.count()
        await index.close()
        return counted, index.transactions, index.loop_transactions

    counted, transactions, on_loop = run(scenario(durable=False))
    assert counted == 50 and on_loop == transactions and 6 <= transactions < 50
    counted, transactions, on_loop = run(scenario(durable=True))  # FULL sync: never the loop
    assert counted == 50 and on_loop == 0 and transactions >= 6


def test_the_loop_never_waits_for_another_process_holding_the_index(tmp_path: Path) -> None:
    import sqlite3
    import time

    path = tmp_path / INDEX_NAME

    async def scenario() -> tuple[float, int, float]:
        index = ArchiveIndex(path, durable=False)
        assert await index.add(entry(0)) is None  # the schema exists, the loop committed
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write lock, for 0.5 s
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, other.execute, "COMMIT")
        started = time.monotonic()
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while time.monotonic() - started < 0.8:
                await asyncio.sleep(0.02)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        ticking = asyncio.create_task(ticker())
        assert await index.add(entry(1)) is None  # waits for the lock, on the thread
        waited = time.monotonic() - started
        await ticking
        other.close()
        on_loop = index.loop_transactions
        await index.close()
        return waited, on_loop, max(gaps)

    waited, on_loop, longest_gap = run(scenario())
    assert waited >= 0.45  # the row waited for the lock...
    assert on_loop == 1  # ...on the worker thread, not the loop...
    assert longest_gap < 0.3  # ...which kept running meanwhile


def test_an_index_committing_on_the_loop_checkpoints_on_its_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicomnet.archive import index as index_module

    async def scenario(every: int) -> tuple[int, int, int]:
        monkeypatch.setattr(index_module, "CHECKPOINT_EVERY", every)
        path = tmp_path / f"{every}.sqlite"
        index = ArchiveIndex(path, durable=False)
        for number in range(40):
            await index.add(entry(number))
        await index.count()  # a worker-thread job after the checkpoints: they have run
        wal = Path(f"{path}-wal").stat().st_size
        await index.close()
        return index.transactions, index.checkpoints, wal

    transactions, checkpoints, wal = run(scenario(every=4))
    assert transactions == 40 and checkpoints == 10
    transactions, checkpoints, unbounded = run(scenario(every=10**9))
    assert transactions == 40 and checkpoints == 0
    assert wal * 3 < unbounded  # checkpointed, the WAL is reused instead of growing
