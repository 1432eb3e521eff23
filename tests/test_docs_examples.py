"""Every ```python and ```sh block of README.md and docs/*.md runs, so no example can rot.

How a file's blocks run (``docs/index.md``, "Examples that run", says the same for writers):

- Each file runs in a network namespace of its own (``unshare --net``) with only
  loopback up, so its ports (11112, 11113...) cannot clash with anything else on the
  machine, with an empty ``/srv`` of its own (a tmpfs in a mount namespace: examples
  write to ``/srv/dicom``), where the host name ``pacs`` is 127.0.0.1, and in a
  scratch folder holding ``study/``: three CT instances of patient ``DOE^JOHN``
  (ID ``PID1``), study ``1.2.3``.
- Unless the file starts its own listener on 11112 first, the archive
  (``dicomnet listen``) serves on 127.0.0.1:11112 with that study stored in it.
- ``sh`` blocks run command by command in bash; a command that starts a server
  (``dicomnet listen``, ``storescp``, ``dcmqrscp``) runs in the background until the
  file ends, and the next command waits until its port accepts.
- ``python`` blocks of one file share one namespace and one event loop, in order, with
  top-level ``await`` allowed (as ``python -m asyncio`` and Jupyter allow it). A block
  that calls ``serve_forever()`` runs as a background task until the file ends.
- A block that cannot run (``pip install``, a production configuration, a synopsis
  with placeholders) has ``<!-- not-run: why -->`` on the line before its fence; the
  tests count those and require the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_LANGUAGES = {"python", "sh", "bash"}
FENCE = re.compile(r"^(\s*)(`{3,})(\w*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(.*?)\s*-->\s*$")
SERVERS = ("dicomnet listen", "storescp", "dcmqrscp")
ARCHIVE_PORT = 11112
EXAMPLE_HOST = "pacs"
DCMTK_DIR = "/usr/bin"
DCMTK_TOOLS = ("echoscu", "storescu", "storescp", "findscu", "movescu", "getscu", "dcmqrscp")
STUDY_UID = "1.2.3"


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    language: str
    code: str
    not_run: str | None


def extract(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each with its ``not-run`` reason if marked."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        indent, fence, language = match.groups()
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        previous = index - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        marked = NOT_RUN.match(lines[previous]) if previous >= 0 else None
        code = "\n".join(line[len(indent):] for line in lines[index + 1 : end])
        blocks.append(Block(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT)
                            else str(path), index + 1, language.lower(), code,
                            marked.group(1) if marked else None))
        index = end + 1
    return blocks


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# --- the runner, executed inside the namespace -------------------------------------------


def wait_for_port(port: int, process: subprocess.Popen[str] | None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {process.args}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing accepts on port {port} after {timeout} s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def server_port(command: str) -> int:
    """The port a server command line listens on: ``--port N``, else its last number."""
    words = shlex.split(command, comments=True)
    if "--port" in words:
        return int(words[words.index("--port") + 1])
    if words[0].endswith("dcmqrscp"):
        config = Path(words[words.index("-c") + 1]).read_text()
        return int(re.search(r"NetworkTCPPort\s*=\s*(\d+)", config).group(1))  # type: ignore[union-attr]
    numbers = [word for word in words if word.isdigit()]
    return int(numbers[-1]) if numbers else 11112


def commands(code: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, a here-document kept with its
    command, comments and blank lines dropped."""
    joined: list[str] = []
    pending = ""
    terminator: str | None = None
    for line in code.splitlines():
        if terminator is not None:
            pending += line + "\n"
            if line.strip() == terminator:
                joined.append(pending.rstrip("\n"))
                pending, terminator = "", None
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = pending + line
        pending = ""
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if heredoc:
            terminator = heredoc.group(1)
            pending = line + "\n"
            continue
        if line.strip() and not line.strip().startswith("#"):
            joined.append(line)
    return joined


