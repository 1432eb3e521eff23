"""Users import from ``dicomnet`` (plus ``dicomnet.sync`` and ``dicomnet.testing``).

Every public name resolves to the object its module defines, lazily: a bare
``import dicomnet`` loads no event loop, and the README and the docs import
from nowhere else.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import dicomnet

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = {"dicomnet", "dicomnet.sync", "dicomnet.testing"}


def test_every_public_name_resolves_to_its_definition() -> None:
    assert "Listener" in dicomnet.__all__ and "connect" in dicomnet.__all__
    assert isinstance(dicomnet.__version__, str)
    for name, module in dicomnet._LAZY.items():
        assert name in dicomnet.__all__, name
        assert getattr(dicomnet, name) is getattr(importlib.import_module(module), name)
    eager = set(dicomnet.__all__) - set(dicomnet._LAZY) - {"__version__"}
    for name in eager:
        assert issubclass(getattr(dicomnet, name), dicomnet.DicomNetError), name
    assert sorted(dicomnet.__all__) == sorted(set(dicomnet.__all__))


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        dicomnet.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("dicomnet.NoSuchThing resolved")


def test_import_dicomnet_loads_no_event_loop() -> None:
    probe = (
        "import sys, dicomnet; light = 'asyncio' not in sys.modules; "
        "dicomnet.Listener; print(light, 'asyncio' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["True", "True"]


def test_readme_and_docs_import_only_the_public_modules() -> None:
    pattern = re.compile(
        r"^\s*(?:from\s+(dicomnet[\w.]*)\s+import|import\s+(dicomnet[\w.]*))", re.M
    )
    offenders = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in pattern.finditer(path.read_text()):
            module = match.group(1) or match.group(2)
            if module not in PUBLIC_MODULES:
                offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert not offenders, "\n".join(offenders)
