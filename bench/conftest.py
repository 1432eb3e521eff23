"""Every benchmark runs on both codecs, like the tests."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


@pytest.fixture(params=["python", "cython"])
def codec(request: pytest.FixtureRequest) -> ModuleType:
    name = "dicomnet.core._pdu_py" if request.param == "python" else "dicomnet.core._pdu"
    return importlib.import_module(name)
