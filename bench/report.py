"""Benchmark results (``bench/run.py``'s JSON) → a generated markdown report and charts.

Every figure is the median of a point's runs with its min-max beside it; ratios compare
medians from this one results file, against the faster pulpcore-content variant and the
better nginx variant *that were measured* (each ratio names its reference and any
variant missing). Quick runs are labelled indicative and their ratios keep one
significant digit. Nothing here is meant to be edited by hand: commentary belongs in
bench/README.md or a separate analysis file that names the results file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from bench import record
from bench.stats import Spread, number, significant, spread

OURS = "asgi-granian"
#: Reference groups: a ratio is quoted against the best measured member of each.
PULPCORE = ("pulpcore-content", "pulpcore-content-uvloop")
NGINX = ("nginx", "nginx-copy")
CACHED_OURS = "asgi-granian-cache"
CACHED_PULPCORE = ("pulpcore-content-cache", "pulpcore-content-uvloop-cache")

Values = Callable[[dict], list[float]]


@dataclass(frozen=True)
class Measure:
    """One table row: ``values`` picks a run entry's per-run figures."""

    label: str
    values: Values
    fmt: str
    higher_is_better: bool = True
    groups: tuple[tuple[str, ...], ...] = (PULPCORE, NGINX)  # ratios quoted against


def entry(results: dict, contender: str, workers: int) -> dict | None:
    return next((r for r in results["runs"]
                 if r["contender"] == contender and r["workers"] == workers), None)


def _spread_of(results: dict, contender: str, workers: int, values: Values) -> Spread | None:
    found = entry(results, contender, workers)
    return spread(values(found)) if found else None


def cell(found: Spread | None, fmt: str) -> str:
    if found is None:
        return "-"
    if found.n == 1:
        return f"{number(found.median, fmt)} (1 run)"
    if found.low == found.high:
        return number(found.median, fmt)
    return (f"{number(found.median, fmt)} ({number(found.low, fmt)}-"
            f"{number(found.high, fmt)})")


def ratio(ours: Spread | None, group: dict[str, Spread | None], higher_is_better: bool,
          digits: int) -> str:
    """``ours`` against the best measured member of ``group``, naming it and the members
    that were not measured; "*" when the two ranges overlap."""
    measured = {name: s for name, s in group.items() if s is not None}
    missing = [name for name in group if name not in measured]
    note = f" ({', '.join(missing)} not measured)" if missing and measured else ""
    if not measured:
        return f"n/a (none of {', '.join(group)} measured)"
    if any(s.median <= 0 for s in measured.values()):
        return "n/a (a zero)"
    pick = max if higher_is_better else min
    best = pick(measured, key=lambda name: measured[name].median)
    theirs = measured[best]
    if ours is None or ours.median <= 0:
        return f"n/a ({OURS} not measured)"
    value = ours.median / theirs.median if higher_is_better else theirs.median / ours.median
    overlap = "*" if ours.overlaps(theirs) else ""
    return f"{significant(value, digits)}x{overlap} vs {best}{note}"


def _sum(values: list[float]) -> float:
    return float(sum(values))


def _small(c: str, key: str) -> Values:
    return lambda e: [r[key] for r in e["small"].get(c, [])]


def _list(point: str, key: str) -> Values:
    return lambda e: [r[key] for r in e[point]]


