"""PDUs as bytes, well formed or deliberately not, for a peer that misbehaves.

The codec (:func:`dicomnet.core.codec.encode_pdu`) refuses to write what PS3.8
forbids; these builders write anything. Each takes the parts a test wants to
get wrong as arguments: a declared ``length`` that lies, an item type no one
knows, reserved bytes that are not zero, an AE title that is not text.
Everything else defaults to what a well-behaved peer sends.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

from dicomnet.core.codec import encode_command
from dicomnet.core.uids import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION_SOP_CLASS

__all__ = [
    "APPLICATION_CONTEXT",
    "abort",
    "associate_rq",
    "c_echo_rq",
    "c_find_rq",
    "c_store_rq",
    "command",
    "item",
    "p_data",
    "pdu",
    "pdv",
    "presentation_context",
    "release_rp",
    "release_rq",
    "user_information",
]

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
"""The DICOM application context name (PS3.7 A.2.1)."""

PDU_ASSOCIATE_RQ = 0x01
PDU_P_DATA = 0x04
PDU_RELEASE_RQ = 0x05
PDU_RELEASE_RP = 0x06
PDU_ABORT = 0x07


def _text(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def pdu(pdu_type: int, body: bytes, *, length: int | None = None, reserved: int = 0) -> bytes:
    """A PDU: type, reserved byte, 32-bit length (``length`` overrides the true one), body."""
    declared = len(body) if length is None else length
    return struct.pack(">BBI", pdu_type, reserved, declared) + body


def item(item_type: int, body: bytes, *, length: int | None = None, reserved: int = 0) -> bytes:
    """An item or sub-item: type, reserved byte, 16-bit length, body."""
    declared = len(body) if length is None else length
    return struct.pack(">BBH", item_type, reserved, declared) + body


def presentation_context(
    context_id: int = 1,
    abstract_syntax: str | bytes = VERIFICATION_SOP_CLASS,
    transfer_syntaxes: Sequence[str | bytes] = (IMPLICIT_VR_LITTLE_ENDIAN,),
) -> bytes:
    """A presentation context item of a request (0x20) with its sub-items."""
    body = bytes([context_id, 0, 0, 0]) + item(0x30, _text(abstract_syntax))
    for syntax in transfer_syntaxes:
        body += item(0x40, _text(syntax))
    return item(0x20, body)


def user_information(
    max_length: int | None = 16384,
    implementation_class_uid: str | bytes = "1.2.826.0.1.3680043.10.1341.1",
    extra: bytes = b"",
) -> bytes:
    """A user information item (0x50): maximum length, implementation UID, then ``extra``."""
    body = b""
    if max_length is not None:
        body += item(0x51, struct.pack(">I", max_length))
    body += item(0x52, _text(implementation_class_uid)) + extra
    return item(0x50, body)


def associate_rq(
    called: str | bytes = "ANY-SCP",
    calling: str | bytes = "TESTING",
    *,
    contexts: Iterable[bytes] | None = None,
    application_context: str | bytes = APPLICATION_CONTEXT,
    user_info: bytes | None = None,
    protocol_version: int = 1,
    extra_items: bytes = b"",
    length: int | None = None,
) -> bytes:
    """An A-ASSOCIATE-RQ; AE titles are padded or cut to 16 bytes as given.

    ``contexts`` are items from :func:`presentation_context` (default: one
    Verification context); ``extra_items`` go after the user information.
    """
    titles = _text(called).ljust(16, b" ")[:16] + _text(calling).ljust(16, b" ")[:16]
    body = struct.pack(">HH", protocol_version, 0) + titles + bytes(32)
    body += item(0x10, _text(application_context))
    for context in contexts if contexts is not None else (presentation_context(),):
        body += context
    body += user_information() if user_info is None else user_info
    body += extra_items
    return pdu(PDU_ASSOCIATE_RQ, body, length=length)


def pdv(context_id: int, control: int, fragment: bytes, *, length: int | None = None) -> bytes:
    """A presentation data value item: ``control`` bit 0 command, bit 1 last fragment."""
    declared = len(fragment) + 2 if length is None else length
    return struct.pack(">IBB", declared, context_id, control) + fragment


def p_data(*pdvs: bytes, length: int | None = None) -> bytes:
    """A P-DATA-TF carrying the given :func:`pdv` items, in order."""
    return pdu(PDU_P_DATA, b"".join(pdvs), length=length)


def release_rq(*, length: int = 4) -> bytes:
    """An A-RELEASE-RQ (its fixed length is 4)."""
    return pdu(PDU_RELEASE_RQ, bytes(length))


def release_rp(*, length: int = 4) -> bytes:
    """An A-RELEASE-RP (its fixed length is 4)."""
    return pdu(PDU_RELEASE_RP, bytes(length))


def abort(source: int = 0, reason: int = 0, *, length: int = 4) -> bytes:
    """An A-ABORT from ``source`` (0 service user, 2 service provider)."""
    body = bytes([0, 0, source, reason]).ljust(length, b"\0")[:length]
    return pdu(PDU_ABORT, body)


def command(fields: Mapping[int, object]) -> bytes:
    """A command set from tags of group 0000 (``0x00000100``: CommandField...)."""
    return bytes(encode_command(fields))


def c_echo_rq(message_id: int = 1) -> bytes:
    """A C-ECHO-RQ command set."""
    return command(
        {
            0x00000002: VERIFICATION_SOP_CLASS,
            0x00000100: 0x0030,
            0x00000110: message_id,
            0x00000800: 0x0101,
        }
    )


def c_store_rq(
    sop_class_uid: str, sop_instance_uid: str, message_id: int = 1, *, priority: int = 0
) -> bytes:
    """A C-STORE-RQ command set announcing a dataset."""
    return command(
        {
            0x00000002: sop_class_uid,
            0x00000100: 0x0001,
            0x00000110: message_id,
            0x00000700: priority,
            0x00000800: 0x0000,
            0x00001000: sop_instance_uid,
        }
    )


def c_find_rq(sop_class_uid: str, message_id: int = 1) -> bytes:
    """A C-FIND-RQ command set announcing an identifier."""
    return command(
        {
            0x00000002: sop_class_uid,
            0x00000100: 0x0020,
            0x00000110: message_id,
            0x00000700: 0,
            0x00000800: 0x0000,
        }
    )
