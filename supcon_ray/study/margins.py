"""How clearly the protocol picked: each loss's base (step 1) and each nuisance pick, against every other
configuration of its search.

Every factor is changed from the tuned base, so a base picked within noise should be said so. From
the step-1 rows (``design`` ``tune_base:*``, or ``phase`` ``tune_base`` where there is no design), per
loss: the configurations' mean selection metric (validation top-1) over the selection seeds, the best
minus the runner-up (``margin``), and the standard error of each lead of the pick over another configuration:

* several selection seeds: the standard error of the per-seed differences (both configurations ran
  on the same seeds, so the difference is paired; training-seed noise is in it);
* one seed: the two-proportion binomial variance ``p1 (1 - p1) / n + p2 (1 - p2) / n`` on the validation
  set's ``n`` images (conservative for two models scored on the same images, whose errors are
  positively correlated) plus, where the base was replicated over seeds in the study, twice the
  training-seed variance of the selection metric over those replicates (one seed per configuration
  leaves each configuration's training noise in its score). ``n`` is the ``val_images`` column where
  the trials recorded it; rows written before it was recorded fall back to the accuracies' least
  common denominator (each is correct / n), which is a divisor of the true size and so can only
  overstate the error (``validation_images_source`` says which).

Which configurations are within noise of the pick: Gupta's subset selection (1965), with each lead's
own standard error: configuration ``i`` stays in the subset when ``mean_pick - mean_i <= d SE_i``, ``d``
the one-sided 95% point of the largest of ``k - 1`` standard normals with correlation 1/2 (1.645 for two
configurations, 2.16 for five). Whatever the true means, the subset holds the truly best configuration
with probability at least 0.95: a pick that is truly worse than another configuration is flagged at
least 95% of the time, and two exactly tied configurations 90% of the time (``P(|Z| <= 1.645)``; a lead
under one standard error flagged them 68% of the time). ``within_noise`` is True when the subset holds
another configuration than the pick, and ``within_noise_of_pick`` counts them. The same lead is
computed for each nuisance pick against the other configurations of its search
(:func:`nuisance_margins`), and put in words by :func:`margin_sentence`.
"""

from __future__ import annotations

import functools
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


#: The confidence that Gupta's subset holds the truly best configuration.
SUBSET_CONFIDENCE = 0.95
SUBSET_RULE = "Gupta's subset selection, 95%"


@functools.lru_cache(maxsize=None)
def subset_constant(k: int, confidence: float = SUBSET_CONFIDENCE) -> float:
    """Gupta's ``d`` for ``k`` configurations: ``P(max_{i<k} Z_i <= d) = confidence`` for ``k - 1`` standard
    normals with correlation 1/2 (each the difference of two configurations' standardised errors from the
    pick's): ``integral phi(w) Phi(w + d sqrt 2)^(k - 1) dw = confidence``."""
    from scipy import integrate, optimize, stats  # waits: only a report with step-1 rows needs it

    if k < 2:
        return math.nan

    def coverage(d: float) -> float:
        f = lambda w: stats.norm.pdf(w) * stats.norm.cdf(w + d * math.sqrt(2)) ** (k - 1)  # noqa: E731
        return integrate.quad(f, -10, 10)[0] - confidence

    return float(optimize.brentq(coverage, 0.0, 10.0, xtol=1e-6))


def base_margins(trials: pd.DataFrame, select: str = "val_top1") -> dict[str, dict[str, dict[str, Any]]]:
    """``{study: {loss: {best, runner_up, best_mean, runner_up_mean, margin, se, se_basis, validation_images,
    validation_images_source, configurations, within_noise_of_pick, rule, within_noise}}}`` for every loss
    with at least two completed step-1 configurations."""
    if select not in trials or not {"design", "phase"} & set(trials):
        return {}
    step1 = (trials["design"].map(is_tune_base) if "design" in trials
             else trials["phase"] == Phase.TUNE_BASE)
    rows = trials[step1 & (trials["status"] == "completed") & trials[select].notna()]
    if "study" not in rows:
        rows = rows.assign(study="study")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (study, loss), g in rows.groupby(["study", "loss"], sort=True):
        same = trials[trials["loss"] == loss] if "study" not in trials else trials[(trials["study"] == study)
                                                                                   & (trials["loss"] == loss)]
        lead = _lead(g, "setting", select, seed_var=_base_seed_variance(same, select))
        if lead is not None:
            out.setdefault(str(study), {})[str(loss)] = lead
    return out


def _base_seed_variance(rows: pd.DataFrame, select: str) -> tuple[float, int] | None:
    """The training-seed variance of ``select`` over the base's replicate runs in the study (the study-phase
    runs at a factor's base setting ``<factor>=x1``, or analysed in several factors; each run once) and
    how many there are; ``None`` with fewer than two."""
    if not {"trial_id", "factor", "setting", "status"} <= set(rows) or select not in rows:
        return None
    study = rows[(rows["status"] == "completed") & rows[select].notna()]
    if "phase" in study:
        study = study[study["phase"].astype(str) == str(Phase.STUDY)]
    shared = study.groupby("trial_id")["factor"].transform("nunique") > 1
    at_base = study["setting"].astype(str) == study["factor"].astype(str) + "=x1"
    runs = study[shared | at_base].drop_duplicates("trial_id")
    if len(runs) < 2:
        return None
    return float(runs[select].astype(float).var(ddof=1)), len(runs)


