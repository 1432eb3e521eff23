"""``dicomnet commit``: ask a peer for storage commitment of Part 10 files.

The report comes back on the requesting association (``--same-association``,
the default: the association stays open until it arrives) or on a new
association the peer opens to us (``--new-association --port N``: we listen
on N with our AE title, accepting the Storage Commitment Push Model SOP
class with the SCP role for the peer, PS3.4 J.3.3 and PS3.7 D.3.3.4; the
peer must know our AE title's host and port).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from dicomnet.cli.tls_options import client_ssl, tls_client_options
from dicomnet.dataset.part10 import Part10Error, read_file_meta
from dicomnet.errors import DicomNetError

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
    "--same-association/--new-association",
    "same_association",
    default=True,
    show_default=True,
    help="Where the peer sends its report: on this association, or on a new one to --port.",
)
@click.option(
    "--port",
    "report_port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen here for a report sent on a new association (the peer must know us); "
    "required with --new-association.",
)
@click.option(
    "--report-host",
    default="*",
    show_default=True,
    help="Address the --port listener binds ('*' every interface).",
)
@tls_client_options
@click.argument("host")
@click.argument("port", type=int)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def commit(
    aet: str,
    aec: str,
    timeout: float,
    same_association: bool,
    report_port: int | None,
    report_host: str,
    host: str,
    port: int,
    paths: tuple[str, ...],
    **tls: Any,
) -> None:
    """Ask for storage commitment of PATHS; print which are committed, which failed."""
    from dicomnet.cli.common import run as _run
    from dicomnet.core.uids import STORAGE_COMMITMENT_PUSH, UNCOMPRESSED_TRANSFER_SYNTAXES
    from dicomnet.net import client
    from dicomnet.net.listener import Listener
    from dicomnet.services.commitment import (
        CommitmentWaiter,
        commitment_contexts,
        request_commitment,
    )

    if not same_association and report_port is None:
        raise click.UsageError("--new-association needs --port, where the report is received")
    references = _references(paths)
    context = client_ssl(tls)

    async def run() -> Any:
        waiter = CommitmentWaiter()
        listener = None
        if report_port is not None:
            listener = Listener(aet)
            waiter.serve_on(listener)
            await listener.listen(report_host, report_port)
        try:
            if same_association:
                contexts, roles = commitment_contexts()
            else:
                contexts, roles = [(STORAGE_COMMITMENT_PUSH, UNCOMPRESSED_TRANSFER_SYNTAXES)], []
            async with client.connect(
                host,
                port,
                called_ae_title=aec,
                calling_ae_title=aet,
                contexts=contexts,
                roles=roles,
                ssl=context,
            ) as association:
                if same_association:
                    waiter.attach_to(association)
                return await request_commitment(association, references, waiter, timeout=timeout)
        finally:
            if listener is not None:
                await listener.close()

    try:
        result = _run(run())
    except (DicomNetError, TimeoutError) as exc:
        reason = str(exc) or "no report in time"
        click.echo(f"dicomnet: storage commitment failed: {reason}", err=True)
        sys.exit(1)
    if not _print(result, list(zip(paths, references, strict=True))):
        sys.exit(1)


def _print(result: Any, files: list[tuple[str, tuple[str, str]]]) -> bool:
    """The table of verdicts, one row per file; True when every file is committed.

    An instance the report names neither committed nor failed counts as failed.
    """
    from rich.console import Console
    from rich.table import Table

    committed = set(result.committed)
    reasons = {(sop_class, uid): reason for sop_class, uid, reason in result.failed}
    table = Table(title=f"Storage commitment {result.transaction_uid}")
    for column in ("file", "SOP Instance UID", "result"):
        table.add_column(column, overflow="fold")
    everything = True
    for path, reference in files:
        if reference in committed:
            verdict = "committed"
        elif reference in reasons:
            verdict = f"failed 0x{reasons[reference]:04X}"
            everything = False
        else:
            verdict = "failed: not in the report"
            everything = False
        table.add_row(Path(path).name, reference[1], verdict)
    Console(width=160).print(table)
    return everything
