"""C-STORE interop: DCMTK storescu/storescp and pynetdicom, both directions.

Every check compares the dataset bytes that arrived with the ones sent.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicomnet.net import client
from dicomnet.net.listener import Listener
from dicomnet.services.storage import FolderStorage

from factory import ct_dataset, dataset_bytes, write_part10
from peers import dcmtk, dcmtk_env, dcmtk_server, free_port

pytestmark = pytest.mark.interop


def run(coro, timeout: float = 120.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def make_files(folder: Path, count: int, pixels: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_part10(ct_dataset(i, pixels=pixels), folder / f"ct{i}.dcm") for i in range(count)]


def assert_same_datasets(sent: list[Path], received: dict[str, Path]) -> None:
    assert len(received) == len(sent)
    for path in sent:
        uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(received[uid]) == dataset_bytes(path), uid


def by_instance_uid(folder: Path) -> dict[str, Path]:
    found = {}
    for path in folder.iterdir():
        if path.is_file() and not path.name.startswith("."):
            found[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    return found


def test_dcmtk_storescu_into_our_listener(tmp_path: Path) -> None:
    sent = make_files(tmp_path / "out", 12) + make_files(tmp_path / "big", 1, pixels=700)

    async def scenario() -> None:
        async with Listener("DICOMNET", accept_any_storage=True) as listener:
            FolderStorage(tmp_path / "archive").attach(listener)
            await listener.listen("127.0.0.1", 0, 16)
            process = await asyncio.create_subprocess_exec(
                dcmtk("storescu"),
                "-aec",
                "DICOMNET",
                "127.0.0.1",
                str(listener.port),
                *map(str, sent),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dcmtk_env(),
            )
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, output.decode(errors="replace")

    run(scenario())
    assert_same_datasets(sent, by_instance_uid(tmp_path / "archive"))


def test_our_store_cli_into_dcmtk_storescp(tmp_path: Path) -> None:
    sent = make_files(tmp_path / "out", 10)
    received = tmp_path / "received"
    received.mkdir()
    port = free_port()
    with dcmtk_server("storescp", ["-aet", "STORESCP", "-od", str(received), str(port)], port):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "dicomnet",
                "store",
                "--quiet",
                "--aec",
                "STORESCP",
                "--recursive",
                "127.0.0.1",
                str(port),
                str(tmp_path / "out"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert_same_datasets(sent, by_instance_uid(received))


def test_store_cli_exits_non_zero_when_an_instance_fails(tmp_path: Path) -> None:
    sent = make_files(tmp_path / "out", 2)
    # a DICOM prefix with a truncated meta group fails; a file that is not DICOM is skipped
    (tmp_path / "out" / "junk.dcm").write_bytes(bytes(128) + b"DICM\x02\x00")
    (tmp_path / "out" / "notes.txt").write_bytes(b"not dicom at all")

    async def scenario() -> subprocess.CompletedProcess[str]:
        async with Listener("DICOMNET", accept_any_storage=True) as listener:
            FolderStorage(tmp_path / "archive").attach(listener)
            await listener.listen("127.0.0.1", 0, 16)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dicomnet",
                "store",
                "--quiet",
                "--recursive",
                "--associations",
                "2",
                "127.0.0.1",
                str(listener.port),
                str(tmp_path / "out"),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 60)
            return subprocess.CompletedProcess(
                [], process.returncode or 0, out.decode(), err.decode()
            )

    result = run(scenario())
    assert result.returncode != 0
    assert "failed: " in result.stderr and "junk.dcm" in result.stderr
    assert "skipped" in result.stderr and "notes.txt" in result.stderr
    assert "1 of 3 instances failed" in result.stderr
    assert_same_datasets(sent, by_instance_uid(tmp_path / "archive"))


def test_pynetdicom_scu_into_our_listener(tmp_path: Path) -> None:
    from pynetdicom import AE

    sent = make_files(tmp_path / "out", 5)

    async def scenario() -> None:
        async with Listener("DICOMNET", accept_any_storage=True) as listener:
            FolderStorage(tmp_path / "archive").attach(listener)
            await listener.listen("127.0.0.1", 0, 16)

            def send() -> list[int]:
                ae = AE()
                ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
                assoc = ae.associate("127.0.0.1", listener.port, ae_title="DICOMNET")
                assert assoc.is_established
                statuses = [int(assoc.send_c_store(dcmread(p)).Status) for p in sent]
                assoc.release()
                return statuses

            assert await asyncio.to_thread(send) == [0] * len(sent)

    run(scenario())
    received = by_instance_uid(tmp_path / "archive")
    assert len(received) == len(sent)
    for path in sent:
        ours = dcmread(received[dcmread(path).SOPInstanceUID])
        assert ours.PixelData == dcmread(path).PixelData


def test_our_scu_into_pynetdicom_scp(tmp_path: Path) -> None:
    from pynetdicom import AE, evt

    sent = make_files(tmp_path / "out", 5)
    received: dict[str, bytes] = {}

    def on_store(event: object) -> int:
        request = event.request  # type: ignore[attr-defined]
        received[str(request.AffectedSOPInstanceUID)] = bytes(request.DataSet.getvalue())
        return 0x0000

    ae = AE(ae_title="PYNETSCP")
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:

        async def scenario() -> None:
            async with client.connect(
                "127.0.0.1",
                server.server_address[1],
                called_ae_title="PYNETSCP",
                contexts=[(CTImageStorage, [ExplicitVRLittleEndian])],
            ) as assoc:
                for path in sent:
                    assert (await assoc.store(path)).status == 0

        run(scenario())
    finally:
        server.shutdown()
    for path in sent:
        assert received[dcmread(path).SOPInstanceUID] == dataset_bytes(path)
