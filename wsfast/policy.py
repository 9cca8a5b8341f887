"""The security policy: which WebSocket URLs code may connect to.

Every connection is checked twice before any DNS or TCP work: action ``websocket.connect``
(resource ``""``) and then ``websocket.connect.url`` (resource: the normalised URL). The URL
is parsed once, by :func:`parse_url`; the resulting :class:`Target` is both what the policy
sees and what the client dials, so the two can never disagree.

Policies in force: the process default (:func:`set_policy`, every thread) and the
:func:`policy_scope` stack (a ``contextvars`` variable: per thread and per asyncio task).
Every policy in force must allow; with none in force a connection is allowed unless
``set_policy(strict=True)``.
"""

from __future__ import annotations

import contextvars
import ipaddress
import string
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Union

import idna

from .errors import InvalidOption, PermissionDenied

__all__ = [
    "Target", "parse_url", "Rule", "allow", "deny", "Policy", "set_policy", "policy_scope",
    "check_connect", "CONNECT", "CONNECT_URL",
]

CONNECT = "websocket.connect"
CONNECT_URL = "websocket.connect.url"

Hook = Callable[[str, str], Optional[bool]]
PolicyLike = Union["Policy", "Rule", Hook]

# --------------------------------------------------------------------------------------
# URL parsing and normalisation
# --------------------------------------------------------------------------------------

_SCHEMES = {"ws": (False, 80), "wss": (True, 443)}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PATH_CHARS = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_CHARS = _PATH_CHARS | frozenset("?")
_HEX = frozenset(string.hexdigits)
_HOST_CHARS = frozenset(string.ascii_lowercase + string.digits + "-_")
# Escapes that a server may decode into a path separator or a string terminator: they
# would let the path the server routes differ from the path the policy matched.
_PATH_FORBIDDEN_ESCAPES = ("%2F", "%5C", "%00")


@dataclass(frozen=True)
class Target:
    """The one parse of a WebSocket URL, used both for policy checks and for dialling.

    ``host`` is normalised (lowercase ASCII, IDNA 2008 A-labels, no trailing dot, IPv6
    without brackets); ``port`` is the effective port; ``resource`` is the HTTP request-target
    (path and query); ``url`` is the normalised URL matched by the policy;
    ``host_header`` is the ``Host`` header value; ``server_hostname`` is the TLS SNI name
    (None for IP literals: verify those against ``host``).
    """

    scheme: str
    secure: bool
    host: str
    port: int
    resource: str
    url: str
    host_header: str
    server_hostname: Optional[str]

    def __str__(self) -> str:
        return self.url


def _redact(url: str) -> str:
    """The URL with any userinfo masked, for error messages (it may hold a password)."""
    head, sep, rest = url.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i != -1),
              default=len(rest))
    at = rest.rfind("@", 0, end)
    if sep and at != -1:
        return f"{head}://***@{rest[at + 1:]}"
    return url


def _bad_url(url: str, why: str) -> InvalidOption:
    shown = _redact(url)
    return InvalidOption(f"invalid WebSocket URL {shown!r}: {why}", url=shown)


def _is_forbidden_char(ch: str) -> bool:
    # Controls, format characters (bidi overrides, zero-width joiners), surrogates,
    # private-use, unassigned code points and every kind of whitespace or separator.
    return ch.isspace() or unicodedata.category(ch)[0] in ("C", "Z")


