"""The ``dicomnet`` command line.

Each command exits 0 on success and non-zero with one line on standard error
saying why otherwise (refused, rejected with its reason, timed out).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import click

from dicomnet import __version__, client, codec
from dicomnet.association import RequestTimeouts
from dicomnet.cli_tls import client_ssl, tls_client_options
from dicomnet.client import AssociationTimeouts
from dicomnet.errors import DicomNetError
from dicomnet.server import IPType, Listener, ListenerLimits

__all__ = ["main"]

IP_TYPES = {"ipv4": IPType.IPV4, "ipv6": IPType.IPV6, "both": IPType.IPV4_OR_IPV6}


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when it is installed (``dicomnet[speed]``), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"dicomnet: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(__version__, prog_name="dicomnet")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """DICOM networking: echo, listen, store, find, move, get, commit."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
def info() -> None:
    """Print the version and the codec in use (cython or python)."""
    click.echo(f"dicomnet {__version__}, codec {codec.IMPLEMENTATION}")


@main.command()
@click.option("--aet", default="DICOMNET", show_default=True, help="Our (calling) AE title.")
@click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's (called) AE title.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds for each step.")
@click.option("--repeat", default=1, show_default=True, help="C-ECHO requests to send.")
@tls_client_options
@click.argument("host")
@click.argument("port", type=int)
def echo(aet: str, aec: str, timeout: float, repeat: int, host: str, port: int, **tls: Any) -> None:
    """Verify a peer with C-ECHO."""
    context = client_ssl(tls)

    async def run() -> int:
        async with client.connect(
            host,
            port,
            called_ae_title=aec,
            calling_ae_title=aet,
            ssl=context,
            timeouts=RequestTimeouts(timeout, timeout, timeout, None),
            association_timeouts=AssociationTimeouts(timeout, timeout, timeout),
        ) as assoc:
            status = 0
            for _ in range(repeat):
                status = (await assoc.echo()).status
                if status != 0:
                    break
            return int(status)

    try:
        status = _run(run())
    except DicomNetError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot reach {host}:{port}: {exc}")
    if status != 0:
        _fail(f"C-ECHO answered status 0x{status:04X}")
    click.echo(f"C-ECHO to {aec} at {host}:{port}: success")


@main.command()
@click.option("--aet", default="DICOMNET", show_default=True, help="Our AE title.")
@click.option(
    "--host",
    default="*",
    show_default=True,
    help='"*" every interface, "" this machine\'s address.',
)
@click.option("--port", default=11112, show_default=True, help="0 takes the first free port.")
@click.option("--ip-type", type=click.Choice(sorted(IP_TYPES)), default="ipv4", show_default=True)
@click.option("--max-associations", default=64, show_default=True, help="0 = no cap.")
@click.option("--backlog", default=128, show_default=True, help="listen() backlog.")
@click.option("--require-called-aet", is_flag=True, help="Reject requests not addressed to --aet.")
@click.option(
    "--dir",
    "directory",
    default="dicomnet-archive",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where received instances are stored.",
)
@click.option(
    "--fsync",
    type=click.Choice(["always", "never"]),
    default="always",
    show_default=True,
    help="'never' answers Success before the data is durable: faster, not crash-safe.",
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
    "--duplicates",
    type=click.Choice(["keep", "replace", "reject"]),
    default="keep",
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
def listen(
    aet: str,
    host: str,
    port: int,
    ip_type: str,
    max_associations: int,
    backlog: int,
    require_called_aet: bool,
    directory: str,
    fsync: str,
    ignore: bool,
    no_index: bool,
    duplicates: str,
    move_destinations: tuple[str, ...],
    commitment_destinations: tuple[str, ...],
    worklist: str | None,
    mpps_dir: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    require_client_cert: bool,
) -> None:
    """Run the archive: storage SCP into --dir, indexed for C-FIND, C-MOVE and C-GET.

    Runs until SIGINT or SIGTERM.
    """
    from dicomnet.archive import Archive
    from dicomnet.discard import DiscardStorage
    from dicomnet.retrieve import MoveDestination
    from dicomnet.storage import FolderStorage

    destinations = _ae_table(move_destinations, "--move-destination", MoveDestination)
    reports_to = _ae_table(commitment_destinations, "--commitment-destination", MoveDestination)
    context = None
    if tls_cert:
        from dicomnet.tls import server_context

        try:
            context = server_context(
                tls_cert,
                tls_key or tls_cert,
                ca=tls_ca,
                require_client_certificate=require_client_cert,
            )
        except (OSError, ValueError) as exc:
            _fail(f"TLS: {exc}", 2)

    async def run() -> None:
        listener = Listener(
            aet,
            require_called_ae_title=require_called_aet,
            limits=ListenerLimits(max_associations=max_associations),
            accept_any_storage=True,
        )
        archive = None
        if ignore:
            DiscardStorage().attach(listener)
        elif no_index:
            FolderStorage(
                directory, fsync=fsync == "always", layout="study", duplicates=duplicates
            ).attach(listener)
        else:
            archive = Archive(directory, fsync=fsync == "always", duplicates=duplicates)
            archive.attach(listener, commitment_destinations=reports_to)
            listener.move_destinations.update(destinations)
        if worklist:
            from dicomnet.worklist import WorklistProvider

            WorklistProvider(worklist).attach(listener)
        if mpps_dir:
            from dicomnet.mpps import MPPSProvider

            MPPSProvider(mpps_dir).attach(listener)
        await listener.listen(host, port, backlog, IP_TYPES[ip_type], ssl=context)
        for address, bound_port in listener.addresses:
            shown = f"[{address}]" if ":" in address else address
            click.echo(f"listening on {shown}:{bound_port}", nl=True)
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await listener.close()
        if archive is not None:
            await archive.close()

    try:
        _run(run())
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc}")


