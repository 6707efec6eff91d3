"""Reading one run's results for the goals (``bench/goals.py``), fail-closed: a figure is
the :class:`Spread` of a point's runs, an absent input raises :class:`Missing` naming it,
and :func:`judge` turns a row's evaluation into a verdict: "met", "missed", or "not
evaluated" (an input missing, or a figure with fewer than :data:`MIN_RUNS` runs)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from bench.report import Values, entry
from bench.stats import Spread, spread

#: Runs a point needs before a verdict is given ("medians of ≥ 3 runs", issue #18).
MIN_RUNS = 3

MET, MISSED, NOT_EVALUATED = "met", "missed", "not evaluated"


class Missing(Exception):
    """An input a row needs is not in the results; the message says which."""


class Inputs:
    """The results of one run, read for the goals: every figure is a :class:`Spread` of a
    point's runs, and the fewest runs any figure had is remembered."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.meta = results["meta"]
        self.fewest: int | None = None

    def spread(self, values: list[float], what: str, negative: bool = False) -> Spread:
        """The :class:`Spread` of ``values``; Missing when there are none or one is not a
        figure: not a number, NaN, infinite, or negative (unless ``negative``: a
        difference may be). Such a value is a broken measure, and a NaN would make
        :meth:`faster` quietly pick another contender."""
        for value in values:
            figure(value, what, negative)
        found = spread(values)
        if found is None:
            raise Missing(f"{what}: not measured")
        self.fewest = found.n if self.fewest is None else min(self.fewest, found.n)
        return found

    def run(self, name: str, workers: int) -> dict:
        """The run entry of ``name`` with ``workers``; Missing if absent or not started."""
        found = entry(self.results, name, workers)
        if found is None:
            raise Missing(f"{name} ({workers} worker(s)) did not run")
        if found.get("status") == "did not start":
            raise Missing(f"{name} ({workers} worker(s)) did not start: {found.get('error')}")
        return found

    def point(self, name: str, workers: int, values: Values, what: str) -> Spread:
        return self.spread(values(self.run(name, workers)), f"{name} {workers}w {what}")

    def faster(self, group: tuple[str, ...], measure: Callable[[str], Spread],
               higher: bool = True) -> tuple[str, Spread]:
        """The best member of ``group`` by median (every member must be measured)."""
        found = {name: measure(name) for name in group}
        name = (max if higher else min)(found, key=lambda n: found[n].median)
        return name, found[name]

    def worker_counts(self, needed: Iterable[int]) -> list[int]:
        """The plan's worker counts; Missing unless each of ``needed`` is among them (an
        empty plan would leave a row "every worker count" with nothing to judge)."""
        for workers in needed:
            self.workers(workers)
        return list(self.meta["workers"])

    def levels(self) -> list[str]:
        levels = [str(c) for c in self.meta.get("concurrency", [])]
        if not levels:
            raise Missing("no concurrency levels in the results")
        return levels

    def workers(self, workers: int) -> None:
        if workers not in self.meta.get("workers", []):
            raise Missing(f"{workers} worker(s) not in this run's plan")


def figure(value: Any, what: str, negative: bool = False) -> float:
    """``value`` when it is a finite number (≥ 0 unless ``negative``); else Missing."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        raise Missing(f"{what}: {value!r} is not a figure")
    if value < 0 and not negative:
        raise Missing(f"{what}: {value!r} cannot be negative")
    return float(value)


def judge(results: dict, evaluate: Callable[[Inputs], tuple[str, bool]]) -> tuple[str, str]:
    """(result text, verdict) of one row: "not evaluated" when an input is missing or a
    figure has fewer than :data:`MIN_RUNS` runs."""
    inp = Inputs(results)
    try:
        text, met = evaluate(inp)
    except Missing as missing:
        return str(missing), NOT_EVALUATED
    except (KeyError, TypeError, ZeroDivisionError) as error:  # malformed or zero inputs
        return f"input unusable ({type(error).__name__}: {error})", NOT_EVALUATED
    if inp.fewest is not None and inp.fewest < MIN_RUNS:
        return f"{text} ({inp.fewest} run(s) per point, {MIN_RUNS} needed)", NOT_EVALUATED
    return text, MET if met else MISSED
