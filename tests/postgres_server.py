"""A throwaway PostgreSQL server for the index tests: Debian's postgresql, on loopback.

Each test session initialises its own cluster in a temporary folder and
starts it on a free port of 127.0.0.1, as the ``postgres`` user when the
tests run as root (PostgreSQL refuses to run as root). Missing binaries are
an error, not a skip: the test command installs the package.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peers import free_port


def postgres_bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {tool} is missing: apt-get install postgresql (scripts/test.sh does)"
        )
    return found[-1]


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server with database ``dicomnet``; yields its URL."""
    root = Path(tempfile.mkdtemp(prefix="dicomnet-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    log = root / "server.log"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "timeout": 120}
    subprocess.run(
        _as_postgres([postgres_bin("initdb"), "-D", str(data), "-U", "dicomnet", "-A", "trust"]),
        check=True,
        **quiet,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres([postgres_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                      "-w", "-t", "60", "start"]),
        check=True,
        **quiet,
    )  # fmt: skip
    try:
        subprocess.run(
            _as_postgres([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port),
                          "-U", "dicomnet", "dicomnet"]),
            check=True,
            **quiet,
        )  # fmt: skip
        yield f"postgresql://dicomnet@127.0.0.1:{port}/dicomnet"
    finally:
        subprocess.run(
            _as_postgres([postgres_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                          "-t", "60", "stop"]),
            **quiet,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (data / "postmaster.pid").exists():
            time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
