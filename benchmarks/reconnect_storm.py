"""Reconnect storms: how hard does a reconnecting client hit a server that is in trouble?

    python -m benchmarks.reconnect_storm [--duration 2] [--gaps 3] [--limit 15]

Two servers on 127.0.0.1 (raw sockets, one thread, standard library only):

* accept-and-drop: answers the upgrade with 101 and closes TCP at once. Each client
  runs its reconnect loop for ``--duration`` seconds (the body waits for the connection
  to end); the server counts the connections it accepted.
* 503: answers every request ``503 Service Unavailable`` with ``Retry-After: 1``; the
  server records when each attempt arrived, and the table shows the first ``--gaps``
  gaps between attempts (or as many as came within ``--limit`` seconds).

Clients, each with its library's default settings: ``wsfast.reconnecting`` (and with
``backoff_min="100ms"``), websockets' asyncio iterator (``async for ws in
websockets.asyncio.client.connect(url)``) and, where the installed websockets has one,
its sync iterator (``websockets.sync.client.reconnect``, websockets >= 15). A plain
``wsfast.connect`` loop with no delay shows what the server can take.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import socket
import threading
import time
from typing import Callable, Dict, List, Optional

import wsfast
from wsfast.reconnect import reconnecting  # (also wsfast.reconnecting once exported)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Server:
    """Accept connections one after another; ``mode`` is "drop" (101, then close) or
    "503" (503 with Retry-After: 1). ``times`` holds when each request was read."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.times: List[float] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(0.05)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="storm-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                conn.settimeout(5)
                self._answer(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _answer(self, conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(65536)
            if not chunk:
                return
            request += chunk
        self.times.append(time.monotonic())
        if self.mode == "503":
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return
        key = b""
        for line in request.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")

    def count_since(self, t0: float) -> int:
        return sum(1 for t in self.times if t >= t0)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.listener.close()


# ---------------------------------------------------------------------- the clients
# Each runner takes the URL and a stop Event and runs its library's reconnect loop until
# the Event is set (or as soon after as the library lets it).

def wsfast_runner(**options) -> Callable[[str, threading.Event], None]:
    def run(url: str, stop: threading.Event) -> None:
        it = reconnecting(url, **options)
        closer = threading.Thread(target=lambda: (stop.wait(), it.close()), daemon=True)
        closer.start()
        try:
            for client in it:
                for _msg in client.channel():
                    pass
        except wsfast.Error:
            pass
        stop.set()
        closer.join(5)
    return run


def wsfast_plain(url: str, stop: threading.Event) -> None:
    """No reconnect iterator: connect again as soon as the connection ended."""
    while not stop.is_set():
        try:
            with wsfast.connect(url) as client:
                for _msg in client.channel():
                    pass
        except wsfast.Error:
            pass


def websockets_asyncio(url: str, stop: threading.Event) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def loop() -> None:
        async for ws in connect(url):
            try:
                await ws.recv()
            except ConnectionClosed:
                pass

    async def main() -> None:
        task = asyncio.ensure_future(loop())
        while not stop.is_set() and not task.done():
            await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass

    asyncio.run(main())


def websockets_sync(url: str, stop: threading.Event) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import reconnect

    # its delays are time.sleep calls: the loop can only stop in the body
    for ws in reconnect(url):
        try:
            ws.recv()
        except ConnectionClosed:
            pass
        if stop.is_set():
            break


def _has_websockets_sync_reconnect() -> bool:
    try:
        from websockets.sync.client import reconnect  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------- measuring

def storm(run: Callable, duration: float) -> int:
    """Connections an accept-and-drop server accepted from ``run`` in ``duration`` s."""
    server = Server("drop")
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(server.url, stop), daemon=True)
    t0 = time.monotonic()
    thread.start()
    time.sleep(duration)
    n = server.count_since(t0) - server.count_since(t0 + duration)
    stop.set()
    thread.join(10)
    server.stop()
    return n


def gaps_after_503(run: Callable, gaps: int, limit: float) -> List[float]:
    """Seconds between successive attempts at a server answering 503, Retry-After: 1."""
    server = Server("503")
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(server.url, stop), daemon=True)
    thread.start()
    end = time.monotonic() + limit
    while len(server.times) <= gaps and time.monotonic() < end:
        time.sleep(0.01)
    stop.set()
    times = list(server.times[:gaps + 1])
    thread.join(0.5)      # websockets' sync loop sleeps on: left to end with the process
    server.stop()
    return [b - a for a, b in zip(times, times[1:])]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of each storm run")
    parser.add_argument("--gaps", type=int, default=3, help="gaps measured after 503s")
    parser.add_argument("--limit", type=float, default=15.0, help="at most this long per 503 run")
    args = parser.parse_args(argv)

    import websockets

    clients: Dict[str, Callable] = {
        "wsfast.reconnecting (defaults)": wsfast_runner(),
        'wsfast.reconnecting (backoff_min="100ms")': wsfast_runner(backoff_min="100ms"),
        f"websockets {websockets.__version__} asyncio connect()": websockets_asyncio,
    }
    if _has_websockets_sync_reconnect():
        clients[f"websockets {websockets.__version__} sync reconnect()"] = websockets_sync
    rows = []
    for name, run in clients.items():
        n = storm(run, args.duration)
        g = gaps_after_503(run, args.gaps, args.limit)
        rows.append((name, n, n / args.duration, g))
        print(f"  measured {name}", flush=True)
    plain = storm(wsfast_plain, args.duration)

    print()
    print(f"accept-and-drop server, {args.duration:g} s; 503 + Retry-After: 1 server, "
          f"first {args.gaps} gaps (at most {args.limit:g} s)")
    print()
    print("| client | connections | per second | gaps between attempts after 503 (s) |")
    print("|---|---:|---:|---|")
    for name, n, rate, g in rows:
        print(f"| {name} | {n} | {rate:.1f} | {', '.join(f'{x:.2f}' for x in g) or '-'} |")
    print(f"| wsfast.connect in a loop, no delay (the server's capacity) | {plain} | "
          f"{plain / args.duration:.1f} | - |")


if __name__ == "__main__":
    main()
