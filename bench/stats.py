"""Pure arithmetic over measurements: percentiles, CPU tick deltas, per-request ratios. No I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of values already sorted ascending; NaN when there are none."""
    if not sorted_values:
        return math.nan
    assert 0 < pct <= 100, "pct is in (0, 100]"
    rank = math.ceil(pct / 100 * len(sorted_values))
    return float(sorted_values[max(rank, 1) - 1])


def latency_summary_us(values_us: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values_us)
    return {
        "p50_us": percentile(ordered, 50),
        "p90_us": percentile(ordered, 90),
        "p99_us": percentile(ordered, 99),
        "max_us": float(ordered[-1]) if ordered else math.nan,
        "mean_us": sum(ordered) / len(ordered) if ordered else math.nan,
    }


def cpu_us_per_request(
    before: Mapping[str, int], after: Mapping[str, int], requests: int, ticks_per_second: int
) -> dict[str, float]:
    """utime+stime tick deltas of each named process, as CPU microseconds per request."""
    if requests <= 0:
        return {name: math.nan for name in after}
    scale = 1_000_000 / ticks_per_second / requests
    return {name: (after[name] - before.get(name, 0)) * scale for name in after}


def counter_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Counters that moved between two samples (a key missing before counts from zero)."""
    moved = {key: after[key] - before.get(key, 0.0) for key in after}
    return {key: value for key, value in moved.items() if value}


def ratio(numerator: float, denominator: float) -> float:
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator
