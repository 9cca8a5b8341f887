#!/usr/bin/env bash
# make test-asan: the compiled codec built with AddressSanitizer and UndefinedBehaviorSanitizer
# (gcc, -fsanitize=address,undefined -fno-sanitize-recover=all) into a directory of its own (the
# in-place extension is not touched), then the codec and protocol tests and a short fuzz run of
# the frame and handshake targets with it first on PYTHONPATH. Python itself is not
# instrumented: the sanitizer runtimes are preloaded. Any sanitizer report fails the run (pytest
# captures at the sys level only, so a report written to fd 2 just before the process halts is seen).
#   usage: bash fuzz/asan.sh PYTHON        (FUZZ_SECONDS=60 per fuzz target by default)
set -euo pipefail
PY="${1:-.venv/bin/python}"
# absolute, but not resolved: a venv's python is a symlink to the base interpreter
case "$PY" in /*) ;; */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
CC="${CC:-gcc}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/wsfast-asan.XXXXXX")"
[ -n "${ASAN_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "asan: no $CC: cannot build the sanitized extension" >&2
    exit 1
fi
LIBASAN="$("$CC" -print-file-name=libasan.so)"
LIBUBSAN="$("$CC" -print-file-name=libubsan.so)"
for lib in "$LIBASAN" "$LIBUBSAN"; do
    if [ ! -e "$lib" ]; then
        echo "asan: $CC has no $(basename "$lib") (install libasan/libubsan)" >&2
        exit 1
    fi
done

echo "asan: building the extension with $CC -fsanitize=address,undefined into $WORK" >&2
mkdir -p "$WORK/src"
(cd "$ROOT" && find wsfast -type f \( -name '*.py' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.h' \
        -o -name 'py.typed' \) -not -path '*/__pycache__/*' -print0 \
    | xargs -0 -I{} cp --parents {} "$WORK/src/" \
    && cp setup.py pyproject.toml README.md LICENSE MANIFEST.in "$WORK/src/")
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
env -u WSFAST_NO_EXTENSIONS CC="$CC" CFLAGS="$SAN" LDSHARED="$CC -shared $SAN" \
    "$PY" -m pip wheel -q --no-deps -w "$WORK/wheel" "$WORK/src" > "$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log" >&2; exit 1; }
mkdir -p "$WORK/site"
(cd "$WORK/site" && "$PY" -m zipfile -e "$WORK"/wheel/*.whl .)
SO="$(ls "$WORK"/site/wsfast/_codec*.so 2>/dev/null | head -1)"
if [ -z "$SO" ] || [ "$(nm -D "$SO" | grep -c __asan_report)" = 0 ]; then
    echo "asan: the build produced no sanitized extension:" >&2
    cat "$WORK/build.log" >&2
    exit 1
fi

export PYTHONPATH="$WORK/site"
export LD_PRELOAD="$LIBASAN $LIBUBSAN"
# Python is not instrumented and never frees some memory: no leak checks. Everything else halts.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONDONTWRITEBYTECODE=1
LOG="$WORK/asan.log"
status=0
cd "$WORK"   # not the checkout: its wsfast must not shadow the sanitized one
"$PY" -c "import sys, wsfast._codec as c, wsfast.codec as k; assert c.__file__.startswith('$WORK'), c.__file__; \
assert k.COMPILED; print('asan: codec', c.__file__, file=sys.stderr)"

echo "asan: tests/test_codec.py tests/test_protocol.py" >&2
# make test's hypothesis profile ("ci": derandomized, 100 examples) without its 200 ms deadline:
# the sanitized build is several times slower, and a deadline is not what is tested here
# (tests/conftest.py loads the profile WSFAST_HYPOTHESIS_PROFILE names; this plugin, loaded
# first with -p, registers it)
cat > "$WORK/wsfast_asan_profile.py" <<'PYEOF'
from hypothesis import settings
settings.register_profile("asan", derandomize=True, database=None, max_examples=100, deadline=None)
PYEOF
WSFAST_HYPOTHESIS_PROFILE=asan "$PY" -m pytest "$ROOT/tests/test_codec.py" "$ROOT/tests/test_protocol.py" \
    -q -p no:cacheprovider -p wsfast_asan_profile --capture=sys \
    --rootdir="$ROOT" -c "$ROOT/pyproject.toml" 2>&1 | tee "$LOG" || status=1

if "$PY" -c "import atheris" 2>/dev/null; then
    # 1. Every input of the corpora (the seeds, and what make fuzz found and kept under
    #    build/fuzz) once through its target, with the gcc ASan+UBSan build. (libFuzzer sees
    #    no coverage under gcc's preloaded runtimes, which take its callbacks: this is a
    #    replay, not a search.)
    for t in frames http urls options; do
        dirs=("$ROOT/fuzz/corpus/$t")
        for d in "$ROOT"/build/fuzz/corpus/"$t" "$ROOT"/build/fuzz/*/corpus/"$t"; do
            [ -d "$d" ] && dirs+=("$d")
        done
        n=$(find "${dirs[@]}" -type f | wc -l)
        echo "asan: replaying $n inputs through $t" >&2
        mkdir -p "$WORK/replay/$t"
        PYTHONPATH="$WORK/site:$ROOT" "$PY" -m fuzz.run "$t" "$WORK/replay/$t" "${dirs[@]}" -runs=0 \
            -timeout=120 -rss_limit_mb=4096 -artifact_prefix="$WORK/replay/" >> "$LOG" 2>&1 \
            || { echo "asan: replaying $t FAILED (see above)" >&2; status=1; tail -60 "$LOG" >&2; }
    done
    # 2. A short coverage-guided run of the frame and handshake targets: with clang, the
    #    extension instrumented for coverage and ASan (fuzz/native.py); without, blind, on
    #    the gcc build.
    if command -v clang >/dev/null 2>&1; then
        echo "asan: fuzzing frames and http for $FUZZ_SECONDS s each (clang: coverage + ASan)" >&2
        native=on
    else
        echo "asan: no clang: fuzzing frames and http for $FUZZ_SECONDS s each on the gcc build," \
             "without coverage feedback" >&2
        native=off
    fi
    (cd "$ROOT" && PYTHONPATH="$WORK/site" "$PY" -m fuzz --native "$native" --seconds "$FUZZ_SECONDS" \
        --targets frames,http --out "$WORK/fuzz") 2>&1 | tee -a "$LOG" || status=1
    cat "$WORK"/fuzz/logs/*.log >> "$LOG" 2>/dev/null || true
else
    echo "asan: atheris is not installed: no fuzz run under the sanitizers" | tee -a "$LOG" >&2
fi

if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|UndefinedBehaviorSanitizer" "$LOG"; then
    echo "asan: SANITIZER REPORT:" >&2
    grep -E -A30 "ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer" "$LOG" | head -80 >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "asan: FAILED" >&2
else
    echo "asan: passed: no sanitizer report" >&2
fi
exit "$status"
