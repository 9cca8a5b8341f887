"""The command line: ``python -m wsfast URL`` (an interactive client) and ``python -m wsfast demo``.

Interactive mode works like websocat/wscat: each line typed on stdin is sent as a
message, each message received is printed with its type. Exit status: 0 after a
normal close (EOF on stdin, or the server closed with 1000/1001), 1 for a connection
error or an abnormal end, 2 for a usage error, 130 after Ctrl-C (which closes with
1000 first).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import __version__
from .channels import Channel, after, select
from .client import Client, connect
from .codec import COMPILED
from .constants import BINARY, CLOSE_CODES, TEXT
from .errors import ConnectionClosed, Error, InvalidOption
from .options import parse_duration
from .reconnect import reconnecting

__all__ = ["main"]

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_HEX_SHOWN = 64   # bytes of a binary message shown as hex


# ---------------------------------------------------------------------- argument types

def _duration(text: str) -> Any:
    """A Go duration ("10s", "1m30s") or milliseconds ("1500"); validated, returned as given."""
    value: Any = float(text) if _NUMBER.fullmatch(text) else text
    try:
        parse_duration(value, "duration")
    except InvalidOption as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("option 'duration': ", "")) from None
    return value


def _positive_duration(text: str) -> Any:
    value = _duration(text)
    if parse_duration(value, "duration") is None:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):   # (str.isdigit takes "٣" and "²")
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def _header(text: str) -> Tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected messages per second, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 (as fast as possible) or more")
    return value


def _version() -> str:
    codec = "compiled" if COMPILED else "pure-Python"
    return f"wsfast {__version__} ({codec} codec, Python {sys.version.split()[0]})"


def _client_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wsfast",
        description="Interactive WebSocket client: lines read from stdin are sent, messages "
                    "received are printed. Ctrl-D (EOF) closes normally, Ctrl-C closes with 1000.",
        epilog="Also: 'python -m wsfast demo [--duration S] [--rate N] [--compression M] [--url URL]' "
               "streams prices from a local server in its own process (see 'python -m wsfast demo --help'). "
               "Durations are Go durations ('10s', '1m30s', '250ms') or milliseconds. "
               "Exit status: 0 normal close, 1 connection error or abnormal end, 2 usage, 130 Ctrl-C.")
    p.add_argument("url", help="ws:// or wss:// URL")
    p.add_argument("-H", "--header", action="append", type=_header, default=[], metavar="'NAME: VALUE'",
                   help="extra HTTP header for the handshake (repeatable)")
    p.add_argument("-p", "--protocol", action="append", default=[], metavar="NAME",
                   help="subprotocol to offer (repeatable)")
    p.add_argument("--compression", type=int, choices=(0, 1, 2), default=0,
                   help="permessage-deflate: 0 disabled (default), 1 context takeover, 2 no context")
    p.add_argument("--dial-timeout", type=_duration, metavar="DURATION",
                   help="timeout for DNS + TCP + TLS + upgrade (default 30s)")
    p.add_argument("--read-timeout", type=_duration, metavar="DURATION",
                   help="end the connection when no message arrives for this long (default: none)")
    p.add_argument("--close-timeout", type=_positive_duration, metavar="DURATION",
                   help="how long close waits for the server (default 10s)")
    p.add_argument("--ping-interval", "--ping-every", type=_duration, metavar="DURATION",
                   help="keepalive: ping after this long with nothing received (default 20s; 0: off)")
    p.add_argument("--ping-timeout", type=_duration, metavar="DURATION",
                   help="keepalive: nothing received this long after a ping ends the connection "
                        "(default 20s; 0: never conclude)")
    p.add_argument("--max-redirects", type=_count, metavar="N",
                   help="handshake redirects to follow (default 10; 0: none)")
    p.add_argument("--proxy", metavar="URL",
                   help="proxy: http://, https://, socks4://, socks4a://, socks5:// or socks5h:// "
                        "URL, optionally with user:password@; 'none' for no proxy "
                        "(default: from the environment, https_proxy, no_proxy...)")
    p.add_argument("--reconnect", action="store_true",
                   help="reconnect with backoff when the connection ends (until Ctrl-D or Ctrl-C); "
                        "lines typed while disconnected are dropped")
    p.add_argument("--eof-wait", type=_duration, default="500ms", metavar="DURATION",
                   help="after EOF on stdin, keep printing replies this long before closing "
                        "(default 500ms; 0 closes at once)")
    p.add_argument("--binary", action="store_true",
                   help="send each line as a binary message (UTF-8 bytes) instead of text")
    p.add_argument("--version", action="version", version=_version())
    return p


def _demo_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m wsfast demo",
        description="Stream JSON price ticks from a server started on 127.0.0.1 in a separate "
                    "process (or from --url) and show messages/s, MB/s, latency and the compression "
                    "ratio: the Lua spec's price-stream example (select over the receive channel and "
                    "a keep-alive timer) in Python.")
    p.add_argument("--duration", type=_seconds, default=5.0, metavar="SECONDS",
                   help="how long to stream (default 5)")
    p.add_argument("--rate", type=_rate, default=100_000, metavar="N",
                   help="messages per second the local server sends; 0 = as fast as possible "
                        "(default 100000)")
    p.add_argument("--compression", type=int, choices=(0, 1, 2), default=0,
                   help="permessage-deflate: 0 disabled (default), 1 context takeover, 2 no context")
    p.add_argument("--url", help="connect to this server instead (no local server is started)")
    return p


# ---------------------------------------------------------------------- Ctrl-C

class CtrlC:
    """Turns the first Ctrl-C into a flag (``hit``); a second one raises KeyboardInterrupt.

    Raising KeyboardInterrupt at an arbitrary point of the main thread could land inside
    a library call (a half-written frame, a lock round); with the flag the main loop
    notices the interrupt between calls and closes cleanly. Only in the main thread.
    """

    def __init__(self) -> None:
        self.hit = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


# ---------------------------------------------------------------------- output

def _error_line(err: Error) -> str:
    if err.retryable is None:
        retry = "retryable: unknown"
    else:
        retry = "retryable" if err.retryable else "not retryable"
    return f"error: {type(err).__name__} ({err.kind}, {retry}): {err}"


def _code_name(code: Optional[int]) -> str:
    try:
        return CLOSE_CODES(code).name
    except ValueError:
        return "application" if code is not None and 3000 <= code <= 4999 else "unknown"


def _format(msg: Any) -> str:
    data = msg.data
    if msg.type == "text":
        return f"< text: {data}"
    shown = data[:_HEX_SHOWN].hex()
    more = f"... (+{len(data) - _HEX_SHOWN} bytes)" if len(data) > _HEX_SHOWN else ""
    return f"< binary ({len(data)} bytes): {shown}{more}"


def _info(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- interactive mode

class _Session:
    """The interactive client: a receiver thread, a stdin thread, and the main thread waiting."""

    def __init__(self, client: Client, binary: bool, eof_wait: Optional[float]) -> None:
        self.client = client
        self.binary = binary
        self.eof_wait = eof_wait
        self.ended = Channel(0)           # closed by the receiver when the connection has ended
        self.ended_event = threading.Event()
        self.send_error: Optional[Error] = None

    def receive(self) -> None:
        """Print every message until the connection ends."""
        try:
            for msg in self.client.channel():
                print(_format(msg), flush=True)
        except BrokenPipeError:   # stdout went away (piped into `head`...): close
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self._close()
        finally:
            self.ended.close()
            self.ended_event.set()

    def pump_stdin(self) -> None:
        """Send each stdin line; at EOF close with 1000. Reads fd 0 directly (no buffered lock)."""
        pending = b""
        try:
            while True:
                chunk = os.read(0, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._send(line)
            if pending:
                self._send(pending)
            if self.eof_wait is not None:
                # Let the replies to the last lines arrive (messages received after close()
                # are dropped), unless the connection ends first.
                select(self.ended.case_receive(), after(self.eof_wait * 1000.0).case_receive())
            self._close()
        except ConnectionClosed:
            pass   # the connection ended under us: the receiver reports it
        except Error as err:
            self.send_error = err
            self._close(CLOSE_CODES.INTERNAL_ERROR, "client error")
        except OSError:
            self._close()   # stdin unreadable: treat like EOF

    def _send(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.binary:
            self.client.send(line, BINARY)
        else:
            self.client.send(line.decode("utf-8", "replace"), TEXT)

    def _close(self, code: int = CLOSE_CODES.NORMAL, reason: str = "") -> None:
        try:
            self.client.close(code, reason)
        except ConnectionClosed:
            pass

    def wait(self, ctrl_c: CtrlC) -> bool:
        """Block until the connection ends (False) or Ctrl-C (True)."""
        while not self.ended_event.wait(0.05):
            if ctrl_c.hit:
                return True
        return ctrl_c.hit


def _options(args: argparse.Namespace) -> Dict[str, Any]:
    options: Dict[str, Any] = {"compression": args.compression}
    if args.header:
        options["headers"] = list(args.header)
    if args.protocol:
        options["protocols"] = list(args.protocol)
    for name in ("dial_timeout", "read_timeout", "close_timeout", "ping_interval", "ping_timeout",
                 "max_redirects"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if args.proxy is not None:
        options["proxy"] = False if args.proxy.lower() == "none" else args.proxy
    return options


def _report_end(client: Client, send_error: Optional[Error]) -> int:
    code = client.close_code
    reason = client.close_reason
    text = f"closed: {code} ({_code_name(code)})"
    if reason:
        text += f" {reason!r}"
    _info(text)
    err = send_error or client.error
    if err is not None:
        _info(_error_line(err))
        return 1
    return 0 if code in (CLOSE_CODES.NORMAL, CLOSE_CODES.GOING_AWAY) else 1


def _connected_line(client: Client, what: str) -> str:
    details = []
    if client.proxy:
        details.append(f"through {client.proxy}")
    if client.subprotocol:
        details.append(f"subprotocol {client.subprotocol}")
    if client.extensions:
        details.append(f"extensions {client.extensions}")
    suffix = f" ({'; '.join(details)})" if details else ""
    return f"connected to {client.url}{suffix}; {what}"


def _interactive(args: argparse.Namespace) -> int:
    if args.reconnect:
        return _reconnecting(args)
    try:
        client = connect(args.url, **_options(args))
    except Error as err:
        _info(_error_line(err))
        return 1
    _info(_connected_line(client, "type lines to send, Ctrl-D to close"))

    session = _Session(client, args.binary, parse_duration(args.eof_wait, "eof_wait"))
    receiver = threading.Thread(target=session.receive, name="wsfast-cli-receiver", daemon=True)
    receiver.start()
    reader = threading.Thread(target=session.pump_stdin, name="wsfast-cli-stdin", daemon=True)
    reader.start()
    with CtrlC() as ctrl_c:
        interrupted = session.wait(ctrl_c)
        if interrupted:
            _info("interrupted: closing")
            if not client.closed:
                try:
                    client.close(CLOSE_CODES.NORMAL)
                except ConnectionClosed:
                    pass
    receiver.join()   # close() is bounded by close_timeout, so this ends (a 2nd Ctrl-C too)
    code = _report_end(client, session.send_error)
    return 130 if interrupted else code


class _Current:
    """The client of the connection open now, for the stdin thread (None between
    connections); ``_lock`` guards ``client``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.client: Optional[Client] = None

    def set(self, client: Optional[Client]) -> None:
        with self._lock:
            self.client = client

    def get(self) -> Optional[Client]:
        with self._lock:
            return self.client


