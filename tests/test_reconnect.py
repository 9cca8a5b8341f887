"""wsfast.reconnecting (DESIGN §6 "Reconnect") against real servers on 127.0.0.1, and the
sans-I/O Backoff with a pinned random source.

The servers here are scripted on raw sockets and take connection after connection
(conftest's raw_server takes one); every wait is bounded, and an autouse fixture fails a
test that leaves a thread or a socket behind.

The tests against servers take the ``front`` fixture (conftest.py): each runs on
``wsfast.reconnecting`` and on ``wsfast.asyncio.reconnecting`` (tests/frontends.py), but
for those on leaving a sync ``for`` loop, which an async iterator is not told of.
"""

from __future__ import annotations

import datetime
import gc
import os
import socket
import threading
import time
from typing import Callable, List, Optional

import pytest
from conftest import OP_TEXT, accept_for, close_frame, read_frame, read_until_close, server_frame

import wsfast
from wsfast import errors
from wsfast.backoff import (
    SHORT_LIVED,
    Backoff,
    ReconnectOptions,
    parse_reconnect_options,
    retry_after,
    split_options,
)
from wsfast.errors import ConnectError, HandshakeError, InvalidOption, PermissionDenied
from wsfast.options import parse_options
from wsfast.reconnect import Reconnecting, reconnecting

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------- nothing left behind

def _socket_fds() -> set:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:"):
            out.add((fd, link))
    return out


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Fail the test if a thread it started or a socket it opened is still there (5 s)."""
    threads = set(threading.enumerate())
    fds = _socket_fds() if os.path.isdir("/proc/self/fd") else None
    yield
    end = time.monotonic() + 5
    while True:
        gc.collect()
        extra_threads = [t.name for t in threading.enumerate() if t not in threads and t.is_alive()]
        extra_fds = (_socket_fds() - fds) if fds is not None else set()
        if not extra_threads and not extra_fds:
            return
        if time.monotonic() > end:
            pytest.fail(f"left behind: threads {extra_threads}, sockets {sorted(extra_fds)}")
        time.sleep(0.02)


# ---------------------------------------------------------------------- scripted servers

def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("EOF in the HTTP request")
        data += chunk
    return data


def upgrade(conn: socket.socket) -> bytes:
    """Read the upgrade request and answer 101; returns the request."""
    request = read_request(conn)
    key = ""
    for line in request.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_for(key)}\r\n\r\n")
                 .encode("latin-1"))
    return request


def refuse(conn: socket.socket, status: str, headers: str = "") -> None:
    """Read the request and answer ``status`` (e.g. "503 Service Unavailable")."""
    read_request(conn)
    conn.sendall(f"HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\n\r\n".encode("latin-1"))


def answer_close(conn: socket.socket) -> Optional[int]:
    """Read client frames until its close frame, answer it; returns the client's code."""
    code, _reason, _frames = read_until_close(conn, timeout=10)
    conn.sendall(close_frame(code))
    return code


class Server:
    """Accepts connections one after another on 127.0.0.1 and runs ``handler(conn, i)``
    for the i-th (in the accept thread); ``accepts`` holds each accept's monotonic time,
    ``results`` what the handlers returned, ``errors`` what they raised."""

    def __init__(self, handler: Callable[[socket.socket, int], object], port: int = 0) -> None:
        self.handler = handler
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.accepts: List[float] = []
        self.results: list = []
        self.errors: list = []
        self.accepted = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-reconnect-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepts.append(time.monotonic())
            self.accepted.set()
            try:
                conn.settimeout(10)
                self.results.append(self.handler(conn, len(self.accepts) - 1))
            except Exception as exc:   # reported to the test
                self.errors.append(exc)
            finally:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.listener.close()


@pytest.fixture
def server():
    """Factory: ``server(handler) -> Server``; stopped at teardown."""
    made = []

    def start(handler: Callable[[socket.socket, int], object], port: int = 0) -> Server:
        srv = Server(handler, port)
        made.append(srv)
        return srv

    yield start
    for srv in made:
        srv.stop()


