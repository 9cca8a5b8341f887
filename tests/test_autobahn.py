"""The Autobahn client test suite, served by kosoku's fuzzing server, against wsfast.

A wsfast echo client (permessage-deflate offered) runs every case; each must end
OK, NON-STRICT or INFORMATIONAL, with a clean (or informational) close. The fast
subset runs on every path; 9.* and the long 12.*/13.* compression cases are marked
``slow`` (``make test`` runs them on the compiled path).

Each run writes its counts to ``.autobahn/<path>-<name>.json`` for the release notes.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import pathlib
import threading

import pytest

import wsfast
from wsfast import codec

kosoku = pytest.importorskip("kosoku", reason="kosoku needs Python 3.10+")

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASSING_CLOSE = {"OK", "INFORMATIONAL"}
AGENT = "wsfast"
REPORT_DIR = pathlib.Path(__file__).resolve().parent.parent / ".autobahn"

# kosoku's case 12/13 code reads its test data with open(fn, 'rb').read(), leaving each file
# to the garbage collector: its ResourceWarnings (errors in this suite) are not wsfast's.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <_io.FileIO name='[^']*kosoku:pytest.PytestUnraisableExceptionWarning")


def _echo_cases(port: int, errors: list) -> None:
    """The client side of the run: Autobahn's getCaseCount / runCase / updateReports protocol."""
    base = f"ws://127.0.0.1:{port}"
    try:
        with wsfast.connect(f"{base}/getCaseCount") as client:
            msg, ok = client.channel().receive(timeout=30)
            count = int(msg.data)
        for case in range(1, count + 1):
            try:
                # threshold 0: kosoku's 12.x/13.x cases need every echo compressed (DESIGN §5)
                client = wsfast.connect(f"{base}/runCase?case={case}&agent={AGENT}",
                                        compression=wsfast.COMPRESSION.CONTEXT_TAKEOVER,
                                        compression_threshold=0, read_limit=64 * 1024 * 1024,
                                        close_timeout=5)
            except wsfast.Error as exc:
                errors.append(f"case {case}: connect failed: {exc!r}")
                continue
            with client:
                for msg in client.channel():
                    try:
                        client.send(msg.data)
                    except wsfast.ConnectionClosed:
                        pass   # the case closed the connection; the channel ends next
                # the channel closes only once the connection has ended
        with wsfast.connect(f"{base}/updateReports?agent={AGENT}") as client:
            for _ in client.channel():
                pass
    except Exception as exc:  # reported by the test, not lost in the thread
        errors.append(repr(exc))


async def _async_echo_cases(port: int, errors: list) -> None:
    """The same client on the asyncio front end."""
    from wsfast.asyncio.client import connect

    base = f"ws://127.0.0.1:{port}"
    try:
        async with connect(f"{base}/getCaseCount") as client:
            msg, ok = await asyncio.wait_for(client.channel().receive(), 30)
            count = int(msg.data)
        for case in range(1, count + 1):
            try:
                client = await connect(f"{base}/runCase?case={case}&agent={AGENT}",
                                       compression=wsfast.COMPRESSION.CONTEXT_TAKEOVER,
                                       compression_threshold=0, read_limit=64 * 1024 * 1024,
                                       close_timeout=5)
            except wsfast.Error as exc:
                errors.append(f"case {case}: connect failed: {exc!r}")
                continue
            async with client:   # (leaving it waits for the end of TCP: no transport
                async for msg in client.channel():   # outlives the loop)
                    try:
                        await client.send(msg.data)
                    except wsfast.ConnectionClosed:
                        pass
        async with await connect(f"{base}/updateReports?agent={AGENT}") as client:
            async for _ in client.channel():
                pass
    except Exception as exc:
        errors.append(repr(exc))


async def _run(cases: list, front_end: str) -> list:
    errors: list = []
    async with kosoku.run_fuzzingserver(cases=cases, port=0) as server:
        if front_end == "sync":
            client, args = _echo_cases, (server.port, errors)
        else:   # an event loop of its own, in its own thread, as the sync client has
            client, args = asyncio.run, (_async_echo_cases(server.port, errors),)
        driver = threading.Thread(target=client, args=args, daemon=True)
        driver.start()
        try:
            results = await server.get_result()
        except kosoku.FailureError as exc:
            results = exc.results
    driver.join(30)
    assert not driver.is_alive(), "the echo client did not finish"
    assert not errors, errors
    return results


@pytest.fixture(params=[pytest.param("sync", marks=pytest.mark.xdist_group("autobahn-sync")),
                        pytest.param("asyncio", marks=[pytest.mark.xdist_group("autobahn-asyncio"),
                                                       pytest.mark.asyncio_twin])])
def front_end(request):
    """The echo client's front end. Each one's cases stay in one xdist worker, so that
    ``make test`` runs the two long groups side by side, one per core. The asyncio runs
    are twins of the sync ones (``make test-fast`` runs the sync core cases only)."""
    return request.param


def _check(name: str, cases: list, front_end: str = "sync") -> None:
    results = asyncio.run(_run(cases, front_end))
    counts = collections.Counter(r.behavior.value for r in results)
    close_counts = collections.Counter(r.behavior_close.value for r in results)
    path = ("compiled" if codec.COMPILED else "pure") + ("" if front_end == "sync" else "-asyncio")
    REPORT_DIR.mkdir(exist_ok=True)
    (REPORT_DIR / f"{path}-{name}.json").write_text(json.dumps(
        {"cases": cases, "total": len(results), "behavior": counts, "close": close_counts}, indent=1))
    bad = [(r.case_id, r.behavior.value, r.behavior_close.value, r.result)
           for r in results
           if r.behavior.value not in PASSING or r.behavior_close.value not in PASSING_CLOSE]
    print(f"\nAutobahn {name} ({path}): {len(results)} cases, {dict(counts)}, close {dict(close_counts)}")
    assert results, "no case ran"
    assert not bad, bad


def test_autobahn_framing_pings_closing_utf8(front_end):
    """Cases 1.* to 7.* and 10.*: framing, pings, reserved bits, opcodes, fragments, UTF-8, close."""
    _check("core", ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"], front_end)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_autobahn_limits_and_performance(front_end):
    """Cases 9.*: large messages and many frames."""
    _check("limits", ["9.*"], front_end)


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.skipif(os.environ.get("WSFAST_SKIP_AUTOBAHN_DEFLATE") == "1", reason="asked to skip")
def test_autobahn_permessage_deflate(front_end):
    """Cases 12.* and 13.*: permessage-deflate with every parameter combination."""
    _check("deflate", ["12.*", "13.*"], front_end)
