"""DIMSE command sets: implicit VR little endian group 0000 (PS3.7 6.3, Annex E)."""

from __future__ import annotations

from types import ModuleType

import pytest
from pydicom.datadict import DicomDictionary

from dicomnet.core._command_tags import COMMAND_TAGS, TAG_BY_KEYWORD
from dicomnet.errors import CommandSetError


def fields(**by_keyword: object) -> dict[int, object]:
    """A command set keyed by tag, written with PS3.6 keywords."""
    return {TAG_BY_KEYWORD[keyword]: value for keyword, value in by_keyword.items()}


CT = "1.2.840.10008.5.1.4.1.1.2"
INSTANCE = "1.2.826.0.1.3680043.9.7433.3.12857516184849951143044513877282227"
FIND_PATIENT = "1.2.840.10008.5.1.4.1.2.1.1"
GET_PATIENT = "1.2.840.10008.5.1.4.1.2.1.3"
MOVE_PATIENT = "1.2.840.10008.5.1.4.1.2.1.2"
PRINTER = "1.2.840.10008.5.1.1.16"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
NO_DATA_SET = 0x0101

# Every message of PS3.7 Annex E with all the fields its tables list (9.3 and 10.3).
MESSAGES: dict[str, dict[int, object]] = {
    "C-STORE-RQ": fields(
        AffectedSOPClassUID=CT,
        CommandField=0x0001,
        MessageID=1,
        Priority=2,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=INSTANCE,
        MoveOriginatorApplicationEntityTitle="MOVESCU",
        MoveOriginatorMessageID=65535,
    ),
    "C-STORE-RSP": fields(
        AffectedSOPClassUID=CT,
        CommandField=0x8001,
        MessageIDBeingRespondedTo=1,
        CommandDataSetType=NO_DATA_SET,
        Status=0xA900,
        OffendingElement=(0x00080016, 0x00080018),
        ErrorComment="SOP Class differs",
        AffectedSOPInstanceUID=INSTANCE,
    ),
    "C-FIND-RQ": fields(
        AffectedSOPClassUID=FIND_PATIENT,
        CommandField=0x0020,
        MessageID=2,
        Priority=0,
        CommandDataSetType=0x0001,
    ),
    "C-FIND-RSP": fields(
        AffectedSOPClassUID=FIND_PATIENT,
        CommandField=0x8020,
        MessageIDBeingRespondedTo=2,
        CommandDataSetType=0x0102,
        Status=0xFF00,
    ),
    "C-GET-RQ": fields(
        AffectedSOPClassUID=GET_PATIENT,
        CommandField=0x0010,
        MessageID=3,
        Priority=1,
        CommandDataSetType=0x0000,
    ),
    "C-GET-RSP": fields(
        AffectedSOPClassUID=GET_PATIENT,
        CommandField=0x8010,
        MessageIDBeingRespondedTo=3,
        CommandDataSetType=NO_DATA_SET,
        Status=0xFF00,
        NumberOfRemainingSuboperations=65535,
        NumberOfCompletedSuboperations=7,
        NumberOfFailedSuboperations=1,
        NumberOfWarningSuboperations=0,
    ),
    "C-MOVE-RQ": fields(
        AffectedSOPClassUID=MOVE_PATIENT,
        CommandField=0x0021,
        MessageID=4,
        Priority=0,
        CommandDataSetType=0x0000,
        MoveDestination="STORESCP",
    ),
    "C-MOVE-RSP": fields(
        AffectedSOPClassUID=MOVE_PATIENT,
        CommandField=0x8021,
        MessageIDBeingRespondedTo=4,
        CommandDataSetType=0x0000,
        Status=0xB000,
        NumberOfRemainingSuboperations=0,
        NumberOfCompletedSuboperations=10,
        NumberOfFailedSuboperations=2,
        NumberOfWarningSuboperations=1,
    ),
    "C-ECHO-RQ": fields(
        AffectedSOPClassUID="1.2.840.10008.1.1",
        CommandField=0x0030,
        MessageID=5,
        CommandDataSetType=NO_DATA_SET,
    ),
    "C-ECHO-RSP": fields(
        AffectedSOPClassUID="1.2.840.10008.1.1",
        CommandField=0x8030,
        MessageIDBeingRespondedTo=5,
        CommandDataSetType=NO_DATA_SET,
        Status=0x0000,
    ),
    "C-CANCEL-RQ": fields(
        CommandField=0x0FFF,
        MessageIDBeingRespondedTo=2,
        CommandDataSetType=NO_DATA_SET,
    ),
    "N-EVENT-REPORT-RQ": fields(
        AffectedSOPClassUID=STORAGE_COMMITMENT,
        CommandField=0x0100,
        MessageID=6,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=COMMITMENT_INSTANCE,
        EventTypeID=1,
    ),
    "N-EVENT-REPORT-RSP": fields(
        AffectedSOPClassUID=STORAGE_COMMITMENT,
        CommandField=0x8100,
        MessageIDBeingRespondedTo=6,
        CommandDataSetType=NO_DATA_SET,
        Status=0x0000,
        AffectedSOPInstanceUID=COMMITMENT_INSTANCE,
        EventTypeID=1,
    ),
    "N-GET-RQ": fields(
        RequestedSOPClassUID=PRINTER,
        CommandField=0x0110,
        MessageID=7,
        CommandDataSetType=NO_DATA_SET,
        RequestedSOPInstanceUID="1.2.840.10008.5.1.1.17",
        AttributeIdentifierList=(0x21100010, 0x21100020, 0x21100030),
    ),
    "N-GET-RSP": fields(
        AffectedSOPClassUID=PRINTER,
        CommandField=0x8110,
        MessageIDBeingRespondedTo=7,
        CommandDataSetType=0x0000,
        Status=0x0107,
        AffectedSOPInstanceUID="1.2.840.10008.5.1.1.17",
    ),
    "N-SET-RQ": fields(
        RequestedSOPClassUID="1.2.840.10008.5.1.1.1",
        CommandField=0x0120,
        MessageID=8,
        CommandDataSetType=0x0000,
        RequestedSOPInstanceUID="1.2.3.4.5",
    ),
    "N-SET-RSP": fields(
        AffectedSOPClassUID="1.2.840.10008.5.1.1.1",
        CommandField=0x8120,
        MessageIDBeingRespondedTo=8,
        CommandDataSetType=NO_DATA_SET,
        Status=0x0116,
        AffectedSOPInstanceUID="1.2.3.4.5",
        AttributeIdentifierList=(0x20000010,),
    ),
    "N-ACTION-RQ": fields(
        RequestedSOPClassUID=STORAGE_COMMITMENT,
        CommandField=0x0130,
        MessageID=9,
        CommandDataSetType=0x0000,
        RequestedSOPInstanceUID=COMMITMENT_INSTANCE,
        ActionTypeID=1,
    ),
    "N-ACTION-RSP": fields(
        AffectedSOPClassUID=STORAGE_COMMITMENT,
        CommandField=0x8130,
        MessageIDBeingRespondedTo=9,
        CommandDataSetType=NO_DATA_SET,
        Status=0x0000,
        AffectedSOPInstanceUID=COMMITMENT_INSTANCE,
        ActionTypeID=1,
    ),
    "N-CREATE-RQ": fields(
        AffectedSOPClassUID="1.2.840.10008.5.1.1.1",
        CommandField=0x0140,
        MessageID=10,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID="1.2.3.4.6",
    ),
    "N-CREATE-RSP": fields(
        AffectedSOPClassUID="1.2.840.10008.5.1.1.1",
        CommandField=0x8140,
        MessageIDBeingRespondedTo=10,
        CommandDataSetType=0x0000,
        Status=0x0000,
        AffectedSOPInstanceUID="1.2.3.4.6",
    ),
    "N-DELETE-RQ": fields(
        RequestedSOPClassUID="1.2.840.10008.5.1.1.1",
        CommandField=0x0150,
        MessageID=11,
        CommandDataSetType=NO_DATA_SET,
        RequestedSOPInstanceUID="1.2.3.4.6",
    ),
    "N-DELETE-RSP": fields(
        AffectedSOPClassUID="1.2.840.10008.5.1.1.1",
        CommandField=0x8150,
        MessageIDBeingRespondedTo=11,
        CommandDataSetType=NO_DATA_SET,
        Status=0x0000,
        AffectedSOPInstanceUID="1.2.3.4.6",
    ),
}

