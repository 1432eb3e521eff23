"""What the send stall timer costs: C-STOREs per second with and without it.

The send timer watches the socket (bytes taken) while a message is written;
a message that goes out at once costs one watchdog task. This sends the same
small instances over one association, window 16, to a discarding listener
on loopback, with ``RequestTimeouts(send=60)`` (the default) and with
``send=None`` (no send timer at all), alternating, and prints the medians.

    python bench/send_timer.py --count 3000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import dicomnet

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def instance() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "BENCH"
    ds.BitsAllocated = 16
    ds.PixelData = bytes(8192)
    return ds


async def one_round(port: int, payloads: list[tuple[str, bytes]], send: float | None) -> float:
    timeouts = dicomnet.RequestTimeouts(send=send)
    async with dicomnet.connect(
        "127.0.0.1",
        port,
        contexts=[(CT, [EXPLICIT])],
        max_operations_invoked=16,
        timeouts=timeouts,
    ) as assoc:
        started = time.perf_counter()
        window = asyncio.Semaphore(16)

        async def store(uid: str, data: bytes) -> None:
            async with window:
                response = await assoc.store(
                    data, sop_class_uid=CT, sop_instance_uid=uid, transfer_syntax=EXPLICIT
                )
                assert response.status == 0

        await asyncio.gather(*(store(uid, data) for uid, data in payloads))
        return len(payloads) / (time.perf_counter() - started)


async def main(count: int, rounds: int) -> None:
    from dicomnet.dataset.encoding import encode_dataset

    payloads = []
    for _ in range(count):
        ds = instance()
        payloads.append((str(ds.SOPInstanceUID), bytes(encode_dataset(ds, EXPLICIT))))
    listener = dicomnet.Listener("BENCH", accept_any_storage=True)
    dicomnet.DiscardStorage().attach(listener)
    await listener.listen("127.0.0.1", 0)
    rates: dict[str, list[float]] = {"send=60 (stall timer)": [], "send=None": []}
    async with listener:
        for _ in range(rounds):
            rates["send=60 (stall timer)"].append(await one_round(listener.port, payloads, 60.0))
            rates["send=None"].append(await one_round(listener.port, payloads, None))
    for name, values in rates.items():
        print(f"{name:24} {statistics.median(values):8.0f} C-STORE/s (median of {rounds})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.count, args.rounds))
