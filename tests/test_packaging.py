"""What pip users get: the sdist, the wheel, the manylinux wheel, each in a fresh venv.

``python -m build`` makes the sdist and builds the wheel from it; ``auditwheel
repair`` turns the wheel into a manylinux one. Each install goes into its own
virtual environment made without the system's site-packages (where an editable
install of the work tree may live), and the smoke test (``tests/wheel_smoke.py``,
the same script the wheels workflow runs on every platform) runs from a copy in
a scratch folder, so neither the repository nor its ``src`` folder is on
``sys.path``. The manylinux wheel is installed and run with nothing but the
venv's ``bin`` on PATH: no compiler can be reached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from peers import DCMTK_DIR, dcmtk

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("cp310", "cp311", "cp312", "cp313", "cp313t")
PLATFORMS = {
    "linux": [f"{libc}_{arch}" for arch in ("x86_64", "aarch64")
              for libc in ("manylinux", "musllinux")],
    "macos": ["macosx_x86_64", "macosx_arm64"],
    "windows": ["win_amd64"],
}

# Building the codec and installing into fresh venvs takes minutes on a busy machine.
pytestmark = pytest.mark.timeout(900)

COMPILERS = ("cc", "gcc", "clang", "c++", "g++", "x86_64-linux-gnu-gcc")

UNOPTIMISED = {"CFLAGS": "-O0"}
"""These tests check what is built and where it installs, not how fast it runs: the
codec compiles in 5 s at -O0 against 24 s at the default -O3 (it comes after the
interpreter's flags, so it wins). Users' builds and the wheels keep -O3."""


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> str:
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert result.returncode == 0, f"{args[:4]}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def source_copy(folder: Path) -> Path:
    """The tracked sources only, so no build output of the work tree leaks in."""
    copy = folder / "src-copy"
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


def wheel_environment() -> dict[str, str]:
    """The build environment cibuildwheel gives every wheel ([tool.cibuildwheel])."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {k: str(v) for k, v in config["tool"]["cibuildwheel"].get("environment", {}).items()}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist, and the wheel ``python -m build`` builds from it."""
    folder = tmp_path_factory.mktemp("build")
    out = folder / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
         str(source_copy(folder))], env={**os.environ, **wheel_environment(), **UNOPTIMISED})
    (sdist,) = out.glob("dicomnet-*.tar.gz")
    (wheel,) = out.glob("dicomnet-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def repaired(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel after ``auditwheel repair``: a manylinux wheel."""
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    run([sys.executable, "-m", "auditwheel", "repair", "--strip", "--wheel-dir",
         str(wheelhouse), str(dist[1])])
    (wheel,) = wheelhouse.glob("dicomnet-*.whl")
    return wheel


class Venv:
    """A fresh virtual environment, without the system's site-packages."""

    def __init__(self, folder: Path) -> None:
        run([sys.executable, "-m", "venv", str(folder)])
        self.bin = folder / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / "python"
        self.folder = folder

    def env(self, *, compiler: bool, **extra: str) -> dict[str, str]:
        """The environment a user of this venv has: its bin first, nothing of ours."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DICOMNET_NO_EXTENSIONS")
        }
        env["VIRTUAL_ENV"] = str(self.folder)
        env["PATH"] = str(self.bin) + (os.pathsep + os.environ["PATH"] if compiler else "")
        env.update(extra)
        return env

    def pip_install(self, target: Path, *, compiler: bool, **extra: str) -> None:
        # pip would cache the wheel it builds from a local sdist and reuse it for the
        # next install of the same name and version, compiled or not: build afresh.
        fresh = ["--no-binary", "dicomnet", "--no-cache-dir"] if target.suffix == ".gz" else []
        run([str(self.python), "-m", "pip", "install", "-q", *fresh,
             "--disable-pip-version-check", str(target)], env=self.env(compiler=compiler, **extra))

    def where(self) -> tuple[str, list[str]]:
        """Where ``dicomnet`` imports from in this venv, and its ``sys.path``."""
        out = run(
            [str(self.python), "-c",
             "import sys, dicomnet; print(dicomnet.__file__); print(*sys.path, sep='\\n')"],
            env=self.env(compiler=False),
        ).splitlines()
        return out[0], out[1:]

    def smoke(self, scratch: Path, *args: str, compiler: bool = False) -> str:
        """Run the smoke test from a copy outside the repository."""
        scratch.mkdir(exist_ok=True)
        script = shutil.copy2(ROOT / "tests" / "wheel_smoke.py", scratch / "wheel_smoke.py")
        result = subprocess.run(
            [str(self.python), str(script), *args],
            cwd=scratch,
            env=self.env(compiler=compiler),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


def assert_outside_the_repository(venv: Venv) -> None:
    location, path = venv.where()
    assert Path(location).is_relative_to(venv.folder), location
    assert not [entry for entry in path if entry and Path(entry).resolve().is_relative_to(ROOT)]
    assert not [entry for entry in path if entry.endswith(os.sep + "src")], path


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_cibuildwheel_builds_every_target(platform: str) -> None:
    """pyproject's [tool.cibuildwheel] selects exactly the wheels the project ships."""
    result = subprocess.run(
        [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("CIBW_")},
    )
    assert result.returncode == 0, result.stderr
    expected = {f"{python}-{target}" for python in PYTHONS for target in PLATFORMS[platform]}
    assert set(result.stdout.split()) == expected


def test_wheels_workflow_builds_tests_and_publishes() -> None:
    """The workflow cannot run here; its shape can be checked: every runner, the smoke
    test, and publishing only from a tag, with an OIDC token rather than a secret."""
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "wheels.yml").read_text())
    jobs = workflow["jobs"]
    assert set(jobs["wheels"]["strategy"]["matrix"]["os"]) == {
        "ubuntu-latest", "ubuntu-24.04-arm", "macos-15-intel", "macos-15", "windows-latest"
    }
    build = next(s for s in jobs["wheels"]["steps"] if "cibuildwheel" in s.get("uses", ""))
    assert build["uses"].startswith("pypa/cibuildwheel@v3")  # 4.x dropped 3.13t
    config = (ROOT / "pyproject.toml").read_text()
    assert 'test-command = "python {project}/tests/wheel_smoke.py --expect-codec cython"' in config
    smoke = " ".join(str(step.get("run", "")) for step in jobs["dcmtk"]["steps"])
    assert "wheel_smoke.py --expect-codec cython --dcmtk" in smoke
    publish = jobs["publish"]
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert publish["permissions"] == {"id-token": "write"}
    assert set(publish["needs"]) == {"sdist", "wheels", "dcmtk", "pypy"}
    assert [s["uses"] for s in publish["steps"]][-1].startswith("pypa/gh-action-pypi-publish")
    assert "password" not in str(publish) and "secrets." not in str(publish)


