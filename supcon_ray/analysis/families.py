"""The Holm families of a report, as one plan: which units each pooled test pools, and the adjustment of
every question's p-values over its units and its pooled tests together.

Each question (beyond, these settings, drop from the base, and their equivalence tests) is one family
over every unit and every group's pooled test; a group of one unit pools nothing, so its pooled test is
that unit's, counted once (:func:`supcon_ray.stats.multiplicity.holm_with_pooled`).
"""

from __future__ import annotations

from dataclasses import dataclass

from supcon_ray.stats.agreement import PAPER_PAIR
from supcon_ray.stats.multiplicity import holm_with_pooled

from .model import Pair

__all__ = ["Families", "Group", "plan_families"]


@dataclass(frozen=True)
class Group:
    """What one pooled answer pools: the units comparing ``pair`` (``None``: one method alone), by index."""

    key: str
    pair: Pair | None
    members: tuple[int, ...]


@dataclass(frozen=True)
class Families:
    """The units (by index) and the groups pooled over them; :meth:`adjust` is one question's family."""

    n_units: int
    groups: tuple[Group, ...]

    def adjust(self, p_units: list[float], p_pooled: list[float]) -> tuple[list[float], list[float]]:
        """Holm-adjusted p-values of every unit and of every group's pooled test (in :attr:`groups` order)."""
        return holm_with_pooled(p_units, [list(g.members) for g in self.groups], p_pooled)

    @property
    def headline(self) -> Group | None:
        """The group the report's ``overall`` shows: SupCon against CE where compared, else the first."""
        return next((g for g in self.groups if g.pair is not None and tuple(g.pair) == PAPER_PAIR),
                    self.groups[0] if self.groups else None)

    def scope(self, group: Group, display) -> str:
        """How sentences name a pooled answer (``display`` names a loss)."""
        if len(self.groups) <= 1:
            return "All factors pooled"
        if group.pair is not None:
            return f"All factors pooled ({display(group.pair.method)} vs {display(group.pair.baseline)})"
        return f"All factors pooled ({display(group.key)})"


def plan_families(pairs: list[Pair | None], methods: list[str]) -> Families:
    """The groups over units with these ``pairs`` (and own ``methods``): each compared method with its
    baseline (key: the method; ``<method> vs <baseline>`` where studies compare it with two); with no
    comparison anywhere, the one-method units of a single loss (key: that loss)."""
    keyed: dict[str, tuple[Pair, list[int]]] = {}
    for i, pair in enumerate(pairs):
        if pair is None:
            continue
        key = next((k for k, (p, _) in keyed.items() if p == pair), None)
        key = key or (pair.method if pair.method not in keyed else f"{pair.method} vs {pair.baseline}")
        keyed.setdefault(key, (pair, []))[1].append(i)
    if keyed:
        groups = tuple(Group(k, p, tuple(idx)) for k, (p, idx) in keyed.items())
    else:
        singles = [i for i, m in enumerate(methods) if m is not None]
        distinct = {methods[i] for i in singles}
        groups = (Group(distinct.pop(), None, tuple(singles)),) if len(distinct) == 1 else ()
    return Families(len(pairs), groups)