def measures(results: dict, workers: int) -> list[Measure]:
    levels = [str(c) for c in results["meta"]["concurrency"]]
    rows = []
    for c in levels:
        rows += [Measure(f"4 KiB files, c{c}: req/s", _small(c, "rps"), "{:.0f}"),
                 Measure(f"4 KiB files, c{c}: p99 ms", _small(c, "p99_ms"), "{:.1f}",
                         higher_is_better=False),
                 # Few rounds per connection: a batchy server's count is quantised.
                 Measure(f"4 KiB files, c{c}: requests completed per connection in a run",
                         lambda e, c=c: [r["requests"] / int(c) for r in e["small"].get(c, [])],
                         "{:.1f}", groups=())]
    rows.append(Measure(
        "4 KiB, c64: PostgreSQL connections per worker (max sampled)",
        lambda e: [r["max_pg_connections"] / workers for r in e["small"].get("64", [])],
        "{:.1f}", higher_is_better=False, groups=(PULPCORE,)))
    rows.append(Measure(
        "4 KiB, c64: DB transactions per request (pg_stat_database, approximate)",
        _small("64", "db_round_trips_per_request"), "{:.2f}", higher_is_better=False,
        groups=(PULPCORE,)))
    rows.append(Measure("1 GiB file, 8 clients: GB/s",
                        lambda e: [r["bytes_per_s"] / 1e9 for r in e["large"]], "{:.2f}"))
    rows.append(Measure("idle RSS after the warm-up, MiB, all processes",
                        lambda e: [e["idle"]["rss_mib_total"]] if "idle" in e else [],
                        "{:.0f}", False))
    if workers == 1:
        rows += [
            Measure("slow readers completed", _list("slow", "completed"), "{:.0f}"),
            Measure("slow readers: max RSS per process MiB",
                    _list("slow", "max_rss_mib_per_process"), "{:.0f}", False),
            Measure("slow readers: idle RSS just before, MiB, all processes",
                    lambda e: _values(e["slow"], "idle_rss_mib_total"), "{:.0f}", False),
            Measure("slow readers: (max RSS - idle) per connection, KiB (largest process)",
                    lambda e: [(r["max_rss_mib_per_process"] - r["idle_rss_mib_per_process"])
                               * 1024 / r["clients"] for r in e["slow"]
                               if "idle_rss_mib_per_process" in r], "{:.1f}", False),
            Measure("slow readers: max PG connections", _list("slow", "max_pg_connections"),
                    "{:.0f}", False, groups=(PULPCORE,)),
            Measure("slow readers: small-file probe p99 ms, steady (loop lag)",
                    _list("slow", "probe_p99_ms"), "{:.0f}", False),
            Measure("slow readers: small-file probe p99 ms, during ramp-up",
                    _list("slow", "ramp_probe_p99_ms"), "{:.0f}", False),
            Measure("burst of clients in 2 s: completed", _list("burst", "completed"),
                    "{:.0f}"),
            Measure("burst: max PG connections", _list("burst", "max_pg_connections"),
                    "{:.0f}", False, groups=()),
        ]
    return rows


def _errors(found: dict | None) -> str:
    """wrk's socket errors / HTTP >= 400 responses (wrk counts status > 399) / non-200
    responses of the small-file runs (every status read; "-" in results older than that
    count), summed over every small-file and large-file run."""
    if not found:
        return "-"
    small = [r for point in found["small"].values() for r in point]
    runs = small + found["large"]
    if not runs:
        return "-"
    status = sum(r["status_errors"] for r in runs)
    other = (str(sum(r["status_other"] for r in small))
             if small and all("status_other" in r for r in small) else "-")
    return f"{sum(r['errors'] for r in runs) - status} / {status} / {other}"


def _contenders(results: dict, workers: int) -> list[str]:
    return [r["contender"] for r in results["runs"] if r["workers"] == workers]


def _started(results: dict, name: str, workers: int) -> bool:
    return (entry(results, name, workers) or {}).get("status") != "did not start"


def worker_table(results: dict, workers: int, digits: int) -> list[str]:
    names = _contenders(results, workers)
    lines = [f"## {workers} worker(s)", "",
             "| measure | " + " | ".join(names)
             + " | ours / faster pulpcore-content | ours / better nginx |",
             "|---|" + "---|" * (len(names) + 2)]
    for m in measures(results, workers):
        spreads = {n: _spread_of(results, n, workers, m.values) for n in names}
        if not any(spreads.values()) and any(_started(results, n, workers) for n in names):
            continue  # a scenario this run did not measure
        cells = [cell(spreads[n], m.fmt) if (entry(results, n, workers) or {}).get("status")
                 != "did not start" else "did not start" for n in names]
        ratios = [ratio(spreads.get(OURS), {g: spreads.get(g) for g in group},
                        m.higher_is_better, digits) if group in m.groups else ""
                  for group in (PULPCORE, NGINX)]
        lines.append(f"| {m.label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines.append("| wrk socket errors / HTTP ≥ 400 / non-200 (4 KiB files), all runs | "
                 + " | ".join(_errors(entry(results, n, workers)) for n in names) + " | | |")
    return [*lines, ""]


