"""Each question's answers over the units and the pooled groups, one Holm family per question
(:mod:`.families`): the claim the adjusted p-value supports, its sentence (:mod:`.wording`), and the
agreement with the paper (:mod:`supcon_ray.stats.agreement`).

* **beyond these settings** (:mod:`supcon_ray.stats.paired`): settings as a sample; a design that cannot
  reach alpha at all is ``insufficient``, decided from the design alone (its p-value stays out of the family);
* **for these settings** (:mod:`supcon_ray.stats.these_settings`): the settings tried, seed noise the only noise;
  a one-method unit tests its spread against no effect beyond seed noise;
* **the drop from the base** (:mod:`supcon_ray.stats.drop_answer`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from supcon_ray.labels import SettingLabel
from supcon_ray.stats.agreement import PAPER_FIG4A, PAPER_PAIR, outcome, pooled_direction
from supcon_ray.stats.claims import Claim, display, less_sensitive
from supcon_ray.stats.drop_answer import MEASURE, DropEstimate, claim_one, claim_two, estimate, ratio_ci90
from supcon_ray.stats.paired import PairedResult, compare, compare_pooled
from supcon_ray.stats.settings import ALPHA
from supcon_ray.stats.these_settings import OneLossSpread, TheseSettingsResult, compare_these, spread_of_one

from . import wording
from .families import Families
from .model import (NO_INTERVAL, Agreement, DropAnswer, DropDifference, Interval, LossDrop, LossSpread, Pair,
                    TestResult, TheseAnswer)
from .units import Unit

__all__ = ["agreement", "beyond_claim", "open_interval", "beyond_tests", "pooled_beyond", "drop_answers", "paper_of", "test_result", "testable_p",
           "these_answer", "these_answers", "these_claim"]


def _num(x: float | None) -> float | None:
    """A number the contract writes as ``null`` where it is NaN or infinite."""
    return None if x is None or math.isnan(x) or math.isinf(x) else float(x)


def open_interval(ci: tuple[float, float]) -> Interval:
    """A ratio's interval: an open lower end 0, an unbounded upper end ``None`` (both ``None`` when unknown)."""
    if math.isnan(ci[0]):
        return NO_INTERVAL
    return Interval(0.0 if ci[0] <= 0 else float(ci[0]), None if math.isinf(ci[1]) else float(ci[1]))


def paper_of(factor: str, pair: Pair | None) -> str | None:
    """The paper's direction for ``factor``: only for its own pair, SupCon against CE."""
    return PAPER_FIG4A.get(factor) if pair is not None and tuple(pair) == PAPER_PAIR else None


def agreement(claim: str, paper: str | None, ci90: Interval, margin: float, tost_p: float | None,
              tost_p_adjusted: float | None) -> Agreement:
    """A claim set against the paper's direction (:func:`supcon_ray.stats.agreement.outcome`)."""
    result = outcome(claim, paper, tost_p_adjusted)
    return Agreement(None if result is None else str(result), paper, ci90, margin, tost_p, tost_p_adjusted)


def _direction_claim(direction: int, pair: Pair) -> str:
    """``+1`` (the baseline moves more): the method is less sensitive; else the baseline is."""
    return less_sensitive(pair.method) if direction > 0 else less_sensitive(pair.baseline)


# --- beyond these settings ------------------------------------------------------------------------

def test_result(r: PairedResult | None) -> TestResult:
    if r is None:
        return TestResult()
    return TestResult(r.ratio, Interval.of(r.ci95), r.p_value, r.min_p, r.exact, r.direction)


def testable_p(r: PairedResult | None) -> float:
    """A test's p-value if its design can reach alpha at all, else NaN (left out of the Holm family,
    a choice made from the design alone)."""
    return r.p_value if r is not None and r.min_p <= ALPHA else math.nan


def beyond_claim(r: PairedResult | None, p_adjusted: float, pair: Pair | None) -> str:
    if r is None or r.min_p > ALPHA or pair is None:
        return Claim.INSUFFICIENT
    if p_adjusted < ALPHA:
        return _direction_claim(r.direction, pair)
    return Claim.NO_DIFFERENCE


