"""The stability analysis of a report: one entry per (study, factor), a pooled conclusion, and the
claims they support, for each of two questions. Plain data in, plain dicts out (the report's
``--json`` contract); no HTML. A factor run in several studies is also pooled over them (``overall["by_factor"]``,
:func:`across_studies`: each study a block, each question its own Holm family over those factors).

* **For these settings** (:mod:`.these_settings`, key ``these_settings``): across the settings tried,
  does CE's mean accuracy move more than SupCon's? Settings fixed, seed noise the only noise; this is
  what the paper's Fig. 4a shows, and 3 settings x 3 seeds can decide it. It says nothing about
  settings that were not tried.
* **Beyond these settings** (:mod:`.paired`, the entry's top-level keys): would SupCon vary less
  across *other* settings like these? Settings are a random sample; it needs
  :data:`~.settings.MIN_SETTINGS_BEYOND` paired settings or more to reach alpha at all.

Per factor and loss, :mod:`.variance` estimates seed noise and the between-setting std ``sigma_a``
on completed runs of the settings *paired* between the losses (settings run for one loss only are
listed and counted, never compared). Each question has its own Holm family: its per-factor tests and
its pooled test over every factor of every study in the report. A "beyond" factor whose design
cannot reach alpha at all is ``insufficient``, decided from the design alone; a "these settings"
factor is ``insufficient`` with fewer than 2 paired settings or fewer than 2 completed seeds of a
loss in some paired setting. A "beyond" factor whose seed noise is too uneven for the swap
test (:func:`.paired.uneven_noise`) is ``insufficient`` too, with the settings named, and stays out of
the pooled test. Beside each question's spread, every entry carries the drop from the base
(:mod:`.drop_answer`, its own Holm family) and the agreement with the paper (:mod:`.agreement`). A
factor run by one loss gets that loss's spread and drop, each tested against no effect beyond seed
noise (claims ``moves`` / ``no_detectable_effect``). Two sensitivity views of the "beyond" answer are computed the same way:
the logit scale (ceiling effects), and the conservative view, which scores diverged runs at chance
and subtracts nothing for seed noise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .claims import Claim
from . import divergence as div
from .multiplicity import holm
from .paired import PairedResult, compare, uneven_noise
from .scoring import completed, logit, scored, status_counts, divergence_rate
from .settings import ALPHA, MAX_ACCURACY_STD, MIN_SEEDS_THESE, MIN_SETTINGS_BEYOND, MIN_SETTINGS_THESE
from .agreement import DEFAULT_EQUIVALENCE_RATIO, PAPER_FIG4A, PAPER_POOLED, agreement_entry
from .drop_answer import DropInput, drop_input, drop_section
from .these_settings import OneLossSpread, TheseSettingsResult, compare_these, spread_of_one
from .tuning_curve import RANDOM_DESIGNS, curves_with_band
from .variance import SettingTable, components, setting_means

CLAIMS = tuple(Claim)
#: The measures of "how sensitive", each answered on its own: the paper's spread, and the drop from the base.
MEASURES = ("spread", "drop")
PAIR = ("ce", "supcon")
#: How each question is named wherever a number is shown.
QUESTIONS = {"these_settings": "for these settings", "beyond": "beyond these settings"}
PLANNER = "python -m supcon_ray.power STUDY_DIR"


def _fmt_ci(ci: tuple[float, float]) -> str:
    def one(x: float) -> str:
        return "∞" if x == math.inf else ("–" if math.isnan(x) else f"{x:.2f}")
    return f"[{one(ci[0])}, {one(ci[1])}]"


def setting_tables(rows: pd.DataFrame, metric: str, transform=None, remove_seed_noise: bool = True) -> dict[str, SettingTable]:
    """Each loss's per-setting table of ``metric`` (optionally transformed; with ``remove_seed_noise=False``
    the within-setting sums of squares are zeroed, so spreads keep seed noise in)."""
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
    tables = setting_tables(rows, metric, transform, remove_seed_noise)
    paired, unpaired = _paired(tables)
    if len(paired) < 2:
        return None, None, paired, unpaired, tables
    block = (tables["ce"].subset(paired), tables["supcon"].subset(paired))
    return compare([block], ALPHA), block, paired, unpaired, tables


def _uneven_reason(flagged: list[str], block: tuple[SettingTable, SettingTable]) -> str:
    seeds = sorted({int(n) for t in block for n in t.n})
    return (f"Seed noise too uneven at {_name_list(flagged)} for "
            f"{'/'.join(map(str, seeds))} seeds: there one loss's seeds split (between a collapse and success), so its "
            "noise is many times its own elsewhere and comparable with the spread across settings. This question swaps "
            "whole settings between the losses, which needs their seed noise alike at each setting; no test at this "
            "seed count was calibrated for such noise. More seeds at those settings would let it be measured.")


def _result_dict(r: PairedResult | None) -> dict[str, Any]:
    if r is None:
        return {"ratio": math.nan, "ci95": [math.nan, math.nan], "p_value": math.nan, "min_p": math.nan}
    return {"ratio": r.ratio, "ci95": list(r.ci95), "p_value": r.p_value, "min_p": r.min_p,
            "exact": r.exact, "direction": r.direction}


def _claim(r: PairedResult | None, p_adjusted: float) -> str:
    if r is None or r.min_p > ALPHA:
        return Claim.INSUFFICIENT
    if p_adjusted < ALPHA:
        return Claim.SUPCON_LESS if r.direction > 0 else Claim.CE_LESS
    return Claim.NO_DIFFERENCE


def _sentence(scope: str, claim: str, r: PairedResult | None, p_adjusted: float, reason: str,
              sigmas: tuple[float, float] = (math.nan, math.nan)) -> str:
    scope = f"{scope}, beyond these settings"
    if claim == Claim.INSUFFICIENT:
        return f"{scope}: cannot tell. {reason}"
    detail = (f"ratio of between-setting std CE/SupCon {r.ratio:.2f}, 95% CI {_fmt_ci(r.ci95)}, "
              f"Holm-adjusted p = {p_adjusted:.3g}")
    if not any(math.isnan(s) for s in sigmas):
        detail = f"std across settings CE {sigmas[0]:.3g}, SupCon {sigmas[1]:.3g}; " + detail
    if claim == Claim.SUPCON_LESS:
        return f"{scope}: SupCon's accuracy would move less than CE's across other settings like these ({detail})."
    if claim == Claim.CE_LESS:
        return f"{scope}: CE's accuracy would move less than SupCon's across other settings like these ({detail})."
    return (f"{scope}: no difference in sensitivity to other settings like these is detectable ({detail}). The "
            f"interval still allows ratios from {_fmt_ci(r.ci95)[1:-1].replace(', ', ' to ')}, so a difference of that size "
            "is not ruled out.")


def _insufficient_reason(losses: set[str], paired: list[str], r: PairedResult | None) -> str:
    missing = [x for x in PAIR if x not in losses]
    if missing:
        return f"SupCon and CE are both needed; missing: {', '.join(missing)}."
    if len(paired) < 2:
        return (f"{len(paired)} setting(s) have completed runs for both losses; at least 2 paired settings are needed "
                "(settings run for one loss only are never compared).")
    return (f"This question treats the settings as a sample of the settings one could try; with {r.n_settings} "
            f"paired settings its smallest possible p-value is {r.min_p:.3g}, above alpha = {ALPHA}. It needs at least "
            f"{MIN_SETTINGS_BEYOND} settings; `{PLANNER}` computes the design that would decide it.")


def _bound(rows: pd.DataFrame, metric: str) -> float | None:
    """The largest std the metric allows: 0.5 for values in [0, 1] (accuracies), else none."""
    y = rows[metric].dropna()
    return MAX_ACCURACY_STD if len(y) and y.between(0, 1).all() else None


def _loss_entry(g: pd.DataFrame, table: SettingTable | None, paired: list[str], bound: float | None) -> dict[str, Any]:
    """Counts of every run of a loss; its spread ``sigma_a`` over the *paired* settings (those the
    ratio compares; all of its settings when fewer than 2 are paired); each setting's mean."""
    counts = status_counts(g)
    entry: dict[str, Any] = {**counts, "divergence_rate": divergence_rate(counts)}
    if table is None:
        return {**entry, "mean": math.nan, "seed_std": math.nan, "setting_std": math.nan,
                "setting_std_ci95": [math.nan, math.nan], "settings": {}}
    comp = components(table.subset(paired) if len(paired) >= 2 else table, bound=bound)
    return {**entry, "mean": comp.grand_mean, "seed_std": comp.seed_std, "setting_std": comp.setting_std,
            "setting_std_ci95": list(comp.setting_std_ci95), "seed_noise_removed": comp.seed_noise_removed,
            "spread_settings": len(paired) if len(paired) >= 2 else len(table.settings),
            "settings": setting_means(table)}


