"""Turns one scripts/bench run into the BENCHMARKS.md section and the SVG bar chart.

Usage: python bench/report.py WORKDIR BENCHMARKS.md CHART.svg

WORKDIR holds what scripts/bench wrote:
  meta.tsv      key<TAB>value lines (machine, versions, settings, load averages, runtime)
  results.tsv   server<TAB>scenario<TAB>wrk JSON or empty<TAB>reason when there is no figure
  inprocess.jsonl  one bench/inprocess.py JSON line per round of the Flask runs (measured just
                  before the round); absent if none ran
  idle.tsv      runtime<TAB>bench/idle_rss.py JSON or empty<TAB>reason when there is no figure
The section between `<!-- bench:start -->` and `<!-- bench:end -->` is replaced (appended with
its heading when the markers are missing). Standard library only: no plotting package.
"""

import html
import json
import os
import sys

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
HEADING = "## End to end: wsgi-serve beside gunicorn and granian (`scripts/bench`)"

SERVERS = ["wsgi-serve", "wsgi-serve-smol", "wsgi-serve-tokio", "gunicorn-sync",
           "gunicorn-gthread", "granian"]
ASYNC = ["wsgi-serve-smol", "wsgi-serve-tokio"]
COLORS = {
    "wsgi-serve": "#d9480f",
    "wsgi-serve-smol": "#f08c00",
    "wsgi-serve-tokio": "#e8590c",
    "gunicorn-sync": "#adb5bd",
    "gunicorn-gthread": "#495057",
    "granian": "#1c7ed6",
}
# scenario id, label, wrk load, the wsgi-serve ÷ granian target
SCENARIOS = [
    ("hello_ka", "hello, keep-alive", "GET /, c=32", 1.6),
    ("hello_close", "hello, `Connection: close`", "GET /, c=8", 1.3),
    ("big", "1 MiB response", "GET /, c=8", 1.3),
    ("upload", "64 KiB upload", "POST 65,536 B, c=8", 1.3),
    ("flask", "Flask JSON route", "GET /json, c=32", 1.3),
]
INPROC_TARGET = 0.80
# Issue 5: each async runtime on hello keep-alive, against granian and against --runtime std.
ASYNC_GRANIAN_TARGET = 1.3
ASYNC_STD_TARGET = 0.9
IDLE_TARGET_BYTES = 16 * 1024


def read_meta(path):
    meta = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            meta[key] = value
    return meta


def read_results(path):
    """One entry per (server, scenario): the median of its measured runs by requests/s, with
    the range of all its runs and their rates in run order (`series`, `None` for a run without a
    figure); or the reason when no run gave a figure."""
    runs, reasons, series = {}, {}, {}
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            server, scenario, data, reason = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
            key = (server, scenario)
            if not data:
                reasons.setdefault(key, reason)
                series.setdefault(key, []).append(None)
                continue
            wrk = json.loads(data)
            seconds = wrk["duration_us"] / 1e6
            good = wrk["requests"] - wrk["status_errors"]
            wrk.update(rps=good / seconds if seconds > 0 else 0.0,
                       socket_errors=wrk["connect_errors"] + wrk["read_errors"]
                       + wrk["write_errors"] + wrk["timeouts"])
            runs.setdefault(key, []).append(wrk)
            series.setdefault(key, []).append(wrk["rps"])
    results = {}
    for key in set(runs) | set(reasons):
        measured = sorted(runs.get(key, []), key=lambda r: r["rps"])
        if not measured:
            results[key] = {"reason": reasons[key]}
            continue
        entry = dict(lower_median(measured), reason="")
        entry.update(runs=len(measured), low=measured[0]["rps"], high=measured[-1]["rps"],
                     series=series[key])
        results[key] = entry
    return results


