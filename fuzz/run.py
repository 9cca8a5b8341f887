"""One target under atheris: ``python -m fuzz.run TARGET [libFuzzer arguments]``.

wsfast's Python modules are instrumented for coverage as they are imported (the
compiled codec is instrumented when it was built with clang's
``-fsanitize=fuzzer-no-link``: see :mod:`fuzz.native`). ``python -m fuzz`` runs this
once per target; it can also be run by hand, e.g. to replay a crash file::

    python -m fuzz.run frames build/fuzz/artifacts/frames/crash-...
"""

from __future__ import annotations

import hashlib
import importlib
import sys

import atheris

from fuzz import TARGETS


def main(argv: list) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: python -m fuzz.run {{{','.join(TARGETS)}}} [libFuzzer arguments]")
    name = argv[1]
    with atheris.instrument_imports(include=["wsfast"]):
        import wsfast  # noqa: F401  (every wsfast module, instrumented)
        import wsfast.codec as codec
        module = importlib.import_module(f"fuzz.{name}")
    native = getattr(sys.modules.get("wsfast._codec"), "__file__", None)
    print(f"fuzz: target {name}; codec {'compiled' if codec.COMPILED else 'pure Python'}"
          f" ({native or 'extension not loaded'})", file=sys.stderr, flush=True)
    prefix = next((a.split("=", 1)[1] for a in argv if a.startswith("-artifact_prefix=")), "./")

    def one_input(data: bytes) -> None:
        try:
            module.one_input(data)
        except BaseException:
            # saved before libFuzzer's own crash path, which can die on the way (a slow
            # symbolizer under load ran into the -timeout alarm once, and no unit was written)
            path = f"{prefix}finding-{hashlib.sha1(data).hexdigest()}"
            with open(path, "wb") as f:
                f.write(data)
            print(f"fuzz: the input is saved in {path}", file=sys.stderr, flush=True)
            raise

    atheris.Setup([argv[0]] + argv[2:], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
