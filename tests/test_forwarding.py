"""Forwarding with a durable queue: DCMTK's storescp as the destination, down then up,
the archive killed with SIGKILL mid-forward, rules on SQLite and PostgreSQL, and
``dicomnet archive queue``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from dicomnet.archive.forwarding import ForwardRule, install, queue_items
from dicomnet.archive.index import ArchiveIndex, IndexEntry
from dicomnet.archive.retention import Pruner, RetentionPolicy

from factory import ct_dataset, dataset_bytes, make_study, write_part10
from peers import dcmtk, dcmtk_env, free_port, run_dcmtk, wait_for_port
from postgres_server import postgres_server

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"


def run(coro, timeout: float = 120.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def entry(study: str, modality: str, sop_class: str, source: str, stored_at: float = 0.0):
    attributes = dict.fromkeys(
        ["PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName",
         "SeriesNumber", "SeriesDescription", "BodyPartExamined", "InstanceNumber",
         "SpecificCharacterSet"], "",
    )  # fmt: skip
    uid = generate_uid()
    attributes.update(
        PatientID="P1", StudyInstanceUID=study, SeriesInstanceUID=generate_uid(),
        SOPInstanceUID=uid, SOPClassUID=sop_class, Modality=modality,
    )  # fmt: skip
    return IndexEntry(f"/a/{uid}.dcm", 100, EXPLICIT, "", attributes, source, stored_at or 1.0)


def rules_scenario(location: str) -> None:
    study = generate_uid()

    async def scenario() -> None:
        index = ArchiveIndex(location, durable=False)
        try:
            await index.run_on_index(
                install,
                [ForwardRule("ALL"), ForwardRule("MRONLY", modality="MR"),
                 ForwardRule("FROMCT1", calling_ae="CT1", sop_class=CT)],
            )  # fmt: skip
            ct1 = entry(study, "CT", CT, "CT1")
            mr = entry(study, "MR", MR, "CT1")
            other = entry(study, "CT", CT, "OTHER")
            for e in (ct1, mr, other):
                await index.add(e)
            items = await index.run_on_index(queue_items, None)
            queued = {(i["destination"], i["sop_instance_uid"]) for i in items}
            uid = {name: e.attributes["SOPInstanceUID"] for name, e in
                   (("ct1", ct1), ("mr", mr), ("other", other))}  # fmt: skip
            assert queued == {
                ("ALL", uid["ct1"]), ("ALL", uid["mr"]), ("ALL", uid["other"]),
                ("MRONLY", uid["mr"]), ("FROMCT1", uid["ct1"]),
            }  # fmt: skip
            assert {i["study_uid"] for i in items} == {study}
            # A study with forwards pending is never pruned.
            pruner = Pruner(index, RetentionPolicy(keep_days=0, arriving_window=0))
            report = await pruner.plan()
            assert report.studies == [] and report.kept_protected == 1
            # A duplicate kept (same row) queues nothing more; no rules, nothing queued.
            await index.run_on_index(install, [])
            await index.add(entry(study, "CT", CT, "CT1"))
            assert len(await index.run_on_index(queue_items, None)) == 5
        finally:
            await index.close()

    run(scenario())


def test_rules_queue_in_the_rows_transaction_on_sqlite(tmp_path: Path) -> None:
    rules_scenario(str(tmp_path / "index.sqlite"))


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_rules_queue_in_the_rows_transaction_on_postgresql(postgres: str) -> None:
    with psycopg.connect(postgres, autocommit=True) as db:
        db.execute(
            "DROP TABLE IF EXISTS instances, series, studies, patients, pruned_files,"
            " stable_studies, site_state, forward_rules, forward_queue CASCADE"
        )
    rules_scenario(postgres)


def test_a_failed_row_insert_queues_nothing(tmp_path: Path) -> None:
    """The queue row is in the instance's transaction: a rollback takes both."""

    async def scenario() -> tuple[int, int]:
        index = ArchiveIndex(tmp_path / "index.sqlite", durable=False)
        try:
            await index.run_on_index(install, [ForwardRule("ALL")])
            good = entry(generate_uid(), "CT", CT, "CT1")
            bad = entry(generate_uid(), "CT", CT, "CT1")
            bad.attributes["SOPClassUID"] = None  # NOT NULL: the whole batch fails
            results = await asyncio.gather(index.add(good), index.add(bad), return_exceptions=True)
            assert any(isinstance(r, Exception) for r in results)
            return await index.count(), len(await index.run_on_index(queue_items, None))
        finally:
            await index.close()

    count, queued = run(scenario())
    assert queued == count  # every committed row has its forward, no forward lacks its row