def _statuses(runs: list[dict], key: str) -> str:
    total: dict[str, int] = {}
    for run in runs:
        for name, count in run[key].items():
            total[name] = total.get(name, 0) + count
    return ", ".join(f"{k}: {v}" for k, v in sorted(total.items())) or "none"


def burst_table(results: dict) -> list[str]:
    rows = [r for r in results["runs"] if r["workers"] == 1 and r.get("burst")]
    if not rows:
        return []
    lines = ["## Burst: clients arriving within 2 s, one request each, 1 worker", "",
             f"{results['meta']['burst_clients']} clients per run; statuses and errors are "
             "summed over the runs.", "",
             "| contender | completed | failed | statuses seen | connection errors | "
             "seconds to the last answer |", "|---|---|---|---|---|---|"]
    for r in rows:
        runs = r["burst"]
        completed = cell(spread([x["completed"] for x in runs]), "{:.0f}")
        lines.append(f"| {r['contender']} | {completed}"
                     f" | {cell(spread([x['failed'] for x in runs]), '{:.0f}')}"
                     f" | {_statuses(runs, 'statuses')} | {_statuses(runs, 'errors')}"
                     f" | {cell(spread([x['seconds'] for x in runs]), '{:.1f}')} |")
    return [*lines, ""]


def held_table(found: dict | None) -> list[str]:
    """The ``held`` scenario: what a held slow connection costs the worker, per run."""
    if not found:
        return []
    lines = ["## Held slow connections: memory per connection, 1 worker", "",
             f"{found['clients']} connections each hold a GET of `{found['path']}` open with a "
             "4 KiB receive buffer, reading 1 KiB a second (bench/slowmem.py); the worker's "
             "RSS idle (after one whole download) and once it stopped growing; cost = "
             "(loaded - idle) / connections.", "",
             "| contender | KiB per connection | worker idle RSS, MiB | worker loaded RSS, "
             "MiB | answered (of each run) | statuses |", "|---|---|---|---|---|---|"]
    for name, entry_ in found.items():
        if not isinstance(entry_, dict):
            continue
        runs = entry_["runs"]
        if entry_["status"] != "ran" or not runs:
            lines.append(f"| {name} | {entry_['status']}: {entry_.get('error', '')} | | | | |")
            continue
        statuses = sorted({s for r in runs for s in r["statuses"]})
        lines.append(f"| {name} | {cell(spread(_values(runs, 'per_connection_kib')), '{:.1f}')}"
                     f" | {cell(spread(_values(runs, 'idle_mib')), '{:.0f}')}"
                     f" | {cell(spread(_values(runs, 'loaded_mib')), '{:.0f}')}"
                     f" | {', '.join(str(r['headed']) for r in runs)}"
                     f" | {', '.join(map(str, statuses))} |")
    return [*lines, ""]


def cache_table(results: dict, digits: int) -> list[str]:
    """With the Redis response cache on: ours against the faster pulpcore-content."""
    lines = []
    for workers in results["meta"]["workers"]:
        for c in (str(c) for c in results["meta"]["concurrency"]):
            values = _small(c, "rps")
            ours = _spread_of(results, CACHED_OURS, workers, values)
            group = {g: _spread_of(results, g, workers, values) for g in CACHED_PULPCORE}
            if ours is None and not any(group.values()):
                continue
            lines.append(f"| {workers} | c{c} | {cell(ours, '{:.0f}')} | "
                         + " | ".join(cell(s, "{:.0f}") for s in group.values())
                         + f" | {ratio(ours, group, True, digits)} |")
    if not lines:
        return []
    return ["## Response cache on (Redis), 4 KiB files, req/s", "",
            "A hot set of 500 files, each requested once before measuring.", "",
            f"| workers | clients | {CACHED_OURS} | " + " | ".join(CACHED_PULPCORE)
            + " | ours / faster pulpcore-content |", "|---|---|---|---|---|---|",
            *lines, ""]


