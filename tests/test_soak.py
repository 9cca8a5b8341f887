"""Soak through injected faults, short (``make soak`` is the 30-minute run): the soak of
``benchmarks/soak.py`` in a process of its own per front end, the two side by side.

A stream of numbered messages through the fault relay's random schedule (resets
mid-frame, half-open silences and stalls past the keepalive bound, which end a
connection; shorter stalls and trickles, which must be survived) to
``wsfast.reconnecting`` / ``wsfast.asyncio.reconnecting``, each connection resuming
from the number its client names. The run itself checks (and fails otherwise): per
connection nothing lost, duplicated, reordered or altered; every drop detected within
``ping_interval + ping_timeout`` (+0.5 s) and the stream back within that plus
``backoff_max``; no connection ends that the schedule did not end; RSS flat. Here,
besides: the schedule did inject each kind of drop and the stream did move.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = [pytest.mark.timeout(300), pytest.mark.hardening]   # (make test; not test-fast)

try:
    import uvloop  # noqa: F401
    LOOPS = ["asyncio", "uvloop"]
except ImportError:
    LOOPS = ["asyncio"]


def _soak(runs: dict, key: str, tmp, seconds: float, front: str, loop: str = "asyncio",
          seed: int = 1) -> None:
    out = tmp / f"{key}.json"
    argv = [sys.executable, "-m", "benchmarks.soak", "--seconds", str(seconds), "--front", front,
            "--loop", loop, "--span", "200000", "--sample", "2", "--seed", str(seed),
            "--json", str(out)]
    try:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60)
        text = proc.stdout + proc.stderr
        rc = proc.returncode
    except subprocess.TimeoutExpired as exc:
        rc, text = None, f"timed out: {exc}"
    runs[key] = (rc, text, json.loads(out.read_text()) if out.exists() else None)


def _side_by_side(tmp, seconds: float, specs: dict) -> dict:
    runs: dict = {}
    threads = [threading.Thread(target=_soak, args=(runs, key, tmp, seconds) + spec)
               for key, spec in specs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 90)
    return runs


def _check(run, min_drops: int) -> None:
    assert run is not None, "the soak did not finish"
    rc, text, result = run
    assert result is not None, f"no figures (status {rc}):\n{text[-3000:]}"
    assert result["failures"] == [], result["failures"]
    assert rc == 0, text[-3000:]
    drops = sum(result["ended_by"].values())
    assert drops >= min_drops, result
    # each way of dying was there: a reset, and one only the keepalive can find
    assert result["detect_s"].get("reset", {}).get("n", 0) >= 1, result["detect_s"]
    keepalive = sum(result["detect_s"].get(k, {}).get("n", 0) for k in ("silence", "long stall"))
    assert keepalive >= 1, result["detect_s"]
    assert result["recover_s"]["n"] >= min_drops - 1
    assert result["messages"] > 300, result


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    return _side_by_side(tmp_path_factory.mktemp("soak"), 12,
                         {"sync": ("sync",), "asyncio": ("asyncio",)})


@pytest.mark.parametrize("front", ["sync", "asyncio"])
def test_a_short_soak_loses_nothing_and_recovers_every_drop_in_bound(short_runs, front):
    _check(short_runs.get(front), 3)


@pytest.mark.slow
def test_a_longer_soak_on_every_front_end_and_loop(tmp_path):
    specs = {"sync": ("sync", "asyncio", 2)}
    for loop in LOOPS:
        specs[f"asyncio-{loop}"] = ("asyncio", loop, 2)
    runs = _side_by_side(tmp_path, 40, specs)
    for key in specs:
        _check(runs.get(key), 8)
