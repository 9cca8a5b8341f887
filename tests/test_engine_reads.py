"""The sync engine's reads: what each read asks of the socket, and that the stream
survives every way of cutting it (large messages read straight into their bytes,
small ones through the read buffer, the short read after a large message)."""

from __future__ import annotations

import random
import select
import threading
import time

from conftest import OP_BINARY, OP_TEXT, read_frame, read_until_close, server_frame

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
        eng._lease_end = time.monotonic() + 5   # the reader thread keeps out after we let go
    msg, ok = ch.receive(0)
    assert ok and msg.data == "two"
    with eng._rlock:
        eng._lease_end = 0.0
    c.close()


def test_a_receiver_waits_for_a_reply_before_reading_not_after_a_failing_read(raw_server):
    # Request/response: the reply is not there yet when the receiver looks. After a
    # short read it polls first, so its reads do not fail with EAGAIN (one system call
    # and an exception each); the reader thread's reads are not counted.
    rounds = 30

    def script(srv):
        for _ in range(rounds):
            _fin, op, payload, _masked = read_frame(srv.conn)
            srv.conn.sendall(server_frame(op, payload))
        read_until_close(srv.conn)

    srv = raw_server(script)
    c = wsfast.connect(srv.url)
    eng = c._engine
    me = threading.current_thread()
    failed = []
    recv_into = eng._recv_into

    def counting(buf):
        try:
            return recv_into(buf)
        except BlockingIOError:
            if threading.current_thread() is me:
                failed.append(1)
            raise

    eng._recv_into = counting
    ch = c.channel()
    for i in range(rounds):
        c.send(f"q{i}")
        msg, ok = ch.receive(5)
        assert ok and msg.data == f"q{i}"
    c.close()
    assert len(failed) <= 2, f"{len(failed)} failing reads in {rounds} round trips"
    srv.done.wait(5)
    assert srv.error is None
