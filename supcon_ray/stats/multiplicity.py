"""Adjusting p-values for the number of claims a report makes."""

from __future__ import annotations

import math

import numpy as np


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control); NaN entries stay NaN and are
    not counted in the family."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def holm_with_pooled(p_units: list[float], groups: list[list[int]],
                     p_pooled: list[float]) -> tuple[list[float], list[float]]:
    """Holm over every unit's p-value and each group's pooled p-value, as one family. A group of one
    unit pools nothing: its pooled test is that unit's test, counted once, with the unit's adjusted p."""
    extra = [i for i, g in enumerate(groups) if len(g) != 1]
    adjusted = holm(list(p_units) + [p_pooled[i] for i in extra])
    units = adjusted[: len(p_units)]
    pooled, k = [], len(p_units)
    for g in groups:
        if len(g) == 1:
            pooled.append(units[g[0]])
        else:
            pooled.append(adjusted[k])
            k += 1
    return units, pooled
