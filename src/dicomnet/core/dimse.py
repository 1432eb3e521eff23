"""DIMSE messages: typed values <-> command sets (PS3.7 9.3, 10.3, Annex E).

Theory of operation
-------------------
The codec turns command-set bytes into a ``dict`` keyed by tag; this module
turns that dict into one frozen dataclass per message type and back. Which
fields a message has, and which of them a receiver needs to route it, are
data (:data:`FIELD_TAGS` and each class's ``REQUIRED``); one pair of functions,
:func:`to_command` and :func:`message_from_command`, serves every message.

Nothing here touches a socket: the association layer decides what to do with
a message, this module only says what it is and whether it is well formed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import IntEnum
from typing import Any, ClassVar

from dicomnet.core.uids import is_valid_uid
from dicomnet.errors import CommandSetError

__all__ = [
    "NO_DATASET",
    "CommandField",
    "MessageIDs",
    "Priority",
    "failure_status_for",
    "is_n_service",
    "is_response",
    "message_from_command",
    "response_for",
    "to_command",
    "validate_request",
]

NO_DATASET = 0x0101
"""CommandDataSetType when no dataset follows (PS3.7 E.1-1); any other value means one does."""
DATASET_PRESENT = 0x0001
"""The value dicomnet sends when a dataset follows (DCMTK and pynetdicom send it too)."""

COMMAND_FIELD = 0x00000100
COMMAND_DATA_SET_TYPE = 0x00000800


class CommandField(IntEnum):
    """Command Field (0000,0100) values (PS3.7 E.1-1)."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF


class Priority(IntEnum):
    """Priority (0000,0700) (PS3.7 E.1-1)."""

    MEDIUM = 0x0000
    HIGH = 0x0001
    LOW = 0x0002


FIELD_TAGS: dict[str, tuple[int, type]] = {
    "affected_sop_class_uid": (0x00000002, str),
    "requested_sop_class_uid": (0x00000003, str),
    "message_id": (0x00000110, int),
    "message_id_being_responded_to": (0x00000120, int),
    "move_destination": (0x00000600, str),
    "priority": (0x00000700, int),
    "status": (0x00000900, int),
    "offending_element": (0x00000901, tuple),
    "error_comment": (0x00000902, str),
    "error_id": (0x00000903, int),
    "affected_sop_instance_uid": (0x00001000, str),
    "requested_sop_instance_uid": (0x00001001, str),
    "event_type_id": (0x00001002, int),
    "attribute_identifier_list": (0x00001005, tuple),
    "action_type_id": (0x00001008, int),
    "number_of_remaining_suboperations": (0x00001020, int),
    "number_of_completed_suboperations": (0x00001021, int),
    "number_of_failed_suboperations": (0x00001022, int),
    "number_of_warning_suboperations": (0x00001023, int),
    "move_originator_ae_title": (0x00001030, str),
    "move_originator_message_id": (0x00001031, int),
}
"""Message field name -> (command tag, Python type of its value)."""

