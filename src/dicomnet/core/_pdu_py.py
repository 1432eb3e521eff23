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
:func:`encode_pdu` is its inverse. On send, :func:`fragment_message` turns one
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

import struct
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from dicomnet.core._command_tags import COMMAND_TAGS
from dicomnet.core.pdu import (
    DEFAULT_MAX_ASSOCIATE_LENGTH,
    DEFAULT_MAX_PDU_LENGTH,
    PDU,
    UNLIMITED_RECEIVE_CAP,
    UNLIMITED_SEND_PDU_LENGTH,
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
from dicomnet.errors import CommandSetError, PDUError, PDUTooLarge, PDVError, UnrecognizedPDU

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "DEFAULT_MAX_ASSOCIATE_LENGTH",
    "DEFAULT_MAX_PDU_LENGTH",
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
]

# -- wire layouts -------------------------------------------------------------

_PDU_HEADER: Final = struct.Struct(">BxL")
"""PDU-type, reserved, PDU-length (PS3.8 Table 9-11 ff)."""
_PDATA_SINGLE_PDV_HEADER: Final = struct.Struct(">BxLLBB")
"""A P-DATA-TF header followed by the header of its one PDV: 12 bytes."""
_PDV_HEADER: Final = struct.Struct(">LBB")
"""PDV Item-length, presentation context ID, message control header (PS3.8 9.3.5.1, E.2)."""
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
_ELEMENT_HEADER: Final = struct.Struct("<HHL")
"""Group, element, value length of an implicit VR little endian element (PS3.5 7.1.3)."""
_US: Final = struct.Struct("<H")
_UL: Final = struct.Struct("<L")
_AT: Final = struct.Struct("<HH")

_PDU_HEADER_LENGTH: Final = 6
_FIXED_BODY_LENGTH: Final = 4
"""Body length of A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT (PS3.8 9.3.4, 9.3.6-9.3.8)."""
_READER_INITIAL_CAPACITY: Final = (64 << 10) + _PDU_HEADER_LENGTH
_READER_MIN_FREE: Final = 4096
"""Smallest free space get_buffer hands out when no PDU length says otherwise."""
_READER_RETAINED_CAP: Final = (4 << 20) + _PDU_HEADER_LENGTH
"""An empty reader larger than this (and than its P-DATA limit) shrinks back."""
_MAX_UID_LENGTH: Final = 64
_MAX_AE_LENGTH: Final = 16
_MAX_VERSION_NAME_LENGTH: Final = 16
_MAX_ITEM_LENGTH: Final = 0xFFFF

_FIXED_LENGTH_PDUS: Final = frozenset({0x03, 0x05, 0x06, 0x07})
_PDU_NAMES: Final = {
    0x01: "A-ASSOCIATE-RQ",
    0x02: "A-ASSOCIATE-AC",
    0x03: "A-ASSOCIATE-RJ",
    0x04: "P-DATA-TF",
    0x05: "A-RELEASE-RQ",
    0x06: "A-RELEASE-RP",
    0x07: "A-ABORT",
}

_COMMAND_FIELD: Final = 0x00000100
_COMMAND_DATA_SET_TYPE: Final = 0x00000800
_NO_DATA_SET: Final = 0x0101
"""CommandDataSetType value meaning that no dataset follows (PS3.7 Table E.1-1)."""

_CONTROL_COMMAND: Final = 0x01
_CONTROL_LAST: Final = 0x02


