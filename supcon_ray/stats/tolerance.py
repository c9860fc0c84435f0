"""Decisions on computed statistics that do not depend on the last bit.

Floating-point results differ between machines by a few units in the last place: a sum taken in
another order, another processor's BLAS kernel, another SIMD ``exp``. A quantity that is exactly
zero in exact arithmetic (the spread of equal setting means, the difference of two equal spreads)
then comes out as ``+1e-17`` on one machine, ``0`` on another and ``-1e-17`` on a third, and every
decision taken on its sign (a bootstrap exceedance, a tie, a zero variance, a direction) flips with
it. Every such decision in :mod:`supcon_ray.stats` goes through this module, on one rule:

    two computed values are equal when they differ by at most ``RTOL`` times their scale

where the scale is the size of what was subtracted (the operands' magnitudes, or the data's).
``RTOL = 1e-9`` sits far above rounding error (the reductions here lose at most a few hundred ulps,
about ``1e-13`` relative) and far below any difference that means something (one image in a
billion). Sums of data use :func:`exact_sum` (correctly rounded, so independent of order), so
reordering settings or seeds changes no statistic at all.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

#: Relative resolution of every comparison between computed statistics.
RTOL = 1e-9


def exact_sum(values: Iterable[float]) -> float:
    """The correctly rounded sum (``math.fsum``): the same on every machine and in any order."""
    return math.fsum(float(v) for v in values)


def snap(x: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray:
    """``x`` with every entry of magnitude at most ``RTOL * scale`` set to exactly 0 (``x`` being a
    difference of quantities of size ``scale``)."""
    x = np.asarray(x, dtype=float)
    return np.where(np.abs(x) <= RTOL * np.abs(scale), 0.0, x)


def sign(x: float, scale: float) -> int:
    """The sign of a difference of quantities of size ``scale``: 0 when it is within the resolution."""
    return int(np.sign(snap(x, scale)))


def at_least(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """``a >= b``, a tie counting as reached: ``a >= b - RTOL (1 + |b|)`` (resampled statistics
    against an observed one: a draw equal to it in exact arithmetic is counted on every machine)."""
    b = np.asarray(b, dtype=float)
    return np.asarray(a) >= b - RTOL * (1 + np.abs(b))


def at_most(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """``a <= b``, a tie counting as reached (the mirror of :func:`at_least`)."""
    b = np.asarray(b, dtype=float)
    return np.asarray(a) <= b + RTOL * (1 + np.abs(b))
