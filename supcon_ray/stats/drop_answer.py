"""The report's ``drop`` entries: the drop from the base (:mod:`.drop`) per factor and pooled, with the
claims of its own Holm family, the agreement with the paper, and plain sentences.

Every (study, factor) entry gets a ``drop`` object beside ``these_settings``::

    {"measure": "drop from the base", "ratio", "ci95", "difference": {"estimate", "ci95"},
     "p_value", "p_adjusted", "claim", "sentence", "reason"?, "n_settings",
     "losses": {loss: {"drop", "ci95", "p_value", "base_setting", "worst", "worst_setting", "width_decades"}},
     "agreement": {...}}

Two methods: ``ratio`` = drop_CE / drop_SupCon (``null`` unless both drops are positive) with its
Fieller interval, ``difference`` = drop_CE - drop_SupCon with its t-interval, and ``p_value`` tests a
difference of 0. One method: ``ratio``, ``ci95`` and ``difference`` are null and ``p_value`` tests a
drop of 0 (claims ``moves`` / ``no_detectable_effect``). ``drop`` is null, with the reason, where the
base value is not among the factor's settings or a setting has fewer than 2 seeds.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from .claims import Claim, display, less_sensitive
from .agreement import agreement_entry, pooled_direction
from .drop import DropComparison, LossDrop, compare_drops, equivalence_p, fieller, loss_drop
from .multiplicity import holm_with_pooled
from .settings import ALPHA, MIN_SEEDS_THESE
from .variance import SettingTable

MEASURE = "drop from the base"
_name = display


@dataclass
class DropInput:
    """What one (study, factor) entry contributes: each analysed loss's ``(table, base setting)`` over the
    settings compared (``None`` and ``reason`` where the drop cannot be computed) and numeric positions."""

    tables: dict[str, tuple[SettingTable, str]] | None
    reason: str = ""
    positions: dict[str, float] | None = None
    #: per loss, each setting's cell of runs (a base run analysed in several factors has one key in all)
    keys: dict[str, dict[str, Hashable]] | None = None


def drop_input(tables: dict[str, SettingTable], losses: tuple[str, ...], settings: list[str],
               bases: dict[str, str | None], positions: dict[str, float] | None,
               keys: dict[str, dict[str, Hashable]] | None = None) -> DropInput:
    """Each loss's table over ``settings`` with its base setting, or why the drop cannot be computed."""
    out = {}
    for loss in losses:
        base = bases.get(loss)
        if base is None:
            return DropInput(None, f"{loss}'s base value is not among this factor's settings (or is not known for "
                                   "this folder), so there is no base to drop from.")
        if base not in settings:
            return DropInput(None, f"{loss}'s base setting {base} has no completed runs to compare.")
        if len(settings) < 2:
            return DropInput(None, "at least 2 settings are needed: the base and another.")
        table = tables[loss].subset(settings)
        few = [s for s, n in zip(table.settings, table.n) if n < MIN_SEEDS_THESE]
        if few:
            return DropInput(None, f"every setting needs at least {MIN_SEEDS_THESE} completed seeds to measure seed "
                                   f"noise; fewer for {loss} at {', '.join(few)}.")
        out[loss] = (table, base)
    return DropInput(out, positions=positions, keys=keys)


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else float(x)


def _ci(ci: tuple[float, float]) -> list[float | None]:
    return [_num(ci[0]), None if math.isinf(ci[1]) else _num(ci[1])]


def _loss_dict(d: LossDrop, base: str | None) -> dict[str, Any]:
    return {"drop": d.drop, "ci95": _ci(d.ci95), "p_value": d.p_value, "base_setting": base, "worst": d.worst,
            "worst_setting": d.worst_setting, "width_decades": d.width_decades}


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _interval(ci: tuple[float, float]) -> str:
    hi = "inf" if math.isinf(ci[1]) else _fmt(ci[1])
    return f"[{_fmt(ci[0])}, {hi}]"


def _base_not_best(a: "_Answer | None") -> str:
    """Why the drop cannot rank two losses: a loss whose tuned base is clearly below its other settings
    (its drop's interval below 0) gains away from its base, so its drop says nothing of its sensitivity."""
    if a is None:
        return ""
    below = [f"{_name(loss)}'s tuned base is below the mean of its other settings (drop {_fmt(d.drop)} "
             f"{_interval(d.ci95)})" for loss, d in a.losses.items() if d.ci95[1] < 0]
    if not below:
        return ""
    return (f"{'; '.join(below)}: the base was not the best setting here, so the drop from it does not measure "
            "sensitivity, and the two losses cannot be ranked by it.")


