"""The protocol core imports no I/O, no event loop and no clock.

``codec``, ``pdu``, ``ul``, ``negotiation`` and ``dimse`` consume bytes and
timer expiries and return events and bytes (docs/architecture.md), so none of
them may pull in asyncio, sockets, selectors, TLS, threads or time. Each is
imported in a fresh interpreter and the modules it added are checked; a core
module that does not exist fails its test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CORE_MODULES = [
    "dicomnet.core.codec",
    "dicomnet.core.pdu",
    "dicomnet.core.ul",
    "dicomnet.core.negotiation",
    "dicomnet.core.dimse",
]

FORBIDDEN = {
    "asyncio",
    "socket",
    "_socket",
    "selectors",
    "ssl",
    "_ssl",
    "threading",
    "_thread",
    "time",
    "concurrent",
    "uvloop",
}
"""I/O, event loops, threads and clocks. ``threading`` and ``time`` may already
be loaded by the interpreter's own start-up (``site``, ``zipimport``); they
count only when the import under test is what brought them in."""

ALWAYS_ABSENT = {"asyncio", "socket", "selectors", "ssl"}
"""Not loaded by a bare interpreter: these must be absent after the import."""

PROBE = """
import json, sys
before = set(sys.modules)
import {module}
after = set(sys.modules)
print(json.dumps({{"before": sorted(before), "after": sorted(after)}}))
"""


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_io_or_clock(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"import {module} failed:\n{result.stderr}"
    modules = json.loads(result.stdout.splitlines()[-1])
    before, after = set(modules["before"]), set(modules["after"])
    assert module in after
    added = {name.split(".")[0] for name in after - before}
    assert not added & FORBIDDEN, f"import {module} pulled in {sorted(added & FORBIDDEN)}"
    assert not after & ALWAYS_ABSENT, f"{sorted(after & ALWAYS_ABSENT)} loaded with {module}"


def test_dicomnet_connect_is_imported_on_first_use() -> None:
    probe = (
        "import sys, dicomnet; light = 'asyncio' not in sys.modules; "
        "from dicomnet.net.client import connect; "
        "print(light, dicomnet.connect is connect, 'connect' in dicomnet.__all__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["True", "True", "True"]
