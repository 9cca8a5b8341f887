"""The compiled codec built for fuzzing: clang, ``-fsanitize=fuzzer-no-link`` (coverage
counters and comparison traces that libFuzzer inside atheris reads) plus AddressSanitizer,
into a directory of its own (the in-place extension is not touched).

The build is the project's own (``pip wheel`` of a copy of the sources, so setup.py and
Cython are as in a normal install), cached under ``build/fuzz/native-<hash>`` by the
hash of the sources, the flags and the compiler. At run time the extension needs
libFuzzer's and ASan's symbols from the process: the runner preloads the
``asan_with_fuzzer.so`` that atheris ships.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("wsfast", "setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in")
CC = "clang -fsanitize=address"          # ASan on compile only: the runtime is preloaded
CFLAGS = "-fsanitize=fuzzer-no-link -g"


def preload() -> Optional[str]:
    """atheris' ASan runtime with libFuzzer linked in, or None."""
    import atheris
    path = os.path.join(atheris.path(), "asan_with_fuzzer.so")
    return path if os.path.exists(path) else None


def _files():
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*")
                              if p.is_file() and p.suffix in (".py", ".pyx", ".pxd", ".h", ".typed"))
        elif path.exists():
            yield path


def build(log=sys.stderr) -> Tuple[Optional[Path], str]:
    """(directory to put first on PYTHONPATH, how) or (None, why not)."""
    clang = shutil.which("clang")
    if clang is None:
        return None, "no clang on PATH (apt-get install clang): the extension is not instrumented"
    if preload() is None:
        return None, "atheris has no asan_with_fuzzer.so: the extension is not instrumented"
    version = subprocess.run([clang, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    for item in (CC, CFLAGS, version, sys.version):
        digest.update(item.encode())
    for path in _files():
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    out = ROOT / "build" / "fuzz" / f"native-{digest.hexdigest()[:16]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / "native.lock", "w") as lock:   # one build at a time (parallel runs)
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(out, clang, log)


def _build(out: Path, clang: str, log) -> Tuple[Optional[Path], str]:
    site = out / "site"
    if list(site.glob("wsfast/_codec*.so")):
        return site, f"instrumented extension (cached): {site}"
    print(f"fuzz: building the instrumented extension with {clang} into {out} ...", file=log, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        for path in _files():
            dest = src / path.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        env = dict(os.environ, CC=CC, LDSHARED="clang -shared", CFLAGS=CFLAGS)
        env.pop("WSFAST_NO_EXTENSIONS", None)
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                               str(Path(tmp) / "wheel"), str(src)],
                              env=env, capture_output=True, text=True)
        wheels = list((Path(tmp) / "wheel").glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            return None, f"building the instrumented extension failed: {proc.stderr[-2000:]}"
        shutil.rmtree(out, ignore_errors=True)
        with zipfile.ZipFile(wheels[0]) as whl:
            whl.extractall(site)
    if not list(site.glob("wsfast/_codec*.so")):
        shutil.rmtree(out, ignore_errors=True)
        return None, "the instrumented build produced no extension (setup.py fell back): " + \
            proc.stderr[-2000:]
    return site, f"instrumented extension (clang, fuzzer-no-link + ASan): {site}"
