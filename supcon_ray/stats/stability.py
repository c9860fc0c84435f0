"""The stability analysis of a report: one entry per (study, factor), a pooled conclusion, and the
claims they support. Plain data in, plain dicts out (the report's ``--json`` contract); no HTML.

Per factor and loss, :mod:`.variance` estimates seed noise and the between-setting std ``sigma_a``
on completed runs. Only settings with completed runs for both losses are compared, paired by setting
(:mod:`.paired`); unpaired ones are listed and counted. Each factor gets a paired permutation test of
equal ``sigma_a`` and the inverted interval of ``sigma_a(CE) / sigma_a(SupCon)``; the pooled test
over every factor is the report-level conclusion. One Holm family covers every factor test and the
pooled test. A factor whose design cannot reach alpha at all (too few settings) is ``insufficient``,
decided from the design alone. Two sensitivity views are computed the same way: the logit scale
(ceiling effects), and the conservative view, which scores diverged runs at chance and subtracts
nothing for seed noise, so that a setting where some seeds diverge counts as a sensitive one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from . import divergence as div
from .multiplicity import holm
from .paired import PairedResult, compare
from .scoring import completed, logit, scored, status_counts, divergence_rate
from .tuning_curve import RANDOM_DESIGNS, curves_with_band
from .variance import SettingTable, components, setting_means

ALPHA = 0.05
CLAIMS = ("supcon_less_sensitive", "ce_less_sensitive", "no_difference", "insufficient")
PAIR = ("ce", "supcon")


def _fmt_ci(ci: tuple[float, float]) -> str:
    def one(x: float) -> str:
        return "∞" if x == math.inf else ("–" if math.isnan(x) else f"{x:.2f}")
    return f"[{one(ci[0])}, {one(ci[1])}]"


def _tables(rows: pd.DataFrame, metric: str, transform=None, remove_seed_noise: bool = True) -> dict[str, SettingTable]:
    out = {}
    for loss, g in rows.groupby("loss", sort=True):
        y = g[metric].astype(float)
        if transform is not None:
            y = pd.Series(transform(y.to_numpy()), index=y.index)
        table = SettingTable.from_values(g["setting"].astype(str), y)
        if not remove_seed_noise:  # the spread of setting means, seed noise (and divergence) included
            table = SettingTable(table.settings, table.n, table.mean, np.zeros_like(table.ss))
        out[str(loss)] = table
    return out


def _paired(tables: dict[str, SettingTable]) -> tuple[list[str], list[str]]:
    """(paired settings, unpaired settings) between CE and SupCon."""
    if not set(PAIR) <= set(tables):
        every = sorted({s for t in tables.values() for s in t.settings})
        return [], every
    ce, sup = set(tables["ce"].settings), set(tables["supcon"].settings)
    return sorted(ce & sup), sorted(ce ^ sup)


def _view(rows: pd.DataFrame, metric: str, transform=None, remove_seed_noise: bool = True):
    """Paired comparison of one view of the data: ``(result or None, block or None, paired, unpaired, tables)``."""
    tables = _tables(rows, metric, transform, remove_seed_noise)
    paired, unpaired = _paired(tables)
    if len(paired) < 2:
        return None, None, paired, unpaired, tables
    block = (tables["ce"].subset(paired), tables["supcon"].subset(paired))
    return compare([block], ALPHA), block, paired, unpaired, tables


def _result_dict(r: PairedResult | None) -> dict[str, Any]:
    if r is None:
        return {"ratio": math.nan, "ci95": [math.nan, math.nan], "p_value": math.nan, "min_p": math.nan}
    return {"ratio": r.ratio, "ci95": list(r.ci95), "p_value": r.p_value, "min_p": r.min_p,
            "exact": r.exact, "direction": r.direction}


def _claim(r: PairedResult | None, p_adjusted: float) -> str:
    if r is None or r.min_p > ALPHA:
        return "insufficient"
    if p_adjusted < ALPHA:
        return "supcon_less_sensitive" if r.direction > 0 else "ce_less_sensitive"
    return "no_difference"


def _sentence(scope: str, claim: str, r: PairedResult | None, p_adjusted: float, reason: str,
              sigmas: tuple[float, float] = (math.nan, math.nan)) -> str:
    if claim == "insufficient":
        return f"{scope}: cannot tell. {reason}"
    detail = (f"ratio of between-setting std CE/SupCon {r.ratio:.2f}, 95% CI {_fmt_ci(r.ci95)}, "
              f"Holm-adjusted p = {p_adjusted:.3g}")
    if not any(math.isnan(s) for s in sigmas):
        detail = f"std across settings CE {sigmas[0]:.3g}, SupCon {sigmas[1]:.3g}; " + detail
    if claim == "supcon_less_sensitive":
        return f"{scope}: SupCon's accuracy moves less than CE's across these settings ({detail})."
    if claim == "ce_less_sensitive":
        return f"{scope}: CE's accuracy moves less than SupCon's across these settings ({detail})."
    return (f"{scope}: no difference in sensitivity is detectable ({detail}). The interval still allows "
            f"ratios from {_fmt_ci(r.ci95)[1:-1].replace(', ', ' to ')}, so a difference of that size is not ruled out.")


def _insufficient_reason(losses: set[str], paired: list[str], r: PairedResult | None) -> str:
    missing = [x for x in PAIR if x not in losses]
    if missing:
        return f"SupCon and CE are both needed; missing: {', '.join(missing)}."
    if len(paired) < 2:
        return (f"{len(paired)} setting(s) have completed runs for both losses; at least 2 paired settings are needed "
                "(settings run for one loss only are never compared).")
    return (f"With {r.n_settings} paired settings the smallest possible p-value is {r.min_p:.3g}, above "
            f"alpha = {ALPHA}; at least 6 settings are needed for a claim (the pooled test over factors may still decide).")


def _loss_entry(g: pd.DataFrame, table: SettingTable | None) -> dict[str, Any]:
    counts = status_counts(g)
    entry: dict[str, Any] = {**counts, "divergence_rate": divergence_rate(counts)}
    if table is None:
        return {**entry, "mean": math.nan, "seed_std": math.nan, "setting_std": math.nan,
                "setting_std_ci95": [math.nan, math.nan], "settings": {}}
    comp = components(table)
    return {**entry, "mean": comp.grand_mean, "seed_std": comp.seed_std, "setting_std": comp.setting_std,
            "setting_std_ci95": list(comp.setting_std_ci95), "seed_noise_removed": comp.seed_noise_removed,
            "settings": setting_means(table, comp.seed_std)}


def _testable_p(r: PairedResult | None) -> float:
    """A test's p-value if its design can reach alpha at all, else NaN (left out of the Holm family,
    a choice made from the design alone)."""
    return r.p_value if r is not None and r.min_p <= ALPHA else math.nan


def _holm_family(results: list[PairedResult | None], pooled: PairedResult | None) -> tuple[list[float], float]:
    """Holm-adjusted p-values of every factor and of the pooled test, as one family. With a single
    factor the pooled test is that factor's test and is not counted twice."""
    if len(results) == 1:
        adjusted = holm([_testable_p(results[0])])
        return adjusted, adjusted[0]
    adjusted = holm([_testable_p(r) for r in results] + [_testable_p(pooled)])
    return adjusted[:-1], adjusted[-1]