class Runner:
    """Runs one file's blocks in order; servers live until the file ends."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.servers: list[subprocess.Popen[str]] = []
        self.default_archive: subprocess.Popen[str] | None = None
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.loop = asyncio.new_event_loop()
        self.tasks: list[asyncio.Task[Any]] = []
        self.env = {**os.environ, "PATH": f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}"}

    def prepare(self) -> None:
        """``study/`` and a ``dicomnet`` on PATH that is this interpreter's."""
        sys.path.insert(0, str(Path(__file__).parent))
        from factory import ct_dataset, write_part10

        (self.work / "study").mkdir()
        for index in range(3):
            ds = ct_dataset(index, study=STUDY_UID)
            ds.PatientName, ds.PatientID = "DOE^JOHN", "PID1"
            write_part10(ds, self.work / "study" / f"ct{index}.dcm")
        (self.work / "bin").mkdir()
        for tool in DCMTK_TOOLS:  # DCMTK's, not pynetdicom's console scripts of the same names
            (self.work / "bin" / tool).symlink_to(Path(DCMTK_DIR) / tool)
        shim = self.work / "bin" / "dicomnet"
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m dicomnet "$@"\n')
        shim.chmod(0o755)

    def start(self, command: str) -> subprocess.Popen[str]:
        port = server_port(command)
        if self.default_archive is not None and port == ARCHIVE_PORT:
            self.stop(self.default_archive)
            self.default_archive = None
        log = open(self.work / f"server-{len(self.servers)}.log", "w")
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=self.work, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        self.servers.append(process)
        try:
            wait_for_port(port, process)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{(self.work / log.name).read_text()[-2000:]}") from None
        return process

    def ensure_archive(self) -> None:
        if port_open(ARCHIVE_PORT):
            return
        self.default_archive = self.start(
            f"dicomnet listen --port {ARCHIVE_PORT} --dir default-archive"
            " --move-destination MYSCP=127.0.0.1:11113"
            " --move-destination MY-STORE-SCP=127.0.0.1:11113"
            " --commitment-destination MODALITY=127.0.0.1:11113"
        )
        self.shell(f"dicomnet store -q -r --aec DICOMNET 127.0.0.1 {ARCHIVE_PORT} study")

    def shell(self, command: str) -> None:
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command], cwd=self.work, env=self.env,
            capture_output=True, text=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"`{command}` exited {result.returncode}:\n{result.stdout[-2000:]}"
                f"\n{result.stderr[-2000:]}"
            )

    def run_sh(self, code: str) -> None:
        """Commands between server starts run as one script, so a loop or an ``if``
        spanning lines stays whole; ``bash -e`` stops at the first that fails."""
        batch: list[str] = []

        def flush() -> None:
            if batch:
                self.ensure_archive()
                self.shell("\n".join(batch))
                batch.clear()

        for command in commands(code):
            if command.lstrip().startswith(SERVERS):
                flush()
                self.start(command.strip())
            else:
                batch.append(command)
        flush()

    def run_python(self, code: str, name: str) -> None:
        if "serve_forever" not in code and ".listen(" not in code:
            self.ensure_archive()
        compiled = compile(code, name, "exec", flags=0x2000)  # PyCF_ALLOW_TOP_LEVEL_AWAIT
        result = eval(compiled, self.namespace)
        if not asyncio.iscoroutine(result):
            return
        if "serve_forever" in code:
            task = self.loop.create_task(result)
            self.tasks.append(task)
            self.loop.run_until_complete(asyncio.sleep(1.0))
            if task.done():
                task.result()
            return
        self.loop.run_until_complete(asyncio.wait_for(result, 120))

    @staticmethod
    def stop(process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            self.loop.run_until_complete(asyncio.gather(*self.tasks, return_exceptions=True))
        self.loop.close()
        for process in reversed(self.servers):
            self.stop(process)


def run_blocks(blocks: list[Block], work: Path) -> int:
    """Run ``blocks`` (one file's) in order; print one line per failure; 0 if all ran."""
    os.chdir(work)
    runner = Runner(work)
    runner.prepare()
    failed = 0
    try:
        for block in blocks:
            where = f"{block.file}:{block.line}"
            try:
                if block.language == "python":
                    runner.run_python(block.code, where)
                else:
                    runner.run_sh(block.code)
                print(f"ran {where}", flush=True)
            except BaseException as error:  # one broken example must not hide the next
                if isinstance(error, KeyboardInterrupt):
                    raise
                failed += 1
                detail = "".join(traceback.format_exception(error)[-6:])
                print(f"FAILED {where} ({block.language}):\n{detail}", flush=True)
    finally:
        runner.close()
    return failed


def main() -> int:
    """Inside ``unshare --net --mount``: bring loopback up, put an empty /srv in place
    (examples use /srv/dicom; the machine's own /srv stays untouched), let the host
    name ``pacs`` mean loopback, run the blocks."""
    blocks_file, work = Path(sys.argv[2]), Path(sys.argv[3])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", "/srv"], check=True)
    hosts = work / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + f"\n127.0.0.1 {EXAMPLE_HOST}\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    blocks = [Block(**item) for item in json.loads(blocks_file.read_text())]
    return 1 if run_blocks(blocks, work) else 0


# --- the tests --------------------------------------------------------------------------


def run_in_namespace(blocks: list[Block], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        pytest.fail("unshare and ip (util-linux, iproute2) are needed to run the examples")
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps([asdict(block) for block in blocks]))
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run(
        # A pid namespace too: when the runner ends, however it ends, the kernel ends
        # every server the examples started.
        [unshare, "--net", "--mount", "--pid", "--fork", "--kill-child",
         sys.executable, __file__, "--run", str(spec), str(work)],
        cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False,
    )


@pytest.mark.interop
@pytest.mark.timeout(900)
@pytest.mark.slow  # the examples test the docs, not the codec: the compiled pass runs them
@pytest.mark.parametrize(
    "document", documents(), ids=lambda path: str(path.relative_to(ROOT))
)
def test_examples_run(document: Path, tmp_path: Path) -> None:
    blocks = [b for b in extract(document) if b.language in RUN_LANGUAGES and b.not_run is None]
    if not blocks:
        return  # nothing to run in this file; test_every_block_runs_or_says_why counts it
    result = run_in_namespace(blocks, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert len(re.findall(r"^ran ", result.stdout, re.MULTILINE)) == len(blocks)


def test_every_block_runs_or_says_why() -> None:
    ran, skipped = 0, []
    for document in documents():
        text = document.read_text(encoding="utf-8")
        markers = sum(1 for line in text.splitlines() if NOT_RUN.match(line))
        blocks = extract(document)
        marked = [b for b in blocks if b.not_run is not None]
        assert len(marked) == markers, f"{document.name}: a not-run marker is not before a fence"
        for block in blocks:
            if block.language not in RUN_LANGUAGES:
                continue
            if block.not_run is None:
                ran += 1
            else:
                assert block.not_run, f"{block.file}:{block.line}: not-run needs a reason"
                skipped.append(f"{block.file}:{block.line}: {block.not_run}")
    print(f"{ran} blocks run, {len(skipped)} not run:", *skipped, sep="\n  ")
    assert ran > len(skipped)


@pytest.mark.timeout(300)
def test_a_broken_example_fails(tmp_path: Path) -> None:
    """The harness itself: a failing command or exception is reported, a good block is not."""
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\ndicomnet echo --aec DICOMNET 127.0.0.1 11112\n```\n\n"
        "<!-- not-run: shows what not to do -->\n```python\nraise SystemExit(3)\n```\n\n"
        "```python\nimport dicomnet.sync\n"
        "with dicomnet.sync.connect('127.0.0.1', 11112) as assoc:\n    assoc.echo()\n"
        "missing_name\n```\n\n"
        "```sh\ndicomnet echo --aec DICOMNET 127.0.0.1 11119\n```\n"
    )
    blocks = extract(page)
    assert [b.not_run for b in blocks] == [None, "shows what not to do", None, None]
    result = run_in_namespace([b for b in blocks if b.not_run is None], tmp_path)
    assert result.returncode == 1
    assert f"ran {page}:1" in result.stdout
    assert result.stdout.count("FAILED") == 2, result.stdout
    assert "NameError: name 'missing_name'" in result.stdout
    assert "exited 1" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_docs_site_builds_strict(tmp_path: Path) -> None:
    """mkdocs.yml's site: a broken link, a page outside nav or a missing docstring fails."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("dicomnet.connect", "dicomnet.Listener", "dicomnet.sync.connect",
                 "dicomnet.testing.RawPeer"):
        assert f'id="{name}"' in api, name


def test_the_docstring_hook_names_what_lacks_one(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from mkdocs_docstrings import missing_docstrings
    finally:
        sys.path.remove(str(ROOT / "tools"))
    package = tmp_path / "dicomnet"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""Package."""\n__all__ = ["Good", "bare", "LIMIT"]\nLIMIT = 3\n'
        'class Good:\n    """Why."""\n    def method(self):\n        pass\n'
        '    def _private(self):\n        pass\n'
        "def bare():\n    pass\n"
    )
    assert missing_docstrings(["dicomnet"], tmp_path) == ["dicomnet.Good.method", "dicomnet.bare"]


if __name__ == "__main__" and sys.argv[1:2] == ["--run"]:
    sys.exit(main())
