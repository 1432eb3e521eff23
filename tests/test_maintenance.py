"""`dicomnet archive verify` and `reindex` on an archive filled over the network."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset

from dicomnet.archive.archive import Archive
from dicomnet.archive.maintenance import reindex, verify
from dicomnet.cli.main import main
from dicomnet.core.uids import STUDY_ROOT_FIND
from dicomnet.net import client
from dicomnet.net.listener import Listener

from factory import ct_dataset, make_study, write_part10

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
ROW = "SELECT sop_instance_uid, path, size, sha256, transfer_syntax, source_ae_title FROM instances"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """An archive folder holding six instances of two studies, sent by MODALITY."""
    _, first = make_study(tmp_path / "a", 4)
    _, second = make_study(tmp_path / "b", 2)
    folder = tmp_path / "archive"

    async def fill() -> None:
        listener = Listener("ARCHIVE", accept_any_storage=True)
        store = Archive(folder)
        store.attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            async with client.connect(
                "127.0.0.1", listener.port, calling_ae_title="MODALITY",
                contexts=[(CT, [EXPLICIT])],
            ) as assoc:  # fmt: skip
                for path in first + second:
                    assert (await assoc.store(path)).status == 0
        await store.close()

    run(fill())
    return folder


def rows(folder: Path) -> list[tuple]:
    with sqlite3.connect(folder / "index.sqlite") as db:
        return sorted(db.execute(ROW).fetchall())


def stored(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm") if ".incoming" not in p.parts)


def test_a_clean_archive_verifies(archive: Path) -> None:
    report = verify(archive)
    assert report.ok and report.checked == 6 and report.files == 6
    result = CliRunner().invoke(main, ["archive", "verify", "--json", str(archive)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True


def test_verify_finds_missing_truncated_altered_and_orphan_files(
    archive: Path, tmp_path: Path
) -> None:
    files = stored(archive)
    files[0].unlink()
    with open(files[1], "r+b") as stream:  # flip one pixel byte: same size, other digest
        stream.seek(-10, 2)
        byte = stream.read(1)
        stream.seek(-10, 2)
        stream.write(bytes([byte[0] ^ 0xFF]))
    with open(files[2], "r+b") as stream:
        stream.truncate(files[2].stat().st_size - 100)
    orphan = archive / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    orphan.parent.mkdir(parents=True)
    write_part10(ct_dataset(9), orphan)
    report = verify(archive)
    assert [m.split()[1] for m in report.missing] == [str(files[0])]
    assert [d.split(":")[0] for d in report.digest_mismatch] == [str(files[1])]
    assert [s.split(":")[0] for s in report.size_mismatch] == [str(files[2])]
    assert report.orphans == [str(orphan)]
    assert report.problems == 4
    result = CliRunner().invoke(main, ["archive", "verify", str(archive)])
    assert result.exit_code == 1
    assert f"missing: {report.missing[0]}" in result.output
    assert "orphan:" in result.output


def test_reindex_rebuilds_the_same_rows(archive: Path) -> None:
    before = rows(archive)
    (archive / "index.sqlite").unlink()
    for companion in ("index.sqlite-wal", "index.sqlite-shm"):
        (archive / companion).unlink(missing_ok=True)
    result = CliRunner().invoke(main, ["archive", "reindex", str(archive)])
    assert result.exit_code == 0, result.output
    assert "indexed 6 instances" in result.output
    assert rows(archive) == before  # paths, sizes, digests, syntaxes, source AE titles
    assert verify(archive).ok

    async def find() -> list[str]:  # a listener on the rebuilt index answers from it
        listener = Listener("ARCHIVE")
        store = Archive(archive)
        store.attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            async with client.connect(
                "127.0.0.1", listener.port, contexts=[(STUDY_ROOT_FIND, [EXPLICIT])]
            ) as assoc:
                query = Dataset()
                query.QueryRetrieveLevel = "STUDY"
                query.StudyInstanceUID = ""
                query.NumberOfStudyRelatedInstances = ""
                found = [
                    str(r.identifier.NumberOfStudyRelatedInstances)
                    async for r in assoc.find(query, STUDY_ROOT_FIND)
                    if r.status == 0xFF00
                ]
        await store.close()
        return found

    assert sorted(run(find())) == ["2", "4"]


def test_reindex_skips_unreadable_files_and_keeps_them(archive: Path) -> None:
    junk = stored(archive)[0].parent / "9.9.9.dcm"
    junk.write_bytes(b"not a DICOM file at all" * 10)
    before = rows(archive)
    report = reindex(archive)
    assert report.indexed == 6
    assert [u.split(":")[0] for u in report.unreadable] == [str(junk)]
    assert junk.exists()
    assert rows(archive) == before
    shutil.rmtree(archive / ".incoming", ignore_errors=True)
    result = CliRunner().invoke(main, ["archive", "reindex", str(archive)])
    assert result.exit_code == 1 and "unreadable" in result.output
