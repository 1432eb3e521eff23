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
"""

import os
import sys

from setuptools import Extension, setup

ext_modules = []
pure = os.environ.get("DICOMNET_NO_EXTENSIONS", "") == "1" or sys.implementation.name == "pypy"
if not pure:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("dicomnet.core._pdu", ["src/_pdu.pyx"])],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "freethreading_compatible": True,
        },
    )

setup(ext_modules=ext_modules)
