"""`dicomnet listen` as a process: SIGTERM, kill -9 mid-ingestion, --workers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomnet.errors import DicomNetError
from dicomnet.net import client

from factory import ct_dataset, dataset_bytes, write_part10

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
CONTEXTS = [(CT, [EXPLICIT])]


def start_listener(archive: Path, *options: str) -> tuple[subprocess.Popen[str], int]:
    """``dicomnet listen`` on a free loopback port; the process and its port."""
    process = subprocess.Popen(
        [
            sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1",
            "--port", "0", "--dir", str(archive), *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()  # bounded: the process prints it or exits
    match = re.search(r":(\d+)", line)
    if not match:
        process.kill()
        raise AssertionError(f"listener did not start: {line!r} {process.stderr.read()}")
    process.args = [*process.args, line.strip()]  # keep what it said, for the test to read
    return process, int(match.group(1))


def stop(process: subprocess.Popen[str], timeout: float = 30) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return stderr


def indexed(archive: Path) -> dict[str, str]:
    with sqlite3.connect(archive / "index.sqlite") as db:
        return dict(db.execute("SELECT sop_instance_uid, path FROM instances"))


def instances(folder: Path, count: int) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for index in range(count):
        ds = ct_dataset(index, pixels=32)
        paths[str(ds.SOPInstanceUID)] = write_part10(ds, folder / f"{index}.dcm")
    return paths


def test_sigterm_lets_the_open_association_finish_then_exits(tmp_path: Path) -> None:
    sent = instances(tmp_path / "in", 40)
    archive = tmp_path / "archive"
    process, port = start_listener(archive, "--shutdown-timeout", "20")

    async def scenario() -> list[int]:
        statuses = []
        async with client.connect("127.0.0.1", port, contexts=CONTEXTS) as assoc:
            for index, path in enumerate(sent.values()):
                if index == 10:
                    process.send_signal(signal.SIGTERM)
                    await asyncio.sleep(0.3)
                    with pytest.raises((OSError, DicomNetError)):  # no new associations
                        async with client.connect("127.0.0.1", port, contexts=CONTEXTS):
                            pass
                statuses.append(int((await assoc.store(path)).status))
        return statuses

    try:
        statuses = asyncio.run(asyncio.wait_for(scenario(), 60))
        assert statuses == [0] * len(sent)
        stderr = stop(process)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
    rows = indexed(archive)
    assert set(rows) == set(sent)
    for uid, path in rows.items():
        assert dataset_bytes(Path(path)) == dataset_bytes(sent[uid])
    assert "40 instances" in stderr and "released" in stderr  # the association's log line


def test_kill_9_mid_ingestion_loses_nothing_acknowledged(tmp_path: Path) -> None:
    sent = instances(tmp_path / "in", 500)
    archive = tmp_path / "archive"
    process, port = start_listener(archive)
    acknowledged: set[str] = set()
    uids = list(sent)

    async def sender(share: list[str]) -> None:
        try:
            async with client.connect(
                "127.0.0.1", port, contexts=CONTEXTS, max_operations_invoked=4
            ) as assoc:
                for uid in share:
                    if (await assoc.store(sent[uid])).status == 0:
                        acknowledged.add(uid)
        except (OSError, DicomNetError, asyncio.TimeoutError):
            pass  # the listener was killed under us

    async def killer() -> None:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        process.kill()  # SIGKILL: no shutdown of any kind

    async def scenario() -> None:
        await asyncio.gather(killer(), *(sender(uids[i::4]) for i in range(4)))

    try:
        asyncio.run(asyncio.wait_for(scenario(), 120))
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert 150 <= len(acknowledged) < len(sent), "the kill should land mid-ingestion"

    # Restart on the same folder: leftovers go, the index is intact.
    process, port = start_listener(archive)
    try:
        rows = indexed(archive)
        assert acknowledged <= set(rows), "an acknowledged instance is missing from the index"
        for uid in acknowledged:
            path = Path(rows[uid])
            assert dataset_bytes(path) == dataset_bytes(sent[uid])
            assert dcmread(path).SOPInstanceUID == uid
        visible = [p for p in archive.rglob("*.dcm") if ".incoming" not in p.parts]
        for path in visible:  # whatever is visible is whole, acknowledged or not
            uid = path.stem
            assert dataset_bytes(path) == dataset_bytes(sent[uid])
        assert not list((archive / ".incoming").iterdir())

        async def store_rest() -> list[int]:  # the rest can be sent again and lands
            async with client.connect("127.0.0.1", port, contexts=CONTEXTS) as assoc:
                rest = [uid for uid in uids if uid not in acknowledged]
                return [int((await assoc.store(sent[uid])).status) for uid in rest]

        statuses = asyncio.run(asyncio.wait_for(store_rest(), 120))
        assert set(statuses) <= {0x0000, 0xB000}
        assert set(indexed(archive)) == set(sent)
    finally:
        stop(process)


def test_workers_share_the_port_the_index_and_the_association_cap(tmp_path: Path) -> None:
    sent = instances(tmp_path / "in", 30)
    archive = tmp_path / "archive"
    process, port = start_listener(archive, "--workers", "2", "--max-associations", "2")

    async def scenario() -> None:
        first = client.connect("127.0.0.1", port, contexts=CONTEXTS)
        second = client.connect("127.0.0.1", port, contexts=CONTEXTS)
        async with first as a, second as b:
            with pytest.raises(DicomNetError, match="rejected"):
                async with client.connect("127.0.0.1", port, contexts=CONTEXTS):
                    pass
            paths = list(sent.values())
            for index, path in enumerate(paths):
                assoc = a if index % 2 else b
                assert (await assoc.store(path)).status == 0
        await asyncio.sleep(0.2)  # both released: a new one is admitted again
        async with client.connect("127.0.0.1", port, contexts=CONTEXTS) as c:
            assert (await c.echo()).status == 0

    try:
        assert process.args[-1].endswith("(2 workers)")
        asyncio.run(asyncio.wait_for(scenario(), 60))
        children = _children(process.pid)
        assert len(children) >= 2
        stderr = stop(process)
        assert process.returncode == 0, stderr
        for _ in range(50):  # bounded: a helper (resource tracker) exits just after its parent
            if not any(_alive(pid) for pid in children):
                break
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in children)
    finally:
        if process.poll() is None:
            process.kill()
    assert set(indexed(archive)) == set(sent)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
