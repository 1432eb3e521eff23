"""dicomnet: DICOM networking (PS3.8 Upper Layer, PS3.7 DIMSE) for asyncio."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from dicomnet.net.client import connect

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
    "connect",
]


def __getattr__(name: str) -> Any:
    """``dicomnet.connect``, imported on first use: ``import dicomnet`` (which every
    submodule import runs) stays free of asyncio for the protocol core."""
    if name == "connect":
        from dicomnet.net.client import connect

        return connect
    raise AttributeError(f"module 'dicomnet' has no attribute {name!r}")
