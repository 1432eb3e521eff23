"""DIMSE status codes and their classes (PS3.7 Annex C, PS3.4 service annexes).

The class of a status decides what a service user does next (wait for more,
stop, report), so :func:`status_class` follows PS3.7 C.1 exactly; the names
table only serves messages and logs.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "CANCEL",
    "CANNOT_UNDERSTAND",
    "CLASS_INSTANCE_CONFLICT",
    "DATASET_DOES_NOT_MATCH",
    "DATASET_MISMATCH_WARNING",
    "DUPLICATE_SOP_INSTANCE",
    "ELEMENTS_DISCARDED",
    "INVALID_ARGUMENT_VALUE",
    "INVALID_ATTRIBUTE_VALUE",
    "INVALID_OBJECT_INSTANCE",
    "MISSING_ATTRIBUTE",
    "MOVE_DESTINATION_UNKNOWN",
    "NO_SUCH_ACTION",
    "NO_SUCH_EVENT_TYPE",
    "NO_SUCH_SOP_INSTANCE",
    "OUT_OF_RESOURCES",
    "PENDING",
    "PENDING_WARNING",
    "PROCESSING_FAILURE",
    "STORED_STATUSES",
    "SUCCESS",
    "UNABLE_TO_PERFORM_SUBOPERATIONS",
    "WARNING",
    "StatusClass",
    "describe_status",
    "status_class",
]

SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WARNING = 0xFF01
CANCEL = 0xFE00
"""The request was cancelled by C-CANCEL (PS3.7 9.3.2.3)."""

# Failures common to the DIMSE-N services (PS3.7 C.4), also used by C-STORE.
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
NO_SUCH_EVENT_TYPE = 0x0113
INVALID_ARGUMENT_VALUE = 0x0115
INVALID_OBJECT_INSTANCE = 0x0117
CLASS_INSTANCE_CONFLICT = 0x0119
MISSING_ATTRIBUTE = 0x0120
NO_SUCH_ACTION = 0x0123

# Service-class statuses (PS3.4 B.2.3 storage, C.4 query/retrieve).
OUT_OF_RESOURCES = 0xA700
UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
DATASET_DOES_NOT_MATCH = 0xA900
"""C-STORE: the data set does not match the SOP class; C-FIND, C-MOVE, C-GET:
the identifier does not."""
WARNING = 0xB000
"""C-STORE: coercion of data elements (dicomnet: a duplicate kept, so what is
stored is not what was just sent); C-MOVE, C-GET: sub-operations complete
with one or more failures."""
ELEMENTS_DISCARDED = 0xB006
DATASET_MISMATCH_WARNING = 0xB007
CANNOT_UNDERSTAND = 0xC000
"""C-STORE: cannot understand; C-FIND, C-MOVE, C-GET: unable to process."""

STORED_STATUSES = frozenset({SUCCESS, WARNING, ELEMENTS_DISCARDED, DATASET_MISMATCH_WARNING})
"""C-STORE statuses after which the provider holds the instance."""


class StatusClass(Enum):
    """What a status means for the exchange (PS3.7 C.1)."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


STATUS_NAMES: dict[int, str] = {
    0x0000: "Success",
    0x0001: "Warning: requested optional attributes are not supported",
    0x0105: "No such attribute",
    0x0106: "Invalid attribute value",
    0x0107: "Warning: attribute list error",
    0x0110: "Processing failure",
    0x0111: "Duplicate SOP instance",
    0x0112: "No such SOP instance",
    0x0113: "No such event type",
    0x0114: "No such argument",
    0x0115: "Invalid argument value",
    0x0116: "Warning: attribute value out of range",
    0x0117: "Invalid object instance",
    0x0118: "No such SOP class",
    0x0119: "Class-instance conflict",
    0x0120: "Missing attribute",
    0x0121: "Missing attribute value",
    0x0122: "Refused: SOP class not supported",
    0x0123: "No such action",
    0x0124: "Refused: not authorized",
    0x0210: "Duplicate invocation",
    0x0211: "Unrecognized operation",
    0x0212: "Mistyped argument",
    0x0213: "Resource limitation",
    0xA700: "Refused: out of resources",
    0xA701: "Refused: out of resources, unable to calculate number of matches",
    0xA702: "Refused: out of resources, unable to perform sub-operations",
    0xA801: "Refused: move destination unknown",
    0xA900: "Error: data set does not match SOP class",
    0xB000: "Warning: coercion of data elements, or sub-operations complete with failures",
    0xB006: "Warning: elements discarded",
    0xB007: "Warning: data set does not match SOP class",
    0xC000: "Error: cannot understand",
    0xFE00: "Cancel",
    0xFF00: "Pending",
    0xFF01: "Pending: optional keys not supported",
}


def status_class(code: int) -> StatusClass:
    """The class of a status code (PS3.7 C.1.1 to C.1.5, PS3.4 service tables)."""
    if code == SUCCESS:
        return StatusClass.SUCCESS
    if code in (PENDING, PENDING_WARNING):
        return StatusClass.PENDING
    if code == CANCEL:
        return StatusClass.CANCEL
    if code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        return StatusClass.WARNING
    return StatusClass.FAILURE


def describe_status(code: int) -> str:
    """``0xA700 Refused: out of resources``, or the class when the code is not named."""
    name = STATUS_NAMES.get(code)
    if name is None:
        prefix = code >> 12
        name = {0xA: "Refused/failure", 0xC: "Error: cannot understand"}.get(
            prefix, status_class(code).value.capitalize()
        )
    return f"0x{code:04X} {name}"
