# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The compiled PDU codec; its API and documentation are those of dicomnet.core._pdu_py."""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.errno cimport EINTR, EIO, errno
from libc.string cimport memcpy, memmove

from dicomnet.core._command_tags import COMMAND_TAGS
from dicomnet.errors import CommandSetError, PDUError, PDUTooLarge, PDVError, UnrecognizedPDU
from dicomnet.core.pdu import (
    DEFAULT_MAX_ASSOCIATE_LENGTH,
    DEFAULT_MAX_PDU_LENGTH,
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

__all__ = [
    "DEFAULT_MAX_ASSOCIATE_LENGTH",
    "DEFAULT_MAX_PDU_LENGTH",
    "UNLIMITED_RECEIVE_CAP",
    "UNLIMITED_SEND_PDU_LENGTH",
    "Assembler",
    "PDUReader",
    "PUMP_DIGEST",
    "decode_command",
    "decode_pdu",
    "encode_command",
    "encode_pdu",
    "fragment_message",
    "parse_pdata",
]

DEF HEADER = 6
DEF MIN_FREE = 4096
DEF INITIAL_CAPACITY = (64 << 10) + 6
DEF RETAINED_CAP = (4 << 20) + 6

cdef dict PDU_NAMES = {
    0x01: "A-ASSOCIATE-RQ",
    0x02: "A-ASSOCIATE-AC",
    0x03: "A-ASSOCIATE-RJ",
    0x04: "P-DATA-TF",
    0x05: "A-RELEASE-RQ",
    0x06: "A-RELEASE-RP",
    0x07: "A-ABORT",
}


cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint16_t be16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((p[0] << 8) | p[1])


cdef inline uint32_t le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]


cdef inline uint16_t le16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((p[1] << 8) | p[0])


cdef inline void put_be32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline void put_le32(uint8_t* p, uint32_t v) noexcept nogil:
    p[3] = (v >> 24) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[0] = v & 0xFF


cdef inline memoryview byte_view(object data):
    cdef memoryview view = data if type(data) is memoryview else memoryview(data)
    if view.ndim != 1 or view.itemsize != 1 or view.format not in ("B", "b", "c"):
        view = view.cast("B")
    return view


# -- framing ---------------------------------------------------------------------------------

cdef class PDUReader:
    cdef bytearray _buffer
    cdef memoryview _view
    cdef Py_ssize_t _start, _end, _need, _free
    cdef int _pdu_type
    cdef object _max_pdu_length, _max_associate_length
    cdef object _error

    def __init__(self, max_pdu_length=DEFAULT_MAX_PDU_LENGTH,
                 max_associate_length=DEFAULT_MAX_ASSOCIATE_LENGTH):
        if max_associate_length < 0:
            raise ValueError(f"max_associate_length must be >= 0, not {max_associate_length}")
        self.max_pdu_length = max_pdu_length
        self._max_associate_length = max_associate_length
        self._buffer = bytearray(INITIAL_CAPACITY)
        self._view = memoryview(self._buffer)
        self._start = self._end = self._need = self._free = 0
        self._pdu_type = 0
        self._error = None

    @property
    def max_pdu_length(self):
        return self._max_pdu_length

    @max_pdu_length.setter
    def max_pdu_length(self, value):
        if value < 0:
            raise ValueError(f"max_pdu_length must be >= 0, not {value}")
        self._max_pdu_length = value

    @property
    def pending(self):
        cdef Py_ssize_t offset = self._start, end = self._end, total
        cdef const uint8_t* p = <const uint8_t*>PyByteArray_AS_STRING(self._buffer)
        while end - offset >= HEADER:
            total = HEADER + <Py_ssize_t>be32(p + offset + 2)
            if end - offset < total:
                break
            offset += total
        return end - offset

    cdef inline int _raise_if_poisoned(self) except -1:
        if self._error is not None:
            raise self._error.with_traceback(None)
        return 0

    cdef int _check_header(self) except -1:
        cdef const uint8_t* p
        cdef int pdu_type
        cdef uint32_t length
        if self._need or self._end - self._start < HEADER:
            return 0
        p = <const uint8_t*>PyByteArray_AS_STRING(self._buffer) + self._start
        pdu_type = p[0]
        length = be32(p + 2)
        cdef object declared = length  # compared as a Python int: limits may exceed 32 bits
        error = None
        if pdu_type < 1 or pdu_type > 7:
            error = UnrecognizedPDU(f"unrecognized PDU type {pdu_type:02X}H (PS3.8 9.3)")
        elif pdu_type == 4:
            limit = self._max_pdu_length or UNLIMITED_RECEIVE_CAP
            if declared > limit:
                error = PDUTooLarge(f"P-DATA-TF of {length} bytes exceeds the maximum of {limit}")
        elif pdu_type == 3 or pdu_type >= 5:
            if length != 4:
                error = PDUError(f"{PDU_NAMES[pdu_type]} with length {length}, PS3.8 fixes it at 4")
        elif declared > self._max_associate_length:
            error = PDUTooLarge(
                f"{PDU_NAMES[pdu_type]} of {length} bytes exceeds the maximum of "
                f"{self._max_associate_length}"
            )
        if error is not None:
            self._error = error
            raise error
        self._pdu_type = pdu_type
        self._need = HEADER + <Py_ssize_t>length
        return 0

    cdef void _relocate(self, Py_ssize_t capacity):
        cdef Py_ssize_t held = self._end - self._start
        cdef bytearray buffer
        if capacity == PyByteArray_GET_SIZE(self._buffer) and held <= self._start:
            memmove(PyByteArray_AS_STRING(self._buffer),
                    PyByteArray_AS_STRING(self._buffer) + self._start, held)
        else:
            buffer = bytearray(capacity)
            memcpy(PyByteArray_AS_STRING(buffer),
                   PyByteArray_AS_STRING(self._buffer) + self._start, held)
            self._buffer = buffer
            self._view = memoryview(buffer)
        self._start = 0
        self._end = held

    cdef Py_ssize_t _retained_capacity(self):
        limit = min(self._max_pdu_length or UNLIMITED_RECEIVE_CAP, RETAINED_CAP)
        return max(INITIAL_CAPACITY, limit + HEADER)

    def get_buffer(self, sizehint):
        self._raise_if_poisoned()
        self._check_header()
        cdef Py_ssize_t held = self._end - self._start
        cdef Py_ssize_t capacity = PyByteArray_GET_SIZE(self._buffer)
        cdef Py_ssize_t want = self._need if self._need > held else held + MIN_FREE
        if capacity - self._start < want:
            self._relocate(max(capacity, want))
        elif held == 0 and capacity > self._retained_capacity():
            self._buffer = bytearray(INITIAL_CAPACITY)
            self._view = memoryview(self._buffer)
            self._start = self._end = 0
        self._free = PyByteArray_GET_SIZE(self._buffer) - self._end
        return self._view[self._end:]

    def buffer_updated(self, nbytes):
        self._raise_if_poisoned()
        if not 0 <= nbytes <= self._free:
            raise ValueError(f"buffer_updated({nbytes}) but the last view held {self._free} bytes")
        self._end += <Py_ssize_t>nbytes
        self._free = 0

    def feed(self, data):
        self._raise_if_poisoned()
        cdef const uint8_t[::1] source = byte_view(data)
        cdef Py_ssize_t size = source.shape[0]
        cdef Py_ssize_t capacity
        if not size:
            return
        if self._start == self._end:
            self._start = self._end = 0
        capacity = PyByteArray_GET_SIZE(self._buffer)
        if capacity - self._end < size:
            self._relocate(max(capacity, self._end - self._start + size))
        memcpy(PyByteArray_AS_STRING(self._buffer) + self._end, &source[0], size)
        self._end += size
        self._free = 0

    def next_pdu(self):
        self._raise_if_poisoned()
        self._check_header()
        cdef Py_ssize_t need = self._need, start = self._start
        if not need or self._end - start < need:
            return None
        body = self._view[start + HEADER:start + need]
        self._start = start + need
        self._need = 0
        if self._start == self._end:
            self._start = self._end = 0
        return self._pdu_type, body


