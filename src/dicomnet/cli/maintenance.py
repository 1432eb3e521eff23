"""``dicomnet archive verify`` and ``dicomnet archive reindex``."""

from __future__ import annotations

import dataclasses
import json

import click

from dicomnet.cli.common import fail

__all__ = ["archive"]


@click.group()
def archive() -> None:
    """Check or rebuild an archive folder's index (docs/archive.md)."""


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
