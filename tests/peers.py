"""Real peers for interop tests: DCMTK tools and pynetdicom, on loopback only.

A missing peer fails the test rather than skipping it: the interop suite is
the proof that dicomnet talks to software it did not write.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

DCMTK_DIR = "/usr/bin"
"""Where Debian puts DCMTK; pynetdicom's console scripts shadow the same names on PATH."""


def dcmtk(tool: str) -> str:
    """Absolute path of a DCMTK tool, failing the test when it is missing."""
    path = os.path.join(DCMTK_DIR, tool)
    if not os.access(path, os.X_OK):
        pytest.fail(f"DCMTK {tool} not found at {path}: install Debian's dcmtk package")
    return path


def dcmtk_env() -> dict[str, str]:
    """DCMTK at its best: Nagle off (TCP_NODELAY=1)."""
    return {**os.environ, "TCP_NODELAY": "1"}


def run_dcmtk(tool: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK client tool to completion."""
    return subprocess.run(
        [dcmtk(tool), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dcmtk_env(),
        check=False,
    )


def free_port(family: socket.AddressFamily = socket.AF_INET) -> int:
    """A port that was free a moment ago on loopback."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts on host:port (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


@contextmanager
def dcmtk_server(
    tool: str, args: Sequence[str], port: int, host: str = "127.0.0.1"
) -> Iterator[subprocess.Popen[str]]:
    """Run a DCMTK server tool for the duration of a block."""
    process = subprocess.Popen(
        [dcmtk(tool), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dcmtk_env(),
    )
    try:
        wait_for_port(host, port)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def dcmqrscp(folder: Path, destination_port: int) -> Iterator[int]:
    """dcmqrscp serving AE QRSCP from ``folder``, with DEST as a move destination."""
    database = folder / "db"
    database.mkdir(parents=True)
    port = free_port()
    config = folder / "dcmqrscp.cfg"
    config.write_text(
        f"NetworkTCPPort = {port}\n"
        "MaxPDUSize = 16384\n"
        "MaxAssociations = 16\n"
        "HostTable BEGIN\n"
        f"dest = (DEST, 127.0.0.1, {destination_port})\n"
        "HostTable END\n"
        "VendorTable BEGIN\nVendorTable END\n"
        "AETable BEGIN\n"
        f"QRSCP {database} RW (200, 1024mb) ANY\n"
        "AETable END\n"
    )
    # Not --single-process: Debian's dcmqrscp 3.6.7 crashes after the first
    # association in that mode, whoever the peer is (storescu included).
    with dcmtk_server("dcmqrscp", ["-c", str(config)], port):
        yield port
