"""C-STORE throughput: dicomnet, DCMTK and pynetdicom side by side in one run.

    python bench/store_bench.py                   # every set, 3 rounds (about 15 minutes)
    python bench/store_bench.py --quick           # a tenth of each set, one round

Sets (generated with pydicom, CT images with the header of a real one,
explicit VR little endian): ``small`` 2,000 instances of 137 KB, ``ct`` 500 of
530 KB, ``large`` 4 of 100 MB; ``--scale`` multiplies the counts. Each pair sends one set over one
association (unless it says otherwise), on loopback, each side its own
process. Peers at their best: DCMTK with ``TCP_NODELAY=1`` in its
environment and storescp writing what it receives as it arrives (``+B``,
bit-preserving: without it storescp parses and re-encodes every dataset, which
cost it 2.5 times the CPU on these sets), pynetdicom with ``TCP_NODELAY`` on its sockets and its log
handlers off (``pynetdicom_best.py``).

dicomnet's receiver is ``dicomnet listen``: the archive, which indexes every
instance in SQLite before answering; ``--no-index`` stores files only,
``--no-digest`` is the archive without SHA-256 (what storescp also skips), and
``fsync`` is ``--fsync always`` (the default of ``listen``; the other rows run
``--fsync never``, as DCMTK's storescp does not fsync); ``pure`` is the
archive on the pure-Python codec (``DICOMNET_NO_EXTENSIONS=1``).

Figures: the sender's wall clock from start to exit (process start-up
included, for every peer alike), instances/s and MB/s from it, CPU time per
instance of sender and receiver (user + system, start-up included; for the
receiver also without its start-up, the CPU it had used when it first
answered a connection: a long-running service pays that once), and the
receiver's peak RSS (VmHWM). Each
pair runs ``--rounds`` times, interleaved with the others; medians are given.
After every run the receiver's folder must hold one file per instance sent.

Nothing is deleted until the whole run is over: on this machine's ext4
(no journal) every inode freed in the last minutes is skipped, one by one,
when a new file is created (``recently_deleted`` in the kernel's inode
allocator), so deleting the last run's files would slow whichever receiver
runs next.
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
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "TCP_NODELAY": "1"}
PURE_ENV = {**ENV, "DICOMNET_NO_EXTENSIONS": "1"}
"""The receiver of the ``dicomnet pure`` row: the pure-Python codec."""
TICKS = os.sysconf("SC_CLK_TCK")

SETS = {"small": (2000, 256), "ct": (500, 512), "large": (4, 7071)}
"""name: (instances, rows = columns of 16-bit pixels)."""


SERIES_SIZE = 100
"""Instances per series, two series per study: a set arrives as a modality sends it."""

PARTS = 8
"""Subfolders a set is spread over, one per association of an xN sender that
takes a folder each (DCMTK's storescu)."""


def modality_header() -> Dataset:
    """The header of a real CT image (pydicom's ``CT_small.dcm``, 127 elements up to
    Instance Number) without its pixels and UIDs: what a scanner's instances carry,
    and what a receiver that reads attributes walks through."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    source = dcmread(get_testdata_file("CT_small.dcm"))
    header = Dataset()
    for element in source:
        if element.tag < 0x7FE00000 and element.tag.group != 0x0002:
            header.add(element)
    return header


def make_set(folder: Path, count: int, pixels: int, *, minimal: bool = False) -> int:
    """``count`` instances in ``folder``; ``minimal``: a dozen attributes, no real header."""
    folder.mkdir(parents=True)
    for part in range(PARTS):
        (folder / f"part{part}").mkdir()
    pixel_data = bytes(range(256)) * (pixels * pixels * 2 // 256) + bytes(pixels * pixels * 2 % 256)
    header = Dataset() if minimal else modality_header()
    total = 0
    study = series = ""
    for index in range(count):
        if index % SERIES_SIZE == 0:
            series = generate_uid()
            if index % (2 * SERIES_SIZE) == 0:
                study = generate_uid()
        ds = Dataset()
        ds.update(header)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.PatientName = f"BENCH^{index}"
        ds.PatientID = "BENCH"
        ds.Modality = "CT"
        ds.Rows = ds.Columns = pixels
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = pixel_data
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"part{index % PARTS}" / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    return total


def byte_compile() -> None:
    """Cache dicomnet's byte code, as an installed package has it: where
    ``PYTHONDONTWRITEBYTECODE`` is set (or the tree is read-only), every dicomnet
    process would otherwise compile its modules from source at start."""
    tree = HERE.parent / "src"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"receiver exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"receiver not listening on {port}")


def dicomnet_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dicomnet", *args]


def receiver_command(kind: str, port: int, out: Path) -> list[str]:
    if kind == "storescp":
        return ["/usr/bin/storescp", "+B", "-od", str(out), str(port)]
    if kind == "storescp --ignore":
        return ["/usr/bin/storescp", "--ignore", str(port)]
    if kind == "pynetdicom":
        return [sys.executable, str(HERE / "pynetdicom_store.py"), "scp", str(port), str(out)]
    common = ["listen", "--host", "127.0.0.1", "--port", str(port), "--dir", str(out)]
    if kind == "dicomnet --ignore":
        return dicomnet_cli(*common, "--ignore")
    if kind == "dicomnet --no-index":
        return dicomnet_cli(*common, "--no-index", "--fsync", "never")
    if kind == "dicomnet --no-digest":
        return dicomnet_cli(*common, "--no-digest", "--fsync", "never")
    if kind == "dicomnet pure":  # the pure codec, by the environment of the receiver
        return dicomnet_cli(*common, "--fsync", "never")
    if kind == "dicomnet fsync":
        return dicomnet_cli(*common, "--fsync", "always")
    return dicomnet_cli(*common, "--fsync", "never")


def sender_command(kind: str, port: int, files: Path) -> list[str]:
    if kind == "storescu":
        return ["/usr/bin/storescu", "+sd", "+r", "127.0.0.1", str(port), str(files)]
    if kind == "pynetdicom":
        return [sys.executable, str(HERE / "pynetdicom_store.py"), "scu", str(port), str(files)]
    associations = kind.split("x")[1] if "x" in kind else "1"
    return dicomnet_cli(
        "store", "--quiet", "--recursive", "--associations", associations,
        "127.0.0.1", str(port), str(files),
    )  # fmt: skip


def count_stored(out: Path) -> int:
    """Instances a receiver wrote: files outside hidden names and the index."""
    return sum(
        1
        for p in out.rglob("*")
        if p.is_file()
        and not p.name.startswith((".", "index.sqlite"))
        and ".incoming" not in p.parts
    )


def stop(receiver: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within a minute."""
    receiver.terminate()
    try:
        receiver.wait(timeout=60)
    except subprocess.TimeoutExpired:
        receiver.kill()
        receiver.wait(timeout=30)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Run:
    seconds: float
    sender_cpu: float
    receiver_cpu: float
    receiver_rss: float
    receiver_startup_cpu: float = 0.0
    """The receiver's CPU when it first answered a connection: its start-up."""


@dataclass
class Pair:
    sender: str
    receiver: str
    runs: list[Run] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.sender} -> {self.receiver}"

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs)


