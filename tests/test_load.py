"""200 concurrent associations of 50 instances into one `dicomnet listen`.

The listener runs as its own process (the archive, fsync on, SQLite index),
so its peak resident memory (VmHWM) is its own. Every instance must be
answered Success, be on disk and in the index; peak memory must stay under a
fixed budget. The figures go to the test's output (-s) for the record.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from dicomnet.testing import store_load
from test_lifecycle import start_listener, stop

ASSOCIATIONS = 200
PER_ASSOCIATION = 50
MEMORY_BUDGET_MB = 400


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_200_associations_of_50_instances_lose_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    process, port = start_listener(archive, "--max-associations", "256")
    try:
        idle_mb = peak_rss_mb(process.pid)
        result = asyncio.run(
            asyncio.wait_for(
                store_load(
                    "127.0.0.1", port, associations=ASSOCIATIONS, per_association=PER_ASSOCIATION
                ),
                timeout=400,
            )
        )
        peak_mb = peak_rss_mb(process.pid)
    finally:
        stop(process)
    print(
        f"\nload: {result.instances} instances in {result.seconds:.1f} s "
        f"({result.rate:.0f}/s); listener peak RSS {peak_mb:.0f} MB (idle {idle_mb:.0f} MB)"
    )
    assert result.errors == []
    assert dict(result.statuses) == {0x0000: ASSOCIATIONS * PER_ASSOCIATION}
    with sqlite3.connect(archive / "index.sqlite") as db:
        indexed = {uid for (uid,) in db.execute("SELECT sop_instance_uid FROM instances")}
    assert indexed == set(result.stored)
    files = {p.stem for p in archive.rglob("*.dcm") if ".incoming" not in p.parts}
    assert files == indexed
    assert peak_mb < MEMORY_BUDGET_MB
