"""A disk that fails mid-dataset: A700, one loud log line, a metric, a clean exit.

The archive lives on a loop-mounted ext4 image mounted ``errors=remount-ro``
(the suite runs as root, as .ci/run does; a machine without a loop device
fails this test rather than skipping it). Half a C-STORE dataset is sent, the
file system is made to fail (``/sys/fs/ext4/<dev>/trigger_fs_error``) and goes
read-only, then the rest is sent: the answer must be A700 (Out of Resources),
the association must go on, the read-only archive must be reported once and
shown in the metrics, and SIGTERM must then end the process with status 0.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomnet.testing import raw
from dicomnet.testing.peer import RawPeer
from test_commit_unit import (
    CONTEXT,
    response_statuses,
    start_listener,
    stop,
    store_pdus,
    template,
    uid_for,
)

from peers import free_port


@pytest.fixture
def failing_disk(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An ext4 file system on a loop device, mounted errors=remount-ro; (mount point, device)."""
    image = tmp_path / "disk.img"
    with open(image, "wb") as stream:
        stream.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    attached = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True
    )
    if attached.returncode != 0:
        pytest.fail(f"no loop device for the failing-disk test: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        subprocess.run(
            ["mount", "-o", "errors=remount-ro", device, str(mount_point)],
            check=True,
            capture_output=True,
        )
        yield mount_point, os.path.basename(device)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True)


def test_disk_going_read_only_mid_dataset_answers_a700(
    failing_disk: tuple[Path, str],
) -> None:
    mount_point, device = failing_disk
    trigger = Path("/sys/fs/ext4") / device / "trigger_fs_error"
    assert trigger.exists(), f"{trigger} missing: the kernel cannot fail this file system"
    metrics_port = free_port()
    process, port = start_listener(
        mount_point / "archive", "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"
    )
    dataset = template(512)  # 512 KB: eight PDUs
    first = store_pdus(dataset, uid_for(700))
    half = len(first) // 2

    async def scenario() -> list[tuple[int, int]]:
        peer = await RawPeer.connect("127.0.0.1", port)
        answers = []
        try:
            await peer.associate(CONTEXT)
            await peer.send(first[:half])
            await asyncio.sleep(0.3)
            trigger.write_text("1")  # ext4 records an error and remounts read-only
            await asyncio.sleep(0.3)
            await peer.send(first[half:])
            answer = await peer.read_pdu(10)
            assert answer is not None, "the connection dropped without an answer"
            answers.extend(response_statuses([answer]))
            for message in (
                raw.p_data(raw.pdv(1, 0x03, raw.c_echo_rq(2))),
                store_pdus(dataset, uid_for(701), 3),
                raw.p_data(raw.pdv(1, 0x03, raw.c_echo_rq(4))),
            ):
                await peer.send(message)
                answer = await peer.read_pdu(10)
                assert answer is not None, "the connection dropped"
                answers.extend(response_statuses([answer]))
            await peer.send(raw.release_rq())
            answer = await peer.read_pdu(10)
            assert answer is not None, "closed without an A-RELEASE-RP"
            answers.extend(response_statuses([answer]))
        finally:
            peer.close()
        return answers

    try:
        answers = asyncio.run(asyncio.wait_for(scenario(), 60))
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        stderr = stop(process)
    # store (A700), echo, store on the read-only disk (A700), echo, release
    assert answers == [
        (0x04, 0xA700),
        (0x04, 0x0000),
        (0x04, 0xA700),
        (0x04, 0x0000),
        (0x06, -1),
    ], answers
    assert "dicomnet_archive_read_only 1.0" in metrics, metrics
    loud = [line for line in stderr.splitlines() if "read-only" in line and "ERROR" in line]
    assert len(loud) == 1, stderr
    assert process.returncode == 0, stderr
    assert "cannot listen" not in stderr, stderr
