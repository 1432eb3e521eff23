"""``dicomnet listen``: the archive, from flags or a TOML configuration file."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import fields
from typing import Any

import click

from dicomnet.cli.common import BYTE_SIZE, size_text
from dicomnet.cli.common import fail as _fail
from dicomnet.cli.common import run as _run
from dicomnet.cli.listen_edge import edge_options
from dicomnet.cli.listen_service import IP_TYPES, ServiceConfig, load_config, parse_ae_table, serve
from dicomnet.cli.site_options import site_options

DEFAULTS = ServiceConfig()
"""Every flag's default, read from the one place that declares it."""

__all__ = ["listen"]


def _load_config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--config FILE``: its settings become the defaults the flags override."""
    if not value:
        return
    try:
        settings = load_config(value)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    for name in ("move_destinations", "commitment_destinations", "forward"):
        if name in settings:  # back to the flags' AET=HOST:PORT form
            settings[name] = [f"{a}={h}:{p}" for a, (h, p) in settings[name].items()]
    ctx.default_map = {**(ctx.default_map or {}), **settings}
    ctx.meta["dicomnet.config_file"] = value  # read again on SIGHUP (dicomnet.cli.site)




def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


class WorkerCount(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """1-256, or ``auto`` (0 here; one per CPU once the options are read)."""

    name = "N|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        if str(value).strip().lower() == "auto":
            return 0
        try:
            count = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor auto", param, ctx)
        if not 1 <= count <= 256:
            self.fail(f"{count} is not in 1-256", param, ctx)
        return count


WORKERS = WorkerCount()
@click.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_config_file,
    help="TOML file of settings (the [listen] table); flags given override it.",
)
@click.option("--aet", default=DEFAULTS.aet, show_default=True, help="Our AE title.")
@click.option(
    "--host",
    default=DEFAULTS.host,
    show_default=True,
    help='"*" every interface, "" this machine\'s address.',
)
@click.option(
    "--port", default=DEFAULTS.port, show_default=True, help="0 takes the first free port."
)
@click.option(
    "--ip-type", type=click.Choice(sorted(IP_TYPES)), default=DEFAULTS.ip_type, show_default=True
)
@click.option(
    "--max-associations",
    default=DEFAULTS.max_associations,
    show_default=True,
    help="0 = no cap; across --workers.",
)
@click.option(
    "--max-associations-per-ae",
    "max_associations_per_calling_ae",
    default=DEFAULTS.max_associations_per_calling_ae,
    show_default=True,
    help="Per calling AE title; 0 = no cap.",
)
@click.option(
    "--max-associations-per-address",
    default=DEFAULTS.max_associations_per_address,
    show_default=True,
    help="Per peer IP address; 0 = no cap.",
)
@click.option(
    "--idle-timeout",
    default=DEFAULTS.idle_timeout,
    show_default=True,
    help="Abort an association whose peer sends no whole PDU for this long (0 = never).",
)
@click.option(
    "--max-pdu-length",
    default=DEFAULTS.max_pdu_length,
    show_default=True,
    type=click.IntRange(0, 1 << 26),
    help="Our Maximum Length Received; a larger incoming PDU aborts (0 = no limit).",
)
@click.option(
    "--max-dataset-size",
    default=DEFAULTS.max_dataset_size,
    show_default=size_text(DEFAULTS.max_dataset_size),
    type=BYTE_SIZE,
    help="Largest dataset stored; a longer one aborts its association (0 = no limit).",
)
@click.option(
    "--max-buffered-dataset-size",
    default=DEFAULTS.max_buffered_dataset_size,
    show_default=size_text(DEFAULTS.max_buffered_dataset_size),
    type=BYTE_SIZE,
    help="Largest dataset held in memory (identifiers, N-service datasets).",
)
@click.option(
    "--max-presentation-contexts",
    default=DEFAULTS.max_presentation_contexts,
    show_default=True,
    type=click.IntRange(1, 128),
    help="Contexts in one association request; more is rejected.",
)
@click.option(
    "--max-operations-performed",
    default=DEFAULTS.max_operations_performed,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Requests of one association served at once (the asynchronous operations window).",
)
@click.option(
    "--artim-timeout",
    default=DEFAULTS.artim_timeout,
    show_default=True,
    help="Seconds a connection has to send its association request.",
)
@click.option(
    "--tls-handshake-timeout",
    default=DEFAULTS.tls_handshake_timeout,
    show_default=True,
    help="Seconds a TLS peer has to finish its handshake.",
)
@click.option(
    "--dimse-timeout",
    default=DEFAULTS.dimse_timeout,
    show_default=True,
    help="Seconds to wait for a peer's response to our request (C-GET/C-MOVE "
    "sub-operations, N-EVENT-REPORT); 0 = never.",
)
@click.option(
    "--write-timeout",
    default=DEFAULTS.write_timeout,
    show_default=True,
    help="Drop a peer that reads nothing we send for this long (0 = never).",
)
@click.option("--backlog", default=DEFAULTS.backlog, show_default=True, help="listen() backlog.")
@click.option("--require-called-aet", is_flag=True, help="Reject requests not addressed to --aet.")
@click.option(
    "--dir",
    "directory",
    default=DEFAULTS.directory,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where received instances are stored.",
)
@click.option(
    "--fsync",
    type=click.Choice(["always", "never"]),
    default=DEFAULTS.fsync,
    show_default=True,
    help="'never' answers Success before the data is durable: faster, not crash-safe.",
)
@click.option(
    "--digest/--no-digest",
    default=DEFAULTS.digest,
    show_default=True,
    help="Index each instance's SHA-256 for 'archive verify'; off saves ~1 ms of CPU per MB.",
)
@click.option(
    "--ignore",
    is_flag=True,
    help="Receive every instance and store nothing (as storescp --ignore), for benchmarks.",
)
@click.option(
    "--no-index",
    is_flag=True,
    help="Store files only: no SQLite index, no C-FIND, C-MOVE or C-GET.",
)
@click.option(
    "--index",
    metavar="URL",
    help="Index into this PostgreSQL database (postgresql://...) instead of DIR/index.sqlite.",
)
@click.option(
    "--duplicates",
    type=click.Choice(["keep", "replace", "reject"]),
    default=DEFAULTS.duplicates,
    show_default=True,
    help="A SOP Instance UID stored already: keep the first (Warning B000), "
    "replace it (Success), or reject the new one (0111).",
)
@click.option(
    "--move-destination",
    "move_destinations",
    multiple=True,
    metavar="AET=HOST:PORT",
    help="A C-MOVE destination (repeatable).",
)
@click.option(
    "--commitment-destination",
    "commitment_destinations",
    multiple=True,
    metavar="AET=HOST:PORT",
    help="Send this requester's storage commitment reports on a new association.",
)
@click.option(
    "--worklist",
    type=click.Path(exists=True, file_okay=False),
    help="Serve Modality Worklist C-FIND from the items in this folder (docs/dimse-n.md).",
)
@click.option(
    "--mpps",
    "mpps_dir",
    type=click.Path(file_okay=False),
    help="Serve MPPS (N-CREATE, N-SET), keeping each step as DICOM JSON here.",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Serve TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Its key.")
@click.option(
    "--tls-ca", type=click.Path(exists=True, dir_okay=False), help="CA to check peers with."
)
@click.option("--require-client-cert", is_flag=True, help="Refuse TLS peers without a certificate.")
@click.option(
    "--workers",
    default=str(DEFAULTS.workers),
    show_default=True,
    type=WORKERS,
    help="Processes serving the port together (SO_REUSEPORT); auto = one per CPU.",
)
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on this port.")
@click.option(
    "--metrics-host", default=DEFAULTS.metrics_host, show_default=True, help="Its address."
)
@click.option(
    "--event-log",
    type=click.Path(dir_okay=False),
    help="Append one JSON line per C-STORE answered to this file.",
)
# -- transfer syntaxes (docs/conformance.md) ----------------------------------------------
@click.option(
    "--accept",
    type=click.Choice(["uncompressed", "lossless", "all"]),
    default="all",
    show_default=True,
    help="Storage transfer syntaxes accepted: native only, native and lossless, or all.",
)
@click.option(
    "--prefer",
    multiple=True,
    metavar="SYNTAX[,SYNTAX]",
    help="Choose these first when proposed (explicit, implicit, rle, jpeg-ls, "
    "j2k-lossless, ... or a UID), as storescp +x*.",
)
@click.option(
    "--store-as",
    metavar="SYNTAX",
    help="Convert each instance to this native or lossless syntax before Success "
    "(e.g. j2k-lossless; needs dicomnet[codecs]).",
)
# -- end of transfer syntaxes ------------------------------------------------------------
@click.option(
    "--shutdown-timeout",
    default=DEFAULTS.shutdown_timeout,
    show_default=True,
    help="Seconds open associations have to finish after SIGTERM before they are aborted.",
)
@edge_options
@site_options
def listen(**options: Any) -> None:
    """Run the archive: storage SCP into --dir, indexed for C-FIND, C-MOVE and C-GET.

    Runs until SIGINT or SIGTERM, then stops accepting, lets open associations
    finish (--shutdown-timeout) and exits. Logs one line per association.
    """
    try:
        for name in ("move_destinations", "commitment_destinations"):
            options[name] = parse_ae_table(options[name], "--" + name[:-1].replace("_", "-"))
        options["forward"] = parse_ae_table(options["forward"], "--forward")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if options.get("workers") == 0:  # auto
        options["workers"] = available_cpus()
    known = {f.name for f in fields(ServiceConfig)}
    options["config_file"] = click.get_current_context().meta.get("dicomnet.config_file")
    config = ServiceConfig(**{k: v for k, v in options.items() if k in known})
    logging.getLogger("dicomnet.associations").setLevel(logging.INFO)
    if config.workers > 1:
        from dicomnet.cli.workers import run_workers

        try:
            run_workers(config, _announce)
        except (OSError, RuntimeError) as exc:
            _fail(f"cannot listen on {config.host}:{config.port}: {exc}")
        return
    try:
        _run(_serve_until_signalled(config))
    except (OSError, ValueError) as exc:
        _fail(f"cannot listen on {config.host}:{config.port}: {exc}")


def _announce(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


async def _serve_until_signalled(config: ServiceConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(listener: Any) -> None:
        for address, bound_port in listener.addresses:
            shown = f"[{address}]" if ":" in address else address
            click.echo(f"listening on {shown}:{bound_port}")
        sys.stdout.flush()

    await serve(config, stop, ready=ready)
