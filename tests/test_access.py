"""Access control per peer: each permission both ways, with DCMTK and pynetdicom against
``dicomnet listen --config`` and its ``[listen.peers]`` table, reloaded on SIGHUP.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from dicomnet.core.uids import STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
from dicomnet.errors import AssociationRejected
from dicomnet.net import client
from dicomnet.services.access import PeerTable

from factory import make_study
from peers import dcmtk_env, free_port, run_dcmtk, wait_for_port

EXPLICIT = "1.2.840.10008.1.2.1"

RULES = """\
[listen]
unknown-peers = "refuse"

[listen.move-destination]
MOVESCU = "127.0.0.1:{move_port}"
ELSEWHERE = "127.0.0.1:9"

[listen.peers.ALL]
[listen.peers.NOSTORE]
store = false
[listen.peers.NOQUERY]
query = false
[listen.peers.NORETRIEVE]
retrieve = false
[listen.peers.NOCOMMIT]
commit = false
[listen.peers.MOVER]
move-destinations = ["MOVESCU"]
[listen.peers.LOCAL]
addresses = ["127.0.0.0/8"]
[listen.peers.FARAWAY]
addresses = ["10.9.9.0/24", "2001:db8::/32"]
"""


def test_rules_parse_and_bind_addresses() -> None:
    table = PeerTable.parse(
        {
            "CT": {"addresses": ["10.0.0.0/24"], "query": False},
            "*": {"store": True, "query": False, "retrieve": False, "commit": False},
        },
        "allow",
    )
    rule = table.rule("CT", "10.0.0.7")
    assert rule is not None and rule.store and not rule.query
    assert table.rule("CT", "10.0.1.7") is None
    assert table.rule("CT", "::ffff:10.0.0.7") is not None  # IPv4 mapped in IPv6
    unknown = table.rule("ANYONE", "192.0.2.1")
    assert unknown is not None and unknown.store and not unknown.query
    assert PeerTable.parse({}, "refuse").rule("ANYONE", "127.0.0.1") is None
    with pytest.raises(ValueError, match="unknown setting"):
        PeerTable.parse({"CT": {"stores": True}})
    with pytest.raises(ValueError, match="true or false"):
        PeerTable.parse({"CT": {"store": "yes"}})
    with pytest.raises(ValueError, match="allow or refuse"):
        PeerTable.parse({}, "maybe")


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[tuple[int, int, Path, subprocess.Popen[bytes], str]]:
    """A listener with the rules above, holding one study; yields (port, move port,
    config, process, study)."""
    port, move_port, metrics_port = free_port(), free_port(), free_port()
    config = tmp_path / "site.toml"
    config.write_text(RULES.format(move_port=move_port))
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--config", str(config), "--aet", "ARCHIVE",
         "--host", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path / "archive"),
         "--fsync", "never", "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dcmtk_env(),
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)
        study, paths = make_study(tmp_path / "sent", 2)
        done = run_dcmtk("storescu", "-aet", "ALL", "-aec", "ARCHIVE", "127.0.0.1", str(port),
                         *map(str, paths))  # fmt: skip
        assert done.returncode == 0, done.stderr
        process.metrics_port = metrics_port  # type: ignore[attr-defined]
        yield port, move_port, config, process, study
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def associate(port: int, aet: str, *contexts: str, roles: list | None = None) -> object:
    ae = AE(ae_title=aet)
    for context in contexts:
        ae.add_requested_context(context)
    return ae.associate(
        "127.0.0.1", port, ae_title="ARCHIVE", ext_neg=roles or [],
        evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)],  # C-GET's sub-operations
    )  # fmt: skip


def find_statuses(port: int, aet: str, study: str) -> list[int]:
    assoc = associate(port, aet, StudyRootQueryRetrieveInformationModelFind)
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    try:
        return [
            int(status.Status)
            for status, _ in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
        ]
    finally:
        assoc.release()


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


@pytest.mark.interop
def test_association_refused_unknown_and_from_elsewhere(archive) -> None:
    port, _, _, process, _ = archive
    unknown = run_dcmtk("echoscu", "-aet", "STRANGER", "-aec", "ARCHIVE", "127.0.0.1", str(port))
    assert unknown.returncode != 0
    assert "Calling AE Title Not Recognized" in unknown.stdout + unknown.stderr
    far = run_dcmtk("echoscu", "-aet", "FARAWAY", "-aec", "ARCHIVE", "127.0.0.1", str(port))
    assert far.returncode != 0
    for aet in ("ALL", "LOCAL"):
        ok = run_dcmtk("echoscu", "-aet", aet, "-aec", "ARCHIVE", "127.0.0.1", str(port))
        assert ok.returncode == 0, ok.stderr

    async def exact() -> tuple[int, int, int]:
        try:
            async with client.connect("127.0.0.1", port, calling_ae_title="STRANGER"):
                pass
        except AssociationRejected as exc:
            return exc.result, exc.source, exc.reason
        raise AssertionError("associated")

    assert asyncio.run(exact()) == (1, 1, 3)
    assert (
        metric(process.metrics_port, 'dicomnet_access_refused_total{operation="association"}') == 3
    )


@pytest.mark.interop
def test_store_both_ways(archive, tmp_path: Path) -> None:
    port, _, _, process, _ = archive
    _, paths = make_study(tmp_path / "more", 2)
    refused = run_dcmtk("storescu", "-v", "-aet", "NOSTORE", "-aec", "ARCHIVE", "127.0.0.1",
                        str(port), str(paths[0]))  # fmt: skip
    assert refused.returncode != 0
    # DCMTK has no name for 0124H in C-STORE: "Unknown Status: 0x124".
    assert re.search(r"0x0?124\b", refused.stdout + refused.stderr), refused.stderr
    # pynetdicom sees the exact status, and nothing was written.
    assoc = associate(port, "NOSTORE", CTImageStorage)
    assert assoc.is_established
    assert assoc.send_c_store(dcmread(paths[1])).Status == 0x0124
    assoc.release()
    uid = str(dcmread(paths[1]).SOPInstanceUID)
    assert not list((tmp_path / "archive").rglob(f"{uid}.dcm"))
    assert not list((tmp_path / "archive" / ".incoming").glob(f"{uid}*"))
    assoc = associate(port, "NOQUERY", CTImageStorage)  # may store
    assert assoc.send_c_store(dcmread(paths[1])).Status == 0
    assoc.release()
    assert list((tmp_path / "archive").rglob(f"{uid}.dcm"))
    assert metric(process.metrics_port, 'dicomnet_access_refused_total{operation="store"}') == 2


@pytest.mark.interop
def test_query_both_ways_and_reload_on_sighup_keeps_associations(archive) -> None:
    port, _, config, process, study = archive
    assert find_statuses(port, "NOQUERY", study) == [0x0124]
    found = run_dcmtk("findscu", "-v", "-S", "-aet", "NOQUERY", "-aec", "ARCHIVE",
                      "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                      "127.0.0.1", str(port))  # fmt: skip
    assert re.search(r"0x0?124\b", found.stdout + found.stderr), found.stdout + found.stderr
    assert find_statuses(port, "ALL", study) == [0xFF00, 0x0000]

    # An association open across the reload keeps going, under the new rules.
    assoc = associate(port, "NOQUERY", StudyRootQueryRetrieveInformationModelFind)
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    model = StudyRootQueryRetrieveInformationModelFind
    assert [int(s.Status) for s, _ in assoc.send_c_find(query, model)] == [0x0124]
    config.write_text(config.read_text().replace("query = false", "query = true"))
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    statuses: list[int] = []
    while time.monotonic() < deadline:
        statuses = [int(s.Status) for s, _ in assoc.send_c_find(query, model)]
        if statuses != [0x0124]:
            break
        time.sleep(0.1)
    assert assoc.is_established
    assert statuses == [0xFF00, 0x0000]
    assoc.release()
    assert process.poll() is None  # SIGHUP reloads, never ends the listener


@pytest.mark.interop
def test_retrieve_and_move_destinations_both_ways(archive, tmp_path: Path) -> None:
    port, move_port, _, process, study = archive
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]

    def get(aet: str) -> list[int]:
        assoc = associate(
            port, aet, StudyRootQueryRetrieveInformationModelGet, CTImageStorage,
            roles=[build_role(CTImageStorage, scp_role=True)],
        )  # fmt: skip
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study
        try:
            return [
                int(s.Status)
                for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
                if s
            ]
        finally:
            assoc.release()

    assert get("NORETRIEVE") == [0x0124]
    assert get("ALL")[-1] == 0x0000

    def move(aet: str, destination: str) -> subprocess.CompletedProcess[str]:
        out = tmp_path / f"moved-{aet}-{destination}"
        out.mkdir()
        return run_dcmtk("movescu", "-v", "-S", "-aet", aet, "-aec", "ARCHIVE", "-aem", destination,
                         "--port", str(move_port), "-od", str(out), *keys, "127.0.0.1",
                         str(port))  # fmt: skip

    refused = move("NORETRIEVE", "MOVESCU")
    assert re.search(r"0x0?124\b", refused.stdout + refused.stderr), refused.stderr
    assert not list((tmp_path / "moved-NORETRIEVE-MOVESCU").iterdir())
    elsewhere = move("MOVER", "ELSEWHERE")
    assert "Refused: MoveDestinationUnknown" in elsewhere.stderr, elsewhere.stderr  # A801H
    assert (
        metric(process.metrics_port, 'dicomnet_access_refused_total{operation="move_destination"}')
        == 1
    )
    allowed = move("MOVER", "MOVESCU")
    assert allowed.returncode == 0, allowed.stderr
    assert len(list((tmp_path / "moved-MOVER-MOVESCU").iterdir())) == 2


@pytest.mark.interop
def test_commit_both_ways(archive, tmp_path: Path) -> None:
    port, _, _, process, study = archive
    stored = sorted((tmp_path / "archive" / study).rglob("*.dcm"))

    def commit(aet: str) -> int:
        assoc = associate(
            port, aet, STORAGE_COMMITMENT_PUSH,
            roles=[build_role(STORAGE_COMMITMENT_PUSH, scu_role=True, scp_role=True)],
        )  # fmt: skip
        assert assoc.is_established
        action = Dataset()
        action.TransactionUID = "1.2.3.4242"
        items = []
        for path in stored:
            ds = dcmread(path, stop_before_pixels=True)
            item = Dataset()
            item.ReferencedSOPClassUID = ds.SOPClassUID
            item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
            items.append(item)
        action.ReferencedSOPSequence = Sequence(items)
        try:
            status, _ = assoc.send_n_action(
                action, 1, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
            )
            return int(status.Status)
        finally:
            assoc.release()

    assert commit("NOCOMMIT") == 0x0124
    assert commit("ALL") == 0x0000
    assert metric(process.metrics_port, 'dicomnet_access_refused_total{operation="commit"}') == 1


@pytest.mark.interop
def test_unknown_peers_allowed_by_the_flag(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "site.toml"
    config.write_text(RULES.format(move_port=free_port()))  # says refuse; the flag wins
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--config", str(config), "--aet", "ARCHIVE",
         "--host", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path / "archive"),
         "--unknown-peers", "allow"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dcmtk_env(),
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)
        _, paths = make_study(tmp_path / "sent", 1)
        stranger = run_dcmtk("storescu", "-aet", "STRANGER", "-aec", "ARCHIVE", "127.0.0.1",
                             str(port), str(paths[0]))  # fmt: skip
        assert stranger.returncode == 0, stranger.stderr
        far = run_dcmtk("echoscu", "-aet", "FARAWAY", "-aec", "ARCHIVE", "127.0.0.1", str(port))
        assert far.returncode != 0  # listed, from an address its rule does not name
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert len(list((tmp_path / "archive").rglob("*.dcm"))) == 1


@pytest.mark.interop
def test_sighup_to_the_parent_reloads_every_worker(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "site.toml"
    config.write_text(RULES.format(move_port=free_port()))
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--config", str(config), "--aet", "ARCHIVE",
         "--host", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path / "archive"),
         "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dcmtk_env(),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert b"listening on" in process.stdout.readline()
        study = "1.2.3.4"
        for _ in range(6):  # the kernel spreads associations over both workers
            assert find_statuses(port, "NOQUERY", study) == [0x0124]
        config.write_text(config.read_text().replace("query = false", "query = true"))
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if all(find_statuses(port, "NOQUERY", study) == [0x0000] for _ in range(6)):
                break
            time.sleep(0.2)
        assert all(find_statuses(port, "NOQUERY", study) == [0x0000] for _ in range(6))
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