def listen(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE", "--host", "127.0.0.1",
         "--port", str(port), "--dir", str(folder), "--fsync", "never", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dcmtk_env(),
    )  # fmt: skip
    wait_for_port("127.0.0.1", port, 30)
    return process


def storescp(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [dcmtk("storescp"), *extra, "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dcmtk_env(),
    )  # fmt: skip
    wait_for_port("127.0.0.1", port, 10)
    return process


def received(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        if path.is_file() and not path.name.startswith("."):
            try:
                uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            except Exception:
                continue  # being written
            found.setdefault(uid, []).append(path)
    return found


def queue_list(archive: Path) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "dicomnet", "archive", "queue", "list", "--items", "--json",
         str(archive)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.interop
@pytest.mark.slow  # waits out the forwarding back-off
def test_destination_down_then_up_everything_arrives_byte_for_byte(tmp_path: Path) -> None:
    _, paths = make_study(tmp_path / "sent", 30)
    sent = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}
    port, destination, metrics = free_port(), free_port(), free_port()
    archive = tmp_path / "archive"
    process = listen(archive, port, "--forward", f"STORESCP=127.0.0.1:{destination}",
                     "--forward-retry-max", "1", "--metrics-port", str(metrics),
                     "--metrics-host", "127.0.0.1")  # fmt: skip
    receiver = None
    try:
        first = run_dcmtk("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port),
                          *map(str, paths[:15]))  # fmt: skip
        assert first.returncode == 0, first.stderr
        time.sleep(1.5)  # the destination is down: the forwards wait, failing
        waiting = queue_list(archive)
        assert len(waiting) == 15 and all(i["attempts"] >= 1 for i in waiting)
        assert all("association" in (i["last_error"] or "") for i in waiting)
        wait_until(lambda: metric(metrics, "dicomnet_forward_queue_depth") == 15, 10)
        assert metric(metrics, "dicomnet_forward_failed_total") >= 15
        receiver = storescp(tmp_path / "received", destination)
        second = run_dcmtk("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port),
                           *map(str, paths[15:]))  # fmt: skip
        assert second.returncode == 0, second.stderr
        wait_until(lambda: len(received(tmp_path / "received")) == 30 and not queue_list(archive))
        assert metric(metrics, "dicomnet_forward_sent_total") == 30
        wait_until(lambda: metric(metrics, "dicomnet_forward_queue_depth") == 0, 10)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=10)
    got = received(tmp_path / "received")
    assert set(got) == set(sent)
    for uid, copies in got.items():
        assert len(copies) == 1
        assert dataset_bytes(copies[0]) == dataset_bytes(sent[uid])