def test_codec_source_is_portable() -> None:
    """``src/_pdu.pyx`` builds with MSVC as with GCC and Clang: nothing from Cython's
    ``posix`` package (its headers, such as <sys/uio.h> for writev, do not exist on
    Windows), and any system header outside the C standard library is reached only
    through a header of the project's own that guards it with ``_WIN32``."""
    source = (ROOT / "src" / "_pdu.pyx").read_text()
    assert not re.findall(r"^\s*(?:from|cimport)\s+posix\b.*$", source, re.MULTILINE)
    standard = {"stddef.h", "stdint.h", "string.h", "stdlib.h", "errno.h", "limits.h"}
    posix_include = r"#\s*include\s*<(unistd\.h|sys/[\w/]+\.h|fcntl\.h|arpa/\w+\.h)>"
    # C written verbatim in the .pyx (cdef extern from * with a docstring) counts too.
    verbatim = re.findall(posix_include, source)
    assert not verbatim or "_WIN32" in source, f"_pdu.pyx includes {verbatim} unguarded"
    for header in re.findall(r'cdef extern from "([^"]+)"', source):
        if header in standard:
            continue
        own = ROOT / "src" / header
        assert own.is_file(), f"{header}: a system header outside the C standard library"
        text = own.read_text()
        posix_only = re.findall(posix_include, text)
        assert not posix_only or "_WIN32" in text, f"{header} includes {posix_only} unguarded"


