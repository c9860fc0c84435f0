"""The units of the analysis: one per (study, factor) and compared pair, with everything its answers need
before multiplicity (its setting tables, the blocks each question compares, and why a question cannot
be answered). :mod:`.answers` turns units into entries once the Holm families are adjusted.

Each factor compares every loss with its study's baseline (:func:`default_baseline` where none is
named), one unit per compared method; a factor without the baseline, or with one loss, gets one
one-method unit per loss. Settings run for one loss of a pair only are listed, never compared.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from supcon_ray.designs import is_nuisance
from supcon_ray.labels import SettingLabel, base_label, label_positions
from supcon_ray.stats import divergence as div
from supcon_ray.stats.drop_answer import DropInput
from supcon_ray.stats.paired import PairedResult, compare, uneven_noise
from supcon_ray.stats.scoring import completed, divergence_rate, logit, scored, status_counts
from supcon_ray.stats.settings import ALPHA, MAX_ACCURACY_STD, MIN_SEEDS_THESE, MIN_SETTINGS_THESE
from supcon_ray.stats.variance import SettingTable, components, setting_means
from supcon_ray.study import default_baseline  # the one baseline rule, re-exported for tables

from . import wording
from .model import Interval, LossSummary, Pair, SettingMean

__all__ = ["Block", "Unit", "VIEWS", "accuracy_bound", "default_baseline", "setting_tables", "units_of"]

#: Two losses' tables over the same settings: (baseline, method).
Block = tuple[SettingTable, SettingTable]
#: The views of the "beyond" answer: the main one, then the sensitivity views.
VIEWS = ("main", "logit", "conservative")


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


@dataclass
class Unit:
    """One (study, factor, pair) before multiplicity. ``pair`` is ``None`` for a one-method unit (``own``
    its one loss). ``beyond[view]``/``blocks[view]`` are the "beyond" test and block of each view (``None``
    where there is none; a block with uneven seed noise is dropped, ``flagged`` naming its settings)."""

    study: str
    factor: str
    pair: Pair | None
    own: tuple[str, ...]
    several: bool
    nuisance: bool
    tables: dict[str, SettingTable]
    paired: list[str]
    unpaired: list[str]
    beyond: dict[str, PairedResult | None] = field(default_factory=dict)
    blocks: dict[str, Block | None] = field(default_factory=dict)
    flagged: list[str] = field(default_factory=list)
    beyond_reason: str = ""
    these_block: Block | None = None
    single: tuple[str, SettingTable] | None = None
    these_reason: str = ""
    drop: DropInput = field(default_factory=lambda: DropInput(None))
    #: Per loss and setting, what identifies its runs (:func:`_cell_keys`): the base's runs are one cell in every factor.
    cells: dict[str, dict[str, Hashable]] = field(default_factory=dict)
    losses: dict[str, LossSummary] = field(default_factory=dict)
    n_settings: int = 0
    fisher_p: float = float("nan")

    @property
    def name(self) -> str:
        return f"{self.study}/{self.factor}"

    def keys(self, loss: str, table: SettingTable) -> list[Hashable]:
        """The cell of runs behind each setting of ``loss``'s ``table``."""
        own = self.cells.get(loss, {})
        return [own.get(s, (self.study, self.factor, loss, s)) for s in table.settings]

    @property
    def method(self) -> str:
        return self.pair.method if self.pair is not None else self.own[0]

    def scope(self) -> str:
        """How sentences name the unit: ``study / factor``, with the compared method where the factor has several."""
        scope = f"{self.study} / {self.factor}"
        return f"{scope} ({wording.versus(tuple(self.pair))})" if self.several else scope


def _paired(tables: dict[str, SettingTable], pair: Pair | None) -> tuple[list[str], list[str]]:
    """(paired settings, unpaired settings) between the pair's baseline and method."""
    if pair is None or not set(pair) <= set(tables):
        every = sorted({s for t in tables.values() for s in t.settings})
        return [], every
    base, method = set(tables[pair.baseline].settings), set(tables[pair.method].settings)
    return sorted(base & method), sorted(base ^ method)


def accuracy_bound(trials: pd.DataFrame, metric: str) -> float | None:
    """The largest std the metric allows over the completed runs: 0.5 for values in [0, 1] (accuracies), else none."""
    y = completed(trials, metric)[metric].dropna()
    return MAX_ACCURACY_STD if len(y) and y.between(0, 1).all() else None


