"""Proxy decisions without I/O (DESIGN §6): which proxy, the CONNECT request, its answer.

Both front ends use this module; each only moves the bytes:

* :func:`select_proxy` turns the ``proxy`` option (None: the environment, False: none,
  a str: that URL) into a :class:`ProxyURL`, or None for a direct connection.
* :func:`connect_request` is the ``CONNECT`` an HTTP(S) proxy gets;
  :class:`TunnelAnswer` reads its answer (bounded like the handshake's) and hands back
  the bytes that came after the header block: they belong to the tunnel.
* :class:`ProxyError` is a refused or broken tunnel.

Decisions:

* The environment is read as curl and ``urllib`` read it, lower case first, then upper
  case: ``wss_proxy``/``ws_proxy``, else ``https_proxy`` (wss) / ``http_proxy`` (ws), else
  ``all_proxy``. An empty value counts as unset. Under CGI (``REQUEST_METHOD`` set)
  ``HTTP_PROXY`` is ignored, as ``urllib`` does: a request's ``Proxy:`` header lands there.
  A value without a scheme is an ``http://`` proxy (curl's rule).
* ``no_proxy`` (lower case first, then ``NO_PROXY``): entries separated by commas or
  spaces; ``*`` bypasses every host; ``example.com`` and ``.example.com`` both match
  ``example.com`` and its subdomains (curl's rule); an IP address matches that address,
  ``10.0.0.0/8`` a network; ``host:port`` (``[v6]:port``) only that port. Names are
  compared in their IDNA form, never resolved.
* An explicit ``proxy="..."`` is used as given: ``no_proxy`` is part of reading the
  environment only.
* :attr:`ProxyURL.display` is ``scheme://host:port``, with the effective port, without
  the credentials.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union
from urllib.parse import unquote

from .errors import HandshakeError, InvalidOption, ProxyError
from .handshake import Response, ResponseParser
from .policy import Target, _split_host_port, _to_ascii, parse_url

__all__ = [
    "ProxyURL", "ProxyError", "TunnelAnswer", "check_connect_response", "connect_request",
    "parse_proxy_url", "proxy_bypassed", "select_proxy",
]

DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks4a": 1080,
                 "socks5": 1080, "socks5h": 1080}
SOCKS_SCHEMES = ("socks4", "socks4a", "socks5", "socks5h")
# The answer to CONNECT is bounded like the handshake's response.
MAX_ANSWER_SIZE = 65536
MAX_ANSWER_HEADERS = 256
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_HTTP10, _HTTP11 = b"HTTP/1.0", b"HTTP/1.1"


@dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL. ``host`` is normalised like a WebSocket URL's host
    (lowercase ASCII, IDNA 2008 A-labels, IPv6 without brackets); ``username`` and
    ``password`` are percent-decoded (None when the URL has no userinfo);
    ``display`` is the URL without credentials."""

    scheme: str
    host: str
    port: int
    display: str
    username: Optional[str] = field(default=None, repr=False)
    password: Optional[str] = field(default=None, repr=False)

    @property
    def secure(self) -> bool:
        """TLS to the proxy itself (``https://``)."""
        return self.scheme == "https"

    @property
    def socks(self) -> bool:
        return self.scheme in SOCKS_SCHEMES

    @property
    def rdns(self) -> bool:
        """The proxy resolves the target's name (``socks4a``, ``socks5h``; HTTP always)."""
        return self.scheme in ("socks4a", "socks5h", "http", "https")

    @property
    def authority(self) -> str:
        """``host:port`` with an IPv6 host in brackets."""
        return _authority(self.host, self.port)

    @property
    def server_hostname(self) -> Optional[str]:
        """The TLS name of the proxy (None for an IP address: verified as the IP)."""
        return None if _ip(self.host) is not None else self.host


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ip(text: str) -> Union[ipaddress.IPv4Address, ipaddress.IPv6Address, None]:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _redact(url: str) -> str:
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    authority = rest.split("/", 1)[0]
    at = authority.rfind("@")
    if at != -1:
        rest = "***@" + rest[at + 1:]
    return f"{head}://{rest}" if sep else rest