def _claim_two(c: DropComparison | None, p_adjusted: float, a: "_Answer | None" = None,
               pair: tuple[str, str] = ("ce", "supcon")) -> str:
    if c is None or _base_not_best(a):
        return Claim.INSUFFICIENT
    if p_adjusted < ALPHA and c.direction != 0:
        return less_sensitive(pair[1]) if c.direction > 0 else less_sensitive(pair[0])
    return Claim.NO_DIFFERENCE


def _claim_one(d: LossDrop | None, p_adjusted: float) -> str:
    if d is None:
        return Claim.INSUFFICIENT
    return Claim.MOVES if p_adjusted < ALPHA else Claim.NO_EFFECT


@dataclass
class _Answer:
    """One comparison of the family: two methods (``comparison``) or one (``single``)."""

    losses: dict[str, LossDrop]
    bases: dict[str, str]
    comparison: DropComparison | None = None
    tost: float = math.nan

    @property
    def p_value(self) -> float:
        if self.comparison is not None:
            return self.comparison.p_value
        return next(iter(self.losses.values())).p_value


def _answer(inputs: list[DropInput], pair: tuple[str, str] | None, margin: float) -> _Answer | None:
    """The answer over one or more entries' inputs (pooled: the mean drop over factors)."""
    usable = [i for i in inputs if i.tables is not None]
    if not usable:
        return None
    losses = list(usable[0].tables)
    one = len(usable) == 1
    def keys(loss: str) -> list[list[Hashable]] | None:
        if any(i.keys is None for i in usable):
            return None
        return [[i.keys[loss][s] for s in i.tables[loss][0].settings] for i in usable]

    drops = {loss: loss_drop([i.tables[loss] for i in usable], positions=usable[0].positions if one else None,
                             keys=keys(loss)) for loss in losses}
    bases = {loss: usable[0].tables[loss][1] for loss in losses} if one else {}
    if pair is None:
        return _Answer(drops, bases)
    ce, sc = drops[pair[0]], drops[pair[1]]
    return _Answer(drops, bases, compare_drops(ce, sc), equivalence_p(ce, sc, margin))


def _sentence(scope: str, claim: str, a: _Answer | None, p_adjusted: float, reason: str, pair: tuple[str, str] | None) -> str:
    scope = f"{scope}, drop from the base"
    if a is None:
        return f"{scope}: cannot tell. {reason}"
    if pair is not None and claim == Claim.INSUFFICIENT:
        return f"{scope}: cannot tell. {_base_not_best(a)}"
    parts = "; ".join(f"{_name(loss)} {_fmt(d.drop)} {_interval(d.ci95)}" for loss, d in a.losses.items())
    if pair is None:
        (loss, d), = a.losses.items()
        loss = _name(loss)
        detail = f"drop {_fmt(d.drop)}, 95% CI {_interval(d.ci95)}, Holm-adjusted p = {p_adjusted:.3g}"
        if claim == Claim.MOVES:
            return (f"{scope}: {loss}'s mean accuracy away from its base is lower by {_fmt(d.drop)} on average "
                    f"({detail}); the drop is more than seed noise explains." if d.drop > 0 else
                    f"{scope}: {loss}'s mean accuracy away from its base differs from the base's by {_fmt(-d.drop)} "
                    f"on average, higher away from it ({detail}).")
        return f"{scope}: no drop beyond seed noise is detectable for {loss} ({detail})."
    c = a.comparison
    b, m = _name(pair[0]), _name(pair[1])
    detail = (f"mean drop {parts}; difference {b} - {m} {_fmt(c.difference)}, 95% CI {_interval(c.difference_ci95)}, "
              f"Holm-adjusted p = {p_adjusted:.3g}")
    if claim == less_sensitive(pair[1]):
        return f"{scope}: away from its tuned base, {m} loses less accuracy than {b} ({detail})."
    if claim == less_sensitive(pair[0]):
        return f"{scope}: away from its tuned base, {b} loses less accuracy than {m} ({detail})."
    return f"{scope}: no difference in how much the two losses lose away from their bases is detectable ({detail})."


