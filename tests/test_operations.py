"""Operating the archive: event log, association log lines, metrics, TOML configuration."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import urllib.request
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from dicomnet.cli.listen_service import ServiceConfig, load_config, serve
from dicomnet.net import client

from factory import ct_dataset, dataset_bytes, write_part10
from peers import free_port

pytestmark = pytest.mark.filterwarnings("ignore:.*VR UI")

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def serving(config: ServiceConfig, body) -> None:
    """Serve ``config`` in this loop while ``body(port)`` runs, then stop gracefully."""
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(config, stop, ready=lambda lst: bound.set_result(lst.port)))
    done, _ = await asyncio.wait([task, bound], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what stopped it
    try:
        await body(await bound)
    finally:
        stop.set()
        await task


def test_event_log_has_a_line_per_store_and_the_association_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = [write_part10(ct_dataset(i), tmp_path / f"{i}.dcm") for i in range(3)]
    events = tmp_path / "events.jsonl"
    config = ServiceConfig(
        host="127.0.0.1", port=0, directory=str(tmp_path / "archive"), event_log=str(events)
    )

    async def body(port: int) -> None:
        async with client.connect(
            "127.0.0.1", port, calling_ae_title="MODALITY", called_ae_title="ARCHIVE",
            contexts=[(CT, [EXPLICIT])],
        ) as assoc:  # fmt: skip
            for path in paths:
                assert (await assoc.store(path)).status == 0
            assert (await assoc.store(paths[0])).status == 0xB000  # a duplicate, kept
            bad = ct_dataset(9)
            bad.SeriesInstanceUID = "not/a/uid"
            assert (await assoc.store(bad)).status == 0xC000

    caplog.set_level(logging.INFO, logger="dicomnet.associations")
    run(serving(config, body))
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [line["status"] for line in lines] == ["0x0000"] * 3 + ["0xB000", "0xC000"]
    for line, path in zip(lines, paths, strict=False):
        data = dataset_bytes(path)
        assert line["bytes"] == len(data)
        assert line["sha256"] == hashlib.sha256(data).hexdigest()
        assert line["calling_ae_title"] == "MODALITY"
        assert line["called_ae_title"] == "ARCHIVE"
        assert line["peer"].startswith("127.0.0.1:")
        assert line["duration_ms"] >= 0 and line["time"].endswith("Z")
        assert Path(line["path"]).is_file()
    assert len({line["association"] for line in lines}) == 1
    assert lines[-1]["path"] == "" and lines[-1]["sha256"] == ""
    (record,) = [r for r in caplog.records if r.name == "dicomnet.associations"]
    message = record.getMessage()
    assert "MODALITY -> ARCHIVE" in message
    assert "4 instances" in message  # three new and the kept duplicate
    total = sum(len(dataset_bytes(p)) for p in paths) + len(dataset_bytes(paths[0]))
    assert f"{total} bytes" in message and "released" in message


def test_metrics_count_associations_instances_bytes_and_failures(tmp_path: Path) -> None:
    paths = [write_part10(ct_dataset(i), tmp_path / f"{i}.dcm") for i in range(4)]
    metrics_port = free_port()
    config = ServiceConfig(
        host="127.0.0.1",
        port=0,
        directory=str(tmp_path / "archive"),
        metrics_port=metrics_port,
        metrics_host="127.0.0.1",
        max_associations=1,
    )

    def scrape() -> dict[str, float]:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    async def body(port: int) -> None:
        contexts = [(CT, [EXPLICIT])]
        async with client.connect("127.0.0.1", port, contexts=contexts) as assoc:
            for path in paths:
                assert (await assoc.store(path)).status == 0
            bad = ct_dataset(7)
            bad.StudyInstanceUID = generate_uid() + ".x"
            assert (await assoc.store(bad)).status == 0xC000
            during = await asyncio.to_thread(scrape)
            assert during["dicomnet_associations_open"] == 1
            with pytest.raises(Exception, match="rejected"):  # over the cap of 1
                async with client.connect("127.0.0.1", port, contexts=contexts):
                    pass
        after = await asyncio.to_thread(scrape)
        assert after["dicomnet_associations_open"] == 0
        assert after["dicomnet_associations_accepted_total"] == 1
        assert after['dicomnet_associations_rejected_total{reason="2-3-2"}'] == 1
        assert after["dicomnet_instances_stored_total"] == 4
        assert after["dicomnet_bytes_stored_total"] == sum(len(dataset_bytes(p)) for p in paths)
        assert after["dicomnet_store_duration_seconds_count"] == 5
        assert after['dicomnet_store_failures_total{status="0xC000"}'] == 1

    run(serving(config, body))


def test_toml_configuration_sets_what_the_flags_set(tmp_path: Path) -> None:
    settings = tmp_path / "dicomnet.toml"
    settings.write_text(
        "[listen]\n"
        'aet = "PACS"\n'
        "port = 4242\n"
        'dir = "/srv/archive"\n'
        "max-associations = 8\n"
        'duplicates = "reject"\n'
        "workers = 4\n"
        "metrics_port = 9100\n"
        'event-log = "/var/log/dicomnet.jsonl"\n'
        "[listen.move-destination]\n"
        'WORKSTATION = "10.0.0.7:104"\n'
    )
    values = load_config(settings)
    config = ServiceConfig(**values)
    assert config.aet == "PACS" and config.port == 4242
    assert config.directory == "/srv/archive" and config.max_associations == 8
    assert config.duplicates == "reject" and config.workers == 4
    assert config.metrics_port == 9100 and config.event_log == "/var/log/dicomnet.jsonl"
    assert config.move_destinations == {"WORKSTATION": ("10.0.0.7", 104)}
    settings.write_text("[listen]\nmax-asociations = 8\n")
    with pytest.raises(ValueError, match="max-asociations"):
        load_config(settings)