def beyond_tests(units: list[Unit], families: Families, view: str
                 ) -> tuple[list[PairedResult | None], list[float], list[PairedResult | None], list[float]]:
    """One view's "beyond" tests and adjusted p-values: per unit, then per group (pooled over its units' blocks)."""
    per_unit = [u.beyond[view] for u in units]
    pooled = [pooled_beyond([units[i] for i in g.members], view, g.pair) for g in families.groups]
    adjusted, pooled_adjusted = families.adjust([testable_p(r) for r in per_unit], [testable_p(r) for r in pooled])
    return per_unit, adjusted, pooled, pooled_adjusted


def pooled_beyond(units: list[Unit], view: str, pair: Pair | None) -> PairedResult | None:
    """The "beyond" test pooled over the units' blocks of ``view`` (none for a one-method group): one block
    is that unit's own test; several are pooled by :func:`supcon_ray.stats.paired.compare_pooled`, each
    cell of runs keyed by its trial ids (a study's base is one cell in all its factors)."""
    used = [u for u in units if u.blocks.get(view) is not None]
    if not used or pair is None:
        return None
    blocks = [u.blocks[view] for u in used]
    if len(blocks) == 1:
        return compare(blocks, ALPHA)
    keys = [(u.keys(pair.baseline, u.blocks[view][0]), u.keys(pair.method, u.blocks[view][1])) for u in used]
    return compare_pooled(blocks, ALPHA, keys=keys)



# --- for these settings ---------------------------------------------------------------------------

def these_claim(r: TheseSettingsResult | None, p_adjusted: float, pair: Pair | None) -> str:
    if r is None or pair is None:
        return Claim.INSUFFICIENT
    if math.isnan(r.ratio):  # both spreads estimated at zero
        return Claim.NO_DIFFERENCE
    if p_adjusted < ALPHA:
        return _direction_claim(r.direction, pair)
    return Claim.NO_DIFFERENCE


def _one_claim(r: OneLossSpread | None, p_adjusted: float) -> str:
    if r is None:
        return Claim.INSUFFICIENT
    return Claim.MOVES if p_adjusted < ALPHA else Claim.NO_EFFECT


def these_answer(r: TheseSettingsResult | None, p_adjusted: float, claim: str, sentence: str, pair: Pair,
                 agreed: Agreement | None = None) -> TheseAnswer:
    """A two-method "these settings" answer (NaN never appears: ``None`` for an undefined ratio or an
    unbounded end, ``0`` for an open lower end)."""
    if r is None:
        return TheseAnswer(None, NO_INTERVAL, None, None, claim, sentence, {})
    losses = {loss: LossSpread(r.spreads[loss], Interval(_num(r.spread_ci95[loss][0]) or 0.0,
                                                         _num(r.spread_ci95[loss][1]))) for loss in pair}
    return TheseAnswer(_num(r.ratio), Interval(_num(r.ci95[0]) if r.ci95[0] > 0 else 0.0, _num(r.ci95[1])),
                       _num(r.p_value), _num(p_adjusted), claim, sentence, losses, r.n_settings, agreed)


def _one_answer(loss: str, r: OneLossSpread | None, p_adjusted: float, claim: str, sentence: str) -> TheseAnswer:
    """A one-method "these settings" answer: no ratio; the spread's test is of no effect beyond seed noise."""
    if r is None:
        return TheseAnswer(None, NO_INTERVAL, None, None, claim, sentence, {}, one_method=True)
    losses = {loss: LossSpread(r.spread, Interval(_num(r.ci95[0]) or 0.0, _num(r.ci95[1])))}
    return TheseAnswer(None, NO_INTERVAL, _num(r.p_value), _num(p_adjusted), claim, sentence, losses, r.n_settings,
                       one_method=True)


def _setting_names(settings: Iterable[str]) -> str:
    return wording.name_list([SettingLabel(s).value for s in sorted(settings, key=lambda s: SettingLabel(s).order())])


