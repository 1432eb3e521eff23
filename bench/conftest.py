"""Every benchmark runs on both codecs, like the tests."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

# the tests' dataset factory (bench_header.py)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


@pytest.fixture(params=["python", "cython"])
def codec(request: pytest.FixtureRequest) -> ModuleType:
    name = "dicomnet.core._pdu_py" if request.param == "python" else "dicomnet.core._pdu"
    return importlib.import_module(name)