def accept_and_drop(conn: socket.socket, i: int) -> None:
    upgrade(conn)


def hold_until_close(conn: socket.socket, i: int) -> Optional[int]:
    upgrade(conn)
    return answer_close(conn)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _close_later(it: Reconnecting, after: float) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(after), it.close()), name="test-closer")
    t.start()
    return t


def _drain(client: wsfast.Client) -> list:
    return [msg.data for msg in client.channel()]


# ---------------------------------------------------------------------- reconnect storms

def test_a_server_that_accepts_and_drops_sees_a_handful_of_reconnects_per_second(front, server):
    srv = server(accept_and_drop)
    # the control: dialling in a loop, this server takes hundreds of connections a second
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        with front.connect(srv.url) as client:
            _drain(client)
    control = len(srv.accepts)
    assert control >= 25, control

    n0 = len(srv.accepts)
    t0 = time.monotonic()
    it = front.reconnecting(srv.url, backoff_min="100ms")
    closer = _close_later(it, 2.0)
    for client in it:
        _drain(client)   # the server drops it at once
    closer.join(5)
    elapsed = time.monotonic() - t0
    seen = len(srv.accepts) - n0
    # 0 + U[0, .1] + U[0, .2] + U[0, .4] + U[0, .8] + U[0, 1.6] ...: about 6 in 2 s
    assert 2 <= seen <= 12, (seen, control)
    assert elapsed < 2.5, elapsed
    assert not srv.errors


def test_the_lifetime_rule_uses_the_time_between_yield_and_next(server):
    """With a clock that says each connection lived 10 s, reconnects are immediate even
    with a 5 s backoff; at 9.9 s the next one waits (and close() ends that wait)."""
    srv = server(accept_and_drop)
    ropts = parse_reconnect_options({"backoff_min": "5s", "backoff_max": "5s"})
    now = [0.0]

    def clock() -> float:
        now[0] += SHORT_LIVED     # yield at t, next() at t + 10 s
        return now[0]

    t0 = time.monotonic()
    with Reconnecting(srv.url, parse_options(), ropts, random=lambda: 1.0, clock=clock) as it:
        for i, client in enumerate(it):
            _drain(client)
            if i == 4:
                break
    assert time.monotonic() - t0 < 2.0
    assert len(srv.accepts) == 5

    def short_clock() -> float:
        now[0] += SHORT_LIVED - 0.1   # 9.9 s lives
        return now[0]

    it = Reconnecting(srv.url, parse_options(), ropts, random=lambda: 1.0, clock=short_clock)
    _drain(next(it))
    closer = _close_later(it, 0.3)
    t0 = time.monotonic()
    with pytest.raises(StopIteration):
        next(it)       # waits the 5 s backoff, ended by close()
    closer.join(5)
    assert 0.25 < time.monotonic() - t0 < 1.5
    assert len(srv.accepts) == 6


# ---------------------------------------------------------------------- refusals

def test_a_503_with_retry_after_is_retried_after_it(front, server):
    def handler(conn: socket.socket, i: int) -> Optional[int]:
        if i == 0:
            refuse(conn, "503 Service Unavailable", "Retry-After: 1\r\n")
            return None
        return hold_until_close(conn, i)

    srv = server(handler)
    with front.reconnecting(srv.url, backoff_min="10ms") as it:
        client = next(it)
        client.close()
        # the refusal that was retried is there for logging
        assert [getattr(e, "status", None) for e in it.failures] == [503]
    gap = srv.accepts[1] - srv.accepts[0]
    assert 1.0 <= gap < 1.5, gap        # the jitter alone would be under 10 ms


