"""The ``find``, ``move`` and ``get`` commands of the ``dicomnet`` command line.

Keys are given as findscu's are: ``-k PatientName=DOE*`` matches, ``-k
PatientID`` (no value) asks for the attribute back; a tag may also be written
``0010,0020``. Each query level gets a few return keys by default (the ones a
person reading the result wants to see), unless the same key is given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import click

from dicomnet.cli.common import fail, run
from dicomnet.cli.tls_options import client_ssl, tls_client_options
from dicomnet.core.status import StatusClass, status_class
from dicomnet.core.uids import MODALITY_WORKLIST_FIND, QR_MODELS, UNCOMPRESSED_TRANSFER_SYNTAXES
from dicomnet.errors import DicomNetError
from dicomnet.net import client
from dicomnet.net.client import AssociationTimeouts
from dicomnet.net.requests import RequestTimeouts

__all__ = ["DEFAULT_RETURN_KEYS", "build_identifier", "find", "get", "move"]

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
MODELS = (*QR_MODELS, "worklist")

DEFAULT_RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "STUDY": (
        "PatientName",
        "PatientID",
        "StudyDate",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "StudyInstanceUID",
    ),
    "SERIES": (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
    ),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber"),
}
"""Return keys asked for at each level unless the user gives the same key."""


def _tag_of(name: str) -> Any:
    from pydicom.datadict import tag_for_keyword
    from pydicom.tag import Tag

    name = name.strip()
    if "," in name:
        group, element = name.strip("()").split(",", 1)
        return Tag(int(group, 16), int(element, 16))
    tag = tag_for_keyword(name)
    if tag is None:
        raise click.BadParameter(f"{name!r} is not a DICOM keyword or a (gggg,eeee) tag")
    return Tag(tag)


def build_identifier(keys: Iterable[str], level: str | None, defaults: bool = True) -> Any:
    """The query identifier from ``-k`` options, with the level's default return keys."""
    from pydicom.datadict import dictionary_VR
    from pydicom.dataset import Dataset

    identifier = Dataset()
    if level is not None:
        identifier.QueryRetrieveLevel = level
        if defaults:
            for keyword in DEFAULT_RETURN_KEYS[level]:
                setattr(identifier, keyword, "")
    for key in keys:
        name, _, value = key.partition("=")
        tag = _tag_of(name)
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            raise click.BadParameter(f"{name!r} is not in the DICOM dictionary") from None
        if vr == "SQ":
            raise click.BadParameter(f"{name!r} is a sequence; give its items' keys instead")
        identifier.add_new(tag, vr, value)
    return identifier


def _model(model: str, service: int) -> str:
    if model == "worklist":
        if service != 0:
            raise click.BadParameter("the worklist model supports C-FIND only")
        return MODALITY_WORKLIST_FIND
    return QR_MODELS[model][service]


def _timeouts(timeout: float, tls: dict[str, Any]) -> dict[str, Any]:
    """Connection options shared by the commands: timeouts and TLS."""
    return {
        "timeouts": RequestTimeouts(timeout, timeout, timeout, None),
        "association_timeouts": AssociationTimeouts(timeout, timeout, timeout),
        "ssl": client_ssl(tls),
    }


_run = run
_fail = fail


def _final_ok(status: int) -> bool:
    return status_class(status) in (StatusClass.SUCCESS, StatusClass.WARNING)


def _common(function: Any) -> Any:
    options = [
        click.option("--aet", default="DICOMNET", show_default=True, help="Our AE title."),
        click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's AE title."),
        click.option(
            "-k", "--key", "keys", multiple=True, help="Tag=Value to match, or Tag to return."
        ),
        click.option(
            "--level",
            type=click.Choice(LEVELS, case_sensitive=False),
            default="STUDY",
            show_default=True,
            help="Query/Retrieve Level.",
        ),
        click.option("--timeout", default=60.0, show_default=True, help="Seconds for each step."),
    ]
    for option in reversed(options):
        function = option(function)
    return tls_client_options(function)


@click.command()
@_common
@click.option(
    "--model", type=click.Choice(MODELS), default="study", show_default=True, help="Root."
)
@click.option("--json", "as_json", is_flag=True, help="Print the matches as DICOM JSON.")
@click.option("--no-defaults", is_flag=True, help="Ask only for the keys given with -k.")
@click.argument("host")
@click.argument("port", type=int)
def find(
    aet: str,
    aec: str,
    keys: tuple[str, ...],
    level: str,
    timeout: float,
    model: str,
    as_json: bool,
    no_defaults: bool,
    host: str,
    port: int,
    **tls: Any,
) -> None:
    """Query a peer with C-FIND and print the matches as a table (or JSON)."""
    options = _timeouts(timeout, tls)
    sop_class = _model(model, 0)
    identifier = build_identifier(
        keys, None if model == "worklist" else level.upper(), not no_defaults
    )

    async def run() -> tuple[list[Any], int]:
        matches = []
        async with client.connect(
            host,
            port,
            called_ae_title=aec,
            calling_ae_title=aet,
            contexts=[(sop_class, UNCOMPRESSED_TRANSFER_SYNTAXES)],
            **options,
        ) as assoc:
            status = 0
            async for response in assoc.find(identifier, sop_class):
                status = response.status
                if response.pending and response.identifier is not None:
                    matches.append(response.identifier)
        return matches, status

    try:
        matches, status = _run(run())
    except DicomNetError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps([m.to_json_dict() for m in matches], indent=1))
    else:
        _print_table(matches, f"C-FIND {level.upper()} at {aec} ({len(matches)} matches)")
    if not _final_ok(status):
        _fail(f"C-FIND ended with status 0x{status:04X}")


