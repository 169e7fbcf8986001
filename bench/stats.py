"""Summaries of repeated measurements: every figure is a median with its min–max spread.

The machine is shared and noisy, so one run of anything means little: each
scenario repeats its measurement in blocks (or rounds) and reports the median
over blocks with the smallest and largest block, keeping the raw repetitions.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any

Summary = dict[str, Any]
"""``{"median": float, "min": float, "max": float, "reps": [float, ...]}``."""


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0–1) of ``values`` by linear interpolation. Raises ``ValueError`` if empty."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(reps: Sequence[float]) -> Summary:
    """Median and min–max over repetitions, with the repetitions themselves."""
    if not reps:
        raise ValueError("summary of no repetitions")
    return {"median": statistics.median(reps), "min": min(reps), "max": max(reps), "reps": list(reps)}


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Summary:
    """Summary of per-round ratios ``a[i] / b[i]``: both measured in the same round, back to back."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators for {len(denominators)} denominators")
    return summarize([a / b for a, b in zip(numerators, denominators, strict=True) if b])


def block_summary(blocks: Sequence[Sequence[float]]) -> dict[str, Summary]:
    """p50 and p99 of each block of samples, summarised over blocks."""
    return {
        "p50": summarize([percentile(block, 0.50) for block in blocks]),
        "p99": summarize([percentile(block, 0.99) for block in blocks]),
    }


def subsample(values: Sequence[float], k: int, seed: int = 0) -> list[float]:
    """At most ``k`` of ``values``, chosen at random (reproducibly), to keep a distribution's shape in the JSON."""
    if len(values) <= k:
        return list(values)
    return random.Random(seed).sample(list(values), k)


def alternating(items: Sequence[Any], round_index: int) -> list[Any]:
    """``items`` in the order to run them in round ``round_index``: ABC, then CBA, then ABC…

    Every system goes first as often as last, so a drift in the machine's load
    during the run does not favour one of them.
    """
    return list(items) if round_index % 2 == 0 else list(reversed(items))
