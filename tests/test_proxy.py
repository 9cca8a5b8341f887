"""Proxies (DESIGN §6) against real peers on 127.0.0.1.

* pproxy in a subprocess: HTTP CONNECT, SOCKS4, SOCKS5 (with and without user:password),
  and HTTP CONNECT over TLS (``http+ssl``) for ``https://`` proxies (TLS in TLS);
* Debian's tinyproxy (skipped, saying why, where it is not installed);
* scripted raw-socket proxies for what real ones rarely do: 407/403/502, garbage, an
  answer cut short, silence, bytes after the answer, and a SOCKS4a relay;
* the websockets server as the target, with trustme certificates for ``localhost``
  only, so a wss target proves end-to-end TLS: its certificate is checked against the
  target's name, never the proxy's;
* the environment (``monkeypatch``): which variable is used, and that bypasses bypass,
  counted at the proxy.

The sans-I/O decisions (wsfast.proxy) are checked on their own first. The tests that
connect take the ``front`` fixture: each runs on the sync client and on wsfast.asyncio
(tests/frontends.py); those through an ``https://`` proxy on uvloop as well, whose TLS in
TLS is the loop's own.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from typing import Callable, List, Optional

import frontends
import pytest
from conftest import wait_no_readers

import wsfast
from wsfast import errors
from wsfast.options import parse_options
from wsfast.policy import parse_url
from wsfast.proxy import (
    ProxyError,
    TunnelAnswer,
    connect_request,
    parse_proxy_url,
    proxy_bypassed,
    select_proxy,
)
from wsfast.transport import Cancel, TunnelSocket, dial

pytestmark = pytest.mark.timeout(60)

PROXY_VARIABLES = [v for name in ("ws_proxy", "wss_proxy", "http_proxy", "https_proxy",
                                  "all_proxy", "no_proxy") for v in (name, name.upper())]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No proxy variable of the machine's leaks into these tests."""
    for name in PROXY_VARIABLES + ["REQUEST_METHOD"]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True, scope="module")
def nothing_left_behind():
    """Every connection of this module has ended (the proxies are stopped by their fixtures)."""
    yield
    assert wait_no_readers() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _closed_port() -> int:
    return _free_port()   # nothing listens there once the probe is closed


def roundtrip(client, text: str = "through the proxy") -> None:
    client.send(text)
    msg, ok = client.channel().receive(timeout=10)
    assert ok and msg.data == text


# ====================================================================== sans-I/O decisions

def test_parse_proxy_url_schemes_ports_hosts_and_credentials():
    p = parse_proxy_url("http://u%40corp:p%3Aw%20d@Proxy.Example.COM.:3128")
    assert (p.scheme, p.host, p.port) == ("http", "proxy.example.com", 3128)
    assert (p.username, p.password) == ("u@corp", "p:w d")
    assert p.display == "http://proxy.example.com:3128"
    assert "p:w" not in repr(p) and "corp" not in repr(p)
    assert [parse_proxy_url(f"{s}://h").port for s in
            ("http", "https", "socks4", "socks4a", "socks5", "socks5h")] == [80, 443] + [1080] * 4
    v6 = parse_proxy_url("HTTPS://[0:0::1]/")
    assert (v6.scheme, v6.host, v6.port, v6.display) == ("https", "::1", 443, "https://[::1]:443")
    assert v6.server_hostname is None and v6.secure
    idn = parse_proxy_url("socks5h://user@faß.de")
    assert idn.host == "xn--fa-hia.de" and idn.rdns and idn.socks
    assert (idn.username, idn.password) == ("user", "")
    assert parse_proxy_url("socks5://h").rdns is False
    assert parse_proxy_url("http://h").username is None


@pytest.mark.parametrize("url, why", [
    ("ftp://h", "unsupported scheme"),
    ("h:3128", "no scheme"),
    ("http://", "no host"),
    ("http://h:0", "out of range"),
    ("http://h:x", "bad port"),
    ("http://h/path", "no path"),
    ("http://h?q", "no path"),
    ("http://a@b@h", "more than one '@'"),
    ("http://h h", "spaces"),
    ("http://127.1", "dotted-quad"),
    ("http://u:%ff@h", "UTF-8"),
])
def test_a_bad_proxy_url_is_invalid_option_naming_the_option(url, why):
    with pytest.raises(errors.InvalidOption) as info:
        select_proxy(parse_url("ws://t/"), url)
    err = info.value
    assert err.kind == errors.INVALID and err.retryable is False
    assert "option 'proxy'" in err.message and why in err.message
    assert err.details["option"] == "proxy"


def test_a_bad_proxy_url_hides_its_password():
    with pytest.raises(errors.InvalidOption) as info:
        parse_proxy_url("http://user:hunter2@h/x")
    assert "hunter2" not in str(info.value)


def _env_proxy(url: str, environ: dict) -> Optional[str]:
    proxy = select_proxy(parse_url(url), None, environ)
    return None if proxy is None else proxy.display


def test_select_proxy_reads_the_environment_in_curls_order():
    env = {"wss_proxy": "http://wss", "https_proxy": "http://https", "all_proxy": "http://all",
           "ws_proxy": "http://ws", "http_proxy": "http://http"}
    assert _env_proxy("wss://t/", env) == "http://wss:80"
    assert _env_proxy("ws://t/", env) == "http://ws:80"
    del env["wss_proxy"], env["ws_proxy"]
    assert _env_proxy("wss://t/", env) == "http://https:80"
    assert _env_proxy("ws://t/", env) == "http://http:80"
    del env["https_proxy"], env["http_proxy"]
    assert _env_proxy("wss://t/", env) == "http://all:80"
    assert _env_proxy("ws://t/", env) == "http://all:80"
    assert _env_proxy("ws://t/", {}) is None


def test_select_proxy_lower_case_first_then_upper_case_empty_is_unset():
    assert _env_proxy("wss://t/", {"HTTPS_PROXY": "http://upper"}) == "http://upper:80"
    assert _env_proxy("wss://t/", {"HTTPS_PROXY": "http://upper",
                                   "https_proxy": "http://lower"}) == "http://lower:80"
    assert _env_proxy("wss://t/", {"https_proxy": "", "HTTPS_PROXY": "http://upper"}) \
        == "http://upper:80"
    assert _env_proxy("wss://t/", {"https_proxy": "", "ALL_PROXY": "socks5h://all"}) \
        == "socks5h://all:1080"
    assert _env_proxy("ws://t/", {"WS_PROXY": "http://ws", "http_proxy": "http://h"}) \
        == "http://ws:80"
    # a value without a scheme is an http:// proxy, as curl reads it
    assert _env_proxy("ws://t/", {"http_proxy": "proxy.local:3128"}) == "http://proxy.local:3128"


