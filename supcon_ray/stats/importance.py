"""Hyperparameter importance with its uncertainty and a noise baseline.

Optuna's fANOVA evaluator is fitted to the recorded trials (nothing is re-run). Importances are
shares of the metric's variance that the fitted forest attributes to each hyperparameter's main
effect (``normalize=False``, so they need not sum to 1). Each is reported as the mean and sd over
several fixed evaluator seeds. Because a forest fitted to pure noise still attributes variance, the
same evaluation is repeated with the metric randomly permuted across trials
(:data:`~.settings.IMPORTANCE_PERMUTATIONS` times): the permutation p-value is
``(1 + #{permuted >= observed}) / (1 + permutations)`` (both at the first evaluator seed), and a
hyperparameter is *above noise* when that p-value is below alpha.

Only a sampled search supports this: in a one-at-a-time design a key that one setting changes
together with another (a learning rate re-tuned per optimizer) cannot be separated from it, and an
importance there would credit a factor with effects it does not have. The caller passes the trials
of random, QMC or grid searches only (:func:`sampled`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from .settings import ALPHA, EVALUATOR_SEEDS, IMPORTANCE_PERMUTATIONS
from .tolerance import at_least
from supcon_ray.designs import RANDOM_DESIGNS

N_TREES = 32


def sampled(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of sampled searches (random, QMC, grid), the only design importance is fitted to."""
    if "design" not in trials:
        return trials.iloc[:0]
    return trials[trials["design"].fillna("").isin(RANDOM_DESIGNS)]


def _distributions(g: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    import optuna

    dists = {}
    for c in names:
        col = g[c]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col) and col.notna().all():
            lo, hi = float(col.min()), float(col.max())
            dists[c] = optuna.distributions.FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 10)
        else:
            # map(str), not astype(str): pandas' string dtype keeps missing values as NaN, which
            # cannot be sorted with strings (a key set in one study of a combined report only)
            dists[c] = optuna.distributions.CategoricalDistribution(sorted(col.map(str).unique()))
    return dists


def _fanova(g: pd.DataFrame, dists: dict[str, Any], values: np.ndarray, seed: int) -> dict[str, float]:
    import optuna

    study = optuna.create_study(direction="maximize")
    for (_, row), value in zip(g.iterrows(), values):
        params = {c: (float(row[c]) if isinstance(d, optuna.distributions.FloatDistribution) else str(row[c]))
                  for c, d in dists.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(value)))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed, n_trees=N_TREES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # normalize=False is flagged experimental
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=False)
    return {k: float(v) for k, v in imp.items()}


def importance(trials: pd.DataFrame, metric: str, hyperparameters: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per loss and varied hyperparameter: ``{mean, sd, noise_mean, noise_sd, p_value, above_noise}``.

    ``trials`` are the scored trials that enter the statistics; a loss needs at least 4 of them and
    one hyperparameter that varies.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for loss, g in trials.groupby("loss", sort=True):
        varied = [c for c in hyperparameters if c in g and g[c].nunique(dropna=False) > 1]
        if not varied or len(g) < 4:
            continue
        dists = _distributions(g, varied)
        y = g[metric].to_numpy(dtype=float)
        real = [_fanova(g, dists, y, s) for s in EVALUATOR_SEEDS]
        rng = np.random.default_rng(0)
        noise = [_fanova(g, dists, rng.permutation(y), EVALUATOR_SEEDS[0]) for _ in range(IMPORTANCE_PERMUTATIONS)]
        out[str(loss)] = {}
        for c in varied:
            r = np.array([d.get(c, 0.0) for d in real])
            z = np.array([d.get(c, 0.0) for d in noise])
            mean, sd, nm, ns = float(r.mean()), float(r.std(ddof=1)), float(z.mean()), float(z.std(ddof=1))
            p = float((1 + np.sum(at_least(z, r[0]))) / (1 + len(z)))  # a tie (e.g. both 0) counts
            out[str(loss)][c] = {"mean": mean, "sd": sd, "noise_mean": nm, "noise_sd": ns, "p_value": p,
                                 "above_noise": bool(p < ALPHA)}
    return out
