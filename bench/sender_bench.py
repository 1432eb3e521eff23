"""The sender's cost: ``dicomnet store`` beside DCMTK's storescu, into one storescp.

    python bench/sender_bench.py                         # small set, 5 rounds, storescp --ignore
    python bench/sender_bench.py --receiver files        # storescp -od /dev/shm/... (files written)
    python bench/sender_bench.py --baseline /path/src    # also an older dicomnet tree, interleaved
    python bench/sender_bench.py --strace --count 200    # system calls per instance, sender side
    python bench/sender_bench.py --startup               # wall time of a one-file store

Each round runs every sender once, one after the other, into the same
receiver (``storescp --ignore``, ``storescp +B -od`` into a folder under
/dev/shm so the disk does not weigh in, or ``dicomnet listen --ignore``, which
unlike storescp negotiates a window of outstanding C-STOREs), with ``TCP_NODELAY=1`` in every
environment. Figures are medians over the rounds: the sender's wall clock
from start to exit (start-up included) and its user and system CPU (from the
kernel's accounting of the reaped child, so a sender's own children count
too), per instance; each round also sends one file alone, and the CPU of that
run (start-up, association, exit) taken from the full run's and divided by
the other instances gives the CPU one more instance costs. storescu is ``/usr/bin/storescu +sd +r``
(a ``storescu`` on PATH may be pynetdicom's). ``--strace`` runs each sender
under ``strace -c -f`` once over ``--count`` files and once over one file,
and divides the difference by ``--count - 1``: the calls one instance costs,
start-up left out. The dicomnet trees are byte-compiled first, as an
installed package is (an environment with ``PYTHONDONTWRITEBYTECODE=1``
would otherwise compile every module at every start).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_bench import ENV, free_port, make_set, stop, wait_port
from syscalls import counts

HERE = Path(__file__).resolve().parent
STORESCU = "/usr/bin/storescu"


def dicomnet_env(src: Path) -> dict[str, str]:
    return {**ENV, "PYTHONPATH": str(src)}


def senders(baseline: Path | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name: (command before the port and files, environment)."""
    found = {
        "dicomnet": (
            [sys.executable, "-m", "dicomnet", "store", "--quiet", "-r", "127.0.0.1"],
            dicomnet_env(HERE.parent / "src"),
        ),
        "storescu": ([STORESCU, "+sd", "+r", "127.0.0.1"], ENV),
    }
    if baseline is not None:
        found["dicomnet (baseline)"] = (
            [sys.executable, "-m", "dicomnet", "store", "--quiet", "-r", "127.0.0.1"],
            dicomnet_env(baseline),
        )
    return found


def run_sender(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall, user, system) seconds of one run, its children included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def receiver(kind: str, port: int, out: Path) -> subprocess.Popen[bytes]:
    command = ["/usr/bin/storescp", "--ignore", str(port)]
    env = ENV
    if kind == "dicomnet":  # negotiates a window: several C-STOREs outstanding
        command = [sys.executable, "-m", "dicomnet", "listen", "--ignore", "--port", str(port)]
        env = dicomnet_env(HERE.parent / "src")
    if kind == "files":
        out.mkdir(parents=True, exist_ok=True)
        command = ["/usr/bin/storescp", "+B", "-od", str(out), str(port)]  # as store_bench
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port, process)
    return process


def timing(args: argparse.Namespace, files: Path, count: int) -> None:
    rows = senders(args.baseline)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in rows}
    alone: dict[str, list[float]] = {name: [] for name in rows}
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="sender-bench-", dir="/dev/shm"))
    one = out / "one"
    one.mkdir()
    first = next(p for p in sorted(files.rglob("*")) if p.is_file())
    shutil.copy(first, one / first.name)
    process = receiver(args.receiver, port, out / "first")
    try:
        for round_ in range(args.rounds):
            for name, (command, env) in rows.items():
                target = out / f"{round_}-{name.split()[0]}-{len(results[name])}"
                if args.receiver == "files":  # a fresh folder per run, never deleted mid-run
                    stop(process)
                    process = receiver(args.receiver, port, target)
                results[name].append(run_sender([*command, str(port), str(files)], env))
                _, user, system = run_sender([*command, str(port), str(one)], env)
                alone[name].append(user + system)
    finally:
        stop(process)
        shutil.rmtree(out, ignore_errors=True)
    print(
        f"{count} instances from {files}, receiver {args.receiver}, {args.rounds} rounds, medians"
    )
    print(
        f"{'sender':24} {'wall s':>8} {'user s':>8} {'sys s':>8} {'CPU ms/inst':>12} "
        f"{'one file s':>11} {'CPU ms/inst, start-up out':>26}"
    )
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        user = statistics.median(r[1] for r in runs)
        system = statistics.median(r[2] for r in runs)
        cpu = statistics.median(r[1] + r[2] for r in runs)
        start = statistics.median(alone[name])
        print(
            f"{name:24} {wall:8.2f} {user:8.2f} {system:8.2f} {cpu / count * 1e3:12.3f} "
            f"{start:11.3f} {(cpu - start) / (count - 1) * 1e3:26.3f}"
        )


