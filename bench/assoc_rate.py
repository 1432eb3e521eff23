"""Associations per second: connect, negotiate, C-ECHO, release; one process each.

dicomnet client and listener share one event loop; pynetdicom's SCU and SCP
run in one process with TCP_NODELAY on and log handlers off. Both run in the
same invocation, alternating rounds, so the machine's noise hits both alike.

    python bench/assoc_rate.py --associations 300 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pynetdicom_best import tune_pynetdicom

VERIFICATION = "1.2.840.10008.1.1"


async def dicomnet_round(count: int, loop_name: str) -> float:
    from dicomnet.net import client
    from dicomnet.net.listener import Listener

    async with Listener("BENCH") as listener:
        await listener.listen("127.0.0.1", 0, 128)
        start = time.perf_counter()
        for _ in range(count):
            async with client.connect("127.0.0.1", listener.port, called_ae_title="BENCH") as assoc:
                status = (await assoc.echo()).status
                assert status == 0
        elapsed = time.perf_counter() - start
    return count / elapsed


def run_dicomnet(count: int, use_uvloop: bool) -> float:
    if use_uvloop:
        import uvloop

        return uvloop.run(dicomnet_round(count, "uvloop"))
    return asyncio.run(dicomnet_round(count, "asyncio"))


def run_pynetdicom(count: int) -> float:
    from pynetdicom import AE

    tune_pynetdicom()
    scp = AE(ae_title="BENCH")
    scp.add_supported_context(VERIFICATION)
    server = scp.start_server(("127.0.0.1", 0), block=False)
    try:
        port = server.server_address[1]
        scu = AE(ae_title="SCU")
        scu.add_requested_context(VERIFICATION)
        start = time.perf_counter()
        for _ in range(count):
            assoc = scu.associate("127.0.0.1", port, ae_title="BENCH")
            assert assoc.is_established
            status = assoc.send_c_echo()
            assert status.Status == 0
            assoc.release()
        elapsed = time.perf_counter() - start
    finally:
        server.shutdown()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--associations", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import dicomnet.core.codec

    results: dict[str, list[float]] = {
        "dicomnet (asyncio)": [],
        "dicomnet (uvloop)": [],
        "pynetdicom": [],
    }
    for _ in range(args.rounds):
        results["dicomnet (asyncio)"].append(run_dicomnet(args.associations, False))
        results["dicomnet (uvloop)"].append(run_dicomnet(args.associations, True))
        results["pynetdicom"].append(run_pynetdicom(args.associations))
    base = statistics.median(results["pynetdicom"])
    print(
        f"codec: {dicomnet.core.codec.IMPLEMENTATION}; "
        f"{args.associations} associations x {args.rounds} rounds"
    )
    print("| peer | median assoc/s | min | max | ratio to pynetdicom |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(
            f"| {name} | {median:.0f} | {min(rates):.0f} | {max(rates):.0f} "
            f"| {median / base:.1f}x |"
        )


if __name__ == "__main__":
    main()