def metric(port: int, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def make_many(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    paths = []
    for index in range(count):
        ds = ct_dataset(index, pixels=16, study=study)
        paths.append(write_part10(ds, folder / f"ct{index}.dcm"))
    return paths


@pytest.mark.interop
@pytest.mark.slow
def test_kill_9_mid_forward_then_restart_loses_nothing_and_resends_nothing_recorded(
    tmp_path: Path,
) -> None:
    paths = make_many(tmp_path / "sent", 400)
    sent = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
    port, destination = free_port(), free_port()
    archive = tmp_path / "archive"
    forward = ["--forward", f"STORESCP=127.0.0.1:{destination}", "--forward-retry-max", "1",
               "--forward-associations", "1", "--forward-window", "4"]  # fmt: skip
    # storescp with unique file names: an instance received twice shows as two files.
    receiver = storescp(tmp_path / "received", destination, "-uf")
    process = listen(archive, port, "--forward", f"STORESCP=127.0.0.1:{free_port()}")
    try:
        # Ingest first, with the forward pointing nowhere, so everything is queued.
        stored = run_dcmtk("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port),
                           *map(str, paths), timeout=120)  # fmt: skip
        assert stored.returncode == 0, stored.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert len(queue_list(archive)) == 400

    process = listen(archive, port, *forward)
    try:
        wait_until(lambda: sum(1 for _ in (tmp_path / "received").iterdir()) >= 40, 60)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    with sqlite3.connect(archive / "index.sqlite") as db:
        left = {uid for (uid,) in db.execute("SELECT sop_instance_uid FROM forward_queue")}
    recorded = sent - left
    assert recorded and left, "the kill came before any success was recorded, or after all"

    process = listen(archive, port, *forward)
    try:
        wait_until(lambda: not queue_list(archive), 120)
        wait_until(lambda: set(received(tmp_path / "received")) == sent, 30)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        receiver.terminate()
        receiver.wait(timeout=10)
    copies = Counter({uid: len(files) for uid, files in received(tmp_path / "received").items()})
    assert set(copies) == sent  # nothing lost
    assert all(copies[uid] == 1 for uid in recorded)  # nothing recorded as sent came again
    # Only what was in flight, or answered and not yet recorded (at most a window
    # each: 4 + 4), at the kill may have arrived twice.
    assert sum(copies.values()) - len(sent) <= 8


@pytest.mark.interop
@pytest.mark.slow
def test_1000_instances_forwarded_while_ingesting(tmp_path: Path) -> None:
    """Everything stored while forwarding is forwarded (the rate: bench/forward.py)."""
    make_many(tmp_path / "sent", 1000)
    port, destination = free_port(), free_port()
    receiver = storescp(tmp_path / "received", destination)
    process = listen(tmp_path / "archive", port,
                     "--forward", f"STORESCP=127.0.0.1:{destination}")  # fmt: skip
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dicomnet", "store", "--associations", "2", "127.0.0.1",
             str(port), str(tmp_path / "sent"), "--recursive"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(lambda: len(os.listdir(tmp_path / "received")) >= 1000, 120)
        wait_until(lambda: not queue_list(tmp_path / "archive"), 30)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        receiver.terminate()
        receiver.wait(timeout=10)
    assert len(received(tmp_path / "received")) == 1000


def test_queue_command_lists_retries_and_drops(tmp_path: Path) -> None:
    async def fill() -> None:
        index = ArchiveIndex(tmp_path / "index.sqlite", durable=False)
        try:
            await index.run_on_index(install, [ForwardRule("A"), ForwardRule("B")])
            for _ in range(3):
                await index.add(entry(generate_uid(), "CT", CT, "CT1"))
        finally:
            await index.close()

    run(fill())
    with sqlite3.connect(tmp_path / "index.sqlite") as db:
        db.execute("UPDATE forward_queue SET failed = 1, attempts = 5, last_error = 'no'"
                   " WHERE destination = 'B'")  # fmt: skip

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "dicomnet", "archive", "queue", *args, str(tmp_path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    listing = cli("list")
    assert "A: 3 waiting, 0 failed" in listing and "B: 0 waiting, 3 failed" in listing
    assert "3 items to be tried again" in cli("retry", "--destination", "B")
    assert all(i["failed"] == 0 and i["attempts"] == 0 for i in queue_list(tmp_path))
    uid = queue_list(tmp_path)[0]["sop_instance_uid"]
    assert "2 items dropped" in cli("drop", "--uid", uid)  # both destinations
    assert "2 items dropped" in cli("drop", "--destination", "A", "--all")
    assert "B: 2 waiting" in cli("list")


def pynetdicom_receiver(port: int, ae_title: str = "PYRECV"):
    """A pynetdicom storage SCP keeping every dataset it receives, in memory."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    got: list = []

    def on_store(event):  # type: ignore[no-untyped-def]
        got.append(event.dataset)
        return 0x0000

    ae = AE(ae_title=ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    return server, got


def pynetdicom_send(port: int, aet: str, paths: list[Path]) -> None:
    from pynetdicom import AE

    ae = AE(ae_title=aet)
    ae.add_requested_context(CT, EXPLICIT)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    try:
        for path in paths:
            assert assoc.send_c_store(dcmread(path)).Status == 0
    finally:
        assoc.release()


def toml_rules_scenario(tmp_path: Path, index: str | None) -> None:
    _, wanted = make_study(tmp_path / "wanted", 3)
    _, other = make_study(tmp_path / "other", 2)
    port, destination = free_port(), free_port()
    config = tmp_path / "site.toml"
    config.write_text(
        f'[listen.forward]\nPYRECV = "127.0.0.1:{destination}"\n\n'
        '[[listen.forward-rules]]\ndestination = "PYRECV"\ncalling-ae = "MODALITY1"\n'
        'modality = "CT"\n'
    )
    server, got = pynetdicom_receiver(destination)
    extra = ["--config", str(config), "--forward-retry-max", "1"]
    if index:
        extra += ["--index", index]
    process = listen(tmp_path / "archive", port, *extra)
    try:
        pynetdicom_send(port, "MODALITY1", wanted)
        pynetdicom_send(port, "MODALITY2", other)  # matches no rule
        wait_until(lambda: len(got) >= 3, 60)
        time.sleep(1.0)  # time for anything wrongly forwarded to show
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        server.shutdown()
    sent = {str(dcmread(p).SOPInstanceUID): p for p in wanted}
    assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(sent)
    listing = subprocess.run(
        [sys.executable, "-m", "dicomnet", "archive", "queue", "list",
         *(["--index", index] if index else []), str(tmp_path / "archive")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listing.stdout.strip() == "the forwarding queue is empty", listing.stderr
    for ds in got:
        assert ds.PixelData == dcmread(sent[str(ds.SOPInstanceUID)]).PixelData


@pytest.mark.interop
def test_toml_rules_with_pynetdicom_on_sqlite(tmp_path: Path) -> None:
    toml_rules_scenario(tmp_path, None)


@pytest.mark.interop
def test_toml_rules_with_pynetdicom_on_postgresql(tmp_path: Path, postgres: str) -> None:
    with psycopg.connect(postgres, autocommit=True) as db:
        db.execute(
            "DROP TABLE IF EXISTS instances, series, studies, patients, pruned_files,"
            " stable_studies, site_state, forward_rules, forward_queue CASCADE"
        )
    toml_rules_scenario(tmp_path, postgres)


@pytest.mark.interop
def test_a_compressed_instance_is_converted_for_a_destination_taking_only_uncompressed(
    tmp_path: Path,
) -> None:
    """JPEG-compressed to a storescp that takes only uncompressed: decompressed on the
    way (the transfer-syntax conversion of the send paths), pixel for pixel."""
    plain = make_many(tmp_path / "plain", 1)[0]
    image = dcmread(plain)
    pixels = bytearray(image.PixelData)
    pixels[1::2] = bytes(b & 0x0F for b in pixels[1::2])  # values within Bits Stored (12)
    image.PixelData = bytes(pixels)
    image.save_as(plain)
    jpeg = tmp_path / "jpeg.dcm"
    done = run_dcmtk("dcmcjpeg", str(plain), str(jpeg))
    assert done.returncode == 0, done.stderr
    port, destination = free_port(), free_port()
    receiver = storescp(tmp_path / "received", destination)  # uncompressed syntaxes only
    archive = tmp_path / "archive"
    process = listen(archive, port, "--forward", f"STORESCP=127.0.0.1:{destination}")
    try:
        stored = subprocess.run(  # proposes the file's own (compressed) transfer syntax
            [sys.executable, "-m", "dicomnet", "store", "127.0.0.1", str(port), str(jpeg)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert stored.returncode == 0, stored.stdout + stored.stderr
        wait_until(lambda: len(received(tmp_path / "received")) == 1 and not queue_list(archive))
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        receiver.terminate()
        receiver.wait(timeout=10)
    ((arrived,),) = received(tmp_path / "received").values()
    original = dcmread(jpeg, stop_before_pixels=True)
    assert str(original.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"  # SV1
    got = dcmread(arrived)
    assert str(got.file_meta.TransferSyntaxUID) in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    assert got.SOPInstanceUID == original.SOPInstanceUID
    decoded = tmp_path / "dcmdjpeg.dcm"  # DCMTK's own decompression is the reference
    assert run_dcmtk("dcmdjpeg", str(jpeg), str(decoded)).returncode == 0
    assert got.PixelData == dcmread(decoded).PixelData == bytes(pixels)  # lossless SV1