def _byte_view(data: ReadableBuffer) -> memoryview:
    """A flat unsigned-byte view of any buffer, without copying it."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


# -- framing --------------------------------------------------------------------


class PDUReader:
    """Frames PDUs out of a byte stream (PS3.8 9.3), for ``asyncio.BufferedProtocol``.

    The reader owns one ``bytearray``. The transport writes into a view of its
    free space (:meth:`get_buffer`, :meth:`buffer_updated`) or copies bytes in
    (:meth:`feed`); :meth:`next_pdu` then returns each complete PDU as a view of
    its body inside that buffer, without copying it.

    Every PDU header is checked before its body is awaited: the PDU type must be
    01H-07H, a P-DATA-TF may not exceed our Maximum Length Received (PS3.8 D.1),
    an A-ASSOCIATE-RQ/AC may not exceed ``max_associate_length``, and the
    fixed-size PDUs must declare a length of 4. The buffer grows only to hold a
    PDU whose header passed these checks, so a hostile length never sizes an
    allocation. After an error the reader is poisoned: every later call raises
    the same error.

    Parameters
    ----------
    max_pdu_length : int
        Largest P-DATA-TF body accepted (our Maximum Length Received,
        PS3.8 D.1). 0 means unlimited, which still caps bodies at
        :data:`~dicomnet.core.pdu.UNLIMITED_RECEIVE_CAP`.
    max_associate_length : int
        Largest A-ASSOCIATE-RQ/AC body accepted.

    Raises
    ------
    ValueError
        If a limit is negative.
    """

    def __init__(
        self,
        max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
        max_associate_length: int = DEFAULT_MAX_ASSOCIATE_LENGTH,
    ) -> None:
        if max_associate_length < 0:
            raise ValueError(f"max_associate_length must be >= 0, not {max_associate_length}")
        self._max_pdu_length = 0
        self.max_pdu_length = max_pdu_length
        self._max_associate_length = max_associate_length
        self._buffer = bytearray(_READER_INITIAL_CAPACITY)
        self._view = memoryview(self._buffer)
        self._start = 0
        """Offset of the first byte not yet returned by next_pdu."""
        self._end = 0
        """Offset just past the last byte received."""
        self._need = 0
        """Total size (header included) of the PDU at _start once its header passed, else 0."""
        self._pdu_type = 0
        self._free = 0
        """Size of the view the last get_buffer handed out."""
        self._error: Exception | None = None

    @property
    def max_pdu_length(self) -> int:
        """Largest P-DATA-TF body accepted; 0 means :data:`UNLIMITED_RECEIVE_CAP`."""
        return self._max_pdu_length

    @max_pdu_length.setter
    def max_pdu_length(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"max_pdu_length must be >= 0, not {value}")
        self._max_pdu_length = value

    @property
    def pending(self) -> int:
        """Bytes held that do not form a complete PDU yet."""
        offset, end = self._start, self._end
        while end - offset >= _PDU_HEADER_LENGTH:
            total = _PDU_HEADER_LENGTH + _PDU_HEADER.unpack_from(self._buffer, offset)[1]
            if end - offset < total:
                break
            offset += total
        return end - offset

    def get_buffer(self, sizehint: int) -> memoryview:
        """A writable view of the free space of the buffer.

        Parameters
        ----------
        sizehint : int
            Ignored; asyncio passes -1 or 0 when it has no opinion. The view
            is sized by the reader: at least the rest of the PDU being received
            when its header is known, else a few KiB.

        Returns
        -------
        memoryview
            At least one writable byte; report what was written with
            :meth:`buffer_updated`. Views returned by :meth:`next_pdu` before
            this call may be overwritten from now on.

        Raises
        ------
        ProtocolError
            If the header of the PDU being received breaks a limit, or the
            reader is poisoned.
        """
        self._raise_if_poisoned()
        self._check_header()
        start, end, need = self._start, self._end, self._need
        held = end - start
        capacity = len(self._buffer)
        want = need if need > held else held + _READER_MIN_FREE
        if capacity - start < want:
            self._relocate(max(capacity, want))
        elif held == 0 and capacity > self._retained_capacity():
            self._buffer = bytearray(_READER_INITIAL_CAPACITY)
            self._view = memoryview(self._buffer)
            self._start = self._end = 0
        end = self._end
        self._free = len(self._buffer) - end
        return self._view[end:]

    def buffer_updated(self, nbytes: int) -> None:
        """Record that ``nbytes`` were written at the start of the last view.

        Raises
        ------
        ValueError
            If ``nbytes`` is negative or larger than the last view.
        """
        self._raise_if_poisoned()
        if not 0 <= nbytes <= self._free:
            raise ValueError(f"buffer_updated({nbytes}) but the last view held {self._free} bytes")
        self._end += nbytes
        self._free = 0

    def feed(self, data: ReadableBuffer) -> None:
        """Copy ``data`` into the reader (for tests and simple users).

        Views returned by :meth:`next_pdu` before this call may be overwritten.

        Raises
        ------
        ProtocolError
            If the reader is poisoned.
        """
        self._raise_if_poisoned()
        view = _byte_view(data)
        size = len(view)
        if not size:
            return
        if self._start == self._end:
            self._start = self._end = 0
        capacity = len(self._buffer)
        if capacity - self._end < size:
            self._relocate(max(capacity, self._end - self._start + size))
        end = self._end
        self._buffer[end : end + size] = view
        self._end = end + size
        self._free = 0

    def next_pdu(self) -> tuple[int, memoryview] | None:
        """The next complete PDU, or ``None`` when more bytes are needed.

        Returns
        -------
        tuple of (int, memoryview) or None
            The PDU type (01H-07H) and its body (the bytes after the 6-byte
            header), a view into the reader's buffer that stays valid until the
            next :meth:`get_buffer` or :meth:`feed`.

        Raises
        ------
        UnrecognizedPDU
            PDU type outside 01H-07H (PS3.8 Evt19).
        PDUTooLarge
            A P-DATA-TF above ``max_pdu_length`` or an A-ASSOCIATE-RQ/AC above
            ``max_associate_length``, found from the header alone.
        PDUError
            An A-ASSOCIATE-RJ, A-RELEASE-RQ/RP or A-ABORT whose length is not 4.
        """
        self._raise_if_poisoned()
        self._check_header()
        need = self._need
        start = self._start
        if not need or self._end - start < need:
            return None
        body = self._view[start + _PDU_HEADER_LENGTH : start + need]
        self._start = start + need
        self._need = 0
        if self._start == self._end:
            self._start = self._end = 0
        return self._pdu_type, body

    def _check_header(self) -> None:
        """Check the header of the PDU at ``_start`` once all 6 bytes are in."""
        if self._need or self._end - self._start < _PDU_HEADER_LENGTH:
            return
        pdu_type, length = _PDU_HEADER.unpack_from(self._buffer, self._start)
        name = _PDU_NAMES.get(pdu_type)
        error: Exception | None = None
        if name is None:
            error = UnrecognizedPDU(f"unrecognized PDU type {pdu_type:02X}H (PS3.8 9.3)")
        elif pdu_type == 0x04:
            limit = self._max_pdu_length or UNLIMITED_RECEIVE_CAP
            if length > limit:
                error = PDUTooLarge(f"P-DATA-TF of {length} bytes exceeds the maximum of {limit}")
        elif pdu_type in _FIXED_LENGTH_PDUS:
            if length != _FIXED_BODY_LENGTH:
                error = PDUError(f"{name} with length {length}, PS3.8 fixes it at 4")
        elif length > self._max_associate_length:
            error = PDUTooLarge(
                f"{name} of {length} bytes exceeds the maximum of {self._max_associate_length}"
            )
        if error is not None:
            self._error = error
            raise error
        self._pdu_type = pdu_type
        self._need = _PDU_HEADER_LENGTH + length

    def _relocate(self, capacity: int) -> None:
        """Move the unconsumed bytes to the front, in a new buffer if needed.

        The old buffer is never resized (views of it may be alive); the move
        stays in place only when source and destination do not overlap.
        """
        start, end = self._start, self._end
        held = end - start
        if capacity == len(self._buffer) and held <= start:
            self._buffer[0:held] = self._view[start:end]
        else:
            buffer = bytearray(capacity)
            buffer[0:held] = self._view[start:end]
            self._buffer = buffer
            self._view = memoryview(buffer)
        self._start = 0
        self._end = held

    def _retained_capacity(self) -> int:
        """Capacity an empty reader keeps instead of shrinking back."""
        limit = min(self._max_pdu_length or UNLIMITED_RECEIVE_CAP, _READER_RETAINED_CAP)
        return max(_READER_INITIAL_CAPACITY, limit + _PDU_HEADER_LENGTH)

    def _raise_if_poisoned(self) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)


# -- P-DATA-TF ------------------------------------------------------------------


def parse_pdata(body: ReadableBuffer) -> list[tuple[int, int, memoryview]]:
    """The PDVs of one P-DATA-TF body (PS3.8 9.3.5).

    Parameters
    ----------
    body : bytes-like
        The PDU body, without the 6-byte header.

    Returns
    -------
    list of (int, int, memoryview)
        ``(context_id, message_control_header, fragment)`` per PDV, in order;
        each fragment is a view of ``body``. Bits 2-7 of the control header are
        passed through unchanged (PS3.8 E.2 says they are not checked).

    Raises
    ------
    PDUError
        An empty body (PS3.8 9.3.5 requires one or more PDVs), a PDV
        item-length below 2, or a PDV overrunning the body.
    """
    view = _byte_view(body)
    size = len(view)
    if not size:
        raise PDUError("P-DATA-TF without any PDV (PS3.8 9.3.5 requires one or more)")
    pdvs: list[tuple[int, int, memoryview]] = []
    append = pdvs.append
    offset = 0
    while offset < size:
        if size - offset < 6:
            raise PDUError(
                f"P-DATA-TF ends with {size - offset} bytes, too short for a PDV header of 6"
            )
        length, context_id, control = _PDV_HEADER.unpack_from(view, offset)
        if length < 2:
            raise PDUError(f"PDV item-length {length}, PS3.8 9.3.5.1 requires at least 2")
        end = offset + 4 + length
        if end > size:
            raise PDUError(
                f"PDV item-length {length} overruns the P-DATA-TF: {size - offset - 4} bytes remain"
            )
        append((context_id, control, view[offset + 6 : end]))
        offset = end
    return pdvs


def fragment_message(
    context_id: int,
    command: ReadableBuffer,
    dataset: ReadableBuffer | None,
    max_pdu_length: int,
) -> list[bytes | memoryview]:
    """The buffers of one ``writelines`` call that send one DIMSE message.

    Each P-DATA-TF PDU holds one PDV (PS3.8 9.3.5, Annex E): command fragments
    first (control header 01H, 03H on the last), then dataset fragments (00H,
    02H on the last). A dataset of length 0 still sends one last fragment, so
    the message completes.

    Parameters
    ----------
    context_id : int
        Presentation context ID (odd, 1-255, by PS3.8 9.3.2.2; 0-255 pass).
    command : bytes-like
        The encoded command set (:func:`encode_command`).
    dataset : bytes-like or None
        The encoded dataset, ``None`` when the command announces none. Any
        buffer works (``bytes``, ``bytearray``, ``memoryview``, ``mmap``).
    max_pdu_length : int
        The peer's Maximum Length Received (PS3.8 D.1): a PDV payload is at
        most ``max_pdu_length - 6``, rounded down to even. 0 means unlimited
        and sends PDUs of :data:`~dicomnet.core.pdu.UNLIMITED_SEND_PDU_LENGTH`.

    Returns
    -------
    list of bytes and memoryview
        Per PDU a 12-byte ``bytes`` header (PDU header and PDV header) and one
        ``memoryview`` slice of ``command`` or ``dataset``; payloads are
        never copied.

    Raises
    ------
    ValueError
        ``max_pdu_length`` negative or 1-7 (no room for a 2-byte fragment), or
        ``context_id`` outside 0-255.
    """
    if max_pdu_length == 0:
        max_pdu_length = UNLIMITED_SEND_PDU_LENGTH
    elif not 8 <= max_pdu_length:
        raise ValueError(
            f"max_pdu_length {max_pdu_length} leaves no room for a PDV (0 or >= 8 expected)"
        )
    if not 0 <= context_id <= 0xFF:
        raise ValueError(f"presentation context ID {context_id} outside 0-255")
    payload = (min(max_pdu_length, 0xFFFFFFFF) - 6) & ~1
    buffers: list[bytes | memoryview] = []
    _fragment_into(buffers, context_id, _byte_view(command), _CONTROL_COMMAND, payload)
    if dataset is not None:
        _fragment_into(buffers, context_id, _byte_view(dataset), 0, payload)
    return buffers


def _fragment_into(
    buffers: list[bytes | memoryview], context_id: int, data: memoryview, control: int, payload: int
) -> None:
    """Append the PDUs carrying ``data`` as command or dataset fragments."""
    pack = _PDATA_SINGLE_PDV_HEADER.pack
    size = len(data)
    offset = 0
    while True:
        chunk = min(payload, size - offset)
        end = offset + chunk
        flags = control | _CONTROL_LAST if end == size else control
        buffers.append(pack(0x04, chunk + 6, chunk + 2, context_id, flags))
        buffers.append(data[offset:end])
        offset = end
        if offset == size:
            return


class _DatasetSink(Protocol):
    """Where :class:`Assembler` streams dataset fragments."""

    def write(self, buffer: memoryview, /) -> object:
        """Consume ``buffer`` before returning (it is reused afterwards)."""


class Assembler:
    """Reassembles DIMSE messages from P-DATA-TF bodies (PS3.8 Annex E).

    One assembler serves one association. Command fragments gather in memory
    up to ``max_command_length``; when the last one arrives the command set is
    decoded and, if it announces a dataset, :attr:`on_command` may supply a sink
    that receives each dataset fragment as it arrives, so a large dataset is
    never held in memory. Without a sink the dataset gathers in a
    ``bytearray``.

    After any error the assembler is poisoned: later calls raise the same error.

    Parameters
    ----------
    max_command_length : int
        Largest command set accepted, in bytes.

    Attributes
    ----------
    on_command : callable or None
        ``on_command(context_id, command)``, called when a command set that
        announces a dataset completes; returns a sink (an object whose
        ``write(buffer)`` consumes the view before returning) or ``None`` to
        collect the dataset in memory. A sink must not raise; if it does, the
        exception propagates and the assembler stays poisoned.
    context_ids : container of int or None
        When set, a PDV on any other presentation context ID raises
        :class:`~dicomnet.errors.PDVError` (PS3.8 Annex E: only accepted
        contexts carry data).
    max_dataset_length : int
        Largest dataset written to a sink, in bytes (0 = no limit): a peer
        that never sets the last-fragment bit is stopped here.
    max_buffered_dataset_length : int
        Largest dataset gathered in memory, in bytes (0 = no limit).
    """

    def __init__(self, max_command_length: int = 65536) -> None:
        if max_command_length < 0:
            raise ValueError(f"max_command_length must be >= 0, not {max_command_length}")
        self.on_command: Callable[[int, dict[int, object]], _DatasetSink | None] | None = None
        self.context_ids: Container[int] | None = None
        self.max_dataset_length = 0
        self.max_buffered_dataset_length = 0
        self._max_command_length = max_command_length
        self._received = 0
        self._context_id = -1
        """Context ID of the message in progress, -1 between messages."""
        self._command_bytes = bytearray()
        self._command: dict[int, object] | None = None
        """The decoded command set while its dataset is being received."""
        self._sink: _DatasetSink | None = None
        self._dataset = bytearray()
        self._after_no_dataset = False
        """The last message was a command announcing no dataset."""
        self._error: BaseException | None = None

    @property
    def in_message(self) -> bool:
        """Part of a message has arrived and its last fragment has not."""
        return self._context_id >= 0

    def feed(self, body: ReadableBuffer) -> list[tuple[int, dict[int, object], object]]:
        """Take one P-DATA-TF body; return the messages it completed.

        Parameters
        ----------
        body : bytes-like
            A P-DATA-TF body as returned by :meth:`PDUReader.next_pdu`.

        Returns
        -------
        list of (int, dict, object)
            ``(context_id, command, dataset)`` per completed message, in order:
            ``dataset`` is ``None`` when CommandDataSetType (0000,0800) is
            0101H, else the sink from :attr:`on_command`, else a ``bytearray``.

        Raises
        ------
        PDUError
            From :func:`parse_pdata`.
        PDVError
            A dataset fragment before the command completed or after a command
            announcing no dataset, a command fragment while a dataset is
            expected, a context ID change inside one message, a context ID not
            in :attr:`context_ids`, an odd fragment length (PS3.8 E.1), command
            bytes past ``max_command_length``.
        CommandSetError
            From :func:`decode_command`, or a command set without
            CommandDataSetType (PS3.7 Table E.1-1 requires it).
        """
        if self._error is not None:
            raise self._error.with_traceback(None)
        try:
            return self._feed(body)
        except BaseException as error:
            self._error = error
            raise

    def _feed(self, body: ReadableBuffer) -> list[tuple[int, dict[int, object], object]]:
        completed: list[tuple[int, dict[int, object], object]] = []
        allowed = self.context_ids
        for context_id, control, fragment in parse_pdata(body):
            if allowed is not None and context_id not in allowed:
                raise PDVError(f"PDV on presentation context {context_id}, which is not accepted")
            if len(fragment) & 1:
                raise PDVError(
                    f"fragment of odd length {len(fragment)} (PS3.8 E.1 requires an even length)"
                )
            if self._context_id < 0:
                self._start_message(context_id, control)
            elif context_id != self._context_id:
                raise PDVError(
                    f"presentation context changed from {self._context_id} to {context_id} "
                    "inside one message (PS3.8 E.1)"
                )
            if control & _CONTROL_COMMAND:
                message = self._command_fragment(context_id, control, fragment)
            else:
                message = self._dataset_fragment(context_id, control, fragment)
            if message is not None:
                completed.append(message)
        return completed

    def _start_message(self, context_id: int, control: int) -> None:
        if not control & _CONTROL_COMMAND:
            if self._after_no_dataset:
                raise PDVError("dataset fragment after a command announcing no dataset")
            raise PDVError("dataset fragment before any command fragment (PS3.8 E.1)")
        self._context_id = context_id
        self._after_no_dataset = False

    def _command_fragment(
        self, context_id: int, control: int, fragment: memoryview
    ) -> tuple[int, dict[int, object], object] | None:
        if self._command is not None:
            raise PDVError("command fragment while dataset fragments are expected (PS3.8 E.1)")
        if len(self._command_bytes) + len(fragment) > self._max_command_length:
            raise PDVError(f"command set longer than {self._max_command_length} bytes")
        self._command_bytes += fragment
        if not control & _CONTROL_LAST:
            return None
        command = decode_command(self._command_bytes)
        self._command_bytes = bytearray()
        data_set_type = command.get(_COMMAND_DATA_SET_TYPE)
        if data_set_type is None:
            raise CommandSetError("command set without CommandDataSetType (0000,0800)")
        if data_set_type == _NO_DATA_SET:
            self._context_id = -1
            self._after_no_dataset = True
            return context_id, command, None
        self._command = command
        self._sink = self.on_command(context_id, command) if self.on_command is not None else None
        self._received = 0
        return None

    def _dataset_fragment(
        self, context_id: int, control: int, fragment: memoryview
    ) -> tuple[int, dict[int, object], object] | None:
        command = self._command
        if command is None:
            raise PDVError("dataset fragment before the last command fragment (PS3.8 E.1)")
        sink = self._sink
        self._received += len(fragment)
        limit = self.max_dataset_length if sink is not None else self.max_buffered_dataset_length
        if limit and self._received > limit:
            raise PDVError(f"dataset longer than {limit} bytes")
        if sink is not None:
            sink.write(fragment)
        else:
            self._dataset += fragment
        if not control & _CONTROL_LAST:
            return None
        dataset: object = sink
        if sink is None:
            dataset = self._dataset
            self._dataset = bytearray()
        self._command = None
        self._sink = None
        self._context_id = -1
        return context_id, command, dataset


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


def _check_range(value: int, maximum: int, what: str) -> int:
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} {value} outside 0-{maximum}")
    return value


def _encode_text(value: str, what: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} is not latin-1 text") from None


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


# -- DIMSE command sets ------------------------------------------------------------


def _encode_us(value: object, tag: int) -> bytes:
    return _US.pack(_check_range(_as_int(value, tag), 0xFFFF, f"US value of {tag:08X}"))


def _encode_ul(value: object, tag: int) -> bytes:
    return _UL.pack(_check_range(_as_int(value, tag), 0xFFFFFFFF, f"UL value of {tag:08X}"))


def _encode_at(value: object, tag: int) -> bytes:
    tags = (value,) if isinstance(value, int) else value
    if not isinstance(tags, Sequence):
        raise ValueError(f"AT value of (0000,{tag:04X}) must be a tuple of tags")
    parts = []
    for item in tags:
        at = _check_range(_as_int(item, tag), 0xFFFFFFFF, f"AT value of {tag:08X}")
        parts.append(_AT.pack(at >> 16, at & 0xFFFF))
    return b"".join(parts)


def _encode_ui(value: object, tag: int) -> bytes:
    raw = _encode_text(_as_str(value, tag), f"UI value of {tag:08X}")
    return raw + b"\0" if len(raw) & 1 else raw


def _encode_string(value: object, tag: int) -> bytes:
    raw = _encode_text(_as_str(value, tag), f"text value of {tag:08X}")
    return raw + b" " if len(raw) & 1 else raw


def _as_int(value: object, tag: int) -> int:
    if not isinstance(value, int):
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) needs an int, not {value!r}")
    return value


def _as_str(value: object, tag: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) needs a str, not {value!r}")
    return value


def _decode_us(value: memoryview, tag: int) -> int:
    if len(value) != 2:
        raise CommandSetError(f"US element (0000,{tag:04X}) of length {len(value)}, not 2")
    return int(_US.unpack_from(value)[0])


def _decode_ul(value: memoryview, tag: int) -> int:
    if len(value) != 4:
        raise CommandSetError(f"UL element (0000,{tag:04X}) of length {len(value)}, not 4")
    return int(_UL.unpack_from(value)[0])


def _decode_at(value: memoryview, tag: int) -> tuple[int, ...]:
    if len(value) % 4:
        raise CommandSetError(
            f"AT element (0000,{tag:04X}) of length {len(value)}, not a multiple of 4"
        )
    return tuple((group << 16) | element for group, element in _AT.iter_unpack(value))


def _decode_ui(value: memoryview, tag: int) -> str:
    return str(value, "latin-1").rstrip("\0 ")


def _decode_string(value: memoryview, tag: int) -> str:
    return str(value, "latin-1").rstrip(" ")


_VALUE_CODECS: Final[
    Mapping[str, tuple[Callable[[object, int], bytes], Callable[[memoryview, int], object]]]
] = {
    # VR: (encoder, decoder), PS3.5 Table 6.2-1 and 7.1.3
    "US": (_encode_us, _decode_us),
    "UL": (_encode_ul, _decode_ul),
    "AT": (_encode_at, _decode_at),
    "UI": (_encode_ui, _decode_ui),
    "AE": (_encode_string, _decode_string),
    "CS": (_encode_string, _decode_string),
    "IS": (_encode_string, _decode_string),
    "LO": (_encode_string, _decode_string),
    "LT": (_encode_string, _decode_string),
    "SH": (_encode_string, _decode_string),
}


def encode_command(fields: Mapping[int, object]) -> bytes:
    """Encode a DIMSE command set, implicit VR little endian (PS3.7 6.3.1, Annex E).

    Parameters
    ----------
    fields : mapping of int to value
        Tag (``0x00000100``) to value: ``int`` for US and UL, ``str`` for UI
        (padded with NUL to even length) and for AE, CS, IS, LO, LT, SH (padded
        with space), a tuple of 32-bit tags for AT, ``bytes`` written as is
        (padded with NUL to even). A value given for CommandGroupLength
        (0000,0000) is ignored: it is computed.

    Returns
    -------
    bytes
        CommandGroupLength first, then the elements sorted by tag.

    Raises
    ------
    ValueError
        A tag outside group 0000, a tag outside :data:`COMMAND_TAGS` with a
        non-bytes value, a value of the wrong type for its VR, or an integer
        out of range.
    """
    parts: list[bytes] = []
    for tag in sorted(fields):
        if not 0 <= tag <= 0xFFFF:
            raise ValueError(f"tag {tag:08X} is not a command element of group 0000")
        if tag == 0:
            continue
        value = fields[tag]
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) & 1:
                raw += b"\0"
        else:
            entry = COMMAND_TAGS.get(tag)
            if entry is None:
                raise ValueError(f"(0000,{tag:04X}) is not a known command element: give bytes")
            raw = _VALUE_CODECS[entry[0]][0](value, tag)
        parts.append(_ELEMENT_HEADER.pack(0, tag, len(raw)))
        parts.append(raw)
    elements = b"".join(parts)
    return _ELEMENT_HEADER.pack(0, 0, 4) + _UL.pack(len(elements)) + elements


def decode_command(data: ReadableBuffer) -> dict[int, object]:
    """Decode a DIMSE command set, implicit VR little endian (PS3.7 6.3.1, Annex E).

    Parameters
    ----------
    data : bytes-like
        The whole command set.

    Returns
    -------
    dict of int to value
        Tag to value, without CommandGroupLength: ``int`` for US and UL,
        ``str`` for UI (trailing NULs and spaces dropped) and the text VRs
        (trailing spaces dropped), a tuple of 32-bit tags for AT, ``bytes`` for
        unknown group 0000 elements.

    Raises
    ------
    CommandSetError
        A truncated element, a tag outside group 0000, a duplicate or unsorted
        tag, a CommandGroupLength that does not match, a US value whose length
        is not 2, a UL value whose length is not 4, an AT value whose length is
        not a multiple of 4, a value length past the end, or no CommandField
        (0000,0100).
    """
    view = _byte_view(data)
    size = len(view)
    command: dict[int, object] = {}
    offset = 0
    previous = -1
    while offset < size:
        if size - offset < 8:
            raise CommandSetError(f"command set ends inside an element header at byte {offset}")
        group, tag, length = _ELEMENT_HEADER.unpack_from(view, offset)
        offset += 8
        if group:
            raise CommandSetError(
                f"element ({group:04X},{tag:04X}) outside group 0000 in a command set"
            )
        if tag <= previous:
            order = "duplicate" if tag == previous else "out of order"
            raise CommandSetError(f"command element (0000,{tag:04X}) {order}")
        previous = tag
        if length > size - offset:
            raise CommandSetError(
                f"command element (0000,{tag:04X}) of length {length} overruns the "
                f"command set ({size - offset} bytes remain)"
            )
        value = view[offset : offset + length]
        offset += length
        if tag == 0:
            group_length = _decode_ul(value, 0)
            if group_length != size - offset:
                raise CommandSetError(
                    f"CommandGroupLength {group_length} but {size - offset} bytes follow it"
                )
            continue
        entry = COMMAND_TAGS.get(tag)
        if entry is None:
            command[tag] = bytes(value)
        else:
            command[tag] = _VALUE_CODECS[entry[0]][1](value, tag)
    if _COMMAND_FIELD not in command:
        raise CommandSetError("command set without CommandField (0000,0100)")
    return command
