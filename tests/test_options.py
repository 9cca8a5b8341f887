"""Option parsing: Go durations, defaults, ranges, headers and protocols."""

from __future__ import annotations

import dataclasses
import ssl
import time
from datetime import timedelta

import pytest

from wsfast.constants import COMPRESSION
from wsfast.errors import InvalidOption
from wsfast.handshake import build_request
from wsfast.options import OPTION_NAMES, Options, parse_duration, parse_options

MiB = 1024 * 1024


# -- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize("value, seconds", [
    ("300ms", 0.3),
    ("1.5s", 1.5),
    ("1m30s", 90.0),
    ("2h", 7200.0),
    ("1h2m3s", 3723.0),
    ("10us", 10e-6),
    ("10\u00b5s", 10e-6),   # micro sign
    ("10\u03bcs", 10e-6),   # Greek mu
    ("5ns", 5e-9),
    (".5s", 0.5),
    ("2.s", 2.0),
    ("+1s", 1.0),
    (1500, 1.5),
    (1500.0, 1.5),
    (250, 0.25),
    (timedelta(seconds=2, milliseconds=500), 2.5),
])
def test_duration_forms(value, seconds):
    assert parse_duration(value, "dial_timeout") == pytest.approx(seconds)


def test_duration_strings_are_exact():
    assert parse_duration("300ms", "x") == 0.3
    assert parse_duration("1.1s", "x") == 1.1


@pytest.mark.parametrize("zero", [0, 0.0, "0", "0s", "0ms", timedelta(0)])
def test_zero_duration_means_no_timeout(zero):
    assert parse_duration(zero, "read_timeout") is None


@pytest.mark.parametrize("bad", [
    -1, -0.5, "-1s", "abc", "5x", "5", "", "s", ".s", "1..5s", " 1s", "1s ", "1 s",
    "1S", "\u0663s", True, False, None, [1], float("nan"), float("inf"),
    timedelta(seconds=-1), "9999999h", 10**30,
])
def test_invalid_durations_rejected(bad):
    with pytest.raises(InvalidOption) as info:
        parse_duration(bad, "dial_timeout")
    assert "dial_timeout" in str(info.value)


def test_invalid_option_is_a_value_error():
    with pytest.raises(ValueError):
        parse_duration("nope", "x")


# -- defaults --------------------------------------------------------------------------------


def test_defaults():
    opts = parse_options(None, {})
    assert opts == Options()
    assert opts.headers == () and opts.protocols == ()
    assert opts.dial_timeout == 30.0
    assert opts.read_timeout is None and opts.write_timeout is None
    assert opts.compression is COMPRESSION.DISABLED
    assert opts.compression_threshold == 128
    assert opts.read_limit == 16 * MiB
    assert opts.channel_capacity == 256
    assert opts.ssl is None
    assert opts.close_timeout == 10.0


def test_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Options().read_limit = 1  # type: ignore[misc]


def test_durations_in_options():
    opts = parse_options({"dial_timeout": "10s", "read_timeout": 1500},
                         {"write_timeout": timedelta(seconds=3), "close_timeout": "250ms"})
    assert opts.dial_timeout == 10.0
    assert opts.read_timeout == 1.5
    assert opts.write_timeout == 3.0
    assert opts.close_timeout == 0.25
    assert parse_options(None, {"dial_timeout": 0}).dial_timeout is None


@pytest.mark.parametrize("name", ["dial_timeout", "read_timeout", "write_timeout",
                                  "close_timeout"])
@pytest.mark.parametrize("bad", [None, True, "-1s", "abc"])
def test_bad_duration_options_rejected(name, bad):
    with pytest.raises(InvalidOption) as info:
        parse_options(None, {name: bad})
    assert name in str(info.value)


def test_close_timeout_zero_rejected():
    with pytest.raises(InvalidOption, match="close_timeout"):
        parse_options(None, {"close_timeout": 0})
    with pytest.raises(InvalidOption, match="close_timeout"):
        parse_options(None, {"close_timeout": "0s"})


# -- compression -------------------------------------------------------------------------------


def test_compression_threshold_defaults_depend_on_mode():
    assert parse_options(None, {"compression": 1}).compression_threshold == 128
    assert parse_options(None, {"compression": 2}).compression_threshold == 512
    opts = parse_options({"compression": COMPRESSION.NO_CONTEXT}, {})
    assert opts.compression is COMPRESSION.NO_CONTEXT
    assert opts.compression_threshold == 512
    explicit = parse_options(None, {"compression": 2, "compression_threshold": 0})
    assert explicit.compression_threshold == 0
    assert parse_options(None, {"compression": 1, "compression_threshold": 4096}) \
        .compression_threshold == 4096