def _testable_p(r: PairedResult | None) -> float:
    """A test's p-value if its design can reach alpha at all, else NaN (left out of the Holm family,
    a choice made from the design alone)."""
    return r.p_value if r is not None and r.min_p <= ALPHA else math.nan


def _holm_family(p_factors: list[float], p_pooled: float) -> tuple[list[float], float]:
    """Holm-adjusted p-values of every factor and of the pooled test, as one family. With a single
    factor the pooled test is that factor's test and is not counted twice."""
    if len(p_factors) == 1:
        adjusted = holm(p_factors)
        return adjusted, adjusted[0]
    adjusted = holm(list(p_factors) + [p_pooled])
    return adjusted[:-1], adjusted[-1]


# --- for these settings -------------------------------------------------------------------------

def setting_label(setting: str) -> str:
    """``optimizer=sgd`` -> ``sgd``: the value part of a setting's name."""
    return setting.split("=", 1)[1] if "=" in setting else setting


def setting_order(setting: str) -> tuple[int, float, str]:
    """Sort key that lists a factor's settings in reading order: numeric values (``x0.1`` multiples
    included) by size, before names in alphabetical order."""
    value = setting_label(setting)
    try:
        return 0, float(value[1:] if value.startswith("x") else value), value
    except ValueError:
        return 1, 0.0, value


