"""The drop from the base (:mod:`.drop`) over one entry or pooled over several: each loss's drop, and for
two losses their comparison and equivalence test; the claims each supports. The report's ``drop``
answers are assembled from these in :mod:`supcon_ray.analysis`.

Two methods: the comparison tests a difference of 0 (``drop_CE - drop_SupCon``), with the ratio's
Fieller interval where both drops are positive. One method: its drop is tested against 0 (claims
``moves`` / ``no_detectable_effect``). A loss whose tuned base is clearly below its other settings
(:func:`base_below`) gains away from its base, so two losses cannot be ranked by their drops.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

from .claims import Claim, less_sensitive
from .drop import DropComparison, LossDrop, compare_drops, equivalence_p, fieller, loss_drop
from .settings import ALPHA
from .variance import SettingTable

MEASURE = "drop from the base"


@dataclass(frozen=True)
class DropInput:
    """What one entry contributes: each analysed loss's ``(table, base setting)`` over the settings
    compared (``None`` where the drop cannot be computed, with the reason), their numeric positions, and
    per loss each setting's cell of runs (a base run analysed in several factors has one key in all)."""

    tables: dict[str, tuple[SettingTable, str]] | None
    reason: str = ""
    positions: dict[str, float] | None = None
    keys: dict[str, dict[str, Hashable]] | None = None

    @property
    def n_settings(self) -> int:
        return len(next(iter(self.tables.values()))[0].settings) if self.tables else 0


@dataclass(frozen=True)
class DropEstimate:
    """The drops of one answer: each loss's, and for two losses their comparison and TOST p-value."""

    losses: dict[str, LossDrop]
    bases: dict[str, str]
    comparison: DropComparison | None = None
    tost: float = math.nan

    @property
    def p_value(self) -> float:
        if self.comparison is not None:
            return self.comparison.p_value
        return next(iter(self.losses.values())).p_value


def estimate(inputs: list[DropInput], pair: tuple[str, str] | None, margin: float) -> DropEstimate | None:
    """The drops over one or more entries' inputs (pooled: the mean drop over factors); ``None`` when no
    input has tables."""
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
        return DropEstimate(drops, bases)
    baseline, method = drops[pair[0]], drops[pair[1]]
    return DropEstimate(drops, bases, compare_drops(baseline, method), equivalence_p(baseline, method, margin))


def base_below(losses: dict[str, LossDrop]) -> bool:
    """Whether some loss's tuned base is clearly below the mean of its other settings (drop interval below 0)."""
    return any(d.ci95[1] < 0 for d in losses.values())


def claim_two(e: DropEstimate | None, p_adjusted: float, pair: tuple[str, str]) -> str:
    """The claim of a two-method drop answer: a direction, no difference, or insufficient (no estimate, or a
    base below its other settings)."""
    if e is None or e.comparison is None or base_below(e.losses):
        return Claim.INSUFFICIENT
    if p_adjusted < ALPHA and e.comparison.direction != 0:
        return less_sensitive(pair[1]) if e.comparison.direction > 0 else less_sensitive(pair[0])
    return Claim.NO_DIFFERENCE


def claim_one(d: LossDrop | None, p_adjusted: float) -> str:
    """The claim of a one-method drop answer against no drop beyond seed noise."""
    if d is None:
        return Claim.INSUFFICIENT
    return Claim.MOVES if p_adjusted < ALPHA else Claim.NO_EFFECT


def ratio_ci90(e: DropEstimate, pair: tuple[str, str]) -> tuple[float, float]:
    """The Fieller 90% interval of the ratio of drops (baseline / method), for the equivalence test."""
    return fieller(e.losses[pair[0]].contrast, e.losses[pair[1]].contrast, 2 * ALPHA)
