"""``python -m wsfast demo``: the Lua spec's price loop against a price server in its own process.

:func:`run` is the client side: the Lua spec's "price stream with keep-alive"
example translated to Python (``connect``, subscribe, ``select`` over the receive
channel and an ``after`` timer that pings and re-arms), plus a live status line. It
uses the public ``wsfast`` API only.

Without ``--url`` the server is ``wsfast/_demo_server.py`` (standard library only),
started by :class:`ServerProcess` as a separate program, ``python -I
.../_demo_server.py --port 0 --exit-on-eof``: it prints its URL, and it stops when
its stdin reaches EOF, so it ends with the demo however the demo ends (a normal end,
Ctrl-C, an error, even SIGKILL). Neither this module nor the server is imported by
``import wsfast`` or by the interactive client: ``python -m wsfast demo`` loads this
one when it is asked for, and nothing imports the server's module at all.

Latency is measured against the tick's ``ts`` field, the server's ``time.time()`` at
send: the wall clock, the same in every process of the machine (``time.monotonic()``
would be too on Linux, but not for ``--url`` servers elsewhere).
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from . import (
    CLOSE_CODES,
    COMPILED,
    COMPRESSION,
    ConnectionClosed,
    Error,
    __version__,
    after,
    reconnecting,
    select,
)

__all__ = ["ServerProcess", "ServerProcessError", "run"]

DEFAULT_SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD", "DOGE-USD")
_SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_demo_server.py")
_STARTUP_TIMEOUT = 10.0   # seconds for the server to print its URL
_STOP_TIMEOUT = 2.0       # seconds per step of stopping it: EOF, then SIGTERM, then SIGKILL


# ---------------------------------------------------------------------- the server process

class ServerProcessError(Exception):
    """The demo server process did not start, or ended while the demo was using it."""


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit status {code}"


class ServerProcess:
    """The demo price server (``wsfast/_demo_server.py``) running in a process of its own.

    ``start()`` launches it and returns its URL (``ws://127.0.0.1:PORT/prices``, an
    ephemeral port); ``stop()`` ends it: it closes the server's stdin (its signal to
    stop), then after bounded waits sends SIGTERM, then SIGKILL, and reaps it. Use it
    as a context manager::

        with ServerProcess(rate=5000) as server:
            client = wsfast.connect(server.url)

    The server's stdout lines after the URL (``session N: subscribed``, ``session N:
    closed CODE``) are collected in :attr:`events`; its stderr is this process's.
    """

    def __init__(self, rate: float = 100_000, host: str = "127.0.0.1", port: int = 0,
                 restart_after: Optional[float] = None) -> None:
        self.rate = rate
        self.restart_after = restart_after   # the stream restarts once, this long after subscribing
        self.host = host
        self.port = port
        self.url: Optional[str] = None
        self.events: List[str] = []
        self.proc: Optional[subprocess.Popen] = None
        self._lines: queue.Queue = queue.Queue()
        self._pump_thread: Optional[threading.Thread] = None

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def command(self) -> List[str]:
        args = ["--host", self.host, "--port", str(self.port), "--rate", repr(float(self.rate)),
                "--exit-on-eof"]
        if self.restart_after is not None:
            args += ["--restart-after", repr(float(self.restart_after))]
        if os.path.exists(_SERVER_SCRIPT):
            # -I: the standard library only (no PYTHON* variables, no script directory on
            # sys.path, which is wsfast/ itself), and no import of the wsfast package.
            return [sys.executable, "-I", "-u", _SERVER_SCRIPT] + args
        return [sys.executable, "-u", "-m", "wsfast._demo_server"] + args

    def start(self, timeout: float = _STARTUP_TIMEOUT) -> str:
        """Launch the server and wait (at most ``timeout`` s) for its URL; returns it."""
        if sys.platform == "win32":
            flags: Dict[str, Any] = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        else:
            flags = {"start_new_session": True}   # a terminal's Ctrl-C reaches the client only
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         **flags)
        except OSError as exc:
            raise ServerProcessError(f"cannot start the demo server: {exc}") from exc
        self._pump_thread = threading.Thread(target=self._pump, name="wsfast-demo-server-stdout",
                                             daemon=True)
        self._pump_thread.start()
        try:
            first = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise ServerProcessError(f"the demo server did not start within {timeout:g} s") from None
        except BaseException:
            self.stop()
            raise
        if first is None or not first.startswith("ws://"):
            status = self.wait_exit(_STOP_TIMEOUT)
            self.stop()
            how = _describe_exit(status) if status is not None else f"it printed {first!r}"
            raise ServerProcessError(f"the demo server failed to start ({how})")
        self.url = first
        return first

    def _pump(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        first = True
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if first:
                self._lines.put(line)
                first = False
            else:
                self.events.append(line)
        if first:
            self._lines.put(None)   # EOF before the URL: it failed to start

    def poll(self) -> Optional[int]:
        """The server's exit status (negative: the signal that killed it), or None while it runs."""
        return self.proc.poll() if self.proc is not None else None

    def wait_exit(self, timeout: float) -> Optional[int]:
        """Wait at most ``timeout`` s for the server to end; its exit status, or None if it runs."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """End the server and reap it: EOF on its stdin, then SIGTERM, then SIGKILL (bounded)."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        if self.wait_exit(_STOP_TIMEOUT) is None:
            proc.terminate()
            if self.wait_exit(_STOP_TIMEOUT) is None:
                proc.kill()
                self.wait_exit(_STOP_TIMEOUT)
        # Its stdout reaches EOF once it has exited: let the reader thread see it, then close.
        pump = self._pump_thread
        if pump is not None:
            pump.join(_STOP_TIMEOUT)
        if proc.stdout is not None and (pump is None or not pump.is_alive()):
            try:
                proc.stdout.close()
            except OSError:
                pass

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------------------- the client side

