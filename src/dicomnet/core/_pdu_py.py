"""The pure-Python PDU codec: framing, P-DATA, association PDUs, command sets.

Theory of operation
-------------------
Bytes from the peer land in the buffer of a :class:`PDUReader`, which cuts
them into PDUs (PS3.8 9.3) after checking each 6-byte header against our
limits, so no buffer is ever sized from a length the peer chose and we did not
check. A P-DATA-TF body goes to :class:`Assembler`, which splits it into PDVs
(:func:`parse_pdata`), enforces the fragmentation rules of PS3.8 Annex E and
hands back whole DIMSE messages: the command set decoded by
:func:`decode_command` (PS3.7 6.3, Annex E) and the dataset either streamed
into a sink or gathered in memory. Association set-up PDUs go through
:func:`decode_pdu` into the value types of :mod:`dicomnet.core.pdu`, and
:func:`encode_pdu` is its inverse. A received dataset's start is checked
against PS3.5 section 7 and its wanted attributes found by
:func:`walk_elements` (:mod:`dicomnet.core.elements`). On send, :func:`fragment_message` turns one
DIMSE message into the list of buffers of one ``writelines`` call without
copying the payload.

Fragments are ``memoryview`` slices of the buffer they arrived in; nothing on
the P-DATA path copies a payload except the in-memory dataset collection.

Errors
------
Peer input raises only :class:`~dicomnet.errors.ProtocolError` subclasses
(:class:`~dicomnet.errors.PDUError`, :class:`~dicomnet.errors.PDVError`,
:class:`~dicomnet.errors.CommandSetError`...), each carrying the A-ABORT source
and reason to send. Local mistakes (a value that cannot be encoded) raise
``ValueError`` or ``TypeError``.

This module holds the canonical documentation of the codec API; the compiled
``dicomnet.core._pdu`` mirrors it exactly.
"""

from __future__ import annotations

from dicomnet.core._pdu_associate import decode_pdu, encode_pdu
from dicomnet.core._pdu_command import decode_command, encode_command
from dicomnet.core._pdu_data import (
    PUMP_DIGEST,
    Assembler,
    PDUReader,
    fragment_message,
    parse_pdata,
)
from dicomnet.core.elements import walk_elements
from dicomnet.core.pdu import (
    DEFAULT_MAX_ASSOCIATE_LENGTH,
    DEFAULT_MAX_PDU_LENGTH,
    UNLIMITED_RECEIVE_CAP,
    UNLIMITED_SEND_PDU_LENGTH,
)

__all__ = [
    "DEFAULT_MAX_ASSOCIATE_LENGTH",
    "DEFAULT_MAX_PDU_LENGTH",
    "PUMP_DIGEST",
    "UNLIMITED_RECEIVE_CAP",
    "UNLIMITED_SEND_PDU_LENGTH",
    "Assembler",
    "PDUReader",
    "decode_command",
    "decode_pdu",
    "encode_command",
    "encode_pdu",
    "fragment_message",
    "parse_pdata",
    "walk_elements",
]