def _loss_summary(g: pd.DataFrame, table: SettingTable | None, paired: list[str], bound: float | None) -> LossSummary:
    """Counts of every run of a loss; its spread ``sigma_a`` over the *paired* settings (those the ratio
    compares; all of its settings when fewer than 2 are paired); each setting's mean."""
    counts = status_counts(g)
    rate = divergence_rate(counts)
    if table is None:
        nan = float("nan")
        return LossSummary(**counts, divergence_rate=rate, mean=nan, seed_std=nan, setting_std=nan,
                           setting_std_ci95=Interval(nan, nan), settings={})
    comp = components(table.subset(paired) if len(paired) >= 2 else table, bound=bound)
    settings = {s: SettingMean(v["mean"], v["n"], Interval.of(v["ci95"]), v["drop_from_best"])
                for s, v in setting_means(table, bounded=bound is not None).items()}
    return LossSummary(**counts, divergence_rate=rate, mean=comp.grand_mean, seed_std=comp.seed_std,
                       setting_std=comp.setting_std, setting_std_ci95=Interval.of(comp.setting_std_ci95),
                       seed_noise_removed=comp.seed_noise_removed,
                       spread_settings=len(paired) if len(paired) >= 2 else len(table.settings), settings=settings)


def _these_block(tables: dict[str, SettingTable], paired: list[str], pair: Pair | None) -> tuple[Block | None, str]:
    """The block a "these settings" comparison uses, or ``None`` and why not."""
    if pair is None or not set(pair) <= set(tables):
        return None, wording.these_missing(tuple(pair) if pair else None, set(tables))
    if len(paired) < MIN_SETTINGS_THESE:
        return None, wording.too_few_paired(len(paired))
    block = (tables[pair.baseline].subset(paired), tables[pair.method].subset(paired))
    few = [f"{loss} at {SettingLabel(s).value}" for loss, t in zip(pair, block) for s, n in zip(t.settings, t.n)
           if n < MIN_SEEDS_THESE]
    if few:
        return None, wording.too_few_seeds_paired(few)
    return block, ""


def _single_block(tables: dict[str, SettingTable]) -> tuple[tuple[str, SettingTable] | None, str]:
    """A one-method factor's ``(loss, table)`` (every setting with at least 2 seeds), or ``None`` and why not."""
    if len(tables) != 1:
        return None, ""
    (loss, table), = tables.items()
    if len(table.settings) < MIN_SETTINGS_THESE:
        return None, wording.too_few_settings_one(len(table.settings))
    few = [SettingLabel(s).value for s, n in zip(table.settings, table.n) if n < MIN_SEEDS_THESE]
    if few:
        return None, wording.too_few_seeds_one(few)
    return (loss, table), ""


def _cell_keys(rows: pd.DataFrame, study: str, factor: str) -> dict[str, dict[str, Hashable]]:
    """Per loss and setting, what identifies its runs: the set of trial ids (a base run analysed in several
    factors is one cell of runs in all of them), or the (study, factor, setting) without ids."""
    out: dict[str, dict[str, Any]] = {}
    for (loss, setting), g in rows.groupby(["loss", "setting"], sort=True):
        key = frozenset(g["trial_id"].astype(str)) if "trial_id" in g else (study, factor, str(setting))
        out.setdefault(str(loss), {})[str(setting)] = key
    return out


def _drop_input(tables: dict[str, SettingTable], losses: tuple[str, ...], settings: list[str],
                bases: dict[str, str | None], keys: dict[str, dict[str, Hashable]]) -> DropInput:
    """Each loss's table over ``settings`` with its base setting, or why the drop cannot be computed."""
    out = {}
    for loss in losses:
        base = bases.get(loss)
        if base is None:
            return DropInput(None, wording.no_base(loss))
        if base not in settings:
            return DropInput(None, wording.base_not_run(loss, base))
        if len(settings) < 2:
            return DropInput(None, wording.NEED_TWO_SETTINGS)
        table = tables[loss].subset(settings)
        few = [s for s, n in zip(table.settings, table.n) if n < MIN_SEEDS_THESE]
        if few:
            return DropInput(None, wording.drop_too_few_seeds(loss, few))
        out[loss] = (table, base)
    return DropInput(out, positions=label_positions(settings), keys=keys)


def _comparisons(present: list[str], baseline: str | None) -> list[Pair | None]:
    """The comparisons of one (study, factor): the baseline against each other loss where the factor ran the
    baseline and another loss; else each loss on its own (``None``: a one-method unit)."""
    if baseline in present and len(present) > 1:
        return [Pair(baseline, m) for m in present if m != baseline]
    return [None] * len(present)


