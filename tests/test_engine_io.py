"""The sync engine's I/O. Reads: what each read asks of the socket, and that the stream
survives every way of cutting it (large messages read straight into their bytes,
small ones through the read buffer, the short read after a large message), and the
wake-up mark (SO_RCVLOWAT) set while a large frame arrives. Writes: which thread
writes a send (its sender, or the reader thread with the sends around it)."""

from __future__ import annotations

import random
import select
import socket
import threading
import time

import pytest
from conftest import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_frame,
    read_frame,
    read_until_close,
    server_frame,
)

import wsfast
from wsfast import engine as engine_mod

KiB = 1024


def _recording(eng, log):
    """Wrap the engine's reads: log (what was read into, bytes asked, bytes got)."""
    recv_into = eng._recv_into

    def recording(buf):
        asked = len(buf)
        through = buf is eng._rbuf or getattr(buf, "obj", None) is eng._rbuf
        kind = "buffer" if through else "message"
        n = recv_into(buf)
        log.append((kind, asked, n))
        return n

    eng._recv_into = recording


def _calls_in_this_thread(eng, name):
    """Wrap the engine's read or write ``name``: the list returned logs, for each call
    made in the calling thread, the bytes read or written, or None when it would block
    (or timed out)."""
    call = getattr(eng, name)
    me = threading.current_thread()
    log = []

    def logging(buf):
        n = None
        try:
            n = call(buf)
            return n
        finally:
            if threading.current_thread() is me:
                log.append(n)

    setattr(eng, name, logging)
    return log


def _echo_then_wait_for_close(conn, rounds):
    """Server side: send back each of ``rounds`` frames, then read until the close."""
    for _ in range(rounds):
        _fin, op, payload, _masked = read_frame(conn)
        conn.sendall(server_frame(op, payload))
    read_until_close(conn)


def _round_trips(c, ch, rounds):
    """Client side of ``_echo_then_wait_for_close``: send each request, receive its echo."""
    for i in range(rounds):
        c.send(f"q{i}")
        msg, ok = ch.receive(5)
        assert ok and msg.data == f"q{i}"


def _mixed():
    rnd = random.Random(7)
    text = "é€𝄞a" * (50 * KiB)   # 3- and 4-byte UTF-8 sequences across every read cut
    return [
        (OP_BINARY, rnd.randbytes(1024 * KiB)),
        (OP_BINARY, rnd.randbytes(1024 * KiB)),   # right after a large one
        (OP_TEXT, b"a"),
        (OP_TEXT, text.encode()),
        (OP_BINARY, rnd.randbytes(70 * KiB)),
        (OP_BINARY, b""),
        (OP_BINARY, rnd.randbytes(3 * KiB)),
        (OP_BINARY, rnd.randbytes(300 * KiB)),
    ]


def test_a_stream_of_large_and_small_messages_arrives_whole_and_in_order(raw_server):
    frames = _mixed()
    go = threading.Event()

    def script(srv):
        go.wait(10)
        srv.conn.sendall(b"".join(server_frame(op, p) for op, p in frames))
        srv.conn.sendall(server_frame(8, b"\x03\xe8"))
        read_until_close(srv.conn)

    srv = raw_server(script)
    c = wsfast.connect(srv.url)
    log: list = []
    _recording(c._engine, log)
    go.set()
    got = [m for m in c.channel()]
    assert [(m.type, m.data) for m in got] == [
        ("text" if op == OP_TEXT else "binary", p.decode() if op == OP_TEXT else p)
        for op, p in frames]
    assert c.close_code == 1000
    # every large message but the first was read without passing through the read
    # buffer a _READ_BUFFER at a time: the read after a large one asks for a header's worth
    big = engine_mod._READ_BUFFER
    assert sum(n for kind, asked, n in log if kind == "buffer") < big + 64 * KiB
    assert any(kind == "buffer" and asked == engine_mod._FIRST_READ for kind, asked, _n in log)
    srv.done.wait(5)
    assert srv.error is None


