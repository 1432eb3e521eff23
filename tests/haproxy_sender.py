"""One sender of the HAProxy test: a modality on its own address, storing a folder.

Run as ``python haproxy_sender.py SOURCE_IP HOST PORT AET FOLDER``. It sends
every Part 10 file of FOLDER with :func:`dicomnet.net.bulk_store.store_files`
(the retrying sender behind ``dicomnet store``), its connections leaving
from SOURCE_IP (a loopback alias such as 127.0.0.3) as a modality on
another machine would, and prints one JSON line: the SOP Instance UIDs
acknowledged and the failures.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from typing import Any

from dicomnet.dataset.part10 import read_file_meta
from dicomnet.net.bulk_store import collect_files, store_files


async def main(source: str, host: str, port: int, aet: str, folder: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    # Every connection of this process leaves from the sender's own address.
    loop.create_connection = functools.partial(  # type: ignore[method-assign]
        loop.create_connection, local_addr=(source, 0)
    )
    jobs, unreadable = collect_files([folder], recursive=True)
    assert not unreadable, unreadable
    outcome = await store_files(
        host,
        port,
        jobs,
        associations=2,
        window=8,
        retries=20,
        calling_ae_title=aet,
        called_ae_title="ARCHIVE",
    )
    acknowledged = []
    for job, _status in outcome.succeeded:
        with open(job.path, "rb") as stream:
            acknowledged.append(str(read_file_meta(stream).sop_instance_uid))
    return {
        "acknowledged": acknowledged,
        "failed": [[str(path), error] for path, error in outcome.failed],
    }


if __name__ == "__main__":
    source_ip, target, target_port, title, files = sys.argv[1:6]
    result = asyncio.run(main(source_ip, target, int(target_port), title, files))
    print(json.dumps(result))
    sys.stdout.flush()
    sys.exit(0 if not result["failed"] else 1)
