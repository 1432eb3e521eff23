"""The sender: several C-STOREs in one gathered write, whole and in order at the peer.

``dicomnet store`` keeps a window of C-STOREs outstanding and refills it once
half of it is answered, so the messages it starts together leave in one
``writelines`` (one system call). These tests count the writes of the
requestor's connection and check what the receivers made of them: a dicomnet
listener (which negotiates a window, PS3.7 D.3.3.3) and DCMTK's storescp
(which does not: one C-STORE at a time).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicomnet.core import ul
from dicomnet.core.agreement import AcceptedContext, Negotiated
from dicomnet.net.association import IncomingRequest
from dicomnet.net.bulk_store import collect_files, store_files
from dicomnet.net.listener import Listener
from dicomnet.net.store_client import PreparedStore, plan_store

from factory import ct_dataset, dataset_bytes, write_part10
from peers import dcmtk, dcmtk_env, free_port, wait_for_port

COUNT = 40


def make_files(folder: Path, count: int = COUNT) -> list[Path]:
    folder.mkdir()
    return [write_part10(ct_dataset(i), folder / f"{i:03d}.dcm") for i in range(count)]


class WriteLog:
    """The bytes of each batch the requestor's connection hands to one write."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[int] = []
        original = ul.Connection.data_to_send
        log = self

        def data_to_send(connection: ul.Connection) -> list[Any]:
            buffers = original(connection)
            if connection.role is ul.Role.REQUESTOR and buffers:
                log.writes.append(sum(memoryview(b).nbytes for b in buffers))
            return buffers

        monkeypatch.setattr(ul.Connection, "data_to_send", data_to_send)



async def store_into_listener(
    folder: Path,
    on_store: Callable[[IncomingRequest], Awaitable[int]],
    window: int,
    before_sending: Callable[[], None] | None = None,
) -> Any:
    """``dicomnet store``'s sending of ``folder`` into a listener answering with ``on_store``."""
    listener = Listener("STORE", accept_any_storage=True)
    listener.on_c_store(on_store)
    await listener.listen("127.0.0.1", 0, 16)
    async with listener:
        jobs, unreadable = collect_files([folder], recursive=True)
        assert not unreadable
        if before_sending is not None:
            before_sending()
        return await store_files("127.0.0.1", listener.port, jobs, window=window)

def test_several_instances_leave_in_one_write_whole_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_files(tmp_path / "in")
    log = WriteLog(monkeypatch)
    arrived: list[tuple[str, bytes]] = []

    async def on_store(request: IncomingRequest) -> int:
        arrived.append((request.message.affected_sop_instance_uid, bytes(request.raw_dataset)))
        return 0x0000

    outcome = asyncio.run(asyncio.wait_for(store_into_listener(tmp_path / "in", on_store, 8), 60))
    assert outcome.ok and len(outcome.succeeded) == COUNT
    expected = [(str(dcmread(p).SOPInstanceUID), dataset_bytes(p)) for p in paths]
    assert arrived == expected  # every dataset whole, in the order the files were listed
    size = len(expected[0][1])
    several = [w for w in log.writes if w > 3 * size]
    assert several, f"no write carried more than one instance: {log.writes}"
    # 40 instances (plus association set-up and release) in far fewer writes than messages
    assert len(log.writes) <= COUNT // 2


def test_one_write_per_instance_at_most_into_storescp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """storescp proposes no window: one C-STORE at a time, each one write, all arriving."""
    paths = make_files(tmp_path / "in", 12)
    out = tmp_path / "out"
    out.mkdir()
    log = WriteLog(monkeypatch)
    port = free_port()
    scp = subprocess.Popen(
        [dcmtk("storescp"), "-od", str(out), "-aet", "STORESCP", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dcmtk_env(),
    )
    try:
        wait_for_port("127.0.0.1", port)

        async def scenario() -> Any:
            jobs, _ = collect_files([tmp_path / "in"], recursive=True)
            return await store_files("127.0.0.1", port, jobs, called_ae_title="STORESCP")

        outcome = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        scp.terminate()
        scp.wait(timeout=30)
    assert outcome.ok and len(outcome.succeeded) == len(paths)
    stored = {str(dcmread(p).SOPInstanceUID): dataset_bytes(p) for p in out.iterdir()}
    assert stored == {str(dcmread(p).SOPInstanceUID): dataset_bytes(p) for p in paths}
    # A-ASSOCIATE-RQ, one write per C-STORE, A-RELEASE-RQ
    assert len(log.writes) == len(paths) + 2


def test_store_command_sends_the_folder_in_order_to_a_listener(tmp_path: Path) -> None:
    """``dicomnet store --quiet`` end to end: every file stored byte for byte."""
    paths = make_files(tmp_path / "in", 20)
    out = tmp_path / "archive"
    port = free_port()
    listen = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--dir", str(out), "--no-index",
         "--fsync", "never", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        sent = subprocess.run(
            [sys.executable, "-m", "dicomnet", "store", "--quiet", "-r", "127.0.0.1", str(port),
             str(tmp_path / "in")],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        listen.terminate()
        listen.wait(timeout=30)
    assert sent.returncode == 0, sent.stderr
    assert "20 instances, 0 failed" in sent.stderr
    stored = {p.stem: dataset_bytes(p) for p in out.rglob("*.dcm") if ".incoming" not in p.parts}
    assert len(stored) == len(paths)
    for path in paths:
        uid = str(dcmread(path).SOPInstanceUID)
        assert stored[uid] == dataset_bytes(path)


def test_a_file_gone_since_listing_fails_alone(tmp_path: Path) -> None:
    """A file removed between listing and sending is one failure; the rest go."""
    paths = make_files(tmp_path / "in", 10)
    arrived: list[str] = []

    async def on_store(request: IncomingRequest) -> int:
        arrived.append(request.message.affected_sop_instance_uid)
        return 0x0000

    scenario = store_into_listener(tmp_path / "in", on_store, 4, paths[3].unlink)
    outcome = asyncio.run(asyncio.wait_for(scenario, 60))
    assert [path for path, _ in outcome.failed] == [paths[3]]
    assert "No such file" in outcome.failed[0][1]
    assert len(outcome.succeeded) == 9 and len(arrived) == 9


def test_the_pdus_are_views_of_the_files_map(tmp_path: Path, codec: ModuleType) -> None:
    """No join and no copy: every dataset PDU payload is a slice of the file's map."""
    path = write_part10(ct_dataset(1, pixels=128), tmp_path / "one.dcm")
    negotiated = Negotiated(
        contexts={1: AcceptedContext(1, CTImageStorage, ExplicitVRLittleEndian)},
        peer_max_pdu_length=16384,
        our_max_pdu_length=0,
    )
    prepared = plan_store(negotiated, path)
    assert isinstance(prepared, PreparedStore)
    mapped = prepared._map
    assert mapped is not None
    buffers = codec.fragment_message(1, b"\x00" * 10, prepared.data, 16384)
    payloads = buffers[3::2]  # after the command's one PDU: header, payload, header, ...
    assert len(payloads) == -(-prepared.size // (16384 - 6))
    assert all(isinstance(view, memoryview) and view.obj is mapped for view in payloads)
    assert b"".join(payloads) == path.read_bytes()[-prepared.size :]
    del buffers, payloads
    prepared.close()
    assert mapped.closed
