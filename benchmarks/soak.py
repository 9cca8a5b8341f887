"""Soak: a reconnecting client on a stream of numbered messages through injected faults
(issue 13, item 4).

    python -m benchmarks.soak [--minutes 30 | --seconds S] [--front sync|asyncio]
                              [--loop asyncio|uvloop] [--seed 1] [--json FILE]

(``make soak`` runs it with ``--minutes 30``.) In this process: a websockets server
streams numbered messages (``{"c": connection, "s": number, "p": padding}``, 1-1500
bytes, ``--rate`` a second) from the number each connection's client names in its first
message (``{"from": n}``: the resubscription point); between it and the client, the
fault relay of the test suite (``tests/faultrelay.py``) with a seeded random schedule
(:func:`faultrelay.random_plan`): every connection gets zero to two faults it must
survive (a stall of 1.5 s, past ``ping_interval`` but inside the keepalive bound; a
trickle of 64 bytes every 5 ms for 1.5 s) and then one that ends it (a reset mid-frame;
a silence, half-open, of 6 s; a stall of 4 s), each after a random number of bytes.
The client is ``wsfast.reconnecting`` (or ``wsfast.asyncio.reconnecting``) with
``ping_interval`` 1 s, ``ping_timeout`` 1 s, ``backoff_min`` 100 ms, ``backoff_max`` 1 s.

Checked, and the run fails (exit status 1) otherwise:

* per connection, the first message is the one the client named and each next one
  follows it: nothing lost, duplicated or reordered (so across reconnects too);
* every fault that ends a connection is detected (the client's channel ends) within
  ``ping_interval + ping_timeout`` + 0.5 s of its start, and the stream recovers (the
  next connection's first message) within that bound plus ``backoff_max``; no connection
  ends that the schedule did not end; the faults it must survive, it survives;
* RSS: the last sample at most ``--rss-bound`` MiB (default 8) above the one taken after
  the first tenth of the run (a sample every ``--sample`` seconds, default 60).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import threading
import time
from typing import Any, Dict, List, Optional

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "tests"))

from faultrelay import FaultRelay, random_plan  # noqa: E402

PING_INTERVAL = 1.0
PING_TIMEOUT = 1.0
BACKOFF_MAX = 1.0
SLACK = 0.5
DETECT_BOUND = PING_INTERVAL + PING_TIMEOUT + SLACK
RECOVER_BOUND = DETECT_BOUND + BACKOFF_MAX


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Stream:
    """The websockets server: numbered messages from the resubscription point on."""

    def __init__(self, rate: float) -> None:
        from websockets.sync.server import serve
        self.every = 1.0 / rate
        self.connections = 0
        self._lock = threading.Lock()
        self.server = serve(self.handler, "127.0.0.1", 0, compression=None, ping_interval=None,
                            max_size=None)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="soak-server", daemon=True)
        self.thread.start()

    def handler(self, ws) -> None:
        with self._lock:
            self.connections += 1
            conn = self.connections
        try:
            seq = int(json.loads(ws.recv(timeout=10))["from"])
            next_at = time.monotonic()
            while True:
                pad = "x" * ((seq * 7919) % 1500)
                ws.send(f'{{"c":{conn},"s":{seq},"p":"{pad}"}}')
                seq += 1
                next_at += self.every
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.monotonic()   # (behind: no burst to catch up)
        except Exception:
            pass   # the relay cut it, or the client went

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


class Record:
    """What the client saw, per connection (keyed by the server's connection number)."""

    def __init__(self) -> None:
        self.expected = 0            # the next number the stream owes us
        self.messages = 0
        self.violations: List[str] = []
        self.conns: Dict[int, dict] = {}
        self.rss: List[tuple] = []   # (seconds, KiB)
        self.failed_attempts = 0
        self.errors: Dict[str, int] = {}

    def opened(self) -> dict:
        return {"opened": time.monotonic(), "named": self.expected, "first": None, "end": None,
                "count": 0, "error": None, "conn": None}

    def message(self, cur: dict, data: str) -> None:
        m = json.loads(data)
        now = time.monotonic()
        if cur["conn"] is None:
            cur["conn"] = m["c"]
            cur["first"] = now
            self.conns[m["c"]] = cur
        elif m["c"] != cur["conn"]:
            self.violations.append(f"connection {cur['conn']} got a message of connection {m['c']}")
        s = m["s"]
        if s != self.expected:
            what = "lost" if s > self.expected else "duplicated or reordered"
            if len(self.violations) < 50:
                self.violations.append(f"connection {m['c']}: got {s}, expected {self.expected} ({what})")
        if len(m["p"]) != (s * 7919) % 1500:
            self.violations.append(f"connection {m['c']}: message {s} altered")
        self.expected = s + 1
        self.messages += 1
        cur["count"] += 1

    def ended(self, cur: dict, error: Any) -> None:
        cur["end"] = time.monotonic()
        cur["error"] = type(error).__name__ if error is not None else None
        name = cur["error"] or "none"
        self.errors[name] = self.errors.get(name, 0) + 1


def run_sync(url: str, rec: Record, until: float, sample: float, started: float) -> None:
    import wsfast
    next_sample = started
    with wsfast.reconnecting(url, ping_interval=f"{PING_INTERVAL}s", ping_timeout=f"{PING_TIMEOUT}s",
                             backoff_min="100ms", backoff_max=f"{BACKOFF_MAX}s",
                             dial_timeout="5s", close_timeout="1s") as clients:
        stopper = threading.Timer(max(0.0, until - time.monotonic()), clients.close)
        stopper.daemon = True
        stopper.start()
        try:
            for client in clients:
                rec.failed_attempts += len(clients.failures)
                cur = rec.opened()
                try:
                    client.send(json.dumps({"from": rec.expected}))
                except wsfast.Error:
                    pass   # (the channel tells how it ended)
                for msg in client.channel():
                    rec.message(cur, msg.data)
                    if time.monotonic() >= next_sample:
                        rec.rss.append((round(time.monotonic() - started, 1), rss_kib()))
                        next_sample += sample
                if clients.closed or time.monotonic() >= until:
                    break   # (the run's end: its timer may fire a hair before until)
                rec.ended(cur, client.error)
        finally:
            stopper.cancel()


def run_async(url: str, rec: Record, until: float, sample: float, started: float, loop: str) -> None:
    import wsfast
    import wsfast.asyncio as wa

    async def main() -> None:
        next_sample = started
        async with wa.reconnecting(url, ping_interval=f"{PING_INTERVAL}s", ping_timeout=f"{PING_TIMEOUT}s",
                                   backoff_min="100ms", backoff_max=f"{BACKOFF_MAX}s",
                                   dial_timeout="5s", close_timeout="1s") as clients:
            asyncio.get_running_loop().call_later(max(0.0, until - time.monotonic()), clients.close)
            async for client in clients:
                rec.failed_attempts += len(clients.failures)
                cur = rec.opened()
                try:
                    await client.send(json.dumps({"from": rec.expected}))
                except wsfast.Error:
                    pass
                async for msg in client.channel():
                    rec.message(cur, msg.data)
                    if time.monotonic() >= next_sample:
                        rec.rss.append((round(time.monotonic() - started, 1), rss_kib()))
                        next_sample += sample
                if clients.closed or time.monotonic() >= until:
                    break   # (the run's end: its timer may fire a hair before until)
                rec.ended(cur, client.error)

    if loop == "uvloop":
        import uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())