def objects_table(found: dict | None, digits: int) -> list[str]:
    """The object-storage scenario: 302/s per contender (median, min-max) at each worker
    count and concurrency level, ours against the faster pulpcore-content, and each
    contender's GET/HEAD check."""
    if not found:
        return []
    lines = ["## Object storage: 302s to an S3 server on loopback (moto), 4 KiB objects, "
             "cache off", ""]
    if found.get("status") in ("did not start", "failed"):
        lines += [f"The scenario {found['status']}: {found.get('error', '')} (log: "
                  f"{_path(found.get('log'))}).", ""]
    runs = found.get("runs", [])
    lines += [f"{found.get('count', '?')} published objects in bucket "
              f"`{found.get('bucket', '?')}` of domain `{found.get('domain', '?')}` "
              "(redirect_to_object_storage on). Before measuring, GET and HEAD of 3 files: "
              "302 to the object, signed for the request's method, following it gives the "
              "bytes (GET) or their length (HEAD).", "",
              "| contender | workers | status | GET/HEAD check | log |", "|---|---|---|---|---|"]
    for r in runs:
        check = r.get("check")
        verdict = ("not checked" if check is None else "correct" if check["ok"]
                   else "wrong: " + "; ".join(check["problems"])[:300])
        state = r["status"] + (f": {r['error']}" if r.get("error") else "")
        lines.append(f"| {r['contender']} | {r['workers']} | {state} | {verdict} | "
                     f"{_path(r.get('log'))} |")
    lines.append("")
    for workers in sorted({r["workers"] for r in runs}):
        names = [r["contender"] for r in runs if r["workers"] == workers]
        levels = sorted({c for r in runs if r["workers"] == workers
                         for c in r.get("redirect", {})}, key=int)
        if not levels:
            continue
        lines += [f"302/s, {workers} worker(s):", "",
                  "| clients | " + " | ".join(names) + " | ours / faster pulpcore-content |",
                  "|---|" + "---|" * (len(names) + 1)]
        for c in levels:
            spreads = {r["contender"]: spread([x["status_per_s"] for x in
                                               r.get("redirect", {}).get(c, [])])
                       for r in runs if r["workers"] == workers}
            ratio_cell = ratio(spreads.get(OURS), {g: spreads.get(g) for g in PULPCORE},
                               True, digits)
            lines.append(f"| c{c} | " + " | ".join(cell(spreads[n], "{:.0f}") for n in names)
                         + f" | {ratio_cell} |")
        lines.append("")
    return lines


def _cold_runs(found: dict) -> str:
    """Which apps' runs had the upstream send the 1 GiB file (bench/ondemand.py counts it
    in the upstream's access log); a run that did not measured a saved artifact."""
    parts = []
    for name, values in found.items():
        if name in ("hashing", "upstream") or values.get("status") != "ran":
            continue
        counts = [r.get("large_upstream_fetches") for r in values["runs"]]
        parts.append(f"{name} {counts}" if None not in counts else f"{name} not counted")
        if any(isinstance(n, int) and n < 1 for n in counts):
            parts[-1] += " (**a run not cold**)"
    return ("Upstream fetches of the 1 GiB file per run (0: answered from a saved artifact, "
            "not cold): " + ("; ".join(parts) or "no app ran") + ".")


def _values(runs: list[dict], key: str) -> list[float]:
    """``key`` of each run that has it (older results lack the newer measures)."""
    return [r[key] for r in runs if key in r]


def ondemand_table(found: dict | None) -> list[str]:
    if not found:
        return []
    lines = ["## On-demand (cold: every request streams from upstream), 1 worker, cache off",
             "", "| | TTFB median ms (50 x 1 MiB) | TTFB p90 ms | 1 GiB GB/s | 1 GiB: server "
             "CPU s | probe ms during the 1 GiB file, median | max |",
             "|---|---|---|---|---|---|---|"]
    hashing = (found.get("hashing") or {}).get("runs") or []
    for name, values in found.items():
        if name == "hashing":
            continue
        if values.get("status") != "ran":
            lines.append(f"| {name} | {values['status']}: {values.get('error', '')} "
                         f"(log: {_path(values.get('log'))}) | | | | | |")
            continue
        runs = values["runs"]
        lines.append(f"| {name} | {cell(spread([r['ttfb_ms_median'] for r in runs]), '{:.1f}')}"
                     f" | {cell(spread([r['ttfb_ms_p90'] for r in runs]), '{:.1f}')}"
                     f" | {cell(spread([r['large_gbps'] for r in runs]), '{:.2f}')}"
                     f" | {cell(spread(_values(runs, 'large_server_cpu_s')), '{:.1f}')}"
                     f" | {cell(spread(_values(runs, 'probe_ms_median')), '{:.0f}')}"
                     f" | {cell(spread(_values(runs, 'probe_ms_max')), '{:.0f}')} |")
    if hashing:
        digests = ", ".join(hashing[0]["digests"])
        lines += ["", f"Hashing limit ({digests} of the 1 GiB file in memory, one thread "
                  f"per digest on {hashing[0]['cores']} cores, measured before each app run): "
                  f"{cell(spread([r['gbps'] for r in hashing]), '{:.2f}')} GB/s, "
                  f"{cell(spread(_values(hashing, 'cpu_seconds')), '{:.1f}')}"
                  " CPU s."]
    lines += ["", _cold_runs(found)]
    return [*lines, ""]


