"""Forwarding while ingesting: does a forward destination slow the archive down?

    python bench/forward.py                 # 1,000 CT images of 130 KB, 3 rounds
    python bench/forward.py --count 200 --rounds 1

Each round ingests the same files twice into a fresh ``dicomnet listen``
(``--fsync never``, SQLite index) with ``dicomnet store --associations 2``:

* **alone**: no forwarding;
* **forwarding**: ``--forward`` to DCMTK's ``storescp --fork`` on loopback, so every
  instance is queued in its row's transaction and sent on while the next ones
  arrive.

Reported: the ingest rate of each (instances/s, from the sender's start to its
exit), their ratio, and how long after the ingest the last forward arrived.
Medians over the rounds, the two runs interleaved.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def make_files(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    study = generate_uid()
    series = [generate_uid() for _ in range(count // 100 + 1)]
    pixels = bytes(range(256)) * 512  # 256 x 256 x 2 bytes
    for index in range(count):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID = "BENCH^FORWARD", "BENCH"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series[index // 100]
        ds.Modality = "CT"
        ds.Rows = ds.Columns = 256
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = pixels
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"ct{index:05d}.dcm", enforce_file_format=True)


def one_run(files: Path, work: Path, count: int, forward: bool) -> tuple[float, float, int]:
    """(ingest seconds, seconds from the ingest's end to the last forward's arrival,
    instances forwarded by the time the ingest ended)."""
    archive = work / "archive"
    received = work / "received"
    received.mkdir(parents=True)
    port = free_port()
    extra: list[str] = []
    receiver = None
    if forward:
        destination = free_port()
        receiver = subprocess.Popen(
            ["/usr/bin/storescp", "--fork", "-od", str(received), str(destination)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "TCP_NODELAY": "1"},
        )  # fmt: skip
        wait_for_port(destination)
        extra = ["--forward", f"STORESCP=127.0.0.1:{destination}"]
    listener = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE", "--host", "127.0.0.1",
         "--port", str(port), "--dir", str(archive), "--fsync", "never", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dicomnet", "store", "--associations", "2", "127.0.0.1",
             str(port), str(files), "--recursive"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        ingest = time.perf_counter() - started
        ingested = time.perf_counter()
        during = len(os.listdir(received))
        lag = 0.0
        if forward:
            deadline = time.monotonic() + 300
            while len(os.listdir(received)) < count and time.monotonic() < deadline:
                time.sleep(0.05)
            lag = time.perf_counter() - ingested
            if len(os.listdir(received)) < count:
                raise RuntimeError("not everything was forwarded")
        return ingest, lag, during
    finally:
        listener.terminate()
        listener.wait(timeout=60)
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dicomnet-forward-"))
    try:
        make_files(root / "files", args.count)
        alone, forwarding, lags, during = [], [], [], []
        for round_number in range(args.rounds):
            seconds, _, _ = one_run(root / "files", root / "run", args.count, False)
            alone.append(seconds)
            seconds, lag, forwarded = one_run(root / "files", root / "run", args.count, True)
            forwarding.append(seconds)
            lags.append(lag)
            during.append(forwarded)
            print(
                f"round {round_number + 1}: alone {alone[-1]:.2f} s,"
                f" forwarding {forwarding[-1]:.2f} s ({forwarded} forwarded meanwhile),"
                f" last forward {lag:.2f} s later"
            )
        a, f = statistics.median(alone), statistics.median(forwarding)
        print(f"ingest alone:      {args.count / a:7.0f} instances/s ({a:.2f} s)")
        print(f"ingest forwarding: {args.count / f:7.0f} instances/s ({f:.2f} s)")
        print(f"ratio: {a / f:.2f}x; forwarding done {statistics.median(lags):.2f} s after ingest")
        print(f"forwarded while ingesting: {statistics.median(during):.0f} of {args.count}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
