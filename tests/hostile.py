"""The harness of the hostile-input suite: a listener under attack and a witness.

Every case runs against a fresh listener that stores C-STOREs into a folder.
Before the hostile connection opens, a well-behaved client associates (the
witness) and sends a C-ECHO every half second all through the case. After
the case, the harness checks what every case must leave
behind: the witness still answered, a new association is still accepted,
every hostile association is gone, no task, file descriptor or temporary
file remains, no file is half-written in the archive, nothing escaped to the
event loop's exception handler, no log line carries a traceback, and no log
line carries a control character (peer-supplied text is escaped).

The listener runs the association log, as ``dicomnet listen`` does, and the
harness collects every store event (what ``--event-log`` writes), so a case
can assert the line a refused C-STORE leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnet.core.negotiation import SupportedContext
from dicomnet.dataset.encoding import encode_dataset
from dicomnet.net import client
from dicomnet.net.listener import Listener, ListenerLimits
from dicomnet.services.storage import FolderStorage
from dicomnet.services.store_events import AssociationLog, StoreEvent
from dicomnet.testing import RawPeer, open_files, raw, task_count

from factory import ct_dataset

AE = "HOSTILE"
VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"

LIMITS = ListenerLimits(
    artim_timeout=1.0,
    idle_timeout=3.0,
    max_pdu_length=16384,
    max_dataset_size=1 << 20,
    max_buffered_dataset_size=64 << 10,
    write_timeout=2.0,
    dimse_timeout=2.0,
)

CONTEXTS = [
    raw.presentation_context(1, VERIFICATION, [IMPLICIT]),
    raw.presentation_context(3, CT, [IMPLICIT]),
    raw.presentation_context(5, FIND, [IMPLICIT]),
    raw.presentation_context(7, CT, [DEFLATED]),
]
"""What a hostile peer proposes when its case needs an association first."""


class LogWatch(logging.Handler):
    """Collects dicomnet's log records during one case."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> str:
        return "\n".join(record.getMessage() for record in self.records)

    def unprintable(self) -> list[str]:
        """Log messages holding a character ``str.isprintable`` refuses (CR, LF, ESC, NUL...)."""
        return [m for m in (r.getMessage() for r in self.records) if not m.isprintable()]