def test_pypy_builds_the_pure_package(tmp_path: Path) -> None:
    """setup.py builds no extension on PyPy (cpyext would make the codec slower than
    the pure twin under the JIT). Debian's pypy3 is Python 3.9, older than dicomnet
    supports, so only the build is checked here; the wheels workflow runs the codec
    tests on PyPy 3.10 and 3.11."""
    pypy = shutil.which("pypy3")
    if pypy is None:
        pytest.fail("pypy3 not found: scripts/test.sh installs Debian's pypy3")
    copy = source_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("DICOMNET_NO_EXTENSIONS", "PYTHONPATH")}
    result = subprocess.run([pypy, "setup.py", "-q", "build", "--build-base", str(tmp_path / "b")],
                            cwd=copy, env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    built = [p.name for p in (tmp_path / "b").rglob("*") if p.is_file()]
    assert "_pdu_py.py" in built and "codec.py" in built
    assert not [name for name in built if name.endswith((".so", ".pyd", ".c"))], built


@pytest.mark.slow
def test_sdist_carries_the_sources_and_the_wheel_the_compiled_codec(
    dist: tuple[Path, Path],
) -> None:
    sdist, wheel = dist
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"src/_pdu.pyx", "setup.py", "pyproject.toml", "README.md"} <= names
    assert "src/dicomnet/core/_pdu_py.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd"))]
    with zipfile.ZipFile(wheel) as archive:
        inside = archive.namelist()
    assert [name for name in inside if re.fullmatch(r"dicomnet/core/_pdu\..*\.so", name)]
    assert not [name for name in inside if name.endswith((".pyx", ".c"))]
    assert "dicomnet/py.typed" in inside
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert f"-{tag}-{tag}-linux_" in wheel.name, wheel.name


@pytest.mark.slow
def test_auditwheel_makes_a_manylinux_wheel(repaired: Path) -> None:
    machine = os.uname().machine
    assert re.search(rf"[.-]manylinux_2_\d+_{machine}\.whl$", repaired.name), repaired.name
    shown = run([sys.executable, "-m", "auditwheel", "show", str(repaired)])
    assert "manylinux_2_" in shown
    # The codec links nothing beyond libc: no library had to be grafted in; and it
    # ships without its debug information (-g), a quarter of the size.
    with zipfile.ZipFile(repaired) as archive:
        assert not [name for name in archive.namelist() if ".libs/" in name]
        (codec,) = [name for name in archive.namelist() if name.endswith(".so")]
        assert b".debug_info" not in archive.read(codec)
    print(f"{repaired.name}: {repaired.stat().st_size} bytes")


@pytest.mark.slow
@pytest.mark.interop
def test_manylinux_wheel_in_a_fresh_venv_without_a_compiler(
    repaired: Path, tmp_path: Path
) -> None:
    venv = Venv(tmp_path / "venv")
    env = venv.env(compiler=False)
    for compiler in COMPILERS:
        assert shutil.which(compiler, path=env["PATH"]) is None, compiler
    venv.pip_install(repaired, compiler=False)
    assert_outside_the_repository(venv)
    dcmtk("storescp"), dcmtk("dcmqrscp")  # the DCMTK half fails, not skips, without DCMTK
    out = venv.smoke(tmp_path / "scratch", "--expect-codec", "cython", "--dcmtk", DCMTK_DIR)
    assert "codec cython" in out
    assert "storescp: echo, store 3: ok" in out
    assert "QRSCP: echo, store 3, find 1 study: ok" in out
    assert "DICOMNET: echo, store 3, find 1 study: ok" in out
    assert "INPROCESS: echo, store 3, find 1 study: ok" in out


@pytest.mark.slow
def test_sdist_with_a_compiler_installs_the_compiled_codec(
    dist: tuple[Path, Path], tmp_path: Path
) -> None:
    venv = Venv(tmp_path / "venv")
    venv.pip_install(dist[0], compiler=True, **UNOPTIMISED)
    assert_outside_the_repository(venv)
    out = venv.smoke(tmp_path / "scratch", "--expect-codec", "cython")
    assert "codec cython" in out and "smoke test passed" in out


@pytest.mark.slow
def test_sdist_with_no_extensions_installs_pure_python(
    dist: tuple[Path, Path], tmp_path: Path
) -> None:
    venv = Venv(tmp_path / "venv")
    venv.pip_install(dist[0], compiler=False, DICOMNET_NO_EXTENSIONS="1")
    assert not list(venv.folder.glob("lib/python*/site-packages/dicomnet/core/_pdu*.so"))
    assert_outside_the_repository(venv)
    # Without the variable at run time too: the extension is simply absent.
    out = venv.smoke(tmp_path / "scratch", "--expect-codec", "python")
    assert "codec python" in out and "smoke test passed" in out

    (site,) = venv.folder.glob("lib/python*/site-packages")
    tests = [
        str(ROOT / "tests" / name)
        for name in ("test_codec_framing.py", "test_codec_pdata.py",
                     "test_codec_associate.py", "test_codec_command.py")
    ]
    # This interpreter has pytest; the venv's site-packages goes first on its path.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, *tests],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site), "DICOMNET_NO_EXTENSIONS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "skipped" in result.stdout