def test_a_receive_with_no_time_left_still_reads_what_the_socket_holds(raw_server):
    # After a short read the receiver waits for bytes before reading; with timeout=0
    # that wait is poll(0), so a message already in the socket is still read, by the
    # receiver itself (here the reader thread is kept out: it sits in its lease).
    first = threading.Event()
    second = threading.Event()

    def script(srv):
        srv.conn.sendall(server_frame(OP_TEXT, b"one"))
        first.wait(10)
        srv.conn.sendall(server_frame(OP_TEXT, b"two"))
        second.set()
        read_until_close(srv.conn)

    srv = raw_server(script)
    c = wsfast.connect(srv.url)
    ch = c.channel()
    assert ch.receive(5)[0].data == "one"
    eng = c._engine
    with eng._rlock:   # the reader thread cannot read now; the receiver's fetch waits too
        first.set()
        assert second.wait(5)
        # both messages' bytes are on loopback now; let the kernel queue them
        p = select.poll()
        p.register(eng._sock.fileno(), select.POLLIN)
        assert p.poll(5000)
        eng._drained = True   # as after the short read that delivered "one"
        with eng._lock:
            eng._lease_end = time.monotonic() + 5   # the reader thread keeps out after we let go
    msg, ok = ch.receive(0)
    assert ok and msg.data == "two"
    with eng._lock:
        eng._lease_end = 0.0
    c.close()


def test_a_receiver_waits_for_a_reply_before_reading_not_after_a_failing_read(raw_server):
    # Request/response: the reply is not there yet when the receiver looks. After a
    # short read it polls first, so its reads do not fail with EAGAIN (one system call
    # and an exception each); the reader thread's reads are not counted.
    rounds = 30

    def script(srv):
        _echo_then_wait_for_close(srv.conn, rounds)

    srv = raw_server(script)
    c = wsfast.connect(srv.url)
    reads = _calls_in_this_thread(c._engine, "_recv_into")
    ch = c.channel()
    _round_trips(c, ch, rounds)
    c.close()
    failed = [n for n in reads if n is None]
    assert len(failed) <= 2, f"{len(failed)} failing reads in {rounds} round trips"
    srv.done.wait(5)
    assert srv.error is None


MARKS = engine_mod._MARKS


def _answer_until_close(conn):
    """Server side: answer pings until the client's close frame."""
    conn.settimeout(5)
    while True:
        _fin, op, payload, _masked = read_frame(conn)
        if op == OP_PING:
            conn.sendall(server_frame(OP_PONG, payload))
        elif op == OP_CLOSE:
            return


@pytest.mark.skipif(not MARKS, reason="the wake-up mark is set on Linux only")
@pytest.mark.parametrize("clock", ["read_timeout", "keepalive"])
def test_a_large_frame_trickling_in_below_the_wake_up_mark_is_not_silence(raw_server, clock):
    # While a large frame is read into its message the reader thread is woken only once
    # a good part of the rest is queued (its mark: here a quarter of a 128 KiB receive
    # buffer, 16 pieces, 0.4 s). The bytes below the mark are data all the same: a
    # frame trickling in, a piece every 25 ms, must satisfy a 250 ms read timeout (the
    # reader thread reads what is queued before it judges a deadline) and keepalive
    # that would find the peer dead 300 ms after the last bytes it read (the reader
    # thread reads right after it sends the ping).
    payload = random.Random(3).randbytes(80 * KiB)
    frame = server_frame(OP_BINARY, payload)
    piece, gap = 2 * KiB, 0.025
    sent = threading.Event()

    def script(srv):
        srv.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(frame), piece):
            srv.conn.sendall(frame[i:i + piece])
            time.sleep(gap)
        srv.conn.sendall(close_frame(1000))
        sent.set()
        _answer_until_close(srv.conn)

    srv = raw_server(script)
    clocks = {"read_timeout": {"read_timeout": "250ms"},
              "keepalive": {"ping_interval": "150ms", "ping_timeout": "150ms"}}
    c = wsfast.connect(srv.url, **clocks[clock])
    sock = c._engine._sock
    marks = []
    while not sent.wait(0.05):   # nobody receives: the reader thread reads the frame
        marks.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))
    got = [m.data for m in c.channel()]
    assert got == [payload]
    assert (c.close_code, c.error) == (1000, None)
    assert max(marks) > 4 * piece   # the reader thread did wait behind a mark
    srv.done.wait(5)
    assert srv.error is None