# -- P-DATA-TF -------------------------------------------------------------------------------

cdef Py_ssize_t scan_pdvs(const uint8_t* p, Py_ssize_t size, Py_ssize_t* bad,
                          uint32_t* bad_length) noexcept nogil:
    """Validate the PDV list; the PDV count, or -1 (bad offset in *bad) on error."""
    cdef Py_ssize_t offset = 0, count = 0
    cdef uint32_t length
    while offset < size:
        if size - offset < 6:
            bad[0] = offset
            bad_length[0] = 0xFFFFFFFF
            return -1
        length = be32(p + offset)
        if length < 2 or <Py_ssize_t>length > size - offset - 4:
            bad[0] = offset
            bad_length[0] = length
            return -1
        offset += 4 + length
        count += 1
    return count


cdef object pdv_error(Py_ssize_t size, Py_ssize_t offset, uint32_t length):
    if length == 0xFFFFFFFF:
        return PDUError(f"P-DATA-TF ends with {size - offset} bytes, too short for a PDV header of 6")
    if length < 2:
        return PDUError(f"PDV item-length {length}, PS3.8 9.3.5.1 requires at least 2")
    return PDUError(
        f"PDV item-length {length} overruns the P-DATA-TF: {size - offset - 4} bytes remain"
    )


def parse_pdata(body):
    cdef memoryview view = byte_view(body)
    cdef const uint8_t[::1] data = view
    cdef Py_ssize_t size = data.shape[0], offset = 0, bad = 0, count
    cdef uint32_t bad_length = 0, length
    cdef const uint8_t* p
    if size == 0:
        raise PDUError("P-DATA-TF without any PDV (PS3.8 9.3.5 requires one or more)")
    p = &data[0]
    with nogil:
        count = scan_pdvs(p, size, &bad, &bad_length)
    if count < 0:
        raise pdv_error(size, bad, bad_length)
    cdef list pdvs = []
    while offset < size:
        length = be32(p + offset)
        pdvs.append((p[offset + 4], p[offset + 5], view[offset + 6:offset + 4 + length]))
        offset += 4 + length
    return pdvs


def fragment_message(context_id, command, dataset, max_pdu_length):
    if max_pdu_length == 0:
        max_pdu_length = UNLIMITED_SEND_PDU_LENGTH
    elif max_pdu_length < 8:
        raise ValueError(
            f"max_pdu_length {max_pdu_length} leaves no room for a PDV (0 or >= 8 expected)"
        )
    if not 0 <= context_id <= 0xFF:
        raise ValueError(f"presentation context ID {context_id} outside 0-255")
    cdef Py_ssize_t payload = (min(max_pdu_length, 0xFFFFFFFF) - 6) & ~1
    cdef list buffers = []
    fragment_into(buffers, context_id, byte_view(command), 0x01, payload)
    if dataset is not None:
        fragment_into(buffers, context_id, byte_view(dataset), 0x00, payload)
    return buffers


cdef void fragment_into(list buffers, int context_id, memoryview data, int control,
                        Py_ssize_t payload) except *:
    cdef Py_ssize_t size = len(data), offset = 0, chunk, end
    cdef uint8_t header[12]
    header[0] = 0x04
    header[1] = 0
    header[10] = <uint8_t>context_id
    while True:
        chunk = payload if payload < size - offset else size - offset
        end = offset + chunk
        put_be32(header + 2, <uint32_t>(chunk + 6))
        put_be32(header + 6, <uint32_t>(chunk + 2))
        header[11] = <uint8_t>((control | 0x02) if end == size else control)
        buffers.append(PyBytes_FromStringAndSize(<char*>header, 12))
        buffers.append(data[offset:end])
        offset = end
        if offset == size:
            return


# -- reassembly ------------------------------------------------------------------------------

cdef extern from "_pdu_writev.h":
    cdef struct iovec:
        void* iov_base
        size_t iov_len
    long long dn_writev(int fd, const iovec* iov, int count) nogil

cdef extern from "_pdu_digest.h":
    ctypedef struct dn_sha256:
        pass
    int DN_HAVE_SHA256
    dn_sha256* dn_sha256_new() nogil
    void dn_sha256_free(dn_sha256* ctx) nogil
    int dn_sha256_init(dn_sha256* ctx) nogil
    int dn_sha256_update(dn_sha256* ctx, const void* data, size_t size) nogil
    int dn_sha256_final(dn_sha256* ctx, unsigned char* out) nogil

PUMP_DIGEST = bool(DN_HAVE_SHA256)

DEF WRITE_BATCH = 64
DEF NOGIL_FROM = 1 << 20


cdef int write_all(int fd, iovec* iov, int count) noexcept nogil:
    """writev until every byte is in; 0, or the errno of the failure."""
    cdef long long written
    while count > 0:
        written = dn_writev(fd, iov, count)
        if written < 0:
            if errno == EINTR:
                continue
            return errno if errno else EIO
        while count > 0 and <size_t>written >= iov[0].iov_len:
            written -= iov[0].iov_len
            iov += 1
            count -= 1
        if count > 0 and written > 0:
            iov[0].iov_base = <char*>iov[0].iov_base + written
            iov[0].iov_len -= written
    return 0


