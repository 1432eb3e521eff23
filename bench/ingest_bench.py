"""Archive ingestion: `dicomnet listen` against DCMTK's storescp, over 1 and 8 associations.

    python bench/ingest_bench.py               # small and ct sets, 3 rounds (about 10 minutes)
    python bench/ingest_bench.py --quick       # a tenth of each set, one round

The sets of ``store_bench.py``: ``small`` 2,000 CT images of 130 KB and ``ct``
500 of 520 KB, in series of 100, two series per study. Each row sends a set
over 1 or 8 associations on loopback, each side its own process(es):

* ``storescu -> storescp``: DCMTK writing files, the baseline; over 8
  associations, 8 storescu processes (one subfolder each) to
  ``storescp --fork``, bit-preserving (``+B``: its fastest way to write what it
  receives). ``TCP_NODELAY=1`` in DCMTK's environment.
* ``dicomnet -> archive``: ``dicomnet store --associations N`` to
  ``dicomnet listen --fsync never`` (files and SQLite index; storescp does not
  fsync either); ``no index`` is ``--no-index``; ``fsync`` is the default
  ``--fsync always``; ``workers auto`` is ``--workers auto`` (one per CPU).
* ``storescu -> archive``: DCMTK's sender to our archive.

Figures: wall clock from the senders' start to the last one's exit, instances/s,
MB/s, the ratio to DCMTK's rate for the same association count, and the index
overhead (archive vs no index). Medians over ``--rounds`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_bench import (
    ENV,
    PARTS,
    SETS,
    byte_compile,
    count_stored,
    dicomnet_cli,
    free_port,
    make_set,
    stop,
    wait_port,
)


@dataclass
class Row:
    name: str
    sender: str
    receiver: str
    associations: int
    seconds: list[float] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.seconds)


def receiver(kind: str, port: int, out: Path, associations: int) -> list[str]:
    if kind == "storescp":
        fork = ["--fork"] if associations > 1 else []
        return ["/usr/bin/storescp", *fork, "+B", "-od", str(out), str(port)]
    common = ["listen", "--host", "127.0.0.1", "--port", str(port), "--dir", str(out)]
    options = {
        "archive": ["--fsync", "never"],
        "no index": ["--no-index", "--fsync", "never"],
        "fsync": ["--fsync", "always"],
        "workers auto": ["--fsync", "never", "--workers", "auto"],
    }[kind]
    return dicomnet_cli(*common, *options)


def senders(kind: str, port: int, files: Path, associations: int) -> list[list[str]]:
    if kind == "storescu":
        folders = [files] if associations == 1 else [files / f"part{i}" for i in range(PARTS)]
        return [["/usr/bin/storescu", "+sd", "+r", "127.0.0.1", str(port), str(f)] for f in folders]
    return [
        dicomnet_cli(
            "store", "--quiet", "--recursive", "--associations", str(associations),
            "127.0.0.1", str(port), str(files),
        )
    ]  # fmt: skip


def one_run(row: Row, files: Path, count: int, work: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    server = subprocess.Popen(
        receiver(row.receiver, port, out, row.associations),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, server)
        start = time.perf_counter()
        clients = [
            subprocess.Popen(c, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for c in senders(row.sender, port, files, row.associations)
        ]
        for client in clients:
            _, error = client.communicate(timeout=600)
            if client.returncode != 0:
                raise RuntimeError(f"{row.name}: sender failed: {error.decode()[-500:]}")
        seconds = time.perf_counter() - start
        stored = count_stored(out)
        if stored != count:
            raise RuntimeError(f"{row.name}: {stored} files received, {count} sent")
        return seconds
    finally:
        stop(server)


def rows_for(associations: int) -> list[Row]:
    x = f" x{associations}"
    rows = [
        Row("storescu -> storescp" + x, "storescu", "storescp", associations),
        Row("dicomnet -> archive" + x, "dicomnet", "archive", associations),
        Row("dicomnet -> no index" + x, "dicomnet", "no index", associations),
        Row("dicomnet -> fsync" + x, "dicomnet", "fsync", associations),
        Row("storescu -> archive" + x, "storescu", "archive", associations),
    ]
    if associations > 1:
        rows.append(Row("dicomnet -> workers auto" + x, "dicomnet", "workers auto", associations))
    return rows


def report(set_name: str, count: int, size: int, rows: list[Row]) -> None:
    print(f"\n### {set_name}: {count} instances, {size / 1e6:.0f} MB\n")
    print("| sender -> receiver | median s | instances/s | MB/s | vs DCMTK | index overhead |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        seconds = row.median()
        base = next(
            r for r in rows if r.receiver == "storescp" and r.associations == row.associations
        ).median()
        overhead = ""
        if row.receiver == "archive" and row.sender == "dicomnet":
            plain = next(
                r
                for r in rows
                if r.receiver == "no index"
                and r.associations == row.associations
                and r.sender == row.sender
            )
            overhead = f"{(seconds / plain.median() - 1) * 100:+.0f}%"
        print(
            f"| {row.name} | {seconds:.2f} | {count / seconds:.0f} | {size / seconds / 1e6:.0f} "
            f"| {base / seconds:.2f}x | {overhead} |"
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="small,ct")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--associations", default="1,8")
    parser.add_argument(
        "--minimal-header",
        action="store_true",
        help="instances with a dozen attributes instead of a real CT header",
    )
    parser.add_argument("--quick", action="store_true", help="--scale 0.1 --rounds 1")
    args = parser.parse_args()
    byte_compile()
    if args.quick:
        args.scale = 0.1 if "--scale" not in sys.argv else args.scale
        args.rounds = 1 if "--rounds" not in sys.argv else args.rounds
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians of {args.rounds}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for set_name in args.sets.split(","):
            count, pixels = SETS[set_name]
            count = max(PARTS, round(count * args.scale))
            files = work / set_name
            size = make_set(files, count, pixels, minimal=args.minimal_header)
            rows = [r for n in args.associations.split(",") for r in rows_for(int(n))]
            for _ in range(args.rounds):
                for row in rows:
                    row.seconds.append(one_run(row, files, count, work))
            report(set_name, count, size, rows)


if __name__ == "__main__":
    main()
