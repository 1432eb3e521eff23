"""``dicomnet archive verify``, ``reindex`` and ``prune``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from dicomnet.cli.common import fail

__all__ = ["archive"]


@click.group()
def archive() -> None:
    """Check, rebuild or prune an archive folder and its index (docs/archive.md)."""


@archive.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def verify(as_json: bool, directory: str) -> None:
    """Check every indexed instance's file (present, size, SHA-256) and find unindexed files.

    Exits 1 when anything is wrong. Safe while a listener serves the folder.
    """
    from rich.console import Console
    from rich.table import Table

    from dicomnet.archive.maintenance import verify as check

    try:
        report = check(directory)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(report), "ok": report.ok}, indent=2))
    else:
        console = Console()
        table = Table(title=f"archive {directory}")
        for column in ("indexed", "files", "missing", "size", "SHA-256", "unreadable", "orphans"):
            table.add_column(column, justify="right")
        table.add_row(
            str(report.checked),
            str(report.files),
            str(len(report.missing)),
            str(len(report.size_mismatch)),
            str(len(report.digest_mismatch)),
            str(len(report.unreadable)),
            str(len(report.orphans)),
        )
        console.print(table)
        for kind, items in (
            ("missing", report.missing),
            ("size", report.size_mismatch),
            ("SHA-256", report.digest_mismatch),
            ("unreadable", report.unreadable),
            ("orphan", report.orphans),
        ):
            for item in items:
                click.echo(f"{kind}: {item}")  # one line each, unwrapped, for grep
        if report.leftovers:
            click.echo(f"{report.leftovers} temporary files in .incoming")
    if not report.ok:
        raise SystemExit(1)


@archive.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def reindex(directory: str) -> None:
    """Rebuild DIRECTORY/index.sqlite from the files. Stop the listener first.

    Exits 1 when a file could not be read (it is skipped, never deleted).
    """
    from dicomnet.archive.maintenance import reindex as rebuild

    try:
        report = rebuild(directory)
    except OSError as exc:
        fail(str(exc))
    click.echo(f"indexed {report.indexed} instances")
    for item in report.unreadable:
        click.echo(f"unreadable: {item}", err=True)
    if report.unreadable:
        raise SystemExit(1)


@archive.command()
@click.option("--max-storage", help="Keep at most this many bytes of datasets (512M, 2T...).")
@click.option("--keep-days", type=float, help="Delete studies last received longer ago.")
@click.option(
    "--study-stable-after",
    type=float,
    default=60.0,
    show_default=True,
    help="A study that received an instance this many seconds ago is still arriving: kept.",
)
@click.option("--index", help="A PostgreSQL index (postgresql://...), not DIR/index.sqlite.")
@click.option("--apply", is_flag=True, help="Delete; without it, only print what would go.")
@click.option("--json", "as_json", is_flag=True, help="Print the studies as JSON lines.")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def prune(
    max_storage: str | None,
    keep_days: float | None,
    study_stable_after: float,
    index: str | None,
    apply: bool,
    as_json: bool,
    directory: str,
) -> None:
    """Delete the oldest studies (by last received instance) past --max-storage or --keep-days.

    A dry run unless --apply: prints each study it would delete. Safe while a
    listener serves the folder; finishes a prune a crash interrupted.
    """
    import asyncio
    import time
    from pathlib import Path

    from dicomnet.archive.index import ArchiveIndex
    from dicomnet.archive.retention import Pruner, RetentionPolicy
    from dicomnet.cli.listen_service import parse_size

    if max_storage is None and keep_days is None:
        raise click.UsageError("give --max-storage, --keep-days or both")
    try:
        limit = parse_size(max_storage) if max_storage is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-storage") from exc
    root = Path(directory).absolute()
    policy = RetentionPolicy(limit, keep_days, study_stable_after)

    async def run() -> Any:
        archive_index = ArchiveIndex(index or root / "index.sqlite")
        try:
            pruner = Pruner(archive_index, policy, root)
            return await (pruner.prune() if apply else pruner.plan())
        finally:
            await archive_index.close()

    try:
        report = asyncio.run(run())
    except OSError as exc:
        fail(str(exc))
    verb = "deleted" if apply else "would delete"
    for study in report.studies:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(study.last_received))
        if as_json:
            click.echo(json.dumps({**dataclasses.asdict(study), "action": verb}))
        else:
            click.echo(
                f"{verb} study {study.study_uid} patient {study.patient_id!r}"
                f" last received {when}: {study.instances} instances, {study.size} bytes"
                f" ({study.reason})"
            )
    summary = (
        f"{verb} {len(report.studies)} studies, {report.instances} instances,"
        f" {report.size} of {report.total_before} bytes"
    )
    kept = []
    if report.kept_arriving:
        kept.append(f"{report.kept_arriving} still arriving")
    if report.kept_protected:
        kept.append(f"{report.kept_protected} with forwards pending")
    if kept:
        summary += "; kept " + ", ".join(kept)
    if not as_json:
        click.echo(summary)
