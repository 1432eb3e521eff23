"""What pip builds: a wheel with the compiled codec, and a pure-Python install.

Each install goes into its own folder, put first on PYTHONPATH, so the
repository's own copy cannot answer the import in its place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        timeout=600,
        env=env,
        capture_output=True,
    )


def python_in(target: Path, code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DICOMNET_NO_EXTENSIONS"}
    env["PYTHONPATH"] = str(target)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def source_copy(tmp_path: Path) -> Path:
    """The tracked sources only, so no build output of the work tree leaks in."""
    copy = tmp_path / "src-copy"
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    return copy


def test_wheel_carries_the_compiled_codec(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source_copy(tmp_path)))
    (wheel,) = wheels.glob("dicomnet-*.whl")
    assert "cp3" in wheel.name, wheel.name
    target = tmp_path / "site"
    pip("install", "--no-deps", "--target", str(target), str(wheel))
    assert not list(target.glob("dicomnet/**/*.pyx")) and not list(target.glob("dicomnet/**/*.c"))
    out = python_in(
        target,
        "import dicomnet, dicomnet.core.codec as c; print(c.IMPLEMENTATION, dicomnet.__file__)",
        tmp_path,
    )
    implementation, location = out.split()
    assert implementation == "cython"
    assert location.startswith(str(target))


def test_install_without_extensions_is_pure_and_passes_the_codec_tests(tmp_path: Path) -> None:
    target = tmp_path / "site"
    env = {**os.environ, "DICOMNET_NO_EXTENSIONS": "1"}
    pip(
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--target",
        str(target),
        str(source_copy(tmp_path)),
        env=env,
    )
    assert not list(target.glob("dicomnet/**/_pdu.*.so")) and not list(
        target.glob("dicomnet/**/_pdu.*.pyd")
    )
    out = python_in(
        target,
        "import dicomnet, dicomnet.core.codec as c; print(c.IMPLEMENTATION, dicomnet.__file__)",
        tmp_path,
    )
    implementation, location = out.split()
    assert implementation == "python"  # without the variable at import time too
    assert location.startswith(str(target))
    tests = [
        str(ROOT / "tests" / name)
        for name in (
            "test_codec_framing.py",
            "test_codec_pdata.py",
            "test_codec_associate.py",
            "test_codec_command.py",
        )
    ]
    run_env = {**env, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            *tests,
        ],
        cwd=tmp_path,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "skipped" in result.stdout
