"""Build script: compiles the Cython codec, or installs pure Python when that is not possible.

``WSFAST_NO_EXTENSIONS=1`` skips the extension; so does a missing compiler or Cython,
in which case the package falls back to ``wsfast._codec_py`` at run time.

The codec inflates permessage-deflate with zlib's C API when a test program with
``zlib.h`` compiles and links with ``-lz`` (Linux, macOS); otherwise (Windows, no zlib
headers, or ``WSFAST_NO_CZLIB=1``) it uses Python's ``zlib`` module.

``wsfast.asyncio._chaniter`` (the compiled ``async for`` of the asyncio channels) is built
the same way; when it is missing, ``wsfast.asyncio.channels`` uses its pure-Python twin.
"""

import os
import sys
import tempfile

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
            if ext.name == "wsfast._codec" and self._have_zlib():
                ext.define_macros.append(("WSFAST_HAVE_ZLIB", "1"))
                ext.libraries.append("z")
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    def _have_zlib(self):
        """True when a program including zlib.h compiles and links with -lz."""
        if sys.platform == "win32" or os.environ.get("WSFAST_NO_CZLIB", "") not in ("", "0"):
            return False
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "zcheck.c")
            with open(src, "w") as f:
                f.write("#include <zlib.h>\n"
                        "int main(void) { z_stream s = {0};\n"
                        "    return inflateInit2(&s, -15) == Z_OK ? inflateEnd(&s) : 1; }\n")
            try:
                objs = self.compiler.compile([src], output_dir=tmp)
                self.compiler.link_executable(objs, "zcheck", output_dir=tmp, libraries=["z"])
            except Exception:  # CompileError, LinkError
                sys.stderr.write("NOTE: zlib.h or libz not found; the codec inflates with Python's zlib.\n")
                return False
        return True

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
        exts = []
        if os.path.exists("wsfast/_codec.c"):
            exts.append(Extension("wsfast._codec", ["wsfast/_codec.c"], extra_compile_args=_cflags(),
                                  depends=["wsfast/_zshim.h"]))
        if os.path.exists("wsfast/asyncio/_chaniter.c"):
            exts.append(Extension("wsfast.asyncio._chaniter", ["wsfast/asyncio/_chaniter.c"],
                                  extra_compile_args=_cflags()))
        if not exts:
            sys.stderr.write("WARNING: Cython is not installed; installing the pure-Python codec.\n")
        return exts
    return cythonize(
        [Extension("wsfast._codec", ["wsfast/_codec.pyx"], extra_compile_args=_cflags(),
                   depends=["wsfast/_zshim.h"]),
         Extension("wsfast.asyncio._chaniter", ["wsfast/asyncio/_chaniter.pyx"],
                   extra_compile_args=_cflags())],
        compiler_directives={"language_level": "3"},
    )


def _cflags():
    if sys.platform == "win32":
        return ["/O2"]
    return ["-O3"]


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
