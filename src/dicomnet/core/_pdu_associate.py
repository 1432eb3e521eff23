"""Association PDUs of the pure codec: A-ASSOCIATE-RQ/AC/RJ, release, abort (PS3.8 9.3).

Part of the pure codec (:mod:`dicomnet.core._pdu_py` re-exports it). These
PDUs pass once per association, so clarity wins over speed here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from dicomnet.core._pdu_command import _byte_view, _check_range, _encode_text
from dicomnet.core._pdu_data import (
    _FIXED_BODY_LENGTH,
    _FIXED_LENGTH_PDUS,
    _PDU_HEADER,
    _PDU_NAMES,
    _PDV_HEADER,
    parse_pdata,
)
from dicomnet.core.pdu import (
    PDU,
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    PDataTF,
    PresentationContextAC,
    PresentationContextRQ,
    ReleaseRP,
    ReleaseRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomnet.errors import PDUError, UnrecognizedPDU

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["decode_pdu", "encode_pdu"]

_ITEM_HEADER: Final = struct.Struct(">BxH")
"""Item-type, reserved, Item-length of every item and sub-item (PS3.8 9.3.1)."""
_ASSOCIATE_FIXED: Final = struct.Struct(">H2x16s16s32x")
"""Protocol version, reserved, called AE, calling AE, reserved (PS3.8 Table 9-11)."""
_CONTEXT_HEADER: Final = struct.Struct(">BxBx")
"""Presentation context ID, reserved, result/reason (AC) or reserved, reserved."""
_RJ_BODY: Final = struct.Struct(">xBBB")
"""Reserved, result, source, reason (PS3.8 Table 9-21)."""
_ABORT_BODY: Final = struct.Struct(">xxBB")
"""Reserved, reserved, source, reason (PS3.8 Table 9-26)."""
_UINT16: Final = struct.Struct(">H")
_UINT32: Final = struct.Struct(">L")
_ASYNC_OPS: Final = struct.Struct(">HH")
_MAX_UID_LENGTH: Final = 64
_MAX_AE_LENGTH: Final = 16
_MAX_VERSION_NAME_LENGTH: Final = 16
_MAX_ITEM_LENGTH: Final = 0xFFFF


# -- association PDUs: encoding -----------------------------------------------------


def encode_pdu(pdu: PDU) -> bytes:
    """Encode any PDU value of :mod:`dicomnet.core.pdu` with its 6-byte header.

    Parameters
    ----------
    pdu : AssociateRQ, AssociateAC, AssociateRJ, PDataTF, ReleaseRQ, ReleaseRP or Abort
        The value to encode (PS3.8 9.3.2-9.3.8).

    Returns
    -------
    bytes
        The whole PDU.

    Raises
    ------
    ValueError
        An AE title longer than 16 bytes, a UID longer than 64 bytes, a
        version name longer than 16 bytes, text outside latin-1, an item longer
        than 65535 bytes, or a numeric field out of range.
    TypeError
        ``pdu`` is not a PDU value.
    """
    encoder = _PDU_ENCODERS.get(type(pdu))
    if encoder is None:
        raise TypeError(f"not a dicomnet.core.pdu PDU value: {type(pdu).__name__}")
    pdu_type, body = encoder(pdu)
    return _PDU_HEADER.pack(pdu_type, len(body)) + body


def _encode_uid(value: str, what: str) -> bytes:
    raw = _encode_text(value, what)
    if len(raw) > _MAX_UID_LENGTH:
        raise ValueError(f"{what} of {len(raw)} bytes exceeds 64: {value!r}")
    return raw


def _encode_ae(value: str, what: str) -> bytes:
    raw = _encode_text(value, what)
    if len(raw) > _MAX_AE_LENGTH:
        raise ValueError(f"{what} of {len(raw)} bytes exceeds 16: {value!r}")
    return raw.ljust(_MAX_AE_LENGTH, b" ")


def _item(item_type: int, value: bytes) -> bytes:
    if len(value) > _MAX_ITEM_LENGTH:
        raise ValueError(f"item {item_type:02X}H of {len(value)} bytes exceeds 65535")
    return _ITEM_HEADER.pack(item_type, len(value)) + value


def _with_length(value: bytes, what: str) -> bytes:
    """A 2-byte length followed by ``value`` (PS3.7 D.3.3 sub-item fields)."""
    if len(value) > _MAX_ITEM_LENGTH:
        raise ValueError(f"{what} of {len(value)} bytes exceeds 65535")
    return _UINT16.pack(len(value)) + value


def _encode_associate(pdu: AssociateRQ | AssociateAC, contexts: list[bytes]) -> bytes:
    fixed = _ASSOCIATE_FIXED.pack(
        _check_range(pdu.protocol_version, 0xFFFF, "protocol version"),
        _encode_ae(pdu.called_ae_title, "called AE title"),
        _encode_ae(pdu.calling_ae_title, "calling AE title"),
    )
    application_context = _item(0x10, _encode_uid(pdu.application_context, "application context"))
    user_information = _item(0x50, _encode_user_information(pdu.user_information))
    return b"".join((fixed, application_context, *contexts, user_information))


def _encode_associate_rq(pdu: AssociateRQ) -> tuple[int, bytes]:
    contexts = [
        _item(
            0x20,
            _CONTEXT_HEADER.pack(_check_range(pc.context_id, 0xFF, "context ID"), 0)
            + _item(0x30, _encode_uid(pc.abstract_syntax, "abstract syntax"))
            + b"".join(
                _item(0x40, _encode_uid(ts, "transfer syntax")) for ts in pc.transfer_syntaxes
            ),
        )
        for pc in pdu.presentation_contexts
    ]
    return 0x01, _encode_associate(pdu, contexts)


def _encode_associate_ac(pdu: AssociateAC) -> tuple[int, bytes]:
    contexts = [
        _item(
            0x21,
            _CONTEXT_HEADER.pack(
                _check_range(pc.context_id, 0xFF, "context ID"),
                _check_range(pc.result, 0xFF, "presentation context result"),
            )
            + _item(0x40, _encode_uid(pc.transfer_syntax, "transfer syntax")),
        )
        for pc in pdu.presentation_contexts
    ]
    return 0x02, _encode_associate(pdu, contexts)


def _encode_user_information(info: UserInformation) -> bytes:
    """The sub-items of a User Information item, in order of item type (PS3.7 D.3.3)."""
    parts: list[bytes] = []
    for item_type, name, absent, encode, _ in _USER_SUB_ITEMS:
        value = getattr(info, name)
        if value == absent:
            continue
        for one in value if isinstance(absent, tuple) else (value,):
            parts.append(_item(item_type, encode(one)))
    return b"".join(parts)


def _encode_max_length(value: int) -> bytes:
    return _UINT32.pack(_check_range(value, 0xFFFFFFFF, "maximum length"))


def _encode_implementation_uid(value: str) -> bytes:
    return _encode_uid(value, "implementation class UID")


def _encode_async_ops(window: AsyncOpsWindow) -> bytes:
    return _ASYNC_OPS.pack(
        _check_range(window.max_operations_invoked, 0xFFFF, "max operations invoked"),
        _check_range(window.max_operations_performed, 0xFFFF, "max operations performed"),
    )


def _encode_role_selection(role: RoleSelection) -> bytes:
    uid = _encode_uid(role.sop_class_uid, "role selection SOP class UID")
    return _with_length(uid, "UID") + bytes((int(role.scu_role), int(role.scp_role)))


def _encode_version_name(name: str) -> bytes:
    raw = _encode_text(name, "implementation version name")
    if len(raw) > _MAX_VERSION_NAME_LENGTH:
        raise ValueError(f"implementation version name of {len(raw)} bytes exceeds 16")
    return raw


def _encode_extended(extended: SOPClassExtendedNegotiation) -> bytes:
    uid = _encode_uid(extended.sop_class_uid, "extended negotiation SOP class UID")
    return _with_length(uid, "UID") + bytes(extended.application_info)


def _encode_user_identity_rq(identity: UserIdentityRQ) -> bytes:
    head = bytes(
        (
            _check_range(identity.identity_type, 0xFF, "user identity type"),
            int(identity.positive_response_requested),
        )
    )
    primary = _with_length(bytes(identity.primary_field), "user identity primary field")
    return head + primary + _with_length(bytes(identity.secondary_field), "secondary field")


def _encode_user_identity_ac(identity: UserIdentityAC) -> bytes:
    return _with_length(bytes(identity.server_response), "user identity server response")


def _encode_common_extended(common: SOPClassCommonExtendedNegotiation) -> bytes:
    """SOP Class Common Extended Negotiation fields (PS3.7 Table D.3-12, D.3-13)."""
    related = b"".join(
        _with_length(_encode_uid(uid, "related general SOP class UID"), "UID")
        for uid in common.related_general_sop_classes
    )
    return (
        _with_length(_encode_uid(common.sop_class_uid, "common extended SOP class UID"), "UID")
        + _with_length(_encode_uid(common.service_class_uid, "service class UID"), "UID")
        + _with_length(related, "related general SOP class identification")
    )


def _encode_associate_rj(pdu: AssociateRJ) -> tuple[int, bytes]:
    return 0x03, _RJ_BODY.pack(
        _check_range(pdu.result, 0xFF, "reject result"),
        _check_range(pdu.source, 0xFF, "reject source"),
        _check_range(pdu.reason, 0xFF, "reject reason"),
    )


def _encode_pdata(pdu: PDataTF) -> tuple[int, bytes]:
    parts: list[bytes] = []
    for context_id, control, fragment in pdu.pdvs:
        data = bytes(fragment)
        parts.append(
            _PDV_HEADER.pack(
                _check_range(len(data) + 2, 0xFFFFFFFF, "PDV item-length"),
                _check_range(context_id, 0xFF, "context ID"),
                _check_range(control, 0xFF, "message control header"),
            )
        )
        parts.append(data)
    return 0x04, b"".join(parts)


def _encode_release_rq(pdu: ReleaseRQ) -> tuple[int, bytes]:
    return 0x05, bytes(4)


def _encode_release_rp(pdu: ReleaseRP) -> tuple[int, bytes]:
    return 0x06, bytes(4)


def _encode_abort(pdu: Abort) -> tuple[int, bytes]:
    return 0x07, _ABORT_BODY.pack(
        _check_range(pdu.source, 0xFF, "abort source"),
        _check_range(pdu.reason, 0xFF, "abort reason"),
    )


_PDU_ENCODERS: Final[Mapping[type, Callable[[Any], tuple[int, bytes]]]] = {
    AssociateRQ: _encode_associate_rq,
    AssociateAC: _encode_associate_ac,
    AssociateRJ: _encode_associate_rj,
    PDataTF: _encode_pdata,
    ReleaseRQ: _encode_release_rq,
    ReleaseRP: _encode_release_rp,
    Abort: _encode_abort,
}


# -- association PDUs: decoding -------------------------------------------------------


def decode_pdu(pdu_type: int, body: ReadableBuffer) -> PDU:
    """Decode the body of a PDU into its value type (PS3.8 9.3).

    Decoding is linear in the body length and trusts no length: every item
    length is checked against what remains of its parent first. Unknown item
    and sub-item types are skipped by their length (PS3.8 9.3.1); reserved
    fields are not tested. Text decodes as latin-1; UIDs lose one trailing NUL
    or space, AE titles their leading and trailing spaces.

    Parameters
    ----------
    pdu_type : int
        The PDU type, 01H-07H.
    body : bytes-like
        The bytes after the 6-byte PDU header.

    Returns
    -------
    PDU
        An ``AssociateRQ``, ``AssociateAC``, ``AssociateRJ``, ``PDataTF``,
        ``ReleaseRQ``, ``ReleaseRP`` or ``Abort``. A presentation context
        without an abstract syntax sub-item decodes with an empty
        ``abstract_syntax``, an AC context without a transfer syntax sub-item
        with an empty ``transfer_syntax``, and a missing application context
        item as an empty ``application_context``: the negotiation layer
        rejects these.

    Raises
    ------
    UnrecognizedPDU
        ``pdu_type`` outside 01H-07H.
    PDUError
        A malformed body: a fixed part too short, an item overrunning its
        parent, sub-item fields that do not sum to the sub-item length, a
        Maximum Length or Asynchronous Operations Window sub-item whose length
        is not 4, a second copy of an item that may appear once, a fixed-size
        PDU whose body is not 4 bytes.
    """
    decoder = _PDU_DECODERS.get(pdu_type)
    if decoder is None:
        raise UnrecognizedPDU(f"unrecognized PDU type {pdu_type:02X}H (PS3.8 9.3)")
    view = _byte_view(body)
    if pdu_type in _FIXED_LENGTH_PDUS and len(view) != _FIXED_BODY_LENGTH:
        raise PDUError(f"{_PDU_NAMES[pdu_type]} body of {len(view)} bytes, PS3.8 fixes it at 4")
    return decoder(view)


def _uid(value: memoryview) -> str:
    """A UID from an item: latin-1, one trailing NUL or space dropped."""
    text = str(value, "latin-1")
    if text[-1:] in ("\0", " "):
        return text[:-1]
    return text


def _iter_items(data: memoryview, parent: str) -> Iterator[tuple[int, memoryview]]:
    """Walk the items of ``data``, checking each length against what remains."""
    offset = 0
    size = len(data)
    while offset < size:
        if size - offset < 4:
            raise PDUError(f"{size - offset} stray bytes at the end of {parent}")
        item_type, length = _ITEM_HEADER.unpack_from(data, offset)
        offset += 4
        if length > size - offset:
            raise PDUError(
                f"item {item_type:02X}H in {parent} declares {length} bytes "
                f"but {size - offset} remain"
            )
        yield item_type, data[offset : offset + length]
        offset += length


def _split_length_prefixed(data: memoryview, offset: int, what: str) -> tuple[memoryview, int]:
    """A field with a 2-byte length prefix at ``offset``; returns it and the next offset."""
    if len(data) - offset < 2:
        raise PDUError(f"{what}: no room for its 2-byte length")
    length = _UINT16.unpack_from(data, offset)[0]
    start = offset + 2
    if length > len(data) - start:
        raise PDUError(f"{what} of {length} bytes overruns its item ({len(data) - start} remain)")
    return data[start : start + length], start + length


def _decode_associate(
    body: memoryview, name: str, context_type: int, decode_context: Callable[[memoryview], Any]
) -> dict[str, Any]:
    """The fields shared by A-ASSOCIATE-RQ and -AC (PS3.8 9.3.2, 9.3.3)."""
    if len(body) < _ASSOCIATE_FIXED.size:
        raise PDUError(f"{name} body of {len(body)} bytes, shorter than its 68-byte fixed part")
    version, called, calling = _ASSOCIATE_FIXED.unpack_from(body)
    application_context: str | None = None
    user_information: UserInformation | None = None
    contexts = []
    for item_type, value in _iter_items(body[_ASSOCIATE_FIXED.size :], name):
        if item_type == context_type:
            contexts.append(decode_context(value))
        elif item_type == 0x10:
            if application_context is not None:
                raise PDUError(f"{name} with more than one application context item")
            application_context = _uid(value)
        elif item_type == 0x50:
            if user_information is not None:
                raise PDUError(f"{name} with more than one user information item")
            user_information = _decode_user_information(value)
    return {
        "called_ae_title": called.decode("latin-1").strip(" \x00"),
        "calling_ae_title": calling.decode("latin-1").strip(" \x00"),
        "presentation_contexts": tuple(contexts),
        "user_information": user_information or UserInformation(),
        "application_context": application_context or "",
        "protocol_version": version,
    }


def _decode_context_rq(value: memoryview) -> PresentationContextRQ:
    """Presentation context item of an A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""
    if len(value) < 4:
        raise PDUError(f"presentation context item of {len(value)} bytes, shorter than 4")
    context_id = value[0]
    where = f"presentation context {context_id}"
    abstract_syntax: str | None = None
    transfer_syntaxes: list[str] = []
    for item_type, sub in _iter_items(value[4:], where):
        if item_type == 0x40:
            transfer_syntaxes.append(_uid(sub))
        elif item_type == 0x30:
            if abstract_syntax is not None:
                raise PDUError(f"{where} with more than one abstract syntax sub-item")
            abstract_syntax = _uid(sub)
    return PresentationContextRQ(context_id, abstract_syntax or "", tuple(transfer_syntaxes))


