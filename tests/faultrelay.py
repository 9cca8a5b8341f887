"""A fault-injecting TCP relay for tests: what a network does, between client and server.

``FaultRelay(upstream_port)`` listens on 127.0.0.1 and relays every connection it accepts
to the upstream port, byte for byte. Faults apply to the connections open now and to
later ones until cleared; the relay never alters, reorders or duplicates bytes:

* ``stall(seconds)``: forward nothing, either way, for that long;
* ``trickle(size, delay)``: forward server->client bytes ``size`` at a time, ``delay``
  seconds apart;
* ``silence()``: the connections open now forward nothing ever again and keep both
  sockets open (half-open: no FIN, no RST; the peers' writes still land in the kernel's
  buffers); later connections pass;
* ``reset_after(n)``: after ``n`` more server->client bytes, reset both sides (RST) of
  the connection that carried them, once; ``reset()`` is ``reset_after(0)``;
* ``clear()``: back to plain relaying.

Per connection, a plan (``FaultRelay(port, plan=...)``: ``plan(number)`` gives the
list of :class:`Fault` s for the connection numbered ``number``, counted from 1) places
faults at exact byte counts of the server->client stream, so they land mid-frame:

* ``Fault("reset", after)``: RST both sides once ``after`` bytes went down;
* ``Fault("stall", after, seconds)``: forward nothing either way for that long;
* ``Fault("silence", after, seconds)``: half-open for that long (nothing forwarded,
  both sockets open, no FIN, no RST), then both sockets are closed;
* ``Fault("trickle", after, seconds, size, delay)``: for that long, server->client
  bytes ``size`` at a time, ``delay`` seconds apart.

:func:`random_plan` makes a seeded random schedule of them. ``events`` records each
fault as it starts: ``(number, kind, time.monotonic(), seconds)``.

``connections`` counts the connections accepted; ``close()`` ends everything.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import threading
import time
from typing import Callable, List, NamedTuple, Optional


def _rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Fault(NamedTuple):
    """One fault of a connection's plan (see the module's docstring)."""

    kind: str            # "reset", "stall", "silence" or "trickle"
    after: int           # server->client bytes of this connection forwarded before it starts
    seconds: float = 0.0
    size: int = 0        # trickle: bytes at a time
    delay: float = 0.0   # trickle: seconds between them


def random_plan(seed: int, *, first: int = 2000, span: int = 200_000, short_stall: float = 0.5,
                long_stall: float = 4.0, silence: float = 6.0,
                trickle: tuple = (64, 0.005, 1.5)) -> Callable[[int], List[Fault]]:
    """A seeded random fault schedule: each connection gets zero to two faults it can
    survive (a stall of ``short_stall`` seconds, a ``trickle`` of (size, delay, seconds))
    and then one that ends it (a reset, a silence of ``silence`` seconds, or a stall of
    ``long_stall`` seconds), each after a random number of bytes (the first at least
    ``first``, so the handshake passes, then up to ``span`` more each). A stall longer
    than the client's keepalive bound ends the connection too; the caller chooses the
    bound and these durations."""
    rng = random.Random(seed)

    def plan(number: int) -> List[Fault]:
        faults = []
        at = first + rng.randrange(span)
        for _ in range(rng.choice((0, 0, 1, 2))):
            if rng.random() < 0.5:
                faults.append(Fault("stall", at, short_stall))
            else:
                size, delay, seconds = trickle
                faults.append(Fault("trickle", at, seconds, size, delay))
            at += 1 + rng.randrange(span)
        kind = rng.choice(("reset", "reset", "silence", "stall"))
        seconds = {"reset": 0.0, "silence": silence, "stall": long_stall}[kind]
        faults.append(Fault(kind, at, seconds))
        return faults

    return plan


class FaultRelay:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1",
                 plan: Optional[Callable[[int], List[Fault]]] = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.plan = plan
        self.events: List[tuple] = []   # (connection number, kind, time.monotonic(), seconds) per fault
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.connections = 0
        self._lock = threading.Lock()   # guards the fault settings below and _threads
        self._stall_until = 0.0
        self._silent_upto = 0   # connections numbered up to this one are silent
        self._trickle: Optional[tuple] = None
        self._reset_after: Optional[int] = None
        self._closed = threading.Event()
        self._threads: List[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="test-relay", daemon=True)
        self._accepter.start()

    # ------------------------------------------------------------------ faults

    def stall(self, seconds: float) -> None:
        with self._lock:
            self._stall_until = time.monotonic() + seconds

    def trickle(self, size: int, delay: float) -> None:
        with self._lock:
            self._trickle = (size, delay)

    def silence(self) -> None:
        with self._lock:
            self._silent_upto = self.connections

    def reset_after(self, n: int) -> None:
        with self._lock:
            self._reset_after = n

    def reset(self) -> None:
        self.reset_after(0)

    def clear(self) -> None:
        with self._lock:
            self._stall_until = 0.0
            self._silent_upto = 0
            self._trickle = None
            self._reset_after = None

    def close(self) -> None:
        self._closed.set()
        try:
            self.listener.close()
        except OSError:
            pass
        self._accepter.join(5)
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(5)

    # ------------------------------------------------------------------ relaying

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _rst(client)
                continue
            with self._lock:
                self.connections += 1
                number = self.connections
            t = threading.Thread(target=self._pump, args=(client, server, number), name="test-relay-pump",
                                 daemon=True)
            with self._lock:
                self._threads.append(t)
            t.start()

    def _pump(self, client: socket.socket, server: socket.socket, number: int) -> None:
        try:
            self._pump_until_done(client, server, number)
        finally:
            for s in (client, server):
                try:
                    s.close()
                except OSError:
                    pass

    def _pump_until_done(self, client: socket.socket, server: socket.socket, number: int) -> None:
        open_ends = {client: server, server: client}
        planned = list(self.plan(number)) if self.plan is not None else []
        down = 0                   # server->client bytes forwarded on this connection
        hold_until = 0.0           # a planned stall or silence: nothing moves until then
        close_at_end = False       # ... and a silence ends the connection then
        local_trickle = None       # a planned trickle: (size, delay, until)
        while open_ends and not self._closed.is_set():
            with self._lock:
                silent = number <= self._silent_upto
                stalled = time.monotonic() < self._stall_until
                trickle = self._trickle
                reset_after = self._reset_after
            if reset_after == 0:
                with self._lock:
                    self._reset_after = None   # one shot: later connections pass
                _rst(client)
                _rst(server)
                return
            now = time.monotonic()
            if planned and down >= planned[0].after and now >= hold_until:
                fault = planned.pop(0)
                with self._lock:
                    self.events.append((number, fault.kind, now, fault.seconds))
                if fault.kind == "reset":
                    _rst(client)
                    _rst(server)
                    return
                if fault.kind in ("stall", "silence"):
                    hold_until = now + fault.seconds
                    close_at_end = fault.kind == "silence"
                elif fault.kind == "trickle":
                    local_trickle = (fault.size, fault.delay, now + fault.seconds)
            if now < hold_until:
                time.sleep(min(0.01, hold_until - now))
                continue
            if close_at_end:
                return   # the silence is over: both sockets are closed (FIN)
            if local_trickle is not None and now >= local_trickle[2]:
                local_trickle = None
            if silent or stalled:
                time.sleep(0.01)
                continue
            if local_trickle is not None and trickle is None:
                trickle = local_trickle[:2]
            readable, _, _ = select.select(list(open_ends), [], [], 0.01)
            for src in readable:
                dst = open_ends[src]
                want = 65536
                if src is server:
                    if trickle is not None:
                        want = trickle[0]
                    if reset_after is not None:
                        want = min(want, reset_after)
                    if planned and planned[0].after > down:
                        want = min(want, planned[0].after - down)   # the fault lands on its byte
                try:
                    data = src.recv(want)
                except OSError:
                    data = b""
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    del open_ends[src]
                    continue
                try:
                    dst.sendall(data)
                except OSError:
                    return
                if src is server:
                    down += len(data)
                    with self._lock:
                        if self._reset_after is not None:
                            self._reset_after = max(0, self._reset_after - len(data))
                    if trickle is not None:
                        time.sleep(trickle[1])