def _profile_cells(found: dict) -> str:
    """The flame graph's link, samples and heaviest frames; or why there is none."""
    if found.get("status") != "recorded":
        reason = str(found.get("error", "no reason recorded")).replace("|", "\\|")
        return f"profile: failed: {reason} | | "
    name = os.path.basename(found["file"])
    samples = "?" if found.get("samples") is None else f"{found['samples']:,}"
    errors = f" ({found['errors']:,} errors)" if found.get("errors") else ""
    heaviest = "; ".join(f"`{t['frame']}` {t['self_share']:.0%}" for t in found.get("top", []))
    return f"[{name}]({found['file']}) | {samples}{errors} | {heaviest}"


def _native_cells(found: dict) -> str:
    """perf's heaviest shared objects, linked to its report; or why there are none."""
    if "native" in found:
        below = found["native"]
        top = "; ".join(f"`{t['dso']}` {t['share']:.0%}" for t in below.get("top", []))
        samples = "" if below.get("samples") is None else f" ({below['samples']:,} samples)"
        user = "" if below.get("kernel", True) else ", user time only: no kernel share"
        return f"[{top or 'no samples'}]({found['native_file']}){samples}{user}"
    if "native_error" in found:
        return "perf: " + str(found["native_error"]).replace("|", "\\|")
    return ""