def test_retry_after_is_capped_at_backoff_max(front, server):
    def handler(conn: socket.socket, i: int) -> Optional[int]:
        if i == 0:
            refuse(conn, "429 Too Many Requests", "Retry-After: 120\r\n")
            return None
        return hold_until_close(conn, i)

    srv = server(handler)
    with front.reconnecting(srv.url, backoff_min="10ms", backoff_max="300ms") as it:
        next(it).close()
    gap = srv.accepts[1] - srv.accepts[0]
    assert 0.3 <= gap < 0.8, gap


def test_a_4xx_refusal_is_raised_at_once(front, server):
    srv = server(lambda conn, i: refuse(conn, "403 Forbidden"))
    it = front.reconnecting(srv.url, backoff_min="10ms")
    t0 = time.monotonic()
    with pytest.raises(HandshakeError) as info:
        next(it)
    assert info.value.status == 403 and info.value.retryable is False
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(StopIteration):    # the iterator is over
        next(it)
    time.sleep(0.3)
    assert len(srv.accepts) == 1


def test_permission_denied_is_raised_at_once_and_no_connection_is_made(front, server):
    srv = server(hold_until_close)
    with wsfast.policy_scope(wsfast.deny("websocket.connect.url", f"ws://127.0.0.1:{srv.port}/*")):
        it = front.reconnecting(srv.url)
        t0 = time.monotonic()
        with pytest.raises(PermissionDenied):
            next(it)
        assert time.monotonic() - t0 < 0.5
    time.sleep(0.3)
    assert srv.accepts == []


def test_the_policy_in_force_in_the_iterating_thread_is_checked_on_every_attempt(front, server):
    srv = server(hold_until_close)
    it = front.reconnecting(srv.url, backoff_min="10ms")
    first = next(it)
    assert not first.closed
    with wsfast.policy_scope(wsfast.deny("websocket.connect")):
        with pytest.raises(PermissionDenied):
            next(it)
    assert first.closed and first.close_code == 1000   # retired before the denied attempt
    time.sleep(0.3)
    assert len(srv.accepts) == 1 and srv.results == [1000]


@pytest.mark.parametrize("kwargs, name", [
    ({"backoff_min": "soon"}, "backoff_min"),
    ({"backoff_min": -5}, "backoff_min"),
    ({"backoff_min": "2s", "backoff_max": "1s"}, "backoff_min"),
    ({"backoff_max": 0}, "backoff_max"),
    ({"backoff_factor": 0.5}, "backoff_factor"),
    ({"backoff_factor": "2"}, "backoff_factor"),
    ({"backoff_factor": True}, "backoff_factor"),
    ({"backoff_factor": float("nan")}, "backoff_factor"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 2.5}, "max_attempts"),
    ({"max_attempts": "3"}, "max_attempts"),
    ({"dial_timeout": -1}, "dial_timeout"),
    ({"backof_min": "1s"}, "backof_min"),
])
def test_an_invalid_option_is_raised_at_once(front, server, kwargs, name):
    srv = server(hold_until_close)
    with pytest.raises(InvalidOption) as info:
        front.reconnecting(srv.url, **kwargs)
    assert info.value.details.get("option") == name, info.value
    time.sleep(0.05)
    assert srv.accepts == []


def test_a_bad_url_is_raised_by_reconnecting_itself(front):
    with pytest.raises(InvalidOption):
        front.reconnecting("http://127.0.0.1:1/")


def test_max_attempts_against_a_closed_port_raises_the_last_error_after_exactly_n(front, monkeypatch):
    import wsfast.asyncio.reconnect as async_module
    import wsfast.reconnect as module

    raised: list = []
    real = module.connect_with if front.name == "sync" else async_module.connect_with

    def counting(url, opts, cancel=None):
        try:
            return real(url, opts, cancel)
        except BaseException as exc:
            raised.append(exc)
            raise

    async def async_counting(url, opts):
        try:
            return await real(url, opts)
        except BaseException as exc:
            raised.append(exc)
            raise

    if front.name == "sync":
        monkeypatch.setattr(module, "connect_with", counting)
    else:
        monkeypatch.setattr(async_module, "connect_with", async_counting)
    it = front.reconnecting(f"ws://127.0.0.1:{_closed_port()}/", max_attempts=4, backoff_min="1ms")
    with pytest.raises(ConnectError) as info:
        next(it)
    assert len(raised) == 4
    assert info.value is raised[-1]
    assert info.value.retryable is True