cdef class Assembler:
    cdef public object on_command
    cdef object _context_ids
    cdef uint8_t _allowed[256]
    cdef public Py_ssize_t max_dataset_length
    cdef public Py_ssize_t max_buffered_dataset_length
    cdef public Py_ssize_t pumped
    cdef Py_ssize_t _max_command_length
    cdef Py_ssize_t _received
    cdef int _context_id
    cdef bytearray _command_bytes
    cdef object _command
    cdef object _sink
    cdef bytearray _dataset
    cdef Py_ssize_t _dataset_length
    cdef bint _after_no_dataset
    cdef object _error
    # the file sink of the dataset being received
    cdef int _fd
    cdef int _write_error
    cdef iovec _iov[WRITE_BATCH]
    cdef int _iov_count
    cdef dn_sha256* _sha
    cdef bint _hashing
    cdef bytearray _head
    cdef Py_ssize_t _head_length, _head_held

    def __init__(self, Py_ssize_t max_command_length=65536):
        if max_command_length < 0:
            raise ValueError(f"max_command_length must be >= 0, not {max_command_length}")
        self.on_command = None
        self.context_ids = None
        self.max_dataset_length = 0
        self.max_buffered_dataset_length = 0
        self.pumped = 0
        self._max_command_length = max_command_length
        self._received = 0
        self._context_id = -1
        self._command_bytes = bytearray()
        self._command = None
        self._sink = None
        self._dataset = bytearray()
        self._dataset_length = 0
        self._after_no_dataset = False
        self._error = None
        self._fd = -1
        self._write_error = 0
        self._iov_count = 0
        self._hashing = False
        self._head = bytearray()
        self._head_length = self._head_held = 0

    def __dealloc__(self):
        if self._sha != NULL:
            dn_sha256_free(self._sha)
            self._sha = NULL

    @property
    def context_ids(self):
        return self._context_ids

    @context_ids.setter
    def context_ids(self, value):
        cdef int i
        self._context_ids = value
        for i in range(256):
            self._allowed[i] = 1 if value is None or i in value else 0

    @property
    def in_message(self):
        return self._context_id >= 0

    def feed(self, body):
        if self._error is not None:
            raise self._error.with_traceback(None)
        cdef memoryview view = byte_view(body)
        cdef const uint8_t[::1] data = view
        cdef Py_ssize_t size = data.shape[0]
        try:
            if size == 0:
                raise PDUError("P-DATA-TF without any PDV (PS3.8 9.3.5 requires one or more)")
            completed = self._pdvs(&data[0], size, view, 0)
            return completed if completed is not None else []
        except BaseException as error:
            self._error = error
            raise
        finally:
            self._flush()

    def pump(self, PDUReader reader not None):
        if self._error is not None:
            raise self._error.with_traceback(None)
        cdef Py_ssize_t start, need
        cdef const uint8_t* p
        try:
            while True:
                if reader._error is not None:
                    return None
                try:
                    reader._check_header()
                except PDUError:
                    return None  # the reader is poisoned: next_pdu raises it for Evt19
                need = reader._need
                if need == 0 or reader._pdu_type != 4 or reader._end - reader._start < need:
                    return None
                start = reader._start
                reader._start = start + need
                reader._need = 0
                self.pumped += 1
                p = <const uint8_t*>PyByteArray_AS_STRING(reader._buffer)
                if need == HEADER:
                    raise PDUError("P-DATA-TF without any PDV (PS3.8 9.3.5 requires one or more)")
                completed = self._pdvs(p + start + HEADER, need - HEADER, reader._view,
                                       start + HEADER)
                if reader._start == reader._end:
                    reader._start = reader._end = 0  # the bytes stay until the next get_buffer
                if completed is not None:
                    return completed
        except BaseException as error:
            self._error = error
            raise
        finally:
            self._flush()

    cdef object _pdvs(self, const uint8_t* p, Py_ssize_t size, memoryview view, Py_ssize_t base):
        """Reassemble the PDVs of one body at p; the messages completed, or None."""
        cdef Py_ssize_t offset = 0, bad = 0, count, start, length
        cdef uint32_t bad_length = 0
        cdef int context_id, control
        cdef list completed = None
        with nogil:
            count = scan_pdvs(p, size, &bad, &bad_length)
        if count < 0:
            raise pdv_error(size, bad, bad_length)
        while offset < size:
            length = <Py_ssize_t>be32(p + offset) - 2
            context_id = p[offset + 4]
            control = p[offset + 5]
            start = offset + 6
            offset = start + length
            if not self._allowed[context_id]:
                raise PDVError(f"PDV on presentation context {context_id}, which is not accepted")
            if length & 1:
                raise PDVError(
                    f"fragment of odd length {length} (PS3.8 E.1 requires an even length)"
                )
            if self._context_id < 0:
                if not control & 0x01:
                    if self._after_no_dataset:
                        raise PDVError("dataset fragment after a command announcing no dataset")
                    raise PDVError("dataset fragment before any command fragment (PS3.8 E.1)")
                self._context_id = context_id
                self._after_no_dataset = False
            elif context_id != self._context_id:
                raise PDVError(
                    f"presentation context changed from {self._context_id} to {context_id} "
                    "inside one message (PS3.8 E.1)"
                )
            if control & 0x01:
                message = self._command_fragment(context_id, control, p + start, length)
            else:
                message = self._dataset_fragment(context_id, control, view, p + start,
                                                 base + start, length)
            if message is not None:
                if completed is None:
                    completed = []
                completed.append(message)
        return completed

    cdef object _command_fragment(self, int context_id, int control, const uint8_t* p,
                                  Py_ssize_t length):
        if self._command is not None:
            raise PDVError("command fragment while dataset fragments are expected (PS3.8 E.1)")
        cdef Py_ssize_t held = PyByteArray_GET_SIZE(self._command_bytes)
        if held + length > self._max_command_length:
            raise PDVError(f"command set longer than {self._max_command_length} bytes")
        PyByteArray_Resize(self._command_bytes, held + length)
        memcpy(PyByteArray_AS_STRING(self._command_bytes) + held, p, length)
        if not control & 0x02:
            return None
        command = decode_command(self._command_bytes)
        self._command_bytes = bytearray()
        data_set_type = command.get(0x0800)
        if data_set_type is None:
            raise CommandSetError("command set without CommandDataSetType (0000,0800)")
        if data_set_type == 0x0101:
            self._context_id = -1
            self._after_no_dataset = True
            return context_id, command, None
        self._command = command
        sink = self.on_command(context_id, command) if self.on_command is not None else None
        self._sink = sink
        self._dataset_length = 0
        self._received = 0
        fileno = getattr(sink, "fileno", None)
        if fileno is not None:
            self._open_file(fileno(), getattr(sink, "head_length", 0),
                            getattr(sink, "wants_digest", False))
        return None

    cdef int _open_file(self, int fd, Py_ssize_t head_length, bint wants_digest) except -1:
        self._fd = fd
        self._write_error = 0
        self._iov_count = 0
        self._head_length = head_length if head_length > 0 else 0
        self._head_held = 0
        self._head = bytearray(self._head_length)
        self._hashing = False
        if wants_digest and DN_HAVE_SHA256:
            if self._sha == NULL:
                self._sha = dn_sha256_new()
            self._hashing = self._sha != NULL and dn_sha256_init(self._sha)
        return 0

    cdef object _dataset_fragment(self, int context_id, int control, memoryview view,
                                  const uint8_t* p, Py_ssize_t start, Py_ssize_t length):
        cdef Py_ssize_t capacity, need, limit
        cdef char* target
        command = self._command
        if command is None:
            raise PDVError("dataset fragment before the last command fragment (PS3.8 E.1)")
        sink = self._sink
        self._received += length
        limit = self.max_dataset_length if sink is not None else self.max_buffered_dataset_length
        if limit and self._received > limit:
            raise PDVError(f"dataset longer than {limit} bytes")
        if self._fd >= 0:
            self._to_file(p, length)
        elif sink is not None:
            sink.write(view[start:start + length])
        else:
            need = self._dataset_length + length
            capacity = PyByteArray_GET_SIZE(self._dataset)
            if need > capacity:
                PyByteArray_Resize(self._dataset, max(need, 2 * capacity))
            target = PyByteArray_AS_STRING(self._dataset) + self._dataset_length
            with nogil:
                memcpy(target, p, length)
            self._dataset_length = need
        if not control & 0x02:
            return None
        if sink is None:
            PyByteArray_Resize(self._dataset, self._dataset_length)
            dataset = self._dataset
            self._dataset = bytearray()
            self._dataset_length = 0
        else:
            dataset = sink
            if self._fd >= 0:
                self._finish_file(sink)
        self._command = None
        self._sink = None
        self._context_id = -1
        return context_id, command, dataset

    cdef int _to_file(self, const uint8_t* p, Py_ssize_t length) except -1:
        cdef Py_ssize_t take
        if self._write_error:
            return 0  # a write failed: the rest of the dataset is dropped
        if self._head_held < self._head_length:
            take = min(length, self._head_length - self._head_held)
            memcpy(PyByteArray_AS_STRING(self._head) + self._head_held, p, take)
            self._head_held += take
        if length == 0:
            return 0
        self._iov[self._iov_count].iov_base = <void*>p
        self._iov[self._iov_count].iov_len = length
        self._iov_count += 1
        if self._iov_count == WRITE_BATCH:
            self._flush()
        return 0

    cdef int _flush(self) except -1:
        """Hash and write the queued fragments, without the GIL."""
        cdef int count = self._iov_count, i, failed = 0, fd = self._fd
        cdef Py_ssize_t total = 0
        cdef bint hashing = self._hashing
        cdef dn_sha256* sha = self._sha
        self._iov_count = 0
        if count == 0 or self._write_error or fd < 0:
            return 0
        for i in range(count):
            total += self._iov[i].iov_len
        if total < NOGIL_FROM:
            # Short work keeps the GIL: handing it to another thread and waiting to
            # get it back costs more than the hashing and writing themselves.
            if hashing:
                for i in range(count):
                    dn_sha256_update(sha, self._iov[i].iov_base, self._iov[i].iov_len)
            failed = write_all(fd, self._iov, count)
        else:
            with nogil:
                if hashing:
                    for i in range(count):
                        dn_sha256_update(sha, self._iov[i].iov_base, self._iov[i].iov_len)
                failed = write_all(fd, self._iov, count)
        if failed:
            self._write_error = failed
        return 0

    cdef int _finish_file(self, object sink) except -1:
        cdef unsigned char out[32]
        cdef bytes digest = b""
        self._flush()
        if self._hashing and not self._write_error and dn_sha256_final(self._sha, out):
            digest = PyBytes_FromStringAndSize(<char*>out, 32)
        self._hashing = False
        self._fd = -1
        if self._head_held < self._head_length:
            PyByteArray_Resize(self._head, self._head_held)
        head = bytes(self._head)
        self._head = bytearray()
        self._head_length = self._head_held = 0
        sink.finished(self._received, self._write_error, digest, head)
        return 0


