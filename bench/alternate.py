"""Timing the box and its peer side by side, the way every bench here does it."""

from __future__ import annotations

import statistics
from collections.abc import Callable

Measure = Callable[[int], float]  # seconds one run takes, given the round number


def side_by_side(rounds: int, ours: Measure, theirs: Measure) -> tuple[float, float]:
    """The median seconds of ``ours`` and of ``theirs`` over ``rounds`` rounds. Which
    goes first alternates, so neither profits from the other's warm caches."""
    times: tuple[list[float], list[float]] = ([], [])
    for n in range(rounds):
        order = [(ours, times[0]), (theirs, times[1])]
        for measure, taken in order if n % 2 == 0 else reversed(order):
            taken.append(measure(n))
    return statistics.median(times[0]), statistics.median(times[1])