def _decode_context_ac(value: memoryview) -> PresentationContextAC:
    """Presentation context item of an A-ASSOCIATE-AC (PS3.8 9.3.3.2)."""
    if len(value) < 4:
        raise PDUError(f"presentation context item of {len(value)} bytes, shorter than 4")
    context_id, result = _CONTEXT_HEADER.unpack_from(value)
    where = f"presentation context {context_id}"
    transfer_syntax: str | None = None
    for item_type, sub in _iter_items(value[4:], where):
        if item_type == 0x40:
            if transfer_syntax is not None:
                raise PDUError(f"{where} of an A-ASSOCIATE-AC with more than one transfer syntax")
            transfer_syntax = _uid(sub)
    return PresentationContextAC(context_id, result, transfer_syntax or "")


def _decode_max_length(value: memoryview) -> int:
    """Maximum Length sub-item (PS3.8 D.1)."""
    if len(value) != 4:
        raise PDUError(f"maximum length sub-item of {len(value)} bytes, PS3.8 D.1 fixes it at 4")
    return int(_UINT32.unpack_from(value)[0])


def _decode_async_ops(value: memoryview) -> AsyncOpsWindow:
    """Asynchronous Operations Window sub-item (PS3.7 D.3.3.3)."""
    if len(value) != 4:
        raise PDUError(f"asynchronous operations window sub-item of {len(value)} bytes, not 4")
    invoked, performed = _ASYNC_OPS.unpack_from(value)
    return AsyncOpsWindow(invoked, performed)


