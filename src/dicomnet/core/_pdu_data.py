"""The data phase of the pure codec: framing, P-DATA-TF, reassembly and the pump.

Part of the pure codec (:mod:`dicomnet.core._pdu_py` re-exports it and
documents the whole API); every byte of an established association's data
phase goes through this module, association set-up goes through
:mod:`dicomnet.core._pdu_associate`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any, Final, Protocol

from dicomnet.core._pdu_command import _byte_view, decode_command
from dicomnet.core.pdu import (
    DEFAULT_MAX_ASSOCIATE_LENGTH,
    DEFAULT_MAX_PDU_LENGTH,
    UNLIMITED_RECEIVE_CAP,
    UNLIMITED_SEND_PDU_LENGTH,
)
from dicomnet.errors import CommandSetError, PDUError, PDUTooLarge, PDVError, UnrecognizedPDU

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["PUMP_DIGEST", "Assembler", "PDUReader", "fragment_message", "parse_pdata"]

PUMP_DIGEST: Final = True
"""The assembler computes SHA-256 while it writes a dataset for a file sink that wants one."""

_PDU_HEADER: Final = struct.Struct(">BxL")
"""PDU-type, reserved, PDU-length (PS3.8 Table 9-11 ff)."""
_PDATA_SINGLE_PDV_HEADER: Final = struct.Struct(">BxLLBB")
"""A P-DATA-TF header followed by the header of its one PDV: 12 bytes."""
_PDV_HEADER: Final = struct.Struct(">LBB")
"""PDV Item-length, presentation context ID, message control header (PS3.8 9.3.5.1, E.2)."""

_PDU_HEADER_LENGTH: Final = 6
_FIXED_BODY_LENGTH: Final = 4
"""Body length of A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT (PS3.8 9.3.4, 9.3.6-9.3.8)."""
_READER_INITIAL_CAPACITY: Final = (64 << 10) + _PDU_HEADER_LENGTH
_READER_MIN_FREE: Final = 4096
"""Smallest free space get_buffer hands out when no PDU length says otherwise."""
_READER_RETAINED_CAP: Final = (4 << 20) + _PDU_HEADER_LENGTH
"""An empty reader larger than this (and than its P-DATA limit) shrinks back."""
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

_COMMAND_DATA_SET_TYPE: Final = 0x00000800
_NO_DATA_SET: Final = 0x0101
"""CommandDataSetType value meaning that no dataset follows (PS3.7 Table E.1-1)."""

_CONTROL_COMMAND: Final = 0x01
_CONTROL_LAST: Final = 0x02


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
    """Where :class:`Assembler` streams dataset fragments through Python."""

    def write(self, buffer: memoryview, /) -> object:
        """Consume ``buffer`` before returning (it is reused afterwards)."""


class _FileSink(Protocol):
    """A sink the codec writes to itself: an open file and one call at the end.

    The dataset's fragments go to :meth:`fileno` with ``write``/``writev``
    straight from the receive buffer, so no Python object exists per
    fragment; the first ``head_length`` bytes are also kept in memory, for
    reading the dataset's header without reopening the file.
    """

    head_length: int
    wants_digest: bool

    def fileno(self) -> int:
        """The open file descriptor, positioned where the dataset starts."""

    def finished(self, size: int, error: int, digest: bytes, head: bytes, /) -> object:
        """The last fragment arrived: ``size`` bytes received, ``error`` the errno
        of the first failed write (0: every byte is in the file; after a failure
        the remaining fragments were dropped), ``digest`` the SHA-256 of the
        dataset when :attr:`wants_digest` asked for it (else ``b""``), ``head``
        its first ``head_length`` bytes. Must not raise."""


_WRITE_BATCH: Final = 64
"""Fragments gathered into one ``writev``."""


class Assembler:
    """Reassembles DIMSE messages from P-DATA-TF bodies (PS3.8 Annex E).

    One assembler serves one association. Command fragments gather in memory
    up to ``max_command_length``; when the last one arrives the command set is
    decoded and, if it announces a dataset, :attr:`on_command` may supply a sink
    that receives each dataset fragment as it arrives, so a large dataset is
    never held in memory. Without a sink the dataset gathers in a
    ``bytearray``.

    A sink with a ``fileno()`` method (see :meth:`pump`) is written by the
    assembler itself: fragments that arrive together go to the file in one
    ``writev`` (the compiled codec releases the GIL around it and around the
    digest), and the sink hears only ``finished(size, error, digest, head)``
    once, when the last fragment is in. A failed write never raises: its
    errno reaches ``finished`` and the rest of the dataset is dropped, so the
    association goes on and the handler can answer A700.

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
        ``write(buffer)`` consumes the view before returning, or a file sink
        with ``fileno()``, ``head_length``, ``wants_digest`` and ``finished()``;
        :data:`PUMP_DIGEST` says whether this codec can hash) or ``None`` to
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
    pumped : int
        P-DATA-TF PDUs consumed by :meth:`pump` so far (activity, for idle timers).
    """

    def __init__(self, max_command_length: int = 65536) -> None:
        if max_command_length < 0:
            raise ValueError(f"max_command_length must be >= 0, not {max_command_length}")
        self.on_command: Callable[[int, dict[int, object]], object] | None = None
        self.context_ids: Container[int] | None = None
        self.max_dataset_length = 0
        self.max_buffered_dataset_length = 0
        self.pumped = 0
        self._max_command_length = max_command_length
        self._received = 0
        self._context_id = -1
        """Context ID of the message in progress, -1 between messages."""
        self._command_bytes = bytearray()
        self._command: dict[int, object] | None = None
        """The decoded command set while its dataset is being received."""
        self._sink: Any = None
        self._fd = -1
        """The file sink's descriptor while its dataset is being received, else -1."""
        self._pending: list[memoryview] = []
        """Fragments for the file sink not yet written (views of the current input)."""
        self._write_error = 0
        self._hash: Any = None
        self._head = bytearray()
        self._head_length = 0
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
            bytes past ``max_command_length``, dataset bytes past the limit.
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
        finally:
            self._flush()

    def pump(self, reader: PDUReader) -> list[tuple[int, dict[int, object], object]] | None:
        """Consume every whole P-DATA-TF PDU in ``reader``'s buffer, up to the
        first that completes a message.

        The data phase in one call per receive buffer: PDUs are framed, their
        PDVs checked and reassembled as by :meth:`feed`, and dataset fragments
        for a file sink written to its file, without returning to the caller.
        Use it only where PS3.8 Table 9-10 makes a P-DATA-TF an indication
        (Sta6, Sta7 and the release states that still receive data); any other
        PDU, a header that breaks a limit, or an incomplete PDU stops the pump
        and stays in the reader for :meth:`PDUReader.next_pdu`, so the state
        table still answers it.

        Returns
        -------
        list of (int, dict, object) or None
            The messages completed by the last PDU consumed, as :meth:`feed`
            returns them, or ``None`` when the reader holds no further whole
            P-DATA-TF PDU.

        Raises
        ------
        ProtocolError
            As :meth:`feed`; the PDU at fault is consumed and the assembler
            poisoned.
        """
        if self._error is not None:
            raise self._error.with_traceback(None)
        try:
            while True:
                if reader._error is not None:
                    return None
                try:
                    reader._check_header()
                except PDUError:
                    return None  # the reader is poisoned: next_pdu raises it for Evt19
                need = reader._need
                if not need or reader._pdu_type != 0x04 or reader._end - reader._start < need:
                    return None
                item = reader.next_pdu()
                assert item is not None
                self.pumped += 1
                completed = self._feed(item[1])
                if completed:
                    return completed
        except BaseException as error:
            self._error = error
            raise
        finally:
            self._flush()

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
        sink = self.on_command(context_id, command) if self.on_command is not None else None
        self._sink = sink
        self._received = 0
        fileno = getattr(sink, "fileno", None)
        if fileno is not None:
            self._fd = fileno()
            self._write_error = 0
            self._head_length = int(getattr(sink, "head_length", 0))
            self._head = bytearray()
            self._hash = hashlib.sha256() if getattr(sink, "wants_digest", False) else None
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
        if self._fd >= 0:
            self._to_file(fragment)
        elif sink is not None:
            sink.write(fragment)
        else:
            self._dataset += fragment
        if not control & _CONTROL_LAST:
            return None
        dataset: object = sink
        if sink is None:
            dataset = self._dataset
            self._dataset = bytearray()
        elif self._fd >= 0:
            self._flush()
            digest = b"" if self._hash is None else self._hash.digest()
            self._fd = -1
            self._hash = None
            head, self._head = bytes(self._head), bytearray()
            sink.finished(self._received, self._write_error, digest, head)
        self._command = None
        self._sink = None
        self._context_id = -1
        return context_id, command, dataset

    def _to_file(self, fragment: memoryview) -> None:
        """Queue a fragment for the file sink; hash it and keep the head."""
        if self._write_error:
            return  # a write failed: the rest of the dataset is dropped
        missing = self._head_length - len(self._head)
        if missing > 0:
            self._head += fragment[:missing]
        if self._hash is not None:
            self._hash.update(fragment)
        self._pending.append(fragment)
        if len(self._pending) >= _WRITE_BATCH:
            self._flush()

    def _flush(self) -> None:
        """Write the queued fragments with writev, to the end; record the first failure."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._write_error or self._fd < 0:
            return
        try:
            while pending:
                written = os.writev(self._fd, pending)
                while pending and written >= len(pending[0]):
                    written -= len(pending[0])
                    del pending[0]
                if written:
                    pending[0] = pending[0][written:]
        except OSError as exc:
            self._write_error = exc.errno or errno.EIO