def test_compression_values():
    for value, expected in [(0, COMPRESSION.DISABLED), (1, COMPRESSION.CONTEXT_TAKEOVER),
                            (COMPRESSION.NO_CONTEXT, COMPRESSION.NO_CONTEXT)]:
        got = parse_options(None, {"compression": value}).compression
        assert got is expected
    for bad in (3, -1, True, "1", None, 1.5):
        with pytest.raises(InvalidOption, match="compression"):
            parse_options(None, {"compression": bad})


def test_compression_threshold_range():
    assert parse_options(None, {"compression_threshold": 100 * MiB}) \
        .compression_threshold == 100 * MiB
    for bad in (-1, 100 * MiB + 1, True, "128", 1.5):
        with pytest.raises(InvalidOption, match="compression_threshold"):
            parse_options(None, {"compression_threshold": bad})


# -- limits ------------------------------------------------------------------------------------


def test_read_limit():
    assert parse_options(None, {"read_limit": 0}).read_limit == 16 * MiB
    assert parse_options(None, {"read_limit": 1024}).read_limit == 1024
    assert parse_options(None, {"read_limit": 128 * MiB}).read_limit == 128 * MiB
    assert parse_options(None, {"read_limit": 2048.0}).read_limit == 2048  # Lua numbers
    for bad in (128 * MiB + 1, -1, True, "1024", None, 10.5):
        with pytest.raises(InvalidOption, match="read_limit"):
            parse_options(None, {"read_limit": bad})


def test_channel_capacity():
    assert parse_options(None, {"channel_capacity": 1}).channel_capacity == 1
    assert parse_options(None, {"channel_capacity": 10000}).channel_capacity == 10000
    for bad in (0, 10001, -5, True, "10", None):
        with pytest.raises(InvalidOption, match="channel_capacity"):
            parse_options(None, {"channel_capacity": bad})


# -- merging ------------------------------------------------------------------------------------


def test_unknown_option_rejected_with_valid_names():
    with pytest.raises(InvalidOption) as info:
        parse_options({"dial_timout": "1s"}, {})
    msg = str(info.value)
    assert "dial_timout" in msg
    for name in OPTION_NAMES:
        assert name in msg


def test_same_option_in_dict_and_kwargs_rejected():
    with pytest.raises(InvalidOption, match="dial_timeout"):
        parse_options({"dial_timeout": "1s"}, {"dial_timeout": "2s"})


def test_dict_and_kwargs_merge():
    opts = parse_options({"read_limit": 1000}, {"channel_capacity": 5})
    assert opts.read_limit == 1000 and opts.channel_capacity == 5


@pytest.mark.parametrize("bad", ["headers", 5, [("read_limit", 1)]])
def test_options_must_be_a_mapping(bad):
    with pytest.raises(InvalidOption):
        parse_options(bad, {})


def test_option_names_must_be_str():
    with pytest.raises(InvalidOption):
        parse_options({1: 2}, {})


def test_ssl_option():
    ctx = ssl.create_default_context()
    assert parse_options(None, {"ssl": ctx}).ssl is ctx
    assert parse_options(None, {"ssl": None}).ssl is None
    for bad in (True, "verify", object()):
        with pytest.raises(InvalidOption, match="ssl"):
            parse_options(None, {"ssl": bad})


# -- headers -------------------------------------------------------------------------------------


def test_headers_from_dict_and_list_of_pairs():
    opts = parse_options(None, {"headers": {"Authorization": "Bearer t", "X-Id": "1"}})
    assert opts.headers == (("Authorization", "Bearer t"), ("X-Id", "1"))
    opts = parse_options(None, {"headers": [("Cookie", "a=1"), ["Cookie", "b=2"]]})
    assert opts.headers == (("Cookie", "a=1"), ("Cookie", "b=2"))
    assert parse_options(None, {"headers": {}}).headers == ()
    assert parse_options(None, {"headers": [("X", "tab\tand spaces ok")]}).headers


@pytest.mark.parametrize("value", [
    "evil\r\nX-Injected: 1", "a\nb", "a\rb", "nul\x00", "bell\x07", "del\x7f",
])
def test_header_value_control_characters_rejected(value):
    with pytest.raises(InvalidOption, match="headers"):
        parse_options(None, {"headers": {"X-Test": value}})


@pytest.mark.parametrize("name", [
    "", "Bad Name", "X:Y", "X\r\nY", "Ünï", "(x)", 5, None,
])
def test_header_names_must_be_tokens(name):
    with pytest.raises(InvalidOption, match="headers"):
        parse_options(None, {"headers": [(name, "v")]})


