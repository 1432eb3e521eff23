"""C-STORE between dicomnet ends: files, Datasets, raw bytes, conversion, failures."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from dicomnet.core import dimse
from dicomnet.core.codec import encode_command, fragment_message
from dicomnet.dataset.transcode import ConversionRefused
from dicomnet.net import client
from dicomnet.net.listener import Listener
from dicomnet.services.storage import FolderStorage

from factory import ct_dataset, dataset_bytes, write_part10


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def storage_listener(folder: Path, **options) -> tuple[Listener, FolderStorage]:
    listener = Listener("STORE", accept_any_storage=True)
    storage = FolderStorage(folder, **options)
    storage.attach(listener)
    await listener.listen("127.0.0.1", 0, 16)
    return listener, storage


def test_file_is_stored_byte_for_byte(tmp_path: Path) -> None:
    sent = [write_part10(ct_dataset(i), tmp_path / f"in{i}.dcm") for i in range(5)]

    async def scenario() -> None:
        listener, _ = await storage_listener(tmp_path / "archive")
        async with listener:
            contexts = [(CTImageStorage, [ExplicitVRLittleEndian])]
            async with client.connect("127.0.0.1", listener.port, contexts=contexts) as assoc:
                for path in sent:
                    assert (await assoc.store(path)).status == 0x0000

    run(scenario())
    for path in sent:
        uid = dcmread(path).SOPInstanceUID
        stored = tmp_path / "archive" / f"{uid}.dcm"
        assert dataset_bytes(stored) == dataset_bytes(path)
        meta = dcmread(stored).file_meta
        assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert meta.MediaStorageSOPInstanceUID == uid
    assert not list((tmp_path / "archive" / ".incoming").iterdir())


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (ExplicitVRLittleEndian, ImplicitVRLittleEndian),
        (ExplicitVRLittleEndian, ExplicitVRBigEndian),
        (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian),
        (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian),
        (ExplicitVRBigEndian, ImplicitVRLittleEndian),
    ],
)
def test_file_is_converted_when_its_syntax_was_refused(
    tmp_path: Path, source: str, target: str
) -> None:
    ds = ct_dataset(1)
    path = write_part10(ds, tmp_path / "in.dcm", source)

    async def scenario() -> None:
        listener, _ = await storage_listener(tmp_path / "archive")
        async with (
            listener,
            client.connect(
                "127.0.0.1", listener.port, contexts=[(CTImageStorage, [target])]
            ) as assoc,
        ):
            assert (await assoc.store(path)).status == 0

    run(scenario())
    stored = dcmread(tmp_path / "archive" / f"{ds.SOPInstanceUID}.dcm")
    assert stored.file_meta.TransferSyntaxUID == target
    assert stored.PixelData == ds.PixelData
    assert stored.PatientName == ds.PatientName


def test_undecodable_compressed_file_is_a_clear_error(tmp_path: Path) -> None:
    ds = ct_dataset(2)
    ds.PixelData = encapsulate([b"\xff\xd8 not a real JPEG stream \xff\xd9"])
    path = write_part10(ds, tmp_path / "in.dcm", transfer_syntax=JPEGBaseline8Bit)

    async def scenario() -> None:
        listener, _ = await storage_listener(tmp_path / "archive")
        async with (
            listener,
            client.connect(
                "127.0.0.1", listener.port, contexts=[(CTImageStorage, [ExplicitVRLittleEndian])]
            ) as assoc,
        ):
            with pytest.raises(ConversionRefused, match=JPEGBaseline8Bit):
                await assoc.store(path)
            assert (await assoc.echo()).status == 0

    run(scenario())


def test_dataset_and_raw_bytes_sources(tmp_path: Path) -> None:
    first = ct_dataset(3)
    second = ct_dataset(4)
    raw = dataset_bytes(write_part10(second, tmp_path / "second.dcm"))

    async def scenario() -> None:
        listener, _ = await storage_listener(tmp_path / "archive")
        async with (
            listener,
            client.connect(
                "127.0.0.1", listener.port, contexts=[(CTImageStorage, [ExplicitVRLittleEndian])]
            ) as assoc,
        ):
            assert (await assoc.store(first)).status == 0
            rsp = await assoc.store(
                raw,
                sop_class_uid=CTImageStorage,
                sop_instance_uid=second.SOPInstanceUID,
                transfer_syntax=ExplicitVRLittleEndian,
            )
            assert rsp.status == 0
            assert rsp.affected_sop_instance_uid == second.SOPInstanceUID

    run(scenario())
    assert (
        dcmread(tmp_path / "archive" / f"{first.SOPInstanceUID}.dcm").PixelData == first.PixelData
    )
    assert dataset_bytes(tmp_path / "archive" / f"{second.SOPInstanceUID}.dcm") == raw


def test_bad_instance_uid_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    ds = ct_dataset(5)
    raw = dataset_bytes(write_part10(ds, tmp_path / "in.dcm"))

    async def scenario() -> None:
        listener, _ = await storage_listener(tmp_path / "archive")
        async with (
            listener,
            client.connect(
                "127.0.0.1", listener.port, contexts=[(CTImageStorage, [ExplicitVRLittleEndian])]
            ) as assoc,
        ):
            for bad in ("../../etc/passwd", "1.2.3.abc", "1." * 40):
                rsp = await assoc.store(
                    raw,
                    sop_class_uid=CTImageStorage,
                    sop_instance_uid=bad,
                    transfer_syntax=ExplicitVRLittleEndian,
                )
                assert rsp.status == 0xC000
            assert (await assoc.echo()).status == 0

    run(scenario())
    assert [p.name for p in (tmp_path / "archive").iterdir()] == [".incoming"]
    assert not list((tmp_path / "archive" / ".incoming").iterdir())
    assert not incoming_files(tmp_path / "archive" / ".incoming")  # no descriptor left open


def incoming_files(folder: Path) -> list[str]:
    """Files this process has open in ``folder``: named, or unnamed (O_TMPFILE,
    which /proc shows as ``folder/#inode (deleted)``) with data written."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
            size = os.fstat(int(fd.name)).st_size
        except OSError:
            continue
        if target.startswith(f"{folder}/") and size > 0:
            found.append(target)
    return found


def test_duplicate_keeps_the_first_copy(tmp_path: Path) -> None:
    ds = ct_dataset(6)
    first = dataset_bytes(write_part10(ds, tmp_path / "a.dcm"))
    ds.PatientName = "CHANGED^NAME"
    second_path = write_part10(ds, tmp_path / "b.dcm")

    async def scenario() -> None:
        listener, _ = await storage_listener(tmp_path / "archive")
        async with (
            listener,
            client.connect(
                "127.0.0.1", listener.port, contexts=[(CTImageStorage, [ExplicitVRLittleEndian])]
            ) as assoc,
        ):
            assert (await assoc.store(tmp_path / "a.dcm")).status == 0
            assert (await assoc.store(second_path)).status == 0xB000  # kept the first

    run(scenario())
    assert dataset_bytes(tmp_path / "archive" / f"{ds.SOPInstanceUID}.dcm") == first
    assert not list((tmp_path / "archive" / ".incoming").iterdir())


def test_pipelined_stores_in_the_window(tmp_path: Path) -> None:
    paths = [write_part10(ct_dataset(i), tmp_path / f"in{i}.dcm") for i in range(40)]

    async def scenario() -> None:
        listener, _ = await storage_listener(tmp_path / "archive", fsync=False)
        async with (
            listener,
            client.connect(
                "127.0.0.1",
                listener.port,
                contexts=[(CTImageStorage, [ExplicitVRLittleEndian])],
                max_operations_invoked=8,
            ) as assoc,
        ):
            assert assoc.negotiated.max_operations_invoked == 8
            results = await asyncio.gather(*(assoc.store(p) for p in paths))
            assert {r.status for r in results} == {0}

    run(scenario())
    assert len(list((tmp_path / "archive").glob("*.dcm"))) == 40


def test_aborted_mid_dataset_leaves_no_file(tmp_path: Path) -> None:
    """The peer vanishes half way through a dataset: no partial file anywhere."""
    big = ct_dataset(7, pixels=512)
    raw = dataset_bytes(write_part10(big, tmp_path / "big.dcm"))

    async def scenario() -> None:
        listener, _ = await storage_listener(tmp_path / "archive")
        async with listener:
            assoc = await client.connect(
                "127.0.0.1", listener.port, contexts=[(CTImageStorage, [ExplicitVRLittleEndian])]
            )
            context_id = next(
                iter(
                    c
                    for c in assoc.negotiated.contexts.values()
                    if c.abstract_syntax == CTImageStorage
                )
            ).context_id
            command = dimse.CStoreRQ(
                message_id=1,
                affected_sop_class_uid=CTImageStorage,
                affected_sop_instance_uid=big.SOPInstanceUID,
            )
            buffers = fragment_message(
                context_id, encode_command(dimse.to_command(command)), raw, 16384
            )
            transport = assoc.network_stream
            assert transport is not None
            transport.writelines(buffers[: len(buffers) // 2])  # half the dataset
            part_seen = False
            for _ in range(500):
                await asyncio.sleep(0.01)
                if incoming_files(tmp_path / "archive" / ".incoming"):
                    part_seen = True
                    break
            assert part_seen, "the listener should be writing the dataset to an incoming file"
            transport.abort()
            for _ in range(500):
                if listener.association_count == 0:
                    break
                await asyncio.sleep(0.01)
            assert listener.association_count == 0

    run(scenario())
    assert [p.name for p in (tmp_path / "archive").iterdir()] == [".incoming"]
    assert not list((tmp_path / "archive" / ".incoming").iterdir())
    assert not incoming_files(tmp_path / "archive" / ".incoming")  # no descriptor left open
