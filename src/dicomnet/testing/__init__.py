"""A misbehaving DICOM peer, to test SCPs and SCUs against (ours or yours).

* :mod:`dicomnet.testing.raw` builds PDUs as bytes, with whatever error a
  test wants in them: lengths that lie, unknown item types, odd fragments.
* :class:`RawPeer` plays the SCU side over a raw TCP connection: send bytes
  whole, trickled or cut off, read back the SCP's PDUs, expect an A-ABORT.
* :class:`MisbehavingSCP` plays the SCP side, answering late, never, with
  floods of pending responses, in odd PDV splits, with wrong lengths,
  cut off mid-PDU, or never closing.
* :func:`store_load` runs many concurrent storage SCUs against one SCP
  (:mod:`dicomnet.testing.load`), for load tests and soaks.
* :func:`open_files` and :func:`task_count` measure what a test must not leak.

See ``docs/testing.md`` for the guide.

May import: :mod:`dicomnet.net` and below (``core``, ``dataset``, ``errors``).
"""

from __future__ import annotations

import asyncio
import os

from dicomnet.testing import raw
from dicomnet.testing.load import LoadResult, store_load
from dicomnet.testing.peer import RawPeer, ReceivedPDU
from dicomnet.testing.scp import Behaviour, MisbehavingSCP

__all__ = [
    "Behaviour",
    "LoadResult",
    "MisbehavingSCP",
    "RawPeer",
    "ReceivedPDU",
    "open_files",
    "raw",
    "store_load",
    "task_count",
]


def open_files() -> int:
    """File descriptors this process holds now (Linux ``/proc/self/fd``)."""
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    """Tasks alive on the running event loop, the caller's included."""
    return len(asyncio.all_tasks())
