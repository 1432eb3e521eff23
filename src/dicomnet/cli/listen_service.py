"""The archive service behind ``dicomnet listen``: one configuration, one process's serving.

Theory of operation
-------------------
:class:`ServiceConfig` holds everything ``dicomnet listen`` can set, from its
flags or a TOML file (:func:`load_config`), and is what a worker process
receives (it pickles). :func:`serve` builds the listener, the storage (the
archive, files only, or discard), the optional providers and observers,
then serves until ``stop`` is set: it stops accepting, lets associations in
flight finish for ``shutdown_timeout`` seconds (new association requests on
connections already open are rejected), aborts what is left, and closes the
index. An instance is acknowledged only after its file and row are durable,
so nothing acknowledged is lost by a shutdown; an instance cut off by the
abort was never acknowledged and leaves no file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from dicomnet.net.listener import IPType, Listener, ListenerLimits
from dicomnet.net.retrieve import MoveDestination

__all__ = ["ServiceConfig", "load_config", "parse_ae_table", "serve"]

log = logging.getLogger("dicomnet.cli.listen_service")

IP_TYPES = {"ipv4": IPType.IPV4, "ipv6": IPType.IPV6, "both": IPType.IPV4_OR_IPV6}


@dataclass(frozen=True)
class ServiceConfig(ListenerLimits):
    """What ``dicomnet listen`` serves; each field is the flag of the same name.

    The listener's limits are inherited from :class:`ListenerLimits`, so each
    limit and its default is declared once, there, and is a flag and a TOML
    key here without being named again.
    """

    aet: str = "DICOMNET"
    host: str = "*"
    port: int = 11112
    ip_type: str = "ipv4"
    backlog: int = 128
    require_called_aet: bool = False
    directory: str = "dicomnet-archive"
    fsync: str = "always"
    digest: bool = True
    ignore: bool = False
    no_index: bool = False
    duplicates: str = "keep"
    index: str | None = None
    move_destinations: dict[str, tuple[str, int]] = field(default_factory=dict)
    commitment_destinations: dict[str, tuple[str, int]] = field(default_factory=dict)
    worklist: str | None = None
    mpps_dir: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    require_client_cert: bool = False
    workers: int = 1
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    event_log: str | None = None
    shutdown_timeout: float = 30.0
    # Transfer syntaxes (docs/conformance.md): what storage accepts, which it
    # prefers, and what it stores (names of dicomnet.dataset.transcode.SYNTAX_NAMES or UIDs).
    accept: str = "all"
    prefer: tuple[str, ...] = ()
    store_as: str | None = None
    # The site's edge (dicomnet.cli.listen_edge): PROXY protocol, audit trail.
    proxy_protocol: bool = False
    trusted_proxies: tuple[str, ...] = ()
    audit_syslog: str | None = None
    audit_transport: str = "udp"
    audit_tls_ca: str | None = None
    audit_source_id: str | None = None
    # The site (dicomnet.cli.site): retention, study-stable events, hooks.
    max_storage: int | None = None
    keep_days: float | None = None
    prune_interval: float = 60.0
    study_stable_after: float = 60.0
    exec_on_study: str | None = None
    exec_on_instance: str | None = None
    exec_timeout: float = 60.0
    exec_concurrency: int = 4
    exec_queue: int = 1000
    unknown_peers: str = "allow"
    peers: dict[str, Any] = field(default_factory=dict)
    """The ``[listen.peers]`` table (:mod:`dicomnet.services.access`)."""
    config_file: str | None = None
    """The TOML file the settings came from: read again on SIGHUP (access rules)."""
    forward: dict[str, tuple[str, int]] = field(default_factory=dict)
    forward_rules: list[dict[str, Any]] = field(default_factory=list)
    """``[[listen.forward-rules]]`` (:mod:`dicomnet.archive.forwarding`)."""
    forward_associations: int = 2
    forward_window: int = 8
    forward_retry_max: float = 300.0


SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
SIZE_SETTINGS = ("max_dataset_size", "max_buffered_dataset_size", "max_storage")


def parse_size(value: Any) -> int:
    """Bytes from ``8589934592``, ``"8G"``, ``"512M"`` or ``"64K"`` (powers of 1024)."""
    if isinstance(value, int):
        return value
    text = str(value).strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (text[:-1], text[-1]) if text[-1:].isalpha() else (text, "")
    if not (number.isdigit() and unit in SIZE_UNITS):
        raise ValueError(f"{value!r} is not a size such as 1048576, 512M or 8G")
    return int(number) * SIZE_UNITS[unit]


def parse_ae_table(entries: Any, what: str) -> dict[str, tuple[str, int]]:
    """``AET=HOST:PORT`` strings, or a TOML table of ``AET = "HOST:PORT"``, by AE title."""
    if isinstance(entries, dict):
        entries = [f"{name}={address}" for name, address in entries.items()]
    table = {}
    for entry in entries:
        name, _, address = str(entry).partition("=")
        host, _, port_text = address.rpartition(":")
        if not (name.strip() and host and port_text.isdigit()):
            raise ValueError(f"{what} {entry!r}: expected AET=HOST:PORT")
        table[name.strip()] = (host.strip("[]"), int(port_text))
    return table


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``[listen]`` table of a TOML file (or its top level), as flag values.

    Keys are the flag names with dashes or underscores (``max-associations``,
    ``move_destination``...); C-MOVE and commitment destinations are tables
    of ``AET = "HOST:PORT"``. An unknown key is an error, so a typo does not
    pass silently.
    """
    with open(path, "rb") as stream:
        document = tomllib.load(stream)
    table = document.get("listen", document)
    known = {f.name for f in fields(ServiceConfig)}
    aliases = {
        "dir": "directory",
        "move_destination": "move_destinations",
        "commitment_destination": "commitment_destinations",
        "mpps": "mpps_dir",
        "max_associations_per_ae": "max_associations_per_calling_ae",
        "trusted_proxy": "trusted_proxies",
    }
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        name = aliases.get(name, name)
        if name not in known:
            raise ValueError(f"{path}: unknown setting {key!r}")
        if name in ("move_destinations", "commitment_destinations", "forward"):
            value = parse_ae_table(value, key)
        elif name in SIZE_SETTINGS:
            value = parse_size(value)
        elif name == "trusted_proxies":
            value = tuple([value] if isinstance(value, str) else value)
        values[name] = value
    return values


