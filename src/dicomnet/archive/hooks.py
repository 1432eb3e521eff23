"""Commands run on events (storescp's ``--exec-on-reception`` and ``--exec-on-eostudy``).

Theory of operation
-------------------
A hook is a command line given once (``--exec-on-study "/opt/route.sh
{study_uid} {folder}"``), split into arguments like a POSIX shell would
split it (:func:`shlex.split`), with ``{name}`` placeholders replaced in each
argument by the event's values. It is executed directly, **never through a
shell**: a value holding spaces, quotes or ``;`` stays one argument and is
never interpreted. A placeholder the event does not have is an error when
the hook is configured, not when it runs.

Hooks never slow ingestion. :meth:`HookRunner.submit` puts the arguments in a
bounded queue and returns at once; when the queue is full the run is dropped,
logged and counted. ``concurrency`` tasks take runs from the queue, each
starting one process at a time in its own session; a run that outlives
``timeout`` seconds has its whole process group killed (SIGKILL) and counts as
timed out. A run that cannot start or exits non-zero counts as failed, with
its exit status and the end of its standard error in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["INSTANCE_FIELDS", "STUDY_FIELDS", "Hook", "HookRunner"]

log = logging.getLogger("dicomnet.archive.hooks")

STUDY_FIELDS = frozenset({"study_uid", "folder", "instances", "calling_ae", "patient_id"})
"""Placeholders of ``--exec-on-study``."""

INSTANCE_FIELDS = frozenset(
    {
        "path", "sop_instance_uid", "sop_class_uid", "study_uid", "series_uid", "calling_ae",
        "called_ae", "peer", "transfer_syntax", "folder",
    }
)  # fmt: skip
"""Placeholders of ``--exec-on-instance``."""

STDERR_TAIL = 512
"""Bytes of a failed run's standard error kept for the log."""


@dataclass(frozen=True)
class Hook:
    """A command line template: arguments with ``{name}`` placeholders."""

    name: str
    arguments: tuple[str, ...]

    @classmethod
    def parse(cls, name: str, command: str, fields: Iterable[str]) -> Hook:
        """Split ``command`` and check its placeholders against ``fields``."""
        arguments = tuple(shlex.split(command))
        if not arguments:
            raise ValueError(f"{name}: empty command")
        allowed = set(fields)
        for argument in arguments:
            for _, field, spec, conversion in string.Formatter().parse(argument):
                if field is None:
                    continue
                if field not in allowed or spec or conversion:
                    raise ValueError(
                        f"{name}: unknown placeholder {{{field}}} in {argument!r}; "
                        f"known: {', '.join('{' + f + '}' for f in sorted(allowed))}"
                    )
        return cls(name, arguments)

    def argv(self, values: Mapping[str, object]) -> list[str]:
        """The arguments with the event's values in place (each stays one argument)."""
        return [
            argument.format_map({k: str(v) for k, v in values.items()})
            for argument in self.arguments
        ]


class HookRunner:
    """Runs hook commands from a bounded queue with bounded concurrency.

    Parameters
    ----------
    concurrency : int
        Processes running at once.
    queue_size : int
        Runs waiting at most; further ones are dropped (and counted).
    timeout : float
        Seconds a run may take before its process group is killed.
    on_outcome : callable, optional
        Called with ``(hook name, outcome)`` after each run: ``succeeded``,
        ``failed``, ``timed_out`` or ``dropped`` (metrics).
    """

    def __init__(
        self,
        *,
        concurrency: int = 4,
        queue_size: int = 1000,
        timeout: float = 60.0,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.timeout = timeout
        self.queue: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue(queue_size)
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.timed_out = 0
        self.dropped = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.on_outcome = on_outcome

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]

    def submit(self, hook: Hook, values: Mapping[str, object]) -> bool:
        """Queue one run of ``hook``; False (and counted, logged) when the queue is full."""
        argv = hook.argv(values)
        try:
            self.queue.put_nowait((hook.name, argv))
        except asyncio.QueueFull:
            self.dropped += 1
            self._tell(hook.name, "dropped")
            log.warning("%s dropped, %d runs waiting: %s", hook.name, self.queue.qsize(), argv)
            return False
        return True

    async def drain(self) -> None:
        """Wait until every queued run has finished (tests, shutdown)."""
        await self.queue.join()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        while True:
            name, argv = await self.queue.get()
            try:
                await self._run(name, argv)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: %s", name, argv)
            finally:
                self.queue.task_done()

    async def _run(self, name: str, argv: list[str]) -> None:
        self.started += 1
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills its children too
            )
        except OSError as exc:
            self.failed += 1
            self._tell(name, "failed")
            log.warning("%s could not start %s: %s", name, argv[0], exc)
            return
        try:
            _, errors = await asyncio.wait_for(process.communicate(), self.timeout)
        except asyncio.TimeoutError:
            self.timed_out += 1
            self._tell(name, "timed_out")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            log.warning("%s killed after %.1f s: %s", name, self.timeout, argv)
            return
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        if process.returncode == 0:
            self.succeeded += 1
            self._tell(name, "succeeded")
            return
        self.failed += 1
        self._tell(name, "failed")
        tail = (errors or b"")[-STDERR_TAIL:].decode("utf-8", "replace").strip()
        log.warning(
            "%s exited %s: %s%s", name, process.returncode, argv, f": {tail}" if tail else ""
        )

    def _tell(self, name: str, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(name, outcome)
