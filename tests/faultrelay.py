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

``connections`` counts the connections accepted; ``close()`` ends everything.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import List, Optional


def _rst(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultRelay:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
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
            if silent or stalled:
                time.sleep(0.01)
                continue
            readable, _, _ = select.select(list(open_ends), [], [], 0.01)
            for src in readable:
                dst = open_ends[src]
                want = 65536
                if src is server:
                    if trickle is not None:
                        want = trickle[0]
                    if reset_after is not None:
                        want = min(want, reset_after)
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
                    with self._lock:
                        if self._reset_after is not None:
                            self._reset_after = max(0, self._reset_after - len(data))
                    if trickle is not None:
                        time.sleep(trickle[1])
