"""
Turns the runs into the results: medians with min-max, ratios pair by pair
(run i of one server against run i of the other, which ran right beside it),
the targets of the benchmark issue, a reStructuredText table and a PNG plot.
"""

import json
import statistics
import sys

INCOMING = "Incoming!! sha256 on"
INCOMING_OFF = "Incoming!! sha256 off"
NGINX = "nginx PUT"
NGINX_DURABLE = "nginx PUT + fsync"
TUS = "@tus/server"
FLOOR = "bare receiver"


def percentile(values, p):
    """
    The C{p}th percentile of sorted C{values} (nearest rank), 0 if empty.
    """
    if not values:
        return 0.0
    rank = max(1, -(-len(values) * p // 100))
    return values[int(rank) - 1]


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(s, digits=1):
    if s is None:
        return "n/a"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def column(runs, key):
    return [run[key] for run in runs]


def pairwise(a_runs, b_runs, key):
    """
    Ratios a/b run by run: the runs at the same index ran side by side.
    """
    ratios = [a[key] / b[key] for a, b in zip(a_runs, b_runs) if b[key]]
    return summary(ratios) if ratios else None


def analyse(results):
    m = results["measurements"]
    single, chunked = m.get("single", {}), m.get("chunked", {})
    memory, concurrency, browser = m.get("memory", {}), m.get("concurrency", {}), m.get("browser", {})
    reference = m.get("concurrency reference", {})
    ratios = {}
    targets = []

    def target(text, value, ok, shown):
        targets.append({"target": text, "value": shown, "met": bool(ok) if value is not None else None})

    def ratio_shown(r):
        # Three decimals: a median just short of its bound (0.697x for
        # 0.7x) must not read as the bound itself.
        return fmt(r, 3) + "x"

    if INCOMING in single:
        inc = single[INCOMING]
        for peer in (NGINX, NGINX_DURABLE, TUS, INCOMING_OFF, FLOOR):
            if peer in single:
                ratios[f"single stream: Incoming!! / {peer}"] = pairwise(inc, single[peer], "mb_s")
        r = ratios.get(f"single stream: Incoming!! / {NGINX}")
        target("single stream >= 1.0x nginx PUT", r, r and r["median"] >= 1.0, ratio_shown(r))
        r = ratios.get(f"single stream: Incoming!! / {TUS}")
        # The ceiling beside it: how far nginx's PUT itself is from 2x.
        ceiling = NGINX in single and TUS in single and pairwise(single[NGINX], single[TUS], "mb_s")
        if ceiling:
            ratios[f"single stream: {NGINX} / {TUS}"] = ceiling
        target("single stream >= 2x @tus/server", r, r and r["median"] >= 2.0,
               ratio_shown(r) + (f"; nginx PUT {ceiling['median']:.2f}x" if ceiling else ""))
        cpu = summary(column(inc, "cpu_s_per_gib"))
        # The floor beside it: what the bare receiver spent in the same rounds.
        floor = FLOOR in single and summary(column(single[FLOOR], "cpu_s_per_gib"))
        if floor:
            ratios[f"server CPU per GiB: Incoming!! / {FLOOR}"] = pairwise(inc, single[FLOOR], "cpu_s_per_gib")
        target("server CPU <= 1.2 s per GiB", cpu, cpu["median"] <= 1.2,
               fmt(cpu, 2) + " s" + (f"; {FLOOR} {floor['median']:.2f} s" if floor else ""))
    if INCOMING in chunked and INCOMING in single:
        r = pairwise(chunked[INCOMING], single[INCOMING], "mb_s")
        ratios["chunked 8 MiB / single stream, Incoming!!"] = r
        target("chunked >= 0.8x single stream", r, r and r["median"] >= 0.8, ratio_shown(r))
        for peer in (TUS, INCOMING_OFF):
            if peer in chunked:
                ratios[f"chunked: Incoming!! / {peer}"] = pairwise(chunked[INCOMING], chunked[peer], "mb_s")
        sendfile = m.get("chunked, sendfile client", {})
        if INCOMING in sendfile:
            ratios["chunked 8 MiB, sendfile client / single stream, Incoming!!"] = pairwise(
                sendfile[INCOMING], single[INCOMING], "mb_s")
    if memory:
        sizes = sorted(memory, key=lambda name: memory[name][0]["size"])
        peak = max(run["peak_rss_mib"] for name in sizes for run in memory[name])
        target("peak RSS <= 64 MiB at every size", peak, peak <= 64, f"{peak:.1f} MiB (largest of all runs)")
        growth = [b["peak_rss_mib"] - a["peak_rss_mib"] for a, b in zip(memory[sizes[0]], memory[sizes[-1]])]
        g = summary(growth)
        target(f"peak RSS grows < 8 MiB from {sizes[0]} to {sizes[-1]}", g, g["median"] < 8, fmt(g) + " MiB")
    if INCOMING in concurrency:
        runs = concurrency[INCOMING]
        failures = sum(run["failures"] for run in runs)
        target("concurrent uploads: zero failures", failures, failures == 0, f"{failures} failed")
        if INCOMING in reference:
            r = pairwise(runs, reference[INCOMING], "mb_s")
            ratios["concurrent aggregate / single stream, Incoming!!"] = r
            target("concurrent aggregate >= 0.7x single stream", r, r and r["median"] >= 0.7, ratio_shown(r))
        heads = summary(column(runs, "head_p99_ms"))
        target("HEAD p99 <= 50 ms under load", heads, heads["median"] <= 50, fmt(heads) + " ms")
        for peer in (NGINX, TUS):
            if peer in concurrency:
                ratios[f"concurrent aggregate: Incoming!! / {peer}"] = pairwise(runs, concurrency[peer], "mb_s")
    if "incoming.js" in browser:
        js = summary(column(browser["incoming.js"], "mb_s"))
        target("incoming.js in Chromium >= 110 MB/s", js, js["median"] >= 110, fmt(js) + " MB/s")
        if "tus-js-client" in browser:
            r = pairwise(browser["incoming.js"], browser["tus-js-client"], "mb_s")
            ratios["browser: incoming.js / tus-js-client (one PATCH, its default)"] = r
            target("incoming.js >= tus-js-client (its default, one PATCH)", r, r and r["median"] >= 1.0,
                   ratio_shown(r))
        for name in browser:
            if name.startswith("tus-js-client ") and "chunks" in name:
                r = pairwise(browser["incoming.js"], browser[name], "mb_s")
                ratios[f"browser: incoming.js / {name}"] = r
    return ratios, targets


def table(rows, header):
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    line = "  ".join("=" * w for w in widths)
    out = [line, "  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip(), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    out.append(line)
    return "\n".join(out)


def render(results, ratios, targets):
    m = results["measurements"]
    machine = results["machine"]
    out = [
        ".. Written by benchmarks/run; do not edit by hand.",
        "",
        "Benchmark results",
        "=================",
        "",
        f"{results['date']}, {results['runs']} runs of each measurement, servers interleaved run by run"
        + (" (QUICK: tiny sizes, figures meaningless)" if results["quick"] else "") + ".",
        f"Machine: {machine.get('cores')} cores, {machine.get('memory_gib')} GiB, {machine.get('cpu', '?')}, "
        f"Linux {machine.get('kernel', '?')}; Python {machine.get('python', '?')}, "
        f"Node {machine.get('node', '?')}, nginx {machine.get('nginx', '?')}, curl {machine.get('curl', '?')}. "
        f"Took {results.get('duration_s', 0) // 60} min.",
        "",
        "Figures are medians with (min-max); ratios are taken pair by pair, each run against",
        "the run of the other server right beside it. Every run's bytes were checked with sha256.",
        "",
    ]
    if targets:
        out += ["Targets", "-------", ""]
        rows = [[t["target"], t["value"], {True: "met", False: "NOT met", None: "n/a"}[t["met"]]] for t in targets]
        out += [table(rows, ["target (Incoming!!, sha256 on)", "measured", ""]), ""]
    if ratios:
        out += ["Ratios", "------", ""]
        rows = [[name, fmt(r, 2) + "x"] for name, r in ratios.items() if r]
        out += [table(rows, ["pair", "ratio"]), ""]
    for key, title in (("single", "Single stream"), ("chunked", "Chunked (PATCHes over one connection)"),
                       ("chunked, sendfile client", "Chunked, from the sendfile client")):
        if m.get(key):
            out += [title, "-" * len(title), ""]
            rows = [
                [name, fmt(summary(column(runs, "mb_s"))), fmt(summary(column(runs, "cpu_s_per_gib")), 2),
                 fmt(summary(column(runs, "peak_rss_mib")))]
                for name, runs in m[key].items()
            ]
            out += [table(rows, ["server", "MB/s", "server CPU s/GiB", "server peak RSS MiB"]), ""]
    if m.get("memory"):
        out += ["Incoming!! memory by upload size", "--------------------------------", ""]
        rows = [[name, fmt(summary(column(runs, "peak_rss_mib"))), fmt(summary(column(runs, "mb_s")))]
                for name, runs in sorted(m["memory"].items(), key=lambda kv: kv[1][0]["size"])]
        out += [table(rows, ["upload", "peak RSS MiB", "MB/s"]), ""]
    if m.get("concurrency"):
        out += ["Concurrent uploads", "------------------", ""]
        rows = []
        for name, runs in list(m["concurrency"].items()) + [
            (n + " (single stream, same rounds)", r) for n, r in m.get("concurrency reference", {}).items()
        ]:
            if "failures" in runs[0]:
                rows.append([name, str(sum(column(runs, "failures"))), fmt(summary(column(runs, "mb_s"))),
                             fmt(summary(column(runs, "p50_s")), 3), fmt(summary(column(runs, "p99_s")), 3),
                             fmt(summary(column(runs, "head_p99_ms"))), fmt(summary(column(runs, "peak_rss_mib")))])
            else:
                rows.append([name, "", fmt(summary(column(runs, "mb_s"))), "", "", "", ""])
        out += [table(rows, ["server", "failed", "aggregate MB/s", "p50 s", "p99 s", "HEAD p99 ms",
                             "peak RSS MiB"]), ""]
    if m.get("browser"):
        out += ["Browser (headless Chromium)", "---------------------------", ""]
        rows = [[name, fmt(summary(column(runs, "mb_s")))] for name, runs in m["browser"].items()]
        out += [table(rows, ["client", "MB/s"]), ""]
    return "\n".join(out)


def plot(results, path):
    """
    The PNG plot, if matplotlib (benchmarks/requirements.txt) is there.
    """
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot (benchmarks/setup installs it)", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = dict(results["measurements"])
    # The reference client's chunked runs beside curl's, in one panel.
    m["chunked"] = {**m.get("chunked", {}), **{
        f"{name}, sendfile client": runs for name, runs in m.get("chunked, sendfile client", {}).items()}}
    panels = [
        ("single", "mb_s", "Single stream, MB/s"),
        ("chunked", "mb_s", "Chunked PATCHes, MB/s"),
        ("single", "cpu_s_per_gib", "Server CPU s per GiB (single stream)"),
        ("memory", "peak_rss_mib", "Incoming!! peak RSS MiB by upload size"),
        ("concurrency", "mb_s", "Concurrent uploads, aggregate MB/s"),
        ("concurrency", "head_p99_ms", "HEAD p99 ms during the load"),
        ("browser", "mb_s", "Browser (Chromium), MB/s"),
    ]
    panels = [p for p in panels if m.get(p[0])]
    if not panels:
        return
    columns = 2
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(12, 3.2 * rows), squeeze=False)
    for ax, (key, field, title) in zip(axes.flat, panels):
        names = list(m[key])
        if key == "memory":
            names.sort(key=lambda n: m[key][n][0]["size"])
        stats = [summary(column(m[key][n], field)) for n in names]
        medians = [s["median"] for s in stats]
        errors = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
        colours = ["#d9534f" if n.startswith("Incoming") or n == "incoming.js" or key == "memory" else "#7f8c8d"
                   for n in names]
        ax.barh(range(len(names)), medians, xerr=errors, color=colours, capsize=3)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        for i, (value, s) in enumerate(zip(medians, stats)):
            ax.text(s["max"], i, f"  {value:.1f}" if value < 10 else f"  {value:.0f}", va="center", fontsize=8)
        ax.set_xlim(0, max(s["max"] for s in stats) * 1.18)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"Incoming!! benchmarks, {results['date']} (medians, min-max bars)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(results, out):
    ratios, targets = analyse(results)
    results["ratios"] = ratios
    results["targets"] = targets
    (out / "benchmark-results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = render(results, ratios, targets)
    (out / "benchmark-results.rst").write_text(text + "\n")
    plot(results, out / "benchmark-results.png")
    return text


if __name__ == "__main__":
    # Re-render the table and plot from a results file:
    #   python -m benchmarks.report docs/benchmark-results.json
    from pathlib import Path

    source = Path(sys.argv[1])
    write(json.loads(source.read_text()), source.parent)
