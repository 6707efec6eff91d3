"""What one run of ``bench/run.py`` measures: the command line, turned into a :class:`Plan`.

Three kinds of run: **full** (``make bench``: every scenario, 1 and 2 workers, c16/c64/c256,
≥ 3 runs per point; the only kind the goal table is generated from), **quick**
(``make bench-quick``: 1 worker, c64, indicative) and **smoke** (``--smoke``: a tooling
check of a few seconds per point, any subset of scenarios, concurrency levels and worker
counts, 1 run allowed; its figures are not results and it never updates the goal table).
Every kind but smoke also takes a py-spy flame graph and a perf report per scenario
(``--profiles``, ``bench/profiles.py``, ``bench/native.py``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

#: Every scenario, in the order a run measures them. ``published``: wrk over the 4 KiB
#: files; ``large``: the 1 GiB file; ``slow``: 1,000 slow readers (1 worker); ``burst``:
#: 1,000 arriving clients (1 worker); ``held``: what a held slow connection costs in memory
#: (bench/slowmem.py against the 1 GiB file, 1 worker); ``objects``: 302s to S3 (bench/objects.py);
#: ``ondemand``: cold on-demand downloads; ``counts``: queries and thread hops per request
#: in-process (bench/hops.py).
SCENARIOS = ("published", "large", "slow", "burst", "held", "objects", "ondemand", "counts")
QUICK_SCENARIOS = ("published", "large", "slow", "burst", "objects", "counts")
SMOKE_SCENARIOS = ("published", "objects")

DEFAULT_CONTENDERS = ("asgi-granian,asgi-uvicorn,pulpcore-content,pulpcore-content-uvloop,"
                      "nginx,nginx-copy,asgi-granian-cache,pulpcore-content-cache,"
                      "pulpcore-content-uvloop-cache")
QUICK_CONTENDERS = "asgi-granian,pulpcore-content,pulpcore-content-uvloop,nginx,nginx-copy"
SMOKE_CONTENDERS = "asgi-granian,pulpcore-content,pulpcore-content-uvloop"


@dataclass(frozen=True)
class Plan:
    """What one run measures: seconds per wrk run, runs per point, concurrency levels,
    worker counts, slow-reader and burst clients, how long a start may take, and which
    scenarios."""

    quick: bool
    seconds: float
    repeats: int
    concurrency: tuple[int, ...]
    worker_counts: tuple[int, ...]
    slow_clients: int
    burst_clients: int
    start_timeout: float
    scenarios: frozenset[str] = frozenset(SCENARIOS)
    smoke: bool = False
    #: One more run per scenario with py-spy attached, for a flame graph (bench/profiles.py).
    profiles: bool = False

    def duration(self, connections: int) -> float:
        """Seconds per small-file wrk run at ``connections``: at least ``seconds`` and
        ``connections / 8`` (not in a smoke run). pulpcore-content answers its concurrent
        requests in batches (all of a batch finish together); at ~40-60 req/s a c256
        batch takes ~5 s, so a 10 s window holds two batches and the count jumps by a
        whole batch."""
        return self.seconds if self.smoke else max(self.seconds, connections / 8)

    def warmup(self) -> float:
        """Seconds of wrk before a contender's first point (5; a smoke run's point length
        when shorter)."""
        return min(5.0, self.seconds) if self.smoke else 5.0

    def meta(self) -> dict[str, Any]:
        return {"quick": self.quick, "smoke": self.smoke, "seconds": self.seconds,
                "repeats": self.repeats, "concurrency": list(self.concurrency),
                "workers": list(self.worker_counts),
                "small_seconds": {str(c): self.duration(c) for c in self.concurrency},
                "slow_clients": self.slow_clients, "burst_clients": self.burst_clients,
                "start_timeout": self.start_timeout, "profiles": self.profiles,
                "scenarios": [s for s in SCENARIOS if s in self.scenarios],
                "pinning": "1 worker: server on CPU 0, wrk on CPU 1; 2 workers: unpinned"}


def _levels(text: str, what: str, parser: argparse.ArgumentParser) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        parser.error(f"{what}: expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        parser.error(f"{what}: every value must be at least 1")
    return values


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="make bench / make bench-quick "
                                     "(bench/README.md)")
    parser.add_argument("--quick", action="store_true",
                        help="an indicative subset: 1 worker, c64, 8 s runs, fewer contenders")
    parser.add_argument("--smoke", action="store_true",
                        help="a tooling check, not results: short points (--seconds, "
                             "default 3), 1 run allowed, any --scenarios/--concurrency/"
                             f"--workers (defaults {','.join(SMOKE_SCENARIOS)}, c64, 1 "
                             f"worker, contenders {SMOKE_CONTENDERS})")
    parser.add_argument("--only-ondemand", action="store_true",
                        help="just the on-demand comparison")
    parser.add_argument("--contenders", help=f"comma-separated; default {DEFAULT_CONTENDERS} "
                        f"(quick: {QUICK_CONTENDERS})")
    parser.add_argument("--baseline", metavar="PATH",
                        help="also run asgi-granian-baseline: our app imported from the "
                             "source tree at PATH (e.g. `git archive main | tar -x -C PATH`) "
                             "instead of this checkout, for before/after in one run")
    parser.add_argument("--repeats", type=int, help="runs per point (>= 3; smoke: 1)")
    parser.add_argument("--start-timeout", type=float, default=300.0,
                        help="seconds a contender may take to answer after it is started")
    parser.add_argument("--fail-start", default="",
                        help="comma-separated contenders started with an invalid argument, "
                             "to check that a start failure is reported (tooling test)")
    parser.add_argument("--ports", default=os.environ.get("BENCH_PORTS"),
                        help="LOW-HIGH: every server (apps, nginx, moto, the on-demand "
                             "upstream) listens on a loopback port of this range (default "
                             "$BENCH_PORTS, else any free port)")
    parser.add_argument("--profiles", action=argparse.BooleanOptionalAction,
                        help="after each scenario's measured runs, one more with py-spy "
                             "and perf attached, saved as an SVG flame graph and perf's "
                             "report beside the results (default: on, off in --smoke runs)")
    smoke = parser.add_argument_group("smoke runs only")
    smoke.add_argument("--seconds", type=float, help="seconds per point")
    smoke.add_argument("--concurrency", help="comma-separated wrk connection counts")
    smoke.add_argument("--workers", help="comma-separated worker counts")
    smoke.add_argument("--scenarios", help=f"comma-separated, of {','.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    if not args.smoke:
        given = [f"--{name}" for name in ("seconds", "concurrency", "workers", "scenarios")
                 if getattr(args, name) is not None]
        if given:
            parser.error(f"{', '.join(given)}: only with --smoke (full and quick runs "
                         "measure fixed points)")
        if args.repeats is not None and args.repeats < 3:
            parser.error("--repeats must be at least 3: a point's spread needs 3 runs")
    elif args.quick or args.only_ondemand:
        parser.error("--smoke cannot be combined with --quick or --only-ondemand")
    if args.scenarios is not None:
        unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
        if unknown:
            parser.error(f"--scenarios: unknown {', '.join(sorted(unknown))}; "
                         f"choose from {','.join(SCENARIOS)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    args.concurrency_levels = _levels(args.concurrency or "64", "--concurrency", parser)
    args.worker_counts = _levels(args.workers or "1", "--workers", parser)
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    # Profiles are on unless asked otherwise, except in a smoke run (a tooling check):
    # there only with --profiles (e.g. a flame graph of one scenario on the data set).
    profiles = (not args.smoke) if args.profiles is None else args.profiles
    if args.smoke:
        return Plan(False, args.seconds or 3.0, args.repeats or 1, args.concurrency_levels,
                    args.worker_counts, 200, 1000, args.start_timeout,
                    frozenset((args.scenarios or ",".join(SMOKE_SCENARIOS)).split(",")),
                    smoke=True, profiles=profiles)
    repeats = args.repeats or 3
    if args.only_ondemand:
        return Plan(False, 10.0, repeats, (16, 64, 256), (1, 2), 1000, 1000,
                    args.start_timeout, frozenset({"ondemand", "counts"}), profiles=profiles)
    if args.quick:
        return Plan(True, 8.0, repeats, (64,), (1,), 200, 1000, args.start_timeout,
                    frozenset(QUICK_SCENARIOS), profiles=profiles)
    return Plan(False, 10.0, repeats, (16, 64, 256), (1, 2), 1000, 1000, args.start_timeout,
                profiles=profiles)


def contenders(args: argparse.Namespace, plan: Plan) -> str:
    """The contender names of this run (comma-separated)."""
    return args.contenders or (SMOKE_CONTENDERS if plan.smoke else
                               QUICK_CONTENDERS if plan.quick else DEFAULT_CONTENDERS)