class _NoCtrlC:
    hit = False


def _bucket(latency_ms: float) -> int:
    """A latency histogram's bucket: 10 µs wide below 10 ms, 0.1 ms wide above (monotonic)."""
    if latency_ms < 10.0:
        return math.floor(latency_ms * 100.0)   # floor: a negative one (another clock) too
    return 1000 + int((latency_ms - 10.0) * 10.0)


def _bucket_ms(bucket: int) -> float:
    """The lower bound of ``bucket``, in ms."""
    return bucket / 100.0 if bucket < 1000 else 10.0 + (bucket - 1000) / 10.0


def _percentiles(hist: Dict[int, int], qs: Sequence[float]) -> List[float]:
    """The ``qs`` quantiles of a histogram (the sample of rank round(q * (n - 1)), as ms)."""
    n = sum(hist.values())
    if not n:
        return [math.nan] * len(qs)
    ranks = [round(q * (n - 1)) for q in qs]
    out: List[float] = []
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        while len(out) < len(ranks) and seen > ranks[len(out)]:
            out.append(_bucket_ms(bucket))
        if len(out) == len(ranks):
            break
    return out


def _ms(value: float) -> str:
    return "   n/a" if math.isnan(value) else f"{value:6.2f}"


class _Stats:
    """Counts for the status line and the summary.

    Latencies go into histograms (:func:`_bucket`, 10 µs resolution below 10 ms), not
    lists: sorting a second's 100,000 samples in the consumer loop took 10-20 ms, which
    held up about 1% of the messages behind it and was most of the demo's p99.
    """

    def __init__(self) -> None:
        self.messages = 0
        self.payload_bytes = 0
        self.latency: Dict[int, int] = {}       # this interval: bucket -> count
        self.intervals: List[Dict[int, int]] = []   # those taken so far
        self.max_latency = -math.inf
        self.prices: Dict[str, float] = {}
        self.interval_messages = 0
        self.interval_bytes = 0

    def update_price(self, symbol: str, value: float) -> None:
        """The Lua example's ``update_price``: keep the last price per symbol."""
        self.prices[symbol] = value

    def take_interval(self) -> Tuple[int, int, Dict[int, int]]:
        hist = self.latency
        counts = (self.interval_messages, self.interval_bytes, hist)
        self.intervals.append(hist)
        self.latency = {}
        self.interval_messages = self.interval_bytes = 0
        return counts

    def whole_run(self) -> Dict[int, int]:
        total: Dict[int, int] = {}
        for hist in self.intervals + [self.latency]:
            for bucket, n in hist.items():
                total[bucket] = total.get(bucket, 0) + n
        return total