def analyse(rec: Record, relay: FaultRelay, rss_bound: float) -> dict:
    failures = list(rec.violations)
    by_conn: Dict[int, List[tuple]] = {}
    for number, kind, at, secs in relay.events:
        fatal = kind in ("reset", "silence") or (kind == "stall" and secs > PING_INTERVAL + PING_TIMEOUT)
        label = "long stall" if kind == "stall" and fatal else kind
        by_conn.setdefault(number, []).append((label, at, fatal))
    detect: Dict[str, List[float]] = {}
    recover: List[float] = []
    survived: Dict[str, int] = {}
    numbers = sorted(rec.conns)
    for n in numbers:
        cur = rec.conns[n]
        events = by_conn.get(n, [])
        end = cur["end"]
        for label, at, fatal in events:
            if not fatal and (end is None or at < end - DETECT_BOUND):
                survived[label] = survived.get(label, 0) + 1
        if end is None:
            continue   # the last one, ended by the run's end
        fatal = [(label, at) for label, at, f in events if f]
        if not fatal:
            failures.append(f"connection {n} ended ({cur['error']}) with no fatal fault injected "
                            f"(faults: {[e[0] for e in events]})")
            continue
        label, at = fatal[0]
        d = end - at
        detect.setdefault(label, []).append(d)
        if d > DETECT_BOUND:
            failures.append(f"connection {n}: {label} detected after {d:.2f} s (bound {DETECT_BOUND:g} s)")
        nxt = [m for m in numbers if m > n]
        if nxt and rec.conns[nxt[0]]["first"] is not None:
            r = rec.conns[nxt[0]]["first"] - at
            recover.append(r)
            if r > RECOVER_BOUND:
                failures.append(f"connection {n}: {label}, stream back after {r:.2f} s "
                                f"(bound {RECOVER_BOUND:g} s)")
    rss = rec.rss
    growth = None
    if len(rss) >= 3:
        base = rss[max(1, len(rss) // 10)] if len(rss) > 10 else rss[1]
        growth = (rss[-1][1] - base[1]) / 1024
        if growth > rss_bound:
            failures.append(f"RSS grew {growth:.1f} MiB from {base[0]} s to {rss[-1][0]} s "
                            f"(bound {rss_bound:g} MiB)")

    def stats(xs: List[float]) -> dict:
        if not xs:
            return {"n": 0}
        return {"n": len(xs), "median": round(statistics.median(xs), 3), "max": round(max(xs), 3)}

    return {
        "messages": rec.messages, "connections": len(rec.conns), "failed_attempts": rec.failed_attempts,
        "faults": {k: sum(1 for e in by_conn.values() for x in e if x[0] == k)
                   for k in ("reset", "silence", "long stall", "stall", "trickle")},
        "ended_by": rec.errors, "survived": survived,
        "detect_s": {k: stats(v) for k, v in detect.items()}, "recover_s": stats(recover),
        "rss_kib": rss, "rss_growth_mib": None if growth is None else round(growth, 2),
        "bounds": {"detect_s": DETECT_BOUND, "recover_s": RECOVER_BOUND, "rss_mib": rss_bound},
        "failures": failures,
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=None, help="overrides --minutes")
    ap.add_argument("--front", default="sync", choices=["sync", "asyncio"])
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    ap.add_argument("--rate", type=float, default=300.0, help="messages a second")
    ap.add_argument("--span", type=int, default=1_500_000,
                    help="bytes: each fault comes up to this many bytes after the one before")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sample", type=float, default=60.0, help="seconds between RSS samples")
    ap.add_argument("--rss-bound", type=float, default=8.0, help="MiB")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    logging.disable(logging.CRITICAL)   # websockets logs every cut connection
    stream = Stream(args.rate)
    plan = random_plan(args.seed, span=args.span, short_stall=1.5, long_stall=4.0, silence=6.0,
                       trickle=(64, 0.005, 1.5))
    relay = FaultRelay(stream.port, plan=plan)
    rec = Record()
    started = time.monotonic()
    try:
        if args.front == "sync":
            run_sync(relay.url, rec, started + seconds, args.sample, started)
        else:
            run_async(relay.url, rec, started + seconds, args.sample, started, args.loop)
        rec.rss.append((round(time.monotonic() - started, 1), rss_kib()))
    finally:
        relay.close()
        stream.stop()
    result = analyse(rec, relay, args.rss_bound)
    result.update(front=args.front if args.front == "sync" else f"asyncio ({args.loop})",
                  seconds=round(time.monotonic() - started, 1), seed=args.seed, rate=args.rate)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    shown = {k: v for k, v in result.items() if k != "rss_kib"}
    shown["rss_mib"] = [f"{t:g}s:{k / 1024:.1f}" for t, k in result["rss_kib"]]
    print(json.dumps(shown, indent=1))
    print("FAILED" if result["failures"] else "all within bounds")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
