"""Scale-out behind a real HAProxy: two nodes, one folder, one PostgreSQL index.

HAProxy (Debian's, in TCP mode on loopback) sends a PROXY protocol v2
header to each node and checks each node with a C-ECHO (DCMTK's
``echoscu`` as its ``external-check`` command). Four senders, each on its
own loopback address as four modalities would be on four machines, store
2,000 instances through it; one node is killed with SIGKILL mid-run and
the senders' retries land the rest on the other. Then every acknowledged
instance is in the index once and in the folder once, a C-FIND through
HAProxy finds them all, and the nodes' logs and event logs name each
sender's own address, not HAProxy's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomnet.archive.relational import relational_request
from dicomnet.core.uids import STUDY_ROOT_FIND
from dicomnet.net import client

from factory import ct_dataset, write_part10
from peers import free_port, wait_for_port
from postgres_server import postgres_server

pytestmark = pytest.mark.slow

SENDERS = 4
STUDIES_PER_SENDER = 10
INSTANCES_PER_STUDY = 50
TOTAL = SENDERS * STUDIES_PER_SENDER * INSTANCES_PER_STUDY
KILL_AFTER = 600
"""Instances indexed when the first node is killed."""
HERE = Path(__file__).parent

CHECK_SCRIPT = """#!/bin/sh
# HAProxy external-check: $3 and $4 are the server's address and port.
exec /usr/bin/echoscu -to 2 -ta 2 -td 2 -aet HAPROXY -aec ARCHIVE "$3" "$4"
"""

HAPROXY_CONFIG = """
global
    external-check
    insecure-fork-wanted
    maxconn 256

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 3s
    retries 3
    option redispatch

frontend dicom
    bind 127.0.0.1:{front}
    default_backend archive

backend archive
    balance roundrobin
    option external-check
    external-check path "/usr/bin:/bin"
    external-check command {script}
    server node1 127.0.0.1:{node1} send-proxy-v2 check inter 2s fall 2 rise 1
    server node2 127.0.0.1:{node2} send-proxy-v2 check inter 2s fall 2 rise 1
