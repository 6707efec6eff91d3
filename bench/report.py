"""Benchmark results → JSON, a markdown table of ratios with absolute figures, PNG charts."""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

OURS = "asgi-granian"
OTHERS = ("pulpcore-content", "nginx")
NGINX_VARIANTS = ("nginx", "nginx-copy")


def _run(results: dict, contender: str, workers: int) -> dict | None:
    return next((r for r in results["runs"]
                 if r["contender"] == contender and r["workers"] == workers), None)


def _ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def _rows(results: dict) -> list[str]:
    rows = []
    workers_seen = sorted({r["workers"] for r in results["runs"]})
    contenders = []
    for r in results["runs"]:
        if r["contender"] not in contenders:
            contenders.append(r["contender"])
    header = ("| workers | measure | " + " | ".join(contenders)
              + " | ours / pulpcore-content | ours / best nginx |")
    rows += [header, "|" + "---|" * (len(contenders) + 4)]

    def line(workers: int, label: str, pick: Any, fmt: str, higher_is_better: bool = True
             ) -> None:
        values = {}
        for name in contenders:
            run = _run(results, name, workers)
            values[name] = pick(run) if run else None
        cells = [fmt.format(values[n]) if values[n] is not None else "-" for n in contenders]
        nginx = [values[n] for n in NGINX_VARIANTS if values.get(n) is not None]
        if nginx:  # the ceiling: the better nginx variant
            values["nginx"] = max(nginx) if higher_is_better else min(nginx)
        ours = values.get(OURS)
        ratios = [_ratio(ours, values.get(o)) if higher_is_better
                  else _ratio(values.get(o), ours) for o in OTHERS]
        rows.append(f"| {workers} | {label} | " + " | ".join(cells) + " | "
                    + " | ".join(ratios) + " |")

    for workers in workers_seen:
        sample = _run(results, contenders[0], workers) or {}
        for c in sample.get("small", {}):
            line(workers, f"4 KiB files, c{c}: req/s",
                 lambda r, c=c: r["small"][c]["rps"], "{:.0f}")
            line(workers, f"4 KiB files, c{c}: p99 ms (ratio: theirs/ours)",
                 lambda r, c=c: r["small"][c]["p99_ms"], "{:.1f}", higher_is_better=False)
        if sample.get("small"):
            first = next(iter(sample["small"]))
            line(workers, "DB transactions per request (pg_stat_database, approximate)",
                 lambda r, f=first: r["small"][f]["db_round_trips_per_request"], "{:.2f}",
                 higher_is_better=False)
        line(workers, "1 GiB file, 8 clients: GB/s",
             lambda r: r["large"]["bytes_per_s"] / 1e9 if r["large"] else None, "{:.2f}")
        if workers == 1:
            line(workers, "slow readers completed", lambda r: (
                r["slow"]["completed"] if r["slow"] else None), "{:.0f}")
            line(workers, "slow readers: max RSS per process MiB", lambda r: (
                r["slow"]["max_rss_mib_per_process"] if r["slow"] else None), "{:.0f}",
                higher_is_better=False)
            line(workers, "slow readers: max PG connections", lambda r: (
                r["slow"]["max_pg_connections"] if r["slow"] else None), "{:.0f}",
                higher_is_better=False)
            line(workers, "slow readers: small-file probe p99 ms, steady (loop lag)",
                 lambda r: r["slow"]["probe_p99_ms"] if r["slow"] else None, "{:.0f}",
                 higher_is_better=False)
            line(workers, "slow readers: small-file probe p99 ms, during ramp-up",
                 lambda r: r["slow"]["ramp_probe_p99_ms"] if r["slow"] else None, "{:.0f}",
                 higher_is_better=False)
    return rows


def _counts(found: dict | None) -> str:
    if not found:
        return "not measured"
    return (f"{found['queries_per_request']:.1f} SQL queries, "
            f"{found['hops_per_request']:.1f} thread hops")


