"""``dicomnet commit``: ask a peer for storage commitment of Part 10 files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from dicomnet.cli_tls import client_ssl, tls_client_options
from dicomnet.errors import DicomNetError
from dicomnet.part10 import Part10Error, read_file_meta

__all__ = ["commit"]


def _references(paths: tuple[str, ...]) -> list[tuple[str, str]]:
    references = []
    for path in paths:
        try:
            with open(path, "rb") as stream:
                meta = read_file_meta(stream)
        except (OSError, Part10Error) as exc:
            raise click.BadParameter(f"{path}: {exc}") from None
        references.append((meta.sop_class_uid, meta.sop_instance_uid))
    return references


@click.command()
@click.option("--aet", default="DICOMNET", show_default=True, help="Our AE title.")
@click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's AE title.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the report.")
@click.option(
    "--port",
    "report_port",
    type=int,
    default=None,
    help="Also listen here for a report sent on a new association (the peer must know us).",
)
@tls_client_options
@click.argument("host")
@click.argument("port", type=int)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def commit(
    aet: str,
    aec: str,
    timeout: float,
    report_port: int | None,
    host: str,
    port: int,
    paths: tuple[str, ...],
    **tls: Any,
) -> None:
    """Ask for storage commitment of PATHS; print which are committed, which failed."""
    from dicomnet import client
    from dicomnet.cli import _run
    from dicomnet.commitment import CommitmentWaiter, commitment_contexts, request_commitment
    from dicomnet.server import Listener

    references = _references(paths)
    context = client_ssl(tls)

    async def run() -> Any:
        waiter = CommitmentWaiter()
        listener = None
        if report_port is not None:
            listener = Listener(aet)
            waiter.serve_on(listener)
            await listener.listen("*", report_port)
        try:
            contexts, roles = commitment_contexts()
            async with client.connect(
                host,
                port,
                called_ae_title=aec,
                calling_ae_title=aet,
                contexts=contexts,
                roles=roles,
                ssl=context,
            ) as association:
                waiter.attach_to(association)
                return await request_commitment(association, references, waiter, timeout=timeout)
        finally:
            if listener is not None:
                await listener.close()

    try:
        result = _run(run())
    except (DicomNetError, TimeoutError) as exc:
        click.echo(f"dicomnet: storage commitment failed: {exc or 'no report in time'}", err=True)
        sys.exit(1)
    _print(result, dict(zip((uid for _, uid in references), paths, strict=True)))
    if result.failed:
        sys.exit(1)


def _print(result: Any, paths: dict[str, str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Storage commitment {result.transaction_uid}")
    for column in ("file", "SOP Instance UID", "result"):
        table.add_column(column, overflow="fold")
    for _, uid in result.committed:
        table.add_row(Path(paths.get(uid, "")).name, uid, "committed")
    for _, uid, reason in result.failed:
        table.add_row(Path(paths.get(uid, "")).name, uid, f"failed 0x{reason:04X}")
    Console().print(table)
