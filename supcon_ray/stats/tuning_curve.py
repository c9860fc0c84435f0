"""Expected best validation accuracy versus the number of configurations tried.

Dodge et al. (2019) plot the expected maximum of ``k`` configurations drawn at random from a
search. The curve is only meaningful when the configurations *are* random draws from one space
(random, QMC or grid search), the same for every loss, with the same budget: one-at-a-time settings
are not such draws. :func:`expected_max_unbiased` is Tang et al.'s (2020) unbiased estimator (a
size-``k`` subset drawn without replacement); :func:`expected_max` keeps Dodge et al.'s
with-replacement form. The band resamples configurations, paired across losses.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import gammaln

from supcon_ray.designs import RANDOM_DESIGNS

from .agreement import PAPER_PAIR
from .scoring import completed


def expected_max(values: Any, k: int) -> float:
    """Expected maximum of ``k`` draws *with* replacement from ``values`` (Dodge et al. 2019):
    ``sum_i v_(i) ((i/N)^k - ((i-1)/N)^k)`` over the sorted values."""
    v = np.sort(np.asarray(values, dtype=float))
    n = v.size
    if n == 0 or k < 1:
        return math.nan
    i = np.arange(1, n + 1)
    return float(np.sum(v * ((i / n) ** k - ((i - 1) / n) ** k)))


def _subset_weights(n: int, k: int) -> np.ndarray:
    """P(the i-th smallest of n is the maximum of a random k-subset) = C(i-1, k-1) / C(n, k)."""
    i = np.arange(1, n + 1)
    w = np.zeros(n)
    ok = i >= k
    log_w = (gammaln(i[ok]) - gammaln(k) - gammaln(i[ok] - k + 1)) - (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))
    w[ok] = np.exp(log_w)
    return w


def expected_max_unbiased(values: Any, k: int) -> float:
    """Tang et al.'s (2020) unbiased estimate of the expected best of ``k`` i.i.d. configurations:
    the mean maximum over all size-``k`` subsets of the ``N`` observed ones (``1 <= k <= N``)."""
    v = np.sort(np.asarray(values, dtype=float))
    if not 1 <= k <= v.size:
        return math.nan
    return float(np.sum(v * _subset_weights(v.size, k)))


def curves_with_band(per_loss: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> dict[str, dict[str, list[float]]]:
    """Per loss: ``k``, the unbiased curve and a paired percentile bootstrap band for ``k <= N / 2``.

    The band stops at ``N / 2``: a bootstrap resample holds about 63% of the distinct configurations,
    so the resampled expected maximum of ``k`` close to ``N`` is pulled below the estimate and can
    never exceed the observed maximum (at ``k = N`` the band would sit entirely at or under the
    curve). ``low`` and ``high`` have one entry per ``k`` from 1 to ``N // 2`` (none when ``N < 2``).

    ``per_loss`` maps each loss to its configurations' scores, row ``i`` being the same configuration
    for every loss (equal budgets are the caller's contract).
    """
    sizes = {v.size for v in per_loss.values()}
    if len(sizes) != 1:
        raise ValueError("expected-max curves need the same configurations for every loss")
    n = sizes.pop()
    ks = list(range(1, n + 1))
    weights = np.stack([_subset_weights(n, k) for k in ks])  # (k, n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    out = {}
    for loss, v in per_loss.items():
        boot = np.sort(v[idx], axis=1) @ weights.T  # (n_boot, k)
        low, high = np.percentile(boot, [50 * (1 - confidence), 50 * (1 + confidence)], axis=0)
        band = n // 2
        out[loss] = {"k": ks, "mean": (weights @ np.sort(v)).tolist(), "low": low[:band].tolist(),
                     "high": high[:band].tolist()}
    return out


def expected_max_section(trials: pd.DataFrame, metric: str = "val_top1") -> dict[str, Any]:
    """Expected best ``metric`` vs k, from randomly sampled configurations only, paired across losses."""
    out: dict[str, Any] = {"metric": metric, "available": False, "curves": {}, "n_configs": 0}
    if metric not in trials:
        out["reason"] = f"The trials have no {metric!r} column, so the expected-best curve cannot be drawn."
        return out
    design = trials["design"].fillna("") if "design" in trials else pd.Series("", index=trials.index)
    rows = completed(trials[design.isin(RANDOM_DESIGNS)], metric)
    if rows.empty:
        out["reason"] = ("No randomly sampled configurations (random, QMC or grid search) in these studies: "
                         "one-at-a-time settings are not random draws, so the curve would not mean what it claims.")
        return out
    keys = ["study", "factor", "setting"] if "study" in rows else ["factor", "setting"]
    means = rows.groupby(["loss", *keys])[metric].mean().unstack("loss")
    losses = [x for x in means.columns if x in PAPER_PAIR] or list(means.columns)
    means = means[losses].dropna()
    if len(means) < 2:
        out["reason"] = "Fewer than 2 sampled configurations completed for every loss."
        return out
    out.update(available=True, n_configs=int(len(means)),
               curves=curves_with_band({str(x): means[x].to_numpy(dtype=float) for x in losses}))
    return out