def startup(args: argparse.Namespace, files: Path) -> None:
    one = next(p for p in sorted(files.rglob("*")) if p.is_file())
    port = free_port()
    process = receiver("ignore", port, Path("/dev/null"))
    rows = {k: v for k, v in senders(args.baseline).items()}
    walls: dict[str, list[float]] = {name: [] for name in rows}
    try:
        for _ in range(max(args.rounds, 5)):
            for name, (command, env) in rows.items():
                walls[name].append(run_sender([*command, str(port), str(one)], env)[0])
    finally:
        stop(process)
    print(f"one-file store, wall seconds, median of {max(args.rounds, 5)}")
    for name, values in walls.items():
        print(f"{name:24} {statistics.median(values):8.3f}")


def traced(command: list[str], env: dict[str, str], summary: Path) -> dict[str, int]:
    subprocess.run(
        ["strace", "-c", "-f", "-o", str(summary), *command],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return counts(summary)


def syscalls(args: argparse.Namespace, files: Path, count: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="sender-strace-"))
    one = scratch / "one"
    one.mkdir()
    first = next(p for p in sorted(files.rglob("*")) if p.is_file())
    shutil.copy(first, one / first.name)
    port = free_port()
    process = receiver(args.receiver, port, Path("/dev/null"))
    table: dict[str, dict[str, float]] = {}
    try:
        for name, (command, env) in senders(args.baseline).items():
            full = traced([*command, str(port), str(files)], env, scratch / "full.strace")
            alone = traced([*command, str(port), str(one)], env, scratch / "one.strace")
            table[name] = {
                call: (full.get(call, 0) - alone.get(call, 0)) / (count - 1)
                for call in set(full) | set(alone)
            }
    finally:
        stop(process)
        shutil.rmtree(scratch, ignore_errors=True)
    calls = sorted(
        {c for per in table.values() for c, v in per.items() if v >= 0.05},
        key=lambda c: -max(per.get(c, 0) for per in table.values()),
    )
    print(
        f"system calls per instance sent ({count} instances, start-up subtracted), "
        f"receiver {args.receiver}"
    )
    print(f"{'call':16}" + "".join(f"{name:>22}" for name in table))
    for call in calls:
        print(f"{call:16}" + "".join(f"{per.get(call, 0):22.2f}" for per in table.values()))
    total = {name: sum(v for v in per.values() if v > 0) for name, per in table.items()}
    print(f"{'total':16}" + "".join(f"{total[name]:22.2f}" for name in table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=Path, default=None, help="a folder of Part 10 files")
    parser.add_argument("--count", type=int, default=2000, help="instances (a new set)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--receiver", choices=("ignore", "files", "dicomnet"), default="ignore")
    parser.add_argument("--baseline", type=Path, default=None, help="another dicomnet src/")
    parser.add_argument("--strace", action="store_true", help="system calls per instance")
    parser.add_argument("--startup", action="store_true", help="one-file store wall time")
    args = parser.parse_args()
    scratch: Path | None = None
    files = args.files
    if files is None:
        scratch = Path(tempfile.mkdtemp(prefix="sender-set-"))
        files = scratch / "small"
        make_set(files, args.count, 256)
    count = sum(1 for p in files.rglob("*") if p.is_file())
    for tree in (HERE.parent / "src", args.baseline):  # byte code cached, as installed
        if tree is not None:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True)
    try:
        if args.startup:
            startup(args, files)
        elif args.strace:
            syscalls(args, files, count)
        else:
            timing(args, files, count)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