# ---------------------------------------------------------------------- close()

def test_close_from_another_thread_ends_a_long_delay_promptly(front, server):
    srv = server(lambda conn, i: refuse(conn, "503 Service Unavailable", "Retry-After: 30\r\n"))
    it = front.reconnecting(srv.url, backoff_max="60s")
    closer = threading.Thread(
        target=lambda: (srv.accepted.wait(5), time.sleep(0.2), it.close()), name="test-closer")
    closer.start()
    t0 = time.monotonic()
    with pytest.raises(StopIteration):
        next(it)          # the 30 s delay, cut short
    closer.join(5)
    assert time.monotonic() - t0 < 1.5
    assert len(srv.accepts) == 1
    with pytest.raises(StopIteration):
        next(it)


def test_close_from_another_thread_cancels_an_attempt_to_a_black_hole(front, black_hole):
    it = front.reconnecting(f"ws://127.0.0.1:{black_hole}/", dial_timeout="30s")
    closer = _close_later(it, 0.3)
    t0 = time.monotonic()
    with pytest.raises(StopIteration):
        next(it)
    closer.join(5)
    assert time.monotonic() - t0 < 1.5


def test_close_from_another_thread_cancels_an_upgrade_the_server_never_answers(front, server):
    def silent(conn: socket.socket, i: int) -> bytes:
        read_request(conn)
        return conn.recv(1)        # b"" once the client's socket is shut down

    srv = server(silent)
    it = front.reconnecting(srv.url, dial_timeout="30s")
    closer = threading.Thread(
        target=lambda: (srv.accepted.wait(5), time.sleep(0.2), it.close()), name="test-closer")
    closer.start()
    t0 = time.monotonic()
    with pytest.raises(StopIteration):
        next(it)
    closer.join(5)
    assert time.monotonic() - t0 < 1.5
    end = time.monotonic() + 5
    while not srv.results and time.monotonic() < end:
        time.sleep(0.01)
    assert srv.results == [b""] and len(srv.accepts) == 1


def test_close_from_another_thread_closes_the_current_client_and_ends_the_loop(front, server):
    srv = server(hold_until_close)
    it = front.reconnecting(srv.url)
    clients = []
    closer = None
    for client in it:
        clients.append(client)
        closer = _close_later(it, 0.2)
        _drain(client)          # ends when close() closes the client
    closer.join(5)
    assert len(clients) == 1 and clients[0].close_code == 1000
    end = time.monotonic() + 5   # (the server's thread records the code after the client has it)
    while not srv.results and time.monotonic() < end:
        time.sleep(0.01)
    assert srv.results == [1000]
    it.close()                  # idempotent


# ---------------------------------------------------------------------- leaving the loop

def test_each_client_is_closed_before_the_next_and_break_closes_the_last(server):
    srv = server(hold_until_close)
    clients: list = []
    for client in reconnecting(srv.url, backoff_min="10ms"):
        if clients:
            prev = clients[-1]
            assert prev.closed and prev.close_code == 1000
        clients.append(client)
        if len(clients) == 3:
            break
    end = time.monotonic() + 5
    while len(srv.results) < 3 and time.monotonic() < end:
        time.sleep(0.01)
    assert srv.results == [1000, 1000, 1000]
    assert clients[-1].closed


def test_an_exception_in_the_body_closes_the_current_client(server):
    srv = server(hold_until_close)
    with pytest.raises(RuntimeError):
        for _client in reconnecting(srv.url):
            raise RuntimeError("the body failed")
    end = time.monotonic() + 5
    while not srv.results and time.monotonic() < end:
        time.sleep(0.01)
    assert srv.results == [1000]


