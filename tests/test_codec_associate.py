"""Association PDUs and their items (PS3.8 9.3.2-9.3.8, PS3.7 Annex D.3.3).

Expected bytes are written out by hand from the field tables of the standard,
each field annotated, so an encoder and a decoder that agree with each other
but not with PS3.8 cannot pass.
"""

from __future__ import annotations

import time
from types import ModuleType

import pytest

from dicomnet.core.pdu import (
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

VERIFICATION = "1.2.840.10008.1.1"  # 17 bytes
IMPLICIT_LE = "1.2.840.10008.1.2"  # 17 bytes

FIXED_PART = b"".join(
    [
        b"\x00\x01",  # protocol version 1
        b"\x00\x00",  # reserved
        b"ANY-SCP         ",  # called AE title, 16 bytes, space padded
        b"ECHOSCU         ",  # calling AE title
        bytes(32),  # reserved
    ]
)
APPLICATION_CONTEXT_ITEM = bytes.fromhex("10 00 0015") + b"1.2.840.10008.3.1.1.1"  # 21 bytes

RQ_VALUE = AssociateRQ(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(PresentationContextRQ(1, VERIFICATION, (IMPLICIT_LE,)),),
    user_information=UserInformation(max_length=16384, implementation_class_uid="1.2.3.4"),
)
RQ_BYTES = b"".join(
    [
        bytes.fromhex("01 00 000000a6"),  # A-ASSOCIATE-RQ, length 166 = 68 + 25 + 50 + 23
        FIXED_PART,
        APPLICATION_CONTEXT_ITEM,
        bytes.fromhex("20 00 002e"),  # presentation context item, length 46
        bytes.fromhex("01 00 00 00"),  # context ID 1, three reserved bytes
        bytes.fromhex("30 00 0011") + b"1.2.840.10008.1.1",  # abstract syntax sub-item
        bytes.fromhex("40 00 0011") + b"1.2.840.10008.1.2",  # transfer syntax sub-item
        bytes.fromhex("50 00 0013"),  # user information item, length 19
        bytes.fromhex("51 00 0004 00004000"),  # maximum length 16384
        bytes.fromhex("52 00 0007") + b"1.2.3.4",  # implementation class UID
    ]
)

AC_VALUE = AssociateAC(
    called_ae_title="ANY-SCP",
    calling_ae_title="ECHOSCU",
    presentation_contexts=(
        PresentationContextAC(1, 0, IMPLICIT_LE),
        PresentationContextAC(3, 3, ""),
    ),
    user_information=UserInformation(
        max_length=0, implementation_class_uid="1.2.3.4", implementation_version_name="DN1"
    ),
)
AC_BYTES = b"".join(
    [
        bytes.fromhex("02 00 000000a4"),  # A-ASSOCIATE-AC, length 164 = 68 + 25 + 29 + 12 + 30
        FIXED_PART,
        APPLICATION_CONTEXT_ITEM,
        bytes.fromhex("21 00 0019"),  # presentation context item (AC), length 25
        bytes.fromhex("01 00 00 00"),  # context ID 1, reserved, result 0 acceptance, reserved
        bytes.fromhex("40 00 0011") + b"1.2.840.10008.1.2",  # transfer syntax sub-item
        bytes.fromhex("21 00 0008"),  # presentation context item (AC), length 8
        bytes.fromhex("03 00 03 00"),  # context ID 3, result 3 abstract syntax not supported
        bytes.fromhex("40 00 0000"),  # transfer syntax sub-item, empty: not significant
        bytes.fromhex("50 00 001a"),  # user information item, length 26
        bytes.fromhex("51 00 0004 00000000"),  # maximum length 0, unlimited
        bytes.fromhex("52 00 0007") + b"1.2.3.4",  # implementation class UID
        bytes.fromhex("55 00 0003") + b"DN1",  # implementation version name
    ]
)

FIXED_VECTORS = [
    # (value, bytes): PS3.8 Tables 9-21, 9-24, 9-25, 9-26
    (AssociateRJ(1, 1, 7), bytes.fromhex("03 00 00000004 00 01 01 07")),
    (AssociateRJ(2, 3, 2), bytes.fromhex("03 00 00000004 00 02 03 02")),
    (ReleaseRQ(), bytes.fromhex("05 00 00000004 00000000")),
    (ReleaseRP(), bytes.fromhex("06 00 00000004 00000000")),
    (Abort(0, 0), bytes.fromhex("07 00 00000004 00 00 00 00")),
    (Abort(2, 6), bytes.fromhex("07 00 00000004 00 00 02 06")),
    (
        PDataTF(((1, 0x03, b"\x01\x02"), (3, 0x00, b""))),
        bytes.fromhex(
            "04 00 0000000e"  # P-DATA-TF, length 14
            "00000004 01 03 0102"  # PDV length 4, context 1, last command fragment
            "00000002 03 00"  # PDV length 2, context 3, dataset fragment, empty
        ),
    ),
]

SUB_ITEM_VECTORS = [
    # (UserInformation, the User Information item it encodes to), PS3.7 D.3.3
    (UserInformation(max_length=16384), "50 00 0008 | 51 00 0004 00004000"),
    (UserInformation(implementation_class_uid="1.2.3"), "50 00 0009 | 52 00 0005 312e322e33"),
    (UserInformation(async_ops_window=AsyncOpsWindow(5, 1)), "50 00 0008 | 53 00 0004 0005 0001"),
    (
        UserInformation(role_selections=(RoleSelection("1.2.3", True, False),)),
        "50 00 000d | 54 00 0009 0005 312e322e33 01 00",  # UID length, UID, SCU role, SCP role
    ),
    (UserInformation(implementation_version_name="DN1"), "50 00 0007 | 55 00 0003 444e31"),
    (
        UserInformation(
            sop_class_extended=(SOPClassExtendedNegotiation("1.2.3", b"\x01\x02\x03"),)
        ),
        "50 00 000e | 56 00 000a 0005 312e322e33 010203",  # UID length, UID, application info
    ),
    (
        UserInformation(
            sop_class_common_extended=(
                SOPClassCommonExtendedNegotiation("1.2.3", "1.2.4", ("1.2.5", "1.2.66")),
            )
        ),
        "50 00 0023 | 57 00 001f"  # sub-item version 0, length 31
        " 0005 312e322e33"  # SOP class UID
        " 0005 312e322e34"  # service class UID
        " 000f 0005 312e322e35 0006 312e322e3636",  # related general SOP classes, 15 bytes
    ),
    (
        UserInformation(user_identity=UserIdentityRQ(2, True, b"user", b"pass")),
        "50 00 0012 | 58 00 000e 02 01 0004 75736572 0004 70617373",
    ),
    (
        UserInformation(user_identity=UserIdentityRQ(1, False, b"user")),
        "50 00 000e | 58 00 000a 01 00 0004 75736572 0000",  # empty secondary field
    ),
    (
        UserInformation(user_identity_ac=UserIdentityAC(b"ok")),
        "50 00 0008 | 59 00 0004 0002 6f6b",
    ),
    (UserInformation(), "50 00 0000"),
]


def rq_body(items: bytes) -> bytes:
    """An A-ASSOCIATE-RQ body: the 68-byte fixed part and ``items``."""
    return FIXED_PART + items


def user_information_item(codec: ModuleType, info: UserInformation) -> bytes:
    """The User Information item of an RQ with no presentation context."""
    encoded = codec.encode_pdu(AssociateRQ("ANY-SCP", "ECHOSCU", (), info))
    prefix = 6 + len(FIXED_PART) + len(APPLICATION_CONTEXT_ITEM)
    return bytes(encoded[prefix:])


# -- byte-exact vectors -----------------------------------------------------------------


def test_associate_rq_vector(codec: ModuleType) -> None:
    assert codec.encode_pdu(RQ_VALUE) == RQ_BYTES
    assert codec.decode_pdu(0x01, RQ_BYTES[6:]) == RQ_VALUE


def test_associate_ac_vector(codec: ModuleType) -> None:
    assert codec.encode_pdu(AC_VALUE) == AC_BYTES
    assert codec.decode_pdu(0x02, AC_BYTES[6:]) == AC_VALUE


@pytest.mark.parametrize(("value", "expected"), FIXED_VECTORS)
def test_fixed_pdu_vectors(codec: ModuleType, value: object, expected: bytes) -> None:
    assert codec.encode_pdu(value) == expected
    assert codec.decode_pdu(expected[0], expected[6:]) == value


@pytest.mark.parametrize(("info", "expected"), SUB_ITEM_VECTORS)
def test_user_information_sub_item_vectors(
    codec: ModuleType, info: UserInformation, expected: str
) -> None:
    raw = bytes.fromhex(expected.replace("|", ""))
    assert user_information_item(codec, info) == raw
    decoded = codec.decode_pdu(0x01, rq_body(APPLICATION_CONTEXT_ITEM + raw))
    assert decoded.user_information == info


def test_user_information_sub_items_in_type_order(codec: ModuleType) -> None:
    info = UserInformation(
        max_length=1,
        implementation_class_uid="1.2",
        implementation_version_name="V",
        async_ops_window=AsyncOpsWindow(0, 0),
        role_selections=(RoleSelection("1.2", True, True), RoleSelection("1.3", False, True)),
        sop_class_extended=(SOPClassExtendedNegotiation("1.2", b""),),
        sop_class_common_extended=(SOPClassCommonExtendedNegotiation("1.2", "1.3"),),
        user_identity=UserIdentityRQ(1, False, b"x"),
        user_identity_ac=UserIdentityAC(b""),
    )
    item = user_information_item(codec, info)
    types, offset = [], 4
    while offset < len(item):
        types.append(item[offset])
        offset += 4 + int.from_bytes(item[offset + 2 : offset + 4], "big")
    assert types == [0x51, 0x52, 0x53, 0x54, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59]


# -- round trips -------------------------------------------------------------------------

FULL_USER_INFORMATION = UserInformation(
    max_length=0xFFFFFFFF,
    implementation_class_uid="1.2.826.0.1.3680043.9.7433.1",
    implementation_version_name="DICOMNET_010",
    async_ops_window=AsyncOpsWindow(0, 65535),
    role_selections=(
        RoleSelection("1.2.840.10008.5.1.4.1.1.2", True, True),
        RoleSelection("1.2.840.10008.5.1.4.1.1.4", False, True),
    ),
    sop_class_extended=(
        SOPClassExtendedNegotiation("1.2.840.10008.5.1.4.1.2.2.1", b"\x01\x00\x01"),
    ),
    sop_class_common_extended=(
        SOPClassCommonExtendedNegotiation("1.2.840.10008.5.1.4.1.1.88.40", "1.2.840.10008.4.2", ()),
        SOPClassCommonExtendedNegotiation(
            "1.2.840.10008.5.1.4.1.1.88.40", "1.2.840.10008.4.2", ("1.2.840.10008.5.1.4.1.1.88.22",)
        ),
    ),
    user_identity=UserIdentityRQ(5, True, b"x" * 65000, b""),
    user_identity_ac=UserIdentityAC(b"\x00\xff" * 100),
)

ROUND_TRIPS = [
    RQ_VALUE,
    AC_VALUE,
    AssociateRQ("A", "B", (), FULL_USER_INFORMATION, protocol_version=0xFFFF),
    AssociateRQ(
        "Q" * 16,
        "",
        tuple(
            PresentationContextRQ(
                i, f"1.2.840.10008.5.1.4.1.1.{i}", (IMPLICIT_LE, "1.2.840.10008.1.2.1")
            )
            for i in range(1, 256, 2)
        ),
        application_context="1.2.3",
    ),
    AssociateAC("X", "Y", (PresentationContextAC(255, 4),), FULL_USER_INFORMATION),
    *[value for value, _ in FIXED_VECTORS],
    PDataTF(((1, 0x02, bytes(range(256)) * 100),)),
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_round_trip(codec: ModuleType, value: object) -> None:
    encoded = codec.encode_pdu(value)
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(encoded)
    pdu_type, body = reader.next_pdu()
    assert len(body) == len(encoded) - 6
    assert codec.decode_pdu(pdu_type, body) == value


# -- decoding is lenient where PS3.8 says so -----------------------------------------------


def test_unknown_items_and_sub_items_are_skipped(codec: ModuleType) -> None:
    items = (
        b"\x60\x00\x00\x03abc"  # unknown item
        + RQ_BYTES[6 + 68 :]
        + b"\xee\x00\x00\x00"  # unknown empty item
    )
    items = items.replace(
        b"\x50\x00\x00\x13",  # user information gains two unknown sub-items, 4 + 5 bytes
        b"\x50\x00\x00\x1c\x5a\x00\x00\x00\xff\x00\x00\x01z",
    )
    items = items.replace(
        b"\x20\x00\x00\x2e\x01\x00\x00\x00",  # presentation context gains a sub-item 35H
        b"\x20\x00\x00\x34\x01\x00\x00\x00\x35\x00\x00\x02zz",
    )
    assert codec.decode_pdu(0x01, rq_body(items)) == RQ_VALUE


def test_reserved_fields_are_not_tested(codec: ModuleType) -> None:
    body = bytearray(RQ_BYTES[6:])
    assert body[68:70] == b"\x10\x00"  # application context item: type, reserved
    assert body[93:98] == b"\x20\x00\x00\x2e\x01"  # presentation context: ..., context ID
    assert body[98:101] == b"\x00\x00\x00"  # three reserved bytes after the ID
    assert body[101:103] == b"\x30\x00"  # abstract syntax sub-item
    assert body[122:124] == b"\x40\x00"  # transfer syntax sub-item
    assert body[143:145] == b"\x50\x00"  # user information item
    assert body[147:149] == b"\x51\x00"  # maximum length sub-item
    body[2:4] = b"\xff\xff"  # reserved after the protocol version
    body[36:68] = b"\xff" * 32  # reserved after the AE titles
    for offset in (69, 94, 98, 99, 100, 102, 123, 144, 148):
        body[offset] = 0xFF
    assert codec.decode_pdu(0x01, bytes(body)) == RQ_VALUE


def test_rq_without_presentation_contexts(codec: ModuleType) -> None:
    decoded = codec.decode_pdu(0x01, rq_body(APPLICATION_CONTEXT_ITEM))
    assert decoded.presentation_contexts == ()
    assert decoded.user_information == UserInformation()


def test_missing_items_decode_empty(codec: ModuleType) -> None:
    decoded = codec.decode_pdu(0x01, rq_body(b"\x20\x00\x00\x04\x01\x00\x00\x00"))
    assert decoded.application_context == ""
    assert decoded.presentation_contexts == (PresentationContextRQ(1, "", ()),)
    ac = codec.decode_pdu(0x02, rq_body(b"\x21\x00\x00\x04\x05\x00\x02\x00"))
    assert ac.presentation_contexts == (PresentationContextAC(5, 2, ""),)


def test_uid_loses_one_trailing_nul_or_space(codec: ModuleType) -> None:
    for raw, expected in [
        (b"1.2\x00", "1.2"),
        (b"1.2 ", "1.2"),
        (b"1.2\x00\x00", "1.2\x00"),
        (b"1.2", "1.2"),
        (b"", ""),
    ]:
        item = bytes((0x10, 0, 0, len(raw))) + raw
        assert codec.decode_pdu(0x01, rq_body(item)).application_context == expected


def test_ae_titles_are_stripped_and_opaque(codec: ModuleType) -> None:
    body = bytearray(rq_body(b""))
    # called AE: spaces, a NUL inside, bytes above 7FH, then padding of spaces and
    # NULs, which is stripped as DCMTK strips it (tests/test_ae_titles.py)
    body[4:20] = b"  AB\x00CD  \xe9\xff \x00   "
    body[20:36] = b" " * 16
    decoded = codec.decode_pdu(0x01, bytes(body))
    assert decoded.called_ae_title == "AB\x00CD  \xe9\xff"
    assert decoded.calling_ae_title == ""


def test_role_bytes_other_than_one_mean_true(codec: ModuleType) -> None:
    item = b"\x50\x00\x00\x0b" + b"\x54\x00\x00\x07\x00\x03" + b"1.2" + b"\x02\x00"
    info = codec.decode_pdu(0x01, rq_body(item)).user_information
    assert info.role_selections == (RoleSelection("1.2", True, False),)


def test_common_extended_reserved_tail_is_skipped(codec: ModuleType) -> None:
    sub = b"\x00\x03" + b"1.2" + b"\x00\x03" + b"1.3" + b"\x00\x00" + b"\xaa\xbb"
    item = b"\x50\x00\x00" + bytes((len(sub) + 4,)) + b"\x57\x00\x00" + bytes((len(sub),)) + sub
    info = codec.decode_pdu(0x01, rq_body(item)).user_information
    assert info.sop_class_common_extended == (SOPClassCommonExtendedNegotiation("1.2", "1.3"),)


def test_large_rq_decodes_in_linear_time(codec: ModuleType) -> None:
    syntaxes = tuple(f"1.2.840.10008.1.2.4.{i}" for i in range(64))
    value = AssociateRQ(
        "A",
        "B",
        tuple(
            PresentationContextRQ(i, f"1.2.840.10008.5.1.4.1.1.{i}", syntaxes)
            for i in range(1, 256, 2)
        ),
    )
    encoded = codec.encode_pdu(value)
    assert len(encoded) > 200_000
    started = time.perf_counter()
    decoded = codec.decode_pdu(0x01, encoded[6:])
    elapsed = time.perf_counter() - started
    assert decoded == value
    assert elapsed < 2.0  # about 30 ms in pure Python; the bound only catches quadratic work


def test_many_sub_items_decode_in_linear_time(codec: ModuleType) -> None:
    role = bytes.fromhex("54 00 0005 0001 31 01 00")  # role selection for UID "1", SCU only
    count = 0xFFFF // len(role)
    item = bytes.fromhex("50 00") + (count * len(role)).to_bytes(2, "big") + role * count
    started = time.perf_counter()
    info = codec.decode_pdu(0x01, rq_body(item)).user_information
    elapsed = time.perf_counter() - started
    assert info.role_selections == (RoleSelection("1", True, False),) * count
    assert elapsed < 2.0  # a few ms; the bound only catches quadratic work


# -- malformed bodies ---------------------------------------------------------------------


def sub(item_type: int, value: bytes) -> bytes:
    return bytes((item_type, 0)) + len(value).to_bytes(2, "big") + value


def in_user_information(*sub_items: bytes) -> bytes:
    return sub(0x50, b"".join(sub_items))


MALFORMED_RQ_ITEMS = {
    "item overruns the PDU": b"\x20\x00\x01\x00" + bytes(10),
    "context item length FFFF": b"\x20\x00\xff\xff" + bytes(130),
    "stray bytes after the items": APPLICATION_CONTEXT_ITEM + b"\x50\x00\x00",
    "context item shorter than 4": sub(0x20, b"\x01\x00"),
    "abstract syntax overruns its context": b"\x20\x00\x00\x08\x01\x00\x00\x00\x30\x00\x00\x10"
    + b"1.2.3.4.5.6.7.8.",
    "two application contexts": APPLICATION_CONTEXT_ITEM * 2,
    "two user information items": in_user_information() * 2,
    "two abstract syntaxes": sub(0x20, b"\x01\x00\x00\x00" + sub(0x30, b"1.2") + sub(0x30, b"1.3")),
    "maximum length of 0 bytes": in_user_information(sub(0x51, b"")),
    "maximum length of 2 bytes": in_user_information(sub(0x51, b"\x40\x00")),
    "maximum length of 5 bytes": in_user_information(sub(0x51, b"\x00\x00\x40\x00\x00")),
    "maximum length FFFF": in_user_information(b"\x51\x00\xff\xff\x00\x00\x40\x00"),
    "two maximum lengths": in_user_information(sub(0x51, bytes(4)), sub(0x51, bytes(4))),
    "two implementation class UIDs": in_user_information(sub(0x52, b"1.2"), sub(0x52, b"1.2")),
    "two version names": in_user_information(sub(0x55, b"A"), sub(0x55, b"B")),
    "async window of 3 bytes": in_user_information(sub(0x53, b"\x00\x01\x00")),
    "role selection UID overruns": in_user_information(sub(0x54, b"\x00\x10" + b"1.2.")),
    "role selection without roles": in_user_information(sub(0x54, b"\x00\x03" + b"1.2")),
    "role selection too long": in_user_information(
        sub(0x54, b"\x00\x03" + b"1.2" + b"\x01\x01\x01")
    ),
    "role selection of 1 byte": in_user_information(sub(0x54, b"\x00")),
    "extended negotiation UID overruns": in_user_information(sub(0x56, b"\x00\x09" + b"1.2")),
    "common extended service UID overruns": in_user_information(
        sub(0x57, b"\x00\x03" + b"1.2" + b"\x00\x09" + b"1.3")
    ),
    "common extended related list overruns": in_user_information(
        sub(0x57, b"\x00\x03" + b"1.2" + b"\x00\x03" + b"1.3" + b"\x00\x09" + b"\x00\x03" + b"1.4")
    ),
    "common extended related UID overruns": in_user_information(
        sub(0x57, b"\x00\x03" + b"1.2" + b"\x00\x03" + b"1.3" + b"\x00\x05" + b"\x00\x04" + b"1.4")
    ),
    "common extended related list of 1 byte": in_user_information(
        sub(0x57, b"\x00\x03" + b"1.2" + b"\x00\x03" + b"1.3" + b"\x00\x01" + b"\x00")
    ),
    "user identity of 3 bytes": in_user_information(sub(0x58, b"\x01\x00\x00")),
    "user identity primary overruns": in_user_information(
        sub(0x58, b"\x01\x00\x00\x09user\x00\x00")
    ),
    "user identity without secondary length": in_user_information(
        sub(0x58, b"\x01\x00\x00\x04user")
    ),
    "user identity secondary overruns": in_user_information(
        sub(0x58, b"\x02\x00\x00\x01u\x00\x05pa")
    ),
    "user identity with extra bytes": in_user_information(
        sub(0x58, b"\x01\x00\x00\x01u\x00\x00\x00")
    ),
    "two user identities": in_user_information(sub(0x58, b"\x01\x00\x00\x00\x00\x00") * 2),
    "server response overruns": in_user_information(sub(0x59, b"\x00\x05ok")),
    "server response with extra bytes": in_user_information(sub(0x59, b"\x00\x01ok")),
    "server response of 1 byte": in_user_information(sub(0x59, b"\x00")),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_RQ_ITEMS))
def test_malformed_rq(codec: ModuleType, case: str) -> None:
    with pytest.raises(PDUError):
        codec.decode_pdu(0x01, rq_body(MALFORMED_RQ_ITEMS[case]))


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(sub(0x21, b"\x01\x00\x00"), id="context item shorter than 4"),
        pytest.param(
            sub(0x21, b"\x01\x00\x00\x00" + sub(0x40, b"1.2") + sub(0x40, b"1.3")),
            id="two transfer syntaxes",
        ),
        pytest.param(
            sub(0x21, b"\x01\x00\x00\x00" + b"\x40\x00\x00\x09" + b"1.2"), id="TS overruns"
        ),
        pytest.param(in_user_information(sub(0x59, b"\x00\x09")), id="server response overruns"),
    ],
)
def test_malformed_ac(codec: ModuleType, items: bytes) -> None:
    with pytest.raises(PDUError):
        codec.decode_pdu(0x02, rq_body(items))


