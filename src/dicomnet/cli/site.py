"""What ``dicomnet listen`` runs beside the archive to operate a site unattended.

Theory of operation
-------------------
:func:`dicomnet.cli.site_options.site_options` adds the flags, whose values land in
:class:`dicomnet.cli.listen_service.ServiceConfig` fields of the same names.
:func:`start_site` starts what they ask for once the archive exists, and
:meth:`Site.close` stops it at shutdown:

* retention: a :class:`dicomnet.archive.retention.Pruner` pass every
  ``--prune-interval`` seconds;
* study-stable events: a :class:`dicomnet.archive.stable.StableStudies`
  watching stored instances, reporting to ``--exec-on-study``, the event log
  (a ``study_stable`` line) and the metrics;
* ``--exec-on-instance``: one run per instance stored;
  hooks go through one :class:`dicomnet.archive.hooks.HookRunner`.

Each feature is a task of the listener's event loop: no thread per
association, no process but the hooks' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Site", "SiteMetrics", "start_site"]

log = logging.getLogger("dicomnet.cli.site")


class SiteMetrics:
    """Prometheus counters of the site features, in the listener's registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter

        r = registry
        self.pruned_studies = Counter(
            "dicomnet_pruned_studies", "Studies deleted by retention.", registry=r
        )
        self.pruned_instances = Counter(
            "dicomnet_pruned_instances", "Instances deleted by retention.", registry=r
        )
        self.pruned_bytes = Counter(
            "dicomnet_pruned_bytes", "Dataset bytes deleted by retention.", registry=r
        )
        self.stable_studies = Counter(
            "dicomnet_studies_stable", "Study-stable events reported.", registry=r
        )
        self.access_refused = Counter(
            "dicomnet_access_refused",
            "Associations and operations refused by the access rules, by operation.",
            ["operation"],
            registry=r,
        )
        from prometheus_client import Gauge

        self.forward_sent = Counter(
            "dicomnet_forward_sent",
            "Instances forwarded, by destination.",
            ["destination"],
            registry=r,
        )
        self.forward_failed = Counter(
            "dicomnet_forward_failed",
            "Forward attempts that failed (tried again later), by destination.",
            ["destination"],
            registry=r,
        )
        self.forward_waiting = Gauge(
            "dicomnet_forward_queue_depth",
            "Instances waiting to be forwarded, by destination.",
            ["destination"],
            registry=r,
            multiprocess_mode="max",
        )
        self.forward_oldest = Gauge(
            "dicomnet_forward_oldest_waiting_seconds",
            "Age of the oldest instance waiting for a destination.",
            ["destination"],
            registry=r,
            multiprocess_mode="max",
        )
        self.hook_runs = Counter(
            "dicomnet_hook_runs",
            "Hook runs by hook and outcome (succeeded, failed, timed_out, dropped).",
            ["hook", "outcome"],
            registry=r,
        )

    def pruned(self, study: Any) -> None:
        self.pruned_studies.inc()
        self.pruned_instances.inc(study.instances)
        self.pruned_bytes.inc(study.size)

    def refused(self, operation: str) -> None:
        self.access_refused.labels(operation).inc()

    def forwarded(self, destination: str, sent: bool) -> None:
        (self.forward_sent if sent else self.forward_failed).labels(destination).inc()

    def hook_outcome(self, hook: str, outcome: str) -> None:
        self.hook_runs.labels(hook, outcome).inc()