@pytest.mark.skipif(not MARKS, reason="the wake-up mark is set on Linux only")
def test_after_a_large_frame_the_mark_is_one_byte_again(raw_server):
    # The mark is the rest of the frame being read: once that frame is whole, a ping
    # arriving alone (7 bytes) must still wake the reader thread and be answered, while
    # the consumer sleeps. The frame comes in two halves, so the reader thread waits
    # for its second half behind a mark.
    payload = random.Random(4).randbytes(300 * KiB)
    frame = server_frame(OP_BINARY, payload)
    pong = []

    def script(srv):
        srv.conn.sendall(frame[:len(frame) // 2])
        time.sleep(0.2)
        srv.conn.sendall(frame[len(frame) // 2:])
        time.sleep(0.3)   # the client read the frame and waits again
        srv.conn.sendall(server_frame(OP_PING, b"after"))
        srv.conn.settimeout(5)
        _fin, op, data, _masked = read_frame(srv.conn)
        pong.append((op, data))
        srv.conn.sendall(close_frame(1000))
        _answer_until_close(srv.conn)

    srv = raw_server(script)
    c = wsfast.connect(srv.url)
    srv.done.wait(10)
    assert srv.error is None
    assert pong == [(OP_PONG, b"after")]
    assert [m.data for m in c.channel()] == [payload]
    assert c.close_code == 1000


@pytest.mark.skipif(not engine_mod._BLOCKING_READS, reason="blocking reads are used on Linux only")
def test_a_receivers_wait_on_plain_tcp_is_one_read_bounded_by_its_timeout(raw_server):
    # On plain TCP the socket stays in blocking mode and a receiver waits for bytes in
    # its read, bounded by SO_RCVTIMEO: at most a lease, or what is left of its timeout.
    # Each timeout must still hold (never early, never much late), a reply must end the
    # wait as soon as it comes, and in a request/response loop each wait is one read
    # that returns the reply (no poll before it).
    rounds = 20
    go = threading.Event()

    def script(srv):
        go.wait(10)   # silent while the client's timeouts run (10 s: then it closes)
        if not go.is_set():
            srv.conn.sendall(close_frame(1000))
            return
        _fin, op, payload, _masked = read_frame(srv.conn)
        time.sleep(0.2)   # a slow reply: longer than a lease
        srv.conn.sendall(server_frame(op, payload))
        _echo_then_wait_for_close(srv.conn, rounds)

    srv = raw_server(script)
    c = wsfast.connect(srv.url)
    eng = c._engine
    assert eng._blocking_reads and eng._sock.gettimeout() is None
    waits = _calls_in_this_thread(eng, "_wait_into")
    ch = c.channel()
    for timeout in (0.001, 0.05, 0.3):
        t0 = time.monotonic()
        with pytest.raises(wsfast.Timeout):
            ch.receive(timeout)
        took = time.monotonic() - t0
        assert timeout <= took < timeout + 1.0, (timeout, took)
    assert waits and all(n is None for n in waits)   # the waits were reads, timed out
    go.set()
    del waits[:]
    t0 = time.monotonic()
    c.send("slow")
    msg, ok = ch.receive(5)
    assert ok and msg.data == "slow"
    assert time.monotonic() - t0 < 1.0
    # one lease in a read of its own, then the reader thread takes the waiting back
    assert waits[:1] == [None], waits
    del waits[:]
    _round_trips(c, ch, rounds)
    # (a reply that beats the receiver to the socket is read without a wait)
    assert len(waits) >= rounds // 2 and all(n for n in waits), waits
    c.close()
    srv.done.wait(5)
    assert srv.error is None


def test_a_reply_is_written_by_its_sender_and_a_burst_by_the_reader_thread(raw_server, monkeypatch):
    # Sends close together are a burst: the reader thread writes them together. But a
    # send made after a message arrived is a reply, and goes out at once from its
    # sender's thread, however soon after the previous send: a request/response loop
    # faster than the coalescing gap must not wait for a hand-off (and the reader
    # thread's linger) on every request. The gap is widened so that "close together"
    # does not depend on this machine's speed.
    monkeypatch.setattr(engine_mod, "_COALESCE_GAP", 0.5)
    rounds = 5

    def script(srv):
        _echo_then_wait_for_close(srv.conn, rounds + 2)

    srv = raw_server(script)
    c = wsfast.connect(srv.url)
    writes = _calls_in_this_thread(c._engine, "_send")
    ch = c.channel()
    _round_trips(c, ch, rounds)
    # every request, each within the gap of the one before, was written by its sender
    assert len(writes) == rounds and all(writes), writes
    c.send("burst 1")
    c.send("burst 2")   # within the gap, nothing received between: the reader thread writes it
    assert len(writes) == rounds + 1, writes
    for i in (1, 2):
        msg, ok = ch.receive(5)
        assert ok and msg.data == f"burst {i}"
    c.close()
    srv.done.wait(5)
    assert srv.error is None
