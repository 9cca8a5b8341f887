"""A client's own cost per request/response round trip, measured in one process.

    python -m benchmarks.roundtrip [--repeat 5] [--rounds 20000] [--clients a,b,...]

The peer is a scripted WebSocket server in the client's own process (its socket is
served by the same thread): each round, the peer writes one 104-byte text frame, the
client receives it and sends it back, and the peer reads the reply. No other process
takes part, so no wake-up crosses a CPU: what is measured is CPU time (the process's,
all threads) per round, and the ``raw`` client (the same four system calls on plain
sockets, no WebSocket code) gives the floor. A client's own cost is its time above
``raw``. The echo scenario of ``make bench-e2e`` measures the same loop across two
processes, where the kernel's wake-ups take most of a round trip and the host's noise
hides differences of a microsecond or two.

Each client runs in a process of its own, pinned to one core (``taskset``) when it can;
the runner interleaves the clients and repeats, and prints for each the median over
repeats of the lowest of 7 timed passes (the lowest: time another tenant of the host
takes only ever adds). websocket-rs runs under ``build/bench-venv312`` when present, as
in ``make bench-e2e``.

This is how stop 22 found that a send made within 20 µs of the previous one was handed
to the reader thread even when it answered a message (116 µs per round here; 19 µs once
fixed): see docs/performance.md, "echo, a sixth look".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from .e2e.client import Ctx, Raw
from .e2e.payloads import SCENARIOS
from .e2e.server import handshake

ROOT = Path(__file__).resolve().parent.parent
VENV312 = ROOT / "build" / "bench-venv312" / "bin" / "python"
CLIENTS = ("raw", "wsfast", "wsfast-receive", "websocket-client", "websocket-rs")


def _listen():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    return ls


def _accept_upgrade(ls, out: list) -> None:
    """Peer side of the handshake: the e2e server's answer to the upgrade request."""
    conn, _ = ls.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    handshake(conn, SCENARIOS["echo"], None)
    out.append(conn)


def _connect(client: str, port: int):
    """The client's connection: (receive one message, send one, close), as callables;
    for ``raw``, the socket's ``recv_into`` (with its buffer) and ``send``."""
    url = f"ws://127.0.0.1:{port}/"
    if client == "raw":   # the e2e suite's raw-socket pseudo-client opens it
        sock, _headers, _rest = Raw()._open(Ctx(SCENARIOS["echo"], 1, url, "0"))
        return sock.recv_into, sock.send, sock.close
    if client in ("wsfast", "wsfast-receive"):
        import wsfast
        c = wsfast.connect(url)
        ch = c.channel()
        return (ch.receive if client == "wsfast-receive" else iter(ch).__next__), c.send, c.close
    if client == "websocket-client":
        import websocket
        c = websocket.create_connection(url, enable_multithread=False, skip_utf8_validation=True)
        return c.recv, c.send, c.close
    if client == "websocket-rs":
        from websocket_rs.sync.client import connect
        c = connect(url, receive_timeout=60.0)
        return c.recv, c.send, c.close
    raise SystemExit(f"unknown client {client}")


def run_one(client: str, rounds: int) -> dict:
    """One client, in this process: 7 timed passes of ``rounds`` round trips."""
    text = "x" * 104
    frame = bytes([0x81, len(text)]) + text.encode()   # a server's text frame
    ls = _listen()
    got: list = []
    t = threading.Thread(target=_accept_upgrade, args=(ls, got))
    t.start()
    recv, send, close = _connect(client, ls.getsockname()[1])
    t.join(10)
    peer = got[0]
    psend, precv = peer.send, peer.recv
    if client == "raw":
        buf = bytearray(65536)
        recv_into = recv

        def one_pass(n: int) -> float:
            c0 = time.process_time()
            for _ in range(n):
                psend(frame)
                recv_into(buf)
                send(frame)   # (unmasked: the peer reads it as bytes, never parses it)
                precv(4096)
            return time.process_time() - c0
    else:
        def one_pass(n: int) -> float:
            c0 = time.process_time()
            for _ in range(n):
                psend(frame)
                recv()
                send(text)
                precv(4096)
            return time.process_time() - c0

    one_pass(max(1, rounds // 4))   # warm up
    passes = [one_pass(rounds) / rounds * 1e6 for _ in range(7)]
    close()
    peer.close()
    ls.close()
    return {"client": client, "rounds": rounds, "cpu_us": min(passes), "passes_us": passes}


def _command(client: str, rounds: int) -> list:
    py = sys.executable
    if client == "websocket-rs":
        if not VENV312.exists():
            return []
        py = str(VENV312)
    cmd = [py, "-m", "benchmarks.roundtrip", "--client", client, "--rounds", str(rounds)]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "1"] + cmd
    return cmd


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--client", help="run one client in this process and print JSON")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--rounds", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    if args.client:
        print(json.dumps(run_one(args.client, args.rounds)), flush=True)
        os._exit(0)   # (a library's thread teardown must not stall the run)
    clients = [c for c in args.clients.split(",") if _command(c, args.rounds)]
    results: dict = {c: [] for c in clients}
    for r in range(args.repeat):
        for c in clients[r % len(clients):] + clients[:r % len(clients)]:
            out = subprocess.run(_command(c, args.rounds), capture_output=True, text=True,
                                 cwd=ROOT, timeout=600)
            try:
                results[c].append(json.loads(out.stdout.strip().splitlines()[-1])["cpu_us"])
            except (IndexError, ValueError, KeyError):
                print(f"{c}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
    floor = statistics.median(results["raw"]) if results.get("raw") else None
    print(f"{'client':18s} {'CPU µs/round':>13s} {'above raw':>10s}  (median of {args.repeat}, "
          f"each the lowest of 7 passes of {args.rounds})")
    for c, v in results.items():
        if not v:
            continue
        med = statistics.median(v)
        above = f"{med - floor:10.2f}" if floor is not None else ""
        print(f"{c:18s} {med:13.2f} {above}")


if __name__ == "__main__":
    main()
