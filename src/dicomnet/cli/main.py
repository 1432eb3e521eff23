"""The ``dicomnet`` command line.

Each command exits 0 on success and non-zero with one line on standard error
saying why otherwise (refused, rejected with its reason, timed out).
"""

from __future__ import annotations

import logging
from typing import Any

import click

from dicomnet import __version__
from dicomnet.cli.common import fail, run
from dicomnet.cli.network import connection_kwargs, network_options, proposed
from dicomnet.cli.tls_options import client_ssl, tls_client_options
from dicomnet.core import codec
from dicomnet.core.uids import VERIFICATION_SOP_CLASS
from dicomnet.errors import DicomNetError
from dicomnet.net import client

__all__ = ["main"]


_run = run
_fail = fail


@click.group()
@click.version_option(__version__, prog_name="dicomnet")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option(
    "-d",
    "--debug",
    is_flag=True,
    help="Log every PDU and DIMSE message in summary, as DCMTK's -d does.",
)
def main(verbose: int, debug: bool) -> None:
    """DICOM networking: echo, listen, store, find, move, get, commit."""
    level = logging.DEBUG if debug else logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
def info() -> None:
    """Print the version and the codec in use (cython or python)."""
    click.echo(f"dicomnet {__version__}, codec {codec.IMPLEMENTATION}")


@main.command()
@click.option("--aet", default="DICOMNET", show_default=True, help="Our (calling) AE title.")
@click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's (called) AE title.")
@click.option("--repeat", default=1, show_default=True, help="C-ECHO requests to send.")
@network_options
@tls_client_options
@click.argument("host")
@click.argument("port", type=int)
def echo(aet: str, aec: str, repeat: int, host: str, port: int, **options: Any) -> None:
    """Verify a peer with C-ECHO."""
    network = connection_kwargs(options, default_dimse=30.0)
    syntaxes = network.pop("propose")
    context = client_ssl(options)

    async def run() -> int:
        async with client.connect(
            host,
            port,
            called_ae_title=aec,
            calling_ae_title=aet,
            ssl=context,
            contexts=[(VERIFICATION_SOP_CLASS, proposed(syntaxes))] if syntaxes else None,
            **network,
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
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--retries",
    default=3,
    show_default=True,
    help="New associations per worker after one fails; unacknowledged files go again.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write one JSON line per file (path, UIDs, status, outcome, error).",
)
@network_options
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
    quiet: bool,
    retries: int,
    report_path: str | None,
    host: str,
    port: int,
    paths: tuple[str, ...],
    **options: Any,
) -> None:
    """Send Part 10 files with C-STORE; exit non-zero if any instance failed.

    Files that are not DICOM, and DICOMDIR files, are skipped with a warning.
    """
    network = connection_kwargs(options)
    syntaxes = network.pop("propose")
    context = client_ssl(options)
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from dicomnet.cli.store_support import Report, contexts_for, split_skipped
    from dicomnet.net.bulk_store import collect_files, store_files

    console = Console(stderr=True)
    jobs, unreadable = collect_files(paths, recursive=recursive)
    jobs, unreadable, skipped = split_skipped(jobs, unreadable)
    report = Report(report_path)
    for path, reason in skipped:
        console.print(f"[yellow]warning[/]: skipped {path}: {reason}")
        report.write(path, outcome="skipped", error=reason)
    for path, reason in unreadable:
        report.write(path, outcome="failure", error=reason)
    if syntaxes:
        network["contexts"] = contexts_for(jobs, syntaxes)
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
            report.job(job, status, error)

        return await store_files(
            host,
            port,
            jobs,
            associations=associations,
            window=window,
            max_pdu_length=max_pdu,
            retries=retries,
            progress=advance,
            called_ae_title=aec,
            calling_ae_title=aet,
            ssl=context,
            **network,
        )

    try:
        with progress:
            outcome = _run(run()) if jobs else None
    finally:
        report.close()
    elapsed = time.perf_counter() - start
    failed = list(unreadable) + (list(outcome.failed) if outcome is not None else [])
    succeeded = len(outcome.succeeded) if outcome is not None else 0
    table = Table(title=f"C-STORE to {aec} at {host}:{port}")
    for column in ("instances", "failed", "skipped", "MB", "seconds", "instances/s", "MB/s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(succeeded),
        str(len(failed)),
        str(len(skipped)),
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
    from dicomnet.cli.commit import commit
    from dicomnet.cli.listen import listen
    from dicomnet.cli.maintenance import archive
    from dicomnet.cli.query import find, get, move

    for command in (listen, archive, find, move, get, commit):
        main.add_command(command)


_add_query_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
