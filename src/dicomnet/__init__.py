"""dicomnet: DICOM networking (PS3.8 Upper Layer, PS3.7 DIMSE) for asyncio."""

from __future__ import annotations

from dicomnet.errors import (
    AssociationAborted,
    AssociationRejected,
    CommandSetError,
    ConnectionClosed,
    DicomNetError,
    LocalProtocolError,
    PDUError,
    PDUTooLarge,
    PDVError,
    ProtocolError,
    RequestTimeout,
    UnexpectedPDU,
    UnrecognizedPDU,
)

__version__ = "0.1.0"

__all__ = [
    "AssociationAborted",
    "AssociationRejected",
    "CommandSetError",
    "ConnectionClosed",
    "DicomNetError",
    "LocalProtocolError",
    "PDUError",
    "PDUTooLarge",
    "PDVError",
    "ProtocolError",
    "RequestTimeout",
    "UnexpectedPDU",
    "UnrecognizedPDU",
    "__version__",
]