def profiles_table(results: dict) -> list[str]:
    """The flame graphs of this run (``bench/profiles.py``), by scenario: links relative
    to the report, or "profile: failed: <reason>"."""
    found = results.get("profiles") or []
    if not found:
        return []
    from bench.profiles import SCENARIOS

    lines = ["## Profiles (py-spy flame graphs, perf below Python)", "",
             "After each scenario's measured runs of a contender, one more run with py-spy "
             "sampling the server's processes 100 times a second without stopping them "
             "(`--nonblocking`); CPU only, idle threads left out. That run's figures are in "
             "no table above (JSON: `profiles[].run`). Open an SVG in a browser: hover for "
             "a box's samples, click to zoom, Ctrl-F to search. Self time: a function's "
             "samples not spent in the functions it called, as a share of all samples. "
             "Below Python, perf sampled the same run (every thread, user and kernel time, "
             "`bench/native.py`): the shared objects with the most samples, linked to "
             "perf's whole report.", "",
             "| scenario | contender | workers | flame graph | samples | most self time "
             "| below Python (perf) |",
             "|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(SCENARIOS)}
    for p in sorted(found, key=lambda p: order.get(p["scenario"], len(order))):
        scenario = p["scenario"] + (f" (c{p['connections']})" if "connections" in p else "")
        lines.append(f"| {scenario} | {p['contender']} | {p['workers']} | "
                     f"{_profile_cells(p)} | {_native_cells(p)} |")
    return [*lines, ""]


def measured_points(results: dict) -> list[tuple[str, list[float | None]]]:
    """(label, each run's ``other_cores``) of every measured point in ``results``;
    None for a run that predates the figure (``bench/otherload.py``)."""
    found: list[tuple[str, list[float | None]]] = []

    def add(label: str, runs: list[dict]) -> None:
        if runs:
            found.append((label, [r.get("other_cores") for r in runs]))

    for e in results["runs"]:
        name = f"{e['contender']} {e['workers']}w"
        for c, runs in e.get("small", {}).items():
            add(f"{name} published c{c}", runs)
        for scenario in ("large", "slow", "burst"):
            add(f"{name} {scenario}", e.get(scenario) or [])
    for e in (results.get("objects") or {}).get("runs", []):
        for c, runs in e.get("redirect", {}).items():
            add(f"{e['contender']} {e['workers']}w object storage c{c}", runs)
    for name, held in (results.get("held") or {}).items():
        if isinstance(held, dict) and "runs" in held:
            add(f"{name} 1w held", held["runs"])
    for name, runs in (results.get("ondemand") or {}).items():
        if isinstance(runs, dict) and "runs" in runs:
            add(f"{name} on-demand" if name != "hashing" else "hashing limit", runs["runs"])
    return found


def other_work(results: dict) -> list[str]:
    """What the machine did besides the bench: the points measured while other processes
    used ≥ :data:`otherload.LOADED_CORES` cores (``bench/otherload.py``), or that none
    were, or that the run predates the figure."""
    from bench.otherload import LOADED_CORES, loaded

    points = measured_points(results)
    figures = [v for _, runs in points for v in runs if v is not None]
    runs = sum(len(r) for _, r in points)
    if not figures:
        return ["Other work during the runs: not recorded (results older than "
                "`bench/otherload.py`).", ""]
    busy = [(label, max(v for v in r if v is not None)) for label, r in points
            if any(loaded(v) for v in r)]
    head = (f"Other work during the runs (`bench/otherload.py`: CPU of processes that are "
            f"not the bench's, per second of each run): {len(figures)} of {runs} runs "
            f"recorded it; median {spread(figures).median:.2f} cores, max "  # type: ignore[union-attr]
            f"{max(figures):.2f}. ")
    if not busy:
        return [head + f"No point ran beside ≥ {LOADED_CORES} cores of other work.", ""]
    return [head + f"**{len(busy)} of {len(points)} points ran beside ≥ {LOADED_CORES} "
            "cores of other work** (their figures are not a quiet machine's): "
            + "; ".join(f"{label} (max {v:.2f})" for label, v in busy) + ".", ""]


def _loop(found: dict) -> str:
    loaded = found.get("uvloop_processes")
    if not loaded:
        return "not checked"
    return f"uvloop mapped in {loaded['mapped']} of {loaded['processes']} processes"


def status_table(results: dict) -> list[str]:
    lines = ["## Contenders", "",
             "Event loop: processes of the server's family (supervisor and workers) whose "
             "memory maps hold uvloop's extension module, read from `/proc/<pid>/maps` "
             "after the warm-up.", "",
             "| contender | workers | status | event loop | log |", "|---|---|---|---|---|"]
    for r in results["runs"]:
        state = r["status"] + (f": {r['error']}" if r.get("error") else "")
        lines.append(f"| {r['contender']} | {r['workers']} | {state} | {_loop(r)} | "
                     f"{_path(r.get('log'))} |")
    return [*lines, ""]


def _path(path: str | None) -> str:
    """A log path relative to the repository (they live under ``.dev/bench/logs``)."""
    if not path:
        return ""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"`{os.path.relpath(path, root) if path.startswith(root) else path}`"


def _counts(found: dict | None) -> str:
    if not found:
        return "not measured"
    return (f"{found['queries_per_request']:.1f} SQL queries, "
            f"{found['hops_per_request']:.1f} thread hops")


def _seconds(meta: dict) -> str:
    found = meta.get("small_seconds") or {}
    return ", ".join(f"{v:g} s at c{c}" for c, v in found.items()) or f"{meta['seconds']:g} s"


def _profiles_mode(on: bool, json_name: str) -> str:
    if not on:
        return "off"
    return (f"on: one more run per scenario with py-spy and perf attached, flame graphs "
            f"and perf reports in `{json_name.removesuffix('.json')}-profiles/` (section "
            "Profiles)")


def header(results: dict, json_name: str) -> list[str]:
    meta = results["meta"]
    kind = {"quick": "quick (indicative)", "ondemand": "on-demand comparison only",
            "smoke": "smoke (a tooling check, not results)"}.get(record.kind_of(meta), "full")
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        f"# Benchmark {meta['started']}, {kind}", "",
        f"Generated by `bench/run.py` from `{json_name}`; do not edit by hand.", "",
        "| | |", "|---|---|",
        f"| commit | `{meta['commit']}` |",
        f"| started / finished (UTC) | {meta['started']} / {meta['finished']} |",
        f"| status | {meta['status']} |",
        f"| machine | {meta['machine']}: {meta['cpus']} cores, {meta['cpu_model']}; load "
        f"average {meta['load_average_start']} at start, {meta.get('load_average_end')} at end |",
        f"| mode | {kind}: workers {meta['workers']}, clients {meta['concurrency']}, "
        f"small-file wrk runs of {_seconds(meta)}, {meta['seconds']:g} s on the 1 GiB file, "
        f"{meta['repeats']} runs per point |",
        f"| pinning | {meta['pinning']} |",
        *([f"| profiles | {_profiles_mode(meta['profiles'], json_name)} |"]
          if "profiles" in meta else []),
        f"| versions | {versions} |", "",
    ]
    if meta["quick"] or meta.get("smoke"):
        lines += ["**Indicative only.** Short runs on a shared machine: ratios keep one "
                  "significant digit; quote full runs, not this.", ""]
    if meta.get("scenarios"):
        lines += [f"Scenarios: {', '.join(meta['scenarios'])}.", ""]
    return [*lines,
            "Cells: median of the runs (min-max). Ratios compare medians; > 1 favours us "
            f"(`{OURS}`); for latency, RSS and connections the ratio is theirs / ours. Each "
            "ratio names the variant it is quoted against (the faster pulpcore-content, "
            "the better nginx) and any variant that was not measured. `*`: the two "
            "min-max ranges overlap, the difference is within the run-to-run spread.", ""]


