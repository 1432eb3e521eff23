"""C-STORE throughput, one association, every sender/receiver pair in one run.

    python bench/store_rate.py --count 2000 --pixels 256

Receivers write files: DCMTK ``storescp -od`` (no fsync) and ``dicomnet
listen --fsync never`` (and ``--fsync always`` for the durable figure). DCMTK
runs with TCP_NODELAY=1. Times are the sender's wall clock, start to exit,
process start-up included; each pair is run ``--rounds`` times, median kept.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ENV = {**os.environ, "TCP_NODELAY": "1"}


def make_files(folder: Path, count: int, pixels: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    pixel_data = bytes(range(256)) * (pixels * pixels * 2 // 256)
    size = 0
    for index in range(count):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = ds.SeriesInstanceUID = generate_uid()
        ds.PatientName = f"BENCH^{index}"
        ds.Rows = ds.Columns = pixels
        ds.BitsAllocated = 16
        ds.PixelData = pixel_data
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        size += path.stat().st_size
    return size


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def receiver(kind: str, port: int, out: Path) -> subprocess.Popen[bytes]:
    if kind == "storescp":
        args = ["/usr/bin/storescp", "-od", str(out), str(port)]
    else:
        fsync = "always" if kind == "dicomnet-fsync" else "never"
        args = [
            sys.executable,
            "-m",
            "dicomnet.cli",
            "listen",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(out),
            "--fsync",
            fsync,
        ]
    process = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return process


def sender(kind: str, port: int, files: Path) -> list[str]:
    if kind == "storescu":
        return ["/usr/bin/storescu", "+sd", "127.0.0.1", str(port), str(files)]
    return [
        sys.executable,
        "-m",
        "dicomnet.cli",
        "store",
        "--quiet",
        "--recursive",
        "127.0.0.1",
        str(port),
        str(files),
    ]


def one_run(send: str, receive: str, files: Path, work: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    process = receiver(receive, port, out)
    try:
        start = time.perf_counter()
        subprocess.run(
            sender(send, port, files), env=ENV, check=True, capture_output=True, timeout=900
        )
        return time.perf_counter() - start
    finally:
        process.terminate()
        process.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(out)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--pixels", type=int, default=256, help="rows = columns of 16-bit pixels")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pairs = [
        ("storescu", "storescp"),
        ("dicomnet", "dicomnet"),
        ("dicomnet", "dicomnet-fsync"),
        ("storescu", "dicomnet"),
        ("dicomnet", "storescp"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        size = make_files(work / "files", args.count, args.pixels)
        times: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
        for _ in range(args.rounds):
            for pair in pairs:
                times[pair].append(one_run(*pair, work / "files", work))
    base = statistics.median(times[("storescu", "storescp")])
    print(f"{args.count} instances of {size / args.count / 1000:.0f} KB, one association")
    print("| sender -> receiver | median s | instances/s | MB/s | vs DCMTK -> DCMTK |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (send, receive), values in times.items():
        median = statistics.median(values)
        print(
            f"| {send} -> {receive} | {median:.2f} | {args.count / median:.0f} "
            f"| {size / median / 1e6:.0f} | {base / median:.2f}x |"
        )


if __name__ == "__main__":
    main()