US_MAX = 0xFFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every DIMSE message; ``has_dataset`` mirrors CommandDataSetType."""

    COMMAND: ClassVar[CommandField]
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    has_dataset: bool = False

    @property
    def command_field(self) -> CommandField:
        return self.COMMAND


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Message):
    """A request: identified by its Message ID (0000,0110)."""

    message_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(Message):
    """A response: the Message ID it answers and a Status (0000,0900)."""

    message_id_being_responded_to: int
    status: int = 0x0000
    error_comment: str | None = None
    error_id: int | None = None
    offending_element: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CEchoRQ(Request):
    COMMAND = CommandField.C_ECHO_RQ
    REQUIRED = ("message_id",)
    affected_sop_class_uid: str = "1.2.840.10008.1.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class CEchoRSP(Response):
    COMMAND = CommandField.C_ECHO_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CStoreRQ(Request):
    COMMAND = CommandField.C_STORE_RQ
    REQUIRED = ("message_id", "affected_sop_class_uid", "affected_sop_instance_uid")
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    priority: int = Priority.MEDIUM
    move_originator_ae_title: str | None = None
    move_originator_message_id: int | None = None
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CStoreRSP(Response):
    COMMAND = CommandField.C_STORE_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CFindRQ(Request):
    COMMAND = CommandField.C_FIND_RQ
    REQUIRED = ("message_id", "affected_sop_class_uid")
    affected_sop_class_uid: str
    priority: int = Priority.MEDIUM
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CFindRSP(Response):
    COMMAND = CommandField.C_FIND_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _SubOperations(Response):
    number_of_remaining_suboperations: int | None = None
    number_of_completed_suboperations: int | None = None
    number_of_failed_suboperations: int | None = None
    number_of_warning_suboperations: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CGetRQ(Request):
    COMMAND = CommandField.C_GET_RQ
    REQUIRED = ("message_id", "affected_sop_class_uid")
    affected_sop_class_uid: str
    priority: int = Priority.MEDIUM
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CGetRSP(_SubOperations):
    COMMAND = CommandField.C_GET_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CMoveRQ(Request):
    COMMAND = CommandField.C_MOVE_RQ
    REQUIRED = ("message_id", "affected_sop_class_uid", "move_destination")
    affected_sop_class_uid: str
    move_destination: str
    priority: int = Priority.MEDIUM
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CMoveRSP(_SubOperations):
    COMMAND = CommandField.C_MOVE_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CCancelRQ(Message):
    COMMAND = CommandField.C_CANCEL_RQ
    REQUIRED = ("message_id_being_responded_to",)
    message_id_being_responded_to: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NEventReportRQ(Request):
    COMMAND = CommandField.N_EVENT_REPORT_RQ
    REQUIRED = (
        "message_id",
        "affected_sop_class_uid",
        "affected_sop_instance_uid",
        "event_type_id",
    )
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    event_type_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NEventReportRSP(Response):
    COMMAND = CommandField.N_EVENT_REPORT_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    event_type_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NGetRQ(Request):
    COMMAND = CommandField.N_GET_RQ
    REQUIRED = ("message_id", "requested_sop_class_uid", "requested_sop_instance_uid")
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    attribute_identifier_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NGetRSP(Response):
    COMMAND = CommandField.N_GET_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    attribute_identifier_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NSetRQ(Request):
    COMMAND = CommandField.N_SET_RQ
    REQUIRED = ("message_id", "requested_sop_class_uid", "requested_sop_instance_uid")
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    has_dataset: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class NSetRSP(Response):
    COMMAND = CommandField.N_SET_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    attribute_identifier_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NActionRQ(Request):
    COMMAND = CommandField.N_ACTION_RQ
    REQUIRED = (
        "message_id",
        "requested_sop_class_uid",
        "requested_sop_instance_uid",
        "action_type_id",
    )
    requested_sop_class_uid: str
    requested_sop_instance_uid: str
    action_type_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NActionRSP(Response):
    COMMAND = CommandField.N_ACTION_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    action_type_id: int | None = None
    attribute_identifier_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NCreateRQ(Request):
    COMMAND = CommandField.N_CREATE_RQ
    REQUIRED = ("message_id", "affected_sop_class_uid")
    affected_sop_class_uid: str
    affected_sop_instance_uid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NCreateRSP(Response):
    COMMAND = CommandField.N_CREATE_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    attribute_identifier_list: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NDeleteRQ(Request):
    COMMAND = CommandField.N_DELETE_RQ
    REQUIRED = ("message_id", "requested_sop_class_uid", "requested_sop_instance_uid")
    requested_sop_class_uid: str
    requested_sop_instance_uid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NDeleteRSP(Response):
    COMMAND = CommandField.N_DELETE_RSP
    REQUIRED = ("message_id_being_responded_to", "status")
    affected_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.COMMAND: cls
    for cls in (
        CEchoRQ,
        CEchoRSP,
        CStoreRQ,
        CStoreRSP,
        CFindRQ,
        CFindRSP,
        CGetRQ,
        CGetRSP,
        CMoveRQ,
        CMoveRSP,
        CCancelRQ,
        NEventReportRQ,
        NEventReportRSP,
        NGetRQ,
        NGetRSP,
        NSetRQ,
        NSetRSP,
        NActionRQ,
        NActionRSP,
        NCreateRQ,
        NCreateRSP,
        NDeleteRQ,
        NDeleteRSP,
    )
}

RESPONSE_FOR_REQUEST: dict[type[Message], type[Response]] = {
    CEchoRQ: CEchoRSP,
    CStoreRQ: CStoreRSP,
    CFindRQ: CFindRSP,
    CGetRQ: CGetRSP,
    CMoveRQ: CMoveRSP,
    NEventReportRQ: NEventReportRSP,
    NGetRQ: NGetRSP,
    NSetRQ: NSetRSP,
    NActionRQ: NActionRSP,
    NCreateRQ: NCreateRSP,
    NDeleteRQ: NDeleteRSP,
}

_FIELDS_OF: dict[type[Message], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls) if f.name != "has_dataset")
    for cls in MESSAGE_TYPES.values()
}


def to_command(message: Message) -> dict[int, object]:
    """The command set of a message as the codec's ``encode_command`` takes it."""
    command: dict[int, object] = {COMMAND_FIELD: int(message.COMMAND)}
    for name in _FIELDS_OF[type(message)]:
        value = getattr(message, name)
        if value is None:
            continue
        tag, kind = FIELD_TAGS[name]
        if kind is int:
            value = int(value)
            if not 0 <= value <= US_MAX:
                raise ValueError(f"{name} = {value} does not fit an unsigned short")
        command[tag] = value
    command[COMMAND_DATA_SET_TYPE] = DATASET_PRESENT if message.has_dataset else NO_DATASET
    return command