C_ECHO_RQ = bytes.fromhex(
    "0000 0000 04000000 38000000"  # (0000,0000) UL 4: CommandGroupLength 56
    "0000 0200 12000000"  # (0000,0002) UI 18: AffectedSOPClassUID, NUL padded
    "312e322e3834302e31303030382e312e3100"  # "1.2.840.10008.1.1\0"
    "0000 0001 02000000 3000"  # (0000,0100) US: CommandField 0030H C-ECHO-RQ
    "0000 1001 02000000 0100"  # (0000,0110) US: MessageID 1
    "0000 0008 02000000 0101"  # (0000,0800) US: CommandDataSetType 0101H, no dataset
)


def element(tag: int, value: bytes) -> bytes:
    """One implicit VR little endian element of group 0000."""
    return (
        (0).to_bytes(2, "little")
        + tag.to_bytes(2, "little")
        + len(value).to_bytes(4, "little")
        + value
    )


def command_set(*elements: bytes, group_length: bool = True) -> bytes:
    body = b"".join(elements)
    head = element(0x0000, len(body).to_bytes(4, "little")) if group_length else b""
    return head + body


def us(value: int) -> bytes:
    return value.to_bytes(2, "little")


# -- vectors -------------------------------------------------------------------------


def test_c_echo_rq_vector(codec: ModuleType) -> None:
    value = fields(
        AffectedSOPClassUID="1.2.840.10008.1.1",
        CommandField=0x0030,
        MessageID=1,
        CommandDataSetType=0x0101,
    )
    assert codec.encode_command(value) == C_ECHO_RQ
    assert codec.decode_command(C_ECHO_RQ) == value