def _decode_role_selection(value: memoryview) -> RoleSelection:
    """SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4)."""
    uid, offset = _split_length_prefixed(value, 0, "role selection UID")
    if len(value) - offset != 2:
        raise PDUError(
            f"role selection sub-item of {len(value)} bytes does not match its UID of {len(uid)}"
        )
    return RoleSelection(_uid(uid), value[offset] != 0, value[offset + 1] != 0)


def _decode_version_name(value: memoryview) -> str:
    """Implementation Version Name sub-item (PS3.7 D.3.3.2)."""
    return str(value, "latin-1")


def _decode_extended(value: memoryview) -> SOPClassExtendedNegotiation:
    """SOP Class Extended Negotiation sub-item (PS3.7 D.3.3.5)."""
    uid, offset = _split_length_prefixed(value, 0, "extended negotiation SOP class UID")
    return SOPClassExtendedNegotiation(_uid(uid), bytes(value[offset:]))


def _decode_common_extended(value: memoryview) -> SOPClassCommonExtendedNegotiation:
    """SOP Class Common Extended Negotiation sub-item (PS3.7 D.3.3.6).

    Bytes after the related general SOP class identification are reserved
    (PS3.7 Table D.3-12) and skipped.
    """
    sop_class, offset = _split_length_prefixed(value, 0, "common extended SOP class UID")
    service_class, offset = _split_length_prefixed(value, offset, "service class UID")
    related_field, _ = _split_length_prefixed(
        value, offset, "related general SOP class identification"
    )
    related: list[str] = []
    offset = 0
    while offset < len(related_field):
        uid, offset = _split_length_prefixed(related_field, offset, "related general SOP class UID")
        related.append(_uid(uid))
    return SOPClassCommonExtendedNegotiation(_uid(sop_class), _uid(service_class), tuple(related))


