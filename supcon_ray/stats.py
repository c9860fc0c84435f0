"""Statistics of a stability study, on the Parquet trials table (a pandas DataFrame).

Scoring rule (used everywhere): completed and diverged trials are scored, diverged ones at the
value recorded for them (chance level, see :mod:`supcon_ray.engine`); failed trials (infrastructure
errors) have no score and are counted separately. Dropping diverged runs would make the less
stable method look more stable, so they are never dropped.

* :func:`spread`: std (ddof=1), range and IQR of a sample.
* :func:`factor_headline`: per factor, each loss's spread across all its trials of that factor
  (settings and seeds pooled), the ratio CE spread / SupCon spread with a 95% bootstrap interval
  (``scipy.stats.bootstrap``, percentile method, fixed seed) and a Brown-Forsythe test
  (``scipy.stats.levene(center="median")``), plus one plain sentence.
* :func:`noise_floor`: spread across seeds at a fixed setting next to spread across settings.
* :func:`expected_max`: expected best value of ``k`` trials drawn with replacement (Dodge et al.
  2019), exact from the empirical distribution.
* :func:`importance`: Optuna's fANOVA importances from the recorded trials (nothing is re-run).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

MIN_TRIALS_PER_LOSS = 4  # below this a spread comparison is not worth a sentence
ALPHA = 0.05


def scored(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Trials that carry a score: completed and diverged (failed ones are excluded, and counted)."""
    return trials[trials["status"].isin(["completed", "diverged"]) & trials[metric].notna()]


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    counts = trials["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in ("completed", "diverged", "failed")}


def spread(values: Any) -> dict[str, float]:
    """``n``, ``mean``, ``std`` (ddof=1; NaN for n < 2), ``range`` and ``iqr`` of ``values``."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "range": math.nan, "iqr": math.nan}
    q75, q25 = np.percentile(v, [75, 25])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else math.nan,
        "range": float(v.max() - v.min()),
        "iqr": float(q75 - q25),
    }


def _std_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    # A resample with no spread at all gives an extreme but finite ratio, so percentiles stay defined.
    return np.std(a, ddof=1, axis=axis) / np.maximum(np.std(b, ddof=1, axis=axis), 1e-12)


def spread_ratio_ci(ce: Any, supcon: Any, confidence: float = 0.95, n_resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float, float]:
    """``std(ce) / std(supcon)`` and its percentile bootstrap interval (each loss resampled on its own)."""
    a, b = np.asarray(ce, dtype=float), np.asarray(supcon, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.std(a, ddof=1) / np.std(b, ddof=1)) if a.size > 1 and b.size > 1 else math.nan
    if a.size < 2 or b.size < 2:
        return ratio, math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap((a, b), _std_ratio, n_resamples=n_resamples, confidence_level=confidence,
                            method="percentile", vectorized=True, paired=False, rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return ratio, float(low), float(high)


def brown_forsythe(ce: Any, supcon: Any) -> tuple[float, float]:
    """Brown-Forsythe test of equal variances: ``(statistic, p-value)``; NaN when not computable."""
    a, b = np.asarray(ce, dtype=float), np.asarray(supcon, dtype=float)
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan, math.nan
    res = sps.levene(a, b, center="median")
    return float(res.statistic), float(res.pvalue)


def verdict(factor: str, n_settings: int, n_ce: int, n_supcon: int, ratio: float, low: float, high: float,
            p: float) -> str:
    """One plain sentence on what the data support."""
    if n_settings < 2:
        return f"{factor}: only one setting was run, so there is no spread across settings to compare."
    if min(n_ce, n_supcon) < MIN_TRIALS_PER_LOSS or math.isnan(low) or math.isnan(p):
        return (f"{factor}: not enough trials to tell (SupCon {n_supcon}, CE {n_ce}; "
                f"at least {MIN_TRIALS_PER_LOSS} scored trials per loss are needed).")
    detail = f"ratio CE/SupCon std {ratio:.2f}, 95% CI [{low:.2f}, {high:.2f}], Brown-Forsythe p = {p:.3g}"
    if low > 1 and p < ALPHA:
        return f"{factor}: SupCon's accuracy varies less than CE's across these settings ({detail})."
    if high < 1 and p < ALPHA:
        return f"{factor}: CE's accuracy varies less than SupCon's across these settings ({detail})."
    if low > 1 or high < 1 or p < ALPHA:
        less = "SupCon's" if ratio > 1 else "CE's"
        return (f"{factor}: weak evidence that {less} accuracy varies less: the interval and the test "
                f"disagree ({detail}); more seeds or settings would settle it.")
    return f"{factor}: the data do not show a difference in spread between SupCon and CE ({detail})."


def factor_headline(trials: pd.DataFrame, metric: str, seed: int = 0) -> list[dict[str, Any]]:
    """Section 1: one entry per factor (see module docstring)."""
    out = []
    for factor, group in trials.groupby("factor", sort=True):
        entry: dict[str, Any] = {"factor": factor, "n_settings": int(group["setting"].nunique()), "losses": {}}
        values = {}
        for loss, g in group.groupby("loss"):
            s = scored(g, metric)
            values[loss] = s[metric].to_numpy(dtype=float)
            entry["losses"][loss] = {**spread(values[loss]), **status_counts(g), "settings": int(g["setting"].nunique())}
        ce, sup = values.get("ce"), values.get("supcon")
        if ce is not None and sup is not None:
            ratio, low, high = spread_ratio_ci(ce, sup, seed=seed)
            stat, p = brown_forsythe(ce, sup)
            entry.update(ratio_ce_over_supcon=ratio, ratio_ci95=[low, high], brown_forsythe_stat=stat,
                         brown_forsythe_p=p)
            entry["verdict"] = verdict(factor, entry["n_settings"], len(ce), len(sup), ratio, low, high, p)
        else:
            present = ", ".join(sorted(values)) or "none"
            entry["verdict"] = f"{factor}: SupCon and CE are both needed to compare spreads (losses here: {present})."
        out.append(entry)
    return out


def noise_floor(trials: pd.DataFrame, metric: str) -> list[dict[str, Any]]:
    """Section 3: per factor and loss, spread across seeds (pooled within-setting std) and across
    settings (std of the per-setting means)."""
    out = []
    for (factor, loss), g in scored(trials, metric).groupby(["factor", "loss"], sort=True):
        per_setting = g.groupby("setting")[metric]
        variances = per_setting.var(ddof=1).dropna()
        means = per_setting.mean()
        out.append({
            "factor": factor,
            "loss": loss,
            "settings": int(len(means)),
            "seeds_per_setting": float(per_setting.size().mean()),
            "seed_std": float(math.sqrt(variances.mean())) if len(variances) else math.nan,
            "setting_std": float(means.std(ddof=1)) if len(means) > 1 else math.nan,
        })
    return out


def expected_max(values: Any, k: int) -> float:
    """Expected maximum of ``k`` draws with replacement from ``values`` (Dodge et al. 2019, exact).

    With the values sorted ``v_1 <= ... <= v_N``: ``sum_i v_i * ((i/N)^k - ((i-1)/N)^k)``.
    """
    v = np.sort(np.asarray(values, dtype=float))
    n = v.size
    if n == 0 or k < 1:
        return math.nan
    i = np.arange(1, n + 1)
    return float(np.sum(v * ((i / n) ** k - ((i - 1) / n) ** k)))


def expected_max_curves(trials: pd.DataFrame, metric: str = "val_top1") -> dict[str, list[float]]:
    """Section 4: per loss, expected best ``metric`` after k = 1..N trials (all factors pooled)."""
    out = {}
    for loss, g in scored(trials, metric).groupby("loss", sort=True):
        v = g[metric].to_numpy(dtype=float)
        out[loss] = [expected_max(v, k) for k in range(1, v.size + 1)]
    return out


def importance(trials: pd.DataFrame, metric: str, seed: int = 0) -> dict[str, dict[str, float]]:
    """Section 5: per loss, fANOVA importance of each hyperparameter that varied among its trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from .storage import HYPERPARAMETER_FIELDS

    names = [f.name for f in HYPERPARAMETER_FIELDS if f.name not in ("loss", "seed")]
    out = {}
    for loss, g in scored(trials, metric).groupby("loss", sort=True):
        varied = [c for c in names if c in g and g[c].nunique(dropna=False) > 1]
        if not varied or len(g) < 2:
            continue
        dists = {}
        for c in varied:
            col = g[c]
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col) and col.notna().all():
                lo, hi = float(col.min()), float(col.max())
                dists[c] = optuna.distributions.FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 10)
            else:
                dists[c] = optuna.distributions.CategoricalDistribution(sorted(col.astype(str).unique()))
        study = optuna.create_study(direction="maximize")
        for _, row in g.iterrows():
            params = {c: (float(row[c]) if isinstance(d, optuna.distributions.FloatDistribution) else str(row[c]))
                      for c, d in dists.items()}
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(row[metric])))
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        out[loss] = {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    return out
