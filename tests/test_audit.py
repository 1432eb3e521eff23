"""The audit trail: PS3.15 A.5 messages over RFC 5424 syslog, to a receiver the test runs.

The receivers (UDP, and TLS with octet counting) are written here, from
RFC 5424/5425/5426: a message that passes them is framed as a collector
expects. The archive is the one ``dicomnet listen`` runs (``serve``), and
every event of the audit trail is provoked for real: start and stop,
accepted and rejected associations, a store, a query, a move, a get, a
peer refused and input refused.
"""

from __future__ import annotations

import asyncio
import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydicom.dataset import Dataset

from dicomnet.cli.listen_service import ServiceConfig, serve
from dicomnet.core.dimse import CommandField
from dicomnet.core.proxy_protocol import V2_SIGNATURE
from dicomnet.core.uids import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from dicomnet.errors import AssociationRejected
from dicomnet.net import client
from dicomnet.net.listener import Listener
from dicomnet.net.retrieve import get_contexts
from dicomnet.net.tls import client_context, server_context
from dicomnet.services.audit import EV, Participant, audit_message, study_object
from dicomnet.services.audit_syslog import SyslogSender, frame_octet_counted, syslog_message
from dicomnet.services.storage import FolderStorage
from dicomnet.testing import RawPeer, raw

from factory import make_study
from peers import free_port
from tls_certificates import make_certificates

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>\S+) "
    rb"(?P<app>\S+) (?P<procid>\d+) (?P<msgid>IHE\+RFC-3881) - \xef\xbb\xbf(?P<msg><.*)$",
    re.S,
)


@dataclass
class Message:
    """One received syslog message: its header fields and its audit XML."""

    fields: dict[str, bytes]
    xml: ET.Element

    @property
    def event_id(self) -> str:
        return self.xml.find("EventIdentification/EventID").get("csd-code")  # type: ignore[union-attr]

    @property
    def event_types(self) -> list[str]:
        return [
            c.get("csd-code", "") for c in self.xml.findall("EventIdentification/EventTypeCode")
        ]

    @property
    def event(self) -> dict[str, str]:
        return dict(self.xml.find("EventIdentification").attrib)  # type: ignore[union-attr]

    @property
    def outcome_description(self) -> str:
        return self.xml.findtext("EventIdentification/EventOutcomeDescription") or ""

    def participants(self) -> list[dict[str, str]]:
        found = []
        for element in self.xml.findall("ActiveParticipant"):
            values = dict(element.attrib)
            role = element.find("RoleIDCode")
            values["role"] = role.get("csd-code", "") if role is not None else ""
            found.append(values)
        return found

    def objects(self) -> list[ET.Element]:
        return self.xml.findall("ParticipantObjectIdentification")


def parse(datagram: bytes) -> Message:
    match = HEADER.match(datagram)
    assert match, datagram[:120]
    fields = match.groupdict()
    assert fields["pri"] == b"85"  # facility 10 (security/authorization), notice
    return Message(fields, ET.fromstring(fields["msg"].decode("utf-8")))