def lower_median(ordered):
    """The middle item of a non-empty sorted list; the lower of the two middle ones of an even
    count, so that a figure is always one that was measured."""
    return ordered[(len(ordered) - 1) // 2]


def fmt_rps(value):
    return f"{value:,.0f}"


def fmt_ms(us):
    ms = us / 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"


class Notes:
    """Numbered footnotes for n/a cells and error counts."""

    def __init__(self):
        self.items = []

    def add(self, text):
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def cell(results, server, scenario, notes, labels):
    entry = results.get((server, scenario))
    if entry is None:
        return "n/a " + notes.add(f"{labels[server]}: not run"), None
    if "rps" not in entry:
        return "n/a " + notes.add(f"{labels[server]}: {entry['reason']}"), None
    text = fmt_rps(entry["rps"])
    errors = []
    if entry["status_errors"]:
        errors.append(f"{entry['status_errors']:,} non-2xx responses (not counted)")
    if entry["socket_errors"]:
        errors.append(
            f"socket errors: connect {entry['connect_errors']}, read {entry['read_errors']}, "
            f"write {entry['write_errors']}, timeout {entry['timeouts']}")
    if errors:
        text += " " + notes.add(f"{labels[server]}, {scenario}: " + "; ".join(errors))
    return text, entry["rps"]


def async_section(results, idle):
    """The async runtimes' targets (issue 5): hello keep-alive against granian and against
    `--runtime std`, and the RSS per idle keep-alive connection at 10,000 connections."""
    lines = ["The async runtimes (issue 5): hello with keep-alive, c=32, and memory per idle "
             "connection:", "",
             "| runtime | hello keep-alive req/s | ÷ granian (target ≥ 1.3×) | ÷ std "
             "(target ≥ 0.9×) | RSS per idle connection at 10,000 (target ≤ 16 KiB) |",
             "|---|---:|---:|---:|---:|"]
    verdicts = []
    granian = results.get(("granian", "hello_ka"), {}).get("rps")
    std = results.get(("wsgi-serve", "hello_ka"), {}).get("rps")

    def ratio(ours, theirs, target):
        if ours is None or not theirs:
            return "n/a", None
        r = ours / theirs
        return f"{r:.2f}× ({'met' if r >= target else 'not met'})", r >= target

    for server, runtime in [("wsgi-serve", "std")] + [(a, a.split("-")[-1]) for a in ASYNC]:
        rps = results.get((server, "hello_ka"), {}).get("rps")
        g_text, g_ok = ratio(rps, granian, ASYNC_GRANIAN_TARGET)
        s_text, s_ok = ratio(rps, std, ASYNC_STD_TARGET) if server != "wsgi-serve" else ("—", None)
        entry = idle.get(runtime, {})
        if "per_connection_bytes" in entry:
            per = entry["per_connection_bytes"]
            ok = per <= IDLE_TARGET_BYTES
            idle_text = (f"{per:,} B ({entry['before_kib']:,} → {entry['held_kib']:,} KiB; "
                         f"{'met' if ok else 'not met'})")
        else:
            ok, idle_text = None, "n/a: " + entry.get("reason", "not measured")
        lines.append(f"| {runtime} | {fmt_rps(rps) if rps else 'n/a'} | {g_text} | {s_text} | "
                     f"{idle_text} |")
        if server != "wsgi-serve":
            verdicts += [g_ok, s_ok]
        verdicts.append(ok)
    met = sum(1 for v in verdicts if v)
    lines += ["", f"**Async targets met: {met} of {len(verdicts)}** (medians). The idle figure is "
              "`bench/idle_rss.py`: the growth of the server's resident memory (supervisor and "
              "worker) after 10,000 connections each served one request and were kept alive, "
              "divided by 10,000."]
    return "\n".join(lines)


def read_idle(path):
    idle = {}
    if not os.path.exists(path):
        return idle
    with open(path, encoding="utf-8") as f:
        for line in f:
            runtime, data, reason = (line.rstrip("\n").split("\t") + ["", ""])[:3]
            idle[runtime] = json.loads(data) if data else {"reason": reason}
    return idle


def build_section(meta, results, inproc, chart_rel, idle):
    labels = {
        "wsgi-serve": f"wsgi-serve (`--runtime std`, {meta['threads']} threads)",
        "wsgi-serve-smol": "wsgi-serve (`--runtime smol`)",
        "wsgi-serve-tokio": "wsgi-serve (`--runtime tokio`)",
        "gunicorn-sync": "gunicorn sync",
        "gunicorn-gthread": f"gunicorn gthread ({meta['threads']} threads)",
        "granian": f"granian WSGI ({meta['threads']} blocking threads)",
    }
    notes = Notes()
    for server in SERVERS:  # a server that could not be installed or built at all
        if meta.get(f"unavailable.{server}"):
            notes.add(f"{labels[server]}: {meta[f'unavailable.{server}']}")
    lines = []
    out = lines.append
    out(START)
    out("")
    out(f"Generated by `scripts/bench` on {meta['date']}; rerun it to update this section. "
        "Measurements, not assertions, on a shared 2-vCPU machine.")
    out("")
    out(f"One worker process each, the same apps (`bench/apps/`) and the same wrk load: "
        f"{meta.get('runs', '1')} runs of `wrk -t2 -c<C> -d{meta['duration']}s --timeout 5s` "
        f"after a {meta['warmup']} s warm-up run, to 127.0.0.1, all servers up at once for each "
        f"app (each on its own port) and the runs round-robin over them. wrk runs on the same "
        f"2 vCPUs as the servers. Each figure is the median run's requests/s (2xx responses "
        f"only); the range of the runs follows the table. Runs on this machine vary by up to a "
        f"factor of two, hence the median.")
    out("")
    header = ["scenario", "wrk load"] + [labels[s] for s in SERVERS] + [
        "wsgi-serve (std) ÷ granian", "target", "target met?"]
    out("| " + " | ".join(header) + " |")
    out("|---|---|" + "---:|" * len(SERVERS) + "---:|---|---|")
    verdicts = []
    for scenario, label, load, target in SCENARIOS:
        cells, values = [], {}
        for server in SERVERS:
            text, value = cell(results, server, scenario, notes, labels)
            cells.append(text)
            values[server] = value
        ours, theirs = values["wsgi-serve"], values["granian"]
        if ours is not None and theirs:
            ratio = ours / theirs
            ratio_text = f"{ratio:.2f}×"
            met = "**yes**" if ratio >= target else "no"
            verdicts.append((f"{label}: ≥ {target}× granian", ratio >= target, ratio_text))
        else:
            ratio_text, met = "n/a", "n/a (no figure to compare)"
            verdicts.append((f"{label}: ≥ {target}× granian", None, "n/a"))
        out(f"| {label} | {load} | " + " | ".join(cells)
            + f" | {ratio_text} | ≥ {target}× granian | {met} |")
    # The Flask route against the in-process rate, round by round (see paired_share).
    if inproc:
        cells = []
        for server in SERVERS:
            share = paired_share(results.get((server, "flask"), {}), inproc)
            cells.append(fmt_share(share) if share is not None else "n/a")
        share = paired_share(results.get(("wsgi-serve", "flask"), {}), inproc)
        if share is not None:
            met = "**yes**" if share >= INPROC_TARGET else "no"
            verdicts.append(("Flask JSON: ≥ 80 % of in-process", share >= INPROC_TARGET,
                             fmt_share(share)))
        else:
            met = "n/a"
            verdicts.append(("Flask JSON: ≥ 80 % of in-process", None, "n/a"))
        out(f"| Flask JSON as a share of the in-process rate (the median of its rounds' shares; "
            f"in-process median {fmt_rps(inproc['median'])} req/s) | — | "
            + " | ".join(cells) + f" | — | ≥ 80 % | {met} |")
    else:
        verdicts.append(("Flask JSON: ≥ 80 % of in-process", None, "n/a"))
        out("| Flask JSON as a share of the in-process rate | — | "
            + " | ".join("n/a" for _ in SERVERS) + " | — | ≥ 80 % | n/a ("
            + notes.add("in-process rate: " + meta.get("inprocess_error", "not measured"))
            + ") |")
    out("")
    met_count = sum(1 for _, ok, _ in verdicts if ok)
    na_count = sum(1 for _, ok, _ in verdicts if ok is None)
    na_text = f", {na_count} not measurable" if na_count else ""
    ranges = []
    for scenario, label, _, _ in SCENARIOS:
        spans = []
        for server in SERVERS:
            entry = results.get((server, scenario), {})
            if "rps" in entry:
                spans.append(f"{server} {fmt_rps(entry['low'])}–{fmt_rps(entry['high'])}")
        if spans:
            ranges.append(f"{label}: " + ", ".join(spans))
    out("Range of the runs (lowest–highest req/s): " + "; ".join(ranges) + ".")
    out("")
    out(f"**Targets met: {met_count} of {len(verdicts)}{na_text}** ("
        + "; ".join(f"{name}: {value}, {'met' if ok else 'not met' if ok is False else 'n/a'}"
                    for name, ok, value in verdicts) + ").")
    out("")
    out(async_section(results, idle))
    out("")
    if notes.items:
        for i, text in enumerate(notes.items, 1):
            out(f"[{i}] {text}  ")
        out("")
    out(f"![requests/s per scenario and server]({chart_rel})")
    out("")
    out("Latency, p50 / p99 in ms (wrk's figures; under `Connection: close` they include the "
        "connect):")
    out("")
    out("| scenario | " + " | ".join(labels[s] for s in SERVERS) + " |")
    out("|---|" + "---:|" * len(SERVERS))
    for scenario, label, _, _ in SCENARIOS:
        row = []
        for server in SERVERS:
            entry = results.get((server, scenario), {})
            row.append(f"{fmt_ms(entry['p50_us'])} / {fmt_ms(entry['p99_us'])}"
                       if "rps" in entry else "n/a")
        out(f"| {label} | " + " | ".join(row) + " |")
    out("")
    out("How each server ran (one worker; the app module from `bench/apps/`, its directory the "
        "working directory; logs at warning, no access log):")
    out("")
    for server in SERVERS:
        out(f"- {labels[server]}: `{meta.get(f'cmd.{server}', 'n/a')}`")
    out("")
    out("Apps: `hello.py` (the seed's hello app: `start_response(\"200 OK\", [(\"Content-Type\", "
        "\"text/plain\")])`, returns `[\"Hello WSGI World!\\n\".encode()]`), `big.py` (one "
        "prebuilt 1 MiB bytes with its Content-Length), `upload.py` (reads `wsgi.input` fully by "
        "CONTENT_LENGTH in 64 KiB reads, answers the byte count), `flask_app.py` (`GET /json` "
        "returns `{\"message\": \"Hello, World!\"}`). wrk's Lua script `bench/wrk/bench.lua` "
        "sends the upload's POST body and the `Connection: close` header. Before its runs each "
        "server's answer is checked with curl (status, and the body or its size).")
    out("")
    if inproc:
        rates = ", ".join(f"{fmt_rps(r)} req/s" if r else "failed" for r in inproc["rates"])
        entry = results.get(("wsgi-serve", "flask"), {})
        shares = ", ".join(fmt_share(x) if x is not None else "n/a"
                           for x in round_shares(entry, inproc))
        ours = entry.get("rps")
        others = (f" wsgi-serve's shares by round: {shares}. Its median against the in-process "
                  f"median is {fmt_share(ours / inproc['median'])}, against the best in-process "
                  f"run {fmt_share(ours / inproc['best'])}." if ours else "")
        failed = (f" (a run failed: {meta['inprocess_error']})"
                  if "inprocess_error" in meta else "")
        out(f"In-process Flask rate: `bench/inprocess.py` calls the same Flask app directly "
            f"({inproc['n']:,} requests a run; a prebuilt environ copied per request with a fresh "
            f"`wsgi.input`, the body joined, `close()` called), in the bench virtualenv's "
            f"CPython. It runs once just before each round of the Flask runs, so that a slow or "
            f"fast spell of this shared machine falls on it and on the servers of that round "
            f"alike; each server's share is the median of its rounds' shares (its run ÷ that "
            f"round's in-process run). In-process runs: {rates}{failed}.{others}")
        out("")
    out(f"- Machine: {meta['nproc']} vCPUs (`nproc`), `{meta['cpu']}`, {meta['kernel']}. "
        f"Load average (1, 5, 15 min) at start: {meta['load_start']}; at end: "
        f"{meta['load_end']}. Other processes may have used CPU during the run.")
    out(f"- Versions: wsgi-serve {meta.get('ver.wsgi-serve', 'n/a')} (release build, "
        f"{meta['rustc']}), {meta['python']}, gunicorn {meta.get('ver.gunicorn', 'n/a')}, "
        f"granian {meta.get('ver.granian', 'n/a')}, Flask {meta.get('ver.flask', 'n/a')}, "
        f"Werkzeug {meta.get('ver.werkzeug', 'n/a')}, {meta['wrk']}.")
    out(f"- Total runtime of `scripts/bench`: {meta['elapsed']} s (setup and build included).")
    out("")
    out(END)
    return "\n".join(lines), verdicts


def write_section(path, section):
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    if START in text and END in text:
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n\n" + HEADING + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def chart(meta, results, inproc):
    """Small multiples: one panel of horizontal bars per scenario, each on its own scale, with
    the targets drawn as dashed lines."""
    names = {
        "wsgi-serve": "wsgi-serve (std)",
        "wsgi-serve-smol": "wsgi-serve (smol)",
        "wsgi-serve-tokio": "wsgi-serve (tokio)",
        "gunicorn-sync": "gunicorn sync",
        "gunicorn-gthread": "gunicorn gthread",
        "granian": "granian (WSGI)",
    }
    width, left, bar_w, bar_h, gap = 860, 150, 560, 18, 5
    panel_h = 34 + len(SERVERS) * (bar_h + gap) + 8
    height = 56 + len(SCENARIOS) * panel_h + 10
    e = html.escape
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="12" y="22" font-size="15" font-weight="bold">Requests/s, one worker each '
        f'(wrk -t2, median of {e(meta.get("runs", "1"))} runs of {e(meta["duration"])} s; '
        f'higher is better)</text>',
        f'<text x="12" y="40" fill="#555">{e(meta["date"])}; {e(meta["nproc"])} vCPUs '
        f'{e(meta["cpu"])}; each panel has its own scale; dashed: targets for wsgi-serve</text>',
    ]
    y = 56
    for scenario, label, load, target in SCENARIOS:
        values = {s: results.get((s, scenario), {}).get("rps") for s in SERVERS}
        targets = []
        if values["granian"]:
            targets.append((values["granian"] * target, f"{target}× granian"))
        if scenario == "flask" and inproc:
            # A guide: the verdict is the median of the rounds' shares (see paired_share).
            targets.append((inproc["median"] * INPROC_TARGET, "80 % of the in-process median"))
        top = max([v for v in values.values() if v] + [t for t, _ in targets] + [1]) * 1.08
        svg.append(f'<text x="12" y="{y + 16}" font-weight="bold">'
                   f'{e(label.replace("`", ""))} ({e(load)})</text>')
        by = y + 26
        for server in SERVERS:
            value = values[server]
            svg.append(f'<text x="{left - 8}" y="{by + 13}" text-anchor="end">'
                       f'{e(names[server])}</text>')
            if value is None:
                svg.append(f'<text x="{left + 4}" y="{by + 13}" fill="#888">n/a</text>')
            else:
                w = max(1.0, bar_w * value / top)
                svg.append(f'<rect x="{left}" y="{by}" width="{w:.1f}" height="{bar_h}" '
                           f'fill="{COLORS[server]}"/>')
                svg.append(f'<text x="{left + w + 5:.1f}" y="{by + 13}">{value:,.0f}</text>')
            by += bar_h + gap
        for i, (t, name) in enumerate(targets):
            x = left + bar_w * t / top
            svg.append(f'<line x1="{x:.1f}" y1="{y + 24}" x2="{x:.1f}" y2="{by}" '
                       f'stroke="#c92a2a" stroke-width="1.5" stroke-dasharray="5,3"/>')
            svg.append(f'<text x="{x + 4:.1f}" y="{y + 22 - 12 * i}" fill="#c92a2a" '
                       f'font-size="11">{e(name)}: {t:,.0f}</text>')
        y += panel_h
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def read_inproc(path, meta):
    """The in-process runs, one per round of the Flask runs (`None` for a round whose run
    failed): their rates, median and best."""
    if not os.path.exists(path):
        return None
    rates = []
    for line in open(path, encoding="utf-8"):
        if line.strip():
            run = json.loads(line)
            rates.append(run["rates"][0] if run else None)
    measured = [r for r in rates if r]
    if not measured:
        return None
    return {"rates": rates, "runs": len(measured), "n": int(meta.get("inprocess_n", 0)),
            "median": lower_median(sorted(measured)), "best": max(measured)}


