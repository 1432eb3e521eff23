"""Build the compiled codec ``dicomnet.core._pdu`` from ``src/_pdu.pyx``.

``DICOMNET_NO_EXTENSIONS=1`` at build time skips the extension, which yields
the pure-Python package (``dicomnet.core._pdu_py`` serves in its place).
PyPy always gets the pure package: its JIT runs the pure codec well, while a
Cython extension would go through the slow cpyext emulation layer.

The codec is declared free-threading compatible: it keeps no mutable module
state (its two module dicts are read-only tables), and each reader or
assembler belongs to one association, which one event loop drives, so no
object of it is ever touched by two threads at once. A free-threaded
CPython (3.13t) therefore keeps its GIL off when it imports the codec.

Where OpenSSL's headers are found (Debian: ``libssl-dev``) the codec links
libcrypto and hashes each dataset while it writes it; elsewhere the storage
hashes the written file instead (``DICOMNET_OPENSSL=0`` forces that).
"""

from __future__ import annotations

import os
import sys
import sysconfig

from setuptools import Extension, setup


def openssl_include() -> str | None:
    """The folder holding openssl/evp.h, or None."""
    if os.environ.get("DICOMNET_OPENSSL", "") == "0":
        return None
    candidates = [
        sysconfig.get_paths().get("include", ""),
        "/usr/include",
        "/usr/local/include",
        "/opt/homebrew/opt/openssl/include",
        "/usr/local/opt/openssl/include",
    ]
    for folder in candidates:
        if folder and os.path.exists(os.path.join(folder, "openssl", "evp.h")):
            return folder
    return None


ext_modules = []
pure = os.environ.get("DICOMNET_NO_EXTENSIONS", "") == "1" or sys.implementation.name == "pypy"
if not pure:
    from Cython.Build import cythonize

    include = openssl_include()
    options = {}
    if include is not None:
        options = {
            "define_macros": [("DICOMNET_WITH_OPENSSL", "1")],
            "include_dirs": [include],
            "libraries": ["crypto"],
        }
        if include not in ("/usr/include", "/usr/local/include"):
            options["library_dirs"] = [os.path.join(os.path.dirname(include), "lib")]
    ext_modules = cythonize(
        [
            Extension(
                "dicomnet.core._pdu",
                ["src/_pdu.pyx"],
                depends=["src/_pdu_digest.h", "src/_pdu_writev.h"],
                **options,
            )
        ],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "freethreading_compatible": True,
        },
    )

setup(ext_modules=ext_modules)