class UdpReceiver(asyncio.DatagramProtocol):
    """An RFC 5426 collector: one message per datagram."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.messages.append(parse(data))


@asynccontextmanager
async def udp_receiver() -> AsyncIterator[tuple[UdpReceiver, int]]:
    transport, receiver = await asyncio.get_running_loop().create_datagram_endpoint(
        UdpReceiver, local_addr=("127.0.0.1", 0)
    )
    try:
        yield receiver, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def read_octet_counted(reader: asyncio.StreamReader) -> bytes:
    """One RFC 5425 frame: MSG-LEN SP SYSLOG-MSG."""
    length = await reader.readuntil(b" ")
    assert length[:-1].isdigit() and not length.startswith(b"0"), length
    return await reader.readexactly(int(length[:-1]))


async def until(condition: Any, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


# -- the message and its framing ----------------------------------------------------------------
def test_message_follows_the_schema_order_and_codes() -> None:
    xml = audit_message(
        EV.INSTANCES_TRANSFERRED,
        action="C",
        outcome=0,
        participants=[
            Participant("MODALITY", True, EV.SOURCE, network_access_point="192.0.2.7"),
            Participant("ARCHIVE", False, EV.DESTINATION, network_access_point="node1"),
        ],
        objects=[study_object("1.2.3", {CT: 2})],
        source_id="node1",
        when=1_700_000_000.25,
    )
    root = ET.fromstring(xml)
    assert root.tag == "AuditMessage"
    assert [child.tag for child in root] == [
        "EventIdentification",
        "ActiveParticipant",
        "ActiveParticipant",
        "AuditSourceIdentification",
        "ParticipantObjectIdentification",
    ]
    event = root.find("EventIdentification")
    assert event is not None
    assert event.attrib == {
        "EventActionCode": "C",
        "EventDateTime": "2023-11-14T22:13:20.250Z",
        "EventOutcomeIndicator": "0",
    }
    assert event.find("EventID").attrib == {  # type: ignore[union-attr]
        "csd-code": "110104",
        "codeSystemName": "DCM",
        "originalText": "DICOM Instances Transferred",
    }
    source, destination = root.findall("ActiveParticipant")
    assert source.attrib == {
        "UserID": "MODALITY",
        "UserIsRequestor": "true",
        "NetworkAccessPointID": "192.0.2.7",
        "NetworkAccessPointTypeCode": "2",
    }
    assert source.find("RoleIDCode").get("csd-code") == "110153"  # type: ignore[union-attr]
    assert destination.get("NetworkAccessPointTypeCode") == "1"  # a machine name
    audit_source = root.find("AuditSourceIdentification")
    assert audit_source is not None and audit_source.get("AuditSourceID") == "node1"
    study = root.find("ParticipantObjectIdentification")
    assert study is not None
    assert study.attrib == {
        "ParticipantObjectID": "1.2.3",
        "ParticipantObjectTypeCode": "2",
        "ParticipantObjectTypeCodeRole": "3",
    }
    assert study.find("ParticipantObjectIDTypeCode").get("csd-code") == "110180"  # type: ignore[union-attr]
    sop = study.find("ParticipantObjectDescription/SOPClass")
    assert sop is not None and sop.attrib == {"UID": CT, "NumberOfInstances": "2"}


def test_values_are_escaped() -> None:
    xml = audit_message(
        EV.SECURITY_ALERT,
        action="E",
        outcome=8,
        participants=[Participant('<A&"B>', True)],
        source_id="x",
        outcome_description="</EventIdentification><x>",
    )
    root = ET.fromstring(xml)
    assert root.find("ActiveParticipant").get("UserID") == '<A&"B>'  # type: ignore[union-attr]
    assert (
        root.findtext("EventIdentification/EventOutcomeDescription") == "</EventIdentification><x>"
    )


def test_syslog_framing() -> None:
    message = syslog_message("<AuditMessage/>", hostname="node 1", procid="42", when=0.5)
    assert message == (
        b"<85>1 1970-01-01T00:00:00.500000Z node1 dicomnet 42 IHE+RFC-3881 - "
        b"\xef\xbb\xbf<AuditMessage/>"
    )
    assert frame_octet_counted(b"abc") == b"3 abc"
    assert parse(syslog_message("<AuditMessage/>", hostname="h")).xml.tag == "AuditMessage"


# -- the sender ----------------------------------------------------------------------------------
def test_udp_sender_delivers_each_message_as_one_datagram() -> None:
    async def scenario() -> None:
        async with udp_receiver() as (receiver, port):
            sender = SyslogSender("127.0.0.1", port, transport="udp")
            sender.start()
            for index in range(5):
                assert sender.submit(syslog_message(f"<AuditMessage n='{index}'/>", hostname="h"))
            await sender.close()
            await until(lambda: len(receiver.messages) == 5)
            assert [m.xml.get("n") for m in receiver.messages] == ["0", "1", "2", "3", "4"]
            assert sender.sent == 5 and sender.lost == 0

    run(scenario())


def test_tls_sender_frames_by_octet_count_with_mutual_authentication(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path / "pki")
    received: list[bytes] = []
    peers: list[Any] = []

    async def collector(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peercert"))
        try:
            while True:
                received.append(await read_octet_counted(reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def scenario() -> None:
        context = server_context(
            certificates.server_cert,
            certificates.server_key,
            ca=certificates.ca,
            require_client_certificate=True,
        )
        server = await asyncio.start_server(collector, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        sender = SyslogSender(
            "127.0.0.1",
            port,
            transport="tls",
            ssl_context=client_context(
                ca=certificates.ca,
                certificate=certificates.client_cert,
                key=certificates.client_key,
            ),
        )
        sender.start()
        xml = "<AuditMessage>" + "é" * 3000 + "</AuditMessage>"  # multi-byte, several records
        for _ in range(3):
            sender.submit(syslog_message(xml, hostname="h"))
        await until(lambda: len(received) == 3)
        await sender.close()
        server.close()
        assert all(parse(frame).xml.text == "é" * 3000 for frame in received)
        assert peers and peers[0] is not None  # our certificate was asked for and shown

    run(scenario())


def test_lost_collector_is_counted_and_never_waited_for(tmp_path: Path) -> None:
    """Nothing listens: the bounded queue fills, the rest is dropped and counted."""
    lost: list[int] = []

    async def scenario() -> None:
        port = free_port()
        sender = SyslogSender("127.0.0.1", port, transport="tls", queue_size=4, on_lost=lost.append)
        sender.start()
        accepted = [sender.submit(b"<85>1 - - - - - - x") for _ in range(50)]
        assert accepted.count(True) == 4 and accepted.count(False) == 46
        assert sender.lost == 46 and sum(lost) == 46
        await asyncio.sleep(0.2)
        assert sender.connect_failures >= 1
        # The collector comes back: what waited in the queue is delivered.
        received: list[bytes] = []

        async def collector(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    received.append(await read_octet_counted(reader))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return

        certificates = make_certificates(tmp_path / "pki")
        context = server_context(certificates.server_cert, certificates.server_key)
        sender.ssl_context = client_context(ca=certificates.ca)
        server = await asyncio.start_server(collector, "127.0.0.1", port, ssl=context)
        await until(lambda: len(received) == 4, seconds=15)
        await sender.close()
        server.close()
        assert sender.sent == 4

    run(scenario())


# -- every event, from the archive that dicomnet listen runs ---------------------------------------
def query(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


@asynccontextmanager
async def audited_archive(
    tmp_path: Path, collector: str, **settings: Any
) -> AsyncIterator[tuple[Listener, CollectorRegistry]]:
    config = ServiceConfig(
        aet="ARCHIVE",
        host="127.0.0.1",
        port=0,
        directory=str(tmp_path / "archive"),
        fsync="never",
        audit_syslog=collector,
        audit_source_id="node1",
        **settings,
    )
    stop = asyncio.Event()
    ready: asyncio.Future[Listener] = asyncio.get_running_loop().create_future()
    registry = CollectorRegistry()
    task = asyncio.create_task(
        serve(config, stop, ready=ready.set_result, metrics_registry=registry)
    )
    listener = await asyncio.wait_for(asyncio.shield(ready), 10)
    try:
        yield listener, registry
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def test_every_event_of_the_archive_is_audited(tmp_path: Path) -> None:
    study_a, paths_a = make_study(tmp_path / "a", 3)
    study_b, paths_b = make_study(tmp_path / "b", 2)
    moved = tmp_path / "moved"
    got = tmp_path / "got"

    async def scenario() -> list[Message]:
        destination = Listener("DEST", accept_any_storage=True)
        FolderStorage(moved).attach(destination)
        await destination.listen("127.0.0.1", 0)
        async with (
            udp_receiver() as (receiver, port),
            audited_archive(
                tmp_path,
                f"127.0.0.1:{port}",
                require_called_aet=True,
                move_destinations={"DEST": ("127.0.0.1", destination.port)},
                proxy_protocol=True,
                trusted_proxies=("10.0.0.0/8",),
            ) as (listener, registry),
        ):
            archive = listener.port
            await until(lambda: len(receiver.messages) == 1)  # the start
            with pytest.raises(AssociationRejected):
                async with client.connect("127.0.0.1", archive, called_ae_title="ELSEWHERE"):
                    pass
            async with client.connect(
                "127.0.0.1",
                archive,
                called_ae_title="ARCHIVE",
                calling_ae_title="MODALITY",
                contexts=[(CT, [EXPLICIT])],
                max_operations_invoked=4,
            ) as association:
                statuses = [await association.store(p) for p in paths_a + paths_b]
                assert [int(s.status) for s in statuses] == [0] * 5
            identifier = query("STUDY", StudyInstanceUID=study_a, PatientName="")
            async with client.connect(
                "127.0.0.1",
                archive,
                called_ae_title="ARCHIVE",
                calling_ae_title="VIEWER",
                contexts=[(STUDY_ROOT_FIND, [EXPLICIT]), (STUDY_ROOT_MOVE, [EXPLICIT])],
            ) as association:
                found = [r async for r in association.find(identifier, STUDY_ROOT_FIND)]
                assert len(found) == 2 and found[-1].status == 0
                move = query("STUDY", StudyInstanceUID=study_b)
                responses = [r async for r in association.move(move, STUDY_ROOT_MOVE, "DEST")]
                assert responses[-1].status == 0
            storage = FolderStorage(got)
            contexts, roles = get_contexts(STUDY_ROOT_GET)
            async with client.connect(
                "127.0.0.1",
                archive,
                called_ae_title="ARCHIVE",
                calling_ae_title="WORKSTATION",
                contexts=contexts,
                roles=roles,
                handlers={CommandField.C_STORE_RQ: storage.handle},
                dataset_sink=storage.sink,
            ) as association:
                get = query("STUDY", StudyInstanceUID=study_a)
                responses = [r async for r in association.get(get, STUDY_ROOT_GET)]
                assert responses[-1].status == 0
            # A PROXY header from a peer that is not a trusted proxy.
            async with await RawPeer.connect("127.0.0.1", archive) as peer:
                await peer.send(V2_SIGNATURE + b"\x20\x00\x00\x00")
                assert await peer.closed()
            # Hostile input: a P-DATA on a presentation context never proposed.
            async with await RawPeer.connect("127.0.0.1", archive) as peer:
                await peer.associate(called="ARCHIVE", calling="INTRUDER")
                await peer.send(raw.p_data(raw.pdv(99, 0x03, raw.c_echo_rq())))
                await peer.expect_abort()
            await until(lambda: any(m.event_types == ["110132"] for m in receiver.messages))
            await asyncio.sleep(0.2)
            sent = registry.get_sample_value("dicomnet_audit_messages_sent_total")
            alerts = {
                kind: registry.get_sample_value("dicomnet_security_alerts_total", {"kind": kind})
                for kind in ("peer_refused", "input_refused")
            }
        await destination.close(timeout=0)
        await until(lambda: receiver.messages[-1].event_types == ["110121"])
        assert sent is not None and sent >= 12
        assert alerts == {"peer_refused": 1.0, "input_refused": 1.0}
        return receiver.messages

    messages = run(scenario())
    for message in messages:
        assert message.fields["app"] == b"dicomnet"
        source = message.xml.find("AuditSourceIdentification")
        assert source is not None and source.get("AuditSourceID") == "node1"
        assert message.event["EventDateTime"].endswith("Z")
    by_kind: dict[tuple[str, ...], list[Message]] = {}
    for message in messages:
        by_kind.setdefault((message.event_id, *message.event_types), []).append(message)

    start, stop = messages[0], messages[-1]
    assert (start.event_id, start.event_types) == ("110100", ["110120"])
    assert (stop.event_id, stop.event_types) == ("110100", ["110121"])
    assert start.participants()[0]["UserID"] == "ARCHIVE"
    assert start.participants()[0]["role"] == "110150"

    logins = by_kind[("110114", "110122")]
    rejected = [m for m in logins if m.event["EventOutcomeIndicator"] == "4"]
    accepted = [m for m in logins if m.event["EventOutcomeIndicator"] == "0"]
    assert len(rejected) == 1 and "rejected: result 1, source 1, reason 7" in (
        rejected[0].outcome_description
    )
    assert sorted(m.participants()[0]["UserID"] for m in accepted) == [
        "INTRUDER", "MODALITY", "VIEWER", "WORKSTATION",
    ]  # fmt: skip
    for message in logins:
        requestor = message.participants()[0]
        assert requestor["UserIsRequestor"] == "true"
        assert requestor["NetworkAccessPointID"] == "127.0.0.1"

    stored = [m for m in by_kind[("110104",)] if m.event["EventActionCode"] == "C"]
    assert len(stored) == 1  # one per association
    (store,) = stored
    source_participant, destination_participant = store.participants()
    assert source_participant["UserID"] == "MODALITY"
    assert source_participant["role"] == "110153"
    assert source_participant["NetworkAccessPointID"] == "127.0.0.1"
    assert destination_participant["UserID"] == "ARCHIVE"
    assert destination_participant["role"] == "110152"
    studies = {
        o.get("ParticipantObjectID"): o.find("ParticipantObjectDescription/SOPClass").attrib  # type: ignore[union-attr]
        for o in store.objects()
        if o.get("ParticipantObjectTypeCode") == "2"
    }
    assert studies == {
        study_a: {"UID": CT, "NumberOfInstances": "3"},
        study_b: {"UID": CT, "NumberOfInstances": "2"},
    }
    patients = [o for o in store.objects() if o.get("ParticipantObjectTypeCode") == "1"]
    assert [p.get("ParticipantObjectID") for p in patients] == ["PID-RETRIEVE"]

    (query_message,) = by_kind[("110112",)]
    assert query_message.participants()[0]["UserID"] == "VIEWER"
    (queried,) = query_message.objects()
    assert queried.get("ParticipantObjectID") == STUDY_ROOT_FIND
    assert queried.find("ParticipantObjectIDTypeCode").get("csd-code") == "110181"  # type: ignore[union-attr]
    sent_identifier = base64.b64decode(queried.findtext("ParticipantObjectQuery") or "")
    assert study_a.encode() in sent_identifier
    detail = queried.find("ParticipantObjectDetail")
    assert detail is not None and detail.get("type") == "TransferSyntax"
    assert base64.b64decode(detail.get("value", "")) == EXPLICIT.encode()

    retrieved = [m for m in by_kind[("110104",)] if m.event["EventActionCode"] == "R"]
    move = next(m for m in retrieved if "C-MOVE" in m.outcome_description)
    get = next(m for m in retrieved if "C-GET" in m.outcome_description)
    assert "2 completed" in move.outcome_description
    assert [(p["UserID"], p["role"], p["UserIsRequestor"]) for p in move.participants()] == [
        ("ARCHIVE", "110153", "false"),
        ("DEST", "110152", "false"),
        ("VIEWER", "", "true"),
    ]
    assert move.participants()[1]["NetworkAccessPointID"] == "127.0.0.1"
    assert [o.get("ParticipantObjectID") for o in move.objects()] == [study_b]
    assert "3 completed" in get.outcome_description
    assert [(p["UserID"], p["role"]) for p in get.participants()] == [
        ("ARCHIVE", "110153"),
        ("WORKSTATION", "110152"),
    ]
    assert [o.get("ParticipantObjectID") for o in get.objects()] == [study_a]

    alerts = by_kind[("110113", "110126")]
    (refused,) = alerts
    assert refused.event["EventOutcomeIndicator"] == "8"
    assert refused.participants()[1]["NetworkAccessPointID"] == "127.0.0.1"
    assert "untrusted" in refused.outcome_description
    (node,) = refused.objects()
    assert node.get("ParticipantObjectTypeCodeRole") == "13"

    (hostile,) = by_kind[("110113", "110132")]
    assert hostile.participants()[1]["UserID"] == "INTRUDER"
    assert "bad input" in hostile.outcome_description


def test_tls_failure_is_a_security_alert_sent_over_tls(tmp_path: Path) -> None:
    """A TLS archive auditing to a TLS collector (RFC 5425, mutual authentication)."""
    certificates = make_certificates(tmp_path / "pki")
    received: list[Message] = []
    client_certificates: list[Any] = []

    async def collector(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client_certificates.append(writer.get_extra_info("peercert"))
        try:
            while True:
                received.append(parse(await read_octet_counted(reader)))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def scenario() -> None:
        context = server_context(
            certificates.server_cert,
            certificates.server_key,
            ca=certificates.ca,
            require_client_certificate=True,
        )
        server = await asyncio.start_server(collector, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        async with audited_archive(
            tmp_path,
            f"127.0.0.1:{port}",
            audit_transport="tls",
            audit_tls_ca=str(certificates.ca),
            tls_cert=str(certificates.server_cert),
            tls_key=str(certificates.server_key),
            tls_ca=str(certificates.ca),
        ) as (listener, registry):
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(raw.associate_rq("ARCHIVE", "PLAINTEXT"))  # DICOM without TLS
            try:
                assert await asyncio.wait_for(reader.read(), 10) == b""
            except ConnectionResetError:
                pass
            writer.close()
            async with client.connect(
                "127.0.0.1",
                listener.port,
                called_ae_title="ARCHIVE",
                calling_ae_title="SECURE",
                ssl=client_context(
                    ca=certificates.ca,
                    certificate=certificates.client_cert,
                    key=certificates.client_key,
                ),
            ) as association:
                assert (await association.echo()).status == 0
            await until(lambda: any(m.event_id == "110113" for m in received))
            failed = registry.get_sample_value(
                "dicomnet_security_alerts_total", {"kind": "tls_failed"}
            )
            assert failed == 1.0
        await until(lambda: bool(received) and received[-1].event_types == ["110121"])
        server.close()

    run(scenario())
    assert client_certificates and all(c is not None for c in client_certificates)
    kinds = [(m.event_id, *m.event_types) for m in received]
    assert kinds[0] == ("110100", "110120") and kinds[-1] == ("110100", "110121")
    (alert,) = [m for m in received if m.event_id == "110113"]
    assert alert.event_types == ["110126"]  # Node Authentication
    assert alert.event["EventOutcomeIndicator"] == "8"
    assert alert.outcome_description.startswith("TLS handshake failed")
    assert alert.participants()[1]["NetworkAccessPointID"] == "127.0.0.1"
    logins = [m for m in received if m.event_id == "110114"]
    assert [m.participants()[0]["UserID"] for m in logins] == ["SECURE"]


def test_lost_collector_is_counted_in_the_metrics_and_the_archive_goes_on(tmp_path: Path) -> None:
    """No collector on the UDP port: each refusal (ICMP) is a message lost, counted."""
    _study, paths = make_study(tmp_path / "a", 20)

    async def scenario() -> tuple[float | None, float | None]:
        async with audited_archive(tmp_path, f"127.0.0.1:{free_port()}") as (listener, registry):
            for _ in range(3):
                async with client.connect(
                    "127.0.0.1", listener.port, called_ae_title="ARCHIVE",
                    contexts=[(CT, [EXPLICIT])], max_operations_invoked=8,
                ) as association:  # fmt: skip
                    statuses = await asyncio.gather(*(association.store(p) for p in paths))
                    assert {int(s.status) for s in statuses} <= {0x0000, 0xB000}
            await until(
                lambda: (registry.get_sample_value("dicomnet_audit_messages_lost_total") or 0) > 0
            )
            return (
                registry.get_sample_value("dicomnet_audit_messages_lost_total"),
                registry.get_sample_value("dicomnet_instances_stored_total"),
            )

    lost, stored = run(scenario())
    assert lost is not None and lost >= 1
    assert stored == 60


def test_a_title_with_control_characters_leaves_the_audit_xml_well_formed() -> None:
    """XML 1.0 has no escape for ESC or most C0 controls: the audit trail gets
    the printable form of what a hostile peer chose, and stays parseable."""
    from types import SimpleNamespace

    from dicomnet.services.audit_trail import AuditTrail

    sent: list[str] = []
    trail = AuditTrail(sent.append, ae_title="DICOMNET", source_id="node")
    hostile = SimpleNamespace(calling_ae_title="EV\r\n\x1b[2J", peer_host="127.0.0.9")
    trail.input_refused(hostile, ValueError("bad \x00 byte"))
    (xml,) = sent
    root = ET.fromstring(xml)
    users = [p.get("UserID") for p in root.findall("ActiveParticipant")]
    assert "EV\\x0d\\x0a\\x1b[2J" in users
    assert "\\x00" in (root.findtext("EventIdentification/EventOutcomeDescription") or "")
