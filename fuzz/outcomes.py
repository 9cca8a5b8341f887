"""The error paths the fuzzers reach: ``python -m fuzz.outcomes [--build] [--uncovered]``.

Replays every input of every target's corpus through the target's own ``one_input``
(the checked-in seeds, ``fuzz/corpus/TARGET``; with ``--build`` also what the fuzz runs
kept under ``build/fuzz``) and records every ``wsfast.Error`` made on the way, whether the
target let it out or caught it (a target catches the typed errors: they are fine
outcomes). A *path* is an error class, its close code and its message with the
particulars taken out (numbers become ``N``, quoted values ``'…'``); an input that made
no error counts as ``ok``. Prints, per target, the (class, close code) pairs with how
many paths and inputs reached each, then every path with an input that reaches it.

``tests/test_bad_input.py`` has a case for each path, through a real connection;
``--uncovered`` lists the paths it has none for (after a fuzz session: ``--build
--uncovered``). docs/reliability.md ("Bad input: every error path") has the table.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from fuzz import TARGETS

ROOT = Path(__file__).resolve().parent.parent
_QUOTED = re.compile(r"""b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*\"""")
_NUMBER = re.compile(r"(?<![A-Za-z])(?:0x[0-9a-f]+|\d+(?:\.\d+)?)")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^\s,()]*[^\s,():])?")
_DENIED_FOR = re.compile(r"(denied for )\S+(?=: )")
_PARTICULARS = (   # the peer's words, after what the path is
    (re.compile(r"(upgrade: HTTP N)( .*)?$"), r"\1 …"),
    (re.compile(r"refused the tunnel to \S+: N.*"), "refused the tunnel to …: N …"),
    (re.compile(r"(IDNA N(?: label '…')?) \(.*\)$"), r"\1 (idna's message)"),
    (re.compile(r"%N[0-9A-F]? in the path"), "%XX in the path"),
    (re.compile(r"^(?:environment variable \S+|option '…'): invalid proxy URL"),
     "<source>: invalid proxy URL"),
    (re.compile(r"(unknown parameter|duplicate parameter|a value for|quoted value of|parameter) \S+"),
     r"\1 …"),
    (re.compile(r"\w+_max_window_bits must be"), "…_max_window_bits must be"),
    (re.compile(r"extensions \([^)]*\)"), "extensions (…)"),
    (re.compile(r"several subprotocols: .*"), "several subprotocols: …"),
    (re.compile(r"\bgot .*$"), "got …"),
    (re.compile(r"hook \S+ (raised|returned) \w+"), r"hook … \1 …"),
    (re.compile(r"denied by hook \S+"), "denied by hook …"),
    (re.compile(r"(invalid compressed data): .*"), r"\1: … (zlib's message)"),
    (re.compile(r"datetime\.timedelta\([^)]*\)"), "'…'"),
)


def template(message: str) -> str:
    """The message without its particulars: the path, not the input."""
    text = _QUOTED.sub("'…'", message)
    text = _DENIED_FOR.sub(r"\1<url>", text)   # (a URL that is not normalised may hold anything)
    text = _URL.sub("<url>", text)
    text = _NUMBER.sub("N", text).replace("UTF-N", "UTF-8").replace("Latin-N", "Latin-1")
    for pattern, repl in _PARTICULARS:
        text = pattern.sub(repl, text)
    return text


@contextmanager
def recording():
    """Every wsfast.Error made inside the block, in order (the list yielded)."""
    from wsfast.errors import Error

    made: list = []
    real = Error.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        made.append(self)

    Error.__init__ = init   # subclasses reach it through super(): every error is seen
    try:
        yield made
    finally:
        Error.__init__ = real


def corpus_files(target: str, build: bool) -> list:
    dirs = [ROOT / "fuzz" / "corpus" / target]
    if build:
        dirs += sorted(p for p in (ROOT / "build" / "fuzz").glob(f"**/corpus/{target}") if p.is_dir())
    return [f for d in dirs if d.is_dir() for f in sorted(d.iterdir()) if f.is_file()]


def replay(target: str, files: list) -> dict:
    """{(class, close code, template): [inputs]}; ("ok", None, "") for inputs with no error,
    ("FINDING", None, message) for an input whose target reports a finding."""
    import importlib

    module = importlib.import_module(f"fuzz.{target}")
    paths: dict = defaultdict(list)
    for f in files:
        with recording() as made:
            try:
                module.one_input(f.read_bytes())
            except Exception as exc:   # a finding (or an untyped exception): shown, not hidden
                paths[("FINDING", None, f"{type(exc).__name__}: {exc}"[:200])].append(f)
        seen = {(type(e).__name__, e.close_code, template(str(e))) for e in made}
        for key in seen or {("ok", None, "")}:
            paths[key].append(f)
    return paths


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def render(results: dict, counts: dict) -> str:
    out = ["| target | error | close code | paths | inputs |", "|---|---|---|---:|---:|"]
    for target, paths in results.items():
        pairs: dict = defaultdict(lambda: [0, set()])
        for (cls, code, _msg), files in paths.items():
            pairs[(cls, code)][0] += 1
            pairs[(cls, code)][1].update(files)
        for (cls, code), (n, files) in sorted(pairs.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            out.append(f"| {target} | {cls} | {code if code is not None else '–'} | {n} | {len(files)} |")
    out += ["", "| target | error | close code | path (message, particulars taken out) | inputs | e.g. |",
            "|---|---|---|---|---:|---|"]
    for target, paths in results.items():
        for (cls, code, msg), files in sorted(paths.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0,
                                                                              kv[0][2])):
            msg = (msg if len(msg) <= 110 else msg[:109] + "…").replace("|", "\\|")
            out.append(f"| {target} | {cls} | {code if code is not None else '–'} | {msg} | "
                       f"{len(files)} | `{Path(files[0]).name}` |")
    out += ["", "inputs replayed: " + ", ".join(f"{t} {n}" for t, n in counts.items())]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.outcomes", description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--build", action="store_true",
                    help="also replay the corpora the fuzz runs kept under build/fuzz")
    ap.add_argument("--uncovered", action="store_true",
                    help="list only the paths with no case in tests/test_bad_input.py (exit 1 if any)")
    args = ap.parse_args(argv)
    import wsfast.codec as codec

    results, counts = {}, {}
    for target in args.targets.split(","):
        files = corpus_files(target, args.build)
        counts[target] = len(files)
        results[target] = replay(target, files)
    finding = any(k[0] == "FINDING" for paths in results.values() for k in paths)
    if args.uncovered:
        missing = uncovered(results)
        for target, (cls, code, message), files in missing:
            print(f"{target}: {cls} {code if code is not None else '–'} {message!r} (e.g. {_rel(files[0])})")
        print(f"{len(missing)} path(s) with no case in tests/test_bad_input.py")
        return 1 if missing or finding else 0
    print(f"codec: {'compiled' if codec.COMPILED else 'pure Python'} "
          f"(frames compares every codec path that is built)\n")
    print(render(results, counts))
    return 1 if finding else 0


def uncovered(results: dict) -> list:
    """(target, path, inputs) of the paths reached that tests/test_bad_input.py has no case for."""
    sys.path[:0] = [str(ROOT / "tests")]   # (it imports conftest's helpers)
    import test_bad_input

    have = test_bad_input.case_paths() | test_bad_input.NO_PUBLIC_PATH.keys()
    return [(target, key, files) for target, paths in results.items() for key, files in paths.items()
            if key[0] != "ok" and key not in have]


if __name__ == "__main__":
    sys.exit(main())