def one_run(pair: Pair, files: Path, count: int, work: Path) -> Run:
    out = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    receiver = subprocess.Popen(
        receiver_command(pair.receiver, port, out),
        env=PURE_ENV if pair.receiver == "dicomnet pure" else ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, receiver)
        startup_cpu = proc_cpu_seconds(receiver.pid)
        start = time.perf_counter()
        sender = subprocess.Popen(
            sender_command(pair.sender, port, files),
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert sender.stderr is not None
        _, status, usage = os.wait4(sender.pid, 0)
        seconds = time.perf_counter() - start
        error = sender.stderr.read().decode(errors="replace")
        sender.returncode = os.waitstatus_to_exitcode(status)
        if sender.returncode != 0:
            raise RuntimeError(f"{pair.name}: sender failed ({sender.returncode}): {error[-500:]}")
        receiver_cpu = proc_cpu_seconds(receiver.pid)
        receiver_rss = proc_peak_rss_mb(receiver.pid)
        if "ignore" not in pair.receiver:
            stored = count_stored(out)
            if stored != count:
                raise RuntimeError(f"{pair.name}: {stored} files received, {count} sent")
        sender_cpu = usage.ru_utime + usage.ru_stime
        return Run(seconds, sender_cpu, receiver_cpu, receiver_rss, startup_cpu)
    finally:
        stop(receiver)
        # ``out`` stays until the end of the run (see the module docstring).


def pairs_for(set_name: str, pynetdicom: bool = True) -> list[Pair]:
    pairs = [
        Pair("storescu", "storescp"),
        Pair("storescu", "storescp --ignore"),
        Pair("dicomnet", "dicomnet"),
        Pair("dicomnet", "dicomnet --no-index"),
        Pair("dicomnet", "dicomnet --no-digest"),
        Pair("dicomnet", "dicomnet fsync"),
        Pair("dicomnet", "dicomnet pure"),
        Pair("dicomnet", "dicomnet --ignore"),
        Pair("storescu", "dicomnet"),
        Pair("dicomnet", "storescp"),
    ]
    if pynetdicom:
        pairs.append(Pair("pynetdicom", "pynetdicom"))
    if set_name == "small":
        pairs.append(Pair("dicomnet x32", "dicomnet"))
        pairs.append(Pair("dicomnet x32", "dicomnet --ignore"))
    return pairs


def run_with_retry(pair: Pair, files: Path, count: int, work: Path) -> Run:
    """One run; a run whose sender fails (a peer overwhelmed on this shared
    machine) is said on standard error and tried again, twice at most."""
    for attempt in range(3):
        try:
            return one_run(pair, files, count, work)
        except RuntimeError as exc:
            print(f"{pair.name}: attempt {attempt + 1} failed: {exc}"[:300], file=sys.stderr)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def report(set_name: str, count: int, size: int, pairs: list[Pair]) -> None:
    base = next(p for p in pairs if p.name == "storescu -> storescp").median("seconds")
    pynet = next((p.median("seconds") for p in pairs if p.sender == "pynetdicom"), None)
    print(
        f"\n### {set_name}: {count} instances of {size / count / 1e6:.2f} MB "
        f"({size / 1e6:.0f} MB), one association unless xN\n"
    )
    print(
        "| sender -> receiver | median s | instances/s | MB/s | sender CPU ms/instance "
        "| receiver CPU ms/instance | after start-up | receiver peak RSS MB "
        "| vs DCMTK |" + (" vs pynetdicom |" if pynet is not None else "")
    )
    columns = 8 if pynet is None else 9
    print("| --- |" + " ---: |" * columns)
    for pair in pairs:
        seconds = pair.median("seconds")
        running = statistics.median(r.receiver_cpu - r.receiver_startup_cpu for r in pair.runs)
        print(
            f"| {pair.name} | {seconds:.2f} | {count / seconds:.0f} | {size / seconds / 1e6:.0f} "
            f"| {pair.median('sender_cpu') * 1000 / count:.2f} "
            f"| {pair.median('receiver_cpu') * 1000 / count:.2f} "
            f"| {running * 1000 / count:.2f} "
            f"| {pair.median('receiver_rss'):.0f} | {base / seconds:.2f}x |"
            + (f" {pynet / seconds:.1f}x |" if pynet is not None else "")
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="small,ct,large", help="comma-separated set names")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies instance counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--minimal-header",
        action="store_true",
        help="instances with a dozen attributes instead of a real CT header",
    )
    parser.add_argument(
        "--without-pynetdicom", action="store_true", help="leave the pynetdicom pair out"
    )
    parser.add_argument(
        "--quick", action="store_true", help="--scale 0.1 --rounds 1 unless given otherwise"
    )
    args = parser.parse_args()
    byte_compile()
    if args.quick:
        if "--scale" not in sys.argv:
            args.scale = 0.1
        if "--rounds" not in sys.argv:
            args.rounds = 1
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians of {args.rounds}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for set_name in args.sets.split(","):
            count, pixels = SETS[set_name]
            count = max(1, round(count * args.scale))
            files = work / set_name
            size = make_set(files, count, pixels, minimal=args.minimal_header)
            pairs = pairs_for(set_name, not args.without_pynetdicom)
            for _ in range(args.rounds):
                for pair in pairs:
                    pair.runs.append(run_with_retry(pair, files, count, work))
            report(set_name, count, size, pairs)


if __name__ == "__main__":
    main()
