"""Divergence as its own result: counts per loss and an exact test between the losses."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats as sps

from .scoring import divergence_rate, status_counts


def divergence_summary(trials: pd.DataFrame, pair: tuple[str, str] | None = None) -> dict[str, Any]:
    """Per loss ``{completed, diverged, failed, divergence_rate}``, and Fisher's exact test of equal
    divergence rates between the ``pair`` (default: CE and SupCon; or the two losses, where exactly two
    ran), two-sided; NaN when either loss finished nothing."""
    per_loss = {}
    for loss, g in trials.groupby("loss", sort=True):
        counts = status_counts(g)
        per_loss[str(loss)] = {**counts, "divergence_rate": divergence_rate(counts)}
    out: dict[str, Any] = {"per_loss": per_loss, "fisher_p": math.nan, "odds_ratio": math.nan}
    if pair is None:
        pair = ("ce", "supcon") if {"ce", "supcon"} <= set(per_loss) or len(per_loss) != 2 else \
            tuple(sorted(per_loss, key=lambda x: (x != "ce", x)))
    ce, sup = per_loss.get(pair[0]), per_loss.get(pair[1])
    if ce and sup and ce["completed"] + ce["diverged"] and sup["completed"] + sup["diverged"]:
        res = sps.fisher_exact([[ce["diverged"], ce["completed"]], [sup["diverged"], sup["completed"]]])
        out["fisher_p"], out["odds_ratio"] = float(res.pvalue), float(res.statistic)
    return out
