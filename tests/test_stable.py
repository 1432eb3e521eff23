"""Study-stable events and hooks: reported once, never through a shell, never slowing ingestion.

Against ``dicomnet listen --exec-on-study --exec-on-instance --event-log`` fed by
DCMTK's storescu and pynetdicom, killed with SIGKILL and started again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore

from dicomnet.archive.archive import Archive
from dicomnet.archive.hooks import INSTANCE_FIELDS, STUDY_FIELDS, Hook, HookRunner
from dicomnet.archive.stable import StableStudies, StudyStable
from dicomnet.net import client
from dicomnet.net.listener import Listener

from factory import make_study
from peers import dcmtk_env, free_port, run_dcmtk, wait_for_port
from postgres_server import postgres_server

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"

RECORDER = """\
import json, os, sys, time
out = sys.argv[1]
record = {"argv": sys.argv[2:], "pid": os.getpid()}
with open(os.path.join(out, f"{time.time_ns()}-{os.getpid()}.json"), "w") as f:
    json.dump(record, f)
if "hang" in sys.argv[2:]:
    time.sleep(60)
if "fail" in sys.argv[2:]:
    sys.stderr.write("hook says no\\n")
    sys.exit(3)
"""


def run(coro, timeout: float = 120.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def recorder(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    out = tmp_path / "runs"
    out.mkdir()
    return script, out


def runs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def test_placeholders_are_arguments_never_a_shell(tmp_path: Path) -> None:
    script, out = recorder(tmp_path)
    hook = Hook.parse(
        "--exec-on-study",
        f"{sys.executable} {script} {out} --uid={{study_uid}} {{calling_ae}} 'a b'",
        STUDY_FIELDS,
    )
    hostile = "X; touch pwned $(id) `id` *"

    async def scenario() -> HookRunner:
        runner = HookRunner(concurrency=2, queue_size=10, timeout=10)
        runner.start()
        runner.submit(hook, {"study_uid": "1.2.3", "calling_ae": hostile})
        await runner.drain()
        await runner.close()
        return runner

    runner = run(scenario())
    assert runner.succeeded == 1 and runner.failed == 0
    (record,) = runs(out)
    assert record["argv"] == ["--uid=1.2.3", hostile, "a b"]
    assert not (Path.cwd() / "pwned").exists()


def test_unknown_placeholders_are_refused_when_configured() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        Hook.parse("--exec-on-study", "echo {path}", STUDY_FIELDS)
    with pytest.raises(ValueError, match="unknown placeholder"):
        Hook.parse("--exec-on-instance", "echo {study}", INSTANCE_FIELDS)
    with pytest.raises(ValueError, match="empty"):
        Hook.parse("--exec-on-instance", "  ", INSTANCE_FIELDS)


def test_failures_timeouts_and_a_full_queue_are_counted(tmp_path: Path) -> None:
    script, out = recorder(tmp_path)
    hook = Hook.parse("h", f"{sys.executable} {script} {out} {{study_uid}}", STUDY_FIELDS)
    outcomes: list[tuple[str, str]] = []

    async def scenario() -> tuple[HookRunner, float]:
        runner = HookRunner(
            concurrency=2, queue_size=3, timeout=1.0,
            on_outcome=lambda name, outcome: outcomes.append((name, outcome)),
        )  # fmt: skip
        runner.start()
        started = time.monotonic()
        accepted = [runner.submit(hook, {"study_uid": v}) for v in ("hang", "fail", "ok")]
        # Two runs are taken at once, one waits: the queue has room for three more.
        await asyncio.sleep(0.3)
        accepted += [runner.submit(hook, {"study_uid": f"more{n}"}) for n in range(6)]
        assert accepted.count(False) >= 2
        await runner.drain()
        await runner.close()
        return runner, time.monotonic() - started

    runner, elapsed = run(scenario())
    assert runner.timed_out == 1
    assert runner.failed == 1
    assert runner.dropped >= 2
    assert runner.succeeded == runner.started - 2
    assert elapsed < 30  # the hung hook was killed after 1 s, not waited for
    assert ("h", "timed_out") in outcomes and ("h", "dropped") in outcomes
    hung = next(r for r in runs(out) if r["argv"] == ["hang"])
    with pytest.raises(ProcessLookupError):
        os.kill(hung["pid"], 0)


async def store(port: int, paths: list[Path], ae: str = "MODALITY") -> None:
    async with client.connect(
        "127.0.0.1", port, calling_ae_title=ae, contexts=[(CT, [EXPLICIT])]
    ) as assoc:
        for path in paths:
            assert (await assoc.store(path)).status == 0


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def index_location(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url = request.getfixturevalue("postgres")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "DROP TABLE IF EXISTS instances, series, studies, patients, pruned_files,"
            " stable_studies, site_state CASCADE"
        )
    return str(url)


@pytest.mark.slow  # waits out the stable-study delay twice
def test_a_python_observer_hears_each_burst_once(
    tmp_path: Path, index_location: str | None
) -> None:
    first, first_paths = make_study(tmp_path / "a", 3)
    _, more = make_study(tmp_path / "b", 2)
    for path in more:  # two more instances of the first study, later
        ds = dcmread(path)
        ds.StudyInstanceUID = first
        ds.save_as(path)
    heard: list[StudyStable] = []

    async def scenario() -> list[StudyStable]:
        listener = Listener("ARCHIVE", accept_any_storage=True)
        archive = Archive(tmp_path / "archive", fsync=False, index=index_location)
        archive.attach(listener)
        await listener.listen("127.0.0.1", 0)
        watcher = StableStudies(archive.index, 0.5, [heard.append])
        archive.storage.observers.append(watcher)
        await watcher.start()
        try:
            await store(listener.port, first_paths[:2])
            await asyncio.sleep(0.3)
            await store(listener.port, first_paths[2:], ae="OTHER")  # not stable in between
            await asyncio.sleep(1.5)
            assert len(heard) == 1
            await asyncio.sleep(1.0)
            assert len(heard) == 1  # not again
            await store(listener.port, more)
            await asyncio.sleep(1.5)
        finally:
            await watcher.close()
            await listener.close(timeout=0)
            await archive.close()
        return heard

    events = run(scenario())
    assert [(e.study_uid, e.instances) for e in events] == [(first, 3), (first, 5)]
    assert events[0].calling_ae_title == "OTHER"  # the last instance's
    assert events[0].folder == str((tmp_path / "archive" / first).absolute())
    assert events[1].calling_ae_title == "MODALITY"


def listen(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE", "--host", "127.0.0.1",
         "--port", str(port), "--dir", str(folder), "--fsync", "never", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dcmtk_env(),
    )  # fmt: skip
    wait_for_port("127.0.0.1", port, 30)
    return process


def pynetdicom_store(port: int, paths: list[Path]) -> None:
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(CTImageStorage, EXPLICIT)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    try:
        for path in paths:
            assert assoc.send_c_store(dcmread(path)).Status == 0
    finally:
        assoc.release()


def metric(port: int, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.interop
@pytest.mark.slow
def test_listen_hooks_event_log_and_kill_9_resume(tmp_path: Path) -> None:
    """storescu and pynetdicom send; hooks run per instance and per study; a kill -9
    and a restart report the pending study once, and no reported one again."""
    script, out = recorder(tmp_path)
    events = tmp_path / "events.jsonl"
    python = shlex.quote(sys.executable)
    hooks = [
        "--study-stable-after", "2",
        "--exec-on-study", f"{python} {script} {out} study {{study_uid}} {{instances}}"
        " {calling_ae} {folder}",
        "--exec-on-instance", f"{python} {script} {out} instance {{sop_instance_uid}}"
        " {study_uid} {calling_ae} {path}",
        "--exec-timeout", "10", "--event-log", str(events),
    ]  # fmt: skip
    one, one_paths = make_study(tmp_path / "one", 3)
    two, two_paths = make_study(tmp_path / "two", 2)
    three, three_paths = make_study(tmp_path / "three", 2)
    archive = tmp_path / "archive"
    port = free_port()
    process = listen(archive, port, *hooks)
    try:
        done = run_dcmtk("storescu", "-aet", "CT1", "-aec", "ARCHIVE", "127.0.0.1", str(port),
                         *map(str, one_paths))  # fmt: skip
        assert done.returncode == 0, done.stderr
        pynetdicom_store(port, two_paths)

        def studies_reported() -> set[str]:
            return {r["argv"][1] for r in runs(out) if r["argv"][0] == "study"}

        wait_until(lambda: studies_reported() == {one, two})
        # A third study arrives; the archive dies before it is stable.
        pynetdicom_store(port, three_paths)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert three not in studies_reported()

    metrics = free_port()
    process = listen(archive, port, *hooks, "--metrics-port", str(metrics),
                     "--metrics-host", "127.0.0.1")  # fmt: skip
    try:
        wait_until(lambda: three in studies_reported())
        time.sleep(4.0)  # time enough for any duplicate to show
        assert metric(metrics, "dicomnet_studies_stable_total") == 1  # three, and only three
        assert (
            metric(metrics, 'dicomnet_hook_runs_total{hook="--exec-on-study",outcome="succeeded"}')
            == 1
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)

    study_runs = [r["argv"] for r in runs(out) if r["argv"][0] == "study"]
    assert sorted(a[1] for a in study_runs) == sorted([one, two, three]), errors.decode()
    by_study = {a[1]: a for a in study_runs}
    assert by_study[one][2:4] == ["3", "CT1"]
    assert by_study[two][2:4] == ["2", "PYNETDICOM"]
    assert by_study[three][2:4] == ["2", "PYNETDICOM"]
    assert by_study[one][4] == str(archive.absolute() / one)

    instance_runs = [r["argv"] for r in runs(out) if r["argv"][0] == "instance"]
    assert len(instance_runs) == 7
    for argv in instance_runs:
        assert Path(argv[4]).is_file()
        assert Path(argv[4]).stem == argv[1]
        assert Path(argv[4]).parent.parent.name == argv[2]

    lines = [json.loads(line) for line in events.read_text().splitlines()]
    stable = [line for line in lines if line.get("event") == "study_stable"]
    assert sorted(line["study_uid"] for line in stable) == sorted([one, two, three])
    assert {line["study_uid"]: line["instances"] for line in stable} == {one: 3, two: 2, three: 2}
    assert b"stable: 2 instances from PYNETDICOM" in errors
