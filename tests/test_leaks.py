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
import time

import pytest
from conftest import close_frame, read_until_close, reader_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.leaks import SCENARIOS, socket_fds  # noqa: E402

pytestmark = [pytest.mark.timeout(240), pytest.mark.hardening]   # (make test; not test-fast)

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


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("front", FRONTS)
def test_no_descriptor_thread_or_memory_grows_over_the_cycles(figures, front, scenario):
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


# ---------------------------------------------------------------------- close() and the FIN

def _close_reply_then_hold(server) -> None:
    """Answer the client's close frame, then keep TCP open until the client's FIN (5 s)."""
    code, reason, _ = read_until_close(server.conn)
    server.conn.sendall(close_frame(code, reason))
    server.conn.settimeout(5)
    try:
        while server.conn.recv(4096):
            pass
    except OSError:
        pass


@pytest.mark.parametrize("front", FRONTS)
def test_once_close_returns_the_socket_is_closed_even_if_the_server_holds_tcp(raw_server, front):
    """DESIGN §1: close waits at most close_timeout for the server's close frame and TCP
    FIN, then drops the socket and returns. A server that answers the close frame and
    never ends TCP: close() returns within close_timeout, with its socket closed and its
    thread gone (it returned at once before, the socket and the reader thread living on
    for another close_timeout; the asyncio front end's close() waits for the transport's
    end since b5d5877)."""
    server = raw_server(_close_reply_then_hold)
    before = socket_fds()   # (the server's listener)
    if front == "sync":
        import wsfast
        client = wsfast.connect(server.url, close_timeout="600ms")
        start = time.monotonic()
        client.close()
        took = time.monotonic() - start
        left = socket_fds()
        assert reader_threads() == []
    else:
        import asyncio

        import wsfast.asyncio as wa

        async def main():
            base = socket_fds()   # (the loop's self-pipe is a socket pair)
            client = await wa.connect(server.url, close_timeout="600ms")
            start = time.monotonic()
            await client.close()
            return base, time.monotonic() - start, socket_fds()
        before, took, left = asyncio.run(main())
    # the server's end of the connection is open until it sees our FIN: one socket more at most
    assert left <= before + 1, (before, left)
    assert took < 0.6 + 0.5, took
    assert server.done.wait(5) and server.error is None, server.error


# ---------------------------------------------------------------------- asyncio dial

class _PassesAfter(float):
    """A deadline that is in the future for the first ``n`` looks at it, then past: the
    dial timeout expiring between two steps of a dial, deterministically."""

    def __new__(cls, n: int) -> _PassesAfter:
        self = super().__new__(cls, 0.0)
        self.looks = n
        return self

    def __sub__(self, other: float) -> float:
        self.looks -= 1
        return 1.0 if self.looks >= 0 else -1.0


def test_an_asyncio_dial_timing_out_between_steps_leaves_no_coroutine_unawaited(ws_server):
    """The bound of each step is taken before its coroutine is made: a Timeout raised while
    computing it left the coroutine never awaited ("coroutine 'create_connection' was never
    awaited", seen in the handshake-timeout leak runs)."""
    import asyncio
    import gc
    import warnings

    import wsfast
    from wsfast.asyncio.dial import dial
    from wsfast.asyncio.engine import Connection
    from wsfast.options import parse_options
    from wsfast.policy import parse_url
    from wsfast.protocol import Protocol

    server = ws_server()
    target = parse_url(server.url)
    opts = parse_options(None, {})

    async def main():
        with pytest.raises(wsfast.Timeout):
            # one look at the deadline for the TCP connect, then it has passed
            await dial(target, opts, _PassesAfter(1), lambda: Connection(Protocol(target, opts), opts))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


class _Looks(float):
    """A deadline whose time left is ``values`` at successive looks, then passed."""

    def __new__(cls, values: list) -> _Looks:
        self = super().__new__(cls, 0.0)
        self.values = list(values)
        return self

    def __sub__(self, other: float) -> float:
        return self.values.pop(0) if self.values else -1.0


def test_an_asyncio_dial_timing_out_once_the_transport_is_made_logs_no_lost_exception(ws_server):
    """A dial timeout that cancels create_connection after the transport (and our
    Connection) was made closes that transport, which ends the connection's handshake with
    an error nobody waited for: asyncio logged 'Future exception was never retrieved' for
    it (twice in the 10,000 handshake-timeouts of a full leak run). 1 ns left for the last
    step makes it happen every time on the default loop."""
    import asyncio
    import gc

    import wsfast
    from wsfast.asyncio.dial import dial
    from wsfast.asyncio.engine import Connection
    from wsfast.options import parse_options
    from wsfast.policy import parse_url
    from wsfast.protocol import Protocol

    server = ws_server()
    target = parse_url(server.url)
    opts = parse_options(None, {})
    logged = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: logged.append(ctx["message"]))
        for _ in range(5):
            with pytest.raises(wsfast.Timeout):
                await dial(target, opts, _Looks([1.0, 1e-9]),
                           lambda: Connection(Protocol(target, opts), opts))
        for _ in range(10):
            await asyncio.sleep(0.01)   # the transports' connection_lost runs
        gc.collect()

    asyncio.run(main())
    assert logged == []
