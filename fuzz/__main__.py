"""``python -m fuzz --minutes N [options] [-- libFuzzer arguments]`` (``make fuzz``).

Runs each target (:data:`fuzz.TARGETS`, or ``--targets a,b``) for N minutes (default 5;
``--seconds S`` for short runs) under atheris, ``--jobs`` of them at a time, each in its
own process: ``python -m fuzz.run TARGET``. Corpora: the checked-in seeds
(``fuzz/corpus/TARGET``, read only) and what the runs found (``OUT/corpus/TARGET``,
kept between runs); crashes, timeouts and OOMs go to ``OUT/artifacts/TARGET/``; logs to
``OUT/logs/TARGET.log``; the figures (executions, coverage, features, corpus, findings)
to ``OUT/summary.json`` and the output. OUT is ``build/fuzz`` unless ``--out``.

``--native auto`` (the default) builds the compiled codec with clang for coverage and
ASan (:mod:`fuzz.native`) and says so; without clang it says that it falls back to the
uninstrumented extension (Python coverage only). ``--native on`` fails instead of
falling back, ``--native off`` does not try.

Exit status 1 when any target had a finding (or could not run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from fuzz import NATIVE_TARGETS, TARGETS, native

ROOT = Path(__file__).resolve().parent.parent
MAX_LEN = {"frames": 4096, "http": 4096, "urls": 512, "options": 8192}
# "cov:" and "ft:" are missing when libFuzzer gets no coverage (gcc's sanitizer runtimes preloaded)
_STATUS = re.compile(r"^#(\d+)\s+(?:INITED|NEW|REDUCE|pulse|DONE|RELOAD)\s+(?:cov: (\d+) ft: (\d+) )?"
                     r"corp: (\d+)/", re.M)
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)


def parse_log(text: str) -> dict:
    """The figures of one libFuzzer run from its output."""
    figures = {}
    rows = _STATUS.findall(text)
    if rows:
        n, cov, ft, corp = rows[-1]
        figures.update(executions=int(n), coverage=int(cov) if cov else None,
                       features=int(ft) if ft else None, corpus=int(corp))
    stats = dict(_STAT.findall(text))
    if "number_of_executed_units" in stats:
        figures["executions"] = int(stats["number_of_executed_units"])
    if "peak_rss_mb" in stats:
        figures["peak_rss_mb"] = int(stats["peak_rss_mb"])
    return figures


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="per target (default 5)")
    ap.add_argument("--seconds", type=float, help="per target, instead of --minutes")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma-separated (default all)")
    ap.add_argument("--jobs", type=int, default=1, help="targets run at a time (default 1)")
    ap.add_argument("--native", choices=("auto", "on", "off"), default="auto",
                    help="instrument the compiled codec with clang (default auto)")
    ap.add_argument("--out", default=str(ROOT / "build" / "fuzz"), help="output directory")
    args = ap.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    out = Path(args.out).resolve()   # also the runs' working directory: the checkout's
    # wsfast must not come first on sys.path when the instrumented one is on PYTHONPATH

    env = dict(os.environ)
    # the checkout last: a wsfast already on PYTHONPATH (fuzz/asan.sh's build) comes first
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    plain_env = dict(env)
    instrumented = False
    if args.native == "off" or not set(targets) & set(NATIVE_TARGETS):
        how = ("not instrumented (--native off): Python coverage only" if args.native == "off"
               else "not needed by these targets")
    else:
        site, how = native.build()
        if site is None:
            if args.native == "on":
                print(f"fuzz: {how}", file=sys.stderr)
                return 1
            how = f"FALLBACK: {how}; Python coverage only, the extension runs uninstrumented"
        else:
            instrumented = True
            env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
            env["LD_PRELOAD"] = native.preload()
            env["ASAN_OPTIONS"] = ":".join(filter(None, [
                "detect_leaks=0", "halt_on_error=1", "abort_on_error=0", env.get("ASAN_OPTIONS")]))
    print(f"fuzz: compiled codec {how}", file=sys.stderr, flush=True)

    pending = list(targets)
    running = {}
    results = {}
    while pending or running:
        while pending and len(running) < max(1, args.jobs):
            name = pending.pop(0)
            corpus = out / "corpus" / name
            artifacts = out / "artifacts" / name
            logs = out / "logs"
            for d in (corpus, artifacts, logs):
                d.mkdir(parents=True, exist_ok=True)
            seeds = ROOT / "fuzz" / "corpus" / name
            cmd = [sys.executable, "-m", "fuzz.run", name, str(corpus)]
            if seeds.is_dir():
                cmd.append(str(seeds))
            cmd += [f"-max_total_time={max(1, int(round(seconds)))}", f"-max_len={MAX_LEN[name]}",
                    "-timeout=60", "-rss_limit_mb=2048", "-print_final_stats=1",
                    f"-artifact_prefix={artifacts}/", *extra]
            log = open(logs / f"{name}.log", "w")
            before = set(os.listdir(artifacts))
            proc = subprocess.Popen(cmd, cwd=out, env=env if name in NATIVE_TARGETS else plain_env,
                                    stdout=log, stderr=subprocess.STDOUT)
            running[name] = (proc, log, before, artifacts, time.monotonic())
            print(f"fuzz: {name}: {seconds:g} s, log {logs / (name + '.log')}", file=sys.stderr, flush=True)
        time.sleep(0.2)
        for name, (proc, log, before, artifacts, started) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[name]
            text = Path(log.name).read_text(errors="replace")
            new = sorted(set(os.listdir(artifacts)) - before)
            figures = parse_log(text)
            figures.update(seconds=round(time.monotonic() - started, 1), returncode=proc.returncode,
                           findings=[str(artifacts / f) for f in new],
                           instrumented=instrumented and name in NATIVE_TARGETS)
            if proc.returncode != 0 and not new:
                figures["error"] = text[-3000:]
            if proc.returncode != 0:
                at = text.rfind("=== Uncaught Python exception")
                tail = text[at:] if at >= 0 else text[-3000:]
                print(f"fuzz: {name}: FINDING (exit {proc.returncode}):\n{tail[:3000]}", file=sys.stderr)
            results[name] = figures
            print(f"fuzz: {name}: {figures.get('executions', 0):,} executions in {figures['seconds']} s, "
                  f"coverage {figures.get('coverage')}, features {figures.get('features')}, "
                  f"corpus {figures.get('corpus')}, findings {len(new)}", file=sys.stderr, flush=True)
    summary = {"native": how, "seconds_per_target": seconds, "targets": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    failed = [n for n, r in results.items() if r["returncode"] != 0]
    print(f"fuzz: {'FINDINGS in ' + ', '.join(failed) if failed else 'no findings'}; "
          f"figures in {out / 'summary.json'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