def analyze_factors(trials: pd.DataFrame, metric: str, sensitivity: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every (study, factor) entry and the pooled ``overall`` entry (see the module docstring).

    ``sensitivity=False`` skips the logit and conservative views (for simulations).
    """
    if "study" not in trials:
        trials = trials.assign(study="study")
    views = ["main", "logit", "conservative"] if sensitivity else ["main"]
    results: dict[str, list[PairedResult | None]] = {v: [] for v in views}
    blocks: dict[str, list[tuple[SettingTable, SettingTable]]] = {v: [] for v in views}
    factors: list[dict[str, Any]] = []
    for (study, factor), g in trials.groupby(["study", "factor"], sort=True):
        done = completed(g, metric)
        for view in views:
            rows = scored(g, metric) if view == "conservative" else done
            r, block, paired, unpaired, tables = _view(rows, metric, logit if view == "logit" else None,
                                                       remove_seed_noise=view != "conservative")
            results[view].append(r)
            if block is not None:
                blocks[view].append(block)
            if view == "main":
                losses = {str(x): _loss_entry(lg, tables.get(str(x))) for x, lg in g.groupby("loss", sort=True)}
                factors.append({"study": str(study), "factor": str(factor), "n_settings": int(g["setting"].nunique()),
                                "paired_settings": len(paired), "unpaired_settings": unpaired, "losses": losses,
                                **_result_dict(r), "divergence_fisher_p": div.divergence_summary(g)["fisher_p"],
                                "_reason": _insufficient_reason(set(losses), paired, r)})

    pooled = {v: (compare(blocks[v], ALPHA) if blocks[v] else None) for v in views}
    adjusted, pooled_adjusted = _holm_family(results["main"], pooled["main"])
    for entry, r, p_adj in zip(factors, results["main"], adjusted):
        claim = _claim(r, p_adj)
        sig = tuple(entry["losses"].get(x, {}).get("setting_std", math.nan) for x in PAIR)
        entry.update(p_adjusted=p_adj, claim=claim,
                     sentence=_sentence(f"{entry['study']} / {entry['factor']}", claim, r, p_adj, entry.pop("_reason"), sig))

    o = pooled["main"]
    claim = _claim(o, pooled_adjusted)
    reason = ("No factor has 2 or more settings run for both SupCon and CE." if o is None else
              f"With {o.n_settings} paired settings over all factors the smallest possible p-value is {o.min_p:.3g}, "
              f"above alpha = {ALPHA}.")
    overall = {"factors": [f"{e['study']}/{e['factor']}" for e in factors], "n_settings": o.n_settings if o else 0,
               **_result_dict(o), "p_adjusted": pooled_adjusted, "claim": claim,
               "sentence": _sentence("All factors pooled", claim, o, pooled_adjusted, reason)}

    for view in views[1:]:
        adjusted, pooled_adjusted = _holm_family(results[view], pooled[view])
        for entry, r, p_adj in [*zip(factors, results[view], adjusted), (overall, pooled[view], pooled_adjusted)]:
            entry[view] = {**_result_dict(r), "p_adjusted": p_adj, "claim": _claim(r, p_adj)}
            entry[view]["changes_conclusion"] = entry[view]["claim"] != entry["claim"]
    return factors, overall


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
    losses = [x for x in means.columns if x in PAIR] or list(means.columns)
    means = means[losses].dropna()
    if len(means) < 2:
        out["reason"] = "Fewer than 2 sampled configurations completed for every loss."
        return out
    out.update(available=True, n_configs=int(len(means)),
               curves=curves_with_band({str(x): means[x].to_numpy(dtype=float) for x in losses}))
    return out