def test_dropping_the_iterator_closes_the_current_client(server):
    srv = server(hold_until_close)
    it = reconnecting(srv.url)
    client = next(it)
    del it
    gc.collect()
    assert client.closed and client.close_code == 1000
    end = time.monotonic() + 5
    while not srv.results and time.monotonic() < end:
        time.sleep(0.01)
    assert srv.results == [1000]


def test_against_a_websockets_server_with_compression(front, ws_server):
    closes: list = []

    def handler(ws) -> None:
        for msg in ws:
            ws.send(msg)
        closes.append(ws.close_code)

    srv = ws_server(handler)
    got = []
    with front.reconnecting(srv.url, compression=wsfast.COMPRESSION.CONTEXT_TAKEOVER) as it:
        for client in it:
            assert client.extensions is not None and "permessage-deflate" in client.extensions
            client.send("x" * 1000 + str(len(got)))
            got.append(client.channel().receive()[0].data)
            if len(got) == 2:
                break
    assert got == ["x" * 1000 + "0", "x" * 1000 + "1"]
    end = time.monotonic() + 5
    while len(closes) < 2 and time.monotonic() < end:
        time.sleep(0.01)
    assert closes == [1000, 1000]


# ---------------------------------------------------------------------- restarts

def _payload(gen: int, i: int) -> str:
    size = (0, 10, 125, 126, 1000, 65535, 65536, 70000)[i % 8]
    head = f"{gen}:{i}:"
    return head + "abcdefghij"[i % 10] * max(0, size - len(head))


def test_a_numbered_stream_across_server_restarts_arrives_whole_and_in_order(front):
    """Three server lives on one port, each streaming 200 numbered messages to the
    connection that subscribed, then dying (no close frame; the port refuses while down)."""
    gens, count = 3, 200
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    problems: list = []
    stop = threading.Event()

    def one_life(gen: int) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen(8)
            listener.settimeout(10)
            conn, _ = listener.accept()
        finally:
            listener.close()
        try:
            conn.settimeout(10)
            upgrade(conn)
            _fin, opcode, payload, _masked = read_frame(conn)
            if (opcode, payload) != (OP_TEXT, b"subscribe"):
                problems.append((gen, opcode, payload))
                return
            conn.sendall(b"".join(server_frame(OP_TEXT, _payload(gen, i).encode())
                                  for i in range(count)))
            conn.shutdown(socket.SHUT_WR)
        finally:
            conn.close()

    def lives() -> None:
        try:
            for gen in range(gens):
                if stop.is_set():
                    return
                one_life(gen)
                time.sleep(0.3)   # down: connecting is refused
        except Exception as exc:
            problems.append(exc)

    thread = threading.Thread(target=lives, name="test-restarting-server")
    thread.start()
    got: list = []
    try:
        with front.reconnecting(f"ws://127.0.0.1:{port}/", backoff_min="20ms", backoff_max="200ms") as it:
            for client in it:
                client.send("subscribe")        # resubscribe on every connection
                got.append(_drain(client))
                assert errors.is_(client.error, errors.INTERNAL)   # EOF, no close frame
                if len(got) == gens:
                    break
    finally:
        stop.set()
        thread.join(15)
    assert not problems, problems
    for gen, messages in enumerate(got):
        assert messages == [_payload(gen, i) for i in range(count)], gen


# ---------------------------------------------------------------------- Backoff (no sockets)

def _opts(**kw) -> ReconnectOptions:
    return parse_reconnect_options(kw)


def _err(**kw) -> ConnectError:
    return ConnectError("refused", **kw)


def _refusal(status: int, *headers) -> HandshakeError:
    return HandshakeError(f"HTTP {status}", retryable=status >= 500 or status in (408, 429),
                          status=status, headers=list(headers), body=b"")


