"""Markdown tables and the PNG chart of an end-to-end results file."""

from __future__ import annotations

import statistics
from typing import Any, Dict, List

from .runner import CLIENT_ORDER, LABELS


def fmt(value: float, unit: str) -> str:
    if unit in ("MB/s", "KiB/conn"):
        return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.0f}"


def cell(rec: Dict[str, Any]) -> str:
    status = rec.get("status")
    if status == "n/a":
        return "n/a"
    if rec.get("ratio") is not None:
        mark = "" if status == "ok" else "\\*"
        return f"{rec['ratio']:.2f}×{mark}"
    if rec.get("median") is not None:
        return "–"
    return "error" if rec.get("runs") else "–"


def clients_in(results: Dict[str, Any]) -> List[str]:
    seen = {c for entry in results.values() for c in entry["clients"]}
    return [c for c in CLIENT_ORDER if c in seen]


def server_load(entry: Dict[str, Any]) -> str:
    """How busy the server was: its CPU seconds over the client's measured seconds."""
    loads = []
    raw = []
    for c, rec in entry["clients"].items():
        for r in rec.get("runs", []):
            srv = r.get("server") or {}
            if r.get("ok") and "cpu" in srv and r.get("seconds"):
                (raw if c == "raw" else loads).append(srv["cpu"] / r["seconds"])
    if not loads:
        return ""
    text = (f"Server CPU time over the client's time: at most {max(loads):.0%} "
            f"(median {statistics.median(loads):.0%}) for the WebSocket clients")
    if raw:
        text += f", {max(raw):.0%} for the raw reader"
    return text


# Issue 12's targets for wsfast.asyncio: (scenario, client, reference, at least; None: at most 1)
ASYNCIO_TARGETS = [
    ("ticks", "wsfast-asyncio", "picows", 1.5),
    ("ticks+json", "wsfast-asyncio", "picows", 1.2),
    ("fragmented", "wsfast-asyncio", "picows", 2.0),
    ("echo", "wsfast-asyncio", "picows", 1.1),
    ("send", "wsfast-asyncio", "picows", 3.0),
    ("ticks_deflate", "wsfast-asyncio", "picows-websockets", 3.0),
    ("large", "wsfast-asyncio", "raw", 0.95),
    ("ticks", "wsfast-asyncio-default", "picows", 1.0),
    ("memory", "wsfast-asyncio", "picows", None),
]


def asyncio_targets(results: Dict[str, Any]) -> List[str]:
    """Issue 12's targets, each as the ratio of two medians of the same run."""
    rows = []
    for scenario, client, ref, want in ASYNCIO_TARGETS:
        clients = results.get(scenario, {}).get("clients", {})
        a = clients.get(client, {}).get("median")
        b = clients.get(ref, {}).get("median")
        if not a or not b:
            continue
        ratio = a / b
        goal = f"<= 1× {ref}" if want is None else f">= {want:g}× {ref}"
        met = ratio <= 1.0 if want is None else ratio >= want
        ca = clients.get(client, {}).get("cpu_ns")
        cb = clients.get(ref, {}).get("cpu_ns")
        cpu = f"{cb / ca:.2f}×" if ca and cb else "–"
        rows.append(f"| {scenario} | {LABELS.get(client, client)} | {goal} | {ratio:.2f}× | "
                    f"{cpu} | {'met' if met else 'not met'} |")
    if not rows:
        return []
    return ["Issue 12's targets for wsfast.asyncio (ratio of the medians of this run; by CPU "
            "time: the reference's CPU per message over the client's):\n",
            "| scenario | client | target | ratio | by CPU time | status |",
            "|---|---|---|---:|---:|---|", *rows, ""]


