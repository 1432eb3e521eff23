"""Test instances made with pydicom: small CT images, written as Part 10 files."""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicomnet.dataset.part10 import read_file_meta


def ct_dataset(index: int = 0, *, pixels: int = 64, study: str | None = None) -> Dataset:
    """A small, valid CT Image with ``pixels`` x ``pixels`` 16-bit pixel data."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = f"TEST^PATIENT{index % 3}"
    ds.PatientID = f"PID{index % 3}"
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.InstanceNumber = index + 1
    ds.Rows = pixels
    ds.Columns = pixels
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes((index + i) % 251 for i in range(pixels * pixels * 2))
    return ds


def write_part10(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` as a Part 10 file in ``transfer_syntax``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the File Meta group of a Part 10 file."""
    with open(path, "rb") as stream:
        read_file_meta(stream)
        return stream.read()


def make_study(folder: Path, count: int) -> tuple[str, list[Path]]:
    """``count`` CT images of one new study and one patient, as Part 10 files."""
    study = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        ds = ct_dataset(index, study=study)
        ds.PatientID, ds.PatientName = "PID-RETRIEVE", "RETRIEVE^PATIENT"
        paths.append(write_part10(ds, folder / f"ct{index}.dcm"))
    return study, paths


def element(group: int, number: int, value: bytes, vr: bytes = b"") -> bytes:
    """One little endian element: explicit VR with a 16-bit length when ``vr`` is
    given, implicit VR otherwise."""
    if vr:
        return struct.pack("<HH", group, number) + vr + struct.pack("<H", len(value)) + value
    return struct.pack("<HHI", group, number, len(value)) + value


def nested_sequences(levels: int, tag: tuple[int, int] = (0x0008, 0x1140)) -> bytes:
    """``levels`` sequences of undefined length, each one item of undefined length
    holding the next: implicit VR little endian, what a hostile peer nests."""
    nested = b""
    for _ in range(levels):
        nested = (
            struct.pack("<HHI", *tag, 0xFFFFFFFF)
            + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
            + nested
            + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
            + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        )
    return nested