class Site:
    """The running site features of one listener process."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []
        self.pruner: Any = None
        self.stable: Any = None
        self.hooks: Any = None
        self.access: Any = None
        self.forwarder: Any = None
        self.config_file: str | None = None
        self.load_config: Callable[[str], dict[str, Any]] = _no_file
        """Reads ``config_file`` (:func:`dicomnet.cli.listen_service.load_config`)."""
        self._event_log: Any = None

    def reload(self) -> None:
        """SIGHUP: read the access rules again from the configuration file.

        Open associations are kept; a file that does not parse leaves the
        rules in force unchanged (and says why in the log).
        """
        if self.access is None or self.config_file is None:
            log.info("SIGHUP: nothing to reload (no --config file)")
            return
        from dicomnet.services.access import PeerTable

        try:
            settings = self.load_config(self.config_file)
            table = PeerTable.parse(
                settings.get("peers", {}),
                settings.get("unknown_peers", self.access.table.unknown),
            )
        except (OSError, ValueError) as exc:
            log.error("SIGHUP: %s: access rules unchanged", exc)
            return
        self.access.reload(table)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.stable is not None:
            await self.stable.close()
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.hooks is not None:
            await self.hooks.close()
        if self._event_log is not None:
            self._event_log.close()


def _no_file(path: str) -> dict[str, Any]:
    raise ValueError(f"{path}: no configuration reader")


def start_site(
    config: Any,
    archive: Any,
    registry: Any = None,
    listener: Any = None,
    load_config: Callable[[str], dict[str, Any]] = _no_file,
) -> Site:
    """Start what ``config`` asks for beside ``archive`` (an Archive, or None for no index).

    Access rules are enforced on ``listener`` (whose handlers are registered
    by now); with a configuration file, SIGHUP reloads them.

    Raises ``ValueError`` for a setting that cannot work (a hook with an
    unknown placeholder, retention without an index).
    """
    from dicomnet.archive.hooks import INSTANCE_FIELDS, STUDY_FIELDS, Hook, HookRunner
    from dicomnet.archive.retention import Pruner, RetentionPolicy

    site = Site()
    site.load_config = load_config
    metrics = SiteMetrics(registry) if registry is not None else None
    if listener is not None:
        _start_access(site, config, listener, metrics)
    study_hook = instance_hook = None
    if config.exec_on_study:
        study_hook = Hook.parse("--exec-on-study", config.exec_on_study, STUDY_FIELDS)
    if config.exec_on_instance:
        instance_hook = Hook.parse("--exec-on-instance", config.exec_on_instance, INSTANCE_FIELDS)
    policy = RetentionPolicy(config.max_storage, config.keep_days, config.study_stable_after)
    if archive is None:
        if policy.active or study_hook is not None:
            raise ValueError("retention and study-stable hooks need the index (not --no-index)")
        return site
    if study_hook is not None or instance_hook is not None:
        site.hooks = HookRunner(
            concurrency=config.exec_concurrency,
            queue_size=config.exec_queue,
            timeout=config.exec_timeout,
            on_outcome=metrics.hook_outcome if metrics is not None else None,
        )
        site.hooks.start()
    if instance_hook is not None:
        archive.storage.observers.append(_InstanceHook(site.hooks, instance_hook))
    if policy.active:
        logging.getLogger("dicomnet.archive.retention").setLevel(logging.INFO)  # a line a study
        site.pruner = Pruner(
            archive.index,
            policy,
            archive.folder,
            on_pruned=metrics.pruned if metrics is not None else None,
        )
        site.tasks.append(asyncio.create_task(site.pruner.run(config.prune_interval)))
    _start_forwarding(site, config, archive, metrics)
    if study_hook is not None or config.event_log or metrics is not None:
        from dicomnet.archive.stable import StableStudies

        receivers: list[Callable[[Any], None]] = []
        if study_hook is not None:
            hook, hooks = study_hook, site.hooks
            receivers.append(lambda event: hooks.submit(hook, _study_values(event)))
        if config.event_log:
            site._event_log = open(config.event_log, "a", buffering=1, encoding="utf-8")
            stream = site._event_log
            receivers.append(
                lambda event: stream.write(
                    json.dumps(event.as_dict(), separators=(",", ":")) + "\n"
                )
            )
        if metrics is not None:
            counter = metrics.stable_studies
            receivers.append(lambda event: counter.inc())
        receivers.append(_log_stable)
        log.setLevel(logging.INFO)  # one line a stable study
        site.stable = StableStudies(archive.index, config.study_stable_after, receivers)
        archive.storage.observers.append(site.stable)
        site.tasks.append(asyncio.create_task(site.stable.start()))
    return site


def _log_stable(event: Any) -> None:
    log.info(
        "study %s stable: %d instances from %s in %s",
        event.study_uid, event.instances, event.calling_ae_title or "?", event.folder,
    )  # fmt: skip


def _study_values(event: Any) -> dict[str, object]:
    return {
        "study_uid": event.study_uid,
        "folder": event.folder,
        "instances": event.instances,
        "calling_ae": event.calling_ae_title,
        "patient_id": event.patient_id,
    }


class _InstanceHook:
    """A store observer queueing ``--exec-on-instance`` for each instance stored."""

    def __init__(self, runner: Any, hook: Any) -> None:
        self.runner = runner
        self.hook = hook

    def __call__(self, event: Any) -> None:
        if not event.stored or not event.path:
            return
        path = Path(event.path)
        self.runner.submit(
            self.hook,
            {
                "path": event.path,
                "sop_instance_uid": event.sop_instance_uid,
                "sop_class_uid": event.sop_class_uid,
                "study_uid": path.parent.parent.name,
                "series_uid": path.parent.name,
                "folder": str(path.parent.parent),
                "calling_ae": event.calling_ae_title,
                "called_ae": event.called_ae_title,
                "peer": event.peer,
                "transfer_syntax": event.transfer_syntax,
            },
        )


def _start_access(site: Site, config: Any, listener: Any, metrics: SiteMetrics | None) -> None:
    from dicomnet.services.access import AccessControl, PeerTable

    peers = config.peers
    if config.config_file and not peers:
        peers = site.load_config(config.config_file).get("peers", {})
    if not (peers or config.unknown_peers != "allow" or config.config_file):
        return  # no rules and nothing to reload them from: every peer may do everything
    table = PeerTable.parse(peers, config.unknown_peers)
    site.access = AccessControl(table, on_refused=metrics.refused if metrics is not None else None)
    site.access.attach(listener)
    site.config_file = config.config_file
    if config.config_file:
        import signal

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, site.reload)


def _start_forwarding(site: Site, config: Any, archive: Any, metrics: SiteMetrics | None) -> None:
    """Forward to ``--forward`` and ``[listen.forward]`` destinations, by the rules."""
    from dicomnet.archive.forwarding import Forwarder, ForwardRule

    destinations = dict(config.forward)
    rule_table = list(config.forward_rules)
    if config.config_file:
        settings = site.load_config(config.config_file)
        destinations = {**settings.get("forward", {}), **destinations}
        rule_table = rule_table or list(settings.get("forward_rules", []))
    rules = []
    for entry in rule_table:
        names = {k.replace("-", "_"): str(v) for k, v in dict(entry).items()}
        unknown = set(names) - {"destination", "calling_ae", "modality", "sop_class"}
        if unknown or "destination" not in names:
            raise ValueError(
                f"forward rule {entry!r}: destination, calling-ae, modality, sop-class"
            )
        rules.append(ForwardRule(**names))
    ruled = {rule.destination for rule in rules}
    rules += [ForwardRule(name) for name in destinations if name not in ruled]  # everything
    if not destinations:
        from dicomnet.archive.forwarding import install

        # No forwarding: rules an earlier run left must not queue anything more.
        site.tasks.append(asyncio.create_task(archive.index.run_on_index(install, [])))
        return
    forwarder = Forwarder(
        archive.index,
        destinations,
        rules,
        calling_ae_title=config.aet,
        associations=config.forward_associations,
        window=config.forward_window,
        retry_max=config.forward_retry_max,
        on_result=metrics.forwarded if metrics is not None else None,
    )
    site.forwarder = forwarder
    archive.storage.observers.append(forwarder.wake)
    site.tasks.append(asyncio.create_task(forwarder.start()))
    if metrics is not None:
        site.tasks.append(asyncio.create_task(_forward_gauges(forwarder, metrics)))


async def _forward_gauges(forwarder: Any, metrics: SiteMetrics) -> None:
    import time

    while True:
        await asyncio.sleep(1.0)
        for state in forwarder.destinations.values():
            metrics.forward_waiting.labels(state.name).set(state.waiting)
            age = time.time() - state.oldest if state.oldest else 0.0
            metrics.forward_oldest.labels(state.name).set(age)