def markdown(data: Dict[str, Any]) -> str:
    meta, results = data["meta"], data["results"]
    out: List[str] = []
    clients = clients_in(results)
    scen = [s for s in results if results[s]["clients"]]
    out.append("Ratios to picows' core API (median of the runs; > 1 is faster, for memory "
               "> 1 uses more; \\* = some runs failed):\n")
    out.append("| client | " + " | ".join(scen) + " |")
    out.append("|---|" + "---:|" * len(scen))
    for c in clients:
        row = [cell(results[s]["clients"].get(c, {})) for s in scen]
        out.append(f"| {LABELS.get(c, c)} | " + " | ".join(row) + " |")
    cpu_scen = [s for s in scen
                if any(rec.get("cpu_ratio") for rec in results[s]["clients"].values())]
    if cpu_scen:
        out.append("\nThe same by the client process's CPU time per message over the timed "
                   "interval (reference CPU time / client CPU time: > 1 is less CPU; robust "
                   "to other work taking the client's core, not to a client that waits):\n")
        out.append("| client | " + " | ".join(cpu_scen) + " |")
        out.append("|---|" + "---:|" * len(cpu_scen))
        for c in clients:
            row = []
            for s in cpu_scen:
                r = results[s]["clients"].get(c, {}).get("cpu_ratio")
                row.append(f"{r:.2f}×" if r else "–")
            out.append(f"| {LABELS.get(c, c)} | " + " | ".join(row) + " |")
    refs = {s: results[s].get("reference") for s in scen}
    alt = [s for s, r in refs.items() if r and r != "picows"]
    if alt:
        out.append(f"\n{', '.join(alt)}: picows' core API has no permessage-deflate, so these "
                   "ratios are to picows.websockets.")
    out.append("")
    out.extend(asyncio_targets(results))
    for s in scen:
        entry = results[s]
        unit = entry["unit"]
        ref = entry.get("reference") or "picows"
        out.append(f"### {s} — {entry['about']} ({entry['count']:,} per run)\n")
        out.append(f"| client | median {unit} | min–max | vs {ref} | runs |")
        out.append("|---|---:|---:|---:|---:|")
        for c in clients:
            rec = entry["clients"].get(c)
            if rec is None:
                continue
            name = LABELS.get(c, c)
            if rec.get("status") == "n/a":
                out.append(f"| {name} | n/a | | | {rec['reason']} |")
                continue
            if rec.get("median") is None:
                err = (rec.get("errors") or ["?"])[0]
                out.append(f"| {name} | error | | | {str(err)[:100]} |")
                continue
            ratio = f"{rec['ratio']:.2f}×" if rec.get("ratio") is not None else "–"
            runs = f"{rec['n']}/{len(rec['runs'])}"
            out.append(f"| {name} | {fmt(rec['median'], unit)} | "
                       f"{fmt(rec['min'], unit)}–{fmt(rec['max'], unit)} | {ratio} | {runs} |")
        load = server_load(entry)
        if load:
            out.append(f"\n{load}.")
        out.append("")
    m = meta["machine"]
    v = meta["versions"]
    out.append(f"Machine: {m['nproc']} cores, {m['cpu']}, Linux {m['kernel']}; "
               f"server pinned to core 0, clients to core 1: {meta['pinned']}.  ")
    out.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".  ")
    v3 = {k: val for k, val in (meta.get("versions_py312") or {}).items()
          if not k.startswith("wsfast")}
    if v3:
        out.append("websocket-rs interpreter: " + ", ".join(f"{k} {val}" for k, val in v3.items())
                   + ".  ")
    out.append(f"Command: `{meta['command']}` ({meta['date']}).")
    for rerun in meta.get("reruns", []):
        out[-1] += "  "
        out.append(f"Re-run: {', '.join(rerun['scenarios'])} with `{rerun['command']}` "
                   f"({rerun['date']}).")
    return "\n".join(out)


def write_chart(data: Dict[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    scen = [s for s in results if results[s]["higher_is_better"] and results[s]["clients"]]
    clients = [c for c in clients_in(results)
               if any(results[s]["clients"].get(c, {}).get("ratio") for s in scen)]
    peak = max((results[s]["clients"][c]["ratio"] for s in scen for c in clients
                if c != "raw" and results[s]["clients"].get(c, {}).get("ratio")), default=10.0)
    top = peak * 2.5     # the raw reader's bars (the server's ceiling) are clipped, with a label
    width = 0.8 / max(1, len(clients))
    fig, ax = plt.subplots(figsize=(max(10, 1.6 * len(scen)), 6), dpi=110)
    cmap = plt.get_cmap("tab20")
    for i, c in enumerate(clients):
        xs, ys = [], []
        for j, s in enumerate(scen):
            ratio = results[s]["clients"].get(c, {}).get("ratio")
            if ratio:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(ratio)
        hatch = "//" if c == "raw" else None
        ax.bar(xs, [min(y, top) for y in ys], width, label=LABELS.get(c, c), color=cmap(i % 20),
               hatch=hatch, edgecolor="black" if c.startswith("wsfast") else None, linewidth=0.6)
        for x, y in zip(xs, ys):
            if y > top:
                ax.text(x, top, f"{y:.0f}×", ha="center", va="bottom", fontsize=6)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylim(top=top * 1.6)
    ax.set_xticks(range(len(scen)))
    labels = []
    for s in scen:
        ref = results[s].get("reference")
        labels.append(s if ref in (None, "picows") else f"{s}\n(vs picows.websockets)")
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("throughput ratio to picows core (log scale; > 1 is faster)")
    meta = data["meta"]
    ax.set_title(f"wsfast end-to-end vs peers — medians of {meta['repeat']} runs, "
                 f"server and client each pinned to one core")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