async def serve(
    config: ServiceConfig,
    stop: asyncio.Event,
    *,
    ready: Callable[[Listener], None] | None = None,
    admit: Callable[[Any], bool] | None = None,
    release: Callable[[Any], None] | None = None,
    reuse_port: bool = False,
    metrics_registry: Any = None,
) -> None:
    """Serve ``config`` until ``stop`` is set, then shut down gracefully.

    ``ready`` is called once the listener is bound; ``admit`` and ``release``
    share an association cap with other processes (:mod:`dicomnet.cli.workers`);
    ``reuse_port`` binds with SO_REUSEPORT beside them. ``metrics_registry``
    is where the metrics go when another process serves them (workers);
    without it, ``config.metrics_port`` is served from here.
    """
    from dicomnet.cli.open_files import needed_open_files, raise_open_files_limit
    from dicomnet.services.store_events import AssociationLog, EventLog

    raise_open_files_limit(
        needed_open_files(config.max_associations, config.max_operations_performed)
    )
    listener = Listener(
        config.aet,
        require_called_ae_title=config.require_called_aet,
        limits=_limits(config),
        accept_any_storage=True,
    )
    listener.admit, listener.release = admit, release
    _transfer_syntax_policy(config, listener)
    listener.observers.append(AssociationLog())
    storage, to_close = _storage(config, listener)
    event_log = EventLog(config.event_log) if config.event_log else None
    if event_log is not None:
        storage.observers.append(event_log)
    metrics_server = None
    metrics: Any = None
    if config.metrics_port is not None or metrics_registry is not None:
        from dicomnet.cli.metrics import ListenerMetrics, serve_metrics

        metrics = ListenerMetrics(metrics_registry)
        metrics.attach(listener, storage)
        if metrics_registry is None and config.metrics_port is not None:
            metrics_server = serve_metrics(
                config.metrics_port, config.metrics_host, metrics.registry
            )
    _providers(config, listener)
    from dicomnet.cli.listen_edge import Edge

    edge = Edge(config)  # PROXY protocol and audit trail, when configured
    edge.attach(listener, storage, metrics)
    from dicomnet.cli.site import start_site

    archive = to_close if hasattr(to_close, "index") else None
    registry = metrics.registry if metrics is not None else None
    site = start_site(config, archive, registry, listener, load_config)
    try:
        await listener.listen(
            config.host,
            config.port,
            config.backlog,
            IP_TYPES[config.ip_type],
            ssl=_server_ssl(config),
            reuse_port=reuse_port,
        )
        if ready is not None:
            ready(listener)
        await stop.wait()
        log.info("shutting down: %d associations open", listener.association_count)
        await listener.close(timeout=config.shutdown_timeout)
    finally:
        await listener.close(timeout=0)
        await site.close()
        await edge.close()
        if to_close is not None:
            closed = to_close.close()
            if asyncio.iscoroutine(closed):
                await closed
        if event_log is not None:
            event_log.close()
        if metrics_server is not None:
            metrics_server.shutdown()