def _ae_table(entries: tuple[str, ...], flag: str, make: Any) -> dict[str, Any]:
    """``AET=HOST:PORT`` options as a table of AE titles."""
    table = {}
    for entry in entries:
        name, _, address = entry.partition("=")
        host, _, port_text = address.rpartition(":")
        if not (name and host and port_text.isdigit()):
            _fail(f"{flag} {entry!r}: expected AET=HOST:PORT", 2)
        table[name.strip()] = make(host.strip("[]"), int(port_text))
    return table


@main.command()
@click.option("--aet", default="DICOMNET", show_default=True, help="Our (calling) AE title.")
@click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's (called) AE title.")
@click.option("-r", "--recursive", is_flag=True, help="Send every file below the given folders.")
@click.option(
    "--associations", default=1, show_default=True, help="Associations sharing the files."
)
@click.option(
    "--window", default=16, show_default=True, help="C-STOREs outstanding per association."
)
@click.option("--max-pdu", default=0, help="Our Maximum Length Received (0: dicomnet's default).")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds for each step.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@tls_client_options
@click.argument("host")
@click.argument("port", type=int)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def store(
    aet: str,
    aec: str,
    recursive: bool,
    associations: int,
    window: int,
    max_pdu: int,
    timeout: float,
    quiet: bool,
    host: str,
    port: int,
    paths: tuple[str, ...],
    **tls: Any,
) -> None:
    """Send Part 10 files with C-STORE; exit non-zero if any instance failed."""
    context = client_ssl(tls)
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from dicomnet.bulk_store import collect_files, store_files

    console = Console(stderr=True)
    jobs, unreadable = collect_files(paths, recursive=recursive)
    total_bytes = sum(job.size for job in jobs)
    progress = Progress(
        TextColumn("[bold]C-STORE"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    start = time.perf_counter()
    sent = 0

    async def run() -> object:
        task = progress.add_task("store", total=len(jobs), rate="")

        def advance(job: object, status: int | None, error: str | None) -> None:
            nonlocal sent
            sent += getattr(job, "size", 0)
            elapsed = max(time.perf_counter() - start, 1e-9)
            progress.update(task, advance=1, rate=f"{sent / elapsed / 1e6:.1f} MB/s")

        return await store_files(
            host,
            port,
            jobs,
            associations=associations,
            window=window,
            max_pdu_length=max_pdu,
            progress=advance,
            called_ae_title=aec,
            calling_ae_title=aet,
            timeouts=RequestTimeouts(timeout, timeout, timeout, None),
            association_timeouts=AssociationTimeouts(timeout, timeout, timeout),
            ssl=context,
        )

    with progress:
        outcome = _run(run()) if jobs else None
    elapsed = time.perf_counter() - start
    failed = list(unreadable) + (list(outcome.failed) if outcome is not None else [])
    succeeded = len(outcome.succeeded) if outcome is not None else 0
    table = Table(title=f"C-STORE to {aec} at {host}:{port}")
    for column in ("instances", "failed", "MB", "seconds", "instances/s", "MB/s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(succeeded),
        str(len(failed)),
        f"{total_bytes / 1e6:.1f}",
        f"{elapsed:.2f}",
        f"{succeeded / elapsed:.0f}" if elapsed else "-",
        f"{total_bytes / 1e6 / elapsed:.1f}" if elapsed else "-",
    )
    console.print(table)
    for path, reason in failed[:20]:
        console.print(f"failed: {path}: {reason}")
    if failed:
        _fail(f"{len(failed)} of {len(jobs) + len(unreadable)} instances failed")


def _add_query_commands() -> None:
    from dicomnet.cli_commit import commit
    from dicomnet.cli_query import find, get, move

    for command in (find, move, get, commit):
        main.add_command(command)


_add_query_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