# -- command sets ----------------------------------------------------------------------------

cdef inline int check_range(object value, object maximum, str what) except -1:
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} {value} outside 0-{maximum}")
    return 0


cdef bytes encode_value(str vr, object value, Py_ssize_t tag):
    cdef bytes raw
    cdef uint8_t buf[4]
    if vr == "US" or vr == "UL":
        if not isinstance(value, int):
            raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) needs an int, not {value!r}")
        if vr == "US":
            check_range(value, 0xFFFF, f"US value of {tag:08X}")
            buf[0] = value & 0xFF
            buf[1] = (value >> 8) & 0xFF
            return PyBytes_FromStringAndSize(<char*>buf, 2)
        check_range(value, 0xFFFFFFFF, f"UL value of {tag:08X}")
        put_le32(buf, <uint32_t>value)
        return PyBytes_FromStringAndSize(<char*>buf, 4)
    if vr == "AT":
        tags = (value,) if isinstance(value, int) else value
        if isinstance(tags, (str, bytes)) or not hasattr(tags, "__len__"):
            raise ValueError(f"AT value of (0000,{tag:04X}) must be a tuple of tags")
        parts = []
        for item in tags:
            if not isinstance(item, int):
                raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) needs an int, not {item!r}")
            check_range(item, 0xFFFFFFFF, f"AT value of {tag:08X}")
            buf[0] = (item >> 16) & 0xFF
            buf[1] = (item >> 24) & 0xFF
            buf[2] = item & 0xFF
            buf[3] = (item >> 8) & 0xFF
            parts.append(PyBytes_FromStringAndSize(<char*>buf, 4))
        return b"".join(parts)
    if not isinstance(value, str):
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) needs a str, not {value!r}")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"value of {tag:08X} {value!r} is not latin-1 text") from None
    if len(raw) & 1:
        raw += b"\0" if vr == "UI" else b" "
    return raw


def encode_command(fields):
    cdef list parts = []
    cdef uint8_t header[8]
    cdef Py_ssize_t total = 0
    cdef bytes raw
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
            raw = encode_value(entry[0], value, tag)
        header[0] = 0
        header[1] = 0
        header[2] = tag & 0xFF
        header[3] = (tag >> 8) & 0xFF
        put_le32(header + 4, <uint32_t>len(raw))
        parts.append(PyBytes_FromStringAndSize(<char*>header, 8))
        parts.append(raw)
        total += 8 + len(raw)
    cdef uint8_t group[12]
    group[0] = group[1] = group[2] = group[3] = 0
    put_le32(group + 4, 4)
    put_le32(group + 8, <uint32_t>total)
    parts.insert(0, PyBytes_FromStringAndSize(<char*>group, 12))
    return b"".join(parts)


