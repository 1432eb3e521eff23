"""A listener raises its open-file limit to what its association caps allow."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from peers import free_port, wait_for_port

PROBE = """
import logging, resource, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from dicomnet.cli.open_files import needed_open_files, raise_open_files_limit
needed = needed_open_files(int(sys.argv[1]), int(sys.argv[2]))
print(needed, raise_open_files_limit(needed), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def limited(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def probe(soft: int, hard: int, associations: int, window: int) -> tuple[list[int], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(associations), str(window)],
        preexec_fn=limited(soft, hard),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [int(word) for word in done.stdout.split()], done.stderr


def test_the_soft_limit_rises_to_what_the_caps_need() -> None:
    (needed, granted, now), warning = probe(512, 8192, 64, 64)
    assert needed == 64 * 65 + 256 == granted == now
    assert warning == ""


def test_a_hard_limit_below_the_need_is_used_whole_and_said() -> None:
    (needed, granted, now), warning = probe(256, 1024, 64, 64)
    assert needed == 4416 and granted == now == 1024
    assert "below the 4416" in warning


def test_a_soft_limit_already_high_enough_is_left_alone() -> None:
    (_, granted, now), warning = probe(8000, 8192, 8, 16)
    assert granted == now == 8000 and warning == ""


def test_dicomnet_listen_starts_with_the_raised_limit(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--dir", str(tmp_path / "archive")]
    process = subprocess.Popen(
        [*command, "--max-associations", "10"],
        preexec_fn=limited(128, 4096),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, 30)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
        assert line.split()[3] == str(10 * (64 + 1) + 256)  # the window is 64 by default
    finally:
        process.terminate()
        process.communicate(timeout=30)