class Draws:
    """A pinned random source that records what it returned."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.drawn: list = []

    def __call__(self) -> float:
        v = self.values[len(self.drawn) % len(self.values)]
        self.drawn.append(v)
        return v


def test_backoff_the_first_attempt_is_immediate():
    b = Backoff(_opts(), Draws(1.0))
    assert b.delay() == 0.0 and b.ceiling() == 0.0


def test_backoff_ceiling_doubles_per_failure_up_to_the_cap():
    b = Backoff(_opts(backoff_min="100ms", backoff_max="1s"), Draws(1.0))
    seen = []
    for _ in range(7):
        assert b.failed(_err())
        seen.append(b.delay())
    assert seen == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_backoff_full_jitter_is_the_draw_times_the_ceiling():
    draws = Draws(0.0, 0.25, 0.999, 0.5)
    b = Backoff(_opts(backoff_min="1s", backoff_max="8s", backoff_factor=3), draws)
    out = []
    for _ in range(4):
        b.failed(_err())
        out.append(b.delay())
    assert out == pytest.approx([0.0, 0.25 * 3, 0.999 * 8, 0.5 * 8])
    assert draws.drawn == [0.0, 0.25, 0.999, 0.5]


def test_backoff_delays_stay_in_zero_to_ceiling_with_a_seeded_source():
    import random

    rng = random.Random(1234)
    b = Backoff(_opts(backoff_min="50ms", backoff_max="2s", backoff_factor=1.5), rng.random)
    for _ in range(200):
        b.failed(_err())
        d = b.ceiling()
        assert 0.0 <= b.delay() <= d <= 2.0


def test_backoff_does_not_overflow_after_many_failures():
    b = Backoff(_opts(backoff_factor=10), Draws(1.0))
    for _ in range(5000):
        b.failed(_err())
    assert b.delay() == 30.0


def test_backoff_min_zero_means_no_delay():
    b = Backoff(_opts(backoff_min=0), Draws(1.0))
    for _ in range(5000):
        b.failed(_err())
        assert b.delay() == 0.0


@pytest.mark.parametrize("err", [
    PermissionDenied("no"), InvalidOption("bad"), _refusal(403), _refusal(404),
    ConnectError("certificate", retryable=False), wsfast.ConnectionClosed("over"),
    wsfast.Error("unknown"), ValueError("not a wsfast error"),
])
def test_backoff_only_retryable_errors_are_retried(err):
    assert Backoff(_opts(), Draws(1.0)).failed(err) is False


@pytest.mark.parametrize("err", [
    _err(), wsfast.Timeout("dial timeout"), _refusal(503), _refusal(429), _refusal(500),
    wsfast.ProtocolError("bad frame"),
])
def test_backoff_retryable_errors_are_retried(err):
    assert Backoff(_opts(), Draws(1.0)).failed(err) is True


def test_backoff_max_attempts_counts_consecutive_failed_attempts():
    b = Backoff(_opts(max_attempts=3), Draws(1.0))
    assert b.failed(_err()) and b.failed(_err())
    assert b.failed(_err()) is False


def test_backoff_a_short_connection_counts_for_the_delay_not_for_max_attempts():
    b = Backoff(_opts(backoff_min="1s", max_attempts=2), Draws(1.0))
    assert b.failed(_err())            # failure 1
    b.connected()
    b.ended(100.0, 100.0 + SHORT_LIVED - 0.001)   # failure 2, for the delay only
    assert b.delay() == pytest.approx(2.0)
    assert b.failed(_err())            # attempts: 1 of 2 again (the success ended the run)
    assert b.delay() == pytest.approx(4.0)
    assert b.failed(_err()) is False   # 2 of 2


def test_backoff_a_connection_open_ten_seconds_resets_the_delay():
    b = Backoff(_opts(backoff_min="1s"), Draws(1.0))
    for _ in range(4):
        b.failed(_err())
    b.connected()
    b.ended(5.0, 5.0 + SHORT_LIVED)
    assert b.delay() == 0.0
    assert b.failed(_err())
    assert b.delay() == pytest.approx(1.0)


def test_backoff_retry_after_is_a_lower_bound_capped_at_backoff_max():
    b = Backoff(_opts(backoff_min="10ms", backoff_max="30s"), Draws(0.0))
    b.failed(_refusal(503, ("Retry-After", "1")))
    assert b.delay() == 1.0
    b.failed(_err())                  # no header this time: the jitter alone
    assert b.delay() == 0.0
    b = Backoff(_opts(backoff_min="10ms", backoff_max="5s"), Draws(0.0))
    b.failed(_refusal(429, ("retry-after", "3600")))
    assert b.delay() == 5.0
    b = Backoff(_opts(backoff_min="4s", backoff_max="30s"), Draws(1.0))
    b.failed(_refusal(503, ("Retry-After", "1")))
    assert b.delay() == 4.0           # at least Retry-After: a larger jitter stands


@pytest.mark.parametrize("status, headers, expected", [
    (503, [("Retry-After", "1")], 1.0),
    (429, [("RETRY-AFTER", " 7 ")], 7.0),
    (503, [("Content-Type", "text/plain"), ("Retry-After", "0")], 0.0),
    (503, [("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")], None),
    (503, [("Retry-After", "soon")], None),
    (503, [("Retry-After", "-1")], None),
    (503, [("Retry-After", "1.5")], None),
    (503, [("Retry-After", "")], None),
    (503, [("Retry-After", "junk"), ("Retry-After", "2")], 2.0),
    (500, [("Retry-After", "1")], None),
    (408, [("Retry-After", "1")], None),
    (503, [], None),
])
def test_retry_after_parsing(status, headers, expected):
    assert retry_after(_refusal(status, *headers)) == expected


def test_retry_after_of_other_errors_is_none():
    assert retry_after(_err()) is None
    assert retry_after(HandshakeError("bad accept", status=101, headers=[("Retry-After", "1")])) is None


# ---------------------------------------------------------------------- option parsing

def test_reconnect_option_defaults_and_forms():
    assert parse_reconnect_options({}) == ReconnectOptions(0.5, 30.0, 2.0, None)
    o = parse_reconnect_options({"backoff_min": 250, "backoff_max": datetime.timedelta(minutes=1),
                                 "backoff_factor": 1, "max_attempts": 5.0})
    assert (o.backoff_min, o.backoff_max, o.backoff_factor, o.max_attempts) == (0.25, 60.0, 1.0, 5)
    assert isinstance(o.max_attempts, int) and isinstance(o.backoff_factor, float)
    assert parse_reconnect_options({"backoff_min": "0", "max_attempts": None}).backoff_min == 0.0


def test_split_options_hands_the_rest_to_parse_options():
    opts, ropts = split_options({"dial_timeout": "5s", "backoff_min": "1s"},
                                {"max_attempts": 2, "read_timeout": 100})
    assert opts == parse_options({"dial_timeout": "5s", "read_timeout": 100})
    assert ropts == ReconnectOptions(backoff_min=1.0, max_attempts=2)


@pytest.mark.parametrize("options, kwargs, name", [
    ({"backoff_min": "1s"}, {"backoff_min": "2s"}, "backoff_min"),
    ({"dial_timeout": "1s"}, {"dial_timeout": "2s"}, "dial_timeout"),
    ({"nope": 1}, {}, "nope"),
    ({}, {"nope": 1}, "nope"),
])
def test_split_options_refusals(options, kwargs, name):
    with pytest.raises(InvalidOption) as info:
        split_options(options, kwargs)
    assert info.value.details.get("option") == name


def test_split_options_refuses_a_non_mapping_and_non_str_names():
    with pytest.raises(InvalidOption):
        split_options([("backoff_min", "1s")], {})
    with pytest.raises(InvalidOption):
        split_options({1: "x"}, {})
