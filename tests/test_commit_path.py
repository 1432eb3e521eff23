"""The commit path: unnamed incoming files, atomic publishing, group commit.

:class:`dicomnet.services.commit.Publisher` on a real folder: what is visible
before and after publishing, the duplicate policies, the fallback to
temporary names, remembered folders, and one sync round serving many
instances under ``fsync``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from dicomnet.services.commit import IncomingFile, Publisher

HEADER = b"\0" * 128 + b"DICM"


def incoming(publisher: Publisher, data: bytes) -> IncomingFile:
    file = publisher.create(HEADER, time.monotonic())
    file.write(data)
    return file


def visible(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("fsync", [False, True])
def test_nothing_is_visible_until_published(tmp_path: Path, fsync: bool) -> None:
    publisher = Publisher(str(tmp_path), fsync=fsync)
    file = incoming(publisher, b"dataset")
    assert file.temp_path is None  # O_TMPFILE: no name at all
    assert visible(tmp_path) == []
    final = os.path.join(publisher.folder("1.2", "3.4"), "5.6.dcm")
    published = asyncio.run(publisher.publish(file, final))
    publisher.close()
    assert (published.path, published.duplicate) == (final, False)
    assert Path(final).read_bytes() == HEADER + b"dataset"
    assert visible(tmp_path) == ["1.2/3.4/5.6.dcm"]
    assert file.closed


@pytest.mark.parametrize("replace", [False, True])
def test_an_existing_name_is_kept_or_replaced(tmp_path: Path, replace: bool) -> None:
    publisher = Publisher(str(tmp_path), fsync=False, replace=replace)
    final = os.path.join(publisher.folder("s"), "i.dcm")

    async def both() -> list[bool]:
        first = await publisher.publish(incoming(publisher, b"first"), final)
        second = await publisher.publish(incoming(publisher, b"second"), final)
        return [first.duplicate, second.duplicate]

    assert asyncio.run(both()) == [False, True]
    assert Path(final).read_bytes() == HEADER + (b"second" if replace else b"first")
    assert visible(tmp_path) == ["s/i.dcm"]


def test_temporary_names_where_o_tmpfile_is_refused(tmp_path: Path) -> None:
    publisher = Publisher(str(tmp_path), fsync=True)
    publisher._tmpfile = False  # as on a file system without O_TMPFILE
    file = incoming(publisher, b"x" * 10)
    assert file.temp_path is not None and Path(file.temp_path).exists()
    final = os.path.join(publisher.folder("a"), "b.dcm")
    asyncio.run(publisher.publish(file, final))
    publisher.close()
    assert visible(tmp_path) == ["a/b.dcm"]


def test_a_failed_publish_leaves_nothing(tmp_path: Path) -> None:
    publisher = Publisher(str(tmp_path), fsync=False)
    publisher._tmpfile = False
    file = incoming(publisher, b"data")
    with pytest.raises(FileNotFoundError):
        asyncio.run(publisher.publish(file, str(tmp_path / "missing" / "x.dcm")))
    assert visible(tmp_path) == []


def test_folders_are_created_once_and_again_after_removal(tmp_path: Path) -> None:
    publisher = Publisher(str(tmp_path), fsync=False)
    path = publisher.folder("st", "se")
    os.rmdir(path)
    assert publisher.folder("st", "se") == path and not os.path.exists(path)  # remembered
    publisher.forget(path)
    assert publisher.folder("st", "se") == path and os.path.isdir(path)


def test_group_commit_serves_many_instances_with_few_syncs(tmp_path: Path) -> None:
    publisher = Publisher(str(tmp_path), fsync=True)
    folder = publisher.folder("study", "series")

    async def many() -> list[bool]:
        files = [incoming(publisher, bytes([i]) * 1000) for i in range(40)]
        results = await asyncio.gather(
            *(publisher.publish(f, os.path.join(folder, f"{i}.dcm")) for i, f in enumerate(files))
        )
        return [r.duplicate for r in results]

    assert asyncio.run(many()) == [False] * 40
    publisher.close()
    assert len(visible(tmp_path)) == 40
    assert 1 <= publisher.batches < 40  # the first batch runs alone, the rest wait together
    for i in range(40):
        assert Path(folder, f"{i}.dcm").read_bytes() == HEADER + bytes([i]) * 1000


def test_write_errors_are_kept_not_raised(tmp_path: Path) -> None:
    publisher = Publisher(str(tmp_path), fsync=False)
    file = incoming(publisher, b"ok")
    os.close(file.fileno())  # the next write fails with EBADF
    file.write(b"more")
    assert isinstance(file.error, OSError)
    file.finished(6, 28, b"", b"")  # ENOSPC reported by the codec does not replace it
    assert file.error.errno == 9


@pytest.mark.parametrize("unnamed", [True, False])
def test_files_made_ahead_serve_and_go_at_close(tmp_path: Path, unnamed: bool) -> None:
    publisher = Publisher(str(tmp_path), fsync=False, prefetch=4)
    publisher._tmpfile = unnamed
    folder = publisher.folder("s")

    async def several() -> None:
        for i in range(12):
            await publisher.publish(incoming(publisher, bytes([i])), os.path.join(folder, f"{i}"))
            await asyncio.sleep(0.01)  # the filler thread tops the reserve up meanwhile

    asyncio.run(several())
    assert publisher._filler is not None  # the reserve was used
    publisher.close()
    assert visible(tmp_path) == sorted(f"s/{i}" for i in range(12))
    assert list((tmp_path / ".incoming").iterdir()) == []
