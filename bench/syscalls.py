"""System calls per instance received: `dicomnet listen` beside DCMTK's storescp.

    python bench/syscalls.py                     # 200 small instances, both receivers
    python bench/syscalls.py --count 500 --fsync always

Each receiver runs under ``strace -c -f`` twice: once while it receives
``--count`` instances of the small set (130 KB CT images) from one sender
over one association, once while it receives none (start-up and shutdown
alone). The difference, divided by the count, is what one instance costs;
calls below 0.05 per instance are left out. ``dicomnet listen`` is the
archive (files and SQLite index) with ``--fsync never`` unless ``--fsync``
says otherwise; storescp writes files (bit-preserving, ``+B``). The sender is ``dicomnet store`` for
dicomnet and storescu for storescp (``--sender`` changes the first), with
``TCP_NODELAY=1`` in DCMTK's environment.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_bench import (
    ENV,
    SETS,
    byte_compile,
    dicomnet_cli,
    free_port,
    make_set,
    stop,
    wait_port,
)

LINE = re.compile(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d*)\s*(\w+)$")


def counts(path: Path) -> dict[str, int]:
    """``syscall: calls`` from an ``strace -c`` summary."""
    found = {}
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        if match and match.group(3) != "total":
            found[match.group(3)] = int(match.group(1))
    return found


def traced(receiver: list[str], sender: list[str] | None, port: int, out: Path) -> dict[str, int]:
    summary = out.parent / f"{out.name}.strace"
    process = subprocess.Popen(
        ["strace", "-c", "-f", "-o", str(summary), *receiver],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process)
        if sender is not None:
            subprocess.run(sender, env=ENV, check=True, stdout=subprocess.DEVNULL)
        time.sleep(0.5)
    finally:
        # SIGTERM to the traced receiver itself: strace writes its summary once it exits
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        for child in children:
            os.kill(int(child), signal.SIGTERM)
        if not children:
            stop(process)
        process.wait(timeout=60)
    return counts(summary)


def receiver_command(kind: str, port: int, out: Path, fsync: str) -> list[str]:
    if kind == "storescp":
        return ["/usr/bin/storescp", "+B", "-od", str(out), str(port)]
    return dicomnet_cli(
        "listen", "--host", "127.0.0.1", "--port", str(port), "--dir", str(out), "--fsync", fsync
    )


def sender_command(kind: str, port: int, files: Path) -> list[str]:
    if kind == "storescu":
        return ["/usr/bin/storescu", "+sd", "+r", "127.0.0.1", str(port), str(files)]
    return dicomnet_cli("store", "--quiet", "--recursive", "127.0.0.1", str(port), str(files))


def per_instance(
    kind: str, sender: str, files: Path, empty: Path, work: Path, args: Any
) -> dict[str, float]:
    results = []
    for source in (files, empty):
        port = free_port()
        out = Path(tempfile.mkdtemp(dir=work))
        command = sender_command(sender, port, source) if any(source.iterdir()) else None
        results.append(traced(receiver_command(kind, port, out, args.fsync), command, port, out))
    loaded, idle = results
    return {name: (calls - idle.get(name, 0)) / args.count for name, calls in loaded.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--fsync", default="never", choices=["never", "always"])
    parser.add_argument("--sender", default="dicomnet", choices=["dicomnet", "storescu"])
    args = parser.parse_args()
    byte_compile()
    with tempfile.TemporaryDirectory(prefix="dicomnet-syscalls-") as folder:
        work = Path(folder)
        files = work / "files"
        make_set(files, args.count, SETS["small"][1])
        empty = work / "empty"
        empty.mkdir()
        columns = {
            f"dicomnet listen --fsync {args.fsync} ({args.sender} store)": per_instance(
                "dicomnet", args.sender, files, empty, work, args
            ),
            "storescp (storescu)": per_instance("storescp", "storescu", files, empty, work, args),
        }
    names = sorted(
        {n for column in columns.values() for n, v in column.items() if v >= 0.05},
        key=lambda n: -max(column.get(n, 0) for column in columns.values()),
    )
    print(f"\n{args.count} small instances, calls per instance\n")
    print("| system call | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for name in names:
        cells = " | ".join(f"{column.get(name, 0):.2f}" for column in columns.values())
        print(f"| {name} | {cells} |")
    totals = " | ".join(
        f"{sum(v for v in column.values() if v > 0):.1f}" for column in columns.values()
    )
    print(f"| **total** | {totals} |")


if __name__ == "__main__":
    main()
