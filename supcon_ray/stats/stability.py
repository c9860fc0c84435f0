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

from .claims import Claim, display, less_sensitive
from . import divergence as div
from .multiplicity import holm, holm_with_pooled
from .paired import PairedResult, compare, uneven_noise
from .scoring import completed, logit, scored, status_counts, divergence_rate
from .settings import ALPHA, MAX_ACCURACY_STD, MIN_SEEDS_THESE, MIN_SETTINGS_BEYOND, MIN_SETTINGS_THESE
from .agreement import DEFAULT_EQUIVALENCE_RATIO, PAPER_FIG4A, PAPER_PAIR, agreement_entry, pooled_direction
from .drop_answer import DropInput, drop_input, drop_section, drop_unavailable
from .these_settings import OneLossSpread, TheseSettingsResult, compare_these, spread_of_one
from supcon_ray.designs import RANDOM_DESIGNS, is_nuisance
from .tuning_curve import curves_with_band
from .variance import SettingTable, components, setting_means

CLAIMS = tuple(Claim)
#: The measures of "how sensitive", each answered on its own: the paper's spread, and the drop from the base.
MEASURES = ("spread", "drop")
#: The paper's pair, (baseline, method): the only comparison the paper's directions (agreement) apply to.
PAIR = PAPER_PAIR
#: A compared pair ``(baseline, method)``, or ``None`` for a one-method answer.
Pair = tuple[str, str] | None
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


def _both(pair: Pair) -> str:
    return f"{display(pair[1])} and {display(pair[0])}" if pair else "two methods"


def _paired(tables: dict[str, SettingTable], pair: Pair) -> tuple[list[str], list[str]]:
    """(paired settings, unpaired settings) between the pair's baseline and method."""
    if pair is None or not set(pair) <= set(tables):
        every = sorted({s for t in tables.values() for s in t.settings})
        return [], every
    base, method = set(tables[pair[0]].settings), set(tables[pair[1]].settings)
    return sorted(base & method), sorted(base ^ method)


def _view(rows: pd.DataFrame, metric: str, pair: Pair, transform=None, remove_seed_noise: bool = True):
    """Paired comparison of one view of the data: ``(result or None, block or None, paired, unpaired, tables)``."""
    tables = setting_tables(rows, metric, transform, remove_seed_noise)
    paired, unpaired = _paired(tables, pair)
    if len(paired) < 2:
        return None, None, paired, unpaired, tables
    block = (tables[pair[0]].subset(paired), tables[pair[1]].subset(paired))
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


def _direction_claim(direction: int, pair: tuple[str, str]) -> str:
    """``+1`` (the baseline moves more): the method is less sensitive; else the baseline is."""
    return less_sensitive(pair[1]) if direction > 0 else less_sensitive(pair[0])


def _claim(r: PairedResult | None, p_adjusted: float, pair: Pair = PAIR) -> str:
    if r is None or r.min_p > ALPHA or pair is None:
        return Claim.INSUFFICIENT
    if p_adjusted < ALPHA:
        return _direction_claim(r.direction, pair)
    return Claim.NO_DIFFERENCE


def _sentence(scope: str, claim: str, r: PairedResult | None, p_adjusted: float, reason: str,
              sigmas: tuple[float, float] = (math.nan, math.nan), pair: Pair = PAIR) -> str:
    scope = f"{scope}, beyond these settings"
    if claim == Claim.INSUFFICIENT:
        return f"{scope}: cannot tell. {reason}"
    b, m = display(pair[0]), display(pair[1])
    detail = (f"ratio of between-setting std {b}/{m} {r.ratio:.2f}, 95% CI {_fmt_ci(r.ci95)}, "
              f"Holm-adjusted p = {p_adjusted:.3g}")
    if not any(math.isnan(s) for s in sigmas):
        detail = f"std across settings {b} {sigmas[0]:.3g}, {m} {sigmas[1]:.3g}; " + detail
    if claim == less_sensitive(pair[1]):
        return f"{scope}: {m}'s accuracy would move less than {b}'s across other settings like these ({detail})."
    if claim == less_sensitive(pair[0]):
        return f"{scope}: {b}'s accuracy would move less than {m}'s across other settings like these ({detail})."
    return (f"{scope}: no difference in sensitivity to other settings like these is detectable ({detail}). The "
            f"interval still allows ratios from {_fmt_ci(r.ci95)[1:-1].replace(', ', ' to ')}, so a difference of that size "
            "is not ruled out.")