def round_shares(entry, inproc):
    """A server's Flask run of each round as a share of that round's in-process run (`None`
    where either has no figure)."""
    return [s / r if s is not None and r else None
            for s, r in zip(entry.get("series", []), inproc["rates"])]


def paired_share(entry, inproc):
    """The median of a server's round-by-round shares (see lower_median), or `None` without
    any."""
    shares = sorted(x for x in round_shares(entry, inproc) if x is not None)
    return lower_median(shares) if shares else None


def fmt_share(share):
    return f"{share:.0%}".replace("%", " %")


def main():
    workdir, benchmarks, chart_path = sys.argv[1:4]
    meta = read_meta(os.path.join(workdir, "meta.tsv"))
    results = read_results(os.path.join(workdir, "results.tsv"))
    inproc = read_inproc(os.path.join(workdir, "inprocess.jsonl"), meta)
    chart_rel = os.path.relpath(chart_path, os.path.dirname(os.path.abspath(benchmarks)))
    idle = read_idle(os.path.join(workdir, "idle.tsv"))
    section, verdicts = build_section(meta, results, inproc, chart_rel, idle)
    with open(chart_path, "w", encoding="utf-8") as f:
        f.write(chart(meta, results, inproc))
    write_section(benchmarks, section)
    print(section)


if __name__ == "__main__":
    main()