@pytest.mark.parametrize("name", [
    "upgrade", "CONNECTION", "Sec-WebSocket-Key", "sec-websocket-version",
    "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol", "Sec-WebSocket-Accept",
    "sec-websocket-future",
])
def test_handshake_headers_rejected(name):
    with pytest.raises(InvalidOption, match="headers.*set by the WebSocket handshake"):
        parse_options(None, {"headers": {name: "x"}})


@pytest.mark.parametrize("name", ["Host", "host", "HOST"])
def test_host_header_rejected_because_the_policy_checks_the_url_host(name):
    with pytest.raises(InvalidOption, match="headers.*security policy") as info:
        parse_options(None, {"headers": [("X-A", "1"), (name, "api.example.com")]})
    assert info.value.details["option"] == "headers"


def test_header_value_must_be_latin1():
    assert parse_options(None, {"headers": {"X-Name": "caf\u00e9"}}).headers == (
        ("X-Name", "caf\u00e9"),)
    with pytest.raises(InvalidOption, match="headers.*Latin-1"):
        parse_options(None, {"headers": {"X-Name": "snow \u2603"}})


@pytest.mark.parametrize("pair", [
    ("X-A", "1"), ("User-Agent", "me/1"), ("Origin", "https://h"), ("X-Name", "caf\u00e9"),
    ("X-Name", "snow \u2603"), ("X-A", "a\r\nb"), ("X-A", "tab\tok"), ("X A", "1"),
    ("Host", "h"), ("Upgrade", "websocket"), ("Sec-WebSocket-Accept", "x"), ("X-A", 1),
])
def test_options_and_build_request_apply_the_same_header_rule(pair):
    def accepted(check):
        try:
            check()
        except InvalidOption:
            return False
        return True

    by_options = accepted(lambda: parse_options(None, {"headers": [pair]}))
    by_request = accepted(lambda: build_request(host_header="h", resource="/", key="k",
                                                headers=[pair]))
    assert by_options == by_request


@pytest.mark.parametrize("bad", [
    "X-A: 1", b"x", 5, [("only-name",)], [("a", "b", "c")], ["ab"], {"X-A": 1},
    {"X-A": b"bytes"}, {"X-A": None},
])
def test_malformed_headers_rejected(bad):
    with pytest.raises(InvalidOption, match="headers"):
        parse_options(None, {"headers": bad})


# -- protocols -----------------------------------------------------------------------------------


def test_protocols():
    assert parse_options(None, {"protocols": ["graphql-ws"]}).protocols == ("graphql-ws",)
    assert parse_options(None, {"protocols": ("a", "b.v2")}).protocols == ("a", "b.v2")
    assert parse_options(None, {"protocols": []}).protocols == ()


@pytest.mark.parametrize("bad", [
    "graphql-ws",             # a single str is not split
    ["a", "a"],               # duplicates
    [""],                     # empty
    ["has space"],
    ["a,b"],
    [5],
    None,
    {"a": 1},
])
def test_invalid_protocols_rejected(bad):
    with pytest.raises(InvalidOption, match="protocols"):
        parse_options(None, {"protocols": bad})


# What the fuzzing work found (docs/reliability.md); each failed before its fix.

@pytest.mark.timeout(10)
def test_durations_with_thousands_of_digits():
    # int() refuses more than 4,300 digits: that was a ValueError, not an InvalidOption
    start = time.perf_counter()
    for text in ("1" * 5000 + "s", "9" * 20 + "ns", "1" * 4301 + ".5h"):
        with pytest.raises(InvalidOption, match="too large"):
            parse_duration(text, "dial_timeout")
    assert parse_duration("0" * 5000 + "1s", "dial_timeout") == 1.0
    assert parse_duration("1." + "0" * 5000 + "s", "dial_timeout") == 1.0
    assert parse_duration("0." + "9" * 5000 + "s", "dial_timeout") == 0.999999999   # truncated
    assert parse_duration("0." + "0" * 4999 + "1h", "dial_timeout") is None          # under 1 ns
    assert time.perf_counter() - start < 1.0


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ["ms" * 40 + "x", "ms" * 40, "m" * 5000, "s" * 5000 + "1", ".ms"])
def test_units_without_numbers_fail_at_once(text):
    # the number of each part was optional in the pattern, so "msms...x" backtracked 2^n
    # ways ("ms" or "m" + "s" at every pair): 2.4 s for 20 pairs before the fix
    start = time.perf_counter()
    with pytest.raises(InvalidOption, match="invalid duration"):
        parse_duration(text, "dial_timeout")
    assert time.perf_counter() - start < 0.5


def test_long_durations_are_shortened_in_the_error():
    with pytest.raises(InvalidOption) as info:
        parse_duration("1" * 5000 + "x", "dial_timeout")
    assert len(str(info.value)) < 200