def _insufficient_reason(losses: set[str], paired: list[str], r: PairedResult | None, pair: Pair = PAIR) -> str:
    missing = [x for x in (pair or ()) if x not in losses]
    if pair is None or missing:
        return f"{_both(pair)} are both needed; missing: {', '.join(missing) or 'a second method'}."
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


def _these_block(tables: dict[str, SettingTable], paired: list[str],
                 pair: Pair = PAIR) -> tuple[tuple[SettingTable, SettingTable] | None, str]:
    """The block a "these settings" comparison uses, or ``None`` and why not."""
    if pair is None or not set(pair) <= set(tables):
        missing = ', '.join(x for x in (pair or ()) if x not in tables) or "a second method"
        return None, f"{_both(pair)} are both needed; no completed runs of: {missing}."
    if len(paired) < MIN_SETTINGS_THESE:
        return None, (f"{len(paired)} setting(s) have completed runs for both losses; at least {MIN_SETTINGS_THESE} "
                      "paired settings are needed.")
    block = (tables[pair[0]].subset(paired), tables[pair[1]].subset(paired))
    few = [f"{loss} at {setting_label(s)}" for loss, t in zip(pair, block) for s, n in zip(t.settings, t.n)
           if n < MIN_SEEDS_THESE]
    if few:
        return None, (f"every paired setting needs at least {MIN_SEEDS_THESE} completed seeds per loss to measure seed "
                      f"noise; fewer for {', '.join(few)}.")
    return block, ""


def _these_claim(r: TheseSettingsResult | None, p_adjusted: float, pair: Pair = PAIR) -> str:
    if r is None or pair is None:
        return Claim.INSUFFICIENT
    if math.isnan(r.ratio):  # both spreads estimated at zero
        return Claim.NO_DIFFERENCE
    if p_adjusted < ALPHA:
        return _direction_claim(r.direction, pair)
    return Claim.NO_DIFFERENCE


def _these_sentence(scope: str, names: str, claim: str, r: TheseSettingsResult | None, p_adjusted: float,
                    reason: str, pair: Pair = PAIR) -> str:
    scope = f"{scope}, for these settings"
    if claim == Claim.INSUFFICIENT:
        return f"{scope}: cannot tell. {reason}"
    sp = r.spreads
    b, m = display(pair[0]), display(pair[1])
    detail = (f"std of the setting means {b} {sp[pair[0]]:.3g}, {m} {sp[pair[1]]:.3g}; ratio {b}/{m} "
              f"{r.ratio:.2f}, 95% CI {_fmt_ci(r.ci95)}, Holm-adjusted p = {p_adjusted:.3g}")
    where = f"across {names}"
    if claim == less_sensitive(pair[1]):
        return (f"{scope}: {where}, {m}'s mean accuracy moves less than {b}'s ({detail}). This is about the settings "
                "tried, not about other settings.")
    if claim == less_sensitive(pair[0]):
        return (f"{scope}: {where}, {b}'s mean accuracy moves less than {m}'s ({detail}). This is about the settings "
                "tried, not about other settings.")
    return f"{scope}: {where}, no difference in how much the two losses' mean accuracy moves is detectable ({detail})."