def run(*, url: Optional[str] = None, duration: float = 5.0, rate: float = 100_000,
        compression: int = 0, out: TextIO = sys.stdout, live: Optional[bool] = None,
        ctrl_c: Any = None) -> int:
    """Stream prices for ``duration`` seconds and print a live status line and a summary.

    Without ``url`` a :class:`ServerProcess` serves on 127.0.0.1 for the run and is
    stopped at its end, however it ends. ``rate`` is messages per second (0: as fast as
    possible). ``ctrl_c``: an object whose ``hit`` attribute turns true on Ctrl-C (the
    command line's ``CtrlC``); the run then closes with 1000 and returns 130. Returns
    the exit status (0 = success).
    """
    if live is None:
        live = out.isatty()
    if ctrl_c is None:
        ctrl_c = _NoCtrlC()
    server: Optional[ServerProcess] = None
    try:
        if url is None:
            # the local stream restarts once, half way: the demo shows the reconnect
            server = ServerProcess(rate=rate,
                                   restart_after=min(duration / 2, 2.5) if duration >= 2 else None)
            url = server.start()
            restart = server.restart_after
            note = f"; it restarts the stream once, at t={restart:g}s" if restart else ""
            print(f"demo server: pid {server.pid}, {url} (a separate process{note})", file=out, flush=True)
        codec = "compiled" if COMPILED else "pure-Python"
        mode = COMPRESSION(compression).name
        rate_text = "as fast as possible" if rate == 0 else f"{rate:,.0f} msg/s"
        print(f"wsfast {__version__} ({codec} codec) <- {url}  compression={mode}  "
              f"rate={rate_text}  duration={duration:g}s", file=out, flush=True)
        try:
            status = _stream(url, duration, rate, compression, out, live, ctrl_c, server)
        except Error as err:
            if _server_died(server):
                return 1
            retry = "retryable" if err.retryable else "not retryable"
            print(f"error: {type(err).__name__} ({err.kind}, {retry}): {err}", file=sys.stderr)
            return 1
        if status == 1 and _server_died(server):
            return 1
        return status
    except ServerProcessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()


def _server_died(server: Optional[ServerProcess]) -> bool:
    """After a failed run: did the server process end? If so, say so on stderr."""
    if server is None:
        return False
    # The kernel closes a dying process's sockets just before it can be reaped: give
    # the exit a moment to become visible.
    code = server.wait_exit(1.0)
    if code is None:
        return False
    print(f"error: the demo server process (pid {server.pid}) ended during the run: "
          f"{_describe_exit(code)}", file=sys.stderr)
    return True


def _close(client: Any) -> None:
    try:
        client.close()
    except ConnectionClosed:
        pass   # it had ended already: the channel tells the loop


