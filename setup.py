"""Build the compiled codec ``dicomnet.core._pdu`` from ``src/_pdu.pyx``.

``DICOMNET_NO_EXTENSIONS=1`` at build time skips the extension, which yields
the pure-Python package (``dicomnet.core._pdu_py`` serves in its place).
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("DICOMNET_NO_EXTENSIONS", "") != "1":
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("dicomnet.core._pdu", ["src/_pdu.pyx"])],
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
    )

setup(ext_modules=ext_modules)