def _these_dict(r: TheseSettingsResult | None, p_adjusted: float, claim: str, sentence: str,
                pair: Pair = PAIR) -> dict[str, Any]:
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
                       for loss in pair}}


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
                   margin: float, groups: dict[str, tuple[Pair, list[int]]]) -> dict[str, dict[str, Any]]:
    """Per-entry and pooled "these settings" answers, one Holm family (two-method comparisons and
    one-method tests of no effect alike); fills ``entries`` in place and returns each group's pooled
    entry (``groups``: key -> (pair, entry indices), see :func:`_groups`)."""
    results = [compare_these([b], bounded=bounded, equivalence_ratio=margin, names=e["_pair"]) if b is not None else None
               for b, e in zip(blocks, entries)]
    ones = [spread_of_one([s[1]], bounded=bounded) if s is not None else None for s in singles]
    pooled: dict[str, Any] = {}
    for key, (pair, idx) in groups.items():
        if pair is not None:
            valid = [blocks[i] for i in idx if blocks[i] is not None]
            pooled[key] = compare_these(valid, bounded=bounded, equivalence_ratio=margin, names=pair) if valid else None
        else:
            valid = [singles[i][1] for i in idx if singles[i] is not None]
            pooled[key] = spread_of_one(valid, bounded=bounded) if valid else None
    index = [idx for _, idx in groups.values()]
    p = [r.p_value if r else (o.p_value if o else math.nan) for r, o in zip(results, ones)]
    adjusted, pooled_adj = holm_with_pooled(p, index, [r.p_value if r else math.nan for r in pooled.values()])
    tost_adj, pooled_tost_adj = holm_with_pooled([r.tost_p if r else math.nan for r in results], index,
                                                 [getattr(r, "tost_p", math.nan) if r else math.nan
                                                  for r in pooled.values()])
    for entry, r, o, single, p_adj, t_adj, reason in zip(entries, results, ones, singles, adjusted, tost_adj, reasons):
        paired = entry["_paired"] if r else [s for s in (single[1].settings if single else [])]
        names = _name_list([setting_label(s) for s in sorted(paired, key=setting_order)]) if (r or o) else ""
        if (r or o) and entry.get("_nuisance"):
            names += " (each with its nuisance hyperparameters re-tuned per setting and loss)"
        scope = _scope(entry)
        if single is not None:
            claim = _one_claim(o, p_adj)
            entry["these_settings"] = _one_dict(single[0], o, p_adj, claim,
                                                _one_sentence(scope, names, single[0], claim, o, p_adj, reason))
            continue
        pair = entry["_pair"]
        claim = _these_claim(r, p_adj, pair)
        entry["these_settings"] = _these_dict(r, p_adj, claim, _these_sentence(scope, names, claim, r, p_adj, reason, pair),
                                              pair)
        if r is not None:
            entry["these_settings"]["agreement"] = agreement_entry(
                claim, _paper(entry["factor"], pair), _ci_list(r.ci90), margin, r.tost_p, t_adj)
    out = {}
    for (key, (pair, idx)), adj, t_adj in zip(groups.items(), pooled_adj, pooled_tost_adj):
        r = pooled[key]
        scope = _pooled_scope(key, groups)
        if pair is None:
            claim = _one_claim(r, adj)
            n_used = sum(singles[i] is not None for i in idx)
            names = f"all {r.n_settings} settings of {n_used} factor(s)" if r else ""
            out[key] = _one_dict(key, r, adj, claim, _one_sentence(scope, names, key, claim, r, adj,
                                                                    "No factor has 2 or more settings with 2 or more seeds."))
            continue
        claim = _these_claim(r, adj, pair)
        n_used = sum(blocks[i] is not None for i in idx)
        names = (f"all {r.n_settings} settings of {n_used} factor(s) (each loss's spread pooled as the root mean "
                 "square over factors, every factor once)") if r else ""
        reason = "No factor has 2 or more paired settings with 2 or more seeds per loss."
        out[key] = _these_dict(r, adj, claim, _these_sentence(scope, names, claim, r, adj, reason, pair), pair)
        if r is not None:
            paper = pooled_direction((entries[i]["factor"] for i in idx), pair)
            out[key]["agreement"] = agreement_entry(claim, paper, _ci_list(r.ci90), margin, r.tost_p, t_adj)
    return out