def _decode_user_identity_rq(value: memoryview) -> UserIdentityRQ:
    """User Identity Negotiation sub-item, request (PS3.7 D.3.3.7.1)."""
    if len(value) < 4:
        raise PDUError(f"user identity sub-item of {len(value)} bytes, shorter than 4")
    identity_type, positive = value[0], value[1]
    primary, offset = _split_length_prefixed(value, 2, "user identity primary field")
    secondary, offset = _split_length_prefixed(value, offset, "user identity secondary field")
    if offset != len(value):
        raise PDUError(f"user identity sub-item has {len(value) - offset} bytes past its fields")
    return UserIdentityRQ(identity_type, positive != 0, bytes(primary), bytes(secondary))


def _decode_user_identity_ac(value: memoryview) -> UserIdentityAC:
    """User Identity Negotiation sub-item, accept (PS3.7 D.3.3.7.2)."""
    response, offset = _split_length_prefixed(value, 0, "user identity server response")
    if offset != len(value):
        raise PDUError(f"user identity response has {len(value) - offset} bytes past its field")
    return UserIdentityAC(bytes(response))


_USER_SUB_ITEMS: Final[
    tuple[tuple[int, str, object, Callable[[Any], bytes], Callable[[memoryview], Any]], ...]
] = (
    # (sub-item type, UserInformation field, value when absent, encoder, decoder), PS3.7 D.3.3;
    # a field whose absent value is () holds a tuple of repeated sub-items.
    (0x51, "max_length", None, _encode_max_length, _decode_max_length),
    (0x52, "implementation_class_uid", "", _encode_implementation_uid, _uid),
    (0x53, "async_ops_window", None, _encode_async_ops, _decode_async_ops),
    (0x54, "role_selections", (), _encode_role_selection, _decode_role_selection),
    (0x55, "implementation_version_name", None, _encode_version_name, _decode_version_name),
    (0x56, "sop_class_extended", (), _encode_extended, _decode_extended),
    (0x57, "sop_class_common_extended", (), _encode_common_extended, _decode_common_extended),
    (0x58, "user_identity", None, _encode_user_identity_rq, _decode_user_identity_rq),
    (0x59, "user_identity_ac", None, _encode_user_identity_ac, _decode_user_identity_ac),
)
"""The User Information sub-items and the field of :class:`UserInformation` each fills."""

