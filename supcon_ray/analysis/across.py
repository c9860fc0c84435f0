"""Each factor name run in two or more studies, pooled over those studies with each study (dataset) a
block: both questions, each its own Holm family over these pooled factors. "For these settings" keeps
every study's settings fixed (each loss's spread is the root mean square over studies); "beyond"
treats each study's settings as a sample, as for one study.
"""

from __future__ import annotations

import math

from supcon_ray.stats.multiplicity import holm
from supcon_ray.stats.these_settings import compare_these

from . import wording
from .answers import (open_interval, agreement, beyond_claim, paper_of, pooled_beyond, test_result, testable_p,
                      these_answer, these_claim)
from .model import AcrossEntry, BeyondAnswer
from .units import Unit

__all__ = ["across_studies"]


def across_studies(units: list[Unit], bounded: bool, margin: float) -> tuple[AcrossEntry, ...]:
    """The factors pooled over studies, in (factor, pair) order."""
    groups = []
    for name, pair in sorted({(u.factor, tuple(u.pair)) for u in units if u.pair is not None}):
        members = [u for u in units if u.factor == name and u.pair is not None and tuple(u.pair) == pair]
        if len({u.study for u in members}) >= 2:
            groups.append((name, members))
    beyond, these = [], []
    for _, members in groups:
        t = [u.these_block for u in members if u.these_block is not None]
        beyond.append(pooled_beyond(members, "main", members[0].pair))
        these.append(compare_these(t, bounded=bounded, equivalence_ratio=margin, names=tuple(members[0].pair))
                     if t else None)
    p_beyond = holm([testable_p(r) for r in beyond])
    p_these = holm([r.p_value if r else math.nan for r in these])
    p_tost = holm([r.tost_p if r else math.nan for r in these])
    several = len({tuple(u.pair) for _, members in groups for u in members}) > 1
    out = []
    for (name, members), result, p_b, spread, p_t, tost_adjusted in zip(groups, beyond, p_beyond, these, p_these, p_tost):
        pair = members[0].pair
        studies = tuple(u.study for u in members)
        scope = f"{name}, across {wording.name_list(list(studies))} (each a block)"
        if several:
            scope += f" ({wording.versus(tuple(pair))})"
        claim_b, claim_t = beyond_claim(result, p_b, pair), these_claim(spread, p_t, pair)
        used = sum(u.these_block is not None for u in members)
        names = wording.across_settings(spread.n_settings, used) if spread else ""
        sentence_b = wording.beyond_sentence(scope, claim_b, result, p_b, wording.across_beyond_reason(result),
                                             pair=tuple(pair))
        sentence_t = wording.these_sentence(scope, names, claim_t, spread, p_t, wording.NO_STUDY_THESE, tuple(pair))
        agreed = None if spread is None else agreement(claim_t, paper_of(name, pair), open_interval(spread.ci90),
                                                       margin, spread.tost_p, tost_adjusted)
        out.append(AcrossEntry(name, studies, result.n_settings if result else 0,
                               BeyondAnswer(test_result(result), p_b, claim_b, sentence_b),
                               these_answer(spread, p_t, claim_t, sentence_t, pair, agreed), pair))
    return tuple(out)