def _paper(factor: str, pair: Pair) -> str | None:
    """The paper's direction for ``factor``: only for its own pair, SupCon against CE."""
    return PAPER_FIG4A.get(factor) if pair == PAIR else None


def _scope(entry: dict[str, Any]) -> str:
    """How sentences name an entry: ``study / factor``, with the compared method where the factor has several."""
    scope = f"{entry['study']} / {entry['factor']}"
    return f"{scope} ({display(entry['_pair'][1])} vs {display(entry['_pair'][0])})" if entry.get("_several") else scope


def _pooled_scope(key: str, groups: dict[str, tuple[Pair, list[int]]]) -> str:
    if len(groups) <= 1:
        return "All factors pooled"
    pair = groups[key][0]
    return f"All factors pooled ({display(pair[1])} vs {display(pair[0])})" if pair else f"All factors pooled ({display(key)})"


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
    for name, pair in sorted({(e["factor"], e["_pair"]) for e in factors if e["_pair"] is not None}):
        idx = [i for i, e in enumerate(factors) if e["factor"] == name and e["_pair"] == pair]
        if len({factors[i]["study"] for i in idx}) >= 2:
            groups.append((name, idx))
    beyond, these = [], []
    for _, idx in groups:
        b = [beyond_blocks[i] for i in idx if beyond_blocks[i] is not None]
        t = [these_blocks[i] for i in idx if these_blocks[i] is not None]
        beyond.append(compare(b, ALPHA) if b else None)
        these.append(compare_these(t, bounded=bounded, equivalence_ratio=margin, names=factors[idx[0]]["_pair"])
                     if t else None)
    p_beyond = holm([_testable_p(r) for r in beyond])
    p_these = holm([r.p_value if r else math.nan for r in these])
    p_tost = holm([r.tost_p if r else math.nan for r in these])
    out = []
    several = len({factors[i]["_pair"] for _, idx in groups for i in idx}) > 1
    for (name, idx), rb, pb, rt, pt, tt in zip(groups, beyond, p_beyond, these, p_these, p_tost):
        studies = [factors[i]["study"] for i in idx]
        pair = factors[idx[0]]["_pair"]
        scope = f"{name}, across {_name_list(studies)} (each a block)"
        if several:
            scope += f" ({display(pair[1])} vs {display(pair[0])})"
        used_these = sum(these_blocks[i] is not None for i in idx)
        reason_b = ("No study has 2 or more settings of this factor run for both losses." if rb is None else
                    f"With {rb.n_settings} paired settings over these studies the smallest possible p-value is "
                    f"{rb.min_p:.3g}, above alpha = {ALPHA}.")
        reason_t = "No study has 2 or more paired settings of this factor with 2 or more seeds per loss."
        claim_b, claim_t = _claim(rb, pb, pair), _these_claim(rt, pt, pair)
        names = (f"{rt.n_settings} settings of {used_these} stud{'y' if used_these == 1 else 'ies'} (each loss's spread "
                 "pooled as the root mean square over studies)") if rt else ""
        out.append({"factor": name, "studies": studies, "n_settings": rb.n_settings if rb else 0,
                    **_result_dict(rb), "p_adjusted": pb, "claim": claim_b, "question": QUESTIONS["beyond"],
                    "sentence": _sentence(scope, claim_b, rb, pb, reason_b, pair=pair),
                    "these_settings": _these_dict(rt, pt, claim_t, _these_sentence(scope, names, claim_t, rt, pt, reason_t,
                                                                                   pair), pair),
                    "baseline": pair[0], "method": pair[1]})
        if rt is not None:
            out[-1]["these_settings"]["agreement"] = agreement_entry(claim_t, _paper(name, pair), _ci_list(rt.ci90),
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


def default_baseline(losses: list[str]) -> str | None:
    """The baseline of a study with no ``compare`` block: ``ce`` where it has one; else, for a table without
    a study file, the first loss in alphabetical order (a study file without CE must name one)."""
    losses = sorted(set(losses))
    return "ce" if "ce" in losses else (losses[0] if losses else None)


def _units(present: list[str], baseline: str | None) -> list[Pair]:
    """The comparisons of one (study, factor): the baseline against each other loss where the factor ran the
    baseline and another loss; else each loss on its own (a one-method answer)."""
    if baseline in present and len(present) > 1:
        return [(baseline, m) for m in present if m != baseline]
    return [None] * len(present)


def _groups(entries: list[dict[str, Any]]) -> dict[str, tuple[Pair, list[int]]]:
    """What is pooled over factors: each method compared with its baseline (key: the method); with no
    comparison anywhere, the one-method entries of a single loss (key: that loss)."""
    groups: dict[str, tuple[Pair, list[int]]] = {}
    for i, e in enumerate(entries):
        pair = e["_pair"]
        if pair is not None:  # keyed by the method; by "<method> vs <baseline>" where studies compare it with two
            key = next((k for k, (p, _) in groups.items() if p == pair), None)
            key = key or (pair[1] if pair[1] not in groups else f"{pair[1]} vs {pair[0]}")
            groups.setdefault(key, (pair, []))[1].append(i)
    if groups:
        return groups
    singles = [i for i, e in enumerate(entries) if e["method"] is not None]
    methods = {entries[i]["method"] for i in singles}
    return {methods.pop(): (None, singles)} if len(methods) == 1 else {}


def _headline(groups: dict[str, tuple[Pair, list[int]]]) -> str | None:
    """The group ``overall`` reports: SupCon against CE where compared, else the first group."""
    return next((k for k, (pair, _) in groups.items() if pair == PAIR), next(iter(groups), None))


def analyze_factors(trials: pd.DataFrame, metric: str, sensitivity: bool = True,
                    bases: dict[tuple[str, str], dict[str, str | None]] | None = None,
                    equivalence_ratio: float = DEFAULT_EQUIVALENCE_RATIO,
                    primary: dict[str, str] | None = None,
                    baselines: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every (study, factor, method) entry and the pooled ``overall`` entry (see the module docstring).

    Each factor compares every loss with its study's baseline (``baselines``: study -> loss; default
    :func:`default_baseline`), one entry per compared method (``baseline``, ``method``; ratio =
    baseline / method); a factor without the baseline, or with one loss, gets one-method entries.
    ``overall`` pools SupCon against CE where a study compares them (else the first method compared);
    ``overall["by_method"]`` holds every method's pooled entry. Each question is one Holm family over
    every entry and every method's pooled test.

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
    view_blocks: dict[str, list[tuple[SettingTable, SettingTable] | None]] = {v: [] for v in views}
    these_blocks, these_reasons, main_blocks = [], [], []
    singles: list[tuple[str, SettingTable] | None] = []
    drop_inputs: list[DropInput] = []
    main_flags: list[tuple[list[str], str]] = []
    factors: list[dict[str, Any]] = []
    bound = _bound(completed(trials, metric), metric)
    chosen_baselines = {str(st): (baselines or {}).get(str(st)) or default_baseline(list(g["loss"].astype(str)))
                        for st, g in trials.groupby("study", sort=True)}
    for (study, factor), g_all in trials.groupby(["study", "factor"], sort=True):
        present_all = sorted(set(g_all["loss"].astype(str)))  # planned losses, whatever their runs' status
        units = _units(present_all, chosen_baselines[str(study)])
        for unit_index, pair in enumerate(units):
            own = pair if pair is not None else (present_all[unit_index],)
            g = g_all[g_all["loss"].astype(str).isin(own)]
            done = completed(g, metric)
            uneven_reason = ""
            for view in views:
                rows = scored(g, metric) if view == "conservative" else done
                r, block, paired, unpaired, tables = _view(rows, metric, pair, logit if view == "logit" else None,
                                                           remove_seed_noise=view != "conservative")
                flagged = uneven_noise(*block) if block is not None and view != "conservative" else []
                if flagged:  # the swap test does not apply: no answer, and the block stays out of the pooled test
                    uneven_reason = _uneven_reason(flagged, block)
                    r, block = None, None
                results[view].append(r)
                view_blocks[view].append(block)
                if view != "main":
                    continue
                main_blocks.append(block)
                main_flags.append((flagged, uneven_reason if flagged else ""))
                tb, why = _these_block(tables, paired, pair)
                single, why_single = _single_block(tables) if pair is None else (None, "")
                these_blocks.append(tb)
                singles.append(single)
                these_reasons.append(why_single or why)
                compared = pair if pair is not None and set(pair) <= set(tables) else None
                one_method = pair is None and len(tables) == 1
                drop_settings = paired if compared else (list(next(iter(tables.values())).settings) if one_method else [])
                given = (bases or {}).get((str(study), str(factor)))
                loss_bases = given if given is not None else {x: base_setting_of(str(factor), drop_settings) for x in tables}
                drop_inputs.append(drop_input(tables, compared or tuple(tables), drop_settings, loss_bases,
                                              _positions(drop_settings), _cell_keys(done, str(study), str(factor)))
                                   if compared or one_method else DropInput(None, why or "no completed runs."))
                losses = {str(x): _loss_entry(lg, tables.get(str(x)), paired, bound) for x, lg in g.groupby("loss", sort=True)}
                design = g["design"].fillna("").astype(str) if "design" in g else pd.Series("", index=g.index)
                factors.append({"study": str(study), "factor": str(factor), "n_settings": int(g["setting"].nunique()),
                                "paired_settings": len(paired), "unpaired_settings": unpaired, "losses": losses,
                                **_result_dict(r), "divergence_fisher_p": div.divergence_summary(g)["fisher_p"],
                                "_reason": uneven_reason if flagged else _insufficient_reason(set(losses), paired, r, pair),
                                "_paired": paired, "_pair": pair, "_several": len(units) > 1 and pair is not None,
                                "_nuisance": bool(design.map(is_nuisance).any()),
                                "baseline": pair[0] if pair else None, "method": pair[1] if pair else own[0]})

    groups = _groups(factors)
    index = [idx for _, idx in groups.values()]
    across = across_studies(factors, main_blocks, these_blocks, bound is not None, equivalence_ratio)
    pooled = {v: [_pooled_beyond([view_blocks[v][i] for i in idx], pair) for pair, idx in groups.values()]
              for v in views}
    adjusted, pooled_adjusted = holm_with_pooled([_testable_p(r) for r in results["main"]], index,
                                                 [_testable_p(r) for r in pooled["main"]])
    for entry, r, p_adj, single, (flagged, _) in zip(factors, results["main"], adjusted, singles, main_flags):
        pair = entry["_pair"]
        claim = _claim(r, p_adj, pair)
        sig = tuple(entry["losses"].get(x, {}).get("setting_std", math.nan) for x in (pair or PAIR))
        reason = entry.pop("_reason")
        if flagged:
            entry["uneven_noise"] = flagged
        if pair is None:
            reason = _one_method_reason(entry["method"], entry)
        entry.update(p_adjusted=p_adj, claim=claim, question=QUESTIONS["beyond"],
                     sentence=_sentence(_scope(entry), claim, r, p_adj, reason, sig, pair))

    these = _these_section(factors, these_blocks, singles, these_reasons, bound is not None, equivalence_ratio, groups)
    drops = drop_section(factors, drop_inputs, [e["_pair"] for e in factors],
                         [_paper(e["factor"], e["_pair"]) for e in factors], equivalence_ratio, groups)
    by_method = {}
    for (key, (pair, idx)), o, p_adj in zip(groups.items(), pooled["main"], pooled_adjusted):
        claim = _claim(o, p_adj, pair)
        reason = (f"No factor has 2 or more settings run for both {_both(pair)}." if o is None else
                  f"With {o.n_settings} paired settings over all factors the smallest possible p-value is {o.min_p:.3g}, "
                  f"above alpha = {ALPHA}; `{PLANNER}` computes the design that would decide it.")
        if pair is None:
            reason = (f"Beyond these settings compares two methods' sensitivity to other settings like these; with one "
                      f"method ({key}) there is nothing to compare.")
        by_method[key] = {"factors": [f"{factors[i]['study']}/{factors[i]['factor']}" for i in idx],
                          "n_settings": o.n_settings if o else 0, **_result_dict(o), "p_adjusted": p_adj, "claim": claim,
                          "question": QUESTIONS["beyond"],
                          "sentence": _sentence(_pooled_scope(key, groups), claim, o, p_adj, reason, pair=pair),
                          "these_settings": these[key], "drop": drops[key],
                          "baseline": pair[0] if pair else None, "method": pair[1] if pair else key}
    head = _headline(groups)
    if head is not None:
        overall = {**by_method[head], "factors": [f"{e['study']}/{e['factor']}" for e in factors]}
    else:
        reason = "No factor has 2 or more settings run for two methods, and no single method was run alone."
        overall = {"factors": [f"{e['study']}/{e['factor']}" for e in factors], "n_settings": 0, **_result_dict(None),
                   "p_adjusted": math.nan, "claim": Claim.INSUFFICIENT, "question": QUESTIONS["beyond"],
                   "sentence": _sentence("All factors pooled", Claim.INSUFFICIENT, None, math.nan, reason),
                   "these_settings": _these_dict(None, math.nan, Claim.INSUFFICIENT, f"All factors pooled, for these "
                                                 f"settings: cannot tell. {reason}"),
                   "drop": drop_unavailable("All factors pooled", reason), "baseline": None, "method": None}
    overall["by_factor"] = across
    if len(by_method) > 1:
        overall["by_method"] = by_method
    studies = sorted({e["study"] for e in factors})
    chosen = {st: (primary or {}).get(st, "spread") for st in studies}
    for entry in factors:
        _set_agreement(entry, chosen[entry["study"]])
    if len(set(chosen.values())) <= 1:
        _set_agreement(overall, next(iter(chosen.values()), "spread"))
        for entry in by_method.values():
            _set_agreement(entry, next(iter(chosen.values()), "spread"))

    for view in views[1:]:
        adjusted, pooled_adjusted = holm_with_pooled([_testable_p(r) for r in results[view]], index,
                                                     [_testable_p(r) for r in pooled[view]])
        targets = [*zip(factors, results[view], adjusted)]
        for (key, (pair, _)), o, p_adj in zip(groups.items(), pooled[view], pooled_adjusted):
            targets.append((by_method[key], o, p_adj))
            if key == head:
                targets.append((overall, o, p_adj))
        for entry, r, p_adj in targets:
            pair = entry["_pair"] if "_pair" in entry else (
                (entry["baseline"], entry["method"]) if entry.get("baseline") else None)
            entry[view] = {**_result_dict(r), "p_adjusted": p_adj, "claim": _claim(r, p_adj, pair)}
            entry[view]["changes_conclusion"] = entry[view]["claim"] != entry["claim"]
    for entry in factors:
        for key in ("_paired", "_nuisance", "_pair", "_several"):
            entry.pop(key)
    return factors, overall


def _pooled_beyond(blocks: list[tuple[SettingTable, SettingTable] | None], pair: Pair) -> PairedResult | None:
    """The "beyond" test pooled over the factors' blocks (none for a one-method group)."""
    used = [b for b in blocks if b is not None]
    return compare(used, ALPHA) if used and pair is not None else None


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
