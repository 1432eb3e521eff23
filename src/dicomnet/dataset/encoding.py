"""pydicom Datasets at the API edge: encode for a transfer syntax, decode lazily.

The ingestion path never comes here: a storage SCP writes the received bytes
as they are. Queries, identifiers, N-service attribute lists and a Dataset
handed to ``store()`` do. pydicom is imported on first use: it costs about a
quarter of a second, which a storage SCP or a sender of files never needs to pay.
"""

from __future__ import annotations

import zlib
from io import BytesIO
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["DEFLATED", "decode_dataset", "encode_dataset", "transfer_syntax_encoding"]

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"


def transfer_syntax_encoding(transfer_syntax: str) -> tuple[bool, bool]:
    """``(is_implicit_vr, is_little_endian)`` of a transfer syntax (PS3.5 10)."""
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return True, True
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        return False, False
    return False, True


def encode_dataset(dataset: Dataset, transfer_syntax: str) -> bytes:
    """Encode a Dataset's elements (no preamble, no file meta) for a transfer syntax."""
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    implicit, little = transfer_syntax_encoding(transfer_syntax)
    buffer = DicomBytesIO()
    buffer.is_little_endian = little
    buffer.is_implicit_VR = implicit
    body = Dataset({tag: elem for tag, elem in dataset.items() if tag.group != 0x0002})
    write_dataset(buffer, body)
    data = buffer.getvalue()
    if transfer_syntax == DEFLATED:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
        if len(data) % 2:
            data += b"\x00"
    return data


MAX_INFLATED_LENGTH = 64 << 20
"""Largest deflated dataset decoded in memory once inflated (a small stream can
inflate without bound)."""


def decode_dataset(
    data: bytes | bytearray | memoryview,
    transfer_syntax: str,
    *,
    max_inflated_length: int = MAX_INFLATED_LENGTH,
) -> Dataset:
    """Decode dataset bytes received under a transfer syntax.

    Raises ``ValueError`` for a deflated dataset that inflates past
    ``max_inflated_length`` bytes.
    """
    from pydicom.filereader import read_dataset

    raw: Any = bytes(data)
    if transfer_syntax == DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        raw = inflater.decompress(raw, max_inflated_length + 1)
        if len(raw) > max_inflated_length:
            raise ValueError(f"deflated dataset inflates past {max_inflated_length} bytes")
    implicit, little = transfer_syntax_encoding(transfer_syntax)
    dataset = read_dataset(BytesIO(raw), implicit, little)
    dataset.set_original_encoding(implicit, little)
    return dataset


def read_part10(path: str) -> Dataset:
    """Read a Part 10 file fully (used off the hot path only)."""
    from pydicom import dcmread

    return dcmread(path)
