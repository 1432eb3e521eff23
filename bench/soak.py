"""Soak: `dicomnet listen` under concurrent load for a long time, watched for leaks.

    python bench/soak.py                         # 30 minutes, 200 associations x 50
    python bench/soak.py --minutes 5 --associations 50 --per-association 20

Round after round, ``--associations`` concurrent associations each store
``--per-association`` instances (dicomnet.testing.store_load, fresh UIDs per
round) into one archive (fsync on, SQLite index) served by its own process.
After every round the script records the listener's resident memory, its
peak, its open file descriptors, the temporary files left in ``.incoming``
and the rate, and checks that every instance answered Success is indexed.
It ends with a table and exits non-zero if anything was lost or if memory or
descriptors grew across the second half of the run (a leak).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dicomnet.testing import store_load


def status_of(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def start(archive: Path, limit: int) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1", "--port", "0",
            "--dir", str(archive), "--max-associations", str(limit),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    match = re.search(r":(\d+)", process.stdout.readline())
    if not match:
        process.kill()
        raise SystemExit("the listener did not start")
    return process, int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--associations", type=int, default=200)
    parser.add_argument("--per-association", type=int, default=50)
    parser.add_argument("--dir", help="archive folder (default: a temporary one)")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="dicomnet-soak-") as scratch:
        archive = Path(args.dir or scratch) / "archive"
        process, port = start(archive, args.associations + 16)
        rows: list[tuple[int, int, float, float, float, int, int]] = []
        lost = 0
        deadline = time.monotonic() + args.minutes * 60
        run = 0
        try:
            while time.monotonic() < deadline:
                run += 1
                result = asyncio.run(
                    store_load(
                        "127.0.0.1",
                        port,
                        associations=args.associations,
                        per_association=args.per_association,
                        run=run,
                    )
                )
                expected = args.associations * args.per_association
                lost += expected - len(result.stored)
                incoming = archive / ".incoming"
                temps = len(list(incoming.iterdir())) if incoming.exists() else 0
                fds = len(os.listdir(f"/proc/{process.pid}/fd"))
                rows.append(
                    (
                        run,
                        result.instances,
                        result.rate,
                        status_of(process.pid, "VmRSS"),
                        status_of(process.pid, "VmHWM"),
                        fds,
                        temps,
                    )
                )
                console.print(
                    f"round {run}: {result.instances} in {result.seconds:.1f} s "
                    f"({result.rate:.0f}/s), RSS {rows[-1][3]:.0f} MB, fds {fds}, "
                    f"temp files {temps}, errors {len(result.errors)}"
                )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        with sqlite3.connect(archive / "index.sqlite") as db:
            (indexed,) = db.execute("SELECT COUNT(*) FROM instances").fetchone()
    table = Table(title=f"soak: {run} rounds of {args.associations} x {args.per_association}")
    for column in ("round", "instances", "per s", "RSS MB", "peak MB", "fds", "temp files"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(f"{v:.0f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    half = rows[len(rows) // 2 :]
    grew = len(half) > 2 and (half[-1][3] > half[0][3] * 1.2 + 8 or half[-1][5] > half[0][5] + 8)
    console.print(
        f"stored and answered: {sum(r[1] for r in rows)}; indexed: {indexed}; lost: {lost}; "
        f"{'GROWTH in the second half' if grew else 'memory and descriptors flat'}"
    )
    return 1 if lost or grew else 0


if __name__ == "__main__":
    sys.exit(main())
