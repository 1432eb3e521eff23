"""``dicomnet listen --workers N``: N listener processes on one port, one association cap.

Theory of operation
-------------------
One event loop uses one core; receiving, digesting and indexing instances
from many modalities at once needs more. The parent process starts N worker
processes (spawned, so none inherits another's threads or loop); each serves
the same :class:`dicomnet.cli.listen_service.ServiceConfig` on a socket bound with
SO_REUSEPORT, and the kernel spreads incoming connections among them. The
workers share the archive folder (file names are unique per process, a
duplicate is caught by an atomic hard link) and the SQLite index (WAL mode;
writers of different processes wait for each other's transactions).

The association cap holds across workers: :class:`SharedCap` keeps each
worker's open associations in shared memory, and a worker admits a new one
only while the sum is under the cap. A worker that dies has its count reset
and is started again. SIGTERM or SIGINT to the parent is passed to every
worker, which shuts down gracefully (:func:`dicomnet.cli.listen_service.serve`); the
parent waits for all of them.

With ``--metrics-port`` the workers count into prometheus_client's
multiprocess files in a private temporary folder and the parent serves the
sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

from dicomnet.cli.common import run
from dicomnet.cli.listen_service import ServiceConfig, serve

__all__ = ["SharedCap", "run_workers"]

log = logging.getLogger("dicomnet.cli.workers")

READY_TIMEOUT = 60.0
"""Seconds a worker has to bind its socket before the start is abandoned."""


class SharedCap:
    """Associations open in each worker, in shared memory, under one lock.

    ``cap`` 0 means no cap: admission always succeeds, and counts are kept
    only for what :meth:`open` reports.
    """

    def __init__(self, cap: int, workers: int, context: SpawnContext) -> None:
        self.cap = cap
        self._lock = context.Lock()
        self._open = context.Array("i", workers, lock=False)

    def admit(self, worker: int) -> bool:
        with self._lock:
            if self.cap and sum(self._open) >= self.cap:
                return False
            self._open[worker] += 1
            return True

    def release(self, worker: int) -> None:
        with self._lock:
            self._open[worker] = max(self._open[worker] - 1, 0)

    def reset(self, worker: int) -> None:
        """Forget a dead worker's associations: they ended with it."""
        with self._lock:
            self._open[worker] = 0

    def open(self) -> int:
        with self._lock:
            return sum(self._open)


def _worker_main(
    config: ServiceConfig,
    index: int,
    cap: SharedCap,
    ready: Any,
    metrics_dir: str | None,
    log_level: int,
) -> None:
    """A worker process: serve until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[{index}]: %(message)s",
    )
    logging.getLogger("dicomnet.associations").setLevel(logging.INFO)
    if metrics_dir is not None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client loads

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        registry = None
        if metrics_dir is not None:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry()  # values go to the shared files
        await serve(
            config,
            stop,
            ready=lambda listener: ready.put((index, os.getpid(), listener.port)),
            admit=lambda association: cap.admit(index),
            release=lambda association: cap.release(index),
            reuse_port=True,
            metrics_registry=registry,
        )

    run(main())


def _reserve_port(config: ServiceConfig) -> socket.socket | None:
    """A port for ``--port 0``: bound with SO_REUSEPORT (not listening) by the parent."""
    if config.port:
        return None
    family = socket.AF_INET6 if config.ip_type == "ipv6" else socket.AF_INET
    host = {"*": "::" if family == socket.AF_INET6 else "0.0.0.0"}.get(config.host, config.host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def run_workers(config: ServiceConfig, announce: Callable[[str], None]) -> None:
    """Run ``config.workers`` worker processes until SIGTERM or SIGINT; see the module doc.

    ``announce`` receives the line saying where they listen once all are bound.
    """
    context = multiprocessing.get_context("spawn")
    count = config.workers
    reserved = _reserve_port(config)
    if reserved is not None:
        config = replace(config, port=reserved.getsockname()[1])
    cap = SharedCap(config.max_associations, count, context)
    worker_config = replace(config, max_associations=0, metrics_port=None)
    ready = context.Queue()
    metrics_dir = tempfile.mkdtemp(prefix="dicomnet-metrics-") if config.metrics_port else None
    metrics_server = None
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def start(index: int) -> SpawnProcess:
        process = context.Process(
            target=_worker_main,
            args=(worker_config, index, cap, ready, metrics_dir, logging.getLogger().level),
            name=f"dicomnet-worker-{index}",
        )
        process.start()
        return process

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    processes: list[SpawnProcess] = []
    if config.config_file:

        def reload(signum: int, frame: Any) -> None:  # each worker reloads its access rules
            for process in processes:
                if process.exitcode is None and process.pid is not None:
                    os.kill(process.pid, signal.SIGHUP)

        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
    try:
        processes = [start(index) for index in range(count)]
        port = _await_ready(ready, processes, count)
        if reserved is not None:
            reserved.close()
            reserved = None
        if metrics_dir is not None and config.metrics_port is not None:
            from dicomnet.cli.metrics import multiprocess_registry, serve_metrics

            metrics_server = serve_metrics(
                config.metrics_port, config.metrics_host, multiprocess_registry(metrics_dir)
            )
        shown = config.host if config.host not in ("*", "") else "0.0.0.0"
        announce(f"listening on {shown}:{port} ({count} workers)")
        while not stopping:
            time.sleep(0.2)
            for index, process in enumerate(processes):
                if process.exitcode is None or stopping:
                    continue
                log.warning("worker %d exited with %s; starting it again", index, process.exitcode)
                cap.reset(index)
                _mark_dead(metrics_dir, process.pid)
                processes[index] = start(index)
                with contextlib.suppress(RuntimeError):
                    _await_ready(ready, [processes[index]], 1)
    finally:
        for process in processes:
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + config.shutdown_timeout + 15.0
        for process in processes:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.exitcode is None:
                log.warning("worker %s did not stop in time; killing it", process.name)
                process.kill()
                process.join(5.0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if reserved is not None:
            reserved.close()
        if metrics_server is not None:
            metrics_server.shutdown()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _await_ready(ready: Any, processes: list[SpawnProcess], count: int) -> int:
    """Wait for ``count`` workers to report their bound port; the port."""
    port = 0
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = count
    while waiting:
        try:
            _, _, port = ready.get(timeout=0.2)
            waiting -= 1
        except queue.Empty:
            if any(p.exitcode is not None for p in processes):
                raise RuntimeError("a worker exited before it was listening") from None
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start listening in time") from None
    return int(port)


def _mark_dead(metrics_dir: str | None, pid: int | None) -> None:
    if metrics_dir is None or pid is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