class _Run:
    """The state of one demo run across its connections."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.started = self.last = time.monotonic()
        self.stopped: Optional[float] = None      # when the run's end (or Ctrl-C) closed the client
        self.last_wire = 0                        # bytes_in of earlier connections + this one's so far
        self.wire_before = 0                      # bytes_in of the connections that ended
        self.wire_at_close: Optional[int] = None
        self.pings = 0
        self.clock = after("1s")                  # status line, and the end of the run
        self.last_message: Optional[float] = None
        self.gaps: List[float] = []               # seconds without messages across each reconnect


def _stream(url: str, duration: float, rate: float, compression: int, out: TextIO, live: bool,
            ctrl_c: Any, server: Optional[ServerProcess] = None) -> int:
    stats = _Stats()
    run = _Run(duration)
    subscribe = json.dumps({"action": "subscribe", "symbols": list(DEFAULT_SYMBOLS), "rate": rate})
    client = None
    # The price stream on wsfast.reconnecting: each connection subscribes anew; a stream
    # that ends before the run does (an exchange restart) is dialled again with backoff.
    # (our own server is on 127.0.0.1: never through the environment's proxy)
    with reconnecting(url, dial_timeout="10s", compression=compression, backoff_min="200ms",
                      backoff_max="2s", max_attempts=10,
                      proxy=False if server is not None else None) as clients:
        for number, client in enumerate(clients, 1):
            if number > 1 and run.last_message is not None:
                gap = time.monotonic() - run.last_message
                run.gaps.append(gap)
                failed = clients.failures
                tried = (f"; {len(failed)} attempt{'s' if len(failed) > 1 else ''} failed before: "
                         + ", ".join(_brief(e) for e in failed)) if failed else ""
                _note(out, live, f"reconnected (connection {number}) {gap * 1000:.0f} ms after the "
                                 f"last message{tried}; subscribing again")
            if compression and not client.extensions:
                _note(out, live, "note: the server declined permessage-deflate")
            client.send(subscribe)
            _connection(client, run, stats, out, live, ctrl_c)
            if run.stopped is not None:
                break                            # the run's end, or Ctrl-C
            run.wire_before += client.stats["bytes_in"]
            if server is not None and server.wait_exit(0.2) is not None:
                break                            # our server died: nothing to reconnect to
            reason = f" {client.close_reason!r}" if client.close_reason else ""
            _note(out, live, f"connection {number} lost: {client.close_code} "
                             f"({_code_name(client.close_code)}){reason}; reconnecting")
    if client is None:
        return 1
    elapsed = (run.stopped or time.monotonic()) - run.started
    if live:
        out.write("\n")
    if run.wire_at_close is None:
        run.wire_at_close = run.wire_before + client.stats["bytes_in"]
    _summary(out, client, stats, elapsed, run, number)
    if ctrl_c.hit:
        return 130
    ok = stats.messages > 0 and client.error is None and client.close_code == 1000
    return 0 if ok else 1


def _note(out: TextIO, live: bool, text: str) -> None:
    if live:
        out.write("\r\x1b[K")
    print(text, file=out, flush=True)


def _brief(err: Error) -> str:
    status = getattr(err, "status", None)
    return f"HTTP {status}" if status else f"{type(err).__name__}: {err}"


def _code_name(code: Optional[int]) -> str:
    try:
        return CLOSE_CODES(code).name
    except ValueError:
        return "unknown"


def _connection(client: Any, run: _Run, stats: _Stats, out: TextIO, live: bool, ctrl_c: Any) -> None:
    """Receive on one connection until it ends (the server's doing, or the run's end)."""
    ch = client.channel()
    heartbeat = after("1s")                 # the Lua example uses 30s; 1s shows it working
    while True:
        if ctrl_c.hit and run.stopped is None:
            run.stopped = time.monotonic()
            run.wire_at_close = run.wire_before + client.stats["bytes_in"]
            _note(out, live, "interrupted: closing")
            _close(client)
        r = select(ch.case_receive(), heartbeat.case_receive(), run.clock.case_receive())
        if r.channel is ch:
            if not r.ok:
                return                  # connection closed
            _on_tick(stats, r.value)
            # Take what is already buffered without another select: the timers are
            # looked at again after at most channel_capacity messages.
            for _ in range(len(ch)):
                msg, ok = ch.receive()
                if not ok:
                    break
                _on_tick(stats, msg)
            run.last_message = time.monotonic()
        elif r.channel is heartbeat:
            if run.stopped is None:
                try:
                    client.ping()       # keep-alive (the Lua example's; ping_interval does it too)
                    run.pings += 1
                except ConnectionClosed:
                    pass                # the server ended it: the channel tells the loop
            heartbeat = after("1s")
        else:
            now = time.monotonic()
            wire = run.wire_before + client.stats["bytes_in"]
            _status(out, live, now - run.started, now - run.last, stats, wire - run.last_wire, wire)
            run.last, run.last_wire = now, wire
            if now - run.started >= run.duration and run.stopped is None:
                run.stopped, run.wire_at_close = now, wire
                _close(client)          # what is buffered drains; the loop ends when ch closes
            left = max(0.0, run.started + run.duration - now)
            run.clock = after(min(1.0, left) * 1000.0 or 1000.0)


def _on_tick(stats: _Stats, msg: Any) -> None:
    """One received message: count it, decode the tick, measure its latency."""
    data = msg.data
    now_ms = time.time() * 1000.0
    size = len(data) if type(data) is bytes or data.isascii() else len(data.encode())
    stats.messages += 1
    stats.interval_messages += 1
    stats.interval_bytes += size
    stats.payload_bytes += size
    try:
        price = json.loads(data)
        stats.update_price(price["symbol"], price["price"])   # the Lua example's update_price
        latency = now_ms - price["ts"]
        bucket = _bucket(latency)
        hist = stats.latency
        hist[bucket] = hist.get(bucket, 0) + 1
        if latency > stats.max_latency:
            stats.max_latency = latency
    except (ValueError, KeyError, TypeError):
        pass   # not one of our ticks (an external server)


def _status(out: TextIO, live: bool, t: float, dt: float, stats: _Stats, wire_delta: int,
            wire_total: int) -> None:
    msgs, nbytes, hist = stats.take_interval()
    dt = max(dt, 1e-6)
    ratio = wire_total / stats.payload_bytes if stats.payload_bytes else math.nan
    p50, p99 = _percentiles(hist, (0.5, 0.99))
    line = (f"t={t:4.1f}s  {msgs / dt:>9,.0f} msg/s  {nbytes / dt / 1e6:6.2f} MB/s  "
            f"latency ms p50 {_ms(p50)} p99 {_ms(p99)}  "
            f"wire/payload {ratio:5.3f}")
    if live:
        out.write("\r\x1b[K" + line)
    else:
        out.write(line + "\n")
    out.flush()


def _summary(out: TextIO, client: Any, stats: _Stats, elapsed: float, run: _Run, connections: int) -> None:
    wire = run.wire_at_close or 0
    pings = run.pings
    p50, p99 = _percentiles(stats.whole_run(), (0.5, 0.99))
    top = stats.max_latency if stats.max_latency > -math.inf else math.nan
    ratio = wire / stats.payload_bytes if stats.payload_bytes else math.nan
    elapsed = max(elapsed, 1e-6)
    print(f"summary: {stats.messages:,} messages in {elapsed:.2f} s = {stats.messages / elapsed:,.0f} msg/s, "
          f"{stats.payload_bytes / elapsed / 1e6:.2f} MB/s payload", file=out)
    print(f"  latency (server send -> client receive) ms: p50 {p50:.2f}  p99 {p99:.2f}  "
          f"max {top:.2f}", file=out)
    print(f"  compression ratio (wire bytes / payload bytes): {ratio:.3f}  "
          f"[{wire:,} / {stats.payload_bytes:,}]  extensions: {client.extensions or 'none'}",
          file=out)
    last = ", ".join(f"{k} {v:,.2f}" for k, v in sorted(stats.prices.items()))
    print(f"  last prices: {last or 'none'}", file=out)
    print(f"  keep-alive pings sent: {pings}; closed with {client.close_code} "
          f"{client.close_reason or ''}".rstrip(), file=out)
    gaps = ", ".join(f"{g * 1000:.0f} ms" for g in run.gaps)
    print(f"  connections: {connections}" + (f" (reconnect gaps: {gaps})" if gaps else ""), file=out)
    if client.error is not None:
        print(f"  connection error: {client.error!r}", file=out)
    out.flush()

