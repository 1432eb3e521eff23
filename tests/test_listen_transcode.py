"""The listener's transfer-syntax policy: --accept, --prefer and --store-as.

``dicomnet listen`` runs as a subprocess, fed by DCMTK's storescu and by
dicomnet's own store; what arrives is read back from the archive folder and
through DCMTK's getscu.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicomnet.core.uids import ALL_TRANSFER_SYNTAXES
from dicomnet.dataset.part10 import read_file_meta
from dicomnet.net import client
from dicomnet.services.ingest_transcode import accepted_syntaxes

from codec_files import (
    JPEG_2000_LOSSLESS,
    JPEG_LS_LOSSLESS,
    RLE_LOSSLESS,
    ct_image,
    dcmtk_compress,
    native_file,
    pixels,
)
from peers import dcmtk_env, free_port, run_dcmtk, wait_for_port

STUDY = "1.2.826.0.1.3680043.8.498.77.2"


def dicomnet(*args: str) -> list[str]:
    """The command line running dicomnet with ``args``."""
    return [sys.executable, "-m", "dicomnet", *args]


@contextmanager
def archive(folder: Path, *flags: str) -> Iterator[int]:
    port = free_port()
    flags = ("--host", "127.0.0.1", *flags)
    process = subprocess.Popen(
        dicomnet("listen", "--aet", "ARCHIVE", "--port", str(port), "--dir", str(folder), *flags),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dcmtk_env(),
    )
    try:
        wait_for_port("127.0.0.1", port, 30)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def study_files(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        ds = ct_image(index, frames=2 if index == 0 else 1)
        ds.StudyInstanceUID = STUDY
        paths.append(native_file(folder, ds, f"n{index}.dcm"))
    return paths


def stored_syntaxes(folder: Path) -> dict[str, str]:
    found = {}
    for path in folder.rglob("*.dcm"):
        with open(path, "rb") as stream:
            meta = read_file_meta(stream)
        found[meta.sop_instance_uid] = meta.transfer_syntax
    return found


def test_accept_policies_and_preferred_order() -> None:
    assert accepted_syntaxes("uncompressed")[:2] == (
        ExplicitVRLittleEndian,
        "1.2.840.10008.1.2",
    )
    assert JPEG_LS_LOSSLESS not in accepted_syntaxes("uncompressed")
    lossless = accepted_syntaxes("lossless")
    assert JPEG_LS_LOSSLESS in lossless and "1.2.840.10008.1.2.4.50" not in lossless
    assert accepted_syntaxes("all") == ALL_TRANSFER_SYNTAXES  # the default is unchanged
    assert accepted_syntaxes("all", (RLE_LOSSLESS,))[0] == RLE_LOSSLESS
    with pytest.raises(ValueError, match="not accepted"):
        accepted_syntaxes("uncompressed", (RLE_LOSSLESS,))


@pytest.mark.interop
def test_accept_uncompressed_makes_our_sender_decompress(tmp_path: Path) -> None:
    native = study_files(tmp_path / "native", 2)
    compressed = [
        dcmtk_compress(path, JPEG_LS_LOSSLESS, tmp_path / f"c{i}.dcm")
        for i, path in enumerate(native)
    ]
    with archive(tmp_path / "archive", "--accept", "uncompressed") as port:
        refused = run_dcmtk(
            "storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port), str(compressed[0])
        )
        sent = subprocess.run(
            dicomnet("store", "-q", "--aec", "ARCHIVE", "127.0.0.1", str(port))
            + [str(path) for path in compressed],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert refused.returncode != 0  # storescu cannot decompress: no context for JPEG-LS
    assert sent.returncode == 0, sent.stderr
    assert set(stored_syntaxes(tmp_path / "archive").values()) == {ExplicitVRLittleEndian}
    by_uid = {str(dcmread(p).SOPInstanceUID): pixels(p) for p in native}
    for path in (tmp_path / "archive").rglob("*.dcm"):
        assert pixels(path) == by_uid[str(dcmread(path).SOPInstanceUID)]


@pytest.mark.interop
def test_prefer_chooses_a_proposed_compressed_syntax_first(tmp_path: Path) -> None:
    async def accepted(port: int) -> str:
        async with client.connect(
            "127.0.0.1",
            port,
            called_ae_title="ARCHIVE",
            contexts=[(CTImageStorage, [ExplicitVRLittleEndian, RLE_LOSSLESS, JPEG_LS_LOSSLESS])],
        ) as assoc:
            (context,) = [
                c for c in assoc.negotiated.contexts.values() if c.abstract_syntax == CTImageStorage
            ]
            return context.transfer_syntax

    with archive(tmp_path / "a", "--prefer", "jpeg-ls,rle") as port:
        assert asyncio.run(asyncio.wait_for(accepted(port), 30)) == JPEG_LS_LOSSLESS
    with archive(tmp_path / "b") as port:
        assert asyncio.run(asyncio.wait_for(accepted(port), 30)) == ExplicitVRLittleEndian


@pytest.mark.interop
def test_store_as_jpeg_2000_lossless_then_get_as_uncompressed(tmp_path: Path) -> None:
    sent = study_files(tmp_path / "sent", 3)
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    folder = tmp_path / "archive"
    with archive(folder, "--store-as", "j2k-lossless") as port:
        stored = run_dcmtk("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port), *map(str, sent))
        assert stored.returncode == 0, stored.stderr
        get = run_dcmtk(
            "getscu", "-S", "-aec", "ARCHIVE", "-od", str(fetched),
            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}",
            "127.0.0.1", str(port),
        )  # fmt: skip
        assert get.returncode == 0, get.stderr
    on_disk = stored_syntaxes(folder)
    assert set(on_disk.values()) == {JPEG_2000_LOSSLESS}
    with sqlite3.connect(folder / "index.sqlite") as db:
        rows = db.execute("SELECT transfer_syntax, size FROM instances").fetchall()
    assert {row[0] for row in rows} == {JPEG_2000_LOSSLESS}
    original = {str(dcmread(p).SOPInstanceUID): pixels(p) for p in sent}
    assert sum(p.stat().st_size for p in folder.rglob("*.dcm")) < sum(
        p.stat().st_size for p in sent
    )
    got = {str(dcmread(p).SOPInstanceUID): pixels(p) for p in fetched.iterdir()}
    assert got == original
    verify = subprocess.run(
        dicomnet("archive", "verify", str(folder)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_store_as_refuses_a_lossy_target(tmp_path: Path) -> None:
    result = subprocess.run(
        dicomnet("listen", "--port", "0", "--dir", str(tmp_path), "--store-as", "j2k"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "native or lossless" in result.stderr


@pytest.mark.interop
def test_store_as_without_the_index_converts_the_files(tmp_path: Path) -> None:
    sent = study_files(tmp_path / "sent", 2)
    folder = tmp_path / "files"
    with archive(folder, "--no-index", "--store-as", "rle") as port:
        stored = run_dcmtk("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port), *map(str, sent))
        assert stored.returncode == 0, stored.stderr
    assert set(stored_syntaxes(folder).values()) == {RLE_LOSSLESS}
    original = {str(dcmread(p).SOPInstanceUID): pixels(p) for p in sent}
    for path in folder.rglob("*.dcm"):
        ds = dcmread(path)
        ds.decompress(generate_instance_uid=False)
        assert bytes(ds.PixelData) == original[str(ds.SOPInstanceUID)]


def test_the_policy_reads_from_a_toml_file(tmp_path: Path) -> None:
    from dicomnet.cli.listen_service import load_config

    path = tmp_path / "listen.toml"
    path.write_text('[listen]\naccept = "lossless"\nprefer = ["jpeg-ls"]\nstore-as = "rle"\n')
    assert load_config(path) == {"accept": "lossless", "prefer": ["jpeg-ls"], "store_as": "rle"}