def _cached(results: dict) -> list[str]:
    """With the Redis response cache on, both apps: ours / pulpcore-content."""
    rows = []
    for workers in sorted({r["workers"] for r in results["runs"]}):
        ours = _run(results, "asgi-granian-cache", workers)
        theirs = _run(results, "pulpcore-content-cache", workers)
        if not ours or not theirs:
            continue
        for c in ours["small"]:
            rows.append(f"| {workers} | c{c} | {ours['small'][c]['rps']:.0f} | "
                        f"{theirs['small'][c]['rps']:.0f} | "
                        f"{_ratio(ours['small'][c]['rps'], theirs['small'][c]['rps'])} |")
    if not rows:
        return []
    return ["## Response cache on (Redis), 4 KiB files, req/s",
            "", "A hot set of 500 files, each requested once before measuring.", "",
            "| workers | clients | asgi-granian-cache | pulpcore-content-cache | ratio |",
            "|---|---|---|---|---|", *rows, ""]


def _ondemand(found: dict | None) -> list[str]:
    if not found:
        return []
    rows = ["## On-demand (cold: every request streams from upstream), 1 worker", "",
            "| | TTFB median ms (1 MiB files) | TTFB p90 ms | 1 GiB GB/s |", "|---|---|---|---|"]
    for name, values in found.items():
        rows.append(f"| {name} | {values['ttfb_ms_median']:.1f} | {values['ttfb_ms_p90']:.1f}"
                    f" | {values['large_gbps']:.2f} |")
    return [*rows, ""]


def markdown(results: dict) -> str:
    meta = results["meta"]
    hops = results.get("hops", {})
    lines = [
        f"# Benchmark {meta['date'][:19]} on {meta['machine']}",
        "",
        f"{meta['cpus']} CPUs, Python {meta['python']}, {meta['seconds']} s x "
        f"{meta['repeats']} runs per point (median shown)"
        f"{' - quick subset' if meta['quick'] else ''}. "
        f"Pinning: {meta['pinning']}. Ratios > 1 favour us (for latency, RSS and "
        "connections the ratio is theirs / ours).",
        "",
        *_rows(results),
        "",
        *_cached(results),
        *_ondemand(results.get("ondemand")),
        "Per published-file request, counted in-process (exact): "
        f"ours {_counts(hops.get('asgi'))}; pulpcore-content "
        f"{_counts(hops.get('pulpcore-content'))}.",
    ]
    return "\n".join(lines) + "\n"


def charts(results: dict, stem: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for workers in sorted({r["workers"] for r in results["runs"]}):
        runs = [r for r in results["runs"] if r["workers"] == workers]
        levels = list(runs[0]["small"])
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        width = 0.8 / len(runs)
        for i, run in enumerate(runs):
            xs = [j + i * width for j in range(len(levels))]
            left.bar(xs, [run["small"][c]["rps"] for c in levels], width, label=run["contender"])
        left.set_xticks([j + 0.4 - width / 2 for j in range(len(levels))],
                        [f"c{c}" for c in levels])
        left.set_yscale("log")
        left.set_title(f"4 KiB files, req/s ({workers} worker(s), log scale)")
        left.legend(fontsize=8)
        right.bar([r["contender"] for r in runs],
                  [r["large"]["bytes_per_s"] / 1e9 if r["large"] else 0 for r in runs])
        right.set_title("1 GiB file, 8 clients, GB/s")
        right.tick_params(axis="x", labelsize=8)
        path = f"{stem}-w{workers}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def write(results: dict, folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    day = datetime.date.today().isoformat()
    kind = "quick" if results["meta"]["quick"] else "full"
    stem = os.path.join(folder, f"{day}-{results['meta']['machine']}-{kind}")
    with open(stem + ".json", "w") as out:
        json.dump(results, out, indent=2)
    with open(stem + ".md", "w") as out:
        out.write(markdown(results))
    return [stem + ".json", stem + ".md", *charts(results, stem)]