"""


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None
    )
    if found is None:
        pytest.fail("haproxy is missing: apt-get install haproxy (scripts/test.sh does)")
    return found


def make_instances(root: Path) -> dict[int, tuple[Path, list[str], set[str]]]:
    """Per sender: its folder, its studies and the SOP Instance UIDs of its files."""
    made = {}
    for sender in range(SENDERS):
        folder = root / f"sender{sender}"
        folder.mkdir(parents=True)
        studies, uids = [], set()
        for _ in range(STUDIES_PER_SENDER):
            study = generate_uid()
            studies.append(study)
            for index in range(INSTANCES_PER_STUDY):
                ds = ct_dataset(index, pixels=8, study=study)
                ds.PatientID = f"PID-SENDER{sender}"
                uids.add(str(ds.SOPInstanceUID))
                write_part10(ds, folder / f"{ds.SOPInstanceUID}.dcm")
        made[sender] = (folder, studies, uids)
    return made


@contextmanager
def process(command: list[str], log: Path, **options: Any) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as stream:
        proc = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, **options)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def node_command(port: int, folder: Path, index: str, events: Path) -> list[str]:
    return [
        sys.executable, "-m", "dicomnet", "listen",
        "--aet", "ARCHIVE", "--host", "127.0.0.1", "--port", str(port),
        "--dir", str(folder), "--index", index, "--fsync", "never",
        "--proxy-protocol", "--trusted-proxy", "127.0.0.1",
        "--event-log", str(events), "--shutdown-timeout", "5",
    ]  # fmt: skip


def sender_command(n: int, front: int, folder: Path) -> list[str]:
    """Sender n on its own address, 127.0.0.(n + 2), as MODALITYn, through HAProxy."""
    return [
        sys.executable, str(HERE / "haproxy_sender.py"), f"127.0.0.{n + 2}",
        "127.0.0.1", str(front), f"MODALITY{n}", str(folder),
    ]  # fmt: skip


def indexed_count(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=5) as db:
            row = db.execute("SELECT count(*) FROM instances").fetchone()
            return int(row[0]) if row else 0
    except psycopg.errors.UndefinedTable:
        return 0


async def find_through(port: int, studies: list[str]) -> tuple[dict[str, int], set[str]]:
    """Study-level counts and image-level SOP Instance UIDs, by C-FIND."""
    async with client.connect(
        "127.0.0.1", port, called_ae_title="ARCHIVE", calling_ae_title="AUDITOR",
        contexts=[(STUDY_ROOT_FIND, ["1.2.840.10008.1.2.1"])],
        extended=[relational_request(STUDY_ROOT_FIND)],  # IMAGE level by study UIDs
    ) as association:  # fmt: skip
        level = Dataset()
        level.QueryRetrieveLevel = "STUDY"
        level.StudyInstanceUID = ""
        level.NumberOfStudyRelatedInstances = ""
        found = [r async for r in association.find(level, STUDY_ROOT_FIND)]
        assert found[-1].status == 0
        counts = {
            str(r.identifier.StudyInstanceUID): int(r.identifier.NumberOfStudyRelatedInstances)
            for r in found[:-1]
        }
        images = Dataset()
        images.QueryRetrieveLevel = "IMAGE"
        images.StudyInstanceUID = "\\".join(studies)
        images.SOPInstanceUID = ""
        found = [r async for r in association.find(images, STUDY_ROOT_FIND)]
        assert found[-1].status == 0
        return counts, {str(r.identifier.SOPInstanceUID) for r in found[:-1]}


def test_two_nodes_behind_haproxy_lose_nothing_when_one_is_killed(tmp_path: Path) -> None:
    haproxy = haproxy_binary()
    shutil.which("echoscu") or pytest.fail("DCMTK's echoscu is missing: apt-get install dcmtk")
    made = make_instances(tmp_path / "sent")
    shared = tmp_path / "shared"
    front, node_ports = free_port(), [free_port(), free_port()]
    script = tmp_path / "check-echo.sh"
    script.write_text(CHECK_SCRIPT)
    script.chmod(0o755)
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(front=front, node1=node_ports[0], node2=node_ports[1], script=script)
    )
    check = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    logs = [tmp_path / "node1.log", tmp_path / "node2.log"]
    events = [tmp_path / "node1.jsonl", tmp_path / "node2.jsonl"]

    with postgres_server() as url:
        with (
            process(node_command(node_ports[0], shared, url, events[0]), logs[0]) as node1,
            process(node_command(node_ports[1], shared, url, events[1]), logs[1]) as node2,
        ):
            for port in node_ports:
                wait_for_port("127.0.0.1", port, timeout=30)
            with process([haproxy, "-db", "-f", str(config)], tmp_path / "haproxy.log"):
                wait_for_port("127.0.0.1", front, timeout=10)
                started = time.monotonic()
                senders = [
                    subprocess.Popen(
                        sender_command(n, front, made[n][0]),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    )
                    for n in range(SENDERS)
                ]
                deadline = time.monotonic() + 60
                while indexed_count(url) < KILL_AFTER and time.monotonic() < deadline:
                    time.sleep(0.05)
                killed_at = indexed_count(url)
                node1.send_signal(signal.SIGKILL)
                node1.wait(10)
                results = []
                for sender in senders:
                    out, err = sender.communicate(timeout=120)
                    assert sender.returncode == 0, (out.decode()[-3000:], err.decode()[-3000:])
                    results.append(json.loads(out))
                elapsed = time.monotonic() - started
                counts, images = asyncio.run(
                    asyncio.wait_for(find_through(front, [s for n in made for s in made[n][1]]), 60)
                )
            assert node2.poll() is None, "the surviving node died"
        with psycopg.connect(url) as db:
            rows = db.execute("SELECT sop_instance_uid, path FROM instances").fetchall()

    acknowledged = [uid for result in results for uid in result["acknowledged"]]
    sent = set().union(*(made[n][2] for n in made))
    print(
        f"\nHAProxy run: {TOTAL} instances, {len(set(acknowledged))} acknowledged, "
        f"{len(sent - {r[0] for r in rows})} lost, node1 killed at {killed_at} indexed, "
        f"{elapsed:.1f} s"
    )
    # The node died mid-run, not before or after it.
    assert KILL_AFTER <= killed_at < TOTAL
    # Every instance acknowledged (retries landed them on the survivor), indexed once.
    assert set(acknowledged) == sent
    indexed = [r[0] for r in rows]
    assert len(indexed) == len(set(indexed)) == TOTAL
    assert set(indexed) == sent
    files = [p for p in shared.rglob("*.dcm") if ".incoming" not in p.parts]
    assert len(files) == TOTAL
    assert {str(Path(r[1])) for r in rows} == {str(p) for p in files}
    # C-FIND through HAProxy sees every study and every instance.
    assert counts == {s: INSTANCES_PER_STUDY for n in made for s in made[n][1]}
    assert images == sent
    # The nodes saw the senders' own addresses: MODALITYn is at 127.0.0.(n+2).
    association_line = re.compile(r"association \d+ from ([\d.]+):\d+ (\S+) -> ARCHIVE")
    seen: dict[str, set[str]] = {}
    for log in logs:
        for host, calling in association_line.findall(log.read_text(errors="replace")):
            seen.setdefault(calling, set()).add(host)
    for n in range(SENDERS):
        assert seen.get(f"MODALITY{n}") == {f"127.0.0.{n + 2}"}, seen
    assert seen.get("HAPROXY") == {"127.0.0.1"}  # the C-ECHO health checks, direct
    for events_file in events:
        for line in events_file.read_text().splitlines():
            event = json.loads(line)
            n = int(event["calling_ae_title"].strip().removeprefix("MODALITY"))
            assert event["peer"].startswith(f"127.0.0.{n + 2}:"), event
    assert elapsed < 60