def parse_url(url: str) -> Target:
    """Parse and normalise a ``ws://`` or ``wss://`` URL; raise ``InvalidOption`` if bad.

    Rejected: non-str, other schemes, whitespace or control characters, backslashes,
    fragments, missing or malformed hosts, percent-encoding in the host, non-canonical
    IPv4 forms, bad ports, malformed percent-escapes, ``%2F``/``%5C``/``%00`` and ``..;``
    segments in the path. Userinfo is dropped. See docs/security.md.
    """
    if not isinstance(url, str):
        raise InvalidOption(f"URL must be a str, not {type(url).__name__}")
    for i, ch in enumerate(url):
        if _is_forbidden_char(ch):
            raise _bad_url(url, f"whitespace or control character {ch!r} at position {i}")
    if "\\" in url:
        raise _bad_url(url, "backslash")
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.isascii() or scheme.lower() not in _SCHEMES:
        raise _bad_url(url, "the scheme must be ws:// or wss://")
    scheme = scheme.lower()
    if "#" in rest:
        # RFC 6455 section 3: fragments MUST NOT be used in WebSocket URIs.
        raise _bad_url(url, "fragments are not allowed in WebSocket URLs")
    end = len(rest)
    for stop in "/?":
        i = rest.find(stop)
        if i != -1:
            end = min(end, i)
    authority, tail = rest[:end], rest[end:]
    path, qmark, query = tail.partition("?")

    userinfo, at, hostport = authority.rpartition("@")
    if at and "@" in userinfo:
        raise _bad_url(url, "more than one '@' in the authority")
    host, port_text = _split_host_port(url, hostport)
    secure, default_port = _SCHEMES[scheme]
    port = default_port if port_text is None else _parse_port(url, port_text)

    is_ipv6 = host.startswith("[")
    if is_ipv6:
        host = _normalise_ipv6(url, host[1:-1])
        is_ip = True
    else:
        host = _normalise_reg_name(url, host)
        is_ip = _is_ipv4(host)
    resource = _normalise_path(url, path)
    if qmark:
        query = _normalise_escapes(url, query, _QUERY_CHARS)
        if query:
            resource += "?" + query

    netloc = f"[{host}]" if is_ipv6 else host
    if port != default_port:
        netloc += f":{port}"
    return Target(
        scheme=scheme,
        secure=secure,
        host=host,
        port=port,
        resource=resource,
        url=f"{scheme}://{netloc}{resource}",
        host_header=netloc,
        server_hostname=None if is_ip else host,
    )


