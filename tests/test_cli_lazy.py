"""The lazy ``dicomnet`` group: every command listed and runnable, none imported early."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from dicomnet.cli.main import COMMANDS, main

EVERY = ("archive", "commit", "echo", "find", "get", "info", "listen", "move", "store")


def imported_after(*args: str) -> set[str]:
    """The dicomnet and rich modules a fresh interpreter holds after ``dicomnet ARGS``."""
    code = (
        "import json, sys\n"
        "from dicomnet.cli.main import main\n"
        f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith(('dicomnet', 'rich')))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:")[1].split()
    for name in EVERY:
        assert name in listed


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_summary_is_the_commands_own(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert command.get_short_help_str(1000) == COMMANDS[name][2]


@pytest.mark.parametrize("name", EVERY)
def test_every_command_runs(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"{name} [OPTIONS]" in result.output


def test_unknown_command_is_refused() -> None:
    result = CliRunner().invoke(main, ["stor"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_group_help_imports_no_command() -> None:
    loaded = imported_after("--help")
    assert not {m for m in loaded if m.startswith(("dicomnet.net", "dicomnet.archive", "rich"))}
    commands = {f"dicomnet.cli.{module}" for module in ("listen", "query", "store", "echo")}
    assert not commands & loaded


def test_store_help_imports_neither_the_archive_nor_rich() -> None:
    loaded = imported_after("store", "--help")
    assert "dicomnet.cli.store" in loaded
    for absent in ("dicomnet.cli.listen", "dicomnet.cli.query", "dicomnet.archive", "rich"):
        assert not {m for m in loaded if m == absent or m.startswith(absent + ".")}, absent