def _limits(config: ServiceConfig) -> ListenerLimits:
    """The listener's limits: the :class:`ListenerLimits` part of the configuration."""
    return ListenerLimits(**{f.name: getattr(config, f.name) for f in fields(ListenerLimits)})


def _storage(config: ServiceConfig, listener: Listener) -> tuple[Any, Any]:
    """The C-STORE side: (storage with ``observers``, what to close at the end or None)."""
    if config.ignore:
        from dicomnet.services.discard import DiscardStorage

        discard = DiscardStorage()
        discard.attach(listener)
        return discard, None
    if config.no_index:
        from dicomnet.services.storage import PREFETCH, FolderStorage

        folder = FolderStorage(
            config.directory,
            fsync=config.fsync == "always",
            digest=config.digest,
            layout="study",
            duplicates=config.duplicates,
            prefetch=PREFETCH,
        )
        _store_as(config, folder)
        folder.attach(listener)
        return folder, folder
    from dicomnet.archive.archive import Archive

    archive = Archive(
        config.directory,
        fsync=config.fsync == "always",
        digest=config.digest,
        duplicates=config.duplicates,
        index=config.index,
    )
    _store_as(config, archive.storage)
    archive.attach(
        listener,
        commitment_destinations=_destinations(config.commitment_destinations),
    )
    listener.move_destinations.update(_destinations(config.move_destinations))
    return archive.storage, archive


# -- transfer syntaxes: --accept, --prefer, --store-as ------------------------------------
def _transfer_syntax_policy(config: ServiceConfig, listener: Listener) -> None:
    """The storage syntaxes accepted, in order; --store-as needs the archive."""
    from dataclasses import replace

    from dicomnet.dataset.transcode import syntax_by_name
    from dicomnet.services.ingest_transcode import accepted_syntaxes

    prefer = tuple(syntax_by_name(name) for item in config.prefer for name in item.split(","))
    syntaxes = accepted_syntaxes(config.accept, prefer)
    listener.policy = replace(listener.policy, storage_transfer_syntaxes=syntaxes)
    if config.store_as and config.ignore:
        raise ValueError("--store-as stores nothing with --ignore")


def _store_as(config: ServiceConfig, storage: Any) -> None:
    """Convert each instance before its index row and Success (--store-as)."""
    if not config.store_as:
        return
    from dicomnet.dataset.transcode import syntax_by_name
    from dicomnet.services.ingest_transcode import TranscodeOnStored

    TranscodeOnStored.install(
        storage, syntax_by_name(config.store_as), fsync=config.fsync == "always"
    )


def _destinations(table: dict[str, tuple[str, int]]) -> dict[str, MoveDestination]:
    return {name: MoveDestination(host, port) for name, (host, port) in table.items()}


def _providers(config: ServiceConfig, listener: Listener) -> None:
    if config.worklist:
        from dicomnet.services.worklist import WorklistProvider

        WorklistProvider(config.worklist).attach(listener)
    if config.mpps_dir:
        from dicomnet.services.mpps import MPPSProvider

        MPPSProvider(config.mpps_dir).attach(listener)


def _server_ssl(config: ServiceConfig) -> Any:
    if not config.tls_cert:
        return None
    from dicomnet.net.tls import server_context

    return server_context(
        Path(config.tls_cert),
        Path(config.tls_key or config.tls_cert),
        ca=Path(config.tls_ca) if config.tls_ca else None,
        require_client_certificate=config.require_client_cert,
    )