def parse_proxy_url(url: str, source: str = "option 'proxy'", *,
                    default_scheme: Optional[str] = None, **details: Any) -> ProxyURL:
    """Parse a proxy URL: ``scheme://[user[:password]@]host[:port][/]``.

    ``source`` names where it came from for the error (the option, or an environment
    variable); ``default_scheme`` is used when the URL has none (the environment's
    curl rule). Raises InvalidOption (kind INVALID) naming ``source``.
    """
    if not isinstance(url, str):
        raise InvalidOption(f"{source}: a proxy URL must be a str, got {type(url).__name__}",
                            **details)
    shown = _redact(url)

    def bad(why: str) -> InvalidOption:
        return InvalidOption(f"{source}: invalid proxy URL {shown!r}: {why}", **details)

    if _CONTROL.search(url):
        raise bad("spaces or control characters")
    scheme, sep, rest = url.partition("://")
    if not sep:
        if default_scheme is None:
            raise bad("no scheme (" + ", ".join(s + "://" for s in DEFAULT_PORTS) + ")")
        scheme, rest = default_scheme, url
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise bad(f"unsupported scheme {scheme!r} (" +
                  ", ".join(s + "://" for s in DEFAULT_PORTS) + ")")
    authority, slash, path = rest.partition("/")
    if path or "?" in authority or "#" in authority:
        raise bad("a proxy URL has no path, query or fragment")
    userinfo, at, hostport = authority.rpartition("@")
    if "@" in userinfo:
        raise bad("more than one '@' (write '@' in a user name or password as %40)")
    username = password = None
    if at and userinfo:
        user, colon, secret = userinfo.partition(":")
        try:
            username = unquote(user, errors="strict")
            password = unquote(secret, errors="strict") if colon else ""
        except UnicodeDecodeError:
            raise bad("the user name or password is not UTF-8 once percent-decoded") from None
    if not hostport:
        raise bad("no host")
    try:
        _host_text, port_text = _split_host_port(url, hostport)
        # the host and port rules of WebSocket URLs (IDNA 2008, IPv6, canonical IPv4)
        target = parse_url(f"ws://{hostport}/")
    except InvalidOption as exc:
        why = exc.message.split("': ", 1)[-1]
        raise bad(why) from None
    port = DEFAULT_PORTS[scheme] if port_text is None else target.port
    display = f"{scheme}://{_authority(target.host, port)}"
    return ProxyURL(scheme, target.host, port, display, username, password)


# ------------------------------------------------------------------ the environment

def _env(environ: Mapping[str, str], name: str) -> Optional[tuple]:
    """(variable, value) of ``name`` in lower case, else upper case; empty is unset."""
    for variable in (name, name.upper()):
        if variable == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
            continue   # CGI: a client's "Proxy:" request header would be here
        value = environ.get(variable)
        if value:
            return variable, value.strip()
    return None


def _entry_host(entry: str) -> tuple:
    """(host, port or None) of one no_proxy entry; host without brackets."""
    if entry.startswith("["):
        host, _, after = entry[1:].partition("]")
        port = after[1:] if after.startswith(":") else None
        return host, port
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, None


def proxy_bypassed(target: Target, no_proxy: str) -> bool:
    """True when the ``no_proxy`` list names ``target`` (see the module's rules)."""
    host = target.host
    host_ip = _ip(host)
    for entry in re.split(r"[,\s]+", no_proxy.strip()):
        if not entry:
            continue
        if entry == "*":
            return True
        name, port = _entry_host(entry)
        # isdigit() alone takes '²' or '③', which int() refuses: ASCII digits only
        if port is not None and not (port.isascii() and port.isdigit() and int(port) == target.port):
            continue
        name = name.lstrip(".").rstrip(".").lower()
        if not name:
            continue
        if "/" in name:
            try:
                network = ipaddress.ip_network(name, strict=False)
            except ValueError:
                continue
            if host_ip is not None and host_ip.version == network.version and host_ip in network:
                return True
            continue
        entry_ip = _ip(name)
        if entry_ip is not None:
            if host_ip is not None and host_ip == entry_ip:
                return True
            continue
        if not name.isascii():
            try:
                name = _to_ascii(name)
            except Exception:   # (idna's errors) not a name any host can have
                continue
        if host == name or host.endswith("." + name):
            return True
    return False


