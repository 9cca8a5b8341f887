"""Build script: compiles the Cython codec, or installs pure Python when that is not possible.

``WSFAST_NO_EXTENSIONS=1`` skips the extension; so does a missing compiler or Cython,
in which case the package falls back to ``wsfast._codec_py`` at run time.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that degrades to a pure-Python install when compiling fails."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers...
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        sys.stderr.write(
            f"WARNING: wsfast's compiled codec could not be built ({exc}); "
            "installing the pure-Python codec instead.\n")


def extensions():
    if os.environ.get("WSFAST_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if os.path.exists("wsfast/_codec.c"):
            return [Extension("wsfast._codec", ["wsfast/_codec.c"], extra_compile_args=_cflags())]
        sys.stderr.write("WARNING: Cython is not installed; installing the pure-Python codec.\n")
        return []
    return cythonize(
        [Extension("wsfast._codec", ["wsfast/_codec.pyx"], extra_compile_args=_cflags())],
        compiler_directives={"language_level": "3"},
    )


def _cflags():
    if sys.platform == "win32":
        return ["/O2"]
    return ["-O3"]


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
