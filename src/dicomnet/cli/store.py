"""``dicomnet store``: send Part 10 files with C-STORE, as DCMTK's storescu.

The per-instance work of the command is kept to what was asked for: with
``--quiet`` no progress bar is drawn (nor rich imported: the summary is one
plain line), and without ``--report`` nothing is written per file; the files'
meta groups are read once, here, and the jobs carry them to the sender.
"""

from __future__ import annotations

import time
from typing import Any

import click

from dicomnet.cli.common import fail, run
from dicomnet.cli.network import connection_kwargs, network_options
from dicomnet.cli.tls_options import client_ssl, tls_client_options

__all__ = ["store"]


@click.command()
@click.option("--aet", default="DICOMNET", show_default=True, help="Our (calling) AE title.")
@click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's (called) AE title.")
@click.option("-r", "--recursive", is_flag=True, help="Send every file below the given folders.")
@click.option(
    "--associations", default=1, show_default=True, help="Associations sharing the files."
)
@click.option(
    "--window", default=64, show_default=True, help="C-STOREs outstanding per association."
)
@click.option("--max-pdu", default=0, help="Our Maximum Length Received (0: dicomnet's default).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--allow-lossy",
    is_flag=True,
    help="Compress lossily (JPEG 2000, JPEG-LS near-lossless) when the peer accepts only that.",
)
@click.option(
    "--conversion-processes",
    default=0,
    show_default=True,
    help="Processes converting files the peer refuses in their own syntax (0: one thread).",
)
@click.option(
    "--retries",
    default=3,
    show_default=True,
    help=(
        "Attempts in a row without an answered file before a worker gives up; "
        "unacknowledged files go again on a new association, after a growing wait."
    ),
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
    allow_lossy: bool,
    conversion_processes: int,
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

    from dicomnet.cli.store_support import Report, contexts_for, split_skipped
    from dicomnet.net.bulk_store import collect_files, store_files

    jobs, unreadable = collect_files(paths, recursive=recursive)
    jobs, unreadable, skipped = split_skipped(jobs, unreadable)
    report = Report(report_path)
    for path, reason in skipped:
        click.echo(f"warning: skipped {path}: {reason}", err=True)
        report.write(path, outcome="skipped", error=reason)
    for path, reason in unreadable:
        report.write(path, outcome="failure", error=reason)
    if syntaxes:
        network["contexts"] = contexts_for(jobs, syntaxes)
    total_bytes = sum(job.size for job in jobs)
    bar = None if quiet else _Bar(len(jobs))
    start = time.perf_counter()

    progress: Any = None
    if bar is not None:

        def progress(job: Any, status: int | None, error: str | None) -> None:
            bar.advance(job.size)
            report.job(job, status, error)

    elif report.active:
        progress = report.job

    results: list[Any] = []

    async def send() -> None:
        # kept out of the task's result: asyncio.run on 3.11 may repr the task,
        # and with it every job of the outcome
        results.append(
            await store_files(
                host,
                port,
                jobs,
                associations=associations,
                window=window,
                max_pdu_length=max_pdu,
                retries=retries,
                progress=progress,
                allow_lossy=allow_lossy,
                conversion_processes=conversion_processes,
                called_ae_title=aec,
                calling_ae_title=aet,
                ssl=context,
                **network,
            )
        )

    try:
        if bar is not None:
            with bar:
                if jobs:
                    run(send())
        elif jobs:
            run(send())
    finally:
        report.close()
    outcome = results[0] if results else None
    elapsed = time.perf_counter() - start
    failed = list(unreadable) + (list(outcome.failed) if outcome is not None else [])
    succeeded = len(outcome.succeeded) if outcome is not None else 0
    row = (
        str(succeeded),
        str(len(failed)),
        str(len(skipped)),
        f"{total_bytes / 1e6:.1f}",
        f"{elapsed:.2f}",
        f"{succeeded / elapsed:.0f}" if elapsed else "-",
        f"{total_bytes / 1e6 / elapsed:.1f}" if elapsed else "-",
    )
    title = f"C-STORE to {aec} at {host}:{port}"
    if quiet:  # one plain line: no rich import for a table nobody watches draw
        click.echo(
            f"{title}: "
            + ", ".join(f"{value} {name}" for name, value in zip(_COLUMNS, row, strict=True)),
            err=True,
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for column in _COLUMNS:
            table.add_column(column, justify="right")
        table.add_row(*row)
        Console(stderr=True).print(table)
    for path, reason in failed[:20]:
        click.echo(f"failed: {path}: {reason}", err=True)
    if failed:
        fail(f"{len(failed)} of {len(jobs) + len(unreadable)} instances failed")


_COLUMNS = ("instances", "failed", "skipped", "MB", "seconds", "instances/s", "MB/s")


class _Bar:
    """The rich progress bar of a run that is watched (no ``--quiet``)."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]C-STORE"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("store", total=total, rate="")
        self._start = time.perf_counter()
        self._sent = 0

    def advance(self, size: int) -> None:
        self._sent += size
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._progress.update(self._task, advance=1, rate=f"{self._sent / elapsed / 1e6:.1f} MB/s")

    def __enter__(self) -> _Bar:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)