def select_proxy(target: Target, setting: Union[None, bool, str],
                 environ: Mapping[str, str] = os.environ) -> Optional[ProxyURL]:
    """The proxy for ``target`` (None: connect directly).

    ``setting`` is ``Options.proxy``: None reads ``environ`` (wss_proxy/ws_proxy, then
    https_proxy/http_proxy, then all_proxy; no_proxy bypasses), False is no proxy, a str
    is that proxy URL. Raises InvalidOption naming the option or the variable.
    """
    if setting is False:
        return None
    if isinstance(setting, str):
        return parse_proxy_url(setting, "option 'proxy'", option="proxy")
    if setting is not None:
        raise InvalidOption(f"option 'proxy': expected None, False or a proxy URL str, "
                            f"got {type(setting).__name__}", option="proxy")
    names = ("wss_proxy", "https_proxy", "all_proxy") if target.secure else \
        ("ws_proxy", "http_proxy", "all_proxy")
    for name in names:
        found = _env(environ, name)
        if found is not None:
            break
    else:
        return None
    bypass = _env(environ, "no_proxy")
    if bypass is not None and proxy_bypassed(target, bypass[1]):
        return None
    variable, value = found
    return parse_proxy_url(value, f"environment variable {variable}", default_scheme="http",
                           option="proxy", variable=variable)


# ------------------------------------------------------------------ HTTP CONNECT

def connect_request(target: Target, proxy: ProxyURL) -> bytes:
    """The ``CONNECT host:port HTTP/1.1`` request for ``target`` (IPv6 in brackets),
    with ``Proxy-Authorization: Basic`` when ``proxy`` has credentials."""
    authority = _authority(target.host, target.port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.username is not None:
        pair = f"{proxy.username}:{proxy.password or ''}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(pair).decode("ascii"))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def check_connect_response(response: Response, target: Target, proxy: ProxyURL) -> None:
    """Accept a 2xx answer to CONNECT; raise ProxyError (with ``status``) otherwise."""
    status = response.status
    if 200 <= status < 300:
        return
    where = f"the proxy {proxy.display} refused the tunnel to {_authority(target.host, target.port)}"
    text = f"{where}: {status} {response.reason}".rstrip()
    if status == 407:
        text += (" (proxy authentication failed)" if proxy.username is not None
                 else " (proxy authentication required: put user:password@ in the proxy URL)")
    raise ProxyError(text, status=status, headers=list(response.headers), url=target.url,
                     proxy=proxy.display)


class TunnelAnswer:
    """The proxy's answer to CONNECT, fed as it arrives (sans-I/O).

    :meth:`feed` returns None while the header block is incomplete, then the bytes that
    followed it (maybe empty): the first bytes of the tunnel, to be handed on.
    """

    def __init__(self, target: Target, proxy: ProxyURL) -> None:
        self._target = target
        self._proxy = proxy
        self._parser = ResponseParser(MAX_ANSWER_SIZE, max_headers=MAX_ANSWER_HEADERS,
                                      url=target.url)
        self._fed = 0
        self._head: Optional[bytearray] = bytearray()   # the first bytes, until the version is seen

    def feed(self, data: bytes) -> Optional[bytes]:
        """Add bytes read from the proxy. Raises ProxyError for a malformed, oversized
        or non-2xx answer."""
        self._fed += len(data)
        head = self._head
        if head is not None:
            # Proxies often answer in HTTP/1.0 (tinyproxy's errors, many appliances'
            # "200 Connection established"): read it as the 1.1 the parser knows.
            head += data
            if len(head) < len(_HTTP10) and _HTTP10.startswith(bytes(head)):
                return None
            if head.startswith(_HTTP10):
                head[:len(_HTTP10)] = _HTTP11
            data = bytes(head)
            self._head = None
        try:
            response = self._parser.feed(data)
        except HandshakeError as exc:
            raise ProxyError(f"the proxy {self._proxy.display} answered CONNECT with "
                             f"{exc.message}", url=self._target.url, proxy=self._proxy.display,
                             cause=exc) from exc
        if response is None:
            return None
        check_connect_response(response, self._target, self._proxy)
        return self._parser.leftover

    def eof(self) -> ProxyError:
        """The error for a proxy that closed the connection before its answer was whole
        (to raise)."""
        when = "in the middle of its answer" if self._fed else "without answering"
        return ProxyError(f"the proxy {self._proxy.display} closed the connection {when} "
                          f"to CONNECT", url=self._target.url, proxy=self._proxy.display)
