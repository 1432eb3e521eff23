"""The ``dicomnet`` command line.

Each command exits 0 on success and non-zero with one line on standard error
saying why otherwise (refused, rejected with its reason, timed out).

The group is lazy: a command's module is imported only when that command
runs (or when ``--help`` of the command is asked for), so ``dicomnet store``
does not pay for the archive, the listener or the query tables at start-up.
``dicomnet --help`` lists every command from :data:`COMMANDS` without
importing any of them; a test checks that each summary there is the
command's own.
"""

from __future__ import annotations

import importlib
import logging

import click

from dicomnet import __version__

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, tuple[str, str, str]] = {
    "archive": (
        "dicomnet.cli.maintenance",
        "archive",
        "Check, rebuild or prune an archive folder and its index (docs/archive.md).",
    ),
    "commit": (
        "dicomnet.cli.commit",
        "commit",
        "Ask for storage commitment of PATHS; print which are committed, which failed.",
    ),
    "echo": ("dicomnet.cli.echo", "echo", "Verify a peer with C-ECHO."),
    "find": (
        "dicomnet.cli.query",
        "find",
        "Query a peer with C-FIND and print the matches as a table (or JSON).",
    ),
    "get": ("dicomnet.cli.query", "get", "Retrieve matching instances into --out with C-GET."),
    "listen": (
        "dicomnet.cli.listen",
        "listen",
        "Run the archive: storage SCP into --dir, indexed for C-FIND, C-MOVE and C-GET.",
    ),
    "move": (
        "dicomnet.cli.query",
        "move",
        "Ask a peer to send matching instances to --dest with C-MOVE.",
    ),
    "store": (
        "dicomnet.cli.store",
        "store",
        "Send Part 10 files with C-STORE; exit non-zero if any instance failed.",
    ),
}
"""name: (module, attribute, the one-line summary ``dicomnet --help`` shows)."""


class LazyGroup(click.Group):
    """A click group whose commands live in modules imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in COMMANDS:
            return command
        module, attribute, _ = COMMANDS[cmd_name]
        found = getattr(importlib.import_module(module), attribute)
        assert isinstance(found, click.Command)
        return found

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the summaries in :data:`COMMANDS`: no import."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is not None:
                if command.hidden:
                    continue
                summary = command.get_short_help_str(limit)
            else:
                # click's own shortening, of a command not imported yet
                summary = click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)
            rows.append((name, summary))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
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
    from dicomnet.core import codec

    click.echo(f"dicomnet {__version__}, codec {codec.IMPLEMENTATION}")


if __name__ == "__main__":  # pragma: no cover
    main()
