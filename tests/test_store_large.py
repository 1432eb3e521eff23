"""A 2 GB dataset into the storage SCP: the receiver's memory stays flat."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicomnet.dataset.part10 import read_file_meta
from dicomnet.net import client

from peers import free_port, wait_for_port

pytestmark = pytest.mark.slow

DATA_BYTES = 2 << 30
CHUNK = 32 << 20
MEMORY_LIMIT = 64 << 20


def write_large_file(path: Path) -> str:
    """A Part 10 CT with a 2 GB OB Pixel Data written in chunks; its SOP Instance UID."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "LARGE^DATASET"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    block = bytes(range(256)) * (CHUNK // 256)
    with open(path, "ab") as stream:
        stream.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, DATA_BYTES))
        for _ in range(DATA_BYTES // CHUNK):
            stream.write(block)
    return str(ds.SOPInstanceUID)


def dataset_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        read_file_meta(stream)
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_two_gigabyte_dataset_streams_to_disk(tmp_path: Path) -> None:
    source = tmp_path / "large.dcm"
    uid = write_large_file(source)
    archive = tmp_path / "archive"
    port = free_port()
    receiver = subprocess.Popen(
        [
            sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1",
            "--port", str(port), "--dir", str(archive), "--fsync", "never",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)
        before = peak_rss(receiver.pid)

        async def send() -> int:
            async with client.connect(
                "127.0.0.1", port, contexts=[(CTImageStorage, [ExplicitVRLittleEndian])]
            ) as assoc:
                return int((await assoc.store(source)).status)

        status = asyncio.run(asyncio.wait_for(send(), 300))
        after = peak_rss(receiver.pid)
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)
    print(f"receiver peak RSS {before >> 20} MB before, {after >> 20} MB after 2 GB")
    try:
        assert status == 0x0000
        assert after - before < MEMORY_LIMIT, f"receiver grew by {(after - before) >> 20} MB"
        (stored,) = archive.glob(f"*/*/{uid}.dcm")
        assert dataset_digest(stored) == dataset_digest(source)
        assert not list((archive / ".incoming").iterdir())
    finally:
        for path in (source, *archive.glob(f"*/*/{uid}.dcm")):
            os.unlink(path)
