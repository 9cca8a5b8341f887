"""Leak and resource checks: connect -> exchange -> close, over and over (issue 13, item 3).

    python -m benchmarks.leaks [--cycles 10000] [--every 1000] [--front sync,asyncio]
                               [--scenarios ok,wss,refused,reset,handshake-timeout,
                                redirect-loop,proxy-drop] [--loop asyncio|uvloop] [--json FILE]

(``make leaks`` runs it with the defaults.) The servers run in a child process
(``--serve``), so what is measured here is the client alone: every ``--every`` cycles,
after the cycles' last thread and socket are gone, the open file descriptors
(``/proc/self/fd``), the threads (``/proc/self/status``: the kernel's count, so threads
that are not Python's count too) and the RSS. Scenarios, each against a real server on
127.0.0.1 (the test suite's helpers: ``tests/faultrelay.py``, ``tests/test_redirects.py``'s
``HttpServer``, ``tests/test_proxy.py``'s pproxy):

* ``ok``: a websockets server, permessage-deflate: a text echo and a 100 KiB binary echo,
  then close 1000;
* ``wss``: the same over TLS (a trustme certificate);
* ``refused``: a port nobody listens on (ConnectError);
* ``reset``: a server streaming 1 KiB messages behind the fault relay, which resets the
  connection (RST both ways) in the middle of the fifth frame (ConnectError on the client);
* ``handshake-timeout``: a server that reads the upgrade request and never answers
  (``dial_timeout`` 30 ms, ``--dial-timeout-ms``: Timeout);
* ``redirect-loop``: 302 to itself (``max_redirects`` 3: HandshakeError, 4 connections a cycle);
* ``proxy-drop``: through pproxy (HTTP CONNECT) to the streaming server behind the relay,
  which resets it mid-frame: the tunnel drops under the client (ConnectError).

After each cycle, the time until the cycle's last thread and socket are gone is measured
("outlived", bounded by 5 s: no thread or socket outlives its client for longer). The run
fails (exit status 1) when a bound is broken:

* descriptors and threads at each checkpoint: no more than at the first (taken after a
  warm-up of ``--warmup`` cycles) plus ``--slack`` (default 0);
* RSS: the last checkpoint at most ``--rss-bound`` MiB (default 8) above the first;
* an unexpected outcome of a cycle (a scenario's error of the wrong type), or a
  ResourceWarning or an unraisable exception in the client process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from typing import Any, Dict, List, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))
_TESTS = os.path.join(os.path.dirname(_HERE), "tests")

SCENARIOS = ["ok", "wss", "refused", "reset", "handshake-timeout", "redirect-loop", "proxy-drop"]
FRAME = 1000          # the streaming server's message size (bytes of payload)
RESET_AT = 5 * 1000   # relay bytes (101 response + frames) after which it resets: mid-frame


# ====================================================================== the servers (child)

def _stream_handler(ws) -> None:
    """websockets handler: 20 messages of FRAME bytes, then wait for the client."""
    try:
        for i in range(20):
            ws.send(f"{i:06d}" + "x" * (FRAME - 6))
        for _ in ws:
            pass
    except Exception:
        pass   # the relay cut it


def _echo_handler(ws) -> None:
    try:
        for msg in ws:
            ws.send(msg)
    except Exception:
        pass


class SilentServer:
    """Reads whatever comes and never answers; closes a connection when its client does."""

    def __init__(self) -> None:
        import selectors
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.listener, selectors.EVENT_READ)
        threading.Thread(target=self._run, name="silent-server", daemon=True).start()

    def _run(self) -> None:
        import selectors
        while True:
            for key, _ in self._sel.select(1.0):
                sock = key.fileobj
                if sock is self.listener:
                    try:
                        conn, _ = self.listener.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    self._sel.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._sel.unregister(sock)
                    sock.close()


def serve() -> None:
    """The child process: start every server, print their ports as one JSON line, run
    until stdin closes."""
    sys.path.insert(0, _TESTS)
    import logging

    import trustme
    from faultrelay import Fault, FaultRelay
    from test_proxy import PProxy
    from test_redirects import HttpServer, redirect
    from websockets.sync.server import serve as ws_serve

    logging.disable(logging.CRITICAL)   # websockets logs every cut connection
    servers: Dict[str, Any] = {}
    echo = ws_serve(_echo_handler, "127.0.0.1", 0, max_size=None)
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(tls)
    echo_tls = ws_serve(_echo_handler, "127.0.0.1", 0, ssl=tls, max_size=None)
    stream = ws_serve(_stream_handler, "127.0.0.1", 0, compression=None)
    for srv in (echo, echo_tls, stream):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    plan = lambda number: [Fault("reset", RESET_AT)]   # noqa: E731
    relay = FaultRelay(stream.socket.getsockname()[1], plan=plan)
    proxy_relay = FaultRelay(stream.socket.getsockname()[1], plan=plan)
    silent = SilentServer()
    loop = HttpServer(redirect(302, "/again"))
    proxy = PProxy("http", None, None)
    with socket.socket() as probe:   # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        refused = probe.getsockname()[1]
    ca_file = os.path.join(tempfile.mkdtemp(prefix="wsfast-leaks-"), "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    servers = {
        "echo": echo.socket.getsockname()[1], "echo_tls": echo_tls.socket.getsockname()[1],
        "ca": ca_file, "reset": relay.port, "proxy_target": proxy_relay.port,
        "silent": silent.port, "loop": loop.port, "proxy": proxy.port, "refused": refused,
    }
    print(json.dumps(servers), flush=True)
    try:
        sys.stdin.read()
    finally:
        proxy.stop()
        os._exit(0)


class Servers:
    """The child process with the servers; ``ports`` as it printed them."""

    def __init__(self) -> None:
        root = os.path.dirname(_HERE)
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.leaks", "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise RuntimeError("the server process did not start")
        self.ports = json.loads(line)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# ====================================================================== measuring (parent)

def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def socket_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def threads() -> int:
    return _status("Threads")


def rss_kib() -> int:
    return _status("VmRSS")


def wsfast_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("wsfast")]


class Watch:
    """Resource warnings and unraisable exceptions in this process, counted."""

    def __init__(self) -> None:
        self.problems: List[str] = []
        self._old_hook = sys.unraisablehook
        self._old_show = warnings.showwarning
        sys.unraisablehook = self._unraisable
        warnings.simplefilter("always", ResourceWarning)
        warnings.showwarning = self._warning

    def _unraisable(self, info: Any) -> None:
        self.problems.append(f"unraisable: {info.exc_type.__name__}: {info.exc_value} in {info.object!r}")

    def _warning(self, message: Any, category: Any, filename: str, lineno: int, *a: Any, **k: Any) -> None:
        if issubclass(category, ResourceWarning):
            self.problems.append(f"ResourceWarning: {message} ({filename}:{lineno})")
        else:
            self._old_show(message, category, filename, lineno, *a, **k)

    def stop(self) -> None:
        sys.unraisablehook = self._old_hook
        warnings.showwarning = self._old_show


# ====================================================================== the cycles

class Scenario:
    """Names the URL, options and expected outcome of one scenario."""

    def __init__(self, name: str, ports: dict) -> None:
        import ssl

        import wsfast
        self.name = name
        host = "127.0.0.1"
        self.options: Dict[str, Any] = {"dial_timeout": "5s", "close_timeout": "2s"}
        self.expect: Optional[type] = None       # the error connect raises, if any
        self.stream_error: Optional[type] = None  # the error that ends the stream, if any
        self.fewest = 1   # messages the client must get before the stream's reset
        if name == "ok":
            self.url = f"ws://{host}:{ports['echo']}/"
            self.options["compression"] = wsfast.COMPRESSION.CONTEXT_TAKEOVER
        elif name == "wss":
            self.url = f"wss://localhost:{ports['echo_tls']}/"
            self.options["ssl"] = ssl.create_default_context(cafile=ports["ca"])
        elif name == "refused":
            self.url = f"ws://{host}:{ports['refused']}/"
            self.expect = wsfast.ConnectError
        elif name == "reset":
            self.url = f"ws://{host}:{ports['reset']}/"
            self.stream_error = wsfast.ConnectError
        elif name == "handshake-timeout":
            self.url = f"ws://{host}:{ports['silent']}/"
            self.options["dial_timeout"] = f"{ports.get('dial_timeout_ms', 30)}ms"
            self.expect = wsfast.Timeout
        elif name == "redirect-loop":
            self.url = f"ws://{host}:{ports['loop']}/"
            self.options["max_redirects"] = 3
            self.expect = wsfast.HandshakeError
        elif name == "proxy-drop":
            self.url = f"ws://{host}:{ports['proxy_target']}/"
            self.options["proxy"] = f"http://{host}:{ports['proxy']}"
            self.stream_error = wsfast.ConnectError
            # pproxy may drop the frames that came just before the relay's reset: its
            # asyncio StreamReader raises a connection's error before it hands over the
            # bytes that arrived with it (once in ~4,000 cycles of a loaded make test)
            self.fewest = 0
        else:
            raise ValueError(f"unknown scenario {name!r}")

    def check_stream(self, got: int, error: Any) -> Optional[str]:
        if self.stream_error is None:
            return None
        if not isinstance(error, self.stream_error):
            return f"the stream ended with {error!r}, not a {self.stream_error.__name__}"
        if not self.fewest <= got < 20:
            return f"{got} messages before the reset (expected at least {self.fewest}, not all)"
        return None


_TEXT = "leak check " * 10
_BLOB = bytes(range(256)) * 400   # 100 KiB


def sync_cycle(sc: Scenario) -> Optional[str]:
    """One connect -> exchange -> close; returns what went wrong, or None."""
    import wsfast
    try:
        client = wsfast.connect(sc.url, sc.options)
    except wsfast.Error as err:
        if sc.expect is not None and isinstance(err, sc.expect):
            return None
        return f"connect raised {err!r}"
    if sc.expect is not None:
        client.close()
        return f"connect succeeded, expected {sc.expect.__name__}"
    try:
        ch = client.channel()
        if sc.stream_error is not None:
            got = sum(1 for _ in ch)
            return sc.check_stream(got, client.error)
        client.send(_TEXT)
        msg, ok = ch.receive()
        if not ok or msg.data != _TEXT:
            return f"text echo: {msg!r} {client.error!r}"
        client.send(_BLOB)
        msg, ok = ch.receive()
        if not ok or msg.data != _BLOB:
            return f"binary echo: {ok} {client.error!r}"
        return None
    finally:
        try:
            client.close()
        except wsfast.ConnectionClosed:
            pass


async def async_cycle(sc: Scenario) -> Optional[str]:
    import wsfast
    import wsfast.asyncio as wa
    try:
        client = await wa.connect(sc.url, sc.options)
    except wsfast.Error as err:
        if sc.expect is not None and isinstance(err, sc.expect):
            return None
        return f"connect raised {err!r}"
    if sc.expect is not None:
        await client.close()
        return f"connect succeeded, expected {sc.expect.__name__}"
    try:
        ch = client.channel()
        if sc.stream_error is not None:
            got = 0
            async for _ in ch:
                got += 1
            return sc.check_stream(got, client.error)
        await client.send(_TEXT)
        msg, ok = await ch.receive()
        if not ok or msg.data != _TEXT:
            return f"text echo: {msg!r} {client.error!r}"
        await client.send(_BLOB)
        msg, ok = await ch.receive()
        if not ok or msg.data != _BLOB:
            return f"binary echo: {ok} {client.error!r}"
        return None
    finally:
        try:
            await client.close()
        except wsfast.ConnectionClosed:
            pass


class Run:
    """One scenario on one front end: the cycles, the checkpoints, the bounds."""

    def __init__(self, front: str, scenario: Scenario, cycles: int, every: int, warmup: int) -> None:
        self.front = front
        self.scenario = scenario
        self.cycles = cycles
        self.every = every
        self.warmup = warmup
        self.points: List[dict] = []
        self.failures: List[str] = []
        self.outlived_max = 0.0      # seconds from a cycle's end until its threads and sockets were gone
        self.base_sockets = 0
        self.leftover_threads: set = set()
        self.leaked = False
        self.started = time.monotonic()

    def settle(self, limit: float = 5.0) -> float:
        """Wait (bounded) until no wsfast thread is alive and the sockets are back to the
        baseline; returns how long it took (``limit`` when they never were)."""
        if self.leftover_threads or self.leaked:
            limit = 0.05   # a leak was found already: measure, do not wait for every cycle's
        start = time.monotonic()
        while True:
            if set(wsfast_threads()) <= self.leftover_threads and socket_fds() <= self.base_sockets:
                return time.monotonic() - start
            if time.monotonic() - start >= limit:
                if len(self.failures) < 20:
                    self.failures.append(f"outlived its client by {limit:g} s: threads "
                                         f"{wsfast_threads()}, sockets {socket_fds()} > {self.base_sockets}")
                # (what is left is counted once: the next cycles are measured from here)
                self.base_sockets = max(self.base_sockets, socket_fds())
                self.leftover_threads = set(wsfast_threads())
                self.leaked = True
                return limit
            time.sleep(0.0005)

    def after_cycle(self, i: int, problem: Optional[str]) -> None:
        if problem is not None and len(self.failures) < 20:
            self.failures.append(f"cycle {i}: {problem}")
        self.outlived_max = max(self.outlived_max, self.settle())
        if i == self.warmup or (i > self.warmup and (i - self.warmup) % self.every == 0) or i == self.cycles:
            gc.collect()
            point = {"cycle": i, "fds": fds(), "threads": threads(), "rss_kib": rss_kib(),
                     "seconds": round(time.monotonic() - self.started, 1)}
            if not self.points or self.points[-1]["cycle"] != i:
                self.points.append(point)

    def check(self, slack: int, rss_bound_mib: float) -> None:
        if not self.points:
            return
        first = self.points[0]
        for p in self.points[1:]:
            for key in ("fds", "threads"):
                if p[key] > first[key] + slack:
                    self.failures.append(f"{key} grew: {first[key]} at cycle {first['cycle']}, "
                                         f"{p[key]} at cycle {p['cycle']}")
        growth = (self.points[-1]["rss_kib"] - first["rss_kib"]) / 1024
        if growth > rss_bound_mib:
            self.failures.append(f"RSS grew {growth:.1f} MiB (bound {rss_bound_mib:g} MiB) from cycle "
                                 f"{first['cycle']} to {self.points[-1]['cycle']}")

    def report(self) -> dict:
        return {"front": self.front, "scenario": self.scenario.name, "cycles": self.cycles,
                "points": self.points, "outlived_max_ms": round(self.outlived_max * 1000, 1),
                "failures": self.failures}


def run_sync(sc: Scenario, cycles: int, every: int, warmup: int) -> Run:
    run = Run("sync", sc, cycles, every, warmup)
    run.base_sockets = socket_fds()
    for i in range(1, cycles + 1):
        run.after_cycle(i, sync_cycle(sc))
    return run


def run_async(sc: Scenario, cycles: int, every: int, warmup: int, loop: str) -> Run:
    run = Run(f"asyncio ({loop})", sc, cycles, every, warmup)

    def on_error(loop: Any, context: dict) -> None:   # ("Future exception was never retrieved"...)
        if len(run.failures) < 20:
            run.failures.append(f"the loop's exception handler: {context.get('message')} "
                                f"{context.get('exception')!r}")

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(on_error)
        run.base_sockets = socket_fds()   # (the loop's self-pipe is open by now)
        for i in range(1, cycles + 1):
            problem = await async_cycle(sc)
            # the transport closes its socket in a later pass of the loop: let it run
            start = time.monotonic()
            while (socket_fds() > run.base_sockets and time.monotonic() - start < 5):
                await asyncio.sleep(0.0005)
            run.after_cycle(i, problem)

    if loop == "uvloop":
        import uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())
    return run


def fmt(run: dict) -> str:
    lines = [f"{run['front']:<18} {run['scenario']:<18} " + "  ".join(
        f"{p['cycle']}:{p['fds']}/{p['threads']}/{p['rss_kib'] / 1024:.1f}M" for p in run["points"])]
    lines.append(f"{'':<37} outlived <= {run['outlived_max_ms']} ms; "
                 f"{run['points'][-1]['seconds'] if run['points'] else 0} s"
                 + ("" if not run["failures"] else "; FAIL: " + "; ".join(run["failures"][:5])))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cycles", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=None, help="cycles before the first checkpoint "
                    "(default: --every, at most 1000)")
    ap.add_argument("--front", default="sync,asyncio")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    ap.add_argument("--slack", type=int, default=0)
    ap.add_argument("--rss-bound", type=float, default=8.0, help="MiB")
    ap.add_argument("--dial-timeout-ms", type=int, default=30, help="handshake-timeout's dial_timeout")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    if args.serve:
        serve()
        return 0
    warmup = args.warmup if args.warmup is not None else min(args.every, 1000)
    watch = Watch()
    servers = Servers()
    servers.ports["dial_timeout_ms"] = args.dial_timeout_ms
    results: List[dict] = []
    failed = False
    try:
        for front in args.front.split(","):
            for name in args.scenarios.split(","):
                sc = Scenario(name, servers.ports)
                if front == "sync":
                    run = run_sync(sc, args.cycles, args.every, warmup)
                elif front == "asyncio":
                    run = run_async(sc, args.cycles, args.every, warmup, args.loop)
                else:
                    raise SystemExit(f"unknown front end {front!r}")
                run.check(args.slack, args.rss_bound)
                if watch.problems:
                    run.failures += watch.problems[:10]
                    watch.problems.clear()
                r = run.report()
                results.append(r)
                failed = failed or bool(r["failures"])
                print(fmt(r), flush=True)
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump(results, f, indent=1)
    finally:
        servers.stop()
        watch.stop()
    print("FAILED" if failed else "all within bounds "
          f"(fds, threads: +{args.slack} over the first checkpoint; RSS: +{args.rss_bound:g} MiB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
