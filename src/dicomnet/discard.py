"""A C-STORE SCP that receives every dataset and keeps nothing.

The twin of DCMTK's ``storescp --ignore``: the network and protocol cost of
ingestion without the disk, for benchmarks and for testing a sender.
"""

from __future__ import annotations

from typing import Any

from dicomnet.association import IncomingRequest

__all__ = ["DiscardStorage"]


class _NullSink:
    """Counts the bytes of one dataset and drops them."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def write(self, fragment: Any) -> None:
        self.size += len(fragment)


class DiscardStorage:
    """Answers Success to every C-STORE after receiving it whole; stores nothing.

    Attributes
    ----------
    instances, bytes : int
        What was received so far.
    """

    def __init__(self) -> None:
        self.instances = 0
        self.bytes = 0

    def attach(self, listener: Any) -> None:
        listener.dataset_sink = self.sink
        listener.on_c_store(self.handle)

    def sink(self, association: Any, context_id: int, command: dict[int, Any]) -> Any:
        return _NullSink()

    async def handle(self, request: IncomingRequest) -> int:
        received = request.raw_dataset
        self.instances += 1
        self.bytes += received.size if isinstance(received, _NullSink) else len(received or b"")
        return 0x0000