def _split_host_port(url: str, hostport: str) -> Tuple[str, Optional[str]]:
    """Split ``host[:port]``; an IPv6 literal keeps its brackets here."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise _bad_url(url, "unterminated IPv6 literal")
        host, after = hostport[: close + 1], hostport[close + 1:]
        if after and not after.startswith(":"):
            raise _bad_url(url, "unexpected text after the IPv6 literal")
        return host, (after[1:] if after else None)
    if "[" in hostport or "]" in hostport:
        raise _bad_url(url, "brackets outside an IPv6 literal")
    host, colon, port_text = hostport.partition(":")
    return host, (port_text if colon else None)


def _parse_port(url: str, text: str) -> int:
    digits = text.lstrip("0")
    if not text or not text.isascii() or not text.isdigit() or len(digits) > 5:
        raise _bad_url(url, f"bad port {text!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise _bad_url(url, f"port {port} out of range 1..65535")
    return port


def _normalise_ipv6(url: str, literal: str) -> str:
    if "%" in literal:
        raise _bad_url(url, "percent-encoding (or a zone id) in the host")
    try:
        value = int(ipaddress.IPv6Address(literal))
    except ValueError:
        raise _bad_url(url, f"bad IPv6 literal {literal!r}") from None
    # RFC 5952 text form, built here so it does not vary with the Python version.
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_len, i = -1, 0, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    text = [format(g, "x") for g in groups]
    if best_len < 2:
        return ":".join(text)
    head = ":".join(text[:best_start])
    tail = ":".join(text[best_start + best_len:])
    return f"{head}::{tail}"


def _normalise_reg_name(url: str, raw: str) -> str:
    if not raw:
        raise _bad_url(url, "missing host")
    if "%" in raw:
        raise _bad_url(url, "percent-encoding in the host")
    if raw.isascii():
        host = raw.lower()
    else:
        try:
            host = _to_ascii(raw)
        except idna.IDNAError as exc:
            raise _bad_url(url, f"host is not valid IDNA 2008 ({exc})") from None
    if host.endswith("."):
        host = host[:-1]
    _validate_ascii_host(url, host)
    return host


def _to_ascii(host: str) -> str:
    """The ASCII form of a non-ASCII host: UTS 46 mapping, then IDNA 2008 per label.

    Non-transitional processing (the idna package's default, and what browsers do), so
    ``faß.de`` is ``xn--fa-hia.de``, not IDNA 2003's ``fass.de``: another domain. The
    mapping lowercases, applies NFC and turns ``。．｡`` into dots. Labels that are ASCII
    after it are left to :func:`_validate_ascii_host`, like in an all-ASCII host, rather
    than to ``idna.encode``, whose IDNA 2008 label rules would refuse ``my_svc`` or
    ``r1---sn-x`` next to a Unicode label. Raises ``idna.IDNAError``.
    """
    mapped = idna.uts46_remap(host, std3_rules=False)
    return ".".join(label if label.isascii() else idna.alabel(label).decode("ascii")
                    for label in mapped.split("."))


def _validate_ascii_host(url: str, host: str) -> None:
    if not host:
        raise _bad_url(url, "missing host")
    if len(host) > 253:
        raise _bad_url(url, "host longer than 253 characters")
    labels = host.split(".")
    for label in labels:
        if not label:
            raise _bad_url(url, "empty label in the host")
        if len(label) > 63:
            raise _bad_url(url, "host label longer than 63 characters")
        if not set(label) <= _HOST_CHARS or label[0] == "-" or label[-1] == "-":
            raise _bad_url(url, f"bad host label {label!r}")
        if label.startswith("xn--"):
            try:
                idna.ulabel(label)  # decodes, and the result must be a valid IDNA 2008 label
            except idna.IDNAError as exc:
                raise _bad_url(url, f"bad IDNA 2008 label {label!r} ({exc})") from None
    last = labels[-1]
    ends_in_number = last.isdigit() or (
        last.startswith("0x") and set(last[2:]) <= _HEX)
    # Resolvers accept 127.1, 0x7f.1, 2130706433 and 0177.0.0.1 as IPv4: only the
    # canonical dotted-quad form is accepted, so no other spelling reaches the resolver.
    if ends_in_number and not _is_ipv4(host):
        raise _bad_url(url, f"{host!r} is not a canonical dotted-quad IPv4 address")


def _is_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(
        p.isascii() and p.isdigit() and str(int(p)) == p and int(p) <= 255 for p in parts)


def _normalise_escapes(url: str, text: str, allowed: frozenset) -> str:
    """Validate ``%XX`` escapes, decode unreserved ones, uppercase the others and
    percent-encode (as UTF-8) every character outside ``allowed``."""
    out = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            hx = text[i + 1:i + 3]
            if len(hx) != 2 or not set(hx) <= _HEX:
                raise _bad_url(url, f"bad percent-escape {text[i:i + 3]!r}")
            decoded = chr(int(hx, 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + hx.upper())
            i += 3
            continue
        if ch in allowed:
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        i += 1
    return "".join(out)


def _normalise_path(url: str, path: str) -> str:
    """Normalise escapes, collapse ``//`` and resolve ``.``/``..`` (RFC 3986 5.2.4)."""
    if not path:
        return "/"
    path = _normalise_escapes(url, path, _PATH_CHARS)
    for esc in _PATH_FORBIDDEN_ESCAPES:
        if esc in path:
            raise _bad_url(url, f"{esc} in the path")
    segments = path.split("/")[1:]
    out: list = []
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        base = seg.split(";", 1)[0]
        if base in (".", "..") and seg != base:
            # "..;/" is ".." to some servers (Tomcat) and a plain name to others.
            raise _bad_url(url, f"dot segment with parameters {seg!r} in the path")
        if seg == "..":
            if out:
                out.pop()
        elif seg not in ("", "."):
            out.append(seg)
            continue
        if i == last:
            out.append("")  # keep a trailing slash
    return "/" + "/".join(out)


# --------------------------------------------------------------------------------------
# Rules and policies
# --------------------------------------------------------------------------------------

def _match(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return pattern == value


def _normalise_url_pattern(pattern: str, effect: str) -> str:
    """Bring a ``ws://``/``wss://`` pattern into the normalised form resources use, so a
    rule cannot silently never match (for a deny rule that would fail open).

    Exact patterns go through :func:`parse_url`. For a prefix, the scheme and host are
    normalised and the rest gets the path/query escape normalisation; an allow prefix that
    ends inside the host (``wss://api.example.com*``, which would also match
    ``wss://api.example.com.evil.test/``) is rejected. Raises ``InvalidOption``.
    """
    prefix = pattern.endswith("*")
    body = pattern[:-1] if prefix else pattern
    if not body.lower().startswith(("ws://", "wss://")):
        return pattern
    scheme, _, rest = body.partition("://")
    scheme = scheme.lower()
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=-1)
    authority = rest if cut == -1 else rest[:cut]
    if "@" in authority:
        raise InvalidOption(f"pattern {pattern!r}: userinfo is never matched")
    if not prefix:
        return parse_url(body).url
    if cut != -1:
        base = parse_url(f"{scheme}://{authority}/").url[:-1]
        return base + _normalise_pattern_tail(pattern, rest[cut:]) + "*"
    if not rest:
        return f"{scheme}://*"
    # The prefix ends inside the authority: after "host:" it can only extend the port.
    host, colon, port = rest.rpartition(":")
    if colon and (not host.startswith("[") or host.endswith("]")) and (
            port == "" or (port.isascii() and port.isdigit())):
        if port and int(port) == _SCHEMES[scheme][1]:
            raise InvalidOption(
                f"pattern {pattern!r}: the default port never appears in a normalised URL")
        base = parse_url(f"{scheme}://{host}/").url[:-1]
        return f"{base}:{port}*"
    if effect == "allow":
        raise InvalidOption(
            f"allow pattern {pattern!r} ends inside the host, so it also matches other "
            f"hosts (e.g. {body}.evil.test); end the host with '/' or ':'")
    return f"{scheme}://{rest.lower()}*"


def _normalise_pattern_tail(pattern: str, tail: str) -> str:
    """Normalise the path/query part of a URL prefix pattern (it may end mid-segment)."""
    if any(_is_forbidden_char(ch) for ch in tail) or "\\" in tail or "#" in tail:
        raise InvalidOption(f"pattern {pattern!r}: character never found in a normalised URL")
    if tail.startswith("?"):
        tail = "/" + tail  # resources always have a path: "wss://h?q" is "wss://h/?q"
    path, qmark, query = tail.partition("?")
    path = _normalise_escapes(pattern, path, _PATH_CHARS)
    segments = path.split("/")[1:-1]  # complete segments only; the last may be partial
    if any(esc in path for esc in _PATH_FORBIDDEN_ESCAPES) or any(
            seg in ("", ".", "..") for seg in segments):
        raise InvalidOption(
            f"pattern {pattern!r}: its path is not normalised ('//', '.', '..', %2F...)")
    if qmark:
        path += "?" + _normalise_escapes(pattern, query, _QUERY_CHARS)
    return path


@dataclass(frozen=True)
class Rule:
    """One static rule: ``effect`` ("allow" or "deny") for ``action`` on ``resource``.

    Patterns are ``*`` (everything), a prefix ending in ``*``, or an exact string; a
    ``ws://``/``wss://`` pattern has its scheme and host normalised like a URL. Raises
    ``InvalidOption`` for a malformed rule.
    """

    effect: str
    action: str
    resource: str = "*"

    def __post_init__(self) -> None:
        if self.effect not in ("allow", "deny"):
            raise InvalidOption(f"rule effect must be 'allow' or 'deny', not {self.effect!r}")
        if not isinstance(self.action, str) or not self.action:
            raise InvalidOption(
                f"{self.effect}(): action must be a non-empty str, not {self.action!r}")
        if not isinstance(self.resource, str):
            raise InvalidOption(
                f"{self.effect}(): resource must be a str, not {self.resource!r}")
        object.__setattr__(
            self, "resource", _normalise_url_pattern(self.resource, self.effect))

    def matches(self, action: str, resource: str) -> bool:
        """True when both patterns match."""
        return _match(self.action, action) and _match(self.resource, resource)

    def __repr__(self) -> str:
        return f"{self.effect}({self.action!r}, {self.resource!r})"


def allow(action: str, resource: str = "*") -> Rule:
    """A rule allowing ``action`` on ``resource``, for [`Policy`][wsfast.Policy].

    Args:
        action: ``"websocket.connect"``, ``"websocket.connect.url"`` or a pattern.
        resource: A pattern: ``*`` (everything), an exact string, or a prefix ending in
            ``*``; a ``ws://``/``wss://`` pattern is normalised like a URL.

    Raises:
        InvalidOption: A malformed action or pattern.
    """
    return Rule("allow", action, resource)


def deny(action: str, resource: str = "*") -> Rule:
    """A rule denying ``action`` on ``resource``; a deny always beats an allow.

    Args:
        action: As for [`allow`][wsfast.allow].
        resource: As for [`allow`][wsfast.allow].

    Raises:
        InvalidOption: A malformed action or pattern.
    """
    return Rule("deny", action, resource)


def _hook_name(hook: Any) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)


