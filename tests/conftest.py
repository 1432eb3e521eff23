"""Fixtures shared by the dicomnet test suite."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

_CODEC_MODULES = {"python": "dicomnet.core._pdu_py", "cython": "dicomnet.core._pdu"}


@pytest.fixture(params=sorted(_CODEC_MODULES))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """Each codec implementation in turn: the pure twin and the compiled one.

    A missing compiled codec fails its half of every test, so a broken build
    cannot pass as a green run; only the pure-only pass
    (``DICOMNET_NO_EXTENSIONS=1``) skips it.
    """
    name: str = request.param
    try:
        return importlib.import_module(_CODEC_MODULES[name])
    except ImportError as error:
        if name == "cython" and os.environ.get("DICOMNET_NO_EXTENSIONS", "") == "1":
            pytest.skip("DICOMNET_NO_EXTENSIONS=1: pure-Python pass, compiled codec not tested")
        pytest.fail(
            f"compiled codec dicomnet.core._pdu cannot be imported ({error}); "
            "build it with `pip install -e .`"
        )
