"""Compressed data end to end, against real peers: conversion on send and on retrieve.

Inputs are compressed by DCMTK (dcmcjpls, dcmcjpeg, dcmcrle); receivers are
DCMTK's storescp restricted to uncompressed syntaxes, DCMTK's getscu and
movescu proposing only uncompressed ones against the archive, and pynetdicom
accepting only JPEG-LS Lossless. Every lossless path must deliver exactly the
original pixels.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomnet.dataset.part10 import read_file_meta
from dicomnet.net import client
from dicomnet.net.bulk_store import collect_files, store_files

from codec_files import (
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    RLE_LOSSLESS,
    ct_image,
    dcmtk_compress,
    dcmtk_decompress,
    native_file,
    pixels,
)
from peers import dcmtk_env, dcmtk_server, free_port, run_dcmtk, wait_for_port

pytestmark = pytest.mark.interop

NATIVE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}


def compressed_set(folder: Path, syntaxes: tuple[str, ...], study: str | None = None):
    """Native originals and their DCMTK-compressed twins, one per syntax."""
    originals: dict[str, bytes] = {}
    compressed: list[Path] = []
    for index, syntax in enumerate(syntaxes):
        ds = ct_image(index, frames=2 if index == 0 else 1)
        if study:
            ds.StudyInstanceUID = study
            ds.PatientID = "PID-TRANSCODE"
        native = native_file(folder / "native", ds, f"n{index}.dcm")
        originals[str(ds.SOPInstanceUID)] = pixels(native)
        (folder / "compressed").mkdir(parents=True, exist_ok=True)
        compressed.append(dcmtk_compress(native, syntax, folder / "compressed" / f"c{index}.dcm"))
    return originals, compressed


def received_files(folder: Path) -> dict[str, Path]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            found[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    return found


def assert_native_and_identical(folder: Path, originals: dict[str, bytes], syntaxes=NATIVE):
    received = received_files(folder)
    assert set(received) == set(originals)
    for uid, path in received.items():
        with open(path, "rb") as stream:
            assert read_file_meta(stream).transfer_syntax in syntaxes
        assert pixels(path) == originals[uid], uid


def store_cli(called: str, port: int, paths: list[Path], *extra: str):
    return subprocess.run(
        [sys.executable, "-m", "dicomnet", "store", "-q", "--aec", called, *extra]
        + ["127.0.0.1", str(port)]
        + [str(path) for path in paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("flag", "expected"), (("+xe", NATIVE), ("+xi", {ImplicitVRLittleEndian})))
def test_store_decompresses_for_storescp_restricted_to_uncompressed(
    tmp_path: Path, flag: str, expected: set[str]
) -> None:
    originals, compressed = compressed_set(
        tmp_path, (JPEG_LS_LOSSLESS, JPEG_LOSSLESS_SV1, RLE_LOSSLESS)
    )
    inbox = tmp_path / "received"
    inbox.mkdir()
    port = free_port()
    with dcmtk_server("storescp", [flag, "-aet", "STORESCP", "-od", str(inbox), str(port)], port):
        result = store_cli("STORESCP", port, compressed, "--conversion-processes", "2")
    assert result.returncode == 0, result.stderr
    assert_native_and_identical(inbox, originals, expected)


def test_store_compresses_for_pynetdicom_accepting_only_jpeg_ls(tmp_path: Path) -> None:
    from pynetdicom import AE, evt

    sent = [native_file(tmp_path / "out", ct_image(i), f"n{i}.dcm") for i in range(3)]
    received: dict[str, bytes] = {}

    def on_store(event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        path = tmp_path / f"got-{len(received)}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert event.context.transfer_syntax == JPEG_LS_LOSSLESS
        received[str(ds.SOPInstanceUID)] = pixels(
            dcmtk_decompress(path, tmp_path / f"d{path.name}")
        )
        return 0x0000

    ae = AE(ae_title="JLSONLY")
    ae.add_supported_context(CTImageStorage, [JPEG_LS_LOSSLESS])
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        jobs, unreadable = collect_files(sent, recursive=False)
        assert not unreadable
        outcome = asyncio.run(
            asyncio.wait_for(
                store_files("127.0.0.1", server.server_address[1], jobs, called_ae_title="JLSONLY"),
                120,
            )
        )
    finally:
        server.shutdown()
    assert outcome.ok, outcome.failed
    assert received == {str(dcmread(p).SOPInstanceUID): pixels(p) for p in sent}


def test_lossy_only_peer_gets_nothing_without_allow_lossy(tmp_path: Path) -> None:
    from pynetdicom import AE, evt

    sent = native_file(tmp_path, ct_image(1), "n.dcm")
    received = []

    def on_store(event) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="J2KLOSSY")
    ae.add_supported_context(CTImageStorage, ["1.2.840.10008.1.2.4.91"])
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        refused = store_cli("J2KLOSSY", server.server_address[1], [sent])
        allowed = store_cli("J2KLOSSY", server.server_address[1], [sent], "--allow-lossy")
    finally:
        server.shutdown()
    assert refused.returncode != 0
    assert "without loss" in refused.stderr or "no presentation context" in refused.stderr
    assert allowed.returncode == 0, allowed.stderr
    (lossy,) = received
    original = dcmread(sent)
    assert lossy.SOPInstanceUID != original.SOPInstanceUID
    assert lossy.LossyImageCompression == "01"
    assert lossy.LossyImageCompressionMethod == "ISO_15444_1"
    assert lossy.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID


def test_compressed_store_against_storescp_without_the_codecs_names_the_extra(
    tmp_path: Path,
) -> None:
    """The codecs simulated missing in the sender's process: the error names the extra."""
    _, compressed = compressed_set(tmp_path, (JPEG_LS_LOSSLESS,))
    port = free_port()
    inbox = tmp_path / "received"
    inbox.mkdir()
    script = (
        "import sys; from dicomnet.dataset import transcode;"
        "transcode._installed = lambda name: False;"
        "from dicomnet.cli.main import main; sys.exit(main())"
    )
    command = ["store", "-q", "--aec", "STORESCP", "127.0.0.1", str(port), str(compressed[0])]
    with dcmtk_server("storescp", ["+xe", "-od", str(inbox), str(port)], port):
        result = subprocess.run(
            [sys.executable, "-c", script, *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode != 0
    assert "pip install dicomnet[codecs]" in result.stderr
    assert not list(inbox.iterdir())


def test_getscu_and_movescu_proposing_only_uncompressed_against_the_archive(
    tmp_path: Path,
) -> None:
    study = "1.2.826.0.1.3680043.8.498.77.1"
    originals, compressed = compressed_set(
        tmp_path, (JPEG_LS_LOSSLESS, JPEG_LOSSLESS_SV1, RLE_LOSSLESS), study=study
    )
    port, move_port = free_port(), free_port()
    archive = subprocess.Popen(
        [
            sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE",
            "--host", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path / "archive"),
            "--move-destination", f"MOVESCU=127.0.0.1:{move_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dcmtk_env(),
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)
        stored = store_cli("ARCHIVE", port, compressed)
        assert stored.returncode == 0, stored.stderr
        kept = {
            read_file_meta(open(p, "rb")).transfer_syntax
            for p in (tmp_path / "archive").rglob("*.dcm")
        }
        assert kept == {JPEG_LS_LOSSLESS, JPEG_LOSSLESS_SV1, RLE_LOSSLESS}

        fetched = tmp_path / "fetched"
        fetched.mkdir()
        get = run_dcmtk(
            "getscu", "-S", "-aec", "ARCHIVE", "-od", str(fetched),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "127.0.0.1", str(port),
        )  # fmt: skip
        assert get.returncode == 0, get.stderr

        moved = tmp_path / "moved"
        moved.mkdir()
        move = run_dcmtk(
            "movescu", "-S", "+xi", "-aet", "MOVESCU", "-aec", "ARCHIVE", "-aem", "MOVESCU",
            "--port", str(move_port), "-od", str(moved),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "127.0.0.1", str(port),
        )  # fmt: skip
        assert move.returncode == 0, move.stderr
    finally:
        archive.terminate()
        archive.wait(timeout=30)
    assert_native_and_identical(fetched, originals)
    assert_native_and_identical(moved, originals, {ImplicitVRLittleEndian})


def test_our_scu_store_of_a_dataset_converts_a_copy(tmp_path: Path) -> None:
    """A compressed pydicom Dataset handed to store() is converted, the caller's untouched."""
    native = native_file(tmp_path, ct_image(3), "n.dcm")
    compressed = dcmread(dcmtk_compress(native, JPEG_LS_LOSSLESS, tmp_path / "c.dcm"))
    before = bytes(compressed.PixelData)
    inbox = tmp_path / "received"
    inbox.mkdir()
    port = free_port()

    async def scenario() -> int:
        async with client.connect(
            "127.0.0.1",
            port,
            called_ae_title="STORESCP",
            contexts=[
                (CTImageStorage, [JPEG_LS_LOSSLESS]),
                (CTImageStorage, [ImplicitVRLittleEndian]),
            ],
        ) as assoc:
            return int((await assoc.store(compressed)).status)

    with dcmtk_server("storescp", ["+xi", "-od", str(inbox), str(port)], port):
        assert asyncio.run(asyncio.wait_for(scenario(), 60)) == 0
    assert bytes(compressed.PixelData) == before
    (received,) = received_files(inbox).values()
    assert pixels(received) == pixels(native)


def test_a_compressed_dataset_in_an_accepted_syntax_goes_unchanged(tmp_path: Path) -> None:
    """No decode and re-encode when the peer takes the Dataset's own syntax."""
    from pynetdicom import AE, evt

    native = native_file(tmp_path, ct_image(4), "n.dcm")
    compressed = dcmread(dcmtk_compress(native, JPEG_LS_LOSSLESS, tmp_path / "c.dcm"))
    received: list[bytes] = []

    def on_store(event) -> int:
        received.append(bytes(event.dataset.PixelData))
        return 0x0000

    ae = AE(ae_title="JLSONLY")
    ae.add_supported_context(CTImageStorage, [JPEG_LS_LOSSLESS])
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )

    async def scenario() -> int:
        async with client.connect(
            "127.0.0.1",
            server.server_address[1],
            called_ae_title="JLSONLY",
            contexts=[(CTImageStorage, [JPEG_LS_LOSSLESS])],
        ) as assoc:
            return int((await assoc.store(compressed)).status)

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), 60)) == 0
    finally:
        server.shutdown()
    assert received == [bytes(compressed.PixelData)]