def _validation_size(g: pd.DataFrame, select: str) -> tuple[int | None, str]:
    """The validation set's size: recorded in the rows, else read back from the accuracies."""
    if "val_images" in g:
        recorded = pd.to_numeric(g["val_images"], errors="coerce").dropna()
        if len(recorded) and recorded.nunique() == 1 and recorded.iloc[0] > 0:
            return int(recorded.iloc[0]), "recorded"
    n = validation_images(g[select])
    return n, ("inferred from the accuracies (rows without val_images)" if n else "unknown")


def _lead(g: pd.DataFrame, config: str, select: str, picked: str | None = None,
          seed_var: tuple[float, int] | None = None, members: list[str] | None = None) -> dict[str, Any] | None:
    """The pick's lead over every other configuration among ``g``'s rows (configurations told apart by
    the column ``config``), each with its standard error, and Gupta's subset of the configurations
    within noise of the pick; ``None`` with fewer than two configurations. ``picked`` names the
    configuration that was chosen (ties are broken by the design's order, not known here);
    ``seed_var`` the training-seed variance of the base's replicates and their count."""
    means = g.groupby(config)[select].mean().sort_values(ascending=False, kind="stable")
    if len(means) < 2 or (picked is not None and picked not in means.index):
        return None
    if picked is not None:
        means = pd.concat([means[[picked]], means.drop(picked)])
    best, runner = str(means.index[0]), str(means.index[1])
    margin = float(means.iloc[0] - means.iloc[1])
    by_seed = g.pivot_table(index="seed", columns=config, values=select, aggfunc="mean")
    n_val, source = _validation_size(g, select)

    def se_of(other: str) -> tuple[float, str]:
        paired = (by_seed[best] - by_seed[other]).dropna()
        if len(paired) >= 2:
            return float(paired.std(ddof=1) / math.sqrt(len(paired))), f"{len(paired)} selection seeds (paired)"
        if not n_val:
            return math.nan, "unknown (one seed and no validation set size)"
        p1, p2 = float(means[best]), float(means[other])
        var = p1 * (1 - p1) / n_val + p2 * (1 - p2) / n_val
        basis = f"binomial, {n_val} validation images, one seed"
        if seed_var is not None:
            var += 2 * seed_var[0]
            basis += f", plus training-seed noise from the base's {seed_var[1]} replicates"
        return math.sqrt(var), basis

    d = subset_constant(len(means))
    se, basis = se_of(runner)
    subset = [best]
    for other in means.index[1:]:
        s_i, _ = se_of(str(other))
        if np.isfinite(s_i) and means[best] - means[other] <= d * s_i:
            subset.append(str(other))
    inside = len(subset) - 1
    if members is not None:
        members.extend(subset)
    return {"best": best, "runner_up": runner, "best_mean": float(means.iloc[0]), "runner_up_mean": float(means.iloc[1]),
            "margin": margin, "se": se, "se_basis": basis, "validation_images": n_val,
            "validation_images_source": source, "configurations": int(len(means)), "within_noise_of_pick": inside,
            "rule": SUBSET_RULE, "within_noise": inside > 0}


def within_noise(g: pd.DataFrame, config: str, select: str = "val_top1", picked: str | None = None) -> list[str]:
    """The configurations of one search within noise of its pick (the pick first): Gupta's subset with each
    lead's own standard error, the rule of :func:`base_margins` (``g``: the search's completed runs, told apart
    by the column ``config``; ``picked``: the chosen one, else the best mean). A lone configuration is its own
    subset."""
    members: list[str] = []
    if _lead(g, config, select, picked, members=members) is None:
        means = g.groupby(config)[select].mean()
        return [str(picked if picked is not None else means.idxmax())] if len(means) else []
    return members


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
        won = ((rec.get("best") or {}).get("fidelity") or {}).get("epochs")
        if won is not None and "epochs" in g:  # successive halving: the lead at the rung the pick won
            g = g[g["epochs"] == won]
        margin = None
        if keys and select in g and len(g):
            g = g[g[select].notna()]
            labels = [format_label(dict(zip(keys, row))) for row in g[keys].itertuples(index=False)]
            margin = _lead(g.assign(_config=labels), "_config", select, format_label(best)) if len(g) else None
        out.append({"loss": rec["loss"], "factor": rec["factor"], "setting": rec["setting"], "pick": best,
                    "mean": (rec.get("best") or {}).get("mean"), "configurations": rec.get("configurations"),
                    "select": select, "margin": margin,
                    **({"fidelity": (rec.get("best") or {})["fidelity"]} if won is not None else {})})
    return out


def margin_sentence(margin: dict[str, Any]) -> str:
    """The lead in words: ``lead 0.0069 over the runner-up lr=7.125, SE 0.026 (...): picked within noise
    (2 of 5 other configurations within noise of the pick, Gupta's subset selection, 95%)``. A record
    from before the subset rule (no ``within_noise_of_pick``) keeps its own words."""
    se = margin.get("se")
    se_text = f", SE {se:.2g} ({margin.get('se_basis')})" if se is not None and math.isfinite(se) else ""
    text = f"lead {margin['margin']:.4f} over the runner-up {margin['runner_up']}{se_text}"
    if margin.get("within_noise_of_pick") is not None and margin.get("configurations"):
        k, others = margin["within_noise_of_pick"], margin["configurations"] - 1
        if k:
            text += (f": picked within noise ({k} of {others} other configuration{'s' if others != 1 else ''} "
                     f"within noise of the pick, {margin.get('rule', SUBSET_RULE)})")
        return text
    return text + (": picked within noise" if margin.get("within_noise") else "")