def _entry(a: _Answer | None, p_adjusted: float, claim: str, sentence: str, reason: str, pair: tuple[str, str] | None,
           paper: str | None, margin: float, tost_adjusted: float) -> dict[str, Any]:
    out: dict[str, Any] = {"measure": MEASURE, "ratio": None, "ci95": [None, None], "difference": None,
                           "p_value": None, "p_adjusted": None, "claim": claim, "sentence": sentence, "losses": {}}
    if a is None:
        out["reason"] = reason
        return out
    if pair is not None and _base_not_best(a):
        out["reason"] = _base_not_best(a)
    out.update(p_value=a.p_value, p_adjusted=_num(p_adjusted),
               losses={loss: _loss_dict(d, a.bases.get(loss)) for loss, d in a.losses.items()})
    if pair is not None:
        c = a.comparison
        out.update(ratio=_num(c.ratio), ci95=_ci(c.ratio_ci95) if not math.isnan(c.ratio) else [None, None],
                   difference={"estimate": c.difference, "ci95": _ci(c.difference_ci95)})
        ci90 = _ci(_fieller90(a, pair)) if not math.isnan(c.ratio) else [None, None]
        out["agreement"] = agreement_entry(claim, paper, ci90, margin, _num(a.tost), _num(tost_adjusted))
    return out


def _fieller90(a: _Answer, pair: tuple[str, str]) -> tuple[float, float]:
    return fieller(a.losses[pair[0]].contrast, a.losses[pair[1]].contrast, 2 * ALPHA)


def drop_unavailable(scope: str, reason: str) -> dict[str, Any]:
    """A ``drop`` entry that cannot be computed, with why."""
    return _entry(None, math.nan, Claim.INSUFFICIENT, f"{scope}, drop from the base: cannot tell. {reason}", reason,
                  None, None, math.nan, math.nan) | {"n_settings": 0}


def drop_section(entries: list[dict[str, Any]], inputs: list[DropInput], pairs: list[tuple[str, str] | None],
                 papers: list[str | None], margin: float,
                 groups: dict[str, tuple[tuple[str, str] | None, list[int]]]) -> dict[str, dict[str, Any]]:
    """Fill every entry's ``drop`` and return each group's pooled ``drop`` entry (``groups``: key -> (pair,
    entry indices), as :func:`supcon_ray.stats.stability.analyze_factors` forms them): one Holm family over
    every entry and every group's pooled answer. The paper's direction applies to SupCon against CE only."""
    answers = [_answer([i], pair, margin) for i, pair in zip(inputs, pairs)]
    pooled = {key: _answer([inputs[i] for i in idx if inputs[i].tables is not None], pair, margin)
              for key, (pair, idx) in groups.items()}
    index = [idx for _, idx in groups.values()]
    adjusted, pooled_adj = holm_with_pooled([a.p_value if a else math.nan for a in answers], index,
                                            [a.p_value if a else math.nan for a in pooled.values()])
    tost_adj, pooled_tost_adj = holm_with_pooled([a.tost if a else math.nan for a in answers], index,
                                                 [a.tost if a else math.nan for a in pooled.values()])
    for entry, a, p_adj, t_adj, inp, pair, paper in zip(entries, answers, adjusted, tost_adj, inputs, pairs, papers):
        claim = _claim_two(a.comparison if a else None, p_adj, a, pair) if pair else _claim_one(
            next(iter(a.losses.values())) if a else None, p_adj)
        scope = f"{entry['study']} / {entry['factor']}"
        if entry.get("_several"):
            scope += f" ({_name(pair[1])} vs {_name(pair[0])})"
        sentence = _sentence(scope, claim, a, p_adj, inp.reason, pair)
        entry["drop"] = _entry(a, p_adj, claim, sentence, inp.reason, pair, paper, margin, t_adj)
        entry["drop"]["n_settings"] = len(inp.tables[next(iter(inp.tables))][0].settings) if inp.tables else 0
    out = {}
    for (key, (pair, idx)), adj, t_adj in zip(groups.items(), pooled_adj, pooled_tost_adj):
        a = pooled[key]
        claim = (_claim_two(a.comparison, adj, a, pair) if pair else
                 _claim_one(next(iter(a.losses.values())), adj)) if a else Claim.INSUFFICIENT
        reason = "No factor has its base among 2 or more settings with 2 or more seeds each."
        scope = "All factors pooled" if len(groups) == 1 else (
            f"All factors pooled ({_name(pair[1])} vs {_name(pair[0])})" if pair else f"All factors pooled ({_name(key)})")
        paper = pooled_direction((entries[i]["factor"] for i in idx), pair)
        out[key] = _entry(a, adj, claim, _sentence(scope, claim, a, adj, reason, pair if a else None), reason,
                          pair if a else None, paper, margin, t_adj)
        used = [i for i in idx if inputs[i].tables is not None]
        out[key]["n_settings"] = sum(len(inputs[i].tables[next(iter(inputs[i].tables))][0].settings)
                                     for i in used) if a else 0
    return out
