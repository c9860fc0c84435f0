"""How clearly the protocol picked: each loss's base (step 1) and each nuisance pick, by the best
configuration's lead over the runner-up of its search.

Every factor is changed from the tuned base, so a base picked within noise should be said so. From
the step-1 rows (``design`` ``tune_base:*``, or ``phase`` ``tune_base`` where there is no design), per
loss: the configurations' mean selection metric (validation top-1) over the selection seeds, the best
minus the runner-up (``margin``), and its standard error:

* several selection seeds: the standard error of the per-seed differences (both configurations ran
  on the same seeds, so the difference is paired);
* one seed: the two-proportion binomial standard error ``sqrt(p1 (1 - p1) / n + p2 (1 - p2) / n)``
  on the validation set's ``n`` images, which is conservative for two models scored on the same
  images (their errors are positively correlated). ``n`` is read from the accuracies themselves: the
  least common denominator of the recorded values (each is correct / n).

``within_noise`` is True when the margin is under one standard error. The same lead is computed for
each nuisance pick against the other configurations of its search (:func:`nuisance_margins`), and
put in words by :func:`margin_sentence`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from supcon_ray.designs import is_nuisance_search, is_tune_base
from supcon_ray.labels import format_label
from supcon_ray.study.trials import Phase

#: The largest validation set whose size is read back from its accuracies.
MAX_VALIDATION_IMAGES = 1_000_000
#: How far a recorded accuracy may lie from the fraction ``correct / n`` read back from it: far above the
#: rounding of a float (about 1e-16) and far below one image in a million (1e-6). The same 1e-9 as the
#: statistics' resolution (``supcon_ray.stats.tolerance.RTOL``), kept here because the study layer does not
#: import the statistics.
FRACTION_TOLERANCE = 1e-9


def validation_images(values: pd.Series) -> int | None:
    """The validation set's size implied by accuracies recorded as ``correct / n`` (None if they are not)."""
    n = 1
    for v in pd.Series(values).dropna().astype(float):
        f = Fraction(v).limit_denominator(MAX_VALIDATION_IMAGES)
        if abs(float(f) - v) > FRACTION_TOLERANCE:
            return None
        n = n * f.denominator // math.gcd(n, f.denominator)
        if n > MAX_VALIDATION_IMAGES:
            return None
    return n if n > 1 else None


def base_margins(trials: pd.DataFrame, select: str = "val_top1") -> dict[str, dict[str, dict[str, Any]]]:
    """``{study: {loss: {best, runner_up, margin, se, se_basis, validation_images, within_noise}}}`` for
    every loss with at least two completed step-1 configurations."""
    if select not in trials or not {"design", "phase"} & set(trials):
        return {}
    step1 = (trials["design"].map(is_tune_base) if "design" in trials
             else trials["phase"] == Phase.TUNE_BASE)
    rows = trials[step1 & (trials["status"] == "completed") & trials[select].notna()]
    if "study" not in rows:
        rows = rows.assign(study="study")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (study, loss), g in rows.groupby(["study", "loss"], sort=True):
        lead = _lead(g, "setting", select)
        if lead is not None:
            out.setdefault(str(study), {})[str(loss)] = lead
    return out


def _lead(g: pd.DataFrame, config: str, select: str, picked: str | None = None) -> dict[str, Any] | None:
    """The best configuration's lead over the runner-up among ``g``'s rows (configurations told apart by
    the column ``config``), with its standard error; ``None`` with fewer than two configurations. ``picked``
    names the configuration that was chosen (ties are broken by the design's order, not known here)."""
    means = g.groupby(config)[select].mean().sort_values(ascending=False, kind="stable")
    if len(means) < 2 or (picked is not None and picked not in means.index):
        return None
    if picked is not None:
        means = pd.concat([means[[picked]], means.drop(picked)])
    best, runner = str(means.index[0]), str(means.index[1])
    margin = float(means.iloc[0] - means.iloc[1])
    by_seed = g.pivot_table(index="seed", columns=config, values=select, aggfunc="mean")
    paired = (by_seed[best] - by_seed[runner]).dropna()
    n_val = validation_images(g[select])
    if len(paired) >= 2:
        se, basis = float(paired.std(ddof=1) / math.sqrt(len(paired))), f"{len(paired)} selection seeds (paired)"
    elif n_val:
        p1, p2 = float(means.iloc[0]), float(means.iloc[1])
        se = math.sqrt(p1 * (1 - p1) / n_val + p2 * (1 - p2) / n_val)
        basis = f"binomial, {n_val} validation images, one seed"
    else:
        se, basis = math.nan, "unknown (one seed and no validation set size)"
    return {"best": best, "runner_up": runner, "best_mean": float(means.iloc[0]), "runner_up_mean": float(means.iloc[1]),
            "margin": margin, "se": se, "se_basis": basis, "validation_images": n_val,
            "within_noise": bool(np.isfinite(se) and margin < se)}


def nuisance_margins(trials: pd.DataFrame, picks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each nuisance pick (a manifest's ``decisions["nuisance"]`` records: loss, factor, setting, select and
    ``best``) with the lead of the picked configuration over the runner-up of its search, as for step 1:
    ``{loss, factor, setting, pick, mean, configurations, margin}`` (``margin`` None with one configuration).
    The search's rows are the selection runs of that (loss, factor, setting); configurations are told apart
    by the values of the searched keys, labelled as settings are (:func:`supcon_ray.labels.format_label`)."""
    out = []
    search = trials[trials["design"].map(is_nuisance_search)] if "design" in trials else trials.iloc[:0]
    for rec in picks:
        best = (rec.get("best") or {}).get("nuisance") or {}
        select = rec.get("select", "val_top1")
        keys = [k for k in best if k in search.columns]
        g = search[(search["loss"] == rec["loss"]) & (search["factor"] == rec["factor"])
                   & (search["setting"] == rec["setting"]) & (search["status"] == "completed")]
        margin = None
        if keys and select in g and len(g):
            g = g[g[select].notna()]
            labels = [format_label(dict(zip(keys, row))) for row in g[keys].itertuples(index=False)]
            margin = _lead(g.assign(_config=labels), "_config", select, format_label(best)) if len(g) else None
        out.append({"loss": rec["loss"], "factor": rec["factor"], "setting": rec["setting"], "pick": best,
                    "mean": (rec.get("best") or {}).get("mean"), "configurations": rec.get("configurations"),
                    "select": select, "margin": margin})
    return out


def margin_sentence(margin: dict[str, Any]) -> str:
    """The lead in words: ``lead 0.0069 over the runner-up lr=7.125, SE 0.026 (...): picked within noise``."""
    se = margin.get("se")
    se_text = f", SE {se:.2g} ({margin.get('se_basis')})" if se is not None and math.isfinite(se) else ""
    return (f"lead {margin['margin']:.4f} over the runner-up {margin['runner_up']}{se_text}"
            + (": picked within noise" if margin.get("within_noise") else ""))
