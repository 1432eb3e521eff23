"""The one exception tree of dicomnet.

Errors split the h11 way: a *local* error is the caller's mistake (a value that
cannot be encoded, a primitive issued in the wrong state) and is raised to the
caller; a *remote* error is the peer's (malformed bytes, an unexpected PDU) and
knows what to tell the peer. Every :class:`ProtocolError` carries the A-ABORT
source and reason (PS3.8 9.3.8) so the association layer turns any of them into
the right A-ABORT in one place.

Both codecs (``dicomnet.core._pdu`` and ``dicomnet.core._pdu_py``) raise these classes;
nothing else escapes the codec on peer input.
"""

from __future__ import annotations

__all__ = [
    "AbortReason",
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
]


class AbortReason:
    """A-ABORT reason codes for source 2, service provider (PS3.8 Table 9-26)."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER_VALUE = 6


class DicomNetError(Exception):
    """Root of every error dicomnet raises on purpose."""


class ProtocolError(DicomNetError, ValueError):
    """The peer broke PS3.8 or PS3.7; the association must be aborted.

    Attributes
    ----------
    abort_source : int
        A-ABORT source to send: 2, DICOM UL service provider.
    abort_reason : int
        A-ABORT reason to send (:class:`AbortReason`).
    """

    abort_source: int = 2
    abort_reason: int = AbortReason.INVALID_PDU_PARAMETER_VALUE


class PDUError(ProtocolError):
    """Bytes that do not form a valid PDU or item (PS3.8 9.3)."""


class PDUTooLarge(PDUError):
    """A PDU header declares a length above the configured cap.

    Raised from the 6-byte header alone, before any body byte is read or any
    buffer is sized from the peer's length (PS3.8 D.1).
    """


class UnrecognizedPDU(PDUError):
    """A PDU type outside 01H-07H (PS3.8 Evt19, reason 1)."""

    abort_reason = AbortReason.UNRECOGNIZED_PDU


class UnexpectedPDU(ProtocolError):
    """A valid PDU that the current state does not allow (PS3.8 Evt19/AA-8, reason 2)."""

    abort_reason = AbortReason.UNEXPECTED_PDU


class PDVError(ProtocolError):
    """PDVs that break the fragmentation rules of PS3.8 Annex E."""


class CommandSetError(ProtocolError):
    """A DIMSE command set that cannot be decoded (PS3.7 6.3 and Annex E)."""


class LocalProtocolError(DicomNetError, RuntimeError):
    """The local user asked for something the protocol state does not allow."""


class AssociationRejected(DicomNetError):
    """The peer answered A-ASSOCIATE-RJ (PS3.8 9.3.4).

    Attributes
    ----------
    result, source, reason : int
        The three fields of the A-ASSOCIATE-RJ PDU.
    """

    def __init__(self, result: int, source: int, reason: int) -> None:
        self.result = result
        self.source = source
        self.reason = reason
        super().__init__(describe_rejection(result, source, reason))


class AssociationAborted(DicomNetError):
    """The association ended by A-ABORT or A-P-ABORT, sent or received.

    Attributes
    ----------
    source, reason : int
        The A-ABORT fields (source 0 service user, 2 service provider).
    """

    def __init__(self, source: int, reason: int, detail: str = "") -> None:
        self.source = source
        self.reason = reason
        self.detail = detail
        text = f"association aborted (source {source}, reason {reason})"
        super().__init__(f"{text}: {detail}" if detail else text)


class ConnectionClosed(DicomNetError, ConnectionError):
    """The transport closed before the exchange finished."""


class RequestTimeout(DicomNetError, TimeoutError):
    """A timer of the request timeout model fired.

    Attributes
    ----------
    timer : str
        Which timer: ``"send"``, ``"first_response"``, ``"between_responses"``,
        ``"total"``, ``"association"`` or ``"release"``.
    seconds : float
        The limit that was exceeded.
    """

    def __init__(self, timer: str, seconds: float, detail: str = "") -> None:
        self.timer = timer
        self.seconds = seconds
        text = f"{timer} timeout after {seconds:g} s"
        super().__init__(f"{text}: {detail}" if detail else text)


_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 0): "reserved",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
_REJECT_SOURCES = {
    1: "service user",
    2: "service provider (ACSE)",
    3: "service provider (presentation)",
}


def describe_rejection(result: int, source: int, reason: int) -> str:
    """Spell out an A-ASSOCIATE-RJ as PS3.8 Table 9-21 names its fields."""
    kind = {1: "permanent", 2: "transient"}.get(result, f"result {result}")
    who = _REJECT_SOURCES.get(source, f"source {source}")
    why = _REJECT_REASONS.get((source, reason), f"reason {reason}")
    return f"association rejected ({kind}) by {who}: {why}"
