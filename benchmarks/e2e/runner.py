"""Run the end-to-end benchmark: servers, clients, repeats, report.

    python -m benchmarks.e2e [--repeat 5] [--quick] [--scenarios ticks,echo] [--clients wsfast,picows]

For each scenario one server process is started (pinned to core 0) and every client run
is a fresh process pinned to core 1; clients are interleaved round-robin within each
repeat (the starting client rotates). Results: a markdown report on stdout, JSON in
benchmarks/e2e/results/latest.json, a chart in docs/bench_e2e.png.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .payloads import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "latest.json"
DEFAULT_CHART = ROOT / "docs" / "bench_e2e.png"
DEFAULT_VENV312 = ROOT / "build" / "bench-venv312"

CLIENT_ORDER = [
    "wsfast", "wsfast-10k", "wsfast-receive", "wsfast-pure",
    "wsfast-asyncio", "wsfast-asyncio-receive", "wsfast-asyncio-default",
    "wsfast-asyncio-receive-default",
    "picows", "picows-default", "picows-websockets", "picows-websockets-default",
    "aiohttp", "aiohttp-default", "websockets-sync", "websockets-asyncio",
    "websockets-asyncio-default", "websocket-client", "websocket-rs",
    "websocket-rs-async", "raw",
]
# The asyncio clients of issue 12 and their peers, each on uvloop and on the default loop
# (python -m benchmarks.e2e --clients asyncio).
ASYNCIO_CLIENTS = [
    "wsfast-asyncio", "wsfast-asyncio-receive", "wsfast-asyncio-default",
    "wsfast-asyncio-receive-default", "picows", "picows-default", "picows-websockets",
    "picows-websockets-default", "aiohttp", "aiohttp-default", "websockets-asyncio",
    "websockets-asyncio-default", "raw",
]
# The clients that run without --clients: the sync table as before (the asyncio ones by name)
DEFAULT_CLIENTS = [c for c in CLIENT_ORDER
                   if not c.startswith("wsfast-asyncio") and not c.endswith("-default")]
PY312_CLIENTS = {"websocket-rs", "websocket-rs-async"}
LABELS = {
    "wsfast": "wsfast (compiled, `for msg in ch`)",
    "wsfast-10k": "wsfast (compiled, `for msg in ch`, channel_capacity=10000)",
    "wsfast-receive": "wsfast (compiled, `ch.receive()`)",
    "wsfast-pure": "wsfast (pure Python)",
    "wsfast-asyncio": "wsfast.asyncio (`async for msg in ch`, uvloop)",
    "wsfast-asyncio-receive": "wsfast.asyncio (`await ch.receive()`, uvloop)",
    "wsfast-asyncio-default": "wsfast.asyncio (`async for msg in ch`, default loop)",
    "wsfast-asyncio-receive-default": "wsfast.asyncio (`await ch.receive()`, default loop)",
    "picows": "picows core API (uvloop)",
    "picows-default": "picows core API (default loop)",
    "picows-websockets": "picows.websockets API (uvloop)",
    "picows-websockets-default": "picows.websockets API (default loop)",
    "aiohttp": "aiohttp (uvloop)",
    "aiohttp-default": "aiohttp (default loop)",
    "websockets-sync": "websockets sync",
    "websockets-asyncio": "websockets asyncio (uvloop)",
    "websockets-asyncio-default": "websockets asyncio (default loop)",
    "websocket-client": "websocket-client",
    "websocket-rs": "websocket-rs sync (Py 3.12)",
    "websocket-rs-async": "websocket-rs async (Py 3.12, uvloop)",
    "raw": "raw socket reader (no WS parsing)",
}
DEFLATE = ("ticks_deflate", "ticks_deflate_nct")
NOT_APPLICABLE = {
    **{(c, s): "picows' core API does not implement permessage-deflate"
       for s in DEFLATE for c in ("picows", "picows-default")},
    **{("websocket-client", s): "websocket-client has no permessage-deflate" for s in DEFLATE},
    **{("websocket-rs", s): "websocket-rs' sync client has no compression option" for s in DEFLATE},
    ("websocket-rs-async", "ticks_deflate"):
        "websocket-rs offers only `server_no_context_takeover; client_no_context_takeover`: "
        "the server may not keep its context",
    ("raw", "ticks+json"): "the raw reader parses nothing",
    ("raw", "memory"): "not a WebSocket client",
}
QUICK_FACTOR_NOTE = "--quick: 1 repeat, about 1/10 of the messages"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- environment

def find_py312(path: Optional[str], setup: bool) -> tuple:
    """(interpreter path or None, reason) for the websocket-rs clients (Python >= 3.12)."""
    if path:
        return (path, "") if os.path.exists(path) else (None, f"{path} not found")
    py = DEFAULT_VENV312 / "bin" / "python"
    if py.exists():
        return str(py), ""
    cands = [sys.executable] if sys.version_info >= (3, 12) else []
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[234]*/bin/python")))
    cands += [shutil.which(f"python3.{v}") or "" for v in (12, 13, 14)]
    base = next((c for c in cands if c and works(c)), None)
    if base is None:
        return None, "websocket-rs needs Python >= 3.12 and none was found"
    if not setup:
        return None, f"no {py} (run with --setup-py312 to create it from {base})"
    log(f"creating {DEFAULT_VENV312} from {base} for websocket-rs ...")
    try:
        # A half-made venv or a link to one that is gone would make `venv` fail on mkdir.
        if DEFAULT_VENV312.is_symlink() or DEFAULT_VENV312.is_file():
            DEFAULT_VENV312.unlink()
        elif DEFAULT_VENV312.exists():
            shutil.rmtree(DEFAULT_VENV312)
        subprocess.run([base, "-m", "venv", str(DEFAULT_VENV312)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "websocket-rs", "orjson", "uvloop"],
                       check=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        return None, f"could not install websocket-rs: {exc}"
    return str(py), ""


def works(python: str) -> bool:
    """A usable Python >= 3.12 (a pyenv shim for a version not selected fails here)."""
    try:
        return subprocess.run([python, "-c", "import sys, venv; assert sys.version_info >= (3, 12)"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def versions(python: str) -> Dict[str, str]:
    try:
        out = subprocess.run([python, "-m", "benchmarks.e2e.client", "--versions"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as exc:   # noqa: BLE001 - informative only
        return {"error": repr(exc)}


def machine() -> Dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "platform": platform.platform()}


# ---------------------------------------------------------------- running

class Pinning:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2
        if enabled and not self.enabled:
            log("warning: taskset or a second core is missing: running unpinned")

    def wrap(self, core: int, cmd: List[str]) -> List[str]:
        return ["taskset", "-c", str(core), *cmd] if self.enabled else cmd


def start_server(scenario: str, count: int, logfile: str, pin: Pinning) -> tuple:
    cmd = pin.wrap(0, [sys.executable, "-m", "benchmarks.e2e.server", "--scenario", scenario,
                       "--count", str(count), "--log", logfile])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"server for {scenario} did not start: {line!r}")
    return proc, int(line.split()[1])


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_client(client: str, scenario: str, count: int, port: int, run_id: str, python: str,
               pin: Pinning, timeout: float) -> Dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WSFAST_PURE_PYTHON", None)
    if client == "wsfast-pure":
        env["WSFAST_PURE_PYTHON"] = "1"
    cmd = pin.wrap(1, [python, "-m", "benchmarks.e2e.client", "--client", client,
                       "--scenario", scenario, "--count", str(count),
                       "--url", f"ws://127.0.0.1:{port}/", "--run", run_id])
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timeout: no result within {timeout:g} s (hang?)"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"ok": False, "error": f"exit {out.returncode}, no result: {' | '.join(tail)}"}
    res = json.loads(lines[-1])
    res["process_seconds"] = time.perf_counter() - t0
    return res


def metric(scenario: str, res: Dict[str, Any]) -> float:
    sc = SCENARIOS[scenario]
    if sc.kind == "memory":
        return res["rss_kib_per_conn"]
    if sc.unit == "MB/s":
        return res["bytes"] / res["seconds"] / 1e6
    return res["messages"] / res["seconds"]


def read_server_log(path: str) -> Dict[str, dict]:
    out = {}
    try:
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                run = rec.get("run", "")
                if run.startswith("start:"):
                    out[run[len("start:"):]] = rec
    except OSError:
        pass
    return out


def run_all(args: argparse.Namespace) -> Dict[str, Any]:
    scenarios = [s for s in SCENARIOS if s in args.scenarios]
    clients = [c for c in CLIENT_ORDER if c in args.clients]
    pin = Pinning(not args.no_pin)
    py312, py312_reason = (None, "")
    if PY312_CLIENTS & set(clients):
        py312, py312_reason = find_py312(args.py312, args.setup_py312)
        if py312 is None:
            log(f"websocket-rs clients: n/a ({py312_reason})")
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.e2e " + " ".join(args.argv),
        "repeat": args.repeat, "quick": args.quick, "pinned": pin.enabled,
        "machine": machine(), "versions": versions(sys.executable),
        "versions_py312": ({k: v for k, v in versions(py312).items() if not k.startswith("wsfast")}
                           if py312 else {"n/a": py312_reason}),
    }
    results: Dict[str, Any] = {}
    tmp = tempfile.mkdtemp(prefix="wsfast-e2e-")
    for scenario in scenarios:
        sc = SCENARIOS[scenario]
        count = args.count or (sc.quick if args.quick else sc.count)
        entry = results[scenario] = {
            "count": count, "unit": sc.unit, "about": sc.about,
            "higher_is_better": sc.higher_is_better, "command": meta["command"],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "clients": {}}
        active = []
        for c in clients:
            reason = NOT_APPLICABLE.get((c, scenario))
            if reason is None and c in PY312_CLIENTS and py312 is None:
                reason = py312_reason
            if reason:
                entry["clients"][c] = {"status": "n/a", "reason": reason, "runs": []}
            else:
                entry["clients"][c] = {"runs": []}
                active.append(c)
        if not active:
            continue
        server_log = os.path.join(tmp, f"{scenario}.log")
        log(f"== {scenario}: {sc.about}; {count} per run; building the stream ...")
        proc, port = start_server(scenario, count, server_log, pin)
        try:
            for rep in range(args.repeat):
                order = active[rep % len(active):] + active[:rep % len(active)]
                for c in order:
                    run_id = f"{scenario}/{c}/{rep}"
                    python = py312 if c in PY312_CLIENTS else sys.executable
                    res = run_client(c, scenario, count, port, run_id, python, pin, args.timeout)
                    res["run"] = run_id
                    res["loadavg"] = os.getloadavg()[0]
                    if res.get("ok"):
                        res["value"] = metric(scenario, res)
                        log(f"   {run_id:<40} {res['value']:>14,.1f} {sc.unit}")
                    else:
                        log(f"   {run_id:<40} ERROR {res.get('error')}")
                    entry["clients"][c]["runs"].append(res)
        finally:
            stop_server(proc)
        server = read_server_log(server_log)
        for c in active:
            for res in entry["clients"][c]["runs"]:
                srv = server.get(res["run"])
                if srv:
                    res["server"] = {k: srv[k] for k in ("wall", "cpu", "offer", "extension", "error")
                                     if k in srv}
        summarize(entry)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"meta": meta, "results": results}


def summarize(entry: Dict[str, Any]) -> None:
    for rec in entry["clients"].values():
        if rec.get("status") == "n/a":
            continue
        values = [r["value"] for r in rec["runs"] if r.get("ok")]
        errors = [r.get("error") for r in rec["runs"] if not r.get("ok")]
        if errors:
            rec["errors"] = errors
        if values:
            rec.update(status="ok" if not errors else "partial", median=statistics.median(values),
                       min=min(values), max=max(values), n=len(values))
        else:
            rec["status"] = "error"
        # the client process's CPU time (all threads) per message over the timed interval:
        # unlike the clock, not stretched when other work on the machine takes the core
        cpu = [r["cpu_seconds"] / r["messages"] * 1e9 for r in rec["runs"]
               if r.get("ok") and r.get("cpu_seconds") and r.get("messages")]
        if cpu:
            rec["cpu_ns"] = statistics.median(cpu)
    ref_name = None
    for cand in ("picows", "picows-websockets"):
        if entry["clients"].get(cand, {}).get("median"):
            ref_name = cand
            break
    entry["reference"] = ref_name
    if ref_name:
        ref = entry["clients"][ref_name]["median"]
        ref_cpu = entry["clients"][ref_name].get("cpu_ns")
        for rec in entry["clients"].values():
            if rec.get("median") is not None:
                rec["ratio"] = rec["median"] / ref
            if ref_cpu and rec.get("cpu_ns"):
                rec["cpu_ratio"] = ref_cpu / rec["cpu_ns"]


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m benchmarks.e2e",
                                 description="End-to-end WebSocket client benchmark")
    ap.add_argument("--repeat", type=int, default=5, help="runs per client and scenario (5)")
    ap.add_argument("--quick", action="store_true", help=QUICK_FACTOR_NOTE)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated: " + ",".join(SCENARIOS))
    ap.add_argument("--clients", default=",".join(DEFAULT_CLIENTS),
                    help="comma-separated, or 'asyncio' for the asyncio clients on both loops "
                         "(default: the sync table's clients): " + ",".join(CLIENT_ORDER))
    ap.add_argument("--count", type=int, default=None, help="override the per-run count")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per client run (300)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON")
    ap.add_argument("--chart", default=str(DEFAULT_CHART), help="PNG chart ('' to skip)")
    ap.add_argument("--py312", default=None,
                    help=f"Python >= 3.12 with websocket-rs (default {DEFAULT_VENV312}/bin/python)")
    ap.add_argument("--setup-py312", action="store_true",
                    help=f"create {DEFAULT_VENV312} with websocket-rs if it is missing")
    ap.add_argument("--no-pin", action="store_true", help="do not use taskset")
    ap.add_argument("--merge", action="store_true",
                    help="replace only the scenarios run now in an existing --out file")
    ap.add_argument("--report", metavar="JSON", help="only print the report of a results file")
    args = ap.parse_args(argv)
    args.argv = argv
    # SIGTERM unwinds like Ctrl-C: the finally blocks stop the server and the running client
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from .report import markdown, write_chart
    if args.report:
        with open(args.report) as f:
            data = json.load(f)
        print(markdown(data))
        return
    if args.quick:
        args.repeat = 1 if "--repeat" not in " ".join(argv) else args.repeat
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if "asyncio" in args.clients:
        i = args.clients.index("asyncio")
        args.clients[i:i + 1] = [c for c in ASYNCIO_CLIENTS if c not in args.clients]
    for s in args.scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}")
    for c in args.clients:
        if c not in CLIENT_ORDER:
            ap.error(f"unknown client {c!r}")
    data = run_all(args)
    if args.merge and os.path.exists(args.out):
        # re-run scenarios replace theirs; the others stay as they were
        with open(args.out) as f:
            old = json.load(f)
        merged = {s: data["results"].get(s) or old["results"][s]
                  for s in SCENARIOS if s in data["results"] or s in old["results"]}
        reruns = old["meta"].get("reruns", []) + [
            {"command": data["meta"]["command"], "date": data["meta"]["date"],
             "scenarios": list(data["results"])}]
        data = {"meta": {**old["meta"], "reruns": reruns}, "results": merged}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    print(markdown(data))
    if args.chart:
        try:
            write_chart(data, args.chart)
            log(f"chart: {args.chart}")
        except ImportError:
            log("matplotlib is not installed: no chart")
    log(f"results: {args.out}")