def these_answers(units: list[Unit], families: Families, bounded: bool, margin: float
                  ) -> tuple[list[TheseAnswer], dict[str, TheseAnswer]]:
    """Every unit's and every group's "these settings" answer, one Holm family (two-method comparisons and
    one-method tests of no effect alike)."""
    results = [compare_these([u.these_block], bounded=bounded, equivalence_ratio=margin, names=tuple(u.pair))
               if u.these_block is not None else None for u in units]
    single_spreads = [spread_of_one([u.single[1]], bounded=bounded) if u.single is not None else None for u in units]
    pooled: list[TheseSettingsResult | OneLossSpread | None] = []
    for g in families.groups:
        # the factors of a study share its base's runs: each block's cells are keyed by their trial ids
        if g.pair is not None:
            used = [units[i] for i in g.members if units[i].these_block is not None]
            keys = [(u.keys(g.pair.baseline, u.these_block[0]), u.keys(g.pair.method, u.these_block[1])) for u in used]
            pooled.append(compare_these([u.these_block for u in used], bounded=bounded, equivalence_ratio=margin,
                                        names=tuple(g.pair), keys=keys) if used else None)
        else:
            used = [units[i] for i in g.members if units[i].single is not None]
            pooled.append(spread_of_one([u.single[1] for u in used], bounded=bounded,
                                        keys=[u.keys(*u.single) for u in used]) if used else None)
    p = [r.p_value if r else (o.p_value if o else math.nan) for r, o in zip(results, single_spreads)]
    adjusted, pooled_adj = families.adjust(p, [r.p_value if r else math.nan for r in pooled])
    tost_adj, pooled_tost_adj = families.adjust([r.tost_p if r else math.nan for r in results],
                                                [getattr(r, "tost_p", math.nan) if r else math.nan for r in pooled])
    per_unit = [_unit_these(u, r, o, p_adj, t_adj, margin)
                for u, r, o, p_adj, t_adj in zip(units, results, single_spreads, adjusted, tost_adj)]
    out = {}
    for g, r, adj, t_adj in zip(families.groups, pooled, pooled_adj, pooled_tost_adj):
        scope = families.scope(g, display)
        if g.pair is None:
            claim = _one_claim(r, adj)
            names = wording.pooled_settings(r.n_settings, sum(units[i].single is not None for i in g.members), None) if r else ""
            out[g.key] = _one_answer(g.key, r, adj, claim,
                                     wording.one_sentence(scope, names, g.key, claim, r, adj, wording.NO_SINGLE_THESE))
            continue
        claim = these_claim(r, adj, g.pair)
        used = sum(units[i].these_block is not None for i in g.members)
        names = wording.pooled_settings(r.n_settings, used, tuple(g.pair)) if r else ""
        sentence = wording.these_sentence(scope, names, claim, r, adj, wording.NO_PAIRED_THESE, tuple(g.pair))
        agreed = None if r is None else agreement(
            claim, pooled_direction((units[i].factor for i in g.members), tuple(g.pair)), open_interval(r.ci90),
            margin, r.tost_p, t_adj)
        out[g.key] = these_answer(r, adj, claim, sentence, g.pair, agreed)
    return per_unit, out


def _unit_these(u: Unit, r: TheseSettingsResult | None, o: OneLossSpread | None, p_adj: float, t_adj: float,
                margin: float) -> TheseAnswer:
    paired = u.paired if r else (u.single[1].settings if u.single else [])
    names = _setting_names(paired) if (r or o) else ""
    if (r or o) and u.nuisance:
        names += wording.RETUNED
    if u.single is not None:
        claim = _one_claim(o, p_adj)
        return _one_answer(u.single[0], o, p_adj, claim,
                           wording.one_sentence(u.scope(), names, u.single[0], claim, o, p_adj, u.these_reason))
    claim = these_claim(r, p_adj, u.pair)
    sentence = wording.these_sentence(u.scope(), names, claim, r, p_adj, u.these_reason,
                                      tuple(u.pair) if u.pair else None)
    agreed = None if r is None else agreement(claim, paper_of(u.factor, u.pair), open_interval(r.ci90), margin,
                                              r.tost_p, t_adj)
    return these_answer(r, p_adj, claim, sentence, u.pair, agreed)


# --- drop from the base ---------------------------------------------------------------------------

def _interval(ci: tuple[float, float]) -> Interval:
    return Interval(_num(ci[0]), None if math.isinf(ci[1]) else _num(ci[1]))