def _print_table(matches: list[Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    columns: list[Any] = []
    for match in matches:
        for element in match:
            if element.tag not in columns and element.tag != 0x00080052 and element.VR != "SQ":
                columns.append(element.tag)
    from pydicom.datadict import keyword_for_tag

    table = Table(title=title)
    for tag in columns:
        table.add_column(keyword_for_tag(tag) or str(tag), overflow="fold")
    for match in matches:
        table.add_row(*(str(match[tag].value) if tag in match else "" for tag in columns))
    Console().print(table)


class _Progress:
    """A rich progress bar fed by C-MOVE/C-GET pending responses."""

    def __init__(self, title: str, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(
            TextColumn(f"[bold]{title}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=Console(stderr=True),
            disable=quiet,
        )
        self.task = self.bar.add_task(title, total=None, detail="")

    def update(self, message: Any) -> None:
        completed = message.number_of_completed_suboperations or 0
        failed = message.number_of_failed_suboperations or 0
        warning = message.number_of_warning_suboperations or 0
        remaining = message.number_of_remaining_suboperations
        done = completed + failed + warning
        total = done + remaining if remaining is not None else None
        self.bar.update(
            self.task,
            completed=done,
            total=total or done or None,
            detail=f"failed {failed}, warning {warning}",
        )


def _report(kind: str, final: Any, elapsed: float) -> None:
    message = final.message
    completed = message.number_of_completed_suboperations or 0
    failed = message.number_of_failed_suboperations or 0
    warning = message.number_of_warning_suboperations or 0
    click.echo(
        f"{kind}: status 0x{final.status:04X}, {completed} completed, {failed} failed, "
        f"{warning} warning in {elapsed:.2f} s",
        err=True,
    )
    if final.identifier is not None and "FailedSOPInstanceUIDList" in final.identifier:
        value = final.identifier.FailedSOPInstanceUIDList
        for uid in [value] if isinstance(value, str) else list(value):
            click.echo(f"failed: {uid}", err=True)
    if final.status != 0 or failed:
        _fail(f"{kind} did not complete every sub-operation")


@click.command()
@_common
@click.option("--model", type=click.Choice(sorted(QR_MODELS)), default="study", show_default=True)
@click.option("--dest", required=True, help="The Move Destination AE title.")
@click.option(
    "--store-port",
    type=int,
    default=None,
    help="Also receive the instances here (as --dest), into --out.",
)
@click.option(
    "--out", type=click.Path(file_okay=False), default="dicomnet-moved", show_default=True
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.argument("host")
@click.argument("port", type=int)
def move(
    aet: str,
    aec: str,
    keys: tuple[str, ...],
    level: str,
    timeout: float,
    model: str,
    dest: str,
    store_port: int | None,
    out: str,
    quiet: bool,
    host: str,
    port: int,
    **tls: Any,
) -> None:
    """Ask a peer to send matching instances to --dest with C-MOVE."""
    options = _timeouts(timeout, tls)
    sop_class = _model(model, 1)
    identifier = build_identifier(keys, level.upper(), defaults=False)
    progress = _Progress("C-MOVE", quiet)
    start = time.perf_counter()

    async def run() -> Any:
        from dicomnet.net.listener import Listener
        from dicomnet.services.storage import FolderStorage

        receiver = None
        if store_port is not None:
            receiver = Listener(dest, accept_any_storage=True)
            FolderStorage(out).attach(receiver)
            await receiver.listen("*", store_port)
        try:
            async with client.connect(
                host,
                port,
                called_ae_title=aec,
                calling_ae_title=aet,
                contexts=[(sop_class, UNCOMPRESSED_TRANSFER_SYNTAXES)],
                **options,
            ) as assoc:
                final = None
                async for response in assoc.move(identifier, sop_class, dest):
                    progress.update(response.message)
                    final = response
                return final
        finally:
            if receiver is not None:
                await receiver.close()

    try:
        with progress.bar:
            final = _run(run())
    except DicomNetError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot listen on port {store_port}: {exc}")
    _report("C-MOVE", final, time.perf_counter() - start)


@click.command()
@_common
@click.option("--model", type=click.Choice(sorted(QR_MODELS)), default="study", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="dicomnet-get", show_default=True)
@click.option(
    "--fsync",
    type=click.Choice(["always", "never"]),
    default="always",
    show_default=True,
    help="'never' acknowledges each instance before it is durable.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.argument("host")
@click.argument("port", type=int)
def get(
    aet: str,
    aec: str,
    keys: tuple[str, ...],
    level: str,
    timeout: float,
    model: str,
    out: str,
    fsync: str,
    quiet: bool,
    host: str,
    port: int,
    **tls: Any,
) -> None:
    """Retrieve matching instances into --out with C-GET."""
    options = _timeouts(timeout, tls)
    from dicomnet.core.dimse import CommandField
    from dicomnet.net.retrieve import get_contexts
    from dicomnet.services.storage import FolderStorage

    sop_class = _model(model, 2)
    identifier = build_identifier(keys, level.upper(), defaults=False)
    storage = FolderStorage(out, fsync=fsync == "always")
    contexts, roles = get_contexts(sop_class)
    progress = _Progress("C-GET", quiet)
    start = time.perf_counter()

    async def run() -> Any:
        async with client.connect(
            host,
            port,
            called_ae_title=aec,
            calling_ae_title=aet,
            contexts=contexts,
            roles=roles,
            handlers={CommandField.C_STORE_RQ: storage.handle},
            dataset_sink=storage.sink,
            **options,
        ) as assoc:
            final = None
            async for response in assoc.get(identifier, sop_class):
                progress.update(response.message)
                final = response
            return final

    try:
        with progress.bar:
            final = _run(run())
    except DicomNetError as exc:
        _fail(str(exc))
    _report("C-GET", final, time.perf_counter() - start)
