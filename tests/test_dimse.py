"""DIMSE messages <-> command sets (PS3.7 9.3, 10.3, Annex E), status classes, message IDs."""

from __future__ import annotations

from types import ModuleType

import pytest

from dicomnet.core import dimse
from dicomnet.core.status import StatusClass, describe_status, status_class
from dicomnet.errors import CommandSetError

CT = "1.2.840.10008.5.1.4.1.1.2"
UID = "1.2.826.0.1.3680043.8.498.1"

EVERY_MESSAGE = [
    dimse.CEchoRQ(message_id=1),
    dimse.CEchoRSP(
        message_id_being_responded_to=1, status=0, affected_sop_class_uid="1.2.840.10008.1.1"
    ),
    dimse.CStoreRQ(
        message_id=2,
        affected_sop_class_uid=CT,
        affected_sop_instance_uid=UID,
        priority=1,
        move_originator_ae_title="MOVER",
        move_originator_message_id=9,
    ),
    dimse.CStoreRSP(
        message_id_being_responded_to=2,
        status=0xA700,
        affected_sop_class_uid=CT,
        affected_sop_instance_uid=UID,
        error_comment="disk full",
    ),
    dimse.CFindRQ(message_id=3, affected_sop_class_uid=CT),
    dimse.CFindRSP(message_id_being_responded_to=3, status=0xFF00, has_dataset=True),
    dimse.CGetRQ(message_id=4, affected_sop_class_uid=CT),
    dimse.CGetRSP(
        message_id_being_responded_to=4,
        status=0xFF00,
        number_of_remaining_suboperations=5,
        number_of_completed_suboperations=1,
        number_of_failed_suboperations=0,
        number_of_warning_suboperations=0,
    ),
    dimse.CMoveRQ(message_id=5, affected_sop_class_uid=CT, move_destination="DEST"),
    dimse.CMoveRSP(
        message_id_being_responded_to=5, status=0xB000, number_of_failed_suboperations=2
    ),
    dimse.CCancelRQ(message_id_being_responded_to=5),
    dimse.NEventReportRQ(
        message_id=6,
        affected_sop_class_uid=CT,
        affected_sop_instance_uid=UID,
        event_type_id=1,
        has_dataset=True,
    ),
    dimse.NEventReportRSP(message_id_being_responded_to=6, status=0, event_type_id=1),
    dimse.NGetRQ(
        message_id=7,
        requested_sop_class_uid=CT,
        requested_sop_instance_uid=UID,
        attribute_identifier_list=(0x00100010, 0x00100020),
    ),
    dimse.NGetRSP(message_id_being_responded_to=7, status=0x0107, offending_element=(0x00100010,)),
    dimse.NSetRQ(message_id=8, requested_sop_class_uid=CT, requested_sop_instance_uid=UID),
    dimse.NSetRSP(message_id_being_responded_to=8, status=0x0106, error_id=3),
    dimse.NActionRQ(
        message_id=9,
        requested_sop_class_uid=CT,
        requested_sop_instance_uid=UID,
        action_type_id=1,
        has_dataset=True,
    ),
    dimse.NActionRSP(message_id_being_responded_to=9, status=0, action_type_id=1),
    dimse.NCreateRQ(message_id=10, affected_sop_class_uid=CT, affected_sop_instance_uid=UID),
    dimse.NCreateRSP(message_id_being_responded_to=10, status=0x0111),
    dimse.NDeleteRQ(message_id=11, requested_sop_class_uid=CT, requested_sop_instance_uid=UID),
    dimse.NDeleteRSP(message_id_being_responded_to=11, status=0x0112),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_the_codec(
    codec: ModuleType, message: dimse.Message
) -> None:
    command = codec.decode_command(codec.encode_command(dimse.to_command(message)))
    assert command[0x0100] == int(message.COMMAND)
    assert command[0x0800] == (0x0001 if message.has_dataset else 0x0101)
    assert dimse.message_from_command(command) == message


def test_every_command_field_has_a_message_type() -> None:
    assert set(dimse.MESSAGE_TYPES) == {int(field) for field in dimse.CommandField}
    assert {type(m) for m in EVERY_MESSAGE} == set(dimse.MESSAGE_TYPES.values())


@pytest.mark.parametrize(
    "command",
    [
        {},
        {0x0100: 0x0FFE, 0x0800: 0x0101},
        {0x0100: 0x0001, 0x0110: 1, 0x0800: 0x0001},  # C-STORE-RQ without its UIDs
        {0x0100: 0x0021, 0x0110: 1, 0x0002: CT, 0x0800: 0x0001},  # C-MOVE-RQ without destination
        {0x0100: 0x8030, 0x0800: 0x0101},  # a response without its fields
        {0x0100: 0x0030, 0x0110: b"\x01\x00", 0x0800: 0x0101},  # wrong type for a US field
    ],
)
def test_malformed_commands_are_command_set_errors(command: dict[int, object]) -> None:
    with pytest.raises(CommandSetError):
        dimse.message_from_command(command)


def test_response_for_echoes_what_ps3_7_says() -> None:
    store = EVERY_MESSAGE[2]
    rsp = dimse.response_for(store, 0x0000)
    assert isinstance(rsp, dimse.CStoreRSP)
    assert (
        rsp.message_id_being_responded_to,
        rsp.affected_sop_class_uid,
        rsp.affected_sop_instance_uid,
    ) == (2, CT, UID)
    n_get = dimse.response_for(EVERY_MESSAGE[13], 0x0000, has_dataset=True)
    assert (n_get.affected_sop_class_uid, n_get.affected_sop_instance_uid) == (CT, UID)
    move = dimse.response_for(EVERY_MESSAGE[8], 0xFF00, number_of_remaining_suboperations=70_000)
    assert move.number_of_remaining_suboperations == 0xFFFF  # clamped to a US field
    with pytest.raises(ValueError):
        dimse.response_for(EVERY_MESSAGE[0], 0, move_destination="X")


def test_validate_request() -> None:
    store = EVERY_MESSAGE[2]
    assert dimse.validate_request(store, CT) is None
    assert dimse.validate_request(store, "1.2.3") == 0xA900
    bad = dimse.CStoreRQ(
        message_id=1, affected_sop_class_uid=CT, affected_sop_instance_uid="../etc"
    )
    assert dimse.validate_request(bad, CT) == 0xC000
    assert (
        dimse.validate_request(dimse.CFindRQ(message_id=1, affected_sop_class_uid=CT), "1.2.3")
        == 0x0122
    )
    assert (
        dimse.validate_request(dimse.CEchoRQ(message_id=1, has_dataset=True), "1.2.840.10008.1.1")
        == 0x0212
    )


def test_message_ids_wrap_and_skip_outstanding() -> None:
    ids = dimse.MessageIDs()
    first = [ids.allocate() for _ in range(3)]
    assert first == [1, 2, 3]
    for _ in range(65_535 - 3):
        ids.release(ids.allocate())
    assert ids.allocate() == 4  # wrapped past 65535, skipping 1-3 still outstanding
    ids.release(2)
    for _ in range(65_535):
        candidate = ids.allocate()
        ids.release(candidate)
        assert candidate not in (1, 3, 4)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0x0000, StatusClass.SUCCESS),
        (0xFF00, StatusClass.PENDING),
        (0xFF01, StatusClass.PENDING),
        (0xFE00, StatusClass.CANCEL),
        (0x0001, StatusClass.WARNING),
        (0x0107, StatusClass.WARNING),
        (0x0116, StatusClass.WARNING),
        (0xB000, StatusClass.WARNING),
        (0xB007, StatusClass.WARNING),
        (0xA700, StatusClass.FAILURE),
        (0xA7FF, StatusClass.FAILURE),
        (0xC000, StatusClass.FAILURE),
        (0xCFFF, StatusClass.FAILURE),
        (0x0110, StatusClass.FAILURE),
        (0x0122, StatusClass.FAILURE),
    ],
)
def test_status_classes(code: int, expected: StatusClass) -> None:
    assert status_class(code) is expected


def test_describe_status() -> None:
    assert describe_status(0xA700) == "0xA700 Refused: out of resources"
    assert describe_status(0xC123).startswith("0xC123 Error")
