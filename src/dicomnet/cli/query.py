"""The ``find``, ``move`` and ``get`` commands of the ``dicomnet`` command line.

Keys are given as findscu's are: ``-k PatientName=DOE*`` matches, ``-k
PatientID`` (no value) asks for the attribute back; a tag may also be written
``0010,0020``. Each query level gets a few return keys by default (the ones a
person reading the result wants to see), unless the same key is given.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from dicomnet.cli.common import fail, run
from dicomnet.cli.network import connection_kwargs, network_options, proposed
from dicomnet.cli.tls_options import client_ssl, tls_client_options
from dicomnet.core.status import StatusClass, status_class
from dicomnet.core.uids import MODALITY_WORKLIST_FIND, QR_MODELS
from dicomnet.errors import DicomNetError
from dicomnet.net import client

__all__ = ["DEFAULT_RETURN_KEYS", "build_identifier", "find", "get", "move"]

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
CANCELLED = 0xFE00
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


def _connection(
    options: dict[str, Any], sop_class: str, relational: bool
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Connection options shared by the commands (timeouts, identity, TLS,
    relational service) and the transfer syntaxes to propose."""
    from dicomnet.archive.relational import MODEL_LEVELS, relational_request

    network = connection_kwargs(options)
    if relational and sop_class in MODEL_LEVELS:
        network["extended"] = [relational_request(sop_class)]
    syntaxes = proposed(network.pop("propose"))
    network["ssl"] = client_ssl(options)
    return network, syntaxes


def read_query_file(path: str) -> Any:
    """A query identifier from a DICOM JSON file (PS3.18 F.2), an object or a one-item list."""
    from pydicom.dataset import Dataset

    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="-f") from None
    if isinstance(document, list) and len(document) == 1:
        document = document[0]
    if not isinstance(document, dict):
        raise click.BadParameter(f"{path}: not a DICOM JSON object", param_hint="-f")
    try:
        return Dataset.from_json(document)
    except Exception as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="-f") from None


def _identifier(
    keys: Iterable[str], level: str | None, defaults: bool, query_file: str | None
) -> Any:
    """The identifier: the ``-f`` file's, then its level's defaults, then ``-k`` keys."""
    if query_file is None:
        return build_identifier(keys, level, defaults)
    identifier = read_query_file(query_file)
    if level is not None and "QueryRetrieveLevel" not in identifier:
        identifier.QueryRetrieveLevel = level
    extra = build_identifier(keys, None, False)
    for element in extra:
        identifier[element.tag] = element
    return identifier


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
            "-f",
            "--query-file",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="The query as DICOM JSON; -k keys are added or override.",
        ),
        click.option(
            "--level",
            type=click.Choice(LEVELS, case_sensitive=False),
            default=None,
            help="Query/Retrieve Level [default: the file's, else STUDY].",
        ),
        click.option(
            "--relational/--hierarchical",
            default=True,
            show_default=True,
            help="Ask for relational queries or retrieval (SOP Class Extended Negotiation).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return network_options(tls_client_options(function))


def _level(level: str | None, query_file: str | None) -> str | None:
    """The --level given, or None to keep the file's, or STUDY."""
    if level is not None:
        return level.upper()
    return None if query_file is not None else "STUDY"


@click.command()
@_common
@click.option(
    "--model", type=click.Choice(MODELS), default="study", show_default=True, help="Root."
)
@click.option("--json", "as_json", is_flag=True, help="Print the matches as DICOM JSON.")
@click.option("--no-defaults", is_flag=True, help="Ask only for the keys given with -k.")
@click.option(
    "--cancel",
    "cancel_after",
    type=click.IntRange(min=1),
    default=None,
    help="Send C-CANCEL after this many matches (DCMTK --cancel).",
)
@click.argument("host")
@click.argument("port", type=int)
def find(
    aet: str,
    aec: str,
    keys: tuple[str, ...],
    query_file: str | None,
    level: str | None,
    relational: bool,
    model: str,
    as_json: bool,
    no_defaults: bool,
    cancel_after: int | None,
    host: str,
    port: int,
    **options: Any,
) -> None:
    """Query a peer with C-FIND and print the matches as a table (or JSON)."""
    sop_class = _model(model, 0)
    network, syntaxes = _connection(options, sop_class, relational)
    query_level = None if model == "worklist" else _level(level, query_file)
    identifier = _identifier(keys, query_level, not no_defaults, query_file)
    level = str(identifier.get("QueryRetrieveLevel", "WORKLIST"))

    async def run() -> tuple[list[Any], int]:
        matches = []
        async with client.connect(
            host,
            port,
            called_ae_title=aec,
            calling_ae_title=aet,
            contexts=[(sop_class, syntaxes)],
            **network,
        ) as assoc:
            status = 0
            responses = assoc.find(identifier, sop_class)
            async with contextlib.aclosing(responses):  # closing early sends C-CANCEL
                async for response in responses:
                    status = response.status
                    if response.pending and response.identifier is not None:
                        matches.append(response.identifier)
                        if cancel_after is not None and len(matches) >= cancel_after:
                            break
            if cancel_after is not None and len(matches) >= cancel_after:
                status = CANCELLED  # C-CANCEL-RQ sent and its final response awaited
        return matches, status

    try:
        matches, status = _run(run())
    except DicomNetError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps([m.to_json_dict() for m in matches], indent=1))
    else:
        _print_table(matches, f"C-FIND {level} at {aec} ({len(matches)} matches)")
    if status == CANCELLED and cancel_after is not None:
        click.echo(f"C-FIND cancelled after {len(matches)} matches", err=True)
    elif not _final_ok(status):
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
    query_file: str | None,
    level: str | None,
    relational: bool,
    model: str,
    dest: str,
    store_port: int | None,
    out: str,
    quiet: bool,
    host: str,
    port: int,
    **options: Any,
) -> None:
    """Ask a peer to send matching instances to --dest with C-MOVE."""
    sop_class = _model(model, 1)
    network, syntaxes = _connection(options, sop_class, relational)
    identifier = _identifier(keys, _level(level, query_file), False, query_file)
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
                contexts=[(sop_class, syntaxes)],
                **network,
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
    query_file: str | None,
    level: str | None,
    relational: bool,
    model: str,
    out: str,
    fsync: str,
    quiet: bool,
    host: str,
    port: int,
    **options: Any,
) -> None:
    """Retrieve matching instances into --out with C-GET."""
    from dicomnet.core.dimse import CommandField
    from dicomnet.net.retrieve import get_contexts
    from dicomnet.services.storage import FolderStorage

    sop_class = _model(model, 2)
    network, syntaxes = _connection(options, sop_class, relational)
    identifier = _identifier(keys, _level(level, query_file), False, query_file)
    storage = FolderStorage(out, fsync=fsync == "always")
    contexts, roles = get_contexts(sop_class, query_transfer_syntaxes=syntaxes)
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
            **network,
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
