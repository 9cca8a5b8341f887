"""Leak and resource checks, short (``make leaks`` is the 10,000-cycle run): each scenario
of ``benchmarks/leaks.py``, 300 connect -> exchange -> close cycles per front end, in a
process of its own (so only the client is measured; the servers run in a child of it).

Bounds: at the checkpoints (after 100, 200 and 300 cycles) the open descriptors and the
threads are exactly those of the first checkpoint; RSS at most 16 MiB above it (generous:
300 cycles are too few to tell a small leak from the allocator's warm-up; the full run's
bound is 8 MiB over 9,000 cycles); every cycle's threads and sockets are gone within 2 s
of its end; no ResourceWarning, unraisable exception or loop exception-handler call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.leaks import SCENARIOS  # noqa: E402

pytestmark = pytest.mark.timeout(240)

FRONTS = ["sync", "asyncio"]
CYCLES = 300


def _run(front: str, out: str, results: dict) -> None:
    argv = [sys.executable, "-m", "benchmarks.leaks", "--front", front, "--cycles", str(CYCLES),
            "--every", "100", "--warmup", "100", "--rss-bound", "16", "--dial-timeout-ms", "10",
            "--json", out]
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=200)
        results[front] = (proc.returncode, proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired as exc:
        results[front] = (None, f"timed out: {exc}")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """Both front ends' runs, side by side (two processes): {(front, scenario): report}."""
    tmp = tmp_path_factory.mktemp("leaks")
    results: dict = {}
    threads = [threading.Thread(target=_run, args=(f, str(tmp / f"{f}.json"), results))
               for f in FRONTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(220)
    out = {}
    for front in FRONTS:
        rc, text = results.get(front, (None, "did not finish"))
        path = tmp / f"{front}.json"
        if not path.exists():
            pytest.fail(f"benchmarks.leaks --front {front} wrote no figures (status {rc}):\n{text[-3000:]}")
        for r in json.loads(path.read_text()):
            out[(front, r["scenario"])] = dict(r, output=text[-3000:])
    return out


# The asyncio client leaves the handshake future's exception unretrieved when the dial
# timeout cancels the wait ("Future exception was never retrieved" at every timed-out
# handshake): reported, the fix belongs to wsfast/asyncio/client.py.
_KNOWN = {("asyncio", "handshake-timeout")}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("front", FRONTS)
def test_no_descriptor_thread_or_memory_grows_over_the_cycles(figures, front, scenario, request):
    if (front, scenario) in _KNOWN:
        request.applymarker(pytest.mark.xfail(strict=True, reason="reported: asyncio client.py"))
    r = figures.get((front, scenario))
    assert r is not None, f"no figures for {front} {scenario}"
    points = r["points"]
    assert [p["cycle"] for p in points] == [100, 200, 300], points
    first = points[0]
    for p in points[1:]:
        assert p["fds"] <= first["fds"] and p["threads"] <= first["threads"], points
        assert p["rss_kib"] - first["rss_kib"] <= 16 * 1024, points
    assert r["outlived_max_ms"] < 2000, r
    assert r["failures"] == [], r["failures"]
