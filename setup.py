"""Build the compiled codec ``dicomnet.core._pdu`` from ``src/_pdu.pyx``.

``DICOMNET_NO_EXTENSIONS=1`` at build time skips the extension, which yields
the pure-Python package (``dicomnet.core._pdu_py`` serves in its place).

The codec is declared free-threading compatible: it keeps no mutable module
state (its two module dicts are read-only tables), and each reader or
assembler belongs to one association, which one event loop drives, so no
object of it is ever touched by two threads at once. A free-threaded
CPython (3.13t) therefore keeps its GIL off when it imports the codec.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("DICOMNET_NO_EXTENSIONS", "") != "1":
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