def test_value_encodings(codec: ModuleType) -> None:
    encoded = codec.encode_command(
        {
            0x00000000: 12345,  # ignored: the group length is computed
            0x00000100: 0x8021,
            0x00000600: "ABC",  # AE, padded with a space
            0x00000901: (0x00100020, 0x7FE00010),  # AT, group then element, each LE
            0x00000999: b"\x01\x02\x03",  # unknown tag, bytes padded with NUL
            0x00001000: "1.2",  # UI, padded with NUL
            0x00000001: 0xDEADBEEF,  # UL
        }
    )
    assert encoded == command_set(
        element(0x0001, bytes.fromhex("efbeadde")),
        element(0x0100, us(0x8021)),
        element(0x0600, b"ABC "),
        element(0x0901, bytes.fromhex("1000 2000 e07f 1000")),
        element(0x0999, b"\x01\x02\x03\x00"),
        element(0x1000, b"1.2\x00"),
    )


def test_single_at_value_as_int(codec: ModuleType) -> None:
    encoded = codec.encode_command({0x00000100: 1, 0x00000901: 0x00080018})
    assert codec.decode_command(encoded)[0x00000901] == (0x00080018,)


def test_even_values_are_not_padded(codec: ModuleType) -> None:
    encoded = codec.encode_command({0x00000100: 1, 0x00000600: "AB", 0x00001000: "1.23"})
    assert encoded.endswith(element(0x0600, b"AB") + element(0x1000, b"1.23"))


# -- round trips of every command of PS3.7 Annex E -----------------------------------------


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_command_round_trips(codec: ModuleType, name: str) -> None:
    value = MESSAGES[name]
    encoded = codec.encode_command(value)
    assert encoded[:8] == bytes.fromhex("0000 0000 04000000")
    assert int.from_bytes(encoded[8:12], "little") == len(encoded) - 12
    assert codec.decode_command(encoded) == value
    tags = decoded_tag_order(encoded)
    assert tags == sorted(tags) and tags[0] == 0


def decoded_tag_order(encoded: bytes) -> list[int]:
    tags, offset = [], 0
    while offset < len(encoded):
        tags.append(int.from_bytes(encoded[offset + 2 : offset + 4], "little"))
        offset += 8 + int.from_bytes(encoded[offset + 4 : offset + 8], "little")
    return tags


def test_every_table_entry_round_trips(codec: ModuleType) -> None:
    samples = {"US": 513, "UL": 0x01020304, "AT": (0x00100010,), "UI": "1.2.3"}
    value = {tag: samples.get(vr, "TEXT") for tag, (vr, _) in COMMAND_TAGS.items() if tag}
    value[0x00000100] = 1
    assert codec.decode_command(codec.encode_command(value)) == value


def test_table_matches_the_data_dictionary(codec: ModuleType) -> None:
    for tag, (vr, keyword) in COMMAND_TAGS.items():
        assert tag >> 16 == 0
        assert TAG_BY_KEYWORD[keyword] == tag
        assert (DicomDictionary[tag][0], DicomDictionary[tag][4]) == (vr, keyword)
    assert {tag for tag in DicomDictionary if tag >> 16 == 0} == set(COMMAND_TAGS)
    assert codec.decode_command(codec.encode_command({0x00000100: 1, 0x000051B0: 7}))[0x51B0] == 7


# -- decoding ------------------------------------------------------------------------------


def test_decode_strips_padding(codec: ModuleType) -> None:
    data = command_set(
        element(0x0002, b"1.2.3 \x00 \x00"),  # UI: trailing NULs and spaces
        element(0x0100, us(1)),
        element(0x0600, b"  DEST  "),  # AE: trailing spaces only
        element(0x0902, b"failed  "),  # LO
    )
    assert codec.decode_command(data) == {
        0x0002: "1.2.3",
        0x0100: 1,
        0x0600: "  DEST",
        0x0902: "failed",
    }


def test_decode_unknown_group_0000_tag_as_bytes(codec: ModuleType) -> None:
    data = command_set(element(0x0100, us(1)), element(0x0999, b"\xff\xfe"))
    assert codec.decode_command(data) == {0x0100: 1, 0x0999: b"\xff\xfe"}


