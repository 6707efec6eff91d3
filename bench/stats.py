"""Spread of repeated runs and honest rounding of ratios (pure functions, no I/O)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of ``n`` runs of one point."""

    median: float
    low: float
    high: float
    n: int

    def overlaps(self, other: Spread) -> bool:
        """True when the two min-max ranges share a value: the difference between the
        medians is within the run-to-run spread."""
        return self.low <= other.high and other.low <= self.high


def spread(values: Sequence[float]) -> Spread | None:
    """The :class:`Spread` of ``values``; ``None`` for no values."""
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def significant(value: float, digits: int) -> str:
    """``value`` rounded to ``digits`` significant digits, without an exponent:
    ``significant(74.37, 1) == "70"``, ``significant(0.0027, 2) == "0.0027"``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    decimals = digits - 1 - exponent
    rounded = round(value, decimals)
    return f"{rounded:.{max(decimals, 0)}f}"


def number(value: float, fmt: str) -> str:
    """``value`` with ``fmt`` (a ``str.format`` pattern); "inf" stays readable."""
    return "inf" if math.isinf(value) else fmt.format(value)