_USER_SUB_ITEM_DECODERS: Final[Mapping[int, tuple[str, bool, Callable[[memoryview], Any]]]] = {
    item_type: (name, absent == (), decode)
    for item_type, name, absent, _, decode in _USER_SUB_ITEMS
}


def _decode_user_information(value: memoryview) -> UserInformation:
    """User Information item (PS3.8 9.3.2.3); unknown sub-items are skipped."""
    fields: dict[str, Any] = {}
    repeated: dict[str, list[Any]] = {}
    for item_type, sub in _iter_items(value, "the user information item"):
        entry = _USER_SUB_ITEM_DECODERS.get(item_type)
        if entry is None:
            continue
        name, repeats, decode = entry
        if repeats:
            repeated.setdefault(name, []).append(decode(sub))
        elif name in fields:
            raise PDUError(f"user information with more than one sub-item {item_type:02X}H")
        else:
            fields[name] = decode(sub)
    for name, values in repeated.items():
        fields[name] = tuple(values)
    return UserInformation(**fields)


def _decode_associate_rq(body: memoryview) -> AssociateRQ:
    return AssociateRQ(**_decode_associate(body, "A-ASSOCIATE-RQ", 0x20, _decode_context_rq))


def _decode_associate_ac(body: memoryview) -> AssociateAC:
    return AssociateAC(**_decode_associate(body, "A-ASSOCIATE-AC", 0x21, _decode_context_ac))


def _decode_associate_rj(body: memoryview) -> AssociateRJ:
    result, source, reason = _RJ_BODY.unpack_from(body)
    return AssociateRJ(result, source, reason)


def _decode_pdata(body: memoryview) -> PDataTF:
    return PDataTF(tuple((c, h, bytes(f)) for c, h, f in parse_pdata(body)))


def _decode_release_rq(body: memoryview) -> ReleaseRQ:
    return ReleaseRQ()


def _decode_release_rp(body: memoryview) -> ReleaseRP:
    return ReleaseRP()


def _decode_abort(body: memoryview) -> Abort:
    source, reason = _ABORT_BODY.unpack_from(body)
    return Abort(source, reason)


_PDU_DECODERS: Final[Mapping[int, Callable[[memoryview], PDU]]] = {
    0x01: _decode_associate_rq,
    0x02: _decode_associate_ac,
    0x03: _decode_associate_rj,
    0x04: _decode_pdata,
    0x05: _decode_release_rq,
    0x06: _decode_release_rp,
    0x07: _decode_abort,
}