cdef object decode_value(str vr, const uint8_t* p, Py_ssize_t length, int tag):
    cdef Py_ssize_t i
    if vr == "US":
        if length != 2:
            raise CommandSetError(f"US element (0000,{tag:04X}) of length {length}, not 2")
        return le16(p)
    if vr == "UL":
        if length != 4:
            raise CommandSetError(f"UL element (0000,{tag:04X}) of length {length}, not 4")
        return le32(p)
    if vr == "AT":
        if length % 4:
            raise CommandSetError(
                f"AT element (0000,{tag:04X}) of length {length}, not a multiple of 4"
            )
        tags = []
        for i in range(0, length, 4):
            tags.append((<uint32_t>le16(p + i) << 16) | le16(p + i + 2))
        return tuple(tags)
    text = (<const char*>p)[:length].decode("latin-1")
    if vr == "UI":
        return text.rstrip("\0 ")
    return text.rstrip(" ")


def decode_command(data):
    cdef const uint8_t[::1] view = byte_view(data)
    cdef Py_ssize_t size = view.shape[0], offset = 0
    cdef long previous = -1
    cdef int group, tag
    cdef uint32_t length, group_length
    cdef const uint8_t* p = &view[0] if size else NULL
    cdef dict command = {}
    while offset < size:
        if size - offset < 8:
            raise CommandSetError(f"command set ends inside an element header at byte {offset}")
        group = le16(p + offset)
        tag = le16(p + offset + 2)
        length = le32(p + offset + 4)
        offset += 8
        if group:
            raise CommandSetError(
                f"element ({group:04X},{tag:04X}) outside group 0000 in a command set"
            )
        if tag <= previous:
            order = "duplicate" if tag == previous else "out of order"
            raise CommandSetError(f"command element (0000,{tag:04X}) {order}")
        previous = tag
        if length > <uint32_t>(size - offset):
            raise CommandSetError(
                f"command element (0000,{tag:04X}) of length {length} overruns the "
                f"command set ({size - offset} bytes remain)"
            )
        if tag == 0:
            if length != 4:
                raise CommandSetError(f"UL element (0000,0000) of length {length}, not 4")
            group_length = le32(p + offset)
            offset += 4
            if group_length != <uint32_t>(size - offset):
                raise CommandSetError(
                    f"CommandGroupLength {group_length} but {size - offset} bytes follow it"
                )
            continue
        entry = COMMAND_TAGS.get(tag)
        if entry is None:
            command[tag] = (<const char*>(p + offset))[:length]
        else:
            command[tag] = decode_value(entry[0], p + offset, length, tag)
        offset += length
    if 0x0100 not in command:
        raise CommandSetError("command set without CommandField (0000,0100)")
    return command


# -- association PDUs: encoding ---------------------------------------------------------------

cdef bytes text_bytes(object value, str what):
    if not isinstance(value, str):
        raise ValueError(f"{what} {value!r} is not text")
    try:
        return (<str>value).encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} is not latin-1 text") from None


cdef bytes uid_bytes(object value, str what):
    cdef bytes raw = text_bytes(value, what)
    if len(raw) > 64:
        raise ValueError(f"{what} of {len(raw)} bytes exceeds 64: {value!r}")
    return raw


cdef bytes ae_bytes(object value, str what):
    cdef bytes raw = text_bytes(value, what)
    if len(raw) > 16:
        raise ValueError(f"{what} of {len(raw)} bytes exceeds 16: {value!r}")
    return raw.ljust(16, b" ")


cdef bytes item(int item_type, bytes value):
    cdef Py_ssize_t n = len(value)
    if n > 0xFFFF:
        raise ValueError(f"item {item_type:02X}H of {n} bytes exceeds 65535")
    return bytes((item_type, 0, n >> 8, n & 0xFF)) + value


cdef bytes prefixed(bytes value, str what):
    cdef Py_ssize_t n = len(value)
    if n > 0xFFFF:
        raise ValueError(f"{what} of {n} bytes exceeds 65535")
    return bytes((n >> 8, n & 0xFF)) + value


cdef bytes u8(object value, str what):
    check_range(value, 0xFF, what)
    return bytes((value,))


cdef bytes u16(object value, str what):
    check_range(value, 0xFFFF, what)
    return bytes((value >> 8, value & 0xFF))


