"""Prometheus metrics of a listener and its storage, with prometheus_client.

Theory of operation
-------------------
:class:`ListenerMetrics` is both a listener observer (associations open,
accepted, rejected) and a store observer (instances and bytes stored, the
C-STORE latency histogram, failures by status); :meth:`ListenerMetrics.attach`
registers it with both. Its metrics live in a registry of its own, never in
prometheus_client's process-wide default, so two listeners in one process
do not mix their counts.

With ``dicomnet listen --workers N`` each worker process counts into
prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by
the parent before any worker imports prometheus_client), and the parent
serves the sum across workers (:func:`multiprocess_registry`). The open
associations gauge sums the live processes only.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from dicomnet.services.store_events import StoreEvent

__all__ = ["LATENCY_BUCKETS", "ListenerMetrics", "multiprocess_registry", "serve_metrics"]

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""C-STORE latency histogram buckets, in seconds: a small instance over loopback
takes about a millisecond, a large one over a WAN a minute."""


class ListenerMetrics:
    """Counters of one listener and its storage, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.associations_open = Gauge(
            "dicomnet_associations_open",
            "Associations accepted and not yet ended.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.associations_accepted = Counter(
            "dicomnet_associations_accepted", "Association requests accepted.", registry=r
        )
        self.associations_rejected = Counter(
            "dicomnet_associations_rejected",
            "Association requests rejected (A-ASSOCIATE-RJ), by reason.",
            ["reason"],
            registry=r,
        )
        self.instances_stored = Counter(
            "dicomnet_instances_stored",
            "C-STORE requests answered Success or Warning (the instance is held).",
            registry=r,
        )
        self.bytes_stored = Counter(
            "dicomnet_bytes_stored", "Dataset bytes of the instances stored.", registry=r
        )
        self.store_latency = Histogram(
            "dicomnet_store_duration_seconds",
            "From a C-STORE dataset's first byte to its answer.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.read_only = Gauge(
            "dicomnet_archive_read_only",
            "1 while the storage folder refuses writes (EROFS), else 0.",
            registry=r,
            multiprocess_mode="max",
        )
        self._storage: Any = None
        self.store_failures = Counter(
            "dicomnet_store_failures",
            "C-STORE requests answered with a failure status, by status.",
            ["status"],
            registry=r,
        )

        self.security_alerts = Counter(
            "dicomnet_security_alerts",
            "Connections refused: PROXY header refused (peer_refused), TLS handshake "
            "failed (tls_failed), aborted for bad input (input_refused).",
            ["kind"],
            registry=r,
        )
        self.audit_messages_sent = Counter(
            "dicomnet_audit_messages_sent", "Audit messages handed to the collector.", registry=r
        )
        self.audit_messages_lost = Counter(
            "dicomnet_audit_messages_lost",
            "Audit messages dropped: the collector away or too slow (queue full).",
            registry=r,
        )

    def attach(self, listener: Any, storage: Any) -> None:
        """Observe ``listener``'s associations and ``storage``'s C-STOREs."""
        listener.observers.append(self)
        storage.observers.append(self)
        self._storage = storage

    # -- listener observer ---------------------------------------------------------------
    def association_accepted(self, association: Any) -> None:
        self.associations_accepted.inc()
        self.associations_open.inc()

    def association_rejected(self, association: Any, rejection: Any) -> None:
        reason = f"{int(rejection.result)}-{int(rejection.source)}-{int(rejection.reason)}"
        self.associations_rejected.labels(reason).inc()

    def association_ended(self, association: Any, error: BaseException | None) -> None:
        self.associations_open.dec()

    def peer_refused(self, address: str, reason: str) -> None:
        self.security_alerts.labels("peer_refused").inc()

    def tls_failed(self, address: str, reason: str) -> None:
        self.security_alerts.labels("tls_failed").inc()

    def input_refused(self, association: Any, error: BaseException) -> None:
        self.security_alerts.labels("input_refused").inc()

    # -- audit sender --------------------------------------------------------------------
    def audit_sent(self) -> None:
        self.audit_messages_sent.inc()

    def audit_lost(self, count: int) -> None:
        self.audit_messages_lost.inc(count)

    # -- store observer ------------------------------------------------------------------
    def __call__(self, event: StoreEvent) -> None:
        self.store_latency.observe(event.duration)
        if event.stored:
            self.instances_stored.inc()
            self.bytes_stored.inc(event.bytes)
        else:
            self.store_failures.labels(f"0x{event.status:04X}").inc()
        self.read_only.set(1 if getattr(self._storage, "read_only", False) else 0)


def serve_metrics(port: int, host: str, registry: CollectorRegistry) -> Any:
    """Serve ``registry`` over HTTP at ``host:port`` (``/metrics``) on a daemon thread.

    One thread for the whole process, not one per association; returns the
    HTTP server, whose ``shutdown()`` stops it.
    """
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def multiprocess_registry(directory: str) -> CollectorRegistry:
    """A registry that sums what every worker process wrote into ``directory``."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry
