"""The disk filling up under the archive: a failure status, never a false Success.

The archive lives on a 3 MB tmpfs mounted by the test (the suite runs as
root, as .ci/run does). Instances of about 200 KB are sent until the file
system is full: every instance answered Success must be whole on disk and in
the index, every other one must have been answered with a failure status and
left nothing behind, and the association must stay usable. Freeing space
lets the next instance in.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomnet.archive.archive import Archive
from dicomnet.net import client
from dicomnet.net.listener import Listener

from factory import ct_dataset, write_part10

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_answers_a700_and_loses_nothing_acknowledged(
    small_disk: Path, tmp_path: Path
) -> None:
    sources = [write_part10(ct_dataset(i, pixels=320), tmp_path / f"{i}.dcm") for i in range(24)]

    async def scenario() -> tuple[list[int], int, int, str]:
        archive = Archive(small_disk / "archive")
        listener = Listener("ARCHIVE", accept_any_storage=True)
        archive.attach(listener)
        async with listener:
            await listener.listen("127.0.0.1", 0)
            async with client.connect(
                "127.0.0.1", listener.port, contexts=[(CT, [EXPLICIT])]
            ) as assoc:
                statuses = [int((await assoc.store(path)).status) for path in sources]
                assert (await assoc.echo()).status == 0  # the association survived
                indexed = await archive.index.count()
                removed = next(small_disk.rglob("*.dcm"))  # make room: the next one fits
                removed.unlink()
                after = int((await assoc.store(sources[-1])).status)
        await archive.close()
        return statuses, indexed, after, removed.name

    statuses, indexed, after, removed = asyncio.run(asyncio.wait_for(scenario(), 120))
    successes = [i for i, status in enumerate(statuses) if status == 0x0000]
    failures = [i for i, status in enumerate(statuses) if status != 0x0000]
    assert successes and failures, statuses  # the disk filled part way through
    assert {statuses[i] for i in failures} == {0xA700}, statuses
    assert indexed == len(successes)
    on_disk = {p.name: p for p in small_disk.rglob("*.dcm") if ".incoming" not in p.parts}
    for i in successes:
        name = f"{dcmread(sources[i], stop_before_pixels=True).SOPInstanceUID}.dcm"
        if name == removed:
            continue
        stored = dcmread(on_disk[name])
        assert stored.PixelData == dcmread(sources[i]).PixelData  # whole, not truncated
    for i in failures[:-1]:
        name = f"{dcmread(sources[i], stop_before_pixels=True).SOPInstanceUID}.dcm"
        assert name not in on_disk  # nothing half-written under its name
    assert after == 0x0000
    incoming = small_disk / "archive" / ".incoming"
    leftovers = [p for p in incoming.glob("*") if p.stat().st_size] if incoming.exists() else []
    assert leftovers == []