def _name_list(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _these_block(tables: dict[str, SettingTable], paired: list[str]) -> tuple[tuple[SettingTable, SettingTable] | None, str]:
    """The block a "these settings" comparison uses, or ``None`` and why not."""
    if not set(PAIR) <= set(tables):
        return None, f"SupCon and CE are both needed; no completed runs of: {', '.join(x for x in PAIR if x not in tables)}."
    if len(paired) < MIN_SETTINGS_THESE:
        return None, (f"{len(paired)} setting(s) have completed runs for both losses; at least {MIN_SETTINGS_THESE} "
                      "paired settings are needed.")
    block = (tables["ce"].subset(paired), tables["supcon"].subset(paired))
    few = [f"{loss} at {setting_label(s)}" for loss, t in zip(PAIR, block) for s, n in zip(t.settings, t.n)
           if n < MIN_SEEDS_THESE]
    if few:
        return None, (f"every paired setting needs at least {MIN_SEEDS_THESE} completed seeds per loss to measure seed "
                      f"noise; fewer for {', '.join(few)}.")
    return block, ""


def _these_claim(r: TheseSettingsResult | None, p_adjusted: float) -> str:
    if r is None:
        return Claim.INSUFFICIENT
    if math.isnan(r.ratio):  # both spreads estimated at zero
        return Claim.NO_DIFFERENCE
    if p_adjusted < ALPHA:
        return Claim.SUPCON_LESS if r.direction > 0 else Claim.CE_LESS
    return Claim.NO_DIFFERENCE


def _these_sentence(scope: str, names: str, claim: str, r: TheseSettingsResult | None, p_adjusted: float,
                    reason: str) -> str:
    scope = f"{scope}, for these settings"
    if claim == Claim.INSUFFICIENT:
        return f"{scope}: cannot tell. {reason}"
    sp = r.spreads
    detail = (f"std of the setting means CE {sp['ce']:.3g}, SupCon {sp['supcon']:.3g}; ratio CE/SupCon "
              f"{r.ratio:.2f}, 95% CI {_fmt_ci(r.ci95)}, Holm-adjusted p = {p_adjusted:.3g}")
    where = f"across {names}"
    if claim == Claim.SUPCON_LESS:
        return (f"{scope}: {where}, SupCon's mean accuracy moves less than CE's ({detail}). This is about the settings "
                "tried, not about other settings.")
    if claim == Claim.CE_LESS:
        return (f"{scope}: {where}, CE's mean accuracy moves less than SupCon's ({detail}). This is about the settings "
                "tried, not about other settings.")
    return f"{scope}: {where}, no difference in how much the two losses' mean accuracy moves is detectable ({detail})."


def _these_dict(r: TheseSettingsResult | None, p_adjusted: float, claim: str, sentence: str) -> dict[str, Any]:
    """The ``these_settings`` entry: NaN never appears (``null`` in JSON for an undefined ratio and an
    unbounded end)."""
    def num(x: float) -> float | None:
        return None if x is None or math.isnan(x) or math.isinf(x) else float(x)
    if r is None:
        return {"ratio": None, "ci95": [None, None], "p_value": None, "p_adjusted": None, "claim": claim,
                "sentence": sentence, "losses": {}}
    return {"ratio": num(r.ratio), "ci95": [num(r.ci95[0]) if r.ci95[0] > 0 else 0.0, num(r.ci95[1])],
            "p_value": num(r.p_value), "p_adjusted": num(p_adjusted), "claim": claim, "sentence": sentence,
            "n_settings": r.n_settings,
            "losses": {loss: {"spread": r.spreads[loss], "spread_ci95": [num(r.spread_ci95[loss][0]) or 0.0,
                                                                           num(r.spread_ci95[loss][1])]}
                       for loss in PAIR}}


def _one_dict(loss: str, r: OneLossSpread | None, p_adjusted: float, claim: str, sentence: str) -> dict[str, Any]:
    """A one-method ``these_settings`` entry: no ratio; the spread's test is of no effect beyond seed noise."""
    def num(x: float) -> float | None:
        return None if x is None or math.isnan(x) or math.isinf(x) else float(x)
    out = {"ratio": None, "ci95": [None, None], "p_value": None, "p_adjusted": None, "claim": claim,
           "sentence": sentence, "losses": {}}
    if r is not None:
        out.update(p_value=num(r.p_value), p_adjusted=num(p_adjusted), n_settings=r.n_settings,
                   losses={loss: {"spread": r.spread, "spread_ci95": [num(r.ci95[0]) or 0.0, num(r.ci95[1])]}})
    return out


def _one_sentence(scope: str, names: str, loss: str, claim: str, r: OneLossSpread | None, p_adjusted: float,
                  reason: str) -> str:
    scope = f"{scope}, for these settings"
    if r is None:
        return f"{scope}: cannot tell. {reason}"
    detail = (f"std of the setting means {r.spread:.3g}, 95% CI {_fmt_ci(r.ci95)}, Holm-adjusted p = {p_adjusted:.3g} "
              "against no effect beyond seed noise")
    if claim == Claim.MOVES:
        return f"{scope}: {loss}'s mean accuracy moves across {names} ({detail})."
    return f"{scope}: across {names}, no movement of {loss}'s mean accuracy beyond seed noise is detectable ({detail})."


def _one_claim(r: OneLossSpread | None, p_adjusted: float) -> str:
    if r is None:
        return Claim.INSUFFICIENT
    return Claim.MOVES if p_adjusted < ALPHA else Claim.NO_EFFECT


def _these_section(entries: list[dict[str, Any]], blocks: list[tuple[SettingTable, SettingTable] | None],
                   singles: list[tuple[str, SettingTable] | None], reasons: list[str], bounded: bool,
                   margin: float) -> dict[str, Any]:
    """Per-factor and pooled "these settings" answers, one Holm family (two-method comparisons and
    one-method tests of no effect alike); fills ``entries`` in place and returns the pooled entry.
    Pooled over the two-method factors where there are any, else over the one-method factors of one loss."""
    results = [compare_these([b], bounded=bounded, equivalence_ratio=margin) if b is not None else None for b in blocks]
    ones = [spread_of_one([s[1]], bounded=bounded) if s is not None else None for s in singles]
    valid = [b for b in blocks if b is not None]
    single_valid = [s for s in singles if s is not None]
    pooled = compare_these(valid, bounded=bounded, equivalence_ratio=margin) if valid else None
    pooled_one = None
    if not valid and single_valid and len({loss for loss, _ in single_valid}) == 1:
        pooled_one = (single_valid[0][0], spread_of_one([t for _, t in single_valid], bounded=bounded))
    p = [r.p_value if r else (o.p_value if o else math.nan) for r, o in zip(results, ones)]
    p_pooled = pooled.p_value if pooled else (pooled_one[1].p_value if pooled_one else math.nan)
    adjusted, pooled_adj = _holm_family(p, p_pooled)
    tost_adj, pooled_tost_adj = _holm_family([r.tost_p if r else math.nan for r in results],
                                             pooled.tost_p if pooled else math.nan)
    for entry, r, o, single, p_adj, t_adj, reason in zip(entries, results, ones, singles, adjusted, tost_adj, reasons):
        paired = entry["_paired"] if r else [s for s in (single[1].settings if single else [])]
        names = _name_list([setting_label(s) for s in sorted(paired, key=setting_order)]) if (r or o) else ""
        if (r or o) and entry.get("_nuisance"):
            names += " (each with its nuisance hyperparameters re-tuned per setting and loss)"
        scope = f"{entry['study']} / {entry['factor']}"
        if single is not None:
            claim = _one_claim(o, p_adj)
            entry["these_settings"] = _one_dict(single[0], o, p_adj, claim,
                                                _one_sentence(scope, names, single[0], claim, o, p_adj, reason))
            continue
        claim = _these_claim(r, p_adj)
        entry["these_settings"] = _these_dict(r, p_adj, claim, _these_sentence(scope, names, claim, r, p_adj, reason))
        if r is not None:
            entry["these_settings"]["agreement"] = agreement_entry(
                claim, PAPER_FIG4A.get(entry["factor"]), _ci_list(r.ci90), margin, r.tost_p, t_adj)
    if pooled_one is not None:
        loss, o = pooled_one
        claim = _one_claim(o, pooled_adj)
        names = f"all {o.n_settings} settings of {len(single_valid)} factor(s)"
        return _one_dict(loss, o, pooled_adj, claim, _one_sentence("All factors pooled", names, loss, claim, o,
                                                                   pooled_adj, ""))
    claim = _these_claim(pooled, pooled_adj)
    names = (f"all {pooled.n_settings} settings of {len(valid)} factor(s) (each loss's spread pooled as the root mean "
             "square over factors, every factor once)") if pooled else ""
    reason = "No factor has 2 or more paired settings with 2 or more seeds per loss."
    out = _these_dict(pooled, pooled_adj, claim, _these_sentence("All factors pooled", names, claim, pooled, pooled_adj, reason))
    if pooled is not None:
        out["agreement"] = agreement_entry(claim, PAPER_POOLED, _ci_list(pooled.ci90), margin, pooled.tost_p,
                                           pooled_tost_adj)
    return out


def _ci_list(ci: tuple[float, float]) -> list[float | None]:
    """An interval for JSON: an open lower end 0, an unbounded upper end ``None``."""
    low = 0.0 if math.isnan(ci[0]) or ci[0] <= 0 else float(ci[0])
    if math.isnan(ci[0]):
        return [None, None]
    return [low, None if math.isinf(ci[1]) else float(ci[1])]


def across_studies(factors: list[dict[str, Any]], beyond_blocks: list[tuple[SettingTable, SettingTable] | None],
                   these_blocks: list[tuple[SettingTable, SettingTable] | None], bounded: bool,
                   margin: float = DEFAULT_EQUIVALENCE_RATIO) -> list[dict[str, Any]]:
    """Each factor name run in two or more studies, pooled over those studies with each study (dataset)
    a block: both questions, each its own Holm family over these pooled factors.

    ``factors`` are the per-(study, factor) entries; ``beyond_blocks`` and ``these_blocks`` are their
    blocks in the same order (``None`` where an entry has none). "For these settings" keeps every
    study's settings fixed (each loss's spread is the root mean square over studies); "beyond" treats
    each study's settings as a sample, as for one study.
    """
    groups = []
    for name in sorted({e["factor"] for e in factors}):
        idx = [i for i, e in enumerate(factors) if e["factor"] == name]
        if len({factors[i]["study"] for i in idx}) >= 2:
            groups.append((name, idx))
    beyond, these = [], []
    for _, idx in groups:
        b = [beyond_blocks[i] for i in idx if beyond_blocks[i] is not None]
        t = [these_blocks[i] for i in idx if these_blocks[i] is not None]
        beyond.append(compare(b, ALPHA) if b else None)
        these.append(compare_these(t, bounded=bounded, equivalence_ratio=margin) if t else None)
    p_beyond = holm([_testable_p(r) for r in beyond])
    p_these = holm([r.p_value if r else math.nan for r in these])
    p_tost = holm([r.tost_p if r else math.nan for r in these])
    out = []
    for (name, idx), rb, pb, rt, pt, tt in zip(groups, beyond, p_beyond, these, p_these, p_tost):
        studies = [factors[i]["study"] for i in idx]
        scope = f"{name}, across {_name_list(studies)} (each a block)"
        used_these = sum(these_blocks[i] is not None for i in idx)
        reason_b = ("No study has 2 or more settings of this factor run for both losses." if rb is None else
                    f"With {rb.n_settings} paired settings over these studies the smallest possible p-value is "
                    f"{rb.min_p:.3g}, above alpha = {ALPHA}.")
        reason_t = "No study has 2 or more paired settings of this factor with 2 or more seeds per loss."
        claim_b, claim_t = _claim(rb, pb), _these_claim(rt, pt)
        names = (f"{rt.n_settings} settings of {used_these} stud{'y' if used_these == 1 else 'ies'} (each loss's spread "
                 "pooled as the root mean square over studies)") if rt else ""
        out.append({"factor": name, "studies": studies, "n_settings": rb.n_settings if rb else 0,
                    **_result_dict(rb), "p_adjusted": pb, "claim": claim_b, "question": QUESTIONS["beyond"],
                    "sentence": _sentence(scope, claim_b, rb, pb, reason_b),
                    "these_settings": _these_dict(rt, pt, claim_t, _these_sentence(scope, names, claim_t, rt, pt, reason_t))})
        if rt is not None:
            out[-1]["these_settings"]["agreement"] = agreement_entry(claim_t, PAPER_FIG4A.get(name), _ci_list(rt.ci90),
                                                                     margin, rt.tost_p, tt)
    return out


def _single_block(tables: dict[str, SettingTable]) -> tuple[tuple[str, SettingTable] | None, str]:
    """A one-method factor's ``(loss, table)`` (every setting with at least 2 seeds), or ``None`` and why not."""
    if len(tables) != 1:
        return None, ""
    (loss, table), = tables.items()
    if len(table.settings) < MIN_SETTINGS_THESE:
        return None, f"{len(table.settings)} setting(s) have completed runs; at least {MIN_SETTINGS_THESE} are needed."
    few = [setting_label(s) for s, n in zip(table.settings, table.n) if n < MIN_SEEDS_THESE]
    if few:
        return None, (f"every setting needs at least {MIN_SEEDS_THESE} completed seeds to measure seed noise; fewer at "
                      f"{', '.join(few)}.")
    return (loss, table), ""


def _positions(settings: list[str]) -> dict[str, float] | None:
    """Numeric positions of a factor's settings (``x0.1`` multiples or values), or ``None`` if any is a name."""
    keys = {s: setting_order(s) for s in settings}
    if any(k[0] != 0 for k in keys.values()):
        return None
    return {s: k[1] for s, k in keys.items()}


def _cell_keys(rows: pd.DataFrame, study: str, factor: str) -> dict[str, dict[str, Any]]:
    """Per loss and setting, what identifies its runs: the set of trial ids (a base run analysed in several
    factors is one cell of runs in all of them), or the (study, factor, setting) without ids."""
    out: dict[str, dict[str, Any]] = {}
    for (loss, setting), g in rows.groupby(["loss", "setting"], sort=True):
        key = frozenset(g["trial_id"].astype(str)) if "trial_id" in g else (study, factor, str(setting))
        out.setdefault(str(loss), {})[str(setting)] = key
    return out


def base_setting_of(factor: str, settings: list[str]) -> str | None:
    """The base setting when nothing else says which it is: the relative setting ``<factor>=x1``."""
    label = f"{factor}=x1"
    return label if label in settings else None


def _one_method_reason(loss: str, entry: dict[str, Any]) -> str:
    sigma = entry["losses"].get(loss, {})
    return (f"Beyond these settings compares two methods' sensitivity to other settings like these; with one method "
            f"({loss}) there is nothing to compare. Treated as a sample of settings, {loss}'s between-setting std is "
            f"{sigma.get('setting_std', math.nan):.3g}, 95% CI {_fmt_ci(tuple(sigma.get('setting_std_ci95', [math.nan] * 2)))} "
            "(seed noise removed).")


def analyze_factors(trials: pd.DataFrame, metric: str, sensitivity: bool = True,
                    bases: dict[tuple[str, str], dict[str, str | None]] | None = None,
                    equivalence_ratio: float = DEFAULT_EQUIVALENCE_RATIO,
                    primary: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every (study, factor) entry and the pooled ``overall`` entry (see the module docstring).

    ``sensitivity=False`` skips the logit and conservative views (for simulations). ``bases`` names each
    (study, factor)'s base setting per loss, for the drop from the base (default: the ``x1`` setting of a
    relative factor, else none). ``equivalence_ratio`` is the margin of "no meaningful difference" in the
    agreement with the paper; ``primary`` each study's declared primary measure (default ``spread``):
    an entry's ``agreement`` is its primary measure's.
    """
    if "study" not in trials:
        trials = trials.assign(study="study")
    views = ["main", "logit", "conservative"] if sensitivity else ["main"]
    results: dict[str, list[PairedResult | None]] = {v: [] for v in views}
    blocks: dict[str, list[tuple[SettingTable, SettingTable]]] = {v: [] for v in views}
    these_blocks, these_reasons, main_blocks = [], [], []
    singles: list[tuple[str, SettingTable] | None] = []
    pairs: list[tuple[str, str] | None] = []
    drop_inputs: list[DropInput] = []
    main_flags: list[tuple[list[str], str]] = []
    factors: list[dict[str, Any]] = []
    bound = _bound(completed(trials, metric), metric)
    for (study, factor), g in trials.groupby(["study", "factor"], sort=True):
        done = completed(g, metric)
        for view in views:
            rows = scored(g, metric) if view == "conservative" else done
            r, block, paired, unpaired, tables = _view(rows, metric, logit if view == "logit" else None,
                                                       remove_seed_noise=view != "conservative")
            flagged = uneven_noise(*block) if block is not None and view != "conservative" else []
            if flagged:  # the swap test does not apply: no answer, and the block stays out of the pooled test
                uneven_reason = _uneven_reason(flagged, block)
                r, block = None, None
            results[view].append(r)
            if block is not None:
                blocks[view].append(block)
            if view == "main":
                main_blocks.append(block)
                main_flags.append((flagged, uneven_reason if flagged else ""))
                tb, why = _these_block(tables, paired)
                present = set(g["loss"].astype(str))  # planned losses, whatever their runs' status
                single, why_single = _single_block(tables) if tb is None and len(present) == 1 else (None, "")
                these_blocks.append(tb)
                singles.append(single)
                these_reasons.append(why_single or why)
                pair = PAIR if set(PAIR) <= set(tables) else None
                pairs.append(pair)
                one_method = len(present) == 1 and len(tables) == 1
                drop_settings = paired if pair else (list(next(iter(tables.values())).settings) if one_method else [])
                given = (bases or {}).get((str(study), str(factor)))
                loss_bases = given if given is not None else {x: base_setting_of(str(factor), drop_settings) for x in tables}
                drop_losses = pair or tuple(tables)
                drop_inputs.append(drop_input(tables, drop_losses, drop_settings, loss_bases, _positions(drop_settings),
                                              _cell_keys(done, str(study), str(factor)))
                                   if pair or one_method else DropInput(None, why or "no completed runs."))
                losses = {str(x): _loss_entry(lg, tables.get(str(x)), paired, bound) for x, lg in g.groupby("loss", sort=True)}
                design = g["design"].fillna("").astype(str) if "design" in g else pd.Series("", index=g.index)
                factors.append({"study": str(study), "factor": str(factor), "n_settings": int(g["setting"].nunique()),
                                "paired_settings": len(paired), "unpaired_settings": unpaired, "losses": losses,
                                **_result_dict(r), "divergence_fisher_p": div.divergence_summary(g)["fisher_p"],
                                "_reason": uneven_reason if flagged else _insufficient_reason(set(losses), paired, r),
                                "_paired": paired,
                                "_nuisance": bool(design.str.contains("nuisance").any())})

    across = across_studies(factors, main_blocks, these_blocks, bound is not None, equivalence_ratio)
    pooled = {v: (compare(blocks[v], ALPHA) if blocks[v] else None) for v in views}
    adjusted, pooled_adjusted = _holm_family([_testable_p(r) for r in results["main"]], _testable_p(pooled["main"]))
    for entry, r, p_adj, single, pair, (flagged, _) in zip(factors, results["main"], adjusted, singles, pairs,
                                                             main_flags):
        claim = _claim(r, p_adj)
        sig = tuple(entry["losses"].get(x, {}).get("setting_std", math.nan) for x in PAIR)
        reason = entry.pop("_reason")
        if flagged:
            entry["uneven_noise"] = flagged
        both = set(PAIR) <= set(entry["losses"])  # planned for both, whether or not their runs completed
        method = single[0] if single else (next(iter(entry["losses"])) if len(entry["losses"]) == 1 else None)
        if method is not None and not both:
            reason = _one_method_reason(method, entry)
        entry.update(baseline=PAIR[0] if both else None, method=PAIR[1] if both else method)
        entry.update(p_adjusted=p_adj, claim=claim, question=QUESTIONS["beyond"],
                     sentence=_sentence(f"{entry['study']} / {entry['factor']}", claim, r, p_adj, reason, sig))

    o = pooled["main"]
    claim = _claim(o, pooled_adjusted)
    reason = ("No factor has 2 or more settings run for both SupCon and CE." if o is None else
              f"With {o.n_settings} paired settings over all factors the smallest possible p-value is {o.min_p:.3g}, "
              f"above alpha = {ALPHA}; `{PLANNER}` computes the design that would decide it.")
    overall = {"factors": [f"{e['study']}/{e['factor']}" for e in factors], "n_settings": o.n_settings if o else 0,
               **_result_dict(o), "p_adjusted": pooled_adjusted, "claim": claim, "question": QUESTIONS["beyond"],
               "sentence": _sentence("All factors pooled", claim, o, pooled_adjusted, reason)}
    overall["these_settings"] = _these_section(factors, these_blocks, singles, these_reasons, bound is not None,
                                               equivalence_ratio)
    overall["drop"] = drop_section(factors, drop_inputs, pairs, [PAPER_FIG4A.get(e["factor"]) for e in factors],
                                   equivalence_ratio, PAPER_POOLED)
    overall["by_factor"] = across
    studies = sorted({e["study"] for e in factors})
    chosen = {st: (primary or {}).get(st, "spread") for st in studies}
    for entry in factors:
        _set_agreement(entry, chosen[entry["study"]])
    if len(set(chosen.values())) <= 1:
        _set_agreement(overall, next(iter(chosen.values()), "spread"))
    for entry in factors:
        entry.pop("_paired")
        entry.pop("_nuisance")

    for view in views[1:]:
        adjusted, pooled_adjusted = _holm_family([_testable_p(r) for r in results[view]], _testable_p(pooled[view]))
        for entry, r, p_adj in [*zip(factors, results[view], adjusted), (overall, pooled[view], pooled_adjusted)]:
            entry[view] = {**_result_dict(r), "p_adjusted": p_adj, "claim": _claim(r, p_adj)}
            entry[view]["changes_conclusion"] = entry[view]["claim"] != entry["claim"]
    return factors, overall


def _set_agreement(entry: dict[str, Any], primary: str) -> None:
    """The entry's headline ``primary_agreement``: its primary measure's agreement (``spread``: the one in
    ``these_settings``; ``drop``: the one in ``drop``), named apart from the entry's top-level "beyond" keys."""
    source = entry.get("these_settings" if primary == "spread" else "drop") or {}
    if source.get("agreement") is not None:
        entry["primary_agreement"] = {**source["agreement"], "measure": primary}
    entry["primary"] = primary


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