@dataclass
class Harness:
    """One listener under attack, its archive folder and what it logged."""

    listener: Listener
    folder: Path
    log: LogWatch
    loop_errors: list[dict[str, Any]] = field(default_factory=list)
    case_records: list[logging.LogRecord] = field(default_factory=list)
    """What the listener logged while the case ran (the association log aside)."""
    events: list[StoreEvent] = field(default_factory=list)
    """Every C-STORE answered, as the event log sees it."""

    @property
    def port(self) -> int:
        return self.listener.port

    async def peer(self) -> RawPeer:
        return await RawPeer.connect("127.0.0.1", self.port)

    async def associated_peer(self, contexts: list[bytes] | None = None) -> RawPeer:
        peer = await self.peer()
        await peer.associate(CONTEXTS if contexts is None else contexts, called=AE)
        return peer

    def stored(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*.dcm") if ".incoming" not in p.parts)

    def incoming(self) -> list[Path]:
        return (
            sorted((self.folder / ".incoming").glob("*"))
            if (self.folder / ".incoming").exists()
            else []
        )


def ct_bytes(index: int = 0, **options: Any) -> tuple[str, bytes]:
    """(SOP Instance UID, dataset in implicit VR little endian) of a small CT."""
    ds = ct_dataset(index, **options)
    return str(ds.SOPInstanceUID), encode_dataset(ds, IMPLICIT)


def echo(context_id: int = 1, message_id: int = 1) -> bytes:
    return raw.p_data(raw.pdv(context_id, 0x03, raw.c_echo_rq(message_id)))


async def status_of_response(peer: RawPeer, timeout: float = 5.0) -> int:
    """The Status of the next response (command PDUs only)."""
    pdu = await peer.read_pdu(timeout)
    assert pdu is not None and pdu.pdu_type == 0x04, f"expected a response, got {pdu!r}"
    commands = pdu.commands()
    assert commands, f"no command in {pdu!r}"
    return int(commands[0][0x00000900])  # type: ignore[call-overload]


async def settle(condition: Any, timeout: float = 5.0) -> bool:
    """Wait (bounded) until ``condition()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@contextlib.asynccontextmanager
async def under_attack(folder: Path, **listener_options: Any) -> AsyncIterator[Harness]:
    """A listener with a witness association; checks the aftermath on the way out."""
    loop = asyncio.get_running_loop()
    watch = LogWatch()
    logger = logging.getLogger("dicomnet")
    logger.addHandler(watch)
    previous_level = logger.level
    logger.setLevel(logging.DEBUG)
    listener = Listener(
        AE,
        require_called_ae_title=True,
        supported_contexts=[
            SupportedContext(CT, (IMPLICIT, EXPLICIT, DEFLATED)),
            SupportedContext(FIND, (IMPLICIT,)),
        ],
        limits=listener_options.pop("limits", LIMITS),
        **listener_options,
    )
    storage = FolderStorage(folder, layout="study")
    storage.attach(listener)
    listener.observers.append(AssociationLog())
    harness = Harness(listener, folder, watch)
    storage.observers.append(harness.events.append)
    loop.set_exception_handler(lambda _, context: harness.loop_errors.append(context))
    try:
        await listener.listen("127.0.0.1", 0)
        tasks_before, files_before = task_count(), open_files()
        witness = await client.connect(
            "127.0.0.1",
            listener.port,
            called_ae_title=AE,
            calling_ae_title="WITNESS",
            contexts=[(VERIFICATION, [IMPLICIT])],
        )
        statuses: list[int] = []

        async def keep_echoing() -> None:  # served all through the attack
            while True:
                statuses.append(int((await witness.echo()).status))
                await asyncio.sleep(0.5)

        echoing = asyncio.create_task(keep_echoing())
        try:
            yield harness
            harness.case_records = [
                r
                for r in watch.records
                if "WITNESS" not in r.getMessage() and r.name != "dicomnet.associations"
            ]
            assert not echoing.done(), f"the witness association was hurt: {echoing!r}"
            echoing.cancel()
            assert (await witness.echo()).status == 0, "the witness association was hurt"
            assert statuses and set(statuses) == {0}, statuses
        finally:
            echoing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await echoing
            await witness.release()
        async with client.connect(
            "127.0.0.1", listener.port, called_ae_title=AE, contexts=[(VERIFICATION, [IMPLICIT])]
        ) as fresh:
            assert (await fresh.echo()).status == 0, "a new association was refused"
        assert await settle(lambda: not listener.associations), (
            f"associations left: {listener.associations}"
        )
        assert listener.association_count == 0
        assert await settle(lambda: task_count() <= tasks_before), "a task leaked"
        assert await settle(lambda: open_files() <= files_before), "a file descriptor leaked"
        assert harness.incoming() == [], f"temporary files left: {harness.incoming()}"
        assert not harness.loop_errors, f"escaped to the event loop: {harness.loop_errors}"
        tracebacks = [r for r in watch.records if r.exc_info and r.levelno >= logging.ERROR]
        assert not tracebacks, f"a traceback was logged: {tracebacks[0].getMessage()}"
        assert not watch.unprintable(), f"a control character was logged: {watch.unprintable()}"
    finally:
        await listener.close(timeout=2)
        storage.close()
        logger.removeHandler(watch)
        logger.setLevel(previous_level)
        loop.set_exception_handler(None)


def run(coroutine: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


__all__ = [
    "AE",
    "CONTEXTS",
    "CT",
    "DEFLATED",
    "EXPLICIT",
    "FIND",
    "IMPLICIT",
    "LIMITS",
    "VERIFICATION",
    "Harness",
    "ct_bytes",
    "echo",
    "run",
    "settle",
    "status_of_response",
    "under_attack",
]