def markdown(results: dict, json_name: str) -> str:
    digits = 1 if results["meta"]["quick"] or results["meta"].get("smoke") else 2
    hops = results.get("hops") or {}
    lines = [*header(results, json_name), *other_work(results), *status_table(results)]
    for workers in sorted({r["workers"] for r in results["runs"]}):
        lines += worker_table(results, workers, digits)
    lines += [*burst_table(results), *held_table(results.get("held")),
              *cache_table(results, digits),
              *objects_table(results.get("objects"), digits),
              *ondemand_table(results.get("ondemand")),
              "Per published-file request, counted in-process (exact): "
              f"ours {_counts(hops.get('asgi'))}; pulpcore-content "
              f"{_counts(hops.get('pulpcore-content'))}.", "",
              *profiles_table(results)]
    kind = record.kind_of(results["meta"])
    if kind in ("full", "smoke"):
        from bench import goals

        lines += ["## Goals (issue #18)", ""]
        if kind == "smoke":
            lines += ["A smoke run: the figures show the evaluation works; no verdict is "
                      "given from fewer than 3 runs per point.", ""]
        lines += goals.table(results)
    return "\n".join(lines) + "\n"


def charts(results: dict, stem: str) -> list[str]:
    """One PNG per worker count: small-file req/s and 1 GiB GB/s (medians)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    levels = [str(c) for c in results["meta"]["concurrency"]]
    for workers in sorted({r["workers"] for r in results["runs"]}):
        runs = [r for r in results["runs"] if r["workers"] == workers and r["status"] == "ran"]
        if not runs:
            continue
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        width = 0.8 / len(runs)
        for i, run in enumerate(runs):
            medians = [(spread(_small(c, "rps")(run)) or Spread(0, 0, 0, 0)).median
                       for c in levels]
            left.bar([j + i * width for j in range(len(levels))], medians, width,
                     label=run["contender"])
        left.set_xticks([j + 0.4 - width / 2 for j in range(len(levels))],
                        [f"c{c}" for c in levels])
        left.set_yscale("log")
        left.set_title(f"4 KiB files, req/s, median ({workers} worker(s), log scale)")
        left.legend(fontsize=7)
        right.bar([r["contender"] for r in runs],
                  [(spread([x["bytes_per_s"] / 1e9 for x in r["large"]])
                    or Spread(0, 0, 0, 0)).median for r in runs])
        right.set_title("1 GiB file, 8 clients, GB/s, median")
        right.tick_params(axis="x", labelsize=7, rotation=30)
        path = f"{stem}-w{workers}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def main() -> None:
    """``python -m bench.report RESULTS.json``: rewrite its markdown and charts, e.g. after
    a run killed too hard to write them (the JSON is saved after every run)."""
    import json
    import sys

    path = sys.argv[1]
    with open(path) as source:
        results = json.load(source)
    stem = path.removesuffix(".json")
    with open(stem + ".md", "w") as out:
        out.write(markdown(results, os.path.basename(path)))
    print("\n".join([stem + ".md", *charts(results, stem)]))


if __name__ == "__main__":
    main()
