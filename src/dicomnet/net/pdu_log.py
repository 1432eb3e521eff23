"""One-line summaries of every PDU and DIMSE message, for ``dicomnet -d``.

Theory of operation
-------------------
DCMTK's ``-d`` and pynetdicom's debug logger show each PDU and DIMSE message
as it goes by, which is how interop problems are diagnosed. dicomnet logs

* on ``dicomnet.pdu``: each PDU sent or received, with its type and length
  and, by type, the AE titles and presentation contexts (A-ASSOCIATE-RQ/AC),
  result/source/reason (A-ASSOCIATE-RJ, A-ABORT), or each PDV's presentation
  context, command/dataset flag, last-fragment flag and length (P-DATA-TF);
* on ``dicomnet.dimse``: each DIMSE message sent or received, with its
  command, presentation context and the command fields that are set.

Both are DEBUG records, built only when DEBUG is enabled for their logger:
nothing is decoded or formatted on the hot path otherwise. Outgoing PDUs
and incoming PDUs alike are framed from the bytes as they pass
(:class:`PduTracer`), since a PDU may span several buffers and a buffer hold
parts of two.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from typing import Any

from dicomnet.core.codec import decode_pdu, parse_pdata
from dicomnet.core.text import printable

__all__ = [
    "PDU_NAMES",
    "PduTracer",
    "dimse_log",
    "log_message",
    "pdu_log",
    "summarize_message",
    "summarize_pdu",
]

pdu_log = logging.getLogger("dicomnet.pdu")
dimse_log = logging.getLogger("dicomnet.dimse")

PDU_NAMES = {
    0x01: "A-ASSOCIATE-RQ",
    0x02: "A-ASSOCIATE-AC",
    0x03: "A-ASSOCIATE-RJ",
    0x04: "P-DATA-TF",
    0x05: "A-RELEASE-RQ",
    0x06: "A-RELEASE-RP",
    0x07: "A-ABORT",
}
"""PS3.8 9.3.1: the PDU types."""


def _pdvs(body: Any) -> str:
    parts = []
    for context_id, control, fragment in parse_pdata(body):
        kind = "command" if control & 0x01 else "dataset"
        last = ", last" if control & 0x02 else ""
        parts.append(f"[context {context_id}, {kind}{last}, {len(fragment)} bytes]")
    return " ".join(parts)


def summarize_pdu(pdu_type: int, body: Any) -> str:
    """``A-ASSOCIATE-RQ, 215 bytes: ...`` for one PDU (type and body, header excluded)."""
    name = PDU_NAMES.get(pdu_type, f"unknown PDU 0x{pdu_type:02X}")
    head = f"{name}, {len(body) + 6} bytes"
    try:
        if pdu_type == 0x04:
            return f"{head}: {_pdvs(body)}"
        if pdu_type not in PDU_NAMES or pdu_type in (0x05, 0x06):
            return head
        value = decode_pdu(pdu_type, body)
    except Exception as exc:  # a malformed PDU is summarised, not raised from a log line
        return f"{head}: malformed ({printable(exc)})"
    if pdu_type in (0x01, 0x02):
        info = value.user_information
        contexts = ", ".join(_context(item) for item in value.presentation_contexts)
        return (
            f"{head}: called {value.called_ae_title!r}, calling {value.calling_ae_title!r}, "
            f"max PDU {info.max_length}, {len(value.presentation_contexts)} contexts ({contexts})"
        )
    return f"{head}: result/source/reason {_fields(value)}"


def _context(item: Any) -> str:
    """The peer chose these UIDs: escaped (:func:`dicomnet.core.text.printable`)."""
    if hasattr(item, "abstract_syntax"):
        syntaxes = " ".join(printable(uid) for uid in item.transfer_syntaxes)
        return f"{item.context_id}: {printable(item.abstract_syntax)} [{syntaxes}]"
    return f"{item.context_id}: result {item.result} {printable(item.transfer_syntax)}".rstrip()


def _fields(value: Any) -> str:
    return " ".join(str(getattr(value, name)) for name in ("result", "source", "reason")
                    if hasattr(value, name))  # fmt: skip


class PduTracer:
    """Summarises the PDUs of one direction of a connection as its bytes go by.

    Fed with every chunk sent or received (only while DEBUG is enabled on
    ``dicomnet.pdu``), it frames PDUs itself, so neither the codec nor the
    Upper Layer changes for it. A P-DATA-TF is never held whole: only its
    PDV headers are read and the fragments skipped, so tracing a 2 GB
    dataset costs no memory; other PDUs (at most an A-ASSOCIATE-RQ) are
    decoded whole.
    """

    def __init__(self, direction: str, peer: Any) -> None:
        self.direction = direction
        self.peer = peer
        self._header = bytearray()
        self._type = 0
        self._left = 0
        self._body = bytearray()
        self._pdvs: list[str] = []
        self._pdv_header = bytearray()
        self._fragment_left = 0
        self._length = 0

    def feed(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while view:
            if self._left == 0 and len(self._header) < 6:
                take = 6 - len(self._header)
                self._header += view[:take]
                view = view[take:]
                if len(self._header) == 6:
                    self._type = self._header[0]
                    self._length = self._left = struct.unpack_from(">I", self._header, 2)[0]
                    if self._left == 0:
                        self._emit()
                continue
            if self._type == 0x04:
                view = self._pdata(view)
            else:
                take = min(self._left, len(view))
                if len(self._body) < (1 << 20):
                    self._body += view[:take]
                self._left -= take
                view = view[take:]
            if self._left == 0:
                self._emit()

    def _pdata(self, view: memoryview) -> memoryview:
        while view and self._left:
            if self._fragment_left:
                take = min(self._fragment_left, len(view), self._left)
                self._fragment_left -= take
                self._left -= take
                view = view[take:]
                continue
            take = min(6 - len(self._pdv_header), len(view), self._left)
            self._pdv_header += view[:take]
            self._left -= take
            view = view[take:]
            if len(self._pdv_header) == 6:
                length, context_id, control = struct.unpack(">IBB", self._pdv_header)
                kind = "command" if control & 0x01 else "dataset"
                last = ", last" if control & 0x02 else ""
                self._pdvs.append(f"[context {context_id}, {kind}{last}, {length - 2} bytes]")
                self._fragment_left = max(length - 2, 0)
                self._pdv_header.clear()
        return view

    def _emit(self) -> None:
        if self._type == 0x04:
            name = PDU_NAMES[0x04]
            summary = f"{name}, {self._length + 6} bytes: {' '.join(self._pdvs)}"
        else:
            summary = summarize_pdu(self._type, bytes(self._body))
        pdu_log.debug("%s %s: %s", self.direction, self.peer, summary)
        self._header.clear()
        self._body.clear()
        self._pdvs.clear()
        self._pdv_header.clear()
        self._fragment_left = 0


def summarize_message(message: Any, context_id: int, dataset_length: int | None) -> str:
    """``C-ECHO-RQ on context 1: message_id=1, affected_sop_class_uid=...``."""
    command = _dash(type(message).__name__)
    fields = []
    if dataclasses.is_dataclass(message):
        for field in dataclasses.fields(message):
            value = getattr(message, field.name)
            if value is None or field.name == "has_dataset":
                continue
            if field.name == "status":
                value = f"0x{int(value):04X}"
            elif isinstance(value, str):  # UIDs, AE titles: the peer's to choose
                value = printable(value)
            fields.append(f"{field.name}={value}")
    dataset = f", dataset {dataset_length} bytes" if dataset_length is not None else ", no dataset"
    return f"{command} on context {context_id}: {', '.join(fields)}{dataset}"


def _dash(name: str) -> str:
    """``CEchoRQ`` as ``C-ECHO-RQ``, ``NEventReportRSP`` as ``N-EVENT-REPORT-RSP``."""
    if len(name) < 2 or name[0] not in "CN":
        return name
    words = []
    current = ""
    for char in name[1:]:
        if char.isupper() and current and not current.isupper():
            words.append(current)
            current = char
        else:
            current += char
    words.append(current)
    suffix = words.pop() if words[-1] in ("RQ", "RSP") else ""
    text = name[0] + "-" + "-".join(word.upper() for word in words)
    return f"{text}-{suffix}" if suffix else text


def log_message(direction: str, context_id: int, message: Any, dataset: Any, peer: Any) -> None:
    """Log one DIMSE message (DEBUG on ``dicomnet.dimse``)."""
    if not dimse_log.isEnabledFor(logging.DEBUG):
        return
    length = None
    if dataset is not None:
        try:
            length = len(dataset)
        except TypeError:
            length = getattr(dataset, "size", None) or getattr(dataset, "length", None)
    dimse_log.debug("%s %s: %s", direction, peer, summarize_message(message, context_id, length))
