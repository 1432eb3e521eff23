"""Smoke test of an installed dicomnet, run from the environment it is installed in.

It checks what a user of the wheel gets, with nothing but the installed package,
its dependencies and the standard library: ``dicomnet info`` names the expected
codec, then C-ECHO, C-STORE and C-FIND over loopback, first against dicomnet's
own listener (a ``dicomnet.Listener`` in this process, on every platform) and
archive (``dicomnet listen``, POSIX only), then, with ``--dcmtk DIR``, against DCMTK's
``storescp`` and ``dcmqrscp``. It runs on every platform the wheels are built
for (the wheels workflow runs it after each build) and exits non-zero with one
line saying which step failed.

    python tests/wheel_smoke.py --expect-codec cython [--dcmtk /usr/bin]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PATIENT_ID = "SMOKE-PID"
TIMEOUT = 60.0


class SmokeFailure(Exception):
    """One step of the smoke test went wrong."""


def dicomnet_command() -> list[str]:
    """The console script pip installed beside this interpreter."""
    found = shutil.which("dicomnet", path=sysconfig.get_path("scripts"))
    if found is None:
        raise SmokeFailure(f"no dicomnet script in {sysconfig.get_path('scripts')}")
    return [found]


def run(args: Sequence[str], step: str) -> str:
    result = subprocess.run(
        list(args), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise SmokeFailure(
            f"{step}: exit {result.returncode}: {result.stdout[-800:]} {result.stderr[-800:]}"
        )
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SmokeFailure(f"{process.args} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SmokeFailure(f"nothing listening on 127.0.0.1:{port}")


@contextlib.contextmanager
def server(args: Sequence[str], port: int) -> Iterator[None]:
    process = subprocess.Popen(
        list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    try:
        wait_for_port(port, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def make_instances(folder: Path, count: int) -> tuple[str, set[str]]:
    """``count`` small CT images of one study, as Part 10 files in ``folder``."""
    study, series = generate_uid(), generate_uid()
    uids = set()
    folder.mkdir(parents=True)
    for index in range(count):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.PatientName = "SMOKE^TEST"
        ds.PatientID = PATIENT_ID
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.Modality = "CT"
        ds.InstanceNumber = index + 1
        ds.Rows = ds.Columns = 16
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = bytes((index + i) % 251 for i in range(16 * 16 * 2))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"ct{index}.dcm", enforce_file_format=True)
        uids.add(str(ds.SOPInstanceUID))
    return study, uids


def check_info(expect_codec: str) -> None:
    out = run([*dicomnet_command(), "info"], "dicomnet info")
    if f"codec {expect_codec}" not in out:
        raise SmokeFailure(f"dicomnet info: expected codec {expect_codec}, got {out.strip()!r}")
    print(out.strip())


def echo_store_find(port: int, aec: str, files: Sequence[Path], study: str) -> None:
    cli = dicomnet_command()
    run([*cli, "echo", "--aec", aec, "127.0.0.1", str(port)], f"echo to {aec}")
    run(
        [*cli, "store", "-q", "--aec", aec, "127.0.0.1", str(port), *map(str, files)],
        f"store to {aec}",
    )
    out = run(
        [*cli, "find", "--aec", aec, "--json", "--level", "study",
         "-k", f"PatientID={PATIENT_ID}", "-k", "StudyInstanceUID", "127.0.0.1", str(port)],
        f"find at {aec}",
    )
    studies = {match["0020000D"]["Value"][0] for match in json.loads(out)}
    if studies != {study}:
        raise SmokeFailure(f"find at {aec}: expected study {study}, got {sorted(studies)}")
    print(f"{aec}: echo, store {len(files)}, find {len(studies)} study: ok")


@contextlib.contextmanager
def in_process_listener() -> Iterator[int]:
    """A ``dicomnet.Listener`` on a loop thread of this process, storing in memory and
    answering C-FIND from what it stored: the library's listener on every platform."""
    import asyncio
    import threading

    import dicomnet

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    studies: set[str] = set()
    listener = dicomnet.Listener("INPROCESS", accept_any_storage=True)

    @listener.on_c_store
    async def store(request: Any) -> int:
        studies.add(str(request.dataset.StudyInstanceUID))
        return 0x0000

    @listener.on_c_find
    async def find(request: Any) -> AsyncIterator[tuple[int, Dataset]]:
        for uid in sorted(studies):
            match = Dataset()
            match.QueryRetrieveLevel = "STUDY"
            match.StudyInstanceUID = uid
            yield 0xFF00, match

    def call(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(TIMEOUT)

    try:
        call(listener.listen("127.0.0.1", 0))
        yield listener.port
    finally:
        call(listener.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)


def against_dicomnet(work: Path, files: Sequence[Path], study: str) -> None:
    port = free_port()
    archive = work / "archive"
    command = [*dicomnet_command(), "listen", "--port", str(port), "--dir", str(archive)]
    with server(command, port):
        echo_store_find(port, "DICOMNET", files, study)


def against_dcmtk(dcmtk: Path, work: Path, files: Sequence[Path], uids: set[str],
                  study: str) -> None:
    received = work / "storescp"
    received.mkdir()
    port = free_port()
    storescp = [str(dcmtk / "storescp"), "-aet", "STORESCP", "-od", str(received), str(port)]
    with server(storescp, port):
        cli = dicomnet_command()
        run([*cli, "echo", "--aec", "STORESCP", "127.0.0.1", str(port)], "echo to storescp")
        run([*cli, "store", "-q", "--aec", "STORESCP", "127.0.0.1", str(port),
             *map(str, files)], "store to storescp")
    from pydicom import dcmread

    got = {str(dcmread(path).SOPInstanceUID) for path in received.iterdir()}
    if got != uids:
        raise SmokeFailure(f"storescp received {len(got)} of {len(uids)} instances")
    print(f"storescp: echo, store {len(got)}: ok")

    database = work / "dcmqrscp-db"
    database.mkdir()
    port = free_port()
    config = work / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
        "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nQRSCP {database} RW (200, 1024mb) ANY\nAETable END\n"
    )
    with server([str(dcmtk / "dcmqrscp"), "-c", str(config)], port):
        echo_store_find(port, "QRSCP", files, study)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--expect-codec", choices=["cython", "python"], default="cython")
    parser.add_argument("--dcmtk", type=Path, help="folder of DCMTK's storescp and dcmqrscp")
    args = parser.parse_args(argv)
    import dicomnet

    print(f"dicomnet {dicomnet.__version__} from {Path(dicomnet.__file__).parent}")
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        # A free-threaded build: importing the codec must leave the GIL off (setup.py).
        import dicomnet.core.codec as codec

        enabled = sys._is_gil_enabled()  # type: ignore[attr-defined]
        print(f"free-threaded: codec {codec.IMPLEMENTATION}, GIL enabled: {enabled}")
        if enabled:
            print("FAILED: importing the codec turned the GIL back on", file=sys.stderr)
            return 1
    try:
        check_info(args.expect_codec)
        with tempfile.TemporaryDirectory(prefix="dicomnet-smoke-") as name:
            work = Path(name)
            study, uids = make_instances(work / "files", 3)
            files = sorted((work / "files").iterdir())
            with in_process_listener() as port:
                echo_store_find(port, "INPROCESS", files, study)
            if os.name == "nt":
                # `dicomnet listen` is POSIX-only for now (directory fsync, O_CLOEXEC,
                # signal handlers on the loop): docs/installing.md.
                print("dicomnet listen: not on Windows")
            else:
                against_dicomnet(work, files, study)
            if args.dcmtk is not None:
                against_dcmtk(args.dcmtk, work, files, uids, study)
    except (SmokeFailure, subprocess.TimeoutExpired) as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