def message_from_command(command: dict[int, object]) -> Message:
    """The typed message of a decoded command set; ``CommandSetError`` if malformed."""
    field_value = command.get(COMMAND_FIELD)
    if not isinstance(field_value, int):
        raise CommandSetError("command set has no Command Field (0000,0100)")
    cls = MESSAGE_TYPES.get(field_value)
    if cls is None:
        raise CommandSetError(f"unknown Command Field 0x{field_value:04X}")
    values: dict[str, Any] = {}
    for name in _FIELDS_OF[cls]:
        tag, kind = FIELD_TAGS[name]
        if tag not in command:
            continue
        value = command[tag]
        if not isinstance(value, kind):
            raise CommandSetError(
                f"{cls.__name__}: ({tag >> 16:04X},{tag & 0xFFFF:04X}) {name} has a value of "
                f"type {type(value).__name__}, expected {kind.__name__}"
            )
        values[name] = value
    missing = [name for name in cls.REQUIRED if name not in values]
    if missing:
        raise CommandSetError(f"{cls.__name__} lacks {', '.join(missing)}")
    data_set_type = command.get(COMMAND_DATA_SET_TYPE, NO_DATASET)
    values["has_dataset"] = data_set_type != NO_DATASET
    return cls(**values)


def is_response(message: Message) -> bool:
    """Responses have bit 15 of the Command Field set (PS3.7 E.1-1)."""
    return bool(int(message.COMMAND) & 0x8000)


def is_n_service(message: Message) -> bool:
    """DIMSE-N messages (PS3.7 10) have Command Fields 0x0100-0x0150 (and responses)."""
    return 0x0100 <= (int(message.COMMAND) & 0x7FFF) <= 0x0150


_C_SERVICES_WITH_CLASS = (CStoreRQ, CFindRQ, CGetRQ, CMoveRQ)


def validate_request(message: Message, context_abstract_syntax: str) -> int | None:
    """The failure status to answer instead of running a handler, or None.

    * C-STORE/C-FIND/C-GET/C-MOVE whose Affected SOP Class differs from the
      presentation context's abstract syntax: 0xA900 for C-STORE (data set
      does not match SOP class, PS3.4 B.2.3), 0x0122 (SOP class not
      supported) for the others.
    * C-STORE with an Affected SOP Instance UID that is not digits and dots of
      at most 64 characters, or without a dataset: 0xC000 (cannot understand).
    * C-ECHO carrying a dataset: 0x0212 (mistyped argument).
    * An unknown Priority is tolerated, as PS3.7 leaves it advisory.
    """
    if isinstance(message, _C_SERVICES_WITH_CLASS):
        if message.affected_sop_class_uid != context_abstract_syntax:
            return 0xA900 if isinstance(message, CStoreRQ) else 0x0122
    if isinstance(message, CStoreRQ):
        if not is_valid_uid(message.affected_sop_instance_uid) or not message.has_dataset:
            return 0xC000
    if isinstance(message, CEchoRQ) and message.has_dataset:
        return 0x0212
    return None


def failure_status_for(message: Message) -> int:
    """What a request answers when its handler fails: 0xC000 for C-services
    ("unable to process", PS3.4 B, C), 0x0110 processing failure otherwise."""
    if isinstance(message, _C_SERVICES_WITH_CLASS):
        return 0xC000
    return 0x0110


def response_for(request: Message, status: int, **values: Any) -> Response:
    """The response to ``request`` with ``status``; fields as PS3.7 says to echo them."""
    cls = RESPONSE_FOR_REQUEST.get(type(request))
    if cls is None:
        raise ValueError(f"{type(request).__name__} has no response")
    assert isinstance(request, Request)
    echoed: dict[str, Any] = {"message_id_being_responded_to": request.message_id}
    names = _FIELDS_OF[cls]
    for name in (
        "affected_sop_class_uid",
        "affected_sop_instance_uid",
        "event_type_id",
        "action_type_id",
    ):
        if name in names:
            value = getattr(request, name, None)
            if value is None and name.startswith("affected"):
                value = getattr(request, name.replace("affected", "requested"), None)
            if value is not None:
                echoed[name] = value
    for name in list(values):
        if name.startswith("number_of_") and values[name] is not None:
            values[name] = min(int(values[name]), US_MAX)
    echoed.update(values)
    unknown = set(echoed) - set(names) - {"has_dataset"}
    if unknown:
        raise ValueError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    return cls(status=status, **echoed)


class MessageIDs:
    """Message IDs 1-65535 for one association, skipping those still outstanding."""

    __slots__ = ("_next", "_used")

    def __init__(self) -> None:
        self._next = 1
        self._used: set[int] = set()

    def allocate(self) -> int:
        """The next free ID; ``RuntimeError`` when all 65,535 are outstanding."""
        for _ in range(US_MAX):
            candidate = self._next
            self._next = 1 if candidate == US_MAX else candidate + 1
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate
        raise RuntimeError("all 65535 message IDs are outstanding")

    def release(self, message_id: int) -> None:
        self._used.discard(message_id)


def with_message_id(message: Request, message_id: int) -> Request:
    """A copy of a request carrying ``message_id``."""
    return replace(message, message_id=message_id)
