"""The stability analysis of a table of runs: one :class:`~.model.FactorEntry` per (study, factor) and
compared method, the pooled entries, and the claims they support.

* **For these settings** (key ``these_settings``): across the settings tried, does the baseline's mean
  accuracy move more than the method's? Settings fixed, seed noise the only noise; this is what the
  paper's Fig. 4a shows, and 3 settings x 3 seeds can decide it. It says nothing about other settings.
* **Beyond these settings** (the entry's top-level keys): would the method vary less across *other*
  settings like these? Settings are a random sample; it needs
  :data:`~supcon_ray.stats.settings.MIN_SETTINGS_BEYOND` paired settings or more to reach alpha at all.
* **The drop from the base** (key ``drop``), its own Holm family.

Each question has its own Holm family (:mod:`.families`): its per-unit tests and its pooled test over
every factor of every study. A "beyond" unit whose seed noise is too uneven for the swap test is
``insufficient``, with the settings named, and stays out of the pooled test. A factor run by one loss gets
that loss's spread and drop, each tested against no effect beyond seed noise. Two sensitivity views of
the "beyond" answer are computed the same way: the logit scale (ceiling effects), and the conservative
view, which scores diverged runs at chance and subtracts nothing for seed noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from supcon_ray.stats.agreement import DEFAULT_EQUIVALENCE_RATIO
from supcon_ray.stats.claims import Claim, display
from supcon_ray.stats.drop_answer import MEASURE

from . import wording
from .across import across_studies
from .answers import beyond_claim, beyond_tests, drop_answers, test_result, these_answer, these_answers
from .families import Families, plan_families
from .model import (NO_INTERVAL, Agreement, BeyondAnswer, DropAnswer, FactorEntry, PooledEntry, TestResult,
                    ViewAnswer)
from .units import VIEWS, Unit, accuracy_bound, default_baseline, units_of

__all__ = ["Analysis", "analyze_entries"]


@dataclass(frozen=True)
class Analysis:
    """The entries of one table: every factor entry, the headline pooled entry, each group's pooled entry."""

    factors: tuple[FactorEntry, ...]
    overall: PooledEntry
    by_method: dict[str, PooledEntry]


def _primary_agreement(these: Agreement | None, drop: Agreement | None, primary: str) -> Agreement | None:
    """The headline agreement: the primary measure's (``spread``: the "these settings" one; ``drop``: the drop's)."""
    source = these if primary == "spread" else drop
    return None if source is None else replace(source, measure=primary)


def _views(units: list[Unit], families: Families, views: tuple[str, ...]) -> dict[str, tuple[list, list]]:
    """Each sensitivity view's per-unit and per-group (test, adjusted p, claim)."""
    out = {}
    for view in views:
        per_unit, adjusted, pooled, pooled_adjusted = beyond_tests(units, families, view)
        out[view] = ([(r, p, beyond_claim(r, p, u.pair)) for u, r, p in zip(units, per_unit, adjusted)],
                     [(r, p, beyond_claim(r, p, g.pair)) for g, r, p in zip(families.groups, pooled, pooled_adjusted)])
    return out


def _view(view: tuple, claim: str) -> ViewAnswer:
    r, p, view_claim = view
    return ViewAnswer(test_result(r), p, view_claim, view_claim != claim)


def _unit_beyond(u: Unit, r, p_adj: float) -> BeyondAnswer:
    claim = beyond_claim(r, p_adj, u.pair)
    reason = u.beyond_reason
    if u.pair is None:
        summary = u.losses.get(u.method)
        reason = wording.one_method_beyond(u.method, summary.setting_std if summary else math.nan,
                                           (summary.setting_std_ci95.low, summary.setting_std_ci95.high)
                                           if summary else (math.nan, math.nan))
    sigmas = tuple(u.losses[x].setting_std if x in u.losses else math.nan for x in u.pair) if u.pair else (math.nan,) * 2
    return BeyondAnswer(test_result(r), p_adj, claim,
                        wording.beyond_sentence(u.scope(), claim, r, p_adj, reason, sigmas,
                                                tuple(u.pair) if u.pair else None))


