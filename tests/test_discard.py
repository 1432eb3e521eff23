"""The discarding C-STORE SCP (``dicomnet listen --ignore``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dicomnet.net import client
from dicomnet.net.listener import Listener
from dicomnet.services.discard import DiscardStorage

from factory import ct_dataset, dataset_bytes, write_part10


def test_discard_answers_success_and_counts_every_byte(tmp_path: Path) -> None:
    paths = [write_part10(ct_dataset(i), tmp_path / f"{i}.dcm") for i in range(3)]
    sink = DiscardStorage()

    async def scenario() -> list[int]:
        async with Listener("SINK", accept_any_storage=True) as listener:
            sink.attach(listener)
            await listener.listen("127.0.0.1", 0)
            async with client.connect(
                "127.0.0.1",
                listener.port,
                contexts=[("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"])],
            ) as assoc:
                return [int((await assoc.store(path)).status) for path in paths]

    statuses = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert statuses == [0, 0, 0]
    assert sink.instances == 3
    assert sink.bytes == sum(len(dataset_bytes(p)) for p in paths)


def test_a_store_refused_before_the_handler_still_reaches_the_observers() -> None:
    from dicomnet.services.store_events import StoreEvent
    from dicomnet.testing import RawPeer, raw

    ct, mr, explicit = (
        "1.2.840.10008.5.1.4.1.1.2",
        "1.2.840.10008.5.1.4.1.1.4",
        "1.2.840.10008.1.2.1",
    )
    sink = DiscardStorage()
    events: list[StoreEvent] = []
    sink.observers.append(events.append)

    async def scenario() -> int:
        async with Listener("SINK", accept_any_storage=True) as listener:
            sink.attach(listener)
            await listener.listen("127.0.0.1", 0)
            async with await RawPeer.connect("127.0.0.1", listener.port) as peer:
                await peer.associate([raw.presentation_context(1, ct, [explicit])])
                command = raw.c_store_rq(mr, "1.2.3.4")  # an MR instance on the CT context
                await peer.send(raw.p_data(raw.pdv(1, 0x03, command), raw.pdv(1, 0x02, b"\0" * 8)))
                pdu = await peer.read_pdu()
                assert pdu is not None
                return int(pdu.commands()[0][0x00000900])  # type: ignore[call-overload]

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 0xA900
    assert [(e.sop_class_uid, e.status, e.bytes, e.stored) for e in events] == [
        (mr, 0xA900, 8, False)
    ]
    assert sink.instances == 0
