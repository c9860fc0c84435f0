"""A confidence interval by test inversion: every value whose p-value exceeds alpha.

Both questions' intervals are built this way (:mod:`.these_settings`, :mod:`.paired`): the p-value
is evaluated on a grid with the point estimate added, so an interval narrower than a grid step is
still found, and each end is refined by bisection between its last accepted and first rejected value.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

PValues = Callable[[np.ndarray], np.ndarray]


def refine(p_of: PValues, alpha: float, rejected: float, accepted: float, log: bool, steps: int) -> float:
    """Bisect ``steps`` times between a rejected and an accepted value (geometrically when ``log`` and
    both are positive); return the accepted end."""
    for _ in range(steps):
        mid = math.sqrt(rejected * accepted) if log and rejected > 0 else (rejected + accepted) / 2
        if p_of(np.array([mid]))[0] > alpha:
            accepted = mid
        else:
            rejected = mid
    return float(accepted)


def invert(p_of: PValues, grid: np.ndarray, alpha: float, *, log: bool, low_open: float, high_open: float,
           estimate: float, steps: int) -> tuple[float, float]:
    """The set ``{x: p_of(x) > alpha}`` as an interval, searched on ``grid`` plus ``estimate`` (when it
    lies strictly inside the grid) and refined by ``steps`` bisections per end; an end accepted at the
    grid's edge is ``low_open`` / ``high_open``. ``(nan, nan)`` when no value is accepted."""
    if math.isfinite(estimate) and grid[0] < estimate < grid[-1]:
        grid = np.union1d(grid, [estimate])
    accepted = np.flatnonzero(p_of(grid) > alpha)
    if not accepted.size:
        return math.nan, math.nan
    first, last = accepted[0], accepted[-1]
    low = low_open if first == 0 else refine(p_of, alpha, grid[first - 1], grid[first], log, steps)
    high = high_open if last == len(grid) - 1 else refine(p_of, alpha, grid[last + 1], grid[last], log, steps)
    return low, high


def agreeing_p(p_of: PValues, grid: np.ndarray, null: float, estimate: float, p_null: float) -> float:
    """The p-value of ``null`` that agrees with :func:`invert`'s interval on the same ``grid``.

    :func:`invert` reports the hull of the accepted values. Where the p-value is not monotone on each side
    of the estimate (a studentised statistic with 1 or 2 seed degrees of freedom, a nuisance parameter
    estimated under each null), a value beyond ``null``, seen from the estimate, can be accepted while
    ``null`` itself is rejected; the hull then contains ``null`` and the test would contradict its own
    interval. This p-value is the largest of ``p_null`` and the p-values of every grid value beyond
    ``null``: it is at most alpha exactly when the interval excludes ``null`` (the test derived from the
    interval), and never below ``p_null``, so the test keeps its level. ``p_null`` is returned as it is
    where the estimate is undefined or equal to ``null``."""
    if math.isnan(estimate) or estimate == null:
        return p_null
    far = grid[grid < null] if estimate > null else grid[grid > null]
    if not far.size:
        return p_null
    return float(max(p_null, float(np.max(p_of(far)))))
