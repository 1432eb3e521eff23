"""Transfer-syntax conversion: decompress-and-send against DCMTK, and --store-as cost.

    python bench/transcode_bench.py                  # 200 CT images, 3 rounds
    python bench/transcode_bench.py --count 40 --rounds 1

1. **Decompress and send.** A JPEG-LS lossless CT set (512 x 512, 12 bits in
   16, made by DCMTK's ``dcmcjpls`` from pydicom-generated images with a CT's
   mix of smooth field and noise) goes to DCMTK's ``storescp`` restricted to
   uncompressed syntaxes (``+xe``, ``--ignore``: received, not written), so
   each sender must decode every image. Senders: DCMTK ``dcmsend
   --decompress-lossless``; ``dicomnet store`` converting in the event
   loop's threads; ``dicomnet store --conversion-processes N``. Figures: the
   sender's wall clock from start to exit (process start-up included),
   images/s, and its CPU seconds (user + system, children included).
2. **Decoder choice.** One image decoded by each pydicom backend installed
   (pyjpegls = CharLS, pylibjpeg = libjpeg, gdcm), single thread.
3. **--store-as.** The native set sent by ``dicomnet store`` to ``dicomnet
   listen`` as received, with ``--store-as j2k-lossless`` and with
   ``--store-as jpeg-ls`` (``--fsync never`` for all): wall clock and bytes
   on disk.

Each case runs ``--rounds`` times, interleaved; medians are given.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ENV = {**os.environ, "TCP_NODELAY": "1"}
DCMTK = "/usr/bin"


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
    raise TimeoutError(f"nothing listening on {port}")


def make_set(folder: Path, count: int, size: int = 512) -> tuple[Path, Path]:
    """``count`` native CT images and their JPEG-LS lossless twins (by dcmcjpls)."""
    native, jls = folder / "native", folder / "jpegls"
    native.mkdir(parents=True)
    jls.mkdir()
    rng = np.random.default_rng(1)
    rows, columns = np.mgrid[0:size, 0:size]
    body = ((rows - size / 2) ** 2 + (columns - size / 2) ** 2) < (size * 0.45) ** 2
    study = generate_uid()
    series = generate_uid()
    for index in range(count):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.PatientID = "BENCH"
        ds.PatientName = "BENCH^TRANSCODE"
        ds.Modality = "CT"
        ds.InstanceNumber = index + 1
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        tissue = 1000 + 40 * np.sin(rows / (17 + index % 5)) * np.cos(columns / 23)
        image = np.where(body, tissue + rng.normal(0, 12, (size, size)), 24)
        ds.PixelData = np.clip(image, 0, 4095).astype("<u2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        path = native / f"ct{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        subprocess.run([f"{DCMTK}/dcmcjpls", str(path), str(jls / path.name)], check=True)
    return native, jls


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> tuple[float, float]:
    """Wall clock and CPU seconds of one sender run (which must succeed)."""
    cpu = children_cpu()
    start = time.perf_counter()
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {result.stdout[-500:]} {result.stderr[-500:]}")
    return wall, children_cpu() - cpu


def storescp(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [f"{DCMTK}/storescp", "+xe", "--ignore", "-aet", "UNCOMPR", str(port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return process


def decompress_and_send(jls: Path, rounds: int, processes: int) -> dict[str, list[float]]:
    files = sorted(str(p) for p in jls.iterdir())
    port = free_port()
    server = storescp(port)
    dicomnet = [sys.executable, "-m", "dicomnet", "store", "-q", "--aec", "UNCOMPR"]
    cases: dict[str, list[str]] = {
        "DCMTK dcmsend --decompress-lossless": [
            f"{DCMTK}/dcmsend", "+dls", "-aec", "UNCOMPR", "127.0.0.1", str(port), *files,
        ],
        "dicomnet store (threads)": [*dicomnet, "127.0.0.1", str(port), *files],
        f"dicomnet store --conversion-processes {processes}": [
            *dicomnet, "--conversion-processes", str(processes), "127.0.0.1", str(port), *files,
        ],
        f"dicomnet store --conversion-processes {processes} --associations 2": [
            *dicomnet, "--conversion-processes", str(processes), "--associations", "2",
            "127.0.0.1", str(port), *files,
        ],
    }  # fmt: skip
    results: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for _ in range(rounds):
            for name, command in cases.items():
                wall, seconds = timed(command)
                results[name].append(wall)
                cpu[name].append(seconds)
    finally:
        server.terminate()
        server.wait()
    return {
        name: [statistics.median(results[name]), statistics.median(cpu[name])] for name in cases
    }


def decoders(jls: Path, repeat: int = 20) -> dict[str, float]:
    data = next(iter(sorted(jls.iterdir()))).read_bytes()
    timings = {}
    for plugin in ("pyjpegls", "pylibjpeg", "gdcm"):
        try:
            samples = []
            for _ in range(repeat):
                ds = dcmread(BytesIO(data))
                start = time.perf_counter()
                ds.decompress(decoding_plugin=plugin, generate_instance_uid=False)
                samples.append(time.perf_counter() - start)
            timings[plugin] = statistics.median(samples)
        except Exception:
            continue
    return timings


def store_as(native: Path, workdir: Path, rounds: int) -> tuple[dict[str, tuple[float, int]], int]:
    """Median wall clock and bytes on disk per case, and how many listener runs crashed.

    A listener that dies (the run is then retried, at most three times per
    case and round) is counted and reported, not hidden.
    """
    files = sorted(str(p) for p in native.iterdir())
    cases = (
        ("as received", []),
        ("--store-as j2k-lossless", ["--store-as", "j2k-lossless"]),
        ("--store-as jpeg-ls", ["--store-as", "jpeg-ls"]),
    )
    results: dict[str, list[tuple[float, int]]] = {name: [] for name, _ in cases}
    crashes = 0
    for round_number in range(rounds):
        for name, extra in cases:
            for attempt in range(3):
                tag = f"{round_number}-{extra[-1] if extra else 'none'}-{attempt}"
                folder = workdir / f"archive-{tag}"
                port = free_port()
                log = open(workdir / f"listen-{tag}.log", "w")
                server = subprocess.Popen(
                    [sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE",
                     "--host", "127.0.0.1", "--port", str(port), "--dir", str(folder),
                     "--fsync", "never", *extra],
                    stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
                try:
                    wait_for_port(port)
                    wall, _ = timed(
                        [sys.executable, "-m", "dicomnet", "store", "-q", "--aec", "ARCHIVE",
                         "127.0.0.1", str(port), *files]
                    )  # fmt: skip
                except RuntimeError:
                    status = server.poll()
                    print(f"{name}: listener exit status {status}", file=sys.stderr)
                    if status is None:
                        raise
                    crashes += 1
                    continue
                finally:
                    server.terminate()
                    server.wait()
                    log.close()
                stored = sum(p.stat().st_size for p in folder.rglob("*.dcm"))
                results[name].append((wall, stored))
                break
    medians = {
        name: (statistics.median(w for w, _ in runs), int(statistics.median(b for _, b in runs)))
        for name, runs in results.items()
        if runs
    }
    return medians, crashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--only", choices=["send", "ingest"], help="Run one part only.")
    options = parser.parse_args()
    say: Callable[[str], None] = print
    with tempfile.TemporaryDirectory(prefix="transcode-bench-") as temp:
        workdir = Path(temp)
        native, jls = make_set(workdir / "set", options.count)
        native_bytes = sum(p.stat().st_size for p in native.iterdir())
        jls_bytes = sum(p.stat().st_size for p in jls.iterdir())
        say(f"set: {options.count} CT images 512x512, native {native_bytes / 1e6:.1f} MB, "
            f"JPEG-LS {jls_bytes / 1e6:.1f} MB; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        if options.only != "ingest":
            say("\n| sender | median s | images/s | CPU s | vs DCMTK |")
            say("| --- | ---: | ---: | ---: | ---: |")
            sent = decompress_and_send(jls, options.rounds, options.processes)
            reference = sent["DCMTK dcmsend --decompress-lossless"][0]
            for name, (wall, cpu) in sent.items():
                say(f"| {name} | {wall:.2f} | {options.count / wall:.0f} | {cpu:.2f} | "
                    f"{reference / wall:.2f}x |")  # fmt: skip
            say("\n| decoder (one 512x512 JPEG-LS image) | median ms |\n| --- | ---: |")
            for plugin, seconds in decoders(jls).items():
                say(f"| {plugin} | {seconds * 1000:.1f} |")
        if options.only == "send":
            return
        say("\n| dicomnet listen | median s | images/s | bytes stored | ratio |\n"
            "| --- | ---: | ---: | ---: | ---: |")  # fmt: skip
        ingest, crashes = store_as(native, workdir, options.rounds)
        base = ingest["as received"][1]
        for name, (wall, stored) in ingest.items():
            say(f"| {name} | {wall:.2f} | {options.count / wall:.0f} | {stored / 1e6:.1f} MB | "
                f"{stored / base:.2f} |")  # fmt: skip
        say(f"\nlistener runs that crashed and were run again: {crashes}")


if __name__ == "__main__":
    main()
