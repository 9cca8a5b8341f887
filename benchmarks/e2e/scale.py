"""Many connections in one event loop: how the cost per message grows with N.

    python -m benchmarks.e2e.scale [--conns 1,10,100,1000] [--total 1000000] [--repeat 3]
        [--clients wsfast-asyncio,wsfast-asyncio-default,picows,picows-default]
        [--out benchmarks/e2e/results/asyncio-scale.json] [--no-pin]

One server process (``benchmarks.e2e.server --scale``, pinned to core 0) serves N
connections at once; every client run is a fresh process pinned to core 1 that opens N
connections in one event loop, then sends each its start message and receives
``total // N`` ticks on each (the same 104-byte ticks as the e2e ``ticks`` scenario,
every connection the whole stream of its own). Measured in the client process:

* aggregate msg/s: N x total//N messages over the time from just before the first start
  message to the moment the last connection has its last message (the closing
  handshakes come after the clock);
* CPU per message: ``resource.getrusage(RUSAGE_SELF)`` user + system seconds over the same
  interval, divided by the messages (CPU / wall below 100% means the client waited);
* RSS per idle connection at N: VmRSS after the first connection (imports and first
  allocations done) and after all N are open and idle (gc.collect, 0.5 s pause), the
  difference divided by N - 1 (not measured at N = 1).

Each run checks the count and the last message of every connection. Within one N the
clients run round-robin, ``--repeat`` times, the starting client rotating; the table gives
medians and the ratio of the medians to picows' core API on uvloop of the same N.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .payloads import tick

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "asyncio-scale.json"
CLIENTS = ["wsfast-asyncio", "wsfast-asyncio-default", "picows", "picows-default"]
LABELS = {
    "wsfast-asyncio": "wsfast.asyncio (`async for msg in ch`, uvloop)",
    "wsfast-asyncio-default": "wsfast.asyncio (`async for msg in ch`, default loop)",
    "picows": "picows core API (uvloop)",
    "picows-default": "picows core API (default loop)",
}
REFERENCE = "picows"
perf = time.perf_counter


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the client process

def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Finish:
    """Counts connections that have all their messages; the last one stops the clock."""

    def __init__(self, conns: int) -> None:
        self.left = conns
        self.t1 = 0.0
        self.cpu1 = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def one(self) -> None:
        self.left -= 1
        if not self.left:
            self.t1 = perf()
            self.cpu1 = cpu_seconds()
            self.done.set_result(None)


class WsfastAsyncio:
    def __init__(self, url: str) -> None:
        from wsfast.asyncio.client import connect
        self._connect = connect
        self.url = url

    async def open(self) -> Any:
        return await self._connect(self.url)

    def prepare(self, conns: List[Any], per: int, finish: Finish) -> List[Any]:
        self.results: List[Any] = []

        async def consume(c: Any, k: int) -> None:
            n = 0
            last = None
            async for msg in c.channel():
                n += 1
                last = msg.data
                if n == per:
                    finish.one()
            self.results[k] = (n, last, c.close_code)

        self.results = [None] * len(conns)
        return [asyncio.ensure_future(consume(c, k)) for k, c in enumerate(conns)]

    async def start(self, conns: List[Any], start: str) -> None:
        for c in conns:
            await c.send(start)

    async def finish(self, conns: List[Any], tasks: List[Any]) -> List[Any]:
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return self.results


class Picows:
    def __init__(self, url: str) -> None:
        import picows
        self.pw = picows
        self.url = url
        TEXT, CLOSE = picows.WSMsgType.TEXT, picows.WSMsgType.CLOSE
        owner = self

        class Listener(picows.WSListener):
            def __init__(self) -> None:
                self.n = 0
                self.last = None
                self.code = None

            def on_ws_frame(self, transport, frame) -> None:
                t = frame.msg_type
                if t == TEXT:
                    self.n += 1
                    self.last = frame.get_payload_as_utf8_text()
                    if self.n == owner.per:
                        owner.finish_.one()
                elif t == CLOSE:
                    self.code = frame.get_close_code()
                    transport.send_close(self.code)

        self.listener = Listener
        self.per = 0
        self.finish_: Optional[Finish] = None

    async def open(self) -> Any:
        return await self.pw.ws_connect(self.listener, self.url)

    def prepare(self, conns: List[Any], per: int, finish: Finish) -> List[Any]:
        self.per = per
        self.finish_ = finish
        return []

    async def start(self, conns: List[Any], start: str) -> None:
        TEXT = self.pw.WSMsgType.TEXT
        for transport, _ in conns:
            transport.send(TEXT, start)

    async def finish(self, conns: List[Any], tasks: List[Any]) -> List[Any]:
        await asyncio.wait_for(asyncio.gather(*(t.wait_disconnected() for t, _ in conns)), 60)
        return [(lst.n, lst.last, lst.code) for _, lst in conns]


IMPLS: Dict[str, Callable[[str], Any]] = {
    "wsfast-asyncio": WsfastAsyncio, "wsfast-asyncio-default": WsfastAsyncio,
    "picows": Picows, "picows-default": Picows,
}


async def worker_main(client: str, url: str, conns: int, per: int, run: str) -> Dict[str, Any]:
    impl = IMPLS[client](url)
    opened = [await impl.open()]
    gc.collect()
    await asyncio.sleep(0.3)
    r0 = rss_kib()
    for _ in range(conns - 1):
        opened.append(await impl.open())
    gc.collect()
    await asyncio.sleep(0.5)
    r1 = rss_kib()
    finish = Finish(conns)
    tasks = impl.prepare(opened, per, finish)
    await asyncio.sleep(0)   # the consumers park on their empty channels
    t0 = perf()
    cpu0 = cpu_seconds()
    await impl.start(opened, f"start:{run}")
    await asyncio.wait_for(finish.done, 600)
    seconds, cpu = finish.t1 - t0, finish.cpu1 - cpu0
    results = await impl.finish(opened, tasks)
    want = tick(per - 1)
    bad = [k for k, (n, last, code) in enumerate(results)
           if n != per or last != want or code != 1000]
    total = conns * per
    out: Dict[str, Any] = {
        "client": client, "conns": conns, "per_conn": per, "messages": total,
        "seconds": seconds, "cpu_seconds": cpu, "msgs_per_s": total / seconds,
        "cpu_ns_per_msg": cpu / total * 1e9, "cpu_over_wall": cpu / seconds,
        "rss_before_kib": r0, "rss_after_kib": r1,
        "rss_kib_per_idle_conn": (r1 - r0) / (conns - 1) if conns > 1 else None,
        "ok": not bad,
        "error": None if not bad else
        f"{len(bad)} connections wrong, first {bad[0]}: {str(results[bad[0]])[:120]}",
    }
    return out


def worker(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, args.conns * 2 + 256))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    coro = worker_main(args.worker, args.url, args.conns, args.per, args.run)
    try:
        if args.worker.endswith("-default"):
            out = asyncio.run(coro)
        else:
            import uvloop
            out = uvloop.run(coro)
    except Exception as exc:   # noqa: BLE001 - reported, not raised: the driver shows error
        out = {"client": args.worker, "conns": args.conns, "ok": False,
               "error": f"{exc.__class__.__name__}: {exc}"}
    print(json.dumps(out), flush=True)
    os._exit(0)


# ---------------------------------------------------------------- the driver

def pin(core: int, cmd: List[str], enabled: bool) -> List[str]:
    return ["taskset", "-c", str(core), *cmd] if enabled else cmd


def run_one(client: str, port: int, conns: int, per: int, run: str, pinned: bool,
            timeout: float) -> Dict[str, Any]:
    cmd = pin(1, [sys.executable, "-m", "benchmarks.e2e.scale", "--worker", client,
                  "--url", f"ws://127.0.0.1:{port}/n/{per}", "--conns", str(conns),
                  "--per", str(per), "--run", run], pinned)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"client": client, "conns": conns, "ok": False, "error": "timeout"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"client": client, "conns": conns, "ok": False,
                "error": f"exit {out.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


def summarize(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    ok = [r for r in runs if r.get("ok")]
    rec: Dict[str, Any] = {"n": len(ok), "runs": len(runs),
                           "errors": [r.get("error") for r in runs if not r.get("ok")]}
    for key in ("msgs_per_s", "cpu_ns_per_msg", "cpu_over_wall", "rss_kib_per_idle_conn"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        if vals:
            rec[key] = statistics.median(vals)
            rec[key + "_range"] = [min(vals), max(vals)]
    return rec


def markdown(data: Dict[str, Any]) -> str:
    res = data["results"]
    conns = sorted(int(n) for n in res)
    clients = [c for c in CLIENTS if any(c in res[str(n)] for n in conns)]
    out = ["Aggregate msg/s, CPU per message (client process, user + system) and CPU / wall; "
           f"ratios to {LABELS[REFERENCE]} at the same N (> 1: wsfast better, for CPU and "
           "RSS that is lower); medians of the runs:\n",
           "| client | N | per conn | msg/s | vs picows | CPU ns/msg | vs picows | CPU/wall "
           "| RSS KiB/idle conn | vs picows |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in clients:
        for n in conns:
            entry = res[str(n)]
            rec, ref = entry.get(c), entry.get(REFERENCE, {})
            if rec is None:
                continue
            if not rec.get("n"):
                out.append(f"| {LABELS[c]} | {n:,} | | error | | | | | | |")
                continue

            def ratio(key: str, lower_better: bool, rec: Dict[str, Any] = rec,
                      ref: Dict[str, Any] = ref) -> str:
                a, b = rec.get(key), ref.get(key)
                if not a or not b:
                    return "–"
                return f"{(b / a if lower_better else a / b):.2f}×"

            rss = rec.get("rss_kib_per_idle_conn")
            out.append(
                f"| {LABELS[c]} | {n:,} | {entry['per_conn']:,} | "
                f"{rec['msgs_per_s'] / 1e6:.2f} M | {ratio('msgs_per_s', False)} | "
                f"{rec['cpu_ns_per_msg']:.0f} | {ratio('cpu_ns_per_msg', True)} | "
                f"{rec['cpu_over_wall']:.0%} | "
                f"{'–' if rss is None else f'{rss:.1f}'} | "
                f"{'–' if rss is None else ratio('rss_kib_per_idle_conn', True)} |")
    out.append("\nCPU per message relative to N = 1 of the same client:\n")
    out.append("| client | " + " | ".join(f"N = {n:,}" for n in conns) + " |")
    out.append("|---|" + "---:|" * len(conns))
    for c in clients:
        base = res[str(conns[0])].get(c, {}).get("cpu_ns_per_msg")
        cells = []
        for n in conns:
            v = res[str(n)].get(c, {}).get("cpu_ns_per_msg")
            cells.append(f"{v / base:.2f}×" if v and base else "–")
        out.append(f"| {LABELS[c]} | " + " | ".join(cells) + " |")
    meta = data["meta"]
    out.append(f"\nCommand: `{meta['command']}` ({meta['date']}); pinned: {meta['pinned']}.")
    return "\n".join(out)


def driver(args: argparse.Namespace, argv: List[str]) -> None:
    conns = [int(n) for n in args.conns.split(",")]
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    for c in clients:
        if c not in IMPLS:
            raise SystemExit(f"unknown client {c!r} (one of {', '.join(IMPLS)})")
    pers = {n: args.total // n for n in conns}
    pinned = not args.no_pin and (os.cpu_count() or 1) >= 2
    cmd = pin(0, [sys.executable, "-m", "benchmarks.e2e.server", "--scenario", "ticks",
                  "--scale", ",".join(str(p) for p in sorted(set(pers.values())))], pinned)
    log("starting the server (building the streams) ...")
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()   # type: ignore[union-attr]
    if not line.startswith("READY "):
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    port = int(line.split()[1])
    results: Dict[str, Any] = {}
    try:
        for n in conns:
            per = pers[n]
            entry = results[str(n)] = {"per_conn": per, "runs": {c: [] for c in clients}}
            for rep in range(args.repeat):
                order = clients[rep % len(clients):] + clients[:rep % len(clients)]
                for c in order:
                    r = run_one(c, port, n, per, f"{n}/{c}/{rep}", pinned, args.timeout)
                    r["loadavg"] = os.getloadavg()[0]
                    entry["runs"][c].append(r)
                    if r.get("ok"):
                        rss = r.get("rss_kib_per_idle_conn")
                        log(f"   N={n:<5} {c:<24} {r['msgs_per_s'] / 1e6:6.2f} M msg/s "
                            f"{r['cpu_ns_per_msg']:6.0f} ns/msg cpu/wall {r['cpu_over_wall']:4.0%}"
                            + ("" if rss is None else f"  {rss:6.1f} KiB/idle conn"))
                    else:
                        log(f"   N={n:<5} {c:<24} ERROR {r.get('error')}")
            for c in clients:
                entry[c] = summarize(entry["runs"][c])
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    data = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc)
                     .isoformat(timespec="seconds"),
                     "command": "python -m benchmarks.e2e.scale " + " ".join(argv),
                     "pinned": pinned, "total": args.total, "repeat": args.repeat},
            "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(markdown(data))
    log(f"results: {args.out}")


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m benchmarks.e2e.scale",
                                 description="N connections in one event loop")
    ap.add_argument("--conns", default="1,10,100,1000", help="connection counts (1,10,100,1000)")
    ap.add_argument("--total", type=int, default=1_000_000,
                    help="messages per run, split evenly over the connections (1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per client and N (3)")
    ap.add_argument("--clients", default=",".join(CLIENTS), help=",".join(CLIENTS))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per run (300)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON")
    ap.add_argument("--no-pin", action="store_true", help="do not use taskset")
    ap.add_argument("--report", metavar="JSON", help="only print the report of a results file")
    # the client process
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--per", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run", default="0", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.conns = int(args.conns)
        worker(args)
        return
    if args.report:
        with open(args.report) as f:
            print(markdown(json.load(f)))
        return
    driver(args, argv)


if __name__ == "__main__":
    main()
