"""The command line: ``python -m wsfast demo`` and the interactive client ``python -m wsfast URL``.

Every test runs the real command in a subprocess (same interpreter, same environment,
so ``WSFAST_PURE_PYTHON=1`` covers the pure codec too) against servers on 127.0.0.1. The
demo's price server runs in a process of its own, here as in the command line
(``wsfast.demo.ServerProcess``).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

import pytest
from websockets.sync.server import serve

import wsfast
from wsfast.demo import ServerProcess, ServerProcessError

pytestmark = pytest.mark.timeout(60)

CMD = [sys.executable, "-m", "wsfast"]


# ---------------------------------------------------------------------- helpers

class EchoServer:
    """A ``websockets`` echo server in a thread that records what each connection did."""

    def __init__(self) -> None:
        self.headers: List[Dict[str, str]] = []
        self.close_codes: List[Optional[int]] = []
        self.done = threading.Event()
        self._server = serve(self._handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/echo"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handler(self, ws) -> None:
        self.headers.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        try:
            for message in ws:
                if message == "please close":
                    ws.close(4001, "asked to")
                    break
                ws.send(message)
        finally:
            self.close_codes.append(ws.close_code)
            self.done.set()

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def echo_server():
    server = EchoServer()
    yield server
    server.stop()


_CLIS: List[Cli] = []


@pytest.fixture(autouse=True)
def _clis_cleaned_up():
    """Every Cli of a test ends with it: the process waited for, its pipes closed
    (ResourceWarnings are errors)."""
    yield
    while _CLIS:
        _CLIS.pop().cleanup()


class Cli:
    """``python -m wsfast ...`` with stdout/stderr lines collected by threads."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(CMD + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        self.out: queue.Queue = queue.Queue()
        self.err: queue.Queue = queue.Queue()
        self.out_lines: List[str] = []
        self.err_lines: List[str] = []
        self._pumps = []
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            t = threading.Thread(target=self._pump, args=(stream, q), daemon=True)
            t.start()
            self._pumps.append(t)
        _CLIS.append(self)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for t in self._pumps:
            t.join(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass   # (stdin: a broken pipe flushing what the process never read)

    @staticmethod
    def _pump(stream, q: queue.Queue) -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def wait_line(self, q: queue.Queue, seen: List[str], pattern: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no line matching {pattern!r}; got {seen!r}")
            seen.append(line)
            if re.search(pattern, line):
                return line

    def wait_out(self, pattern: str) -> str:
        return self.wait_line(self.out, self.out_lines, pattern)

    def wait_err(self, pattern: str) -> str:
        return self.wait_line(self.err, self.err_lines, pattern)

    def send(self, text: str) -> None:
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def finish(self, timeout: float = 20.0) -> int:
        rc = self.proc.wait(timeout)
        time.sleep(0.05)
        for q, seen in ((self.out, self.out_lines), (self.err, self.err_lines)):
            while True:
                try:
                    line = q.get(timeout=1.0)
                except queue.Empty:
                    break
                if line is None:
                    break
                seen.append(line)
        return rc


def run(*args: str, timeout: float = 45.0) -> subprocess.CompletedProcess:
    return subprocess.run(CMD + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=dict(os.environ))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _running(pid: int) -> bool:
    """Is ``pid`` a live process? (A zombie waiting for its reaper counts as ended.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True   # no /proc: trust kill(0)


def wait_ended(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------------- demo

def _summary_numbers(stdout: str):
    m = re.search(r"summary: ([\d,]+) messages in ([\d.]+) s = ([\d,]+) msg/s", stdout)
    assert m, stdout
    ratio = re.search(r"compression ratio \(wire bytes / payload bytes\): ([\d.]+)", stdout)
    lat = re.search(r"latency .* ms: p50 ([\d.]+)\s+p99 ([\d.]+)", stdout)
    assert ratio and lat, stdout
    return (int(m.group(1).replace(",", "")), float(m.group(2)), float(ratio.group(1)),
            float(lat.group(1)), float(lat.group(2)))


def _server_pid(line: str) -> int:
    m = re.search(r"^demo server: pid (\d+), ws://127\.0\.0\.1:\d+/prices \(a separate process"
                  r"(; it restarts the stream once, at t=[\d.]+s)?\)$", line)
    assert m, line
    return int(m.group(1))


def test_demo_runs_and_summarises():
    proc = run("demo", "--duration", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    server_pid = _server_pid(proc.stdout.splitlines()[0])
    assert not _running(server_pid)   # stopped and reaped before the command ended
    messages, seconds, ratio, p50, p99 = _summary_numbers(proc.stdout)
    assert messages > 0
    assert 0.5 < seconds < 5
    assert ratio > 1.0            # no compression: frame headers make the wire larger
    assert 0 <= p50 <= p99 < 10_000
    assert re.search(r"t=\s*1\.\d+s\s+[\d,]+ msg/s", proc.stdout)   # a status line (not a TTY)
    assert "closed with 1000" in proc.stdout


def test_demo_shows_a_reconnect():
    """The local server restarts the stream once (close 1012, then 503 for 0.3 s): the
    demo reports the loss, reconnects, subscribes again and ends normally."""
    proc = run("demo", "--duration", "2.5", "--rate", "20000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^connection 1 lost: 1012 \(SERVICE_RESTART\) 'service restart'; reconnecting$",
                     out, re.M), out
    gap = re.search(r"^reconnected \(connection 2\) (\d+) ms after the last message", out, re.M)
    assert gap and int(gap.group(1)) >= 300, out      # the 503s last 0.3 s
    assert re.search(r"connections: 2 \(reconnect gaps: \d+ ms\)", out), out
    assert "closed with 1000" in out


def test_demo_compression_ratio_below_one():
    proc = run("demo", "--duration", "1", "--compression", "1", "--rate", "20000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    messages, _, ratio, _, _ = _summary_numbers(proc.stdout)
    assert messages > 0
    assert ratio < 1.0
    assert "permessage-deflate" in proc.stdout


def test_demo_no_context_and_unlimited_rate():
    proc = run("demo", "--duration", "1", "--compression", "2", "--rate", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    messages, _, _, _, _ = _summary_numbers(proc.stdout)
    assert messages > 0
    assert "server_no_context_takeover" in proc.stdout


def test_demo_against_external_url():
    with ServerProcess(rate=5000) as server:
        proc = run("demo", "--duration", "1", "--url", server.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo server:" not in proc.stdout          # --url: no server of its own
    assert _summary_numbers(proc.stdout)[0] > 0
    assert "session 1: closed 1000" in server.events


def test_import_does_not_load_the_demo():
    """The demo (client side and server) is loaded only by 'python -m wsfast demo'."""
    code = ("import sys, wsfast, wsfast.__main__; "
            "print(sorted(m for m in sys.modules if m.startswith('wsfast.') and 'demo' in m))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_demo_sigint_closes_and_stops_the_server():
    cli = Cli("demo", "--duration", "30", "--rate", "20000")
    server_pid = _server_pid(cli.wait_out("^demo server: "))
    assert server_pid != cli.proc.pid and _running(server_pid)
    cli.wait_out(r"^t=\s*1\.")
    cli.proc.send_signal(signal.SIGINT)
    assert cli.finish() == 130, cli.out_lines + cli.err_lines
    assert "interrupted: closing" in cli.out_lines
    assert any("closed with 1000" in line for line in cli.out_lines), cli.out_lines
    assert wait_ended(server_pid)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_demo_server_killed_is_a_clear_error():
    cli = Cli("demo", "--duration", "30", "--rate", "20000")
    server_pid = _server_pid(cli.wait_out("^demo server: "))
    cli.wait_out(r"^t=\s*1\.")
    os.kill(server_pid, signal.SIGKILL)
    assert cli.finish() == 1, cli.out_lines + cli.err_lines
    assert f"error: the demo server process (pid {server_pid}) ended during the run: killed by SIGKILL" \
        in cli.err_lines, cli.err_lines
    assert any(line.startswith("summary: ") for line in cli.out_lines), cli.out_lines


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_demo_server_does_not_outlive_a_killed_client():
    """SIGKILL leaves the client no chance to clean up: the server sees EOF on its stdin."""
    cli = Cli("demo", "--duration", "30", "--rate", "20000")
    server_pid = _server_pid(cli.wait_out("^demo server: "))
    cli.wait_out(r"^t=\s*1\.")
    cli.proc.kill()
    cli.proc.wait(10)
    assert wait_ended(server_pid)


def test_server_process_that_cannot_start_is_reported():
    server = ServerProcess(host="256.0.0.1")        # not an address: the server exits at once
    with pytest.raises(ServerProcessError, match=r"failed to start \(exit status 1\)"):
        server.start()
    assert server.poll() == 1


def test_demo_bad_flag_is_a_usage_error():
    proc = run("demo", "--duration", "-1")
    assert proc.returncode == 2
    assert "usage: python -m wsfast demo" in proc.stderr


def test_price_server_closing_handshake_and_pings():
    """The demo server answers pings, echoes the close and then closes TCP itself."""
    with ServerProcess(rate=2000) as server:
        assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/prices")
        client = wsfast.connect(server.url, compression=wsfast.COMPRESSION.CONTEXT_TAKEOVER)
        client.send('{"action": "subscribe", "symbols": ["AAA-USD"]}')
        msg, ok = client.channel().receive(timeout=5)
        assert ok and msg.type == "text" and '"symbol":"AAA-USD"' in msg.data
        client.ping()
        client.close()
        assert client.close_code == 1000 and client.error is None
        assert client.extensions == "permessage-deflate"
        deadline = time.monotonic() + 5
        while "session 1: closed 1000" not in server.events and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.events == ["session 1: subscribed", "session 1: closed 1000"]
        pid = server.pid
    assert not _running(pid)


# ---------------------------------------------------------------------- interactive client

def test_echo_lines_then_eof(echo_server):
    cli = Cli(echo_server.url)
    cli.wait_err("^connected to ")
    cli.send("hello\n")
    assert cli.wait_out("hello") == "< text: hello"
    cli.send("second line\n")
    assert cli.wait_out("second") == "< text: second line"
    cli.proc.stdin.close()                      # EOF: close 1000
    assert cli.finish() == 0, cli.err_lines
    assert any(line.startswith("closed: 1000") for line in cli.err_lines), cli.err_lines
    assert echo_server.done.wait(5)
    assert echo_server.close_codes == [1000]


def test_piped_input_gets_its_replies(echo_server):
    proc = subprocess.run(CMD + [echo_server.url], input="one\ntwo\n", capture_output=True, text=True,
                          timeout=30, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["< text: one", "< text: two"]


def test_binary_mode(echo_server):
    proc = subprocess.run(CMD + [echo_server.url, "--binary"], input="hi\n", capture_output=True,
                          text=True, timeout=30, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["< binary (2 bytes): 6869"]


def test_header_protocol_and_compression_reach_the_server(echo_server):
    proc = subprocess.run(
        CMD + [echo_server.url, "-H", "X-Wsfast-Test: hello there", "--header", "X-Second:2",
               "-p", "chat.v1", "--protocol", "chat.v2", "--compression", "2",
               "--dial-timeout", "5s", "--read-timeout", "10000", "--close-timeout", "2s"],
        input="x\n", capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    headers = echo_server.headers[0]
    assert headers["x-wsfast-test"] == "hello there"
    assert headers["x-second"] == "2"
    assert headers["sec-websocket-protocol"] == "chat.v1, chat.v2"
    assert "client_no_context_takeover" in headers["sec-websocket-extensions"]


def test_server_close_is_reported(echo_server):
    cli = Cli(echo_server.url)
    cli.wait_err("^connected to ")
    cli.send("please close\n")
    rc = cli.finish()
    assert rc == 1                               # 4001 is not a normal closure
    assert any("closed: 4001" in line and "asked to" in line for line in cli.err_lines), cli.err_lines


def test_connection_refused_exits_1_with_the_error_kind():
    proc = run(f"ws://127.0.0.1:{free_port()}/", "--dial-timeout", "5s")
    assert proc.returncode == 1
    assert re.search(r"^error: ConnectError \(INTERNAL, retryable\): cannot connect", proc.stderr,
                     re.M), proc.stderr


def test_invalid_url_exits_1_not_retryable():
    proc = run("http://example.invalid/")
    assert proc.returncode == 1
    assert "error: InvalidOption (INVALID, not retryable)" in proc.stderr


def test_read_timeout_is_an_error(echo_server):
    cli = Cli(echo_server.url, "--read-timeout", "300ms")
    cli.wait_err("^connected to ")
    assert cli.finish() == 1
    assert any(line.startswith("error: Timeout (TIMEOUT, retryable)") for line in cli.err_lines)
    assert echo_server.done.wait(5)
    assert echo_server.close_codes == [1001]


@pytest.mark.parametrize("args", [[], ["ws://x", "--dial-timeout", "ten"], ["ws://x", "-H", "novalue"],
                                  ["ws://x", "--compression", "3"], ["ws://x", "--ping-interval", "ten"],
                                  ["ws://x", "--max-redirects", "-1"],
                                  # digits of other scripts: int() takes "٣" as 3
                                  ["ws://x", "--max-redirects", "\u0663"],
                                  ["ws://x", "--max-redirects", "\u00b2"]])
def test_usage_errors_exit_2(args):
    proc = run(*args)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_version():
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"wsfast {wsfast.__version__} (")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_closes_with_1000_and_exits_130(echo_server):
    cli = Cli(echo_server.url, "--ping-every", "100ms")
    cli.wait_err("^connected to ")
    cli.send("before\n")
    cli.wait_out("before")
    time.sleep(0.3)                              # a few keep-alive pings go out
    cli.proc.send_signal(signal.SIGINT)
    assert cli.finish() == 130, cli.err_lines
    assert echo_server.done.wait(5)
    assert echo_server.close_codes == [1000]
    assert any(line.startswith("closed: 1000") for line in cli.err_lines), cli.err_lines


# ---------------------------------------------------------------------- long-lived streams


def test_reconnect_dials_again_after_the_server_closes(echo_server):
    """--reconnect: "please close" makes the server close with 4001; the CLI reports
    it, reconnects (a new session: the server sees a second connection) and goes on."""
    cli = Cli(echo_server.url, "--reconnect", "--eof-wait", "300ms")
    cli.wait_err("^connected to .*connection 1;")
    cli.send("please close\n")
    cli.wait_err("^closed: 4001")
    cli.wait_err("^reconnecting")
    cli.wait_err("^connected to .*connection 2;")
    cli.send("after\n")
    cli.wait_out("^< text: after$")
    cli.proc.stdin.close()
    assert cli.finish() == 0, cli.err_lines
    assert echo_server.close_codes[:1] == [4001]
    assert len(echo_server.headers) == 2


def test_reconnect_stops_on_an_error_that_is_not_retried():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def refuse():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        conn.close()
    t = threading.Thread(target=refuse, daemon=True)
    t.start()
    cli = Cli(f"ws://127.0.0.1:{port}/", "--reconnect")
    assert cli.finish() == 1
    assert any("HTTP 403" in line and "not retryable" in line for line in cli.err_lines), cli.err_lines
    t.join(5)
    listener.close()


def test_max_redirects_and_redirects_are_followed(echo_server):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    hops = []

    def redirect():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            hops.append(1)
            conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {echo_server.url}\r\n"
                         "Content-Length: 0\r\n\r\n".encode())
            conn.close()
    t = threading.Thread(target=redirect, daemon=True)
    t.start()
    try:
        refused = Cli(f"ws://127.0.0.1:{port}/", "--max-redirects", "0")
        assert refused.finish() == 1
        assert any("too many redirects: HTTP 302" in line for line in refused.err_lines), refused.err_lines
        cli = Cli(f"ws://127.0.0.1:{port}/", "--max-redirects", "1")
        cli.wait_err(f"^connected to {re.escape(echo_server.url)};")
        cli.proc.stdin.close()
        assert cli.finish() == 0
    finally:
        listener.close()
    assert len(hops) == 2


def test_ping_interval_flag_reaches_the_client():
    """--ping-interval/--ping-timeout: against a server that never answers a ping the
    keepalive ends the connection with a Timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    held = []

    def accept_and_ignore():
        import base64
        import hashlib
        conn, _ = listener.accept()
        held.append(conn)
        request = conn.recv(65536).decode("latin-1")
        key = re.search(r"(?i)sec-websocket-key: *(\S+)", request).group(1)
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                               .encode()).digest()).decode()
        conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    t = threading.Thread(target=accept_and_ignore, daemon=True)
    t.start()
    try:
        cli = Cli(f"ws://127.0.0.1:{port}/", "--ping-interval", "100ms", "--ping-timeout", "200ms")
        cli.wait_err("^connected to ")
        assert cli.finish(10) == 1
        assert any("keepalive timeout" in line for line in cli.err_lines), cli.err_lines
    finally:
        t.join(5)
        for conn in held:
            conn.close()
        listener.close()
