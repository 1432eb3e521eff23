"""The contracts at the seams: a UL connection that assembles messages within
its limits, the C-STORE provider protocols, and one table of status codes.

In memory, no sockets: the connection is driven with bytes, the sinks write to
a temporary folder.
"""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from dicomnet.archive.archive import Archive
from dicomnet.core import status, ul
from dicomnet.core.codec import encode_command, encode_pdu, fragment_message
from dicomnet.core.pdu import AssociateAC, AssociateRQ, PresentationContextAC, PresentationContextRQ
from dicomnet.core.ul import ConnectionLimits, Role
from dicomnet.net.provider import DatasetSink, FileDatasetSink, StoreProvider
from dicomnet.services.commit import IncomingFile, Publisher
from dicomnet.services.discard import DiscardStorage
from dicomnet.services.storage import FolderStorage

SRC = Path(__file__).resolve().parent.parent / "src" / "dicomnet"

CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
RQ = AssociateRQ("ACCEPTOR", "REQUESTOR", (PresentationContextRQ(1, CT, (IMPLICIT,)),))
AC = AssociateAC("ACCEPTOR", "REQUESTOR", (PresentationContextAC(1, 0, IMPLICIT),))
C_STORE_RQ = {
    0x00000002: CT,
    0x00000100: 0x0001,
    0x00000110: 7,
    0x00000700: 0,
    0x00000800: 0x0000,
    0x00001000: "1.2.3.4",
}


def accepted(limits: ConnectionLimits | None = None, sink: Any = None) -> ul.Connection:
    """An acceptor in Sta6 that assembles messages."""
    conn = ul.Connection(Role.ACCEPTOR, limits, messages=True, dataset_sink=sink)
    conn.connection_made()
    conn.receive_data(encode_pdu(RQ))
    assert isinstance(conn.next_event(), ul.AssociateRequested)
    conn.accept(AC)
    conn.data_to_send()
    return conn


def message_pdus(context_id: int, dataset: bytes | None, max_pdu: int = 1024) -> bytes:
    buffers = fragment_message(context_id, encode_command(C_STORE_RQ), dataset, max_pdu)
    return b"".join(bytes(b) for b in buffers)


def events(conn: ul.Connection) -> list[ul.Event]:
    found = []
    while (event := conn.next_event()) is not None:
        found.append(event)
    return found


# -- the UL connection owns the assembler ---------------------------------------------------


def test_a_message_connection_emits_whole_messages() -> None:
    conn = accepted()
    conn.receive_data(message_pdus(1, bytes(5000)) + message_pdus(1, b"\x01\x02"))
    got = events(conn)
    assert [type(e) for e in got] == [ul.MessageReceived, ul.MessageReceived]
    first, second = got
    assert isinstance(first, ul.MessageReceived) and isinstance(second, ul.MessageReceived)
    assert first.context_id == 1 and first.command[0x00001000] == "1.2.3.4"
    assert bytes(first.dataset) == bytes(5000) and bytes(second.dataset) == b"\x01\x02"
    assert conn.pdus_received == 1 + (1 + 5) + (1 + 1)  # the RQ, then command + dataset PDUs


def test_the_dataset_goes_to_the_sink_the_factory_returns() -> None:
    written: list[bytes] = []

    class Sink:
        def write(self, fragment: Any) -> None:
            written.append(bytes(fragment))

    sink = Sink()
    calls: list[tuple[int, dict[int, Any]]] = []

    def factory(context_id: int, command: dict[int, Any]) -> Any:
        calls.append((context_id, command))
        return sink

    conn = accepted(sink=factory)
    conn.receive_data(message_pdus(1, bytes(range(256)) * 10))
    (event,) = events(conn)
    assert isinstance(event, ul.MessageReceived) and event.dataset is sink
    assert b"".join(written) == bytes(range(256)) * 10
    assert [c for c, _ in calls] == [1]


def test_the_limits_are_the_connections_from_construction() -> None:
    limits = ConnectionLimits(max_pdu_length=4096, max_buffered_dataset_length=1000)
    conn = accepted(limits)
    assert conn.limits is limits and conn.max_pdu_length == 4096
    with pytest.raises(AttributeError):
        limits.max_pdu_length = 0  # type: ignore[misc]
    conn.receive_data(message_pdus(1, bytes(1002)))
    assert events(conn) == [ul.Aborted(2, 6, by_peer=False)]  # AA-8
    assert conn.state is ul.State.STA13
    assert conn.protocol_error is not None


def test_a_pdv_on_a_context_not_negotiated_is_an_invalid_pdu() -> None:
    conn = accepted()
    conn.use_contexts({1})
    conn.receive_data(message_pdus(3, None))
    (event,) = events(conn)
    assert isinstance(event, ul.Aborted) and not event.by_peer


