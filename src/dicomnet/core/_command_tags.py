"""The DIMSE command-set elements of group 0000 (PS3.7 Annex E).

Both codecs read this table to learn the VR of each command element: a
command set is always implicit VR little endian (PS3.7 6.3.1), so the VR is not
on the wire and must come from here. The table holds the elements of PS3.7
Table E.1-1 and the retired ones of Table E.2-1, because an old peer may still
send them and a receiver must decode what it gets.

Keys are the 32-bit tag as an int (``0x00000100`` is CommandField); values are
``(VR, keyword)`` with the keyword spelled as in PS3.6.
"""

from __future__ import annotations

from typing import Final

__all__ = ["COMMAND_TAGS", "TAG_BY_KEYWORD"]

COMMAND_TAGS: Final[dict[int, tuple[str, str]]] = {
    # PS3.7 Table E.1-1, Command Fields
    0x00000000: ("UL", "CommandGroupLength"),
    0x00000002: ("UI", "AffectedSOPClassUID"),
    0x00000003: ("UI", "RequestedSOPClassUID"),
    0x00000100: ("US", "CommandField"),
    0x00000110: ("US", "MessageID"),
    0x00000120: ("US", "MessageIDBeingRespondedTo"),
    0x00000600: ("AE", "MoveDestination"),
    0x00000700: ("US", "Priority"),
    0x00000800: ("US", "CommandDataSetType"),
    0x00000900: ("US", "Status"),
    0x00000901: ("AT", "OffendingElement"),
    0x00000902: ("LO", "ErrorComment"),
    0x00000903: ("US", "ErrorID"),
    0x00001000: ("UI", "AffectedSOPInstanceUID"),
    0x00001001: ("UI", "RequestedSOPInstanceUID"),
    0x00001002: ("US", "EventTypeID"),
    0x00001005: ("AT", "AttributeIdentifierList"),
    0x00001008: ("US", "ActionTypeID"),
    0x00001020: ("US", "NumberOfRemainingSuboperations"),
    0x00001021: ("US", "NumberOfCompletedSuboperations"),
    0x00001022: ("US", "NumberOfFailedSuboperations"),
    0x00001023: ("US", "NumberOfWarningSuboperations"),
    0x00001030: ("AE", "MoveOriginatorApplicationEntityTitle"),
    0x00001031: ("US", "MoveOriginatorMessageID"),
    # PS3.7 Table E.2-1, Retired Command Fields
    0x00000001: ("UL", "CommandLengthToEnd"),
    0x00000010: ("SH", "CommandRecognitionCode"),
    0x00000200: ("AE", "Initiator"),
    0x00000300: ("AE", "Receiver"),
    0x00000400: ("AE", "FindLocation"),
    0x00000850: ("US", "NumberOfMatches"),
    0x00000860: ("US", "ResponseSequenceNumber"),
    0x00004000: ("LT", "DialogReceiver"),
    0x00004010: ("LT", "TerminalType"),
    0x00005010: ("SH", "MessageSetID"),
    0x00005020: ("SH", "EndMessageID"),
    0x00005110: ("LT", "DisplayFormat"),
    0x00005120: ("LT", "PagePositionID"),
    0x00005130: ("CS", "TextFormatID"),
    0x00005140: ("CS", "NormalReverse"),
    0x00005150: ("CS", "AddGrayScale"),
    0x00005160: ("CS", "Borders"),
    0x00005170: ("IS", "Copies"),
    0x00005180: ("CS", "CommandMagnificationType"),
    0x00005190: ("CS", "Erase"),
    0x000051A0: ("CS", "Print"),
    0x000051B0: ("US", "Overlays"),
}
"""Tag -> (VR, keyword) for every command element of PS3.7 Annex E."""

TAG_BY_KEYWORD: Final[dict[str, int]] = {keyword: tag for tag, (_, keyword) in COMMAND_TAGS.items()}
"""Keyword -> tag, the inverse of :data:`COMMAND_TAGS`."""