class Policy:
    """An immutable set of rules and hooks.

    A hook is a callable ``(action, resource)`` returning True (allow), False (deny) or
    None (no opinion); anything else, or an exception, counts as a deny. A hook alone
    is accepted wherever a policy is (then None means not allowed). Evaluation: any
    deny wins, else any allow allows, else denied.

    Args:
        *rules: Rules from [`allow`][wsfast.allow] and [`deny`][wsfast.deny], hooks,
            and policies (a Policy given as a rule contributes its rules).

    Raises:
        InvalidOption: Something that is not a rule, a hook or a policy.
    """

    __slots__ = ("_rules", "_denies", "_allows", "_hooks")

    def __init__(self, *rules: PolicyLike) -> None:
        flat: list = []
        for rule in rules:
            if isinstance(rule, Policy):
                flat.extend(rule.rules)
            elif isinstance(rule, Rule) or callable(rule):
                flat.append(rule)
            else:
                raise InvalidOption(f"Policy(): not a rule or a hook: {rule!r}")
        setter = object.__setattr__
        setter(self, "_rules", tuple(flat))
        setter(self, "_denies", tuple(r for r in flat if isinstance(r, Rule) and r.effect == "deny"))
        setter(self, "_allows", tuple(r for r in flat if isinstance(r, Rule) and r.effect == "allow"))
        setter(self, "_hooks", tuple(r for r in flat if not isinstance(r, Rule)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Policy is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Policy is immutable")

    @property
    def rules(self) -> tuple:
        """The rules and hooks, in the order given."""
        return self._rules

    def allows(self, action: str, resource: str) -> bool:
        """True when this policy alone allows ``action`` on ``resource``; raises nothing
        (a hook that raises denies)."""
        return self._decide(action, resource)[0]

    def _decide(self, action: str, resource: str) -> Tuple[bool, str, Optional[BaseException]]:
        """Return (allowed, reason, cause). Static denies first, then hooks, then allows."""
        for rule in self._denies:
            if rule.matches(action, resource):
                return False, f"denied by {rule!r}", None
        allowed = False
        for hook in self._hooks:
            try:
                verdict = hook(action, resource)
            except Exception as exc:
                return False, f"hook {_hook_name(hook)} raised {type(exc).__name__}", exc
            if verdict is True:
                allowed = True
            elif verdict is False:
                return False, f"denied by hook {_hook_name(hook)}", None
            elif verdict is not None:
                return False, (f"hook {_hook_name(hook)} returned {type(verdict).__name__}, "
                               "not True/False/None"), None
        if allowed or any(rule.matches(action, resource) for rule in self._allows):
            return True, "allowed", None
        return False, "no rule allows it", None

    def __repr__(self) -> str:
        return "Policy(" + ", ".join(
            repr(r) if isinstance(r, Rule) else _hook_name(r) for r in self._rules) + ")"


def _as_policy(policy: Any, where: str) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, Rule) or callable(policy):
        return Policy(policy)
    raise InvalidOption(f"{where}: expected a Policy, a rule or a hook, not {policy!r}")


# --------------------------------------------------------------------------------------
# Policies in force
# --------------------------------------------------------------------------------------

_default_lock = threading.Lock()
_default: Tuple[Optional[Policy], bool] = (None, False)
_scopes: contextvars.ContextVar[Tuple[Policy, ...]] = contextvars.ContextVar(
    "wsfast_policy_scopes", default=())


def set_policy(policy: Optional[PolicyLike] = None, *, strict: bool = False) -> None:
    """Set the process-wide default policy (every thread); None removes it.

    Args:
        policy: A [`Policy`][wsfast.Policy], a rule or a hook, or None.
        strict: Deny every connection while no policy at all is in force.

    Raises:
        PermissionDenied: Called inside a [`policy_scope`][wsfast.policy_scope] (scoped
            code cannot change it).
        InvalidOption: ``policy`` is not a policy, rule or hook; ``strict`` not a bool.
    """
    global _default
    if not isinstance(strict, bool):
        raise InvalidOption(f"set_policy(): strict must be a bool, not {strict!r}")
    if _scopes.get():
        raise PermissionDenied("set_policy() is not allowed inside a policy_scope",
                               action="set_policy")
    new = (None if policy is None else _as_policy(policy, "set_policy()"), strict)
    with _default_lock:
        _default = new


class _PolicyScope:
    """The context manager returned by :func:`policy_scope` (single use at a time)."""

    __slots__ = ("policy", "_token")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._token: Optional[contextvars.Token] = None

    def __enter__(self) -> Policy:
        if self._token is not None:
            raise RuntimeError("this policy_scope is already active; create one per block")
        self._token = _scopes.set(_scopes.get() + (self.policy,))
        return self.policy

    def __exit__(self, *exc_info: Any) -> None:
        token, self._token = self._token, None
        if token is not None:
            _scopes.reset(token)


def policy_scope(policy: PolicyLike) -> _PolicyScope:
    """``with policy_scope(policy):`` adds ``policy`` for the current thread or task.

    Scopes nest and only narrow: every policy in force must allow. Asyncio tasks created
    inside inherit the scope; threads started inside do not (use
    [`set_policy`][wsfast.set_policy]). Entering a scope object that is already active
    raises RuntimeError; create one per block.

    Args:
        policy: A [`Policy`][wsfast.Policy], a rule or a hook.

    Raises:
        InvalidOption: ``policy`` is None, or not a policy, rule or hook.
    """
    if policy is None:
        raise InvalidOption("policy_scope(): a policy is required")
    return _PolicyScope(_as_policy(policy, "policy_scope()"))


def current_policies() -> Tuple[Tuple[Policy, ...], bool]:
    """The policies in force here (process default first, then scopes) and strict mode."""
    with _default_lock:
        default, strict = _default
    scoped = _scopes.get()
    return ((default,) + scoped if default is not None else scoped), strict


def _check(action: str, resource: str, url: str) -> None:
    policies, strict = current_policies()
    if not policies:
        if strict:
            raise PermissionDenied(
                f"{action} denied for {url}: strict mode and no policy in force",
                action=action, url=url, reason="strict mode, no policy in force")
        return
    for policy in policies:
        allowed, reason, cause = policy._decide(action, resource)
        if not allowed:
            raise PermissionDenied(f"{action} denied for {url}: {reason}",
                                   action=action, url=url, reason=reason,
                                   cause=cause) from cause


def check_connect(url: str) -> Target:
    """Parse ``url`` once and check it against every policy in force.

    Returns the :class:`Target` to dial (and nothing else may be dialled). Raises
    ``InvalidOption`` for a bad URL, ``PermissionDenied`` when ``websocket.connect`` or
    ``websocket.connect.url`` is denied. No DNS, no socket.
    """
    target = parse_url(url)
    _check(CONNECT, "", target.url)
    _check(CONNECT_URL, target.url, target.url)
    return target