def _drop_claim(e: DropEstimate | None, p_adj: float, pair: Pair | None) -> str:
    if pair is not None:
        return claim_two(e, p_adj, tuple(pair))
    return claim_one(next(iter(e.losses.values())) if e else None, p_adj)


def drop_answer(e: DropEstimate | None, p_adjusted: float, claim: str, sentence: str, reason: str,
                pair: Pair | None, paper: str | None, margin: float, tost_adjusted: float, n_settings: int) -> DropAnswer:
    """One drop answer (two methods: the difference and, where both drops are positive, the ratio with the
    agreement; one method: its drop tested against 0)."""
    if e is None:
        return DropAnswer(MEASURE, None, NO_INTERVAL, None, None, None, claim, sentence, {}, n_settings, reason=reason)
    below = wording.base_not_best(e.losses) if pair is not None else ""
    losses = {loss: LossDrop(d.drop, _interval(d.ci95), d.p_value, e.bases.get(loss), d.worst, d.worst_setting,
                             d.width_decades) for loss, d in e.losses.items()}
    if pair is None:
        return DropAnswer(MEASURE, None, NO_INTERVAL, None, e.p_value, _num(p_adjusted), claim, sentence, losses,
                          n_settings, reason=below or None)
    c = e.comparison
    known = not math.isnan(c.ratio)
    ci90 = _interval(ratio_ci90(e, tuple(pair))) if known else NO_INTERVAL
    return DropAnswer(MEASURE, _num(c.ratio), _interval(c.ratio_ci95) if known else NO_INTERVAL,
                      DropDifference(c.difference, _interval(c.difference_ci95)), e.p_value, _num(p_adjusted), claim,
                      sentence, losses, n_settings, reason=below or None,
                      agreement=agreement(claim, paper, ci90, margin, _num(e.tost), _num(tost_adjusted)))


def _drop_sentence(scope: str, claim: str, e: DropEstimate | None, p_adj: float, reason: str, pair: Pair | None) -> str:
    difference = (e.comparison.difference, e.comparison.difference_ci95) if e is not None and e.comparison else None
    return wording.drop_sentence(scope, claim, e.losses if e else None, difference, p_adj, reason,
                                 tuple(pair) if pair else None)


def drop_answers(units: list[Unit], families: Families, margin: float) -> tuple[list[DropAnswer], dict[str, DropAnswer]]:
    """Every unit's and every group's drop answer: one Holm family over them all. The paper's direction
    applies to SupCon against CE only."""
    estimates = [estimate([u.drop], u.pair, margin) for u in units]
    pooled = [estimate([units[i].drop for i in g.members if units[i].drop.tables is not None], g.pair, margin)
              for g in families.groups]
    adjusted, pooled_adj = families.adjust([e.p_value if e else math.nan for e in estimates],
                                           [e.p_value if e else math.nan for e in pooled])
    tost_adj, pooled_tost_adj = families.adjust([e.tost if e else math.nan for e in estimates],
                                                [e.tost if e else math.nan for e in pooled])
    per_unit = []
    for u, e, p_adj, t_adj in zip(units, estimates, adjusted, tost_adj):
        claim = _drop_claim(e, p_adj, u.pair)
        sentence = _drop_sentence(u.scope(), claim, e, p_adj, u.drop.reason, u.pair)
        per_unit.append(drop_answer(e, p_adj, claim, sentence, u.drop.reason, u.pair, paper_of(u.factor, u.pair),
                                    margin, t_adj, u.drop.n_settings))
    out = {}
    for g, e, adj, t_adj in zip(families.groups, pooled, pooled_adj, pooled_tost_adj):
        pair = g.pair if e else None
        claim = _drop_claim(e, adj, g.pair) if e else Claim.INSUFFICIENT
        sentence = _drop_sentence(families.scope(g, display), claim, e, adj, wording.NO_POOLED_DROP, pair)
        paper = pooled_direction((units[i].factor for i in g.members), tuple(g.pair) if g.pair else None)
        n = sum(units[i].drop.n_settings for i in g.members) if e else 0
        out[g.key] = drop_answer(e, adj, claim, sentence, wording.NO_POOLED_DROP, pair, paper, margin, t_adj, n)
    return per_unit, out
