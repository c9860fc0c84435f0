"""Variance components of one loss on one factor: ``y_sr = mu + a_s + e_sr``.

``s`` runs over the factor's settings and ``r`` over the seed replicates of a setting. Estimates
use the one-way ANOVA method of moments (unbalanced designs through the usual ``n0``):

* seed std ``sigma_e = sqrt(MSW)``, pooled within settings;
* between-setting variance ``sigma_a^2 = (MSB - MSW) / n0``, *truncated at zero* when seed noise
  explains all the spread (the untruncated value is kept for tests, where truncation would bias);
* a 95% interval for ``sigma_a`` by the modified large-sample method for a difference of two mean
  squares (Graybill and Wang 1980, with the cross terms ``G12`` and ``H12`` of Ting, Burdick, Graybill,
  Jeyaratnam and Lu 1990; Burdick and Graybill 1992, eq. 3.8-3.9), which is close to nominal for
  normal data, cheap and never negative. Without the cross terms the interval is too wide when
  ``MSW`` is not small next to ``MSB``.
* ``bound``: for a metric in [0, 1] (an accuracy) ``sigma_a`` cannot exceed 0.5, the std of a
  population of settings split evenly between 0 and 1; the upper end is capped there, so an interval
  never claims more uncertainty than the metric can have.

With one seed per setting ``MSW`` cannot be estimated: ``sigma_a`` then includes seed noise, and
:attr:`Components.seed_noise_removed` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from .tolerance import exact_sum, snap


@dataclass(frozen=True)
class SettingTable:
    """Per-setting sufficient statistics of one loss: count, mean and within-setting sum of squares."""

    settings: tuple[str, ...]
    n: np.ndarray
    mean: np.ndarray
    ss: np.ndarray

    @classmethod
    def from_values(cls, settings: pd.Series, values: pd.Series) -> "SettingTable":
        """Settings in sorted order; each mean and sum of squares from correctly rounded sums, so the
        same runs in any order give the same table on every machine, and seeds equal within
        :data:`~.tolerance.RTOL` have a sum of squares of exactly 0."""
        df = pd.DataFrame({"s": settings.to_numpy(), "y": values.to_numpy(dtype=float)})
        names, n, mean, ss = [], [], [], []
        for name, y in df.groupby("s", sort=True)["y"]:
            y = y.to_numpy()
            m = exact_sum(y) / len(y)
            names.append(str(name))
            n.append(float(len(y)))
            mean.append(m)
            deviations = snap(y - m, np.abs(y).max())  # a single run has no within-setting spread
            ss.append(exact_sum(deviations**2))
        return cls(tuple(names), np.array(n), np.array(mean), np.array(ss))

    def subset(self, settings: list[str]) -> "SettingTable":
        """The rows of ``settings``, in that order."""
        idx = [self.settings.index(s) for s in settings]
        return SettingTable(tuple(settings), self.n[idx], self.mean[idx], self.ss[idx])


def between_variance(n: np.ndarray, mean: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """Untruncated method-of-moments ``sigma_a^2`` along the last axis (vectorised for resampling).

    Needs at least 2 settings. Where no setting has two seeds, ``MSW`` is taken as 0.
    """
    k = n.shape[-1]
    total = n.sum(-1)
    grand = (n * mean).sum(-1) / total
    deviation = snap(mean - grand[..., None], np.abs(mean).max(-1, keepdims=True))  # equal means: exactly 0
    msb = (n * deviation**2).sum(-1) / (k - 1)
    dfw = total - k
    msw = np.where(dfw > 0, ss.sum(-1) / np.maximum(dfw, 1), 0.0)
    n0 = (total - (n**2).sum(-1) / total) / (k - 1)
    return snap(msb - msw, msb + msw) / n0


def _mls_interval(msb: float, msw: float, df1: float, dfw: float, n0: float, alpha: float) -> tuple[float, float]:
    """Two-sided ``1 - alpha`` interval for ``(E[MSB] - E[MSW]) / n0`` (Ting et al. 1990, each side at
    ``alpha / 2``); with no seed degrees of freedom, the interval of ``E[MSB] / n0`` alone."""
    a = alpha / 2
    f1_hi, f1_lo = sps.chi2.ppf(1 - a, df1) / df1, sps.chi2.ppf(a, df1) / df1  # F(a; df1, inf), F(1 - a; df1, inf)
    g1, h1 = 1 - 1 / f1_hi, 1 / f1_lo - 1
    if dfw <= 0:
        return (1 - g1) * msb / n0, (1 + h1) * msb / n0
    f2_hi, f2_lo = sps.chi2.ppf(1 - a, dfw) / dfw, sps.chi2.ppf(a, dfw) / dfw
    g2, h2 = 1 - 1 / f2_hi, 1 / f2_lo - 1
    f12_hi, f12_lo = sps.f.ppf(1 - a, df1, dfw), sps.f.ppf(a, df1, dfw)
    g12 = ((f12_hi - 1) ** 2 - (g1 * f12_hi) ** 2 - h2**2) / f12_hi
    h12 = ((1 - f12_lo) ** 2 - (h1 * f12_lo) ** 2 - g2**2) / f12_lo
    est = msb - msw
    low = est - math.sqrt(max((g1 * msb) ** 2 + (h2 * msw) ** 2 + g12 * msb * msw, 0.0))
    high = est + math.sqrt(max((h1 * msb) ** 2 + (g2 * msw) ** 2 + h12 * msb * msw, 0.0))
    return low / n0, high / n0


@dataclass(frozen=True)
class Components:
    """Variance components of one loss on one factor (see the module docstring)."""

    n_settings: int
    n_runs: int
    grand_mean: float
    seed_std: float  # NaN without replicates
    setting_var_raw: float  # untruncated sigma_a^2; NaN with one setting
    setting_std: float  # sqrt(max(0, setting_var_raw))
    setting_std_ci95: tuple[float, float]
    seed_noise_removed: bool


def components(table: SettingTable, confidence: float = 0.95, bound: float | None = None) -> Components:
    """Estimate ``sigma_e`` and ``sigma_a`` with a Graybill-Wang / Ting interval for ``sigma_a``
    (upper end capped at ``bound``, when given)."""
    k, total = len(table.settings), float(table.n.sum())
    grand = float((table.n * table.mean).sum() / total) if total else math.nan
    dfw = total - k
    msw = float(table.ss.sum() / dfw) if dfw > 0 else math.nan
    seed_std = math.sqrt(msw) if dfw > 0 else math.nan
    if k < 2:
        return Components(k, int(total), grand, seed_std, math.nan, math.nan, (math.nan, math.nan), dfw > 0)
    raw = float(between_variance(table.n, table.mean, table.ss))
    n0 = (total - float((table.n**2).sum()) / total) / (k - 1)
    msb = raw * n0 + (msw if dfw > 0 else 0.0)
    low, high = _mls_interval(msb, msw if dfw > 0 else 0.0, k - 1, dfw, n0, 1 - confidence)
    if bound is not None:
        low, high = min(low, bound**2), min(high, bound**2)
    ci = (math.sqrt(max(low, 0.0)), math.sqrt(max(high, 0.0)))
    return Components(k, int(total), grand, seed_std, raw, math.sqrt(max(raw, 0.0)), ci, dfw > 0)


def mean_interval(m: float, se: float, q: float, bounded: bool) -> tuple[float, float]:
    """The interval ``m -+ q se`` of a mean; with ``bounded`` (a mean of values in [0, 1], an accuracy) the
    same interval built on the logit scale, ``expit(logit(m) -+ q se / (m (1 - m)))`` (the delta method),
    which never leaves [0, 1]: away from the edges it is the symmetric one to first order, near an edge
    it is skewed inwards and keeps its width on the other side instead of being cut. A mean at 0 or 1
    with noise (which values in [0, 1] cannot have) keeps the symmetric interval."""
    if not bounded or se == 0 or math.isnan(se) or not 0 < m < 1:
        return m - q * se, m + q * se
    centre, half = math.log(m / (1 - m)), q * se / (m * (1 - m))
    return 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half)))


def setting_means(table: SettingTable, confidence: float = 0.95, bounded: bool = False) -> dict[str, dict[str, float]]:
    """Each setting's mean, count, t-interval from that setting's own seeds (``n - 1`` degrees of
    freedom; seed noise is often uneven across settings, e.g. seeds split between chance and above
    where training starts to collapse, so a pooled std would be too wide at most settings and too
    narrow at those) and drop from the best setting's mean. A setting with one run has no interval.
    ``bounded``: the values lie in [0, 1], and so does every interval (:func:`mean_interval`)."""
    best = float(np.max(table.mean)) if len(table.mean) else math.nan
    out = {}
    for s, n, m, ss in zip(table.settings, table.n, table.mean, table.ss):
        if n > 1:
            low, high = mean_interval(float(m), math.sqrt(ss / (n - 1) / n),
                                      float(sps.t.ppf(0.5 + confidence / 2, n - 1)), bounded)
        else:
            low = high = math.nan
        out[s] = {"mean": float(m), "n": int(n), "ci95": [float(low), float(high)], "drop_from_best": best - float(m)}
    return out
