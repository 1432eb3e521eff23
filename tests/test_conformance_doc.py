"""docs/conformance.md agrees with the code, table by table, so it cannot drift.

Each table is read back from the Markdown and compared with what the archive
of ``dicomnet listen`` actually negotiates: the listener is built the way
the service builds it (:mod:`dicomnet.cli.listen_service`) and its acceptor
policy is asked, or A-ASSOCIATE-RQs are answered by it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dicomnet.archive.relational import MODEL_LEVELS, extended_answer
from dicomnet.cli.listen_service import ServiceConfig, _limits, _providers, _storage
from dicomnet.core.negotiation import build_request, negotiate_as_acceptor
from dicomnet.core.pdu import AssociateAC, SOPClassExtendedNegotiation
from dicomnet.core.uids import (
    ALL_TRANSFER_SYNTAXES,
    STORAGE_COMMITMENT_PUSH,
    VERIFICATION_SOP_CLASS,
)
from dicomnet.net.listener import Listener

DOC = Path(__file__).resolve().parents[1] / "docs" / "conformance.md"
UID = re.compile(r"^\d+(\.\d+)+$")


def section(heading: str) -> str:
    """The text from a heading to the next heading of the same or a higher level."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.MULTILINE)
    assert match, f"no heading {heading!r} in {DOC.name}"
    depth = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{depth}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of ``text``, as rows keyed by header."""
    found: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].startswith("|") and index + 1 < len(lines) and "---" in lines[index + 1]:
            header = [cell.strip() for cell in lines[index].strip("|").split("|")]
            rows = []
            index += 2
            while index < len(lines) and lines[index].startswith("|"):
                cells = [cell.strip() for cell in lines[index].strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=False)))
                index += 1
            found.append(rows)
        else:
            index += 1
    return found


def table_with(text: str, column: str, first: str) -> list[dict[str, str]]:
    for table in tables(text):
        if table and column in table[0] and table[0][column] == first:
            return table
    raise AssertionError(f"no table starting with {column} = {first}")


@pytest.fixture(scope="module")
def archive_listener(tmp_path_factory: pytest.TempPathFactory) -> Listener:
    """The listener ``dicomnet listen`` runs, with worklist and MPPS configured."""
    folder = tmp_path_factory.mktemp("archive")
    (folder / "worklist").mkdir()
    config = ServiceConfig(
        directory=str(folder / "data"),
        worklist=str(folder / "worklist"),
        mpps_dir=str(folder / "mpps"),
    )
    listener = Listener(config.aet, limits=_limits(config), accept_any_storage=True)
    _storage(config, listener)
    _providers(config, listener)
    return listener


def answer(listener: Listener, abstract: str, syntaxes: tuple[str, ...]) -> AssociateAC:
    rq = build_request("DICOMNET", "CHECK", [(abstract, syntaxes)])
    ac = negotiate_as_acceptor(rq, listener.policy)
    assert isinstance(ac, AssociateAC)
    return ac


def test_storage_transfer_syntaxes_are_the_archives_in_order(archive_listener: Listener) -> None:
    documented = [
        row["UID"]
        for row in table_with(
            section("4.2.3 Storage (C-STORE SCP)"), "Transfer syntax", "Explicit VR Little Endian"
        )
    ]
    assert tuple(documented) == archive_listener.policy.storage_transfer_syntaxes
    assert tuple(documented) == ALL_TRANSFER_SYNTAXES


def test_query_retrieve_transfer_syntaxes_are_the_archives(archive_listener: Listener) -> None:
    documented = [
        row["UID"]
        for row in table_with(
            section("4.2.4 Query (C-FIND SCP)"), "Transfer syntax", "Explicit VR Little Endian"
        )
    ]
    supported = {c.abstract_syntax: c for c in archive_listener.policy.supported_contexts}
    for model in ("1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.2.1",
                  "1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.2.2",
                  "1.2.840.10008.5.1.4.1.2.1.3", "1.2.840.10008.5.1.4.1.2.2.3"):  # fmt: skip
        assert list(supported[model].transfer_syntaxes) == documented, model
        # and each is really accepted, the first of the list preferred
        ac = answer(archive_listener, model, tuple(reversed(documented)))
        assert ac.presentation_contexts[0].transfer_syntax == documented[0]


def test_every_sop_class_the_archive_serves_is_in_the_overview(archive_listener: Listener) -> None:
    overview = table_with(section("1. Overview"), "SOP Class", "Verification")
    documented = {
        row["UID"] for row in overview if UID.match(row["UID"]) and "SCP" in row["ARCHIVE"]
    }
    served = {c.abstract_syntax for c in archive_listener.policy.supported_contexts}
    assert served == documented
    assert {VERIFICATION_SOP_CLASS, STORAGE_COMMITMENT_PUSH} <= served
    for uid in documented:
        ac = answer(archive_listener, uid, ("1.2.840.10008.1.2",))
        assert ac.presentation_contexts[0].result == 0, uid


def test_extended_negotiation_table_is_what_the_archive_answers(
    archive_listener: Listener,
) -> None:
    rows = table_with(section("4.2.4 Query (C-FIND SCP)"), "Relational", "accepted when proposed")
    documented = {row["UID"] for row in rows}
    served = {c.abstract_syntax for c in archive_listener.policy.supported_contexts}
    assert documented == served & set(MODEL_LEVELS)
    hook = archive_listener.policy.sop_class_extended
    assert hook is extended_answer
    for uid in documented:
        assert hook(SOPClassExtendedNegotiation(uid, b"\x01\x01\x01")) == b"\x01\x00\x00"
        assert hook(SOPClassExtendedNegotiation(uid, b"\x00")) == b"\x00"
    assert hook(SOPClassExtendedNegotiation("1.2.840.10008.5.1.4.1.1.2", b"\x01")) is None