def test_decode_without_group_length(codec: ModuleType) -> None:
    data = command_set(element(0x0100, us(0x30)), element(0x0800, us(0x0101)), group_length=False)
    assert codec.decode_command(data) == {0x0100: 0x30, 0x0800: 0x0101}


def test_decode_retired_elements(codec: ModuleType) -> None:
    data = command_set(
        element(0x0001, (77).to_bytes(4, "little")),  # CommandLengthToEnd UL
        element(0x0010, b"CODE"),  # CommandRecognitionCode SH
        element(0x0100, us(1)),
        element(0x0850, us(3)),  # NumberOfMatches US
        element(0x4000, b"dialog  "),  # DialogReceiver LT
        element(0x5170, b"2 "),  # Copies IS
    )
    assert codec.decode_command(data) == {
        0x0001: 77,
        0x0010: "CODE",
        0x0100: 1,
        0x0850: 3,
        0x4000: "dialog",
        0x5170: "2",
    }


def test_decode_accepts_bytearray_and_memoryview(codec: ModuleType) -> None:
    assert codec.decode_command(bytearray(C_ECHO_RQ))[0x0100] == 0x30
    assert codec.decode_command(memoryview(C_ECHO_RQ))[0x0100] == 0x30


def header(tag: int, length: int) -> bytes:
    return b"\x00\x00" + tag.to_bytes(2, "little") + length.to_bytes(4, "little")


ECHO_BODY = element(0x0100, us(0x30)) + element(0x0800, us(0x0101))

MALFORMED = {
    "empty": b"",
    "truncated element header": C_ECHO_RQ + b"\x00\x00\x00\x09\x02",
    "truncated value": C_ECHO_RQ[:-1],
    "element outside group 0000": command_set(ECHO_BODY + b"\x08\x00\x16\x00\x02\x00\x00\x001."),
    "group 0002": command_set(ECHO_BODY, group_length=False) + b"\x02\x00\x10\x00\x00\x00\x00\x00",
    "duplicate tag": command_set(ECHO_BODY, element(0x0800, us(0x0101))),
    "unsorted tags": command_set(element(0x0800, us(0x0101)), element(0x0100, us(0x30))),
    "group length too large": element(0, (len(ECHO_BODY) + 2).to_bytes(4, "little")) + ECHO_BODY,
    "group length too small": element(0, (len(ECHO_BODY) - 2).to_bytes(4, "little")) + ECHO_BODY,
    "group length of 2 bytes": element(0, us(len(ECHO_BODY))) + ECHO_BODY,
    "US of 0 bytes": command_set(element(0x0100, b"")),
    "US of 4 bytes": command_set(element(0x0100, b"\x30\x00\x00\x00")),
    "US of 3 bytes": command_set(element(0x0100, us(0x30)), element(0x0110, b"\x01\x00\x00")),
    "UL of 2 bytes": command_set(element(0x0001, us(1)), ECHO_BODY),
    "AT of 6 bytes": command_set(ECHO_BODY[:10], element(0x0901, bytes(6))),
    "length 80FFFFFF": command_set(ECHO_BODY) + header(0x0902, 0x80FFFFFF),
    "length FFFFFFFF": command_set(ECHO_BODY, group_length=False)
    + header(0x1000, 0xFFFFFFFF)
    + b"1.2",
    "length one past the end": command_set(ECHO_BODY, group_length=False)
    + header(0x1000, 4)
    + b"1.2",
    "missing CommandField": command_set(element(0x0110, us(1)), element(0x0800, us(0x0101))),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_decode_errors(codec: ModuleType, case: str) -> None:
    with pytest.raises(CommandSetError):
        codec.decode_command(MALFORMED[case])


# -- encoding errors (local) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({0x00080016: b"1.2"}, id="tag outside group 0000"),
        pytest.param({0x00000100: 1, -1: b""}, id="negative tag"),
        pytest.param({0x00000100: 1, 0x00000999: 5}, id="unknown tag with an int"),
        pytest.param({0x00000100: 65536}, id="US too large"),
        pytest.param({0x00000100: -1}, id="US negative"),
        pytest.param({0x00000100: 1, 0x00000001: 1 << 32}, id="UL too large"),
        pytest.param({0x00000100: "1"}, id="str for US"),
        pytest.param({0x00000100: 1, 0x00000002: 12}, id="int for UI"),
        pytest.param({0x00000100: 1, 0x00000600: 12}, id="int for AE"),
        pytest.param({0x00000100: 1, 0x00000901: (1 << 32,)}, id="AT out of range"),
        pytest.param({0x00000100: 1, 0x00000901: "00100010"}, id="str for AT"),
        pytest.param({0x00000100: 1, 0x00000902: "\u20ac"}, id="text outside latin-1"),
    ],
)
def test_encode_errors(codec: ModuleType, value: dict[int, object]) -> None:
    with pytest.raises(ValueError):
        codec.encode_command(value)
