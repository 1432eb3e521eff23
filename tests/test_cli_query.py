"""``dicomnet find``, ``move`` and ``get`` against DCMTK dcmqrscp."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dicomnet.cli.main import main
from dicomnet.cli.query import build_identifier

from factory import dataset_bytes, make_study
from peers import dcmqrscp, free_port, run_dcmtk

pytestmark = pytest.mark.interop


def received(folder: Path) -> dict[str, bytes]:
    return {p.stem: dataset_bytes(p) for p in folder.glob("*.dcm")}


def sent(paths: list[Path]) -> dict[str, bytes]:
    from pydicom import dcmread

    return {
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): dataset_bytes(p) for p in paths
    }


def test_build_identifier_keys_tags_and_defaults() -> None:
    ds = build_identifier(["PatientName=DOE*", "0010,0020=P1", "StudyDate"], "STUDY")
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "DOE*"
    assert ds.PatientID == "P1"
    assert ds.StudyDate == ""
    assert "StudyInstanceUID" in ds  # a default return key
    bare = build_identifier(["PatientID=P1"], "PATIENT", defaults=False)
    assert [e.keyword for e in bare] == ["QueryRetrieveLevel", "PatientID"]
    with pytest.raises(click.BadParameter, match="keyword"):
        build_identifier(["NoSuchKeyword=1"], "STUDY")


def test_find_move_get_commands_against_dcmqrscp(tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "archive", 3)
    store_port = free_port()
    runner = CliRunner(env={"COLUMNS": "400"})
    with dcmqrscp(tmp_path / "qr", store_port) as port:
        loaded = run_dcmtk("storescu", "-aec", "QRSCP", "127.0.0.1", str(port), *map(str, paths))
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr

        table = runner.invoke(
            main, ["find", "--aec", "QRSCP", "-k", "PatientID=PID-RETRIEVE", "127.0.0.1", str(port)]
        )
        assert table.exit_code == 0, table.output
        assert study in table.output
        assert "StudyInstanceUID" in table.output

        as_json = runner.invoke(
            main,
            [
                "find",
                "--aec",
                "QRSCP",
                "--json",
                "-k",
                "PatientID=PID-RETRIEVE",
                "127.0.0.1",
                str(port),
            ],
        )
        assert as_json.exit_code == 0, as_json.output
        matches = json.loads(as_json.stdout)
        assert [m["0020000D"]["Value"] for m in matches] == [[study]]

        moved = tmp_path / "moved"
        result = runner.invoke(
            main,
            [
                "move", "--aec", "QRSCP", "--aet", "DEST", "--dest", "DEST", "-q",
                "--store-port", str(store_port), "--out", str(moved),
                "-k", f"StudyInstanceUID={study}", "127.0.0.1", str(port),
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert received(moved) == sent(paths)

        fetched = tmp_path / "fetched"
        result = runner.invoke(
            main,
            [
                "get", "--aec", "QRSCP", "-q", "--out", str(fetched),
                "-k", f"StudyInstanceUID={study}", "127.0.0.1", str(port),
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "3 completed, 0 failed" in result.output
        assert received(fetched) == sent(paths)

        refused = runner.invoke(
            main,
            [
                "move", "--aec", "QRSCP", "--dest", "NOWHERE", "-q",
                "-k", f"StudyInstanceUID={study}", "127.0.0.1", str(port),
            ],
        )  # fmt: skip
        assert refused.exit_code != 0
        assert "status 0xA801" in refused.output
