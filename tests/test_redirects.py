"""Redirects (DESIGN §6): which statuses, where to (RFC 3986), and what each hop may do.

Each rule has a test that fails without it: 301/302/303/307/308 followed and nothing
else; the Location resolved against the current URL; http/https mapped to ws/wss and
any other scheme refused; ``max_redirects``; every hop policy-checked before it is
dialled (a denied hop opens no connection); wss -> ws refused; credentials only on
the first origin; one ``dial_timeout`` for the chain; ``client.url`` the final URL.

The tests that connect take the ``front`` fixture (conftest.py): each runs on the sync
client and on wsfast.asyncio behind the same calls (tests/frontends.py).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Callable, List

import pytest
from conftest import accept_for

import wsfast
from wsfast.errors import HandshakeError
from wsfast.handshake import redirect_url, resolve_reference


class HttpServer:
    """Accepts any number of connections; answers each upgrade request with
    ``respond(request_text) -> bytes`` (a 101 from :func:`upgrade_ok` keeps the
    connection open until the client closes it). ``requests`` and ``accepted`` count."""

    def __init__(self, respond: Callable[[str], bytes], tls: ssl.SSLContext = None) -> None:
        self.respond = respond
        self.tls = tls
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port = self.listener.getsockname()[1]
        scheme = "wss" if tls else "ws"
        self.url = f"{scheme}://127.0.0.1:{self.port}/"
        self.accepted = 0
        self.requests: List[str] = []
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="test-http")
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            request = data.decode("latin-1")
            self.requests.append(request)
            answer = self.respond(request)
            conn.sendall(answer)
            if answer.startswith(b"HTTP/1.1 101"):
                while not self._stop.is_set():   # until the client's close frame
                    try:
                        if not conn.recv(65536):
                            return
                    except socket.timeout:
                        continue
                    conn.sendall(b"\x88\x02\x03\xe8")   # (the only frame a test client sends)
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(5)
        for t in self._threads:
            t.join(5)


def header(request: str, name: str):
    for line in request.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def upgrade_ok(request: str) -> bytes:
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(header(request, 'Sec-WebSocket-Key'))}\r\n\r\n").encode()


def redirect(status: int, location: str) -> Callable[[str], bytes]:
    return lambda request: (f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\n"
                            "Content-Length: 0\r\n\r\n").encode()


@pytest.fixture
def http_server():
    servers = []

    def start(respond, tls=None) -> HttpServer:
        srv = HttpServer(respond, tls)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


# ---------------------------------------------------------------------- where to, sans-I/O

RFC3986_BASE = "http://a/b/c/d;p?q"
RFC3986_EXAMPLES = {   # RFC 3986 §5.4.1 and §5.4.2 (fragments dropped: no URL here has one)
    "g:h": "g:h", "g": "http://a/b/c/g", "./g": "http://a/b/c/g", "g/": "http://a/b/c/g/",
    "/g": "http://a/g", "//g": "http://g", "?y": "http://a/b/c/d;p?y", "g?y": "http://a/b/c/g?y",
    "#s": "http://a/b/c/d;p?q", "g#s": "http://a/b/c/g", "g?y#s": "http://a/b/c/g?y",
    ";x": "http://a/b/c/;x", "g;x": "http://a/b/c/g;x", "": "http://a/b/c/d;p?q",
    ".": "http://a/b/c/", "./": "http://a/b/c/", "..": "http://a/b/", "../": "http://a/b/",
    "../g": "http://a/b/g", "../..": "http://a/", "../../": "http://a/", "../../g": "http://a/g",
    "../../../g": "http://a/g", "../../../../g": "http://a/g", "/./g": "http://a/g",
    "/../g": "http://a/g", "g.": "http://a/b/c/g.", ".g": "http://a/b/c/.g",
    "g..": "http://a/b/c/g..", "..g": "http://a/b/c/..g", "./../g": "http://a/b/g",
    "./g/.": "http://a/b/c/g/", "g/./h": "http://a/b/c/g/h", "g/../h": "http://a/b/c/h",
    "g;x=1/./y": "http://a/b/c/g;x=1/y", "g;x=1/../y": "http://a/b/c/y",
    "g?y/./x": "http://a/b/c/g?y/./x", "g?y/../x": "http://a/b/c/g?y/../x",
    "g#s/./x": "http://a/b/c/g", "http:g": "http:g",
}


@pytest.mark.parametrize("ref", list(RFC3986_EXAMPLES))
def test_rfc3986_reference_resolution(ref):
    assert resolve_reference(RFC3986_BASE, ref) == RFC3986_EXAMPLES[ref]


@pytest.mark.parametrize("location, expected", [
    ("/next?a=1", "ws://h:1/next?a=1"),
    ("other", "ws://h:1/x/other"),
    ("http://e.com/p", "ws://e.com/p"),
    ("https://e.com/p", "wss://e.com/p"),
    ("WSS://e.com/p", "wss://e.com/p"),
    ("//e.com:9/p", "ws://e.com:9/p"),
])
def test_redirect_url_maps_http_to_ws(location, expected):
    assert redirect_url("ws://h:1/x/y", location) == expected


@pytest.mark.parametrize("location", ["ftp://e.com/", "javascript:alert(1)", "a b", "x\r\ny", ""])
def test_redirect_url_refuses_other_schemes_and_junk(location):
    with pytest.raises(HandshakeError) as info:
        redirect_url("ws://h/", location)
    assert info.value.retryable is False


# ---------------------------------------------------------------------- following


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_each_redirect_status_is_followed(front, http_server, status):
    final = http_server(upgrade_ok)
    first = http_server(redirect(status, final.url + "end?q=1"))
    with front.connect(first.url) as c:
        assert c.url == final.url + "end?q=1"
    assert final.requests[0].startswith("GET /end?q=1 HTTP/1.1")


@pytest.mark.parametrize("status", [300, 304, 305, 306])
def test_other_3xx_statuses_are_refusals(front, http_server, status):
    final = http_server(upgrade_ok)
    first = http_server(redirect(status, final.url))
    with pytest.raises(HandshakeError) as info:
        front.connect(first.url)
    assert info.value.status == status
    assert final.accepted == 0


def test_a_relative_location_resolves_against_the_current_url(front, http_server):
    seen = []

    def respond(request):
        path = request.split(" ")[1]
        seen.append(path)
        if path == "/a/b":
            return redirect(302, "c?x=1")(request)
        return upgrade_ok(request)
    srv = http_server(respond)
    with front.connect(srv.url + "a/b") as c:
        assert c.url == srv.url + "a/c?x=1"
    assert seen == ["/a/b", "/a/c?x=1"]


def test_an_http_location_is_followed_as_ws(front, http_server):
    final = http_server(upgrade_ok)
    first = http_server(redirect(301, f"http://127.0.0.1:{final.port}/x"))
    with front.connect(first.url) as c:
        assert c.url == f"ws://127.0.0.1:{final.port}/x"


def test_another_scheme_is_a_handshake_error(front, http_server):
    srv = http_server(redirect(301, "ftp://127.0.0.1/"))
    with pytest.raises(HandshakeError) as info:
        front.connect(srv.url)
    assert info.value.retryable is False and "ftp" in str(info.value)


def test_max_redirects_bounds_the_chain(front, http_server):
    loop = http_server(lambda r: redirect(307, "/again")(r))
    with pytest.raises(HandshakeError) as info:
        front.connect(loop.url, max_redirects=3)
    assert "too many redirects" in str(info.value)
    assert info.value.retryable is False
    assert len(loop.requests) == 4   # the first request and 3 redirects followed


def test_max_redirects_zero_follows_none(front, http_server):
    final = http_server(upgrade_ok)
    first = http_server(redirect(301, final.url))
    with pytest.raises(HandshakeError) as info:
        front.connect(first.url, max_redirects=0)
    assert info.value.status == 301 and info.value.details["location"] == final.url
    assert final.accepted == 0


def test_the_default_follows_ten(front, http_server):
    hops = []

    def respond(request):
        hops.append(1)
        return redirect(302, "/n")(request) if len(hops) <= 10 else upgrade_ok(request)
    srv = http_server(respond)
    with front.connect(srv.url):
        pass
    assert len(hops) == 11


def test_a_denied_hop_opens_no_connection(front, http_server):
    final = http_server(upgrade_ok)
    first = http_server(redirect(301, final.url + "admin"))
    policy = wsfast.Policy(wsfast.allow("websocket.connect"),
                           wsfast.allow("websocket.connect.url", first.url + "*"),
                           wsfast.deny("websocket.connect.url", final.url + "admin*"))
    with wsfast.policy_scope(policy):
        with pytest.raises(wsfast.PermissionDenied):
            front.connect(first.url)
    time.sleep(0.1)
    assert final.accepted == 0
    assert len(first.requests) == 1


def test_a_hop_to_an_unlisted_host_is_denied(front, http_server):
    final = http_server(upgrade_ok)
    first = http_server(redirect(301, f"ws://localhost:{final.port}/"))
    policy = wsfast.Policy(wsfast.allow("websocket.connect"),
                           wsfast.allow("websocket.connect.url", "ws://127.0.0.1:*"))
    with wsfast.policy_scope(policy):
        with pytest.raises(wsfast.PermissionDenied):
            front.connect(first.url)
    assert final.accepted == 0


@pytest.fixture(scope="module")
def tls():
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def test_wss_to_ws_is_refused(front, http_server, tls):
    server_ctx, client_ctx = tls
    plain = http_server(upgrade_ok)
    secure = http_server(redirect(301, plain.url), tls=server_ctx)
    with pytest.raises(HandshakeError) as info:
        front.connect(secure.url, ssl=client_ctx)
    assert info.value.retryable is False and "wss to ws" in str(info.value)
    assert plain.accepted == 0


def test_ws_to_wss_is_followed(front, http_server, tls):
    server_ctx, client_ctx = tls
    secure = http_server(upgrade_ok, tls=server_ctx)
    plain = http_server(redirect(301, secure.url))
    with front.connect(plain.url, ssl=client_ctx) as c:
        assert c.url == secure.url


CREDENTIALS = {"Authorization": "Bearer s3cret", "Cookie": "session=1",
               "Proxy-Authorization": "Basic eDp5", "X-Trace": "t1"}


def test_credentials_are_not_sent_to_another_origin(front, http_server):
    other = http_server(upgrade_ok)
    first = http_server(redirect(302, other.url))   # another port: another origin
    with front.connect(first.url, headers=CREDENTIALS):
        pass
    req = other.requests[0]
    assert header(first.requests[0], "Authorization") == "Bearer s3cret"
    assert header(req, "Authorization") is None
    assert header(req, "Cookie") is None
    assert header(req, "Proxy-Authorization") is None
    assert header(req, "X-Trace") == "t1"   # other headers go on


def test_credentials_stay_on_the_same_origin(front, http_server):
    def respond(request):
        return redirect(302, "/two")(request) if request.startswith("GET / ") else upgrade_ok(request)
    srv = http_server(respond)
    with front.connect(srv.url, headers=CREDENTIALS):
        pass
    assert header(srv.requests[1], "Authorization") == "Bearer s3cret"
    assert header(srv.requests[1], "Cookie") == "session=1"


def test_one_dial_timeout_covers_the_chain(front, http_server):
    def slow_loop(request):
        time.sleep(0.3)
        return redirect(307, "/again")(request)
    srv = http_server(slow_loop)
    start = time.monotonic()
    with pytest.raises(wsfast.Timeout):
        front.connect(srv.url, dial_timeout="1s")
    took = time.monotonic() - start
    assert took < 1.6, took          # not 10 hops x 0.3 s
    assert len(srv.requests) <= 4
