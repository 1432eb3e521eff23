"""Retention: how long pruning 100,000 instances takes, files and rows together.

    python bench/prune.py                         # 100,000 instances, 1,000 studies, SQLite
    python bench/prune.py --instances 10000       # smaller
    python bench/prune.py --index postgresql://... # the same on PostgreSQL

Builds an archive folder of ``--instances`` files (1 KB each: unlinking costs
the same whatever the size) in ``--studies`` studies, indexes them (rows as the
archive writes them, stored a second apart study by study), then times:

* the plan alone (the dry run of ``dicomnet archive prune``);
* a quota pass deleting the older half of the studies;
* an expiry pass deleting the rest.

Each pass journals, deletes rows, unlinks and syncs folders study by study,
as the listener does (:mod:`dicomnet.archive.retention`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

from dicomnet.archive.index import ATTRIBUTES, ArchiveIndex, IndexEntry
from dicomnet.archive.retention import Pruner, RetentionPolicy

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
SIZE = 1024


async def build(root: Path, location: str, instances: int, studies: int) -> None:
    index = ArchiveIndex(location, durable=False)
    per_study = instances // studies
    start = time.time() - 10 * 86400
    blob = b"\0" * SIZE
    try:
        for s in range(studies):
            study, series = f"1.2.3.{s}", f"1.2.3.{s}.1"
            folder = root / study / series
            folder.mkdir(parents=True)
            adds = []
            for i in range(per_study):
                uid = f"1.2.3.{s}.1.{i}"
                path = folder / f"{uid}.dcm"
                path.write_bytes(blob)
                attributes = dict.fromkeys(ATTRIBUTES, "")
                attributes.update(
                    PatientID=f"P{s}", StudyInstanceUID=study, SeriesInstanceUID=series,
                    SOPInstanceUID=uid, SOPClassUID=CT, Modality="CT",
                )  # fmt: skip
                entry = IndexEntry(str(path), SIZE, EXPLICIT, "", attributes, "", start + s)
                adds.append(index.add(entry))
            await asyncio.gather(*adds)
    finally:
        await index.close()


async def measure(root: Path, location: str, instances: int) -> None:
    index = ArchiveIndex(location, durable=True)
    try:
        half = Pruner(index, RetentionPolicy(max_storage=instances * SIZE // 2), root)
        started = time.perf_counter()
        planned = await half.plan()
        print(
            f"plan: {len(planned.studies)} studies, {planned.instances} instances,"
            f" {time.perf_counter() - started:.3f} s"
        )
        report = await half.prune()
        print(
            f"quota pass: {len(report.studies)} studies, {report.files} files,"
            f" {report.seconds:.2f} s ({report.files / report.seconds:,.0f} instances/s)"
        )
        rest = Pruner(index, RetentionPolicy(keep_days=0, arriving_window=0), root)
        report = await rest.prune()
        print(
            f"expiry pass: {len(report.studies)} studies, {report.files} files,"
            f" {report.seconds:.2f} s ({report.files / report.seconds:,.0f} instances/s)"
        )
        assert await index.count() == 0
    finally:
        await index.close()
    left = sum(1 for _, _, files in os.walk(root) for name in files if name.endswith(".dcm"))
    print(f"files left: {left}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--studies", type=int, default=1_000)
    parser.add_argument("--index", help="postgresql:// URL (default: SQLite in the folder)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dicomnet-prune-"))
    try:
        location = args.index or str(root / "index.sqlite")
        started = time.perf_counter()
        asyncio.run(build(root, location, args.instances, args.studies))
        os.sync()  # the files written reach the disk now, not in the first pass's fsyncs
        print(f"built {args.instances} instances in {time.perf_counter() - started:.1f} s")
        asyncio.run(measure(root, location, args.instances))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