def test_a_sink_that_raises_aborts_the_association() -> None:
    class Broken:
        def write(self, fragment: Any) -> None:
            raise OSError("disk on fire")

    conn = accepted(sink=lambda context_id, command: Broken())
    conn.receive_data(message_pdus(1, bytes(10)))
    (event,) = events(conn)
    assert isinstance(event, ul.Aborted) and not event.by_peer
    assert "disk on fire" in str(conn.protocol_error)


def test_without_messages_pdata_stays_a_pdata_indication() -> None:
    conn = ul.Connection(Role.ACCEPTOR)
    conn.connection_made()
    conn.receive_data(encode_pdu(RQ))
    conn.next_event()
    conn.accept(AC)
    conn.receive_data(message_pdus(1, None))
    assert [type(e) for e in events(conn)] == [ul.PDataReceived]


def test_the_closing_event_is_not_the_exception() -> None:
    from dicomnet import errors

    conn = accepted()
    conn.connection_lost()
    assert events(conn)[-1] == ul.TransportClosed()
    assert not hasattr(ul, "ConnectionClosed") and hasattr(errors, "ConnectionClosed")


# -- associations use the transport's API, not its insides ---------------------------------


@pytest.mark.parametrize("module", ["association", "client", "listener"])
def test_associations_never_touch_the_connection_or_the_assembler(module: str) -> None:
    tree = ast.parse((SRC / "net" / f"{module}.py").read_text())
    reached = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in {"connection", "assembler", "flush"}
        and isinstance(node.value, (ast.Name, ast.Attribute))
        and (node.value.id if isinstance(node.value, ast.Name) else node.value.attr) == "protocol"
    ]
    assert reached == []


# -- the C-STORE provider contract ----------------------------------------------------------


def test_the_providers_are_store_providers(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path / "files")
    archive = Archive(tmp_path / "archive")
    providers: list[StoreProvider] = [storage, DiscardStorage(), archive]
    for provider in providers:
        assert callable(provider.sink) and callable(provider.handle)
        assert isinstance(provider.observers, list)
    assert archive.observers is archive.storage.observers


def incoming_file(folder: Path) -> IncomingFile:
    return Publisher(str(folder), fsync=False).create(b"HEADER", 0.0)


def test_an_incoming_file_takes_the_pumps_writes(tmp_path: Path) -> None:
    sink = incoming_file(tmp_path)
    assert isinstance(sink, FileDatasetSink)
    assert sink.wants_digest and sink.head_length > 0
    fd = sink.fileno()
    assert fd >= 0
    os.write(fd, b"abcdefgh")  # as the codec's pump writes
    sink.finished(8, 0, hashlib.sha256(b"abcdefgh").digest(), b"abcdefgh")
    assert sink.size == 8 and sink.error is None
    assert sink.sha256() == hashlib.sha256(b"abcdefgh").hexdigest()
    assert os.pread(fd, 100, 0) == b"HEADERabcdefgh"
    sink.discard()
    assert sink.closed and list((tmp_path / ".incoming").iterdir()) == []


def test_a_failed_pump_write_is_kept_for_a700(tmp_path: Path) -> None:
    sink = incoming_file(tmp_path)
    sink.finished(4, 28, b"", b"")  # ENOSPC from the pump
    assert isinstance(sink.error, OSError) and sink.error.errno == 28
    sink.write(b"more")  # dropped, never raises
    assert sink.size == 4
    sink.discard()


def test_the_discarding_sink_is_a_file_sink_onto_dev_null() -> None:
    sink: DatasetSink | None = DiscardStorage().sink(None, 1, {})
    assert isinstance(sink, FileDatasetSink)
    assert os.path.samefile(f"/proc/self/fd/{sink.fileno()}", os.devnull)
    assert sink.head_length == 0 and not sink.wants_digest
    sink.write(b"1234")  # the path of a codec without the pump
    sink.finished(10, 0, b"", b"")
    sink.discard()
    assert sink.size == 10 and sink.committing is False


# -- one table of status codes --------------------------------------------------------------

STATUS_OWNERS = [
    "services/storage.py",
    "services/discard.py",
    "services/commitment.py",
    "services/mpps.py",
    "archive/archive.py",
    "net/retrieve.py",
    "net/association.py",
]


@pytest.mark.parametrize("path", STATUS_OWNERS)
def test_status_codes_come_from_core_status(path: str) -> None:
    names = set(status.__all__)
    tree = ast.parse((SRC / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                assert not (isinstance(target, ast.Name) and target.id in names), (
                    f"{path} declares {target.id} again"
                )
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Reply"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    assert literals == [], f"{path} answers a literal status"


def test_the_named_statuses_are_the_standards() -> None:
    assert status.STORED_STATUSES == {0x0000, 0xB000, 0xB006, 0xB007}
    assert status.status_class(status.WARNING) is status.StatusClass.WARNING
    for name in status.__all__:
        value = getattr(status, name)
        if isinstance(value, int) and name.isupper():
            assert value in status.STATUS_NAMES, f"{name} = {value:04X} has no description"
