"""Dialling against real sockets on 127.0.0.1: each address in turn, bounded attempts."""

from __future__ import annotations

import socket
import time

import pytest

from wsfast import errors
from wsfast.options import parse_options
from wsfast.policy import parse_url
from wsfast.transport import connect_tcp, dial, resolve

pytestmark = pytest.mark.timeout(60)


def _address(port):
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))


@pytest.fixture
def listener():
    """A listening socket that accepts nothing (the kernel completes the handshake)."""
    made = []

    def make(backlog=8):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(backlog)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now: connecting is refused
    return port


def test_an_address_that_refuses_is_skipped_for_the_next(listener):
    good = listener().getsockname()[1]
    target = parse_url(f"ws://localhost:{good}/")
    sock = connect_tcp(target, [_address(_closed_port()), _address(good)], time.monotonic() + 10)
    try:
        assert sock.getpeername() == ("127.0.0.1", good)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()


def test_an_address_that_times_out_is_skipped_within_its_share_of_the_time(listener, black_hole):
    good = listener().getsockname()[1]
    target = parse_url(f"ws://localhost:{good}/")
    t0 = time.monotonic()
    sock = connect_tcp(target, [_address(black_hole), _address(good)], t0 + 5)
    took = time.monotonic() - t0
    try:
        assert sock.getpeername() == ("127.0.0.1", good)
    finally:
        sock.close()
    # 5 s left and two addresses: the first gets half (at least 2 s), not the whole budget
    assert 2.0 <= took < 4.0, f"the dead first address took {took:.1f} s"


def test_every_address_refusing_is_a_retryable_connect_error_naming_each():
    p1, p2 = _closed_port(), _closed_port()
    target = parse_url(f"ws://localhost:{p1}/")
    with pytest.raises(errors.ConnectError) as info:
        connect_tcp(target, [_address(p1), _address(p2)], time.monotonic() + 10)
    assert info.value.retryable is True
    assert str(info.value).count("127.0.0.1") >= 2


def test_a_dead_only_address_is_a_dial_timeout(black_hole):
    target = parse_url(f"ws://localhost:{black_hole}/")
    t0 = time.monotonic()
    with pytest.raises(errors.Timeout):
        connect_tcp(target, [_address(black_hole)], t0 + 0.5)
    assert time.monotonic() - t0 < 3


def test_a_literal_address_resolves_without_a_lookup_thread():
    import threading

    before = {t.name for t in threading.enumerate()}
    [(family, *_rest, addr)] = resolve(parse_url("ws://127.0.0.1:9/"), time.monotonic() + 5)
    assert family == socket.AF_INET and addr == ("127.0.0.1", 9)
    assert "wsfast-dns" not in {t.name for t in threading.enumerate()} - before


def test_dial_returns_a_connected_plain_socket_for_ws(listener):
    port = listener().getsockname()[1]
    sock = dial(parse_url(f"ws://127.0.0.1:{port}/"), parse_options(None, {}), time.monotonic() + 5)
    try:
        assert sock.getpeername() == ("127.0.0.1", port)
    finally:
        sock.close()


def test_cancel_ends_the_wait_for_a_dns_lookup(monkeypatch):
    """A lookup that never answers (the system resolver is replaced for this test: no
    real DNS server can be made to hang here) is left behind at once on cancel."""
    import threading

    from wsfast.transport import Cancel

    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(host, *args, **kwargs):
        if host == "hangs.example" and not kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            release.wait(10)
            raise socket.gaierror("released")
        return real(host, *args, **kwargs)   # (the numeric-host check fails as usual)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    cancel = Cancel()
    target = parse_url("ws://hangs.example/")
    threading.Timer(0.2, cancel.cancel).start()
    start = time.monotonic()
    try:
        with pytest.raises(errors.ConnectError, match="cancelled"):
            resolve(target, time.monotonic() + 5, cancel)
        assert time.monotonic() - start < 1.0
    finally:
        release.set()