def _view(unit: Unit, g: pd.DataFrame, done: pd.DataFrame, metric: str, view: str) -> tuple[dict[str, SettingTable], list[str], list[str]]:
    """Run one view's "beyond" test into ``unit``; return that view's tables and (un)paired settings."""
    rows = scored(g, metric) if view == "conservative" else done
    tables = setting_tables(rows, metric, logit if view == "logit" else None, remove_seed_noise=view != "conservative")
    paired, unpaired = _paired(tables, unit.pair)
    result = block = None
    if len(paired) >= 2:
        block = (tables[unit.pair.baseline].subset(paired), tables[unit.pair.method].subset(paired))
        result = compare([block], ALPHA)
    flagged = uneven_noise(*block) if block is not None and view != "conservative" else []
    if flagged:  # the swap test does not apply: no answer, and the block stays out of the pooled test
        seeds = sorted({int(n) for t in block for n in t.n})
        unit.beyond_reason = wording.uneven_reason(flagged, seeds)
        result, block = None, None
    unit.beyond[view], unit.blocks[view] = result, block
    if view == "main":
        unit.flagged = flagged
    return tables, paired, unpaired


def units_of(trials: pd.DataFrame, metric: str, baselines: dict[str, str], sensitivity: bool,
             bases: dict[tuple[str, str], dict[str, str | None]]) -> list[Unit]:
    """Every unit of ``trials`` (with a ``study`` column), in (study, factor, comparison) order."""
    views = VIEWS if sensitivity else VIEWS[:1]
    bound = accuracy_bound(trials, metric)
    units = []
    for (study, factor), g_all in trials.groupby(["study", "factor"], sort=True):
        study, factor = str(study), str(factor)
        present = sorted(set(g_all["loss"].astype(str)))  # planned losses, whatever their runs' status
        pairs = _comparisons(present, baselines[study])
        design = g_all["design"].fillna("").astype(str) if "design" in g_all else pd.Series("", index=g_all.index)
        for i, pair in enumerate(pairs):
            own = tuple(pair) if pair is not None else (present[i],)
            g = g_all[g_all["loss"].astype(str).isin(own)]
            done = completed(g, metric)
            unit = Unit(study, factor, pair, own, several=len(pairs) > 1 and pair is not None,
                        nuisance=bool(design[g.index].map(is_nuisance).any()), tables={}, paired=[], unpaired=[])
            for view in reversed(views):  # main last: its tables and settings are the unit's
                unit.tables, unit.paired, unit.unpaired = _view(unit, g, done, metric, view)
            _fill(unit, g, done, bases, bound)
            units.append(unit)
    return units


def _fill(unit: Unit, g: pd.DataFrame, done: pd.DataFrame, bases: dict[tuple[str, str], dict[str, str | None]],
          bound: float | None) -> None:
    """The unit's "these settings" block, drop input, per-loss summaries and reasons (main view)."""
    tables, paired, pair = unit.tables, unit.paired, unit.pair
    block, why = _these_block(tables, paired, pair)
    single, why_single = _single_block(tables) if pair is None else (None, "")
    unit.these_block, unit.single, unit.these_reason = block, single, why_single or why
    compared = pair if pair is not None and set(pair) <= set(tables) else None
    one_method = pair is None and len(tables) == 1
    settings = paired if compared else (list(next(iter(tables.values())).settings) if one_method else [])
    given = bases.get((unit.study, unit.factor))
    loss_bases = given if given is not None else {
        x: (base_label(unit.factor) if base_label(unit.factor) in settings else None) for x in tables}
    unit.cells = _cell_keys(done, unit.study, unit.factor)
    unit.drop = (_drop_input(tables, tuple(compared) if compared else tuple(tables), settings, loss_bases,
                             unit.cells)
                 if compared or one_method else DropInput(None, why or "no completed runs."))
    unit.losses = {str(x): _loss_summary(lg, tables.get(str(x)), paired, bound) for x, lg in g.groupby("loss", sort=True)}
    unit.n_settings = int(g["setting"].nunique())
    unit.fisher_p = div.divergence_summary(g)["fisher_p"]
    if not unit.flagged:
        unit.beyond_reason = wording.beyond_insufficient(set(unit.losses), paired, unit.beyond["main"],
                                                         tuple(pair) if pair else None)