def _reconnecting(args: argparse.Namespace) -> int:
    """``--reconnect``: one connection after another (wsfast.reconnecting) until EOF on
    stdin (exit 0), Ctrl-C (130) or an error that is not retried (1)."""
    try:
        clients = reconnecting(args.url, **_options(args))
    except Error as err:
        _info(_error_line(err))
        return 1
    current = _Current()
    binary = args.binary
    eof = threading.Event()

    def pump_stdin() -> None:
        pending = b""
        try:
            while True:
                chunk = os.read(0, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    _send_line(current.get(), line, binary)
            if pending:
                _send_line(current.get(), pending, binary)
        except OSError:
            pass
        eof_wait = parse_duration(args.eof_wait, "eof_wait")
        if eof_wait:
            time.sleep(eof_wait)   # the replies to the last lines
        eof.set()
        clients.close()

    reader = threading.Thread(target=pump_stdin, name="wsfast-cli-stdin", daemon=True)
    reader.start()
    with CtrlC() as ctrl_c:
        def watch() -> None:
            while not ctrl_c.hit and not clients.closed:
                time.sleep(0.05)
            if ctrl_c.hit:
                _info("interrupted: closing")
                clients.close()
        watcher = threading.Thread(target=watch, name="wsfast-cli-ctrl-c", daemon=True)
        watcher.start()
        status = 0
        try:
            for n, client in enumerate(clients, 1):
                current.set(client)
                _info(_connected_line(client, f"connection {n}; type lines to send, Ctrl-D to close"))
                for msg in client.channel():
                    print(_format(msg), flush=True)
                current.set(None)
                if not clients.closed:
                    _report_end(client, None)
                    _info("reconnecting")
        except Error as err:
            _info(_error_line(err))
            status = 1
        finally:
            clients.close()
        watcher.join(1)
    return 130 if ctrl_c.hit else status


def _send_line(client: Optional[Client], line: bytes, binary: bool) -> None:
    if client is None:
        _info("(not connected: line dropped)")
        return
    if line.endswith(b"\r"):
        line = line[:-1]
    try:
        if binary:
            client.send(line, BINARY)
        else:
            client.send(line.decode("utf-8", "replace"), TEXT)
    except ConnectionClosed:
        _info("(connection ended: line dropped)")
    except Error as err:
        _info(_error_line(err))


# ---------------------------------------------------------------------- entry point

def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "demo":
            ns = _demo_parser().parse_args(args[1:])
            from .demo import run  # only here: the demo (and its server process) is not the client

            with CtrlC() as ctrl_c:
                return run(url=ns.url, duration=ns.duration, rate=ns.rate, compression=ns.compression,
                           ctrl_c=ctrl_c)
        return _interactive(_client_parser().parse_args(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:   # e.g. piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