def test_select_proxy_ignores_upper_case_http_proxy_under_cgi():
    env = {"HTTP_PROXY": "http://from-a-request-header", "REQUEST_METHOD": "GET"}
    assert _env_proxy("ws://t/", env) is None
    env["http_proxy"] = "http://mine"
    assert _env_proxy("ws://t/", env) == "http://mine:80"


def test_select_proxy_false_is_direct_and_a_str_is_used_as_given():
    env = {"https_proxy": "http://env", "no_proxy": "*"}
    t = parse_url("wss://t/")
    assert select_proxy(t, False, env) is None
    assert select_proxy(t, "socks5://given:9", env).display == "socks5://given:9"
    with pytest.raises(errors.InvalidOption):
        select_proxy(t, 3128, env)


def test_a_bad_environment_proxy_is_invalid_option_naming_the_variable():
    with pytest.raises(errors.InvalidOption) as info:
        select_proxy(parse_url("wss://t/"), None, {"HTTPS_PROXY": "gopher://x"})
    err = info.value
    assert "environment variable HTTPS_PROXY" in err.message
    assert err.details["variable"] == "HTTPS_PROXY"
    # (a bypassed target never reads it)
    assert select_proxy(parse_url("wss://t/"), None,
                        {"HTTPS_PROXY": "gopher://x", "no_proxy": "t"}) is None


@pytest.mark.parametrize("no_proxy, url, bypassed", [
    ("*", "wss://anything.example/", True),
    ("example.com", "wss://example.com/", True),
    ("example.com", "wss://api.example.com/", True),     # a domain matches its subdomains
    ("example.com", "wss://notexample.com/", False),
    (".example.com", "wss://api.example.com/", True),
    (".example.com", "wss://example.com/", True),        # curl: the leading dot is optional
    ("Example.COM.", "wss://a.b.example.com/", True),
    ("other.org, example.com", "wss://x.example.com/", True),
    ("other.org example.com", "wss://x.example.com/", True),
    ("other.org", "wss://example.com/", False),
    ("example.com:443", "wss://example.com/", True),
    ("example.com:8443", "wss://example.com/", False),
    ("example.com:8443", "wss://example.com:8443/", True),
    ("10.1.2.3", "ws://10.1.2.3/", True),
    ("10.1.2.3", "ws://10.1.2.4/", False),
    ("10.0.0.0/8", "ws://10.200.0.1/", True),
    ("10.0.0.0/8", "ws://11.0.0.1/", False),
    ("::1", "ws://[::1]/", True),
    ("0:0:0:0:0:0:0:1", "ws://[::1]/", True),           # addresses, not their spelling
    ("[::1]:80", "ws://[::1]/", True),
    ("[::1]:81", "ws://[::1]/", False),
    ("fd00::/8", "ws://[fd12::1]/", True),
    ("10.1.2.3", "ws://host/", False),
    ("faß.de", "wss://www.xn--fa-hia.de/", True),      # compared in IDNA form
    ("", "ws://example.com/", False),
    (",, ,", "ws://example.com/", False),
])
def test_no_proxy_rules(no_proxy, url, bypassed):
    assert proxy_bypassed(parse_url(url), no_proxy) is bypassed
    env = {"all_proxy": "http://p", "NO_PROXY": no_proxy}
    assert (select_proxy(parse_url(url), None, env) is None) is bypassed


@pytest.mark.timeout(10)
@pytest.mark.parametrize("no_proxy", ["a.test:\u00b2", "[::1]:\u00b3", "a.test:\u2462", "*.x:\u00b980"])
def test_no_proxy_ports_that_are_digits_but_not_ascii_never_match(no_proxy):
    # found grepping for isdigit() after the options fuzz run tripped on the same mistake in
    # its harness: str.isdigit() is True for '²' and '③', which int() refuses, so such an
    # entry raised ValueError out of select_proxy (and connect) instead of being skipped
    env = {"ws_proxy": "http://proxy.test:3128", "no_proxy": no_proxy}
    for url in ("ws://a.test/", "ws://[::1]:2/"):
        assert proxy_bypassed(parse_url(url), no_proxy) is False
        assert select_proxy(parse_url(url), None, env).host == "proxy.test"


def test_lower_case_no_proxy_wins():
    env = {"all_proxy": "http://p", "no_proxy": "a.example", "NO_PROXY": "b.example"}
    assert _env_proxy("ws://a.example/", env) is None
    assert _env_proxy("ws://b.example/", env) == "http://p:80"


def test_connect_request_names_the_target_and_sends_basic_credentials():
    proxy = parse_proxy_url("http://al%40ice:p%3Ass@p:3128")
    req = connect_request(parse_url("wss://API.example.com/x?y"), proxy)
    assert req == (b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n"
                   b"Proxy-Authorization: Basic YWxAaWNlOnA6c3M=\r\n\r\n")   # al@ice:p:ss
    req = connect_request(parse_url("ws://[::1]:9000/"), parse_proxy_url("http://p"))
    assert req == b"CONNECT [::1]:9000 HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n"


def _answer() -> TunnelAnswer:
    return TunnelAnswer(parse_url("wss://t/"), parse_proxy_url("http://p:3128"))


def test_tunnel_answer_split_anywhere_keeps_the_bytes_after_it():
    raw = b"HTTP/1.0 200 Connection established\r\nProxy-Agent: x\r\n\r\n\x16\x03\x03tunnel"
    end = raw.index(b"\r\n\r\n") + 4
    for cut in range(1, len(raw)):
        a = _answer()
        first = a.feed(raw[:cut])
        if cut < end:
            assert first is None
            first = a.feed(raw[cut:])
        assert first is not None and first.startswith(raw[end:cut] if cut > end else b"")
    one = _answer()
    assert [one.feed(raw[i:i + 1]) for i in range(end)][-1] == b""
    assert _answer().feed(raw) == b"\x16\x03\x03tunnel"


@pytest.mark.parametrize("status, retryable", [(407, False), (403, False), (502, True),
                                               (500, True), (404, True), (101, True)])
def test_tunnel_answer_refusals(status, retryable):
    with pytest.raises(ProxyError) as info:
        _answer().feed(f"HTTP/1.1 {status} No\r\nProxy-Authenticate: Basic\r\n\r\n".encode())
    err = info.value
    assert isinstance(err, errors.ConnectError) and err.kind == errors.INTERNAL
    assert err.status == status and err.retryable is retryable
    assert "http://p:3128" in err.message and str(status) in err.message
    assert ("Proxy-Authenticate", "Basic") in err.details["headers"]
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ProxyError and again.status == status and again.retryable is retryable


