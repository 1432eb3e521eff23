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
are summarised from the buffers handed to the transport (a PDU may span
several buffers, and a buffer hold parts of two).
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from collections.abc import Sequence
from typing import Any

from dicomnet.core.codec import decode_pdu, parse_pdata

__all__ = [
    "PDU_NAMES",
    "dimse_log",
    "log_message",
    "log_received_event",
    "log_sent",
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
        return f"{head}: malformed ({exc})"
    if pdu_type in (0x01, 0x02):
        info = value.user_information
        contexts = ", ".join(_context(item) for item in value.presentation_contexts)
        return (
            f"{head}: called {value.called_ae_title!r}, calling {value.calling_ae_title!r}, "
            f"max PDU {info.max_length}, {len(value.presentation_contexts)} contexts ({contexts})"
        )
    return f"{head}: result/source/reason {_fields(value)}"


def _context(item: Any) -> str:
    if hasattr(item, "abstract_syntax"):
        return f"{item.context_id}: {item.abstract_syntax} [{' '.join(item.transfer_syntaxes)}]"
    return f"{item.context_id}: result {item.result} {item.transfer_syntax}".rstrip()


def _fields(value: Any) -> str:
    return " ".join(str(getattr(value, name)) for name in ("result", "source", "reason")
                    if hasattr(value, name))  # fmt: skip


def _split(buffers: Sequence[Any]) -> list[tuple[int, bytes]]:
    """The whole PDUs in a list of buffers, as (type, body)."""
    data = b"".join(bytes(buffer) for buffer in buffers)
    pdus = []
    offset = 0
    while offset + 6 <= len(data):
        pdu_type, length = data[offset], struct.unpack_from(">I", data, offset + 2)[0]
        pdus.append((pdu_type, data[offset + 6 : offset + 6 + length]))
        offset += 6 + length
    return pdus


def log_sent(buffers: Sequence[Any], peer: Any) -> None:
    """Log every PDU of the buffers about to be written (DEBUG on ``dicomnet.pdu``)."""
    if not pdu_log.isEnabledFor(logging.DEBUG) or not buffers:
        return
    for pdu_type, body in _split(buffers):
        pdu_log.debug("sent to %s: %s", peer, summarize_pdu(pdu_type, body))


def log_received_event(event: Any, peer: Any) -> None:
    """Log the PDU behind an Upper Layer event (DEBUG on ``dicomnet.pdu``)."""
    if not pdu_log.isEnabledFor(logging.DEBUG):
        return
    name = type(event).__name__
    if name == "PDataReceived":
        summary = summarize_pdu(0x04, event.body)
    elif name == "AssociateRequested":
        summary = _decoded("A-ASSOCIATE-RQ", event.rq)
    elif name == "AssociateAccepted":
        summary = _decoded("A-ASSOCIATE-AC", event.ac)
    elif name == "AssociateRejected":
        summary = f"A-ASSOCIATE-RJ: result/source/reason {_fields(event.rj)}"
    elif name == "Aborted":
        origin = "A-ABORT" if event.by_peer else "A-P-ABORT (local, for invalid input)"
        summary = f"{origin}: source {event.source}, reason {event.reason}"
    elif name == "ReleaseRequested":
        summary = "A-RELEASE-RQ" + (" (release collision)" if event.collision else "")
    elif name == "ReleaseConfirmed":
        summary = "A-RELEASE-RP"
    else:
        summary = "transport connection closed"
    pdu_log.debug("received from %s: %s", peer, summary)


def _decoded(name: str, value: Any) -> str:
    contexts = ", ".join(_context(item) for item in value.presentation_contexts)
    return (
        f"{name}: called {value.called_ae_title!r}, calling {value.calling_ae_title!r}, "
        f"max PDU {value.user_information.max_length}, "
        f"{len(value.presentation_contexts)} contexts ({contexts})"
    )


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
