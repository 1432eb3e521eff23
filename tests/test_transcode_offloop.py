"""A conversion runs off the event loop: while one is stuck, other associations go on."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicomnet.dataset.transcode import transcode_part10
from dicomnet.net import client, store_client
from dicomnet.net.listener import Listener
from dicomnet.services.storage import FolderStorage

from codec_files import JPEG_LS_LOSSLESS, ct_image, native_file, pixels


def test_a_stalled_conversion_never_stalls_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = native_file(tmp_path, ct_image(1), "n.dcm")
    compressed = tmp_path / "c.dcm"
    compressed.write_bytes(transcode_part10(native.read_bytes(), JPEG_LS_LOSSLESS))
    entered, release = threading.Event(), threading.Event()
    real = store_client.transcode_dataset_bytes

    def held(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(store_client, "transcode_dataset_bytes", held)

    async def scenario() -> None:
        listener = Listener("STORE", accept_any_storage=True)
        FolderStorage(tmp_path / "archive").attach(listener)
        await listener.listen("127.0.0.1", 0, 16)
        async with listener:
            native_only = [(CTImageStorage, [ExplicitVRLittleEndian])]
            async with (
                client.connect("127.0.0.1", listener.port, contexts=native_only) as converting,
                client.connect("127.0.0.1", listener.port) as other,
            ):
                store = asyncio.ensure_future(converting.store(compressed))
                while not entered.is_set():
                    await asyncio.sleep(0.01)
                # The conversion is stuck in its thread; the loop serves the rest.
                for _ in range(3):
                    assert (await asyncio.wait_for(other.echo(), 5)).status == 0
                assert (await asyncio.wait_for(converting.echo(), 5)).status == 0
                assert not store.done()
                release.set()
                assert (await asyncio.wait_for(store, 30)).status == 0

    asyncio.run(asyncio.wait_for(scenario(), 60))
    (stored,) = [p for p in (tmp_path / "archive").rglob("*.dcm")]
    assert pixels(stored) == pixels(native)