@pytest.mark.parametrize("data", [b"SSH-2.0-OpenSSH_9.2\r\n", b"HTTP/2 200\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 300 + b"\r\n"])
def test_tunnel_answer_garbage_is_a_retryable_proxy_error(data):
    with pytest.raises(ProxyError) as info:
        _answer().feed(data)
    assert info.value.status is None and info.value.retryable is True
    assert isinstance(info.value.details["cause"], errors.HandshakeError)


def test_tunnel_answer_eof():
    a = _answer()
    assert "without answering" in a.eof().message
    a.feed(b"HTTP/1.1 20")
    err = a.eof()
    assert "in the middle" in err.message and err.retryable is True and err.status is None


# ====================================================================== certificates, targets

class Pki:
    def __init__(self, tmp) -> None:
        import trustme
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("localhost")   # localhost only: 127.0.0.1 fails verification
        self.pem = str(tmp / "localhost.pem")
        cert.private_key_and_cert_chain_pem.write_to_path(self.pem)
        self.server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.server)
        self.sni: List[Optional[str]] = []
        self.server.sni_callback = lambda _obj, name, _ctx: self.sni.append(name)
        self.client = ssl.create_default_context()
        self.ca.configure_trust(self.client)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    pytest.importorskip("trustme")
    return Pki(tmp_path_factory.mktemp("pki"))


def _big_handler(ws) -> None:
    """Echo, and on "sum N": read N bytes of binary messages, answer their sha256 and
    count; on "give N": send N bytes in 64 KiB messages, then their sha256."""
    for msg in ws:
        if isinstance(msg, str) and msg.startswith("sum "):
            want, got, digest = int(msg[4:]), 0, hashlib.sha256()
            time.sleep(0.5)   # let the client's writes back up to the proxy's and the kernel's
            while got < want:
                part = ws.recv()
                got += len(part)
                digest.update(part)
            ws.send(f"{got} {digest.hexdigest()}")
        elif isinstance(msg, str) and msg.startswith("give "):
            n, digest = int(msg[5:]), hashlib.sha256()
            block = os.urandom(65536)
            for i in range(0, n, len(block)):
                part = block[: min(len(block), n - i)]
                digest.update(part)
                ws.send(part)
            ws.send(digest.hexdigest())
        else:
            ws.send(msg)


@pytest.fixture
def wss_target(ws_server, pki):
    """A wss server whose certificate names localhost; returns its port."""
    return ws_server(_big_handler, ssl=pki.server, max_size=None).port


@pytest.fixture
def ws_target(ws_server):
    return ws_server(_big_handler, max_size=None).port


# ====================================================================== real proxy servers

# pproxy installs uvloop when it can, and its main() asks for the current event loop
# (an error under uvloop on Python 3.12+): start it on the default loop.
_PPROXY = ("import asyncio, sys; sys.modules['uvloop'] = None; "
           "asyncio.set_event_loop(asyncio.new_event_loop()); "
           "from pproxy.server import main; main()")


class ProxyProcess:
    """A proxy server in a subprocess; ``log`` collects its output lines."""

    def __init__(self, argv: list, port: int, ready: Callable[[ProxyProcess], bool],
                 log_file: Optional[str] = None) -> None:
        self.port = port
        self.log_file = log_file
        self.lines: List[str] = []
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        end = time.monotonic() + 15
        while not ready(self):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"proxy {argv} did not start: {self.output()!r}")
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        text = "\n".join(self.lines)
        if self.log_file and os.path.exists(self.log_file):
            with open(self.log_file) as f:
                text += "\n" + f.read()
        return text

    def destinations(self, pattern: str) -> List[str]:
        return re.findall(pattern, self.output(), re.M)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self._reader.join(5)
            self.proc.stdout.close()


class PProxy(ProxyProcess):
    def __init__(self, scheme: str, auth: Optional[str], pem: Optional[str]) -> None:
        port = _free_port()
        listen = f"{scheme}://127.0.0.1:{port}" + (f"#{auth}" if auth else "")
        argv = [sys.executable, "-c", _PPROXY, "-l", listen, "-v", "--auth=-1"]
        if pem:
            argv += ["--ssl", pem]
        super().__init__(argv, port, lambda p: any("Serving on" in x for x in p.lines))

    def tunnels(self, timeout: float = 3.0, want: int = 0) -> List[str]:
        """Destinations pproxy connected to ("host:port"), one per tunnel it opened;
        waits (bounded) until there are ``want``."""
        end = time.monotonic() + timeout
        while True:
            found = self.destinations(r"^(?:http|socks4|socks5) \S+ -> (\S+)$")
            if len(found) >= want or time.monotonic() > end:
                return found
            time.sleep(0.02)


@pytest.fixture
def pproxy():
    """Factory: ``pproxy(scheme="http+socks4+socks5", auth="user:pass", pem=None)``."""
    pytest.importorskip("pproxy")
    made: List[PProxy] = []

    def start(scheme: str = "http+socks4+socks5", auth: Optional[str] = None,
              pem: Optional[str] = None) -> PProxy:
        p = PProxy(scheme, auth, pem)
        made.append(p)
        return p

    yield start
    for p in made:
        p.stop()


TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"


