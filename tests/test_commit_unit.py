"""File and index row are one unit, and a release waits for the answers it owes.

* An association aborted or reset between a C-STORE's last fragment and its
  answer (the commit under way) ends with the instance's file published and
  its row committed, or with neither: ``archive verify`` is clean after each
  of 50 attempts (``shared/durability.md`` rule 14).
* SIGTERM in the same window: the process finishes the unit before it exits.
* An A-RELEASE-RQ that arrives while a store still commits (the index locked
  by another process) is answered after the C-STORE-RSP, when the commit
  ends within the operation's bound (``--dimse-timeout``); past that bound
  the association is aborted instead of released (PS3.8 7.2, 9.2).

Each runs ``dicomnet listen`` as a process and a raw peer over loopback.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset

from dicomnet.archive.maintenance import VerifyReport, verify
from dicomnet.core.codec import decode_command
from dicomnet.testing import raw
from dicomnet.testing.peer import RawPeer

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
PLACEHOLDER = "1.2.826.0.1.3680043.10.1341.77.100000"
"""The SOP Instance UID of the template dataset; each attempt swaps in one of the same length."""
STUDY = "1.2.826.0.1.3680043.10.1341.78.1"
SERIES = "1.2.826.0.1.3680043.10.1341.78.2"
PDU_BODY = 65536


def template(pixels: int) -> bytes:
    """A CT dataset, explicit VR little endian, ``pixels`` x ``pixels`` x 16 bits."""
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = PLACEHOLDER
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.PatientID = "UNIT"
    ds.PatientName = "UNIT^TEST"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = pixels
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(256)) * (pixels * pixels * 2 // 256)
    out = BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True)  # the dataset alone: no meta group
    data = out.getvalue()
    assert data[:2] == b"\x08\x00", "group 0002 or a preamble would make the dataset invalid"
    return data


def uid_for(attempt: int) -> str:
    uid = PLACEHOLDER[:-6] + f"{100001 + attempt}"
    assert len(uid) == len(PLACEHOLDER)
    return uid


def store_pdus(dataset: bytes, uid: str, message_id: int = 1) -> bytes:
    """A C-STORE-RQ for ``uid``: its command PDU, then the dataset in 64 KB PDUs."""
    body = dataset.replace(PLACEHOLDER.encode(), uid.encode(), 1)
    parts = [raw.p_data(raw.pdv(1, 0x03, raw.c_store_rq(CT, uid, message_id)))]
    for start in range(0, len(body), PDU_BODY):
        last = start + PDU_BODY >= len(body)
        parts.append(raw.p_data(raw.pdv(1, 0x02 if last else 0x00, body[start : start + PDU_BODY])))
    return b"".join(parts)


def start_listener(archive: Path, *options: str) -> tuple[subprocess.Popen[str], int]:
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
    line = process.stdout.readline()
    match = re.search(r":(\d+)", line)
    if not match:
        process.kill()
        raise AssertionError(f"listener did not start: {line!r}")
    return process, int(match.group(1))


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return stderr


def settled_verify(archive: Path, seconds: float = 15.0) -> VerifyReport:
    """``archive verify``, again until clean or ``seconds`` pass: a unit under way
    may be between its file and its row for a moment, never for good."""
    deadline = time.monotonic() + seconds
    while True:
        report = verify(archive)
        if report.ok or time.monotonic() > deadline:
            return report
        time.sleep(0.05)


CONTEXT = [raw.presentation_context(1, CT, [EXPLICIT])]


async def store_whole(port: int, wire: bytes) -> int:
    """Send one C-STORE over a new association and return its status."""
    peer = await RawPeer.connect("127.0.0.1", port)
    try:
        await peer.associate(CONTEXT)
        await peer.send(wire)
        answer = await peer.read_pdu(30)
        assert answer is not None
        [(_, status)] = response_statuses([answer])
        await peer.send(raw.release_rq())
        await peer.closed(10)
        return status
    finally:
        peer.close()


async def abort_after_last_fragment(port: int, wire: bytes, attempt: int) -> None:
    peer = await RawPeer.connect("127.0.0.1", port)
    try:
        await peer.associate(CONTEXT)
        await peer.send(wire)
        await asyncio.sleep((attempt % 7) * 0.005)  # 0 to 30 ms after the last fragment
        if attempt % 2:
            peer.reset()
        else:
            await peer.send(raw.abort())
    finally:
        peer.close()


def test_abort_or_reset_during_commit_leaves_file_and_row_or_neither(tmp_path: Path) -> None:
    dataset = template(2048)  # 8 MB
    assert len(dataset) > 8_000_000
    reports: list[tuple[int, VerifyReport]] = []
    # 14 attempts: every pair of delay (attempt % 7) and ending (attempt % 2, reset or
    # A-ABORT) once; a fresh archive every 7 attempts keeps each verify short.
    for group in range(2):
        archive = tmp_path / f"archive{group}"
        process, port = start_listener(archive)
        try:
            first = store_pdus(dataset, uid_for(900 + group))  # the index exists from here
            assert asyncio.run(asyncio.wait_for(store_whole(port, first), 60)) == 0
            for attempt in range(group * 7, group * 7 + 7):
                wire = store_pdus(dataset, uid_for(attempt))
                asyncio.run(asyncio.wait_for(abort_after_last_fragment(port, wire, attempt), 60))
                report = settled_verify(archive)
                reports.append((attempt, report))
                assert report.ok, (attempt, report)
        finally:
            stderr = stop(process)
        assert process.returncode == 0, stderr
    assert len(reports) == 14
    assert {(attempt % 7, attempt % 2) for attempt, _ in reports} == {
        (delay, ending) for delay in range(7) for ending in range(2)
    }


def test_sigterm_during_commit_finishes_the_unit(tmp_path: Path) -> None:
    dataset = template(2048)
    for attempt in range(3):
        archive = tmp_path / f"archive{attempt}"
        # the peer never releases: the shutdown aborts it after 2 s, not the default 30
        process, port = start_listener(archive, "--shutdown-timeout", "2")

        async def send_then_term(
            port: int = port, attempt: int = attempt, process: subprocess.Popen[str] = process
        ) -> None:
            peer = await RawPeer.connect("127.0.0.1", port)
            try:
                await peer.associate(CONTEXT)
                await peer.send(store_pdus(dataset, uid_for(100 + attempt)))
                await asyncio.sleep(attempt * 0.01)
                process.send_signal(signal.SIGTERM)
                await peer.closed(30)
            finally:
                peer.close()

        try:
            asyncio.run(asyncio.wait_for(send_then_term(), 60))
        finally:
            stderr = stop(process)
        assert process.returncode == 0, stderr
        report = verify(archive)
        assert report.ok, report
        assert report.leftovers == 0


def response_statuses(pdus: list[object]) -> list[tuple[int, int]]:
    """(PDU type, status or -1) of each PDU received: C-STORE-RSP statuses for P-DATA."""
    seen = []
    for pdu in pdus:
        pdu_type = pdu.pdu_type  # type: ignore[attr-defined]
        status = -1
        if pdu_type == 0x04:
            body = pdu.body  # type: ignore[attr-defined]
            command = decode_command(body[6:])
            status = int(command[0x0900])  # type: ignore[call-overload]
        seen.append((pdu_type, status))
    return seen


def release_while_locked(tmp_path: Path, hold: float) -> tuple[list[tuple[int, int]], float]:
    archive = tmp_path / "archive"
    process, port = start_listener(
        archive, "--artim-timeout", "1", "--dimse-timeout", "4", "--fsync", "never"
    )
    dataset = template(64)
    locker = sqlite3.connect(archive / "index.sqlite", timeout=10, isolation_level=None)

    async def scenario() -> tuple[list[tuple[int, int]], float]:
        peer = await RawPeer.connect("127.0.0.1", port)
        try:
            await peer.associate(CONTEXT)
            await peer.send(store_pdus(dataset, uid_for(499)))  # the index exists from here
            first = await peer.read_pdu(10)
            assert first is not None and response_statuses([first]) == [(0x04, 0x0000)]
            locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            started = time.monotonic()
            await peer.send(store_pdus(dataset, uid_for(500), 2) + raw.release_rq())
            loop = asyncio.get_running_loop()
            loop.call_later(hold, locker.execute, "COMMIT")
            pdus = await peer.read_until_closed(30)
            return response_statuses(pdus), time.monotonic() - started
        finally:
            peer.close()

    try:
        return asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        locker.close()
        stderr = stop(process)
        assert process.returncode == 0, stderr


def test_release_during_commit_sends_the_response_first(tmp_path: Path) -> None:
    answers, elapsed = release_while_locked(tmp_path, hold=2.0)  # longer than ARTIM (1 s)
    assert answers == [(0x04, 0x0000), (0x06, -1)], answers  # C-STORE-RSP, then A-RELEASE-RP
    assert elapsed >= 1.9
    report = verify(tmp_path / "archive")
    assert report.ok and report.checked == 2, report


def test_release_past_the_operation_bound_aborts(tmp_path: Path) -> None:
    answers, elapsed = release_while_locked(tmp_path, hold=7.0)  # past --dimse-timeout 4
    assert answers == [(0x07, -1)], answers  # A-ABORT: something may be lost
    assert 3.5 <= elapsed < 7.0
    report = settled_verify(tmp_path / "archive")
    assert report.ok, report  # the unit still finished, file and row together