cdef bytes u32(object value, str what):
    check_range(value, 0xFFFFFFFF, what)
    return bytes(((value >> 24) & 0xFF, (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF))


cdef bytes encode_user_information(object info):
    cdef list parts = []
    if info.max_length is not None:
        parts.append(item(0x51, u32(info.max_length, "maximum length")))
    if info.implementation_class_uid != "":
        parts.append(item(0x52, uid_bytes(info.implementation_class_uid, "implementation class UID")))
    window = info.async_ops_window
    if window is not None:
        parts.append(item(0x53, u16(window.max_operations_invoked, "max operations invoked")
                          + u16(window.max_operations_performed, "max operations performed")))
    for role in info.role_selections:
        uid = uid_bytes(role.sop_class_uid, "role selection SOP class UID")
        parts.append(item(0x54, prefixed(uid, "UID") + bytes((int(role.scu_role), int(role.scp_role)))))
    if info.implementation_version_name is not None:
        name = text_bytes(info.implementation_version_name, "implementation version name")
        if len(name) > 16:
            raise ValueError(f"implementation version name of {len(name)} bytes exceeds 16")
        parts.append(item(0x55, name))
    for extended in info.sop_class_extended:
        uid = uid_bytes(extended.sop_class_uid, "extended negotiation SOP class UID")
        parts.append(item(0x56, prefixed(uid, "UID") + bytes(extended.application_info)))
    for common in info.sop_class_common_extended:
        related = b"".join(
            prefixed(uid_bytes(uid, "related general SOP class UID"), "UID")
            for uid in common.related_general_sop_classes
        )
        parts.append(item(0x57,
            prefixed(uid_bytes(common.sop_class_uid, "common extended SOP class UID"), "UID")
            + prefixed(uid_bytes(common.service_class_uid, "service class UID"), "UID")
            + prefixed(related, "related general SOP class identification")))
    identity = info.user_identity
    if identity is not None:
        parts.append(item(0x58,
            u8(identity.identity_type, "user identity type")
            + bytes((int(identity.positive_response_requested),))
            + prefixed(bytes(identity.primary_field), "user identity primary field")
            + prefixed(bytes(identity.secondary_field), "secondary field")))
    if info.user_identity_ac is not None:
        parts.append(item(0x59, prefixed(bytes(info.user_identity_ac.server_response),
                                         "user identity server response")))
    return b"".join(parts)


cdef bytes encode_associate(object pdu, list contexts):
    fixed = (u16(pdu.protocol_version, "protocol version") + b"\0\0"
             + ae_bytes(pdu.called_ae_title, "called AE title")
             + ae_bytes(pdu.calling_ae_title, "calling AE title") + bytes(32))
    return b"".join([
        fixed,
        item(0x10, uid_bytes(pdu.application_context, "application context")),
        *contexts,
        item(0x50, encode_user_information(pdu.user_information)),
    ])


cdef tuple encode_body(object pdu):
    cdef list parts
    kind = type(pdu)
    if kind is AssociateRQ:
        contexts = [
            item(0x20, u8(pc.context_id, "context ID") + b"\0\0\0"
                 + item(0x30, uid_bytes(pc.abstract_syntax, "abstract syntax"))
                 + b"".join(item(0x40, uid_bytes(ts, "transfer syntax")) for ts in pc.transfer_syntaxes))
            for pc in pdu.presentation_contexts
        ]
        return 0x01, encode_associate(pdu, contexts)
    if kind is AssociateAC:
        contexts = [
            item(0x21, u8(pc.context_id, "context ID") + b"\0"
                 + u8(pc.result, "presentation context result") + b"\0"
                 + item(0x40, uid_bytes(pc.transfer_syntax, "transfer syntax")))
            for pc in pdu.presentation_contexts
        ]
        return 0x02, encode_associate(pdu, contexts)
    if kind is AssociateRJ:
        return 0x03, (b"\0" + u8(pdu.result, "reject result") + u8(pdu.source, "reject source")
                      + u8(pdu.reason, "reject reason"))
    if kind is PDataTF:
        parts = []
        for context_id, control, fragment in pdu.pdvs:
            data = bytes(fragment)
            parts.append(u32(len(data) + 2, "PDV item-length") + u8(context_id, "context ID")
                         + u8(control, "message control header"))
            parts.append(data)
        return 0x04, b"".join(parts)
    if kind is ReleaseRQ:
        return 0x05, bytes(4)
    if kind is ReleaseRP:
        return 0x06, bytes(4)
    if kind is Abort:
        return 0x07, b"\0\0" + u8(pdu.source, "abort source") + u8(pdu.reason, "abort reason")
    raise TypeError(f"not a dicomnet.core.pdu PDU value: {kind.__name__}")


def encode_pdu(pdu):
    pdu_type, body = encode_body(pdu)
    return bytes((pdu_type, 0)) + u32(len(body), "PDU length") + body


# -- association PDUs: decoding ---------------------------------------------------------------

cdef class ItemWalker:
    """Walks the items of one parent: type, start and length of each, checked."""
    cdef const uint8_t* p
    cdef Py_ssize_t offset, end
    cdef str parent
    cdef public int item_type
    cdef public Py_ssize_t start, length

    cdef void reset(self, const uint8_t* p, Py_ssize_t offset, Py_ssize_t end, str parent):
        self.p = p
        self.offset = offset
        self.end = end
        self.parent = parent

    cdef bint next(self) except -1:
        cdef Py_ssize_t remain = self.end - self.offset
        if remain <= 0:
            return False
        if remain < 4:
            raise PDUError(f"{remain} stray bytes at the end of {self.parent}")
        self.item_type = self.p[self.offset]
        self.length = be16(self.p + self.offset + 2)
        self.start = self.offset + 4
        if self.length > self.end - self.start:
            raise PDUError(
                f"item {self.item_type:02X}H in {self.parent} declares {self.length} bytes "
                f"but {self.end - self.start} remain"
            )
        self.offset = self.start + self.length
        return True


cdef inline str latin1(const uint8_t* p, Py_ssize_t start, Py_ssize_t length):
    return (<const char*>(p + start))[:length].decode("latin-1")


cdef str uid_at(const uint8_t* p, Py_ssize_t start, Py_ssize_t length):
    if length and (p[start + length - 1] == 0 or p[start + length - 1] == 0x20):
        length -= 1
    return latin1(p, start, length)


cdef Py_ssize_t prefixed_at(const uint8_t* p, Py_ssize_t offset, Py_ssize_t end, str what,
                            Py_ssize_t* out_start) except -2:
    """Length of a 2-byte-length-prefixed field at offset; its start in *out_start."""
    cdef Py_ssize_t length
    if end - offset < 2:
        raise PDUError(f"{what}: no room for its 2-byte length")
    length = be16(p + offset)
    if length > end - offset - 2:
        raise PDUError(f"{what} of {length} bytes overruns its item ({end - offset - 2} remain)")
    out_start[0] = offset + 2
    return length


cdef object decode_user_information(const uint8_t* p, Py_ssize_t start, Py_ssize_t end):
    cdef ItemWalker walker = ItemWalker()
    cdef Py_ssize_t s, n, a, b, an, bn, off, rn, cn, a2, r_end
    cdef dict fields = {}
    cdef list roles = [], extended = [], common = []
    walker.reset(p, start, end, "the user information item")
    while walker.next():
        s = walker.start
        n = walker.length
        kind = walker.item_type
        if kind < 0x51 or kind > 0x59:
            continue
        if kind == 0x54:
            an = prefixed_at(p, s, s + n, "role selection UID", &a)
            if s + n - (a + an) != 2:
                raise PDUError(f"role selection sub-item of {n} bytes does not match its UID of {an}")
            roles.append(RoleSelection(uid_at(p, a, an), p[a + an] != 0, p[a + an + 1] != 0))
            continue
        if kind == 0x56:
            an = prefixed_at(p, s, s + n, "extended negotiation SOP class UID", &a)
            extended.append(SOPClassExtendedNegotiation(
                uid_at(p, a, an), (<const char*>(p + a + an))[:s + n - a - an]))
            continue
        if kind == 0x57:
            an = prefixed_at(p, s, s + n, "common extended SOP class UID", &a)
            bn = prefixed_at(p, a + an, s + n, "service class UID", &b)
            rn = prefixed_at(p, b + bn, s + n, "related general SOP class identification", &off)
            related = []
            r_end = off + rn
            while off < r_end:
                cn = prefixed_at(p, off, r_end, "related general SOP class UID", &a2)
                related.append(uid_at(p, a2, cn))
                off = a2 + cn
            common.append(SOPClassCommonExtendedNegotiation(
                uid_at(p, a, an), uid_at(p, b, bn), tuple(related)))
            continue
        name = USER_FIELD_NAMES[kind]
        if name in fields:
            raise PDUError(f"user information with more than one sub-item {kind:02X}H")
        if kind == 0x51:
            if n != 4:
                raise PDUError(f"maximum length sub-item of {n} bytes, PS3.8 D.1 fixes it at 4")
            fields[name] = be32(p + s)
        elif kind == 0x52:
            fields[name] = uid_at(p, s, n)
        elif kind == 0x53:
            if n != 4:
                raise PDUError(f"asynchronous operations window sub-item of {n} bytes, not 4")
            fields[name] = AsyncOpsWindow(be16(p + s), be16(p + s + 2))
        elif kind == 0x55:
            fields[name] = latin1(p, s, n)
        elif kind == 0x58:
            if n < 4:
                raise PDUError(f"user identity sub-item of {n} bytes, shorter than 4")
            an = prefixed_at(p, s + 2, s + n, "user identity primary field", &a)
            bn = prefixed_at(p, a + an, s + n, "user identity secondary field", &b)
            if b + bn != s + n:
                raise PDUError(f"user identity sub-item has {s + n - b - bn} bytes past its fields")
            fields[name] = UserIdentityRQ(p[s], p[s + 1] != 0,
                                          (<const char*>(p + a))[:an], (<const char*>(p + b))[:bn])
        elif kind == 0x59:
            an = prefixed_at(p, s, s + n, "user identity server response", &a)
            if a + an != s + n:
                raise PDUError(f"user identity response has {s + n - a - an} bytes past its field")
            fields[name] = UserIdentityAC((<const char*>(p + a))[:an])
    if roles:
        fields["role_selections"] = tuple(roles)
    if extended:
        fields["sop_class_extended"] = tuple(extended)
    if common:
        fields["sop_class_common_extended"] = tuple(common)
    return UserInformation(**fields)


cdef dict USER_FIELD_NAMES = {
    0x51: "max_length",
    0x52: "implementation_class_uid",
    0x53: "async_ops_window",
    0x55: "implementation_version_name",
    0x58: "user_identity",
    0x59: "user_identity_ac",
}


cdef object decode_associate(const uint8_t* p, Py_ssize_t size, bint is_rq):
    cdef str name = "A-ASSOCIATE-RQ" if is_rq else "A-ASSOCIATE-AC"
    cdef int context_type = 0x20 if is_rq else 0x21
    cdef ItemWalker walker = ItemWalker(), inner = ItemWalker()
    cdef Py_ssize_t s, n
    cdef int context_id
    cdef list contexts = [], syntaxes
    if size < 68:
        raise PDUError(f"{name} body of {size} bytes, shorter than its 68-byte fixed part")
    application_context = None
    user_information = None
    walker.reset(p, 68, size, name)
    while walker.next():
        s = walker.start
        n = walker.length
        if walker.item_type == context_type:
            if n < 4:
                raise PDUError(f"presentation context item of {n} bytes, shorter than 4")
            context_id = p[s]
            where = f"presentation context {context_id}"
            inner.reset(p, s + 4, s + n, where)
            if is_rq:
                abstract = None
                syntaxes = []
                while inner.next():
                    if inner.item_type == 0x40:
                        syntaxes.append(uid_at(p, inner.start, inner.length))
                    elif inner.item_type == 0x30:
                        if abstract is not None:
                            raise PDUError(f"{where} with more than one abstract syntax sub-item")
                        abstract = uid_at(p, inner.start, inner.length)
                contexts.append(PresentationContextRQ(context_id, abstract or "", tuple(syntaxes)))
            else:
                syntax = None
                while inner.next():
                    if inner.item_type == 0x40:
                        if syntax is not None:
                            raise PDUError(
                                f"{where} of an A-ASSOCIATE-AC with more than one transfer syntax"
                            )
                        syntax = uid_at(p, inner.start, inner.length)
                contexts.append(PresentationContextAC(context_id, p[s + 2], syntax or ""))
        elif walker.item_type == 0x10:
            if application_context is not None:
                raise PDUError(f"{name} with more than one application context item")
            application_context = uid_at(p, s, n)
        elif walker.item_type == 0x50:
            if user_information is not None:
                raise PDUError(f"{name} with more than one user information item")
            user_information = decode_user_information(p, s, s + n)
    cls = AssociateRQ if is_rq else AssociateAC
    return cls(
        called_ae_title=latin1(p, 4, 16).strip(" \x00"),
        calling_ae_title=latin1(p, 20, 16).strip(" \x00"),
        presentation_contexts=tuple(contexts),
        user_information=user_information or UserInformation(),
        application_context=application_context or "",
        protocol_version=be16(p),
    )


def decode_pdu(int pdu_type, body):
    cdef memoryview view
    cdef const uint8_t[::1] data
    cdef Py_ssize_t size
    cdef const uint8_t* p
    if pdu_type < 1 or pdu_type > 7:
        raise UnrecognizedPDU(f"unrecognized PDU type {pdu_type:02X}H (PS3.8 9.3)")
    view = byte_view(body)
    data = view
    size = data.shape[0]
    if (pdu_type == 3 or pdu_type >= 5) and size != 4:
        raise PDUError(f"{PDU_NAMES[pdu_type]} body of {size} bytes, PS3.8 fixes it at 4")
    if pdu_type == 4:
        return PDataTF(tuple((c, h, bytes(f)) for c, h, f in parse_pdata(view)))
    p = &data[0] if size else NULL
    if pdu_type == 1 or pdu_type == 2:
        return decode_associate(p, size, pdu_type == 1)
    if pdu_type == 3:
        return AssociateRJ(p[1], p[2], p[3])
    if pdu_type == 5:
        return ReleaseRQ()
    if pdu_type == 6:
        return ReleaseRP()
    return Abort(p[2], p[3])


# -- the strict element walk of a received dataset (twin: dicomnet.core.elements) ----------

from libc.stdlib cimport malloc, realloc, free
from dicomnet.core.elements import ElementError, ElementsCut

DEF FIRST_DATASET_GROUP = 0x0008
DEF CHARSET_TAG = 0x00080005
DEF ITEM_TAG = 0xFFFEE000
DEF ITEM_END_TAG = 0xFFFEE00D
DEF SEQUENCE_END_TAG = 0xFFFEE0DD
DEF UNDEFINED_LENGTH = 0xFFFFFFFF


cdef struct Element:
    uint32_t tag
    uint16_t vr        # the two VR bytes, 0 for an implicit VR (or item) element
    uint32_t length
    Py_ssize_t size    # header bytes


cdef struct Frame:
    uint8_t kind       # 0: inside a sequence (items expected), 1: inside an item
    uint8_t implicit
    uint8_t little


cdef inline uint16_t rd16(const uint8_t* p, bint little) noexcept nogil:
    return le16(p) if little else be16(p)


cdef inline uint32_t rd32(const uint8_t* p, bint little) noexcept nogil:
    return le32(p) if little else be32(p)


cdef inline int vr_kind(uint8_t a, uint8_t b) noexcept nogil:
    """0: not a VR of PS3.5 6.2; 1: a 16-bit length; 2: reserved bytes and a 32-bit length."""
    cdef uint16_t vr = a << 8 | b
    if vr in (0x4F42, 0x4F44, 0x4F46, 0x4F4C, 0x4F56, 0x4F57, 0x5351, 0x5356, 0x5543,
              0x554E, 0x5552, 0x5554, 0x5556):  # OB OD OF OL OV OW SQ SV UC UN UR UT UV
        return 2
    if vr in (0x4145, 0x4153, 0x4154, 0x4353, 0x4441, 0x4453, 0x4454, 0x4644, 0x464C,
              0x4953, 0x4C4F, 0x4C54, 0x504E, 0x5348, 0x534C, 0x5353, 0x5354, 0x544D,
              0x5549, 0x554C, 0x5553):  # AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US
        return 1
    return 0


cdef inline bint undefined_allowed(uint16_t vr) noexcept nogil:
    # implicit (no VR), SQ, UN, OB, OW (PS3.5 7.1.2, 7.5)
    return vr == 0 or vr == 0x5351 or vr == 0x554E or vr == 0x4F42 or vr == 0x4F57


cdef str tag_name(uint32_t tag):
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


cdef str vr_text(uint16_t vr):
    return bytes([vr >> 8, vr & 0xFF]).decode()


cdef int read_element(const uint8_t* p, Py_ssize_t n, Py_ssize_t pos, bint implicit,
                      bint little, Element* e) except -1:
    cdef uint16_t group
    cdef int kind
    if pos + 8 > n:
        raise ElementsCut("the dataset ends inside an element header")
    group = rd16(p + pos, little)
    e.tag = <uint32_t>group << 16 | rd16(p + pos + 2, little)
    if implicit or group == 0xFFFE:
        e.vr = 0
        e.length = rd32(p + pos + 4, little)
        e.size = 8
        return 0
    kind = vr_kind(p[pos + 4], p[pos + 5])
    if kind == 0:
        raise ElementError(
            f"{tag_name(e.tag)}: bytes {(<bytes>p[pos + 4:pos + 6]).hex()} where its VR belongs")
    e.vr = p[pos + 4] << 8 | p[pos + 5]
    if kind == 2:
        if pos + 12 > n:
            raise ElementsCut(f"the dataset ends inside the header of {tag_name(e.tag)}")
        e.length = rd32(p + pos + 8, little)
        e.size = 12
    else:
        e.length = rd16(p + pos + 6, little)
        e.size = 8
    return 0


cdef Frame* room_for(Frame* frames, Py_ssize_t depth, Py_ssize_t* capacity) except NULL:
    """``frames`` with room for one more at ``depth`` (doubled when full); on failure
    MemoryError, ``frames`` untouched for the caller to free."""
    cdef Frame* grown
    if depth < capacity[0]:
        return frames
    grown = <Frame*>realloc(frames, 2 * capacity[0] * sizeof(Frame))
    if grown == NULL:
        raise MemoryError()
    capacity[0] *= 2
    return grown


cdef Py_ssize_t past_items(const uint8_t* p, Py_ssize_t n, Py_ssize_t pos, bint implicit,
                           bint little) except -1:
    """After a sequence of undefined length whose first item starts at ``pos``: a loop
    over a stack of open sequences and items (peers may nest thousands of levels)."""
    cdef Py_ssize_t depth = 1, capacity = 64
    cdef Frame* frames = <Frame*>malloc(capacity * sizeof(Frame))
    cdef Frame top
    cdef Element e
    cdef bint un
    if frames == NULL:
        raise MemoryError()
    frames[0].kind = 0
    frames[0].implicit = implicit
    frames[0].little = little
    try:
        while depth:
            top = frames[depth - 1]
            if top.kind == 0:
                read_element(p, n, pos, True, top.little, &e)
                pos += e.size
                if e.tag == SEQUENCE_END_TAG:
                    depth -= 1
                    continue
                if e.tag != ITEM_TAG:
                    raise ElementError(f"{tag_name(e.tag)} inside a sequence, where an item belongs")
                if e.length == UNDEFINED_LENGTH:
                    frames = room_for(frames, depth, &capacity)
                    frames[depth].kind = 1
                    frames[depth].implicit = top.implicit
                    frames[depth].little = top.little
                    depth += 1
                    continue
            else:
                read_element(p, n, pos, top.implicit, top.little, &e)
                pos += e.size
                if e.tag == ITEM_END_TAG:
                    depth -= 1
                    continue
                if e.length == UNDEFINED_LENGTH:
                    if not undefined_allowed(e.vr):
                        raise ElementError(
                            f"{tag_name(e.tag)}: undefined length on a {vr_text(e.vr)}")
                    frames = room_for(frames, depth, &capacity)
                    # PS3.5 6.2.2: a UN sequence holds implicit VR little endian items
                    un = e.vr == 0x554E
                    frames[depth].kind = 0
                    frames[depth].implicit = top.implicit or un
                    frames[depth].little = True if un else top.little
                    depth += 1
                    continue
            if pos + <Py_ssize_t>e.length > n:
                raise ElementsCut(
                    f"{tag_name(e.tag)}: a value of {e.length} bytes runs past the end")
            pos += e.length
    finally:
        free(frames)
    return pos


def walk_elements(data, Py_ssize_t start, bint implicit, bint little, wanted):
    cdef const uint8_t[::1] view = byte_view(data)
    cdef Py_ssize_t n = view.shape[0], pos = start
    cdef const uint8_t* p = &view[0] if n else <const uint8_t*>b""
    cdef Element e
    cdef long long previous = -1
    cdef uint32_t last = max(wanted)
    cdef uint16_t group
    cdef bint un
    cdef object charset = None
    cdef dict found = {}
    cdef bytes vr
    while pos < n:
        read_element(p, n, pos, implicit, little, &e)
        group = e.tag >> 16
        if group < FIRST_DATASET_GROUP:
            where = "the File Meta group" if group == 2 else f"group {group:04X}"
            raise ElementError(
                f"{tag_name(e.tag)} of {where} inside the dataset (PS3.5 7.1: groups below 0008)")
        if <long long>e.tag <= previous:
            raise ElementError(
                f"{tag_name(e.tag)} after {tag_name(<uint32_t>previous)}: not in ascending order")
        if e.tag > last:
            return charset, found, True
        previous = e.tag
        pos += e.size
        if e.length == UNDEFINED_LENGTH:
            if not undefined_allowed(e.vr):
                raise ElementError(f"{tag_name(e.tag)}: undefined length on a {vr_text(e.vr)}")
            un = e.vr == 0x554E
            pos = past_items(p, n, pos, implicit or un, True if un else little)
            continue
        if pos + <Py_ssize_t>e.length > n:
            raise ElementsCut(f"{tag_name(e.tag)}: a value of {e.length} bytes runs past the end")
        if e.tag == CHARSET_TAG:
            charset = PyBytes_FromStringAndSize(<const char*>p + pos, e.length)
        if e.tag in wanted:
            vr = b"" if e.vr == 0 else PyBytes_FromStringAndSize(<const char*>p + pos - e.size + 4, 2)
            found[e.tag] = (vr, PyBytes_FromStringAndSize(<const char*>p + pos, e.length))
        pos += e.length
    return charset, found, False