def analyze_entries(trials: pd.DataFrame, metric: str, sensitivity: bool = True,
                    bases: dict[tuple[str, str], dict[str, str | None]] | None = None,
                    equivalence_ratio: float = DEFAULT_EQUIVALENCE_RATIO, primary: dict[str, str] | None = None,
                    baselines: dict[str, str] | None = None) -> Analysis:
    """Every entry of ``trials`` and the pooled entries (see the module docstring).

    ``baselines``: study -> the loss every other one is compared with (default :func:`default_baseline`).
    ``bases`` names each (study, factor)'s base setting per loss, for the drop (default: the ``x1`` setting
    of a relative factor, else none). ``equivalence_ratio`` is the margin of "no meaningful difference" in the
    agreement with the paper; ``primary`` each study's declared primary measure (default ``spread``).
    ``sensitivity=False`` skips the logit and conservative views (for simulations).
    """
    if "study" not in trials:
        trials = trials.assign(study="study")
    chosen = {str(st): (baselines or {}).get(str(st)) or default_baseline(list(g["loss"].astype(str)))
              for st, g in trials.groupby("study", sort=True)}
    units = units_of(trials, metric, chosen, sensitivity, bases or {})
    bounded = accuracy_bound(trials, metric) is not None
    families = plan_families([u.pair for u in units], [u.method for u in units])
    views = _views(units, families, VIEWS if sensitivity else VIEWS[:1])
    main_units, main_pooled = views["main"]
    these, these_pooled = these_answers(units, families, bounded, equivalence_ratio)
    drops, drops_pooled = drop_answers(units, families, equivalence_ratio)
    measures = {st: (primary or {}).get(st, "spread") for st in sorted({u.study for u in units})}
    one_primary = next(iter(measures.values()), "spread") if len(set(measures.values())) <= 1 else None

    factors = []
    for i, u in enumerate(units):
        beyond = _unit_beyond(u, main_units[i][0], main_units[i][1])
        measure = measures[u.study]
        factors.append(FactorEntry(
            u.study, u.factor, u.n_settings, len(u.paired), tuple(u.unpaired), u.losses, beyond, u.fisher_p, u.pair,
            u.method, these[i], drops[i], measure, uneven_noise=tuple(u.flagged) if u.flagged else None,
            primary_agreement=_primary_agreement(these[i].agreement, drops[i].agreement, measure),
            logit=_view(views["logit"][0][i], beyond.claim) if sensitivity else None,
            conservative=_view(views["conservative"][0][i], beyond.claim) if sensitivity else None))

    by_method = {}
    for j, g in enumerate(families.groups):
        r, p_adj, claim = main_pooled[j]
        uneven = tuple(units[i].name for i in g.members if units[i].flagged)
        reason = wording.pooled_beyond_reason(r, tuple(g.pair) if g.pair else None, g.key, uneven)
        beyond = BeyondAnswer(test_result(r), p_adj, claim,
                              wording.beyond_sentence(families.scope(g, display), claim, r, p_adj, reason,
                                                      pair=tuple(g.pair) if g.pair else None))
        t, d = these_pooled[g.key], drops_pooled[g.key]
        by_method[g.key] = PooledEntry(
            tuple(units[i].name for i in g.members), r.n_settings if r else 0, beyond, t, d, g.pair,
            g.pair.method if g.pair else g.key, primary=one_primary,
            primary_agreement=_primary_agreement(t.agreement, d.agreement, one_primary) if one_primary else None,
            logit=_view(views["logit"][1][j], claim) if sensitivity else None,
            conservative=_view(views["conservative"][1][j], claim) if sensitivity else None)

    names = tuple(u.name for u in units)
    across = across_studies(units, bounded, equivalence_ratio)
    head = families.headline
    if head is not None:
        overall = replace(by_method[head.key], factors=names, by_factor=across)
    else:
        overall = _nothing_pooled(names, across, one_primary)
    return Analysis(tuple(factors), overall, by_method)


def _nothing_pooled(names: tuple[str, ...], across, primary: str | None) -> PooledEntry:
    """The headline when no group can be pooled (no two methods compared, no single method alone)."""
    reason = wording.NOTHING_POOLED
    scope = "All factors pooled"
    beyond = BeyondAnswer(TestResult(), math.nan, Claim.INSUFFICIENT,
                          wording.beyond_sentence(scope, Claim.INSUFFICIENT, None, math.nan, reason))
    these = these_answer(None, math.nan, Claim.INSUFFICIENT, f"{scope}, for these settings: cannot tell. {reason}", None)
    drop = DropAnswer(MEASURE, None, NO_INTERVAL, None, None, None, Claim.INSUFFICIENT,
                      f"{scope}, drop from the base: cannot tell. {reason}", {}, 0, reason=reason)
    return PooledEntry(names, 0, beyond, these, drop, None, None, by_factor=across, primary=primary)
