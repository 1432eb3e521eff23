"""``dicomnet -d``: every PDU and DIMSE message in summary, as DCMTK's ``-d`` shows them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dicomnet.core import dimse
from dicomnet.core.codec import encode_pdu
from dicomnet.core.negotiation import build_request
from dicomnet.core.pdu import Abort, AssociateRJ
from dicomnet.net.pdu_log import PduTracer, _dash, summarize_message, summarize_pdu
from dicomnet.testing import raw

from peers import dcmtk_server, free_port


def pdus(value: object) -> list[tuple[int, bytes]]:
    encoded = encode_pdu(value)  # type: ignore[arg-type]
    return [(encoded[0], encoded[6:])]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CEchoRQ", "C-ECHO-RQ"),
        ("CStoreRSP", "C-STORE-RSP"),
        ("CCancelRQ", "C-CANCEL-RQ"),
        ("NEventReportRSP", "N-EVENT-REPORT-RSP"),
        ("NActionRQ", "N-ACTION-RQ"),
    ],
)
def test_dimse_names_as_the_standard_writes_them(name: str, expected: str) -> None:
    assert _dash(name) == expected


def test_pdu_summaries() -> None:
    rq = build_request("PACS", "ME", [("1.2.840.10008.1.1", ("1.2.840.10008.1.2",))])
    ((pdu_type, body),) = pdus(rq)
    summary = summarize_pdu(pdu_type, body)
    assert summary.startswith(f"A-ASSOCIATE-RQ, {len(body) + 6} bytes: called 'PACS', calling 'ME'")
    assert "1 contexts (1: 1.2.840.10008.1.1 [1.2.840.10008.1.2])" in summary
    ((pdu_type, body),) = pdus(AssociateRJ(1, 1, 7))
    assert summarize_pdu(pdu_type, body) == "A-ASSOCIATE-RJ, 10 bytes: result/source/reason 1 1 7"
    ((pdu_type, body),) = pdus(Abort(2, 6))
    assert summarize_pdu(pdu_type, body) == "A-ABORT, 10 bytes: result/source/reason 2 6"
    data = raw.p_data(raw.pdv(1, 0x03, b"x" * 10), raw.pdv(3, 0x00, b"y" * 4))
    assert summarize_pdu(0x04, data[6:]) == (
        f"P-DATA-TF, {len(data)} bytes: [context 1, command, last, 10 bytes] "
        "[context 3, dataset, 4 bytes]"
    )
    assert summarize_pdu(0x04, b"\x00\x00").startswith("P-DATA-TF, 8 bytes: malformed")


def test_the_tracer_frames_pdus_across_any_split(caplog: pytest.LogCaptureFixture) -> None:
    data = raw.p_data(raw.pdv(1, 0x03, b"x" * 10), raw.pdv(3, 0x00, b"y" * 4))
    stream = encode_pdu(AssociateRJ(1, 1, 7)) + data + raw.release_rq()
    tracer = PduTracer("received from", "peer")
    with caplog.at_level("DEBUG", logger="dicomnet.pdu"):
        for index in range(len(stream)):  # one byte at a time
            tracer.feed(stream[index : index + 1])
    assert [r.getMessage() for r in caplog.records] == [
        "received from peer: A-ASSOCIATE-RJ, 10 bytes: result/source/reason 1 1 7",
        f"received from peer: P-DATA-TF, {len(data)} bytes: [context 1, command, last, 10 bytes]"
        " [context 3, dataset, 4 bytes]",
        "received from peer: A-RELEASE-RQ, 10 bytes",
    ]


def test_message_summary_lists_the_fields_that_are_set() -> None:
    rsp = dimse.CEchoRSP(
        message_id_being_responded_to=7,
        status=0,
        affected_sop_class_uid="1.2.840.10008.1.1",
    )
    summary = summarize_message(rsp, 1, None)
    assert summary.startswith("C-ECHO-RSP on context 1: ")
    assert "message_id_being_responded_to=7" in summary and "status=0x0000" in summary
    assert summary.endswith(", no dataset")


def dicomnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomnet", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300"},
        check=False,
    )


@pytest.mark.interop
def test_debug_flag_logs_every_pdu_and_message_against_storescp() -> None:
    port = free_port()
    with dcmtk_server("storescp", [str(port)], port):
        debug = dicomnet("-d", "echo", "--aec", "STORESCP", "127.0.0.1", str(port))
        verbose = dicomnet("-v", "echo", "--aec", "STORESCP", "127.0.0.1", str(port))
    assert debug.returncode == 0, debug.stderr
    log = debug.stderr
    for expected in (
        "dicomnet.pdu: sent to",
        "A-ASSOCIATE-RQ",
        "called 'STORESCP', calling 'DICOMNET'",
        "received from",
        "A-ASSOCIATE-AC",
        "[context 1, command, last,",
        "dicomnet.dimse: sent",
        "C-ECHO-RQ on context 1: message_id=1",
        "C-ECHO-RSP on context 1: message_id_being_responded_to=1",
        "status=0x0000",
        "A-RELEASE-RQ",
        "A-RELEASE-RP",
    ):
        assert expected in log, expected
    assert verbose.returncode == 0
    assert "dicomnet.pdu" not in verbose.stderr