class TinyProxy(ProxyProcess):
    def __init__(self, tmp, auth: Optional[str], connect_ports: tuple) -> None:
        port = _free_port()
        log = str(tmp / f"tinyproxy-{port}.log")
        conf = tmp / f"tinyproxy-{port}.conf"
        lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 20",
                 "Allow 127.0.0.1", "LogLevel Connect", f'LogFile "{log}"',
                 f'PidFile "{tmp}/tinyproxy-{port}.pid"']
        if auth:
            lines.append("BasicAuth " + auth.replace(":", " "))
        lines += [f"ConnectPort {p}" for p in connect_ports]
        conf.write_text("\n".join(lines) + "\n")

        def ready(p: ProxyProcess) -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False
        super().__init__([TINYPROXY, "-d", "-c", str(conf)], port, ready, log)

    def tunnels(self, timeout: float = 3.0, want: int = 0) -> List[str]:
        end = time.monotonic() + timeout
        while True:
            found = self.destinations(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP")
            if len(found) >= want or time.monotonic() > end:
                return found
            time.sleep(0.02)


@pytest.fixture
def tinyproxy(tmp_path):
    """Factory: ``tinyproxy(auth="user:pass", connect_ports=())``; skips without it."""
    if not os.path.exists(TINYPROXY):
        pytest.skip("tinyproxy is not installed (Debian package tinyproxy; .ci/run installs it)")
    made: List[TinyProxy] = []

    def start(auth: Optional[str] = None, connect_ports: tuple = ()) -> TinyProxy:
        p = TinyProxy(tmp_path, auth, connect_ports)
        made.append(p)
        return p

    yield start
    for p in made:
        p.stop()


# ====================================================================== scripted proxies

class ScriptedProxy:
    """A proxy on raw sockets: each connection's request head (up to the empty line) is
    read, then ``script(conn, request)`` runs in the connection's thread."""

    def __init__(self, script: Callable[[socket.socket, bytes], None],
                 read_head: bool = True) -> None:
        self.script = script
        self.read_head = read_head
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.requests: List[bytes] = []
        self.accepted = 0
        self.stop = threading.Event()
        self.conns: List[socket.socket] = []
        self.threads: List[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            request = b""
            if self.read_head:
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
            self.requests.append(request)
            self.script(conn, request)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self._accepter.join(5)
        for t in self.threads:
            t.join(5)


@pytest.fixture
def scripted():
    made: List[ScriptedProxy] = []

    def start(script: Callable, read_head: bool = True) -> ScriptedProxy:
        p = ScriptedProxy(script, read_head)
        made.append(p)
        return p

    yield start
    for p in made:
        p.close()


def answer(data: bytes, hold: bool = False) -> Callable:
    """A script: send ``data``; then close, or hold the connection until the end."""
    def script(conn: socket.socket, request: bytes) -> None:
        conn.sendall(data)
        if hold:   # read and drop until the client goes (or the fixture shuts it down)
            conn.settimeout(None)
            while conn.recv(65536):
                pass
    return script


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until one side ends."""
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join(10)


def socks4a_relay(seen: list) -> Callable:
    """A script: a SOCKS4a server that records the name it was asked for and relays."""
    def script(conn: socket.socket, _request: bytes) -> None:
        head = b""
        while head.count(b"\0") < 2 or len(head) < 9:
            chunk = conn.recv(512)
            if not chunk:
                return
            head += chunk
        version, command, port = head[0], head[1], int.from_bytes(head[2:4], "big")
        ip = head[4:8]
        user, name = head[8:].split(b"\0")[:2]
        seen.append((version, command, ip, user, name.decode()))
        assert ip[:3] == b"\0\0\0" and ip[3] != 0   # 4a: "0.0.0.x", the name follows
        upstream = socket.create_connection((name.decode(), port), 5)
        conn.sendall(b"\x00\x5a" + head[2:4] + ip)
        conn.settimeout(None)
        try:
            _relay(conn, upstream)
        finally:
            upstream.close()
    return script


# ====================================================================== through real proxies

def test_http_proxy_ws_and_wss_end_to_end(front, pproxy, ws_target, wss_target, pki):
    p = pproxy("http")
    url = f"http://127.0.0.1:{p.port}"
    with front.connect(f"ws://127.0.0.1:{ws_target}/", proxy=url, dial_timeout="5s") as c:
        roundtrip(c)
        assert c.proxy == url
    pki.sni.clear()
    with front.connect(f"wss://localhost:{wss_target}/", proxy=url, ssl=pki.client,
                        dial_timeout="5s") as c:
        roundtrip(c, "x" * 200_000)
        assert c.proxy == url
    assert pki.sni == ["localhost"]   # SNI of the target, end to end
    assert p.tunnels(want=2) == [f"127.0.0.1:{ws_target}", f"localhost:{wss_target}"]


def test_http_proxy_credentials(front, pproxy, ws_target):
    p = pproxy("http", auth="alice:s3cr:t")
    target = f"ws://127.0.0.1:{ws_target}/"
    with front.connect(target, proxy=f"http://alice:s3cr%3At@127.0.0.1:{p.port}",
                        dial_timeout="5s") as c:
        roundtrip(c)
        assert c.proxy == f"http://127.0.0.1:{p.port}"   # credentials removed
    for proxy in (f"http://127.0.0.1:{p.port}", f"http://alice:wrong@127.0.0.1:{p.port}"):
        with pytest.raises(ProxyError) as info:
            front.connect(target, proxy=proxy, dial_timeout="5s")
        assert info.value.status == 407 and info.value.retryable is False
    assert len(p.tunnels(want=1)) == 1


@pytest.mark.parametrize("scheme, seen_host", [("socks4", "127.0.0.1"), ("socks5", "127.0.0.1"),
                                               ("socks5h", "localhost")])
def test_socks_proxies_ws_and_wss(front, pproxy, ws_target, wss_target, pki, scheme, seen_host):
    pytest.importorskip("python_socks")
    p = pproxy("socks4+socks5")
    proxy = f"{scheme}://127.0.0.1:{p.port}"
    with front.connect(f"ws://localhost:{ws_target}/", proxy=proxy, dial_timeout="5s") as c:
        roundtrip(c)
        assert c.proxy == proxy
    pki.sni.clear()
    with front.connect(f"wss://localhost:{wss_target}/", proxy=proxy, ssl=pki.client,
                        dial_timeout="5s") as c:
        roundtrip(c, "y" * 100_000)
    assert pki.sni == ["localhost"]
    # socks4/socks5 resolved the name here; socks5h sent it to the proxy
    assert p.tunnels(want=2) == [f"{seen_host}:{ws_target}", f"{seen_host}:{wss_target}"]


def test_socks5_credentials(front, pproxy, ws_target):
    pytest.importorskip("python_socks")
    p = pproxy("socks5", auth="bob:secret")
    target = f"ws://127.0.0.1:{ws_target}/"
    with front.connect(target, proxy=f"socks5://bob:s%65cret@127.0.0.1:{p.port}",
                        dial_timeout="5s") as c:
        roundtrip(c)
    for proxy in (f"socks5://127.0.0.1:{p.port}", f"socks5://bob:nope@127.0.0.1:{p.port}"):
        with pytest.raises(ProxyError) as info:
            front.connect(target, proxy=proxy, dial_timeout="5s")
        assert info.value.status is None and "SOCKS" in info.value.message
    assert len(p.tunnels(want=1)) == 1


def test_socks4a_sends_the_name_to_the_proxy(front, scripted, ws_target):
    pytest.importorskip("python_socks")
    seen: list = []
    p = scripted(socks4a_relay(seen), read_head=False)
    with front.connect(f"ws://localhost:{ws_target}/", proxy=f"socks4a://u@127.0.0.1:{p.port}",
                        dial_timeout="5s") as c:
        roundtrip(c)
    assert seen == [(4, 1, b"\0\0\0\x01", b"u", "localhost")]


def test_socks_without_python_socks_names_the_extra(front, monkeypatch, scripted):
    p = scripted(answer(b""))
    monkeypatch.setitem(sys.modules, "python_socks", None)   # as if not installed
    monkeypatch.setitem(sys.modules, "python_socks.sync", None)
    for scheme in ("socks4", "socks4a", "socks5", "socks5h"):
        with pytest.raises(errors.InvalidOption) as info:
            front.connect("ws://localhost:9/", proxy=f"{scheme}://127.0.0.1:{p.port}",
                           dial_timeout="2s")
        assert "pip install wsfast[socks]" in info.value.message
        assert info.value.details["option"] == "proxy"
    time.sleep(0.1)
    assert p.accepted == 0   # decided before any network work


def socks5_refusal(code: int) -> Callable:
    """A script: a SOCKS5 server (no authentication) that answers every request ``code``."""
    def script(conn: socket.socket, _request: bytes) -> None:
        greeting = conn.recv(2)
        conn.recv(greeting[1])
        conn.sendall(b"\x05\x00")
        request = conn.recv(512)
        assert request[:3] == b"\x05\x01\x00"
        conn.sendall(bytes([5, code, 0, 1]) + bytes(6))
    return script


@pytest.mark.parametrize("code, retryable", [(5, True), (1, True), (4, True), (2, False)])
def test_a_socks_refusal_is_a_proxy_error(front, scripted, code, retryable):
    # (pproxy cannot be made to refuse: it answers success before it dials the target)
    pytest.importorskip("python_socks")
    p = scripted(socks5_refusal(code), read_head=False)
    with pytest.raises(ProxyError) as info:
        front.connect("ws://stream.example.com/", proxy=f"socks5h://127.0.0.1:{p.port}",
                       dial_timeout="5s")
    err = info.value
    assert err.status is None and err.details["socks_code"] == code
    assert err.retryable is retryable
    assert "SOCKS proxy socks5h://127.0.0.1" in err.message and "stream.example.com:80" in err.message


def test_tinyproxy_ws_and_wss(front, tinyproxy, ws_target, wss_target, pki):
    p = tinyproxy()
    proxy = f"http://127.0.0.1:{p.port}"
    with front.connect(f"ws://127.0.0.1:{ws_target}/", proxy=proxy, dial_timeout="5s") as c:
        roundtrip(c)
    with front.connect(f"wss://localhost:{wss_target}/", proxy=proxy, ssl=pki.client,
                        dial_timeout="5s") as c:
        roundtrip(c, "z" * 300_000)
        assert c.proxy == proxy
    assert p.tunnels(want=2) == [f"127.0.0.1:{ws_target}", f"localhost:{wss_target}"]


def test_tinyproxy_credentials_and_refusals(front, tinyproxy, ws_target):
    p = tinyproxy(auth="carol:hunter2")
    target = f"ws://127.0.0.1:{ws_target}/"
    with front.connect(target, proxy=f"http://carol:hunter2@127.0.0.1:{p.port}",
                        dial_timeout="5s") as c:
        roundtrip(c)
    with pytest.raises(ProxyError) as info:   # tinyproxy answers this one in HTTP/1.0
        front.connect(target, proxy=f"http://127.0.0.1:{p.port}", dial_timeout="5s")
    assert info.value.status == 407 and info.value.retryable is False
    assert "hunter2" not in str(info.value.details)
    only_443 = tinyproxy(connect_ports=(443,))
    with pytest.raises(ProxyError) as info:
        front.connect(target, proxy=f"http://127.0.0.1:{only_443.port}", dial_timeout="5s")
    assert info.value.status == 403 and info.value.retryable is False
    with pytest.raises(ProxyError) as info:   # it cannot reach the target: 500
        front.connect(f"ws://127.0.0.1:{_closed_port()}/", proxy=f"http://127.0.0.1:{p.port}",
                       dial_timeout="5s")
    assert info.value.status == 407   # (credentials first)
    with pytest.raises(ProxyError) as info:
        front.connect(f"ws://127.0.0.1:{_closed_port()}/",
                       proxy=f"http://carol:hunter2@127.0.0.1:{p.port}", dial_timeout="5s")
    assert info.value.status == 500 and info.value.retryable is True


# ====================================================================== https:// proxies

@pytest.fixture
def tls_proxy(pproxy, pki):
    return pproxy("http+ssl", pem=pki.pem)


def skip_without_tls_in_tls(front) -> None:
    """asyncio's start_tls runs over a TLS transport from Python 3.11 on."""
    if front.name == "asyncio" and sys.version_info < (3, 11):
        pytest.skip("TLS in TLS on asyncio's own loop needs Python 3.11 (before it: InvalidOption, "
                    "tested below)")


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="Python 3.11 and later do TLS in TLS")
def test_wss_through_an_https_proxy_before_python_3_11_is_an_invalid_option(tls_proxy, wss_target, pki):
    import frontends

    front = frontends.make("asyncio")
    try:
        with pytest.raises(errors.InvalidOption, match="Python 3.11"):
            front.connect(f"wss://localhost:{wss_target}/", proxy=f"https://localhost:{tls_proxy.port}",
                          ssl=pki.client, proxy_ssl=pki.client, dial_timeout="5s")
    finally:
        front.close()


@pytest.mark.parametrize("front", frontends.ALL_LOOPS, indirect=True)
def test_https_proxy_tls_in_tls(front, tls_proxy, ws_target, wss_target, pki):
    skip_without_tls_in_tls(front)
    proxy = f"https://localhost:{tls_proxy.port}"
    pki.sni.clear()
    with front.connect(f"wss://localhost:{wss_target}/", proxy=proxy, ssl=pki.client,
                        proxy_ssl=pki.client, dial_timeout="5s") as c:
        assert c.proxy == proxy
        roundtrip(c)
        big = os.urandom(3 * 1024 * 1024)
        c.send(big)
        msg, ok = c.channel().receive(timeout=20)
        assert ok and msg.data == big
        for i in range(300):
            c.send(f"n{i}")
        assert [c.channel().receive(timeout=10)[0].data for _ in range(300)] == \
            [f"n{i}" for i in range(300)]
    assert pki.sni == ["localhost"]
    # ws through an https:// proxy: TLS to the proxy only
    with front.connect(f"ws://127.0.0.1:{ws_target}/", proxy=proxy, proxy_ssl=pki.client,
                        dial_timeout="5s") as c:
        roundtrip(c)
    assert tls_proxy.tunnels(want=2) == [f"localhost:{wss_target}", f"127.0.0.1:{ws_target}"]


@pytest.mark.parametrize("front", frontends.ALL_LOOPS, indirect=True)
def test_tls_in_tls_writes_that_back_up_lose_and_repeat_nothing(front, tls_proxy, wss_target, pki):
    skip_without_tls_in_tls(front)
    # The server stops reading for a while: the outer socket takes part of a record, the
    # tunnel keeps the rest; every byte must arrive once, in order.
    with front.connect(f"wss://localhost:{wss_target}/", proxy=f"https://localhost:{tls_proxy.port}",
                        ssl=pki.client, proxy_ssl=pki.client, dial_timeout="5s") as c:
        ch = c.channel()
        total, digest = 0, hashlib.sha256()
        blocks = [os.urandom(n) for n in (65536, 1, 100_000, 7, 16385, 300_000)]
        c.send(f"sum {sum(len(b) for b in blocks) * 12}")
        for _ in range(12):
            for b in blocks:
                c.send(b)
                total += len(b)
                digest.update(b)
        msg, ok = ch.receive(timeout=30)
        assert ok and msg.data == f"{total} {digest.hexdigest()}"
        # and the other way: 8 MiB from the server while we read
        c.send(f"give {8 * 1024 * 1024}")
        got, digest = 0, hashlib.sha256()
        while True:
            msg, ok = ch.receive(timeout=30)
            assert ok
            if isinstance(msg.data, str):
                break
            got += len(msg.data)
            digest.update(msg.data)
        assert got == 8 * 1024 * 1024 and msg.data == digest.hexdigest()


def test_tls_in_tls_concurrent_senders(tls_proxy, wss_target, pki):
    with wsfast.connect(f"wss://localhost:{wss_target}/", proxy=f"https://localhost:{tls_proxy.port}",
                        ssl=pki.client, proxy_ssl=pki.client, dial_timeout="5s") as c:
        ch = c.channel()
        failures: list = []

        def sender(tid: int) -> None:
            try:
                for seq in range(400):
                    c.send(f"{tid}:{seq}:" + "x" * ((seq * 97 + tid) % 30000))
            except BaseException as exc:
                failures.append(exc)
        threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        seen = {t: [] for t in range(4)}
        for _ in range(4 * 400):
            msg, ok = ch.receive(timeout=20)
            assert ok, c.error
            tid, seq, _ = msg.data.split(":", 2)
            seen[int(tid)].append(int(seq))
        for t in threads:
            t.join(10)
        assert not failures and all(v == list(range(400)) for v in seen.values())


@pytest.mark.parametrize("front", frontends.ALL_LOOPS, indirect=True)
def test_https_proxy_certificate_is_checked_against_the_proxy_host(front, tls_proxy, ws_target, pki):
    target = f"ws://127.0.0.1:{ws_target}/"
    with pytest.raises(errors.ConnectError) as info:   # the certificate names localhost
        front.connect(target, proxy=f"https://127.0.0.1:{tls_proxy.port}", proxy_ssl=pki.client,
                       dial_timeout="5s")
    err = info.value
    assert "proxy" in err.message and err.retryable is False
    assert not isinstance(err, ProxyError)
    assert isinstance(err.details["cause"], ssl.SSLCertVerificationError)
    with pytest.raises(errors.ConnectError) as info:   # default: the system trust store
        front.connect(target, proxy=f"https://localhost:{tls_proxy.port}", dial_timeout="5s")
    assert info.value.retryable is False and "proxy" in info.value.message
    with pytest.raises(errors.ConnectError) as info:   # proxy_ssl is not ssl
        front.connect(target, proxy=f"https://localhost:{tls_proxy.port}", ssl=pki.client,
                       dial_timeout="5s")
    assert info.value.retryable is False
    assert tls_proxy.tunnels(timeout=0.3) == []


@pytest.mark.parametrize("kind", ["http", "https"])
@pytest.mark.parametrize("front", frontends.ALL_LOOPS, indirect=True)
def test_the_targets_certificate_is_checked_against_the_targets_name(front,
        pproxy, tls_proxy, wss_target, pki, kind):
    if kind == "https":
        skip_without_tls_in_tls(front)
    # (the proxy is named localhost, like the certificate: only the target's name fails)
    proxy = f"https://localhost:{tls_proxy.port}" if kind == "https" else \
        f"http://localhost:{pproxy('http').port}"
    with pytest.raises(errors.ConnectError) as info:   # the target's certificate names localhost
        front.connect(f"wss://127.0.0.1:{wss_target}/", proxy=proxy, ssl=pki.client,
                       proxy_ssl=pki.client, dial_timeout="5s")
    assert info.value.retryable is False
    assert isinstance(info.value.details["cause"], ssl.SSLCertVerificationError)
    with pytest.raises(errors.ConnectError):   # nor with the proxy's trust
        front.connect(f"wss://localhost:{wss_target}/", proxy=proxy, proxy_ssl=pki.client,
                       dial_timeout="5s")


def _more_than_the_buffers() -> int:
    """Bytes more than every buffer between the client and a target that does not read:
    the client's send buffer, the proxy's receive buffer (autotuned up to tcp_rmem's
    maximum while the proxy reads: 32 MiB here, where 24 MiB once all fit and no send
    was ever partial), the proxy's own and its send buffer, the target's receive buffer."""
    def most(name: str, default: int) -> int:
        try:
            with open(f"/proc/sys/net/ipv4/{name}") as f:
                return int(f.read().split()[2])
        except (OSError, ValueError, IndexError):
            return default
    return max(24 << 20, most("tcp_rmem", 6 << 20) * 2 + most("tcp_wmem", 4 << 20) * 2 + (8 << 20))


def test_tunnel_socket_non_blocking_never_blocks_and_never_strands(tls_proxy, pki):
    # A TLS echo target that stops reading for a while; the tunnel is driven the way
    # the engine drives it: non-blocking, polling the outer socket's fd.
    import select
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    received = bytearray()
    go = threading.Event()

    def server() -> None:
        conn, _ = listener.accept()
        with pki.server.wrap_socket(conn, server_side=True) as tls:
            go.wait(10)
            tls.settimeout(5)
            while True:
                data = tls.recv(65536)
                if not data:
                    return
                received.extend(data)
                if received.endswith(b"END"):
                    tls.sendall(b"echo:" + hashlib.sha256(bytes(received)).hexdigest().encode())
    t = threading.Thread(target=server, daemon=True)
    t.start()
    sock = dial(parse_url(f"wss://localhost:{port}/"),
                parse_options({"ssl": pki.client, "proxy_ssl": pki.client}),
                time.monotonic() + 5, proxy=parse_proxy_url(f"https://localhost:{tls_proxy.port}"))
    try:
        assert isinstance(sock, TunnelSocket) and isinstance(sock.raw, ssl.SSLSocket)
        assert sock.version() and sock.getpeercert()["subjectAltName"] == (("DNS", "localhost"),)
        sock.setblocking(False)
        t0 = time.monotonic()
        with pytest.raises((ssl.SSLWantReadError, BlockingIOError)):
            sock.recv_into(bytearray(100))
        assert time.monotonic() - t0 < 0.5
        payload = os.urandom(_more_than_the_buffers()) + b"END"
        view, sent, partial = memoryview(payload), 0, 0
        deadline = time.monotonic() + 30
        while sent < len(payload):
            assert time.monotonic() < deadline
            try:
                n = sock.send(view[sent:])
            except (ssl.SSLWantWriteError, BlockingIOError):
                n = 0
            if n < len(payload) - sent:
                partial += 1
                go.set()   # the peer starts reading once we are backed up
                select.select([], [sock.fileno()], [], 1)
            sent += n
        assert partial   # the outer socket did fill up
        answer_ = b""
        while not answer_.endswith(b"\n") and len(answer_) < 69:
            assert time.monotonic() < deadline
            buf = bytearray(100)
            try:
                n = sock.recv_into(buf)
            except (ssl.SSLWantReadError, BlockingIOError):
                select.select([sock.fileno()], [], [], 1)
                continue
            assert n
            answer_ += bytes(buf[:n])
        assert answer_ == b"echo:" + hashlib.sha256(payload).hexdigest().encode()
        assert bytes(received) == payload
    finally:
        sock.close()
        listener.close()
        t.join(10)


# ====================================================================== refusals and failures

@pytest.mark.parametrize("reply, status, retryable, words", [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
     407, False, "authentication required"),
    (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!", 403, False, "403 Forbidden"),
    (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", 502, True, "502 Bad Gateway"),
    (b"HTTP/1.0 503 Service Unavailable\r\n\r\n", 503, True, "503"),
    (b"220 mail.example.com ESMTP\r\n", None, True, "malformed"),
    (b"HTTP/1.1 200 Connection est", None, True, "in the middle"),
    (b"", None, True, "without answering"),
])
def test_a_refused_or_broken_tunnel_is_a_proxy_error(front, scripted, reply, status, retryable, words):
    p = scripted(answer(reply))
    t0 = time.monotonic()
    with pytest.raises(ProxyError) as info:
        front.connect("wss://stream.example.com/x", proxy=f"http://127.0.0.1:{p.port}",
                       dial_timeout="5s")
    err = info.value
    assert time.monotonic() - t0 < 2
    assert err.status == status and err.retryable is retryable and words in err.message
    assert err.kind == errors.INTERNAL and isinstance(err, errors.ConnectError)
    assert err.details["url"] == "wss://stream.example.com/x"
    assert p.requests == [b"CONNECT stream.example.com:443 HTTP/1.1\r\n"
                          b"Host: stream.example.com:443\r\n\r\n"]


def test_the_connect_request_on_the_wire(front, scripted):
    p = scripted(answer(b"HTTP/1.1 502 No\r\n\r\n"))
    with pytest.raises(ProxyError):
        front.connect("ws://[::1]:8080/", proxy=f"http://u%3A:%F0%9F%94%91@127.0.0.1:{p.port}",
                       dial_timeout="5s")
    # user "u:" password "🔑", Basic of their UTF-8
    assert p.requests == [b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n"
                          b"Proxy-Authorization: Basic dTo68J+UkQ==\r\n\r\n"]


def test_a_proxy_that_never_answers_is_a_dial_timeout(front, scripted):
    p = scripted(answer(b"", hold=True))
    for proxy in (f"http://127.0.0.1:{p.port}", f"socks5://127.0.0.1:{p.port}"):
        if proxy.startswith("socks"):
            pytest.importorskip("python_socks")
        t0 = time.monotonic()
        with pytest.raises(errors.Timeout) as info:
            front.connect("ws://localhost:9/", proxy=proxy, dial_timeout="400ms")
        assert 0.35 < time.monotonic() - t0 < 1.5
        assert info.value.retryable is True and "dial timeout" in info.value.message


def trickle(data: bytes, gap: float) -> Callable:
    """A script: send ``data`` a byte at a time, ``gap`` seconds apart, then hold."""
    def script(conn: socket.socket, _request: bytes) -> None:
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            time.sleep(gap)
        conn.settimeout(None)
        while conn.recv(65536):
            pass
    return script


def test_one_dial_timeout_bounds_a_trickling_answer(front, scripted):
    # every byte comes before a per-read timeout would fire; the deadline still holds
    p = scripted(trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 100, 0.1))
    t0 = time.monotonic()
    with pytest.raises(errors.Timeout):
        front.connect("ws://localhost:9/", proxy=f"http://127.0.0.1:{p.port}",
                       dial_timeout="700ms")
    assert time.monotonic() - t0 < 1.2


def test_one_dial_timeout_bounds_a_slow_socks_handshake(front, scripted):
    pytest.importorskip("python_socks")

    def script(conn: socket.socket, _request: bytes) -> None:
        conn.recv(3)
        time.sleep(0.8)          # the method reply comes late, but before the deadline
        conn.sendall(b"\x05\x00")
        conn.settimeout(None)
        while conn.recv(65536):  # and the connect reply never
            pass
    p = scripted(script, read_head=False)
    t0 = time.monotonic()
    with pytest.raises(errors.Timeout):
        front.connect("ws://stream.example.com/", proxy=f"socks5h://127.0.0.1:{p.port}",
                       dial_timeout="1s")
    assert time.monotonic() - t0 < 1.5


@pytest.mark.parametrize("front", frontends.ALL_LOOPS, indirect=True)
def test_a_tls_proxy_that_never_handshakes_is_a_dial_timeout(front, scripted, pki):
    p = scripted(answer(b"", hold=True), read_head=False)
    t0 = time.monotonic()
    with pytest.raises(errors.Timeout) as info:
        front.connect("wss://localhost:9/", proxy=f"https://localhost:{p.port}",
                       proxy_ssl=pki.client, dial_timeout="400ms")
    assert time.monotonic() - t0 < 1.5
    assert "TLS handshake with the proxy" in info.value.message


def test_an_unreachable_proxy_is_a_connect_error_naming_the_proxy(front):
    port = _closed_port()
    with pytest.raises(errors.ConnectError) as info:
        front.connect("ws://localhost:9/", proxy=f"http://127.0.0.1:{port}", dial_timeout="2s")
    err = info.value
    assert not isinstance(err, ProxyError) and err.retryable is True
    assert f"the proxy 127.0.0.1:{port}" in err.message and err.details["proxy"]
    with pytest.raises((errors.ConnectError, errors.Timeout)) as info:   # (a slow resolver: Timeout)
        front.connect("ws://localhost:9/", proxy="http://no-such-proxy.invalid:3128",
                       dial_timeout="3s")
    assert "the proxy no-such-proxy.invalid" in info.value.message
    assert not isinstance(info.value, ProxyError)


@pytest.mark.parametrize("kind", ["http", "https"])
def test_cancel_wakes_a_dial_blocked_on_the_proxy(scripted, pki, kind):
    # http: blocked reading the answer to CONNECT; https: blocked in the TLS handshake
    p = scripted(answer(b"", hold=True), read_head=(kind == "http"))
    cancel = Cancel()
    timer = threading.Timer(0.3, cancel.cancel)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(errors.ConnectError, match="cancelled"):
            wsfast.client.connect_with(
                "wss://localhost:9/",
                parse_options({"proxy": f"{kind}://localhost:{p.port}", "proxy_ssl": pki.client,
                               "dial_timeout": "10s"}),
                cancel)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 3


def test_bytes_after_the_answer_are_handed_on_ws(scripted):
    # the proxy's 200 and, in the same write, what the target said: a refusal
    refusal = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno"
    p = scripted(answer(b"HTTP/1.1 200 OK\r\n\r\n" + refusal, hold=True))
    with pytest.raises(errors.HandshakeError) as info:
        wsfast.connect("ws://localhost:9/", proxy=f"http://127.0.0.1:{p.port}",
                       dial_timeout="3s")
    assert info.value.status == 400 and not isinstance(info.value, ProxyError)


def test_bytes_after_the_answer_are_handed_on_wss(scripted, pki):
    # ... a TLS alert record (fatal, handshake_failure): it reaches the target's TLS
    alert = b"\x15\x03\x03\x00\x02\x02\x28"
    p = scripted(answer(b"HTTP/1.1 200 OK\r\n\r\n" + alert, hold=True))
    with pytest.raises(errors.ConnectError) as info:
        wsfast.connect("wss://localhost:9/", proxy=f"http://127.0.0.1:{p.port}", ssl=pki.client,
                       dial_timeout="3s")
    assert "HANDSHAKE_FAILURE" in info.value.message.upper()


# ====================================================================== the environment

@pytest.fixture
def counted(pproxy):
    """An HTTP+SOCKS pproxy whose tunnels are counted."""
    return pproxy("http+socks4+socks5")


@pytest.mark.parametrize("variable", ["https_proxy", "HTTPS_PROXY", "wss_proxy", "WSS_PROXY",
                                      "all_proxy", "ALL_PROXY"])
def test_the_environments_proxy_is_used_for_wss(front, monkeypatch, counted, wss_target, pki, variable):
    monkeypatch.setenv(variable, f"http://127.0.0.1:{counted.port}")
    with front.connect(f"wss://localhost:{wss_target}/", ssl=pki.client, dial_timeout="5s") as c:
        roundtrip(c)
        assert c.proxy == f"http://127.0.0.1:{counted.port}"
    assert counted.tunnels(want=1) == [f"localhost:{wss_target}"]


@pytest.mark.parametrize("variable", ["http_proxy", "HTTP_PROXY", "ws_proxy", "WS_PROXY",
                                      "all_proxy", "ALL_PROXY"])
def test_the_environments_proxy_is_used_for_ws(front, monkeypatch, counted, ws_target, variable):
    monkeypatch.setenv(variable, f"http://127.0.0.1:{counted.port}")
    with front.connect(f"ws://localhost:{ws_target}/", dial_timeout="5s") as c:
        roundtrip(c)
    assert counted.tunnels(want=1) == [f"localhost:{ws_target}"]


def test_the_more_specific_variable_wins(front, monkeypatch, counted, ws_target):
    dead = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("ws_proxy", f"socks5h://127.0.0.1:{counted.port}")
    monkeypatch.setenv("http_proxy", dead)
    monkeypatch.setenv("all_proxy", dead)
    if "socks5h" in os.environ["ws_proxy"]:
        pytest.importorskip("python_socks")
    with front.connect(f"ws://localhost:{ws_target}/", dial_timeout="5s") as c:
        roundtrip(c)
        assert c.proxy.startswith("socks5h://")
    monkeypatch.delenv("ws_proxy")
    with pytest.raises(errors.ConnectError) as info:   # now http_proxy: the dead one
        front.connect(f"ws://localhost:{ws_target}/", dial_timeout="5s")
    assert "the proxy" in info.value.message
    assert counted.tunnels(want=1) == [f"localhost:{ws_target}"]


@pytest.mark.parametrize("no_proxy", ["localhost", ".localhost", "LOCALHOST.", "127.0.0.1",
                                      "127.0.0.0/8", "*", "example.com, localhost",
                                      "localhost:{port}"])
def test_no_proxy_really_bypasses(front, monkeypatch, counted, ws_target, no_proxy):
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{counted.port}")
    monkeypatch.setenv("NO_PROXY", no_proxy.format(port=ws_target))
    host = "127.0.0.1" if no_proxy[0].isdigit() else "localhost"
    with front.connect(f"ws://{host}:{ws_target}/", dial_timeout="5s") as c:
        roundtrip(c)
        assert c.proxy is None
    assert counted.tunnels(timeout=0.3) == []


@pytest.mark.parametrize("no_proxy", ["example.com", "localhost:1", "127.0.0.2", "10.0.0.0/8",
                                      "calhost"])
def test_no_proxy_that_does_not_match_leaves_the_proxy_in_use(front, monkeypatch, counted, ws_target,
                                                              no_proxy):
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{counted.port}")
    monkeypatch.setenv("no_proxy", no_proxy)
    with front.connect(f"ws://localhost:{ws_target}/", dial_timeout="5s") as c:
        roundtrip(c)
    assert counted.tunnels(want=1) == [f"localhost:{ws_target}"]


def test_proxy_false_bypasses_the_environment(front, monkeypatch, counted, ws_target):
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{counted.port}")
    monkeypatch.setenv("all_proxy", f"http://127.0.0.1:{counted.port}")
    with front.connect(f"ws://localhost:{ws_target}/", proxy=False, dial_timeout="5s") as c:
        roundtrip(c)
        assert c.proxy is None
    assert counted.tunnels(timeout=0.3) == []


def test_a_bad_environment_proxy_fails_the_connect_naming_the_variable(front, monkeypatch, ws_target):
    monkeypatch.setenv("HTTP_PROXY", "http://user:pw@host:99999")
    with pytest.raises(errors.InvalidOption) as info:
        front.connect(f"ws://localhost:{ws_target}/", dial_timeout="5s")
    assert "environment variable HTTP_PROXY" in info.value.message
    assert "pw" not in info.value.message
