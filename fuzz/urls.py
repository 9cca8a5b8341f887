"""URLs: normalisation, the policy match, proxy URLs and ``no_proxy``.

Invariants: ``parse_url`` raises only ``InvalidOption``; normalising twice changes
nothing (``parse_url(t.url) == t``); a rule's pattern is normalised once for all
(``Rule(e, a, rule.resource).resource == rule.resource``); a URL and its normalised form
get the same verdict from every policy (``check_connect``); proxy URL parsing raises
only ``InvalidOption``, ``no_proxy`` matching never raises.
"""

from __future__ import annotations

from wsfast import policy, proxy
from wsfast.errors import InvalidOption, PermissionDenied

ACTIONS = {"u": policy.CONNECT_URL, "c": policy.CONNECT, "w": "websocket.*", "*": "*"}


class Finding(AssertionError):
    """An invariant does not hold."""


def _parse(url: str):
    try:
        return policy.parse_url(url)
    except InvalidOption:
        return None


def _verdict(p, url: str):
    with policy.policy_scope(p):
        try:
            return ("allowed", policy.check_connect(url).url)
        except PermissionDenied as exc:
            return ("denied", exc.details.get("reason"))
        except InvalidOption:
            return ("invalid",)


def one_input(data: bytes) -> None:
    """The input is UTF-8 text (undecodable bytes become U+DC80..U+DCFF, which a URL must
    refuse), one item a line: the URL, then rules ``A<action> pattern`` / ``D<action>
    pattern`` (action u, c, w or *), ``P proxy-url``, ``N no_proxy``. A pattern ``=N`` is
    the first N characters of the normalised URL, ``=N*`` that prefix as a pattern."""
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    url = lines[0]
    target = _parse(url)
    if target is not None:
        again = _parse(target.url)
        if again != target:
            raise Finding(f"normalising twice changes {url!r}: {target!r} then {again!r}")
        if not target.url.isascii():
            raise Finding(f"normalised URL {target.url!r} is not ASCII")
    rules, proxies, no_proxies = [], [], []
    for line in lines[1:9]:
        kind, action, pattern = line[:1], line[1:2], line[3:]
        if kind == "P":
            proxies.append(line[2:])
            continue
        if kind == "N":
            no_proxies.append(line[2:])
            continue
        if kind not in ("A", "D"):
            continue
        if pattern.startswith("=") and target is not None:
            n = pattern[1:].rstrip("*")
            if n.isascii() and n.isdigit():
                pattern = target.url[:int(n)] + ("*" if pattern.endswith("*") else "")
        effect = "allow" if kind == "A" else "deny"
        try:
            rule = policy.Rule(effect, ACTIONS.get(action, action or "*"), pattern)
        except InvalidOption:
            continue
        if policy.Rule(effect, rule.action, rule.resource).resource != rule.resource:
            raise Finding(f"pattern {pattern!r} normalises to {rule.resource!r}, then to another")
        rules.append(rule)
    if target is not None:
        p = policy.Policy(*rules)
        a, b = _verdict(p, url), _verdict(p, target.url)
        if a != b:
            raise Finding(f"{url!r} and its normal form {target.url!r} get different verdicts "
                          f"from {p!r}: {a} and {b}")
    for text in proxies:
        for default in (None, "http"):
            try:
                parsed = proxy.parse_proxy_url(text, default_scheme=default)
            except InvalidOption:
                continue
            if not parsed.display.isascii():
                raise Finding(f"proxy display {parsed.display!r} is not ASCII")
    if target is not None:
        for no_proxy in no_proxies:
            if not isinstance(proxy.proxy_bypassed(target, no_proxy), bool):
                raise Finding("proxy_bypassed did not return a bool")
            environ = {"https_proxy": proxies[0] if proxies else "proxy.test",
                       "ws_proxy": "http://p.test:1", "no_proxy": no_proxy}
            try:
                proxy.select_proxy(target, None, environ)
            except InvalidOption:
                pass
