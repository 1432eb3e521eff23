"""Compressed test instances made by DCMTK's compressors and by pydicom.

Images have realistic content (a smooth field with noise, as CT and photos
have) so that the lossy codecs lose something and the lossless ones compress.
"""

from __future__ import annotations

import random
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from factory import ct_dataset, write_part10
from peers import run_dcmtk

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_P14 = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

DCMTK_COMPRESSORS = {
    JPEG_LOSSLESS_SV1: ("dcmcjpeg", "+e1"),
    JPEG_LOSSLESS_P14: ("dcmcjpeg", "+el"),
    JPEG_EXTENDED: ("dcmcjpeg", "+ee"),
    JPEG_LS_LOSSLESS: ("dcmcjpls", "+el"),
    JPEG_LS_NEAR_LOSSLESS: ("dcmcjpls", "+en"),
    RLE_LOSSLESS: ("dcmcrle",),
}
"""Transfer syntax -> the DCMTK command (and flag) that makes it from a native file."""

DCMTK_DECOMPRESSORS = {
    JPEG_BASELINE: "dcmdjpeg",
    JPEG_EXTENDED: "dcmdjpeg",
    JPEG_LOSSLESS_P14: "dcmdjpeg",
    JPEG_LOSSLESS_SV1: "dcmdjpeg",
    JPEG_LS_LOSSLESS: "dcmdjpls",
    JPEG_LS_NEAR_LOSSLESS: "dcmdjpls",
    RLE_LOSSLESS: "dcmdrle",
}


def ct_image(index: int = 0, *, size: int = 128, frames: int = 1) -> Dataset:
    """A 12-bit CT-like image: a smooth field plus noise, within Bits Stored."""
    ds = ct_dataset(index, pixels=size)
    rng = random.Random(index)
    values = bytearray()
    for frame in range(frames):
        for row in range(size):
            for column in range(size):
                value = 1000 + 8 * (row + column + frame) + rng.randint(0, 40)
                values += min(value, 4095).to_bytes(2, "little")
    ds.PixelData = bytes(values)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def rgb_image(index: int = 0, *, size: int = 64) -> Dataset:
    """An 8-bit RGB secondary capture: colour gradients plus noise."""
    ds = ct_dataset(index, pixels=size)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    rng = random.Random(index)
    values = bytearray()
    for row in range(size):
        for column in range(size):
            values += bytes(((row * 4) % 256, (column * 4) % 256, rng.randint(90, 110)))
    ds.PixelData = bytes(values)
    return ds


def native_file(folder: Path, ds: Dataset, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_part10(ds, folder / name)


def dcmtk_compress(native: Path, syntax: str, out: Path) -> Path:
    """``native`` compressed by DCMTK into ``syntax``."""
    tool, *flags = DCMTK_COMPRESSORS[syntax]
    result = run_dcmtk(tool, *flags, str(native), str(out))
    assert result.returncode == 0, result.stderr
    assert str(dcmread(out, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax
    return out


def dcmtk_baseline(native: Path, out: Path) -> Path:
    """An 8-bit image compressed by DCMTK as JPEG Baseline."""
    result = run_dcmtk("dcmcjpeg", "+eb", str(native), str(out))
    assert result.returncode == 0, result.stderr
    return out


def dcmtk_decompress(compressed: Path, out: Path) -> Path:
    """DCMTK's own decode of a compressed file, to explicit VR little endian."""
    syntax = str(dcmread(compressed, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    result = run_dcmtk(DCMTK_DECOMPRESSORS[syntax], str(compressed), str(out))
    assert result.returncode == 0, result.stderr
    return out


def pydicom_compress(ds: Dataset, syntax: str, out: Path, **options: object) -> Path:
    """``ds`` compressed by pydicom's own encoders (no lossy attributes added)."""
    copy = Dataset(ds)
    copy.file_meta = ds.file_meta
    copy.compress(syntax, generate_instance_uid=False, **options)
    copy.save_as(out, enforce_file_format=True)
    return out


def pixels(path: Path) -> bytes:
    """The native Pixel Data of a file, as stored."""
    ds = dcmread(path)
    return bytes(ds.PixelData)
