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


@archive.group()
def queue() -> None:
    """The forwarding queue: list it, retry items, drop items (docs/archive.md)."""


def _queue_call(directory: str, index: str | None, function: Any, *args: Any) -> Any:
    import asyncio
    from pathlib import Path

    from dicomnet.archive.index import ArchiveIndex

    async def run() -> Any:
        archive_index = ArchiveIndex(index or Path(directory).absolute() / "index.sqlite")
        try:
            return await archive_index.run_on_index(function, *args)
        finally:
            await archive_index.close()

    try:
        return asyncio.run(run())
    except OSError as exc:
        fail(str(exc))


_QUEUE_OPTIONS = [
    click.option("--index", help="A PostgreSQL index (postgresql://...), not DIR/index.sqlite."),
    click.option("--destination", help="Only this destination AE title."),
    click.argument("directory", type=click.Path(exists=True, file_okay=False)),
]


def _queue_options(command: Any) -> Any:
    for option in reversed(_QUEUE_OPTIONS):
        command = option(command)
    return command


@queue.command("list")
@click.option("--items", is_flag=True, help="One line per queued instance, not per destination.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@_queue_options
def queue_list(
    items: bool, as_json: bool, index: str | None, destination: str | None, directory: str
) -> None:
    """Per destination: instances waiting, failed for good, and the oldest's age."""
    import time

    from dicomnet.archive.forwarding import queue_items, queue_summary

    if items:
        for row in _queue_call(directory, index, queue_items, destination):
            if as_json:
                click.echo(json.dumps(row))
            else:
                state = "failed" if row["failed"] else "waiting"
                click.echo(
                    f"{row['destination']} {row['sop_instance_uid']} {state}"
                    f" attempts {row['attempts']}"
                    + (f": {row['last_error']}" if row["last_error"] else "")
                )
        return
    summary = _queue_call(directory, index, queue_summary)
    for name, (waiting, failed, oldest) in sorted(summary.items()):
        if destination and name != destination:
            continue
        age = time.time() - oldest if oldest else 0.0
        if as_json:
            click.echo(json.dumps({"destination": name, "waiting": waiting, "failed": failed,
                                   "oldest_seconds": round(age, 3)}))  # fmt: skip
        else:
            click.echo(f"{name}: {waiting} waiting, {failed} failed, oldest {age:.0f} s")
    if not summary and not as_json:
        click.echo("the forwarding queue is empty")


@queue.command("retry")
@click.option("--uid", "uids", multiple=True, help="Only this SOP Instance UID (repeatable).")
@_queue_options
def queue_retry(
    uids: tuple[str, ...], index: str | None, destination: str | None, directory: str
) -> None:
    """Try the items again now, failed ones included (a running forwarder picks them up)."""
    from dicomnet.archive.forwarding import retry_items

    count = _queue_call(directory, index, retry_items, destination, list(uids))
    click.echo(f"{count} items to be tried again")


@queue.command("drop")
@click.option("--uid", "uids", multiple=True, help="Only this SOP Instance UID (repeatable).")
@click.option("--failed", "failed_only", is_flag=True, help="Only items failed for good.")
@click.option("--all", "everything", is_flag=True, help="Every item (of --destination, if given).")
@_queue_options
def queue_drop(
    uids: tuple[str, ...],
    failed_only: bool,
    everything: bool,
    index: str | None,
    destination: str | None,
    directory: str,
) -> None:
    """Remove items from the queue: they will not be forwarded."""
    from dicomnet.archive.forwarding import drop_items

    if not (uids or failed_only or everything):
        raise click.UsageError("say what to drop: --uid, --failed or --all")
    count = _queue_call(directory, index, drop_items, destination, list(uids), failed_only)
    click.echo(f"{count} items dropped")
