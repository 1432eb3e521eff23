"""Association churn against `dicomnet listen`: does anything accumulate?

    python bench/churn.py                 # 10,000 of each phase (a few minutes)
    python bench/churn.py --count 1000    # quicker

One listener process (the archive, fsync on, SQLite index); four phases, each
``--count`` associations opened one after another from this process:

* ``echo``: associate, C-ECHO, release (pynetdicom once leaked 30 MB per 1,000);
* ``probe``: TCP connect, then close without a byte (load-balancer checks);
* ``malformed RQ``: an A-ASSOCIATE-RQ valid up to a broken last sub-item;
* ``aborted store``: a C-STORE reset by TCP RST at a random point of its dataset.

After each phase (twice by default: what grows in the second round is a leak,
not warm-up): the listener's RSS and peak RSS, its open descriptors and
the files in ``.incoming`` (the archive keeps 8 there, created ahead of
time). A leak shows as a number that grows with the phase's count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dicomnet.net import client
from dicomnet.testing import RawPeer, raw

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"


def mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def echo(port: int) -> None:
    async with client.connect("127.0.0.1", port, contexts=[(VERIFICATION, [IMPLICIT])]) as a:
        await a.echo()


async def probe(port: int) -> None:
    peer = await RawPeer.connect("127.0.0.1", port)
    peer.close()
    await peer.closed(timeout=5)


MALFORMED = raw.associate_rq(
    contexts=[raw.presentation_context(1, VERIFICATION, [IMPLICIT])],
    user_info=raw.user_information(extra=raw.item(0x55, b"\xff" * 4, length=40)),
)


async def malformed(port: int) -> None:
    async with await RawPeer.connect("127.0.0.1", port) as peer:
        await peer.send(MALFORMED)
        await peer.expect_abort()


def store_bytes(index: int) -> bytes:
    uid = f"1.2.826.0.1.3680043.10.1341.88.{index + 1}"
    value = uid.encode() + b"\0" * (len(uid) % 2)  # UI values pad to even with NUL
    dataset = (
        b"\x08\x00\x16\x00" + len(CT + "\0").to_bytes(4, "little") + CT.encode() + b"\0"
        + b"\x08\x00\x18\x00" + len(value).to_bytes(4, "little") + value
        + b"\xe0\x7f\x10\x00" + (200_000).to_bytes(4, "little") + bytes(200_000)
    )  # fmt: skip
    pdus = [raw.p_data(raw.pdv(3, 0x03, raw.c_store_rq(CT, uid)))]
    for start in range(0, len(dataset), 16000):
        last = start + 16000 >= len(dataset)
        pdus.append(raw.p_data(raw.pdv(3, 0x02 if last else 0, dataset[start : start + 16000])))
    return b"".join(pdus)


async def aborted_store(port: int, index: int) -> None:
    message = store_bytes(index)
    async with await RawPeer.connect("127.0.0.1", port) as peer:
        await peer.associate([raw.presentation_context(3, CT, [IMPLICIT])])
        await peer.send(message[: random.randrange(200, len(message) - 100)])
        peer.reset()


def start(archive: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1", "--port", "0",
         "--dir", str(archive)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    match = re.search(r":(\d+)", process.stdout.readline())
    if not match:
        raise SystemExit("the listener did not start")
    return process, int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument(
        "--rounds", type=int, default=2, help="repeat the phases: growth in round 2 is a leak"
    )
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"association churn, {args.count} per phase")
    for column in ("after", "seconds", "RSS MB", "peak MB", "fds", ".incoming files"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="dicomnet-churn-") as scratch:
        archive = Path(scratch) / "archive"
        process, port = start(archive)

        def row(name: str, seconds: float) -> None:
            time.sleep(1)  # let the last connection's cleanup run
            fds = len(os.listdir(f"/proc/{process.pid}/fd"))
            temps = len(list((archive / ".incoming").iterdir()))
            table.add_row(
                name,
                f"{seconds:.0f}",
                f"{mb(process.pid, 'VmRSS'):.0f}",
                f"{mb(process.pid, 'VmHWM'):.0f}",
                str(fds),
                str(temps),
            )

        try:
            row("start", 0)
            phases = [
                ("echo", lambda i: echo(port)),
                ("probe", lambda i: probe(port)),
                ("malformed RQ", lambda i: malformed(port)),
                ("aborted store", lambda i: aborted_store(port, i)),
            ]
            for (name, make), round_number in (
                (phase, number) for number in range(1, args.rounds + 1) for phase in phases
            ):
                name = f"{name} ({round_number})"
                started = time.perf_counter()

                async def phase(make=make) -> None:  # type: ignore[no-untyped-def]
                    for i in range(args.count):
                        await make(i)

                asyncio.run(phase())
                row(name, time.perf_counter() - started)
                console.print(f"{name}: done")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        stored = [p for p in archive.rglob("*.dcm") if ".incoming" not in p.parts]
    console.print(table)
    console.print(f"instances stored by aborted C-STOREs: {len(stored)} (expected 0)")


if __name__ == "__main__":
    main()