@pytest.mark.parametrize("pdu_type", [1, 2])
@pytest.mark.parametrize("size", [0, 1, 10, 67])
def test_short_fixed_part(codec: ModuleType, pdu_type: int, size: int) -> None:
    with pytest.raises(PDUError):
        codec.decode_pdu(pdu_type, bytes(size))


@pytest.mark.parametrize("pdu_type", [3, 5, 6, 7])
@pytest.mark.parametrize("size", [0, 3, 5, 6])
def test_fixed_size_body_of_wrong_length(codec: ModuleType, pdu_type: int, size: int) -> None:
    with pytest.raises(PDUError):
        codec.decode_pdu(pdu_type, bytes(size))


def test_empty_pdata_body(codec: ModuleType) -> None:
    with pytest.raises(PDUError):
        codec.decode_pdu(0x04, b"")


@pytest.mark.parametrize("pdu_type", [0, 8, 0x53, 0xFF])
def test_decode_unknown_pdu_type(codec: ModuleType, pdu_type: int) -> None:
    with pytest.raises(UnrecognizedPDU):
        codec.decode_pdu(pdu_type, bytes(4))


# -- local errors when encoding --------------------------------------------------------------

LONG_UID = "1." + "2" * 63  # 65 bytes


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(AssociateRQ("A" * 17, "B", ()), id="called AE of 17 bytes"),
        pytest.param(AssociateRQ("A", "B" * 17, ()), id="calling AE of 17 bytes"),
        pytest.param(AssociateRQ("\u0100", "B", ()), id="AE outside latin-1"),
        pytest.param(
            AssociateRQ("A", "B", (), application_context=LONG_UID), id="long app context"
        ),
        pytest.param(
            AssociateRQ("A", "B", (PresentationContextRQ(1, LONG_UID, ()),)), id="long abstract"
        ),
        pytest.param(
            AssociateRQ("A", "B", (PresentationContextRQ(1, "1.2", (LONG_UID,)),)),
            id="long transfer",
        ),
        pytest.param(
            AssociateRQ("A", "B", (PresentationContextRQ(256, "1.2", ()),)), id="context 256"
        ),
        pytest.param(
            AssociateRQ("A", "B", (PresentationContextRQ(-1, "1.2", ()),)), id="context -1"
        ),
        pytest.param(
            AssociateAC("A", "B", (PresentationContextAC(1, 256, "1.2"),)), id="result 256"
        ),
        pytest.param(AssociateRQ("A", "B", (), protocol_version=0x10000), id="protocol version"),
        pytest.param(
            AssociateRQ("A", "B", (), UserInformation(implementation_class_uid=LONG_UID)),
            id="long impl UID",
        ),
        pytest.param(
            AssociateRQ("A", "B", (), UserInformation(implementation_version_name="V" * 17)),
            id="version name of 17",
        ),
        pytest.param(
            AssociateRQ("A", "B", (), UserInformation(max_length=1 << 32)), id="max length 2**32"
        ),
        pytest.param(AssociateRQ("A", "B", (), UserInformation(max_length=-1)), id="max length -1"),
        pytest.param(
            AssociateRQ("A", "B", (), UserInformation(async_ops_window=AsyncOpsWindow(65536, 1))),
            id="async window",
        ),
        pytest.param(
            AssociateRQ(
                "A", "B", (), UserInformation(user_identity=UserIdentityRQ(1, False, b"x" * 65536))
            ),
            id="primary field of 65536",
        ),
        pytest.param(
            AssociateRQ(
                "A", "B", (), UserInformation(user_identity=UserIdentityRQ(256, False, b"x"))
            ),
            id="identity type 256",
        ),
        pytest.param(
            AssociateRQ(
                "A",
                "B",
                (),
                UserInformation(
                    sop_class_extended=(SOPClassExtendedNegotiation("1.2", bytes(65530)),)
                ),
            ),
            id="sub-item over 65535",
        ),
        pytest.param(
            AssociateRQ("A", "B", (PresentationContextRQ(1, "1.2", ("1." + "2" * 60,) * 1100),)),
            id="context item over 65535",
        ),
        pytest.param(AssociateRJ(256, 1, 1), id="RJ result 256"),
        pytest.param(Abort(0, -1), id="abort reason -1"),
        pytest.param(PDataTF(((256, 0, b""),)), id="PDV context 256"),
        pytest.param(PDataTF(((1, 256, b""),)), id="PDV control 256"),
    ],
)
def test_encode_errors(codec: ModuleType, value: object) -> None:
    with pytest.raises(ValueError):
        codec.encode_pdu(value)


def test_encode_rejects_non_pdu(codec: ModuleType) -> None:
    with pytest.raises(TypeError):
        codec.encode_pdu(UserInformation())
