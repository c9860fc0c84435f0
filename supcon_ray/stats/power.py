"""The design planner: power of both questions against the number of settings and seeds.

Given what a finished or pilot study measured for one factor (each loss's seed std at each setting,
SupCon's spread across settings), :func:`plan` simulates studies of ``K`` settings x ``S`` seeds in which CE's spread
is ``ratio`` times SupCon's (:mod:`.simulate`), analyses each one as the report does, and counts how
often each question finds the true direction at the level the factor's answer faces in the report's
Holm family of ``family_size`` answers: ``alpha / family_size``, Holm's first step, which is the level
whenever no other answer of the family is significant (so the power is never overstated; with one
answer it is alpha):

* **for these settings**: the spreads are exact for the settings drawn (``exact_spread``);
* **beyond these settings**: settings are random draws, spreads are population spreads.

The smallest design reaching the target power at ratio 2 is the one with the fewest runs
(``K x S`` per loss), ties broken by fewer settings. Power is a Monte-Carlo estimate with standard
error ``sqrt(p (1 - p) / sims)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .paired import compare
from .settings import ALPHA, MIN_SETTINGS_BEYOND
from .simulate import simulate_tables
from .these_settings import compare_these
from .variance import SettingTable

RATIOS = (1.5, 2.0, 4.0)
SETTINGS = (3, 4, 6, 9, 12, 18, 24)
SEEDS = (2, 3, 5, 8)
TARGET_POWER = 0.8
PLAN_DRAWS = 500  # bootstrap draws per simulated "these settings" test (p-values only)


@dataclass(frozen=True)
class Measured:
    """What a study measured for one factor: each loss's seed std (pooled) and SupCon's spread across
    settings; and each loss's seed std at every setting it ran (``()``: not measured, even noise)."""

    seed_std_ce: float
    seed_std_supcon: float
    spread_supcon: float
    note: str = ""  # how the spread was chosen, when it was not measured
    seed_stds_ce: tuple[float, ...] = ()
    seed_stds_supcon: tuple[float, ...] = ()
    #: The compared pair, (baseline, method): the ``ce`` fields hold the baseline's numbers, the ``supcon``
    #: fields the method's.
    names: tuple[str, str] = ("ce", "supcon")


def _noise(rng: np.random.Generator, pooled: float, per_setting: tuple[float, ...], n_settings: int) -> np.ndarray | float:
    """Each simulated setting's seed std: drawn from the measured settings' own (so a sweep where one
    setting in nine carries most of the noise keeps that share), or the pooled std where none was measured."""
    return rng.choice(np.asarray(per_setting), n_settings) if per_setting else pooled


def _block(rng: np.random.Generator, m: Measured, n_settings: int, n_seeds: int, ratio: float,
           exact: bool) -> tuple[SettingTable, SettingTable]:
    noise = (_noise(rng, m.seed_std_ce, m.seed_stds_ce, n_settings),
             _noise(rng, m.seed_std_supcon, m.seed_stds_supcon, n_settings))
    block, _ = simulate_tables(rng, n_settings, n_seeds, ratio, m.spread_supcon, noise, exact_spread=exact)
    return block


def power(m: Measured, n_settings: int, n_seeds: int, ratio: float, sims: int, seed: int = 0,
          level: float = ALPHA) -> dict[str, float]:
    """Share of ``sims`` simulated studies in which each question claims "SupCon less sensitive" at ``level``."""
    rng = np.random.default_rng(seed)
    hits = {"these_settings": 0, "beyond": 0}
    for _ in range(sims):
        r = compare_these([_block(rng, m, n_settings, n_seeds, ratio, exact=True)], draws=PLAN_DRAWS, interval=False)
        hits["these_settings"] += r.p_value < level and r.direction > 0
        if n_settings >= MIN_SETTINGS_BEYOND:  # below it the permutation test cannot reach alpha
            b = compare([_block(rng, m, n_settings, n_seeds, ratio, exact=False)], interval=False)
            hits["beyond"] += b.p_value < level and b.direction > 0
    return {q: h / sims for q, h in hits.items()}


def plan(m: Measured, sims: int = 200, settings: tuple[int, ...] = SETTINGS, seeds: tuple[int, ...] = SEEDS,
         ratios: tuple[float, ...] = RATIOS, family_size: int = 1) -> dict:
    """Power of both questions for every design and ratio, and the smallest design per question that
    reaches :data:`TARGET_POWER` at ratio 2 (``None`` when none of the designs does), each answer tested
    at ``alpha / family_size`` (the report's Holm family of that many answers; see the module docstring)."""
    if family_size < 1:
        raise ValueError("family_size: at least 1")
    level = ALPHA / family_size
    rows = []
    for k in settings:
        for s in seeds:
            for ratio in ratios:
                p = power(m, k, s, ratio, sims, seed=1000 * k + 10 * s + int(10 * ratio), level=level)
                rows.append({"settings": k, "seeds": s, "ratio": ratio, **p})
    smallest = {}
    for q in ("these_settings", "beyond"):
        ok = [r for r in rows if r["ratio"] == 2.0 and r[q] >= TARGET_POWER]
        best = min(ok, key=lambda r: (r["settings"] * r["seeds"], r["settings"])) if ok else None
        smallest[q] = {"settings": best["settings"], "seeds": best["seeds"], "power": best[q]} if best else None
    return {"measured": m.__dict__, "sims": sims, "alpha": ALPHA, "family_size": family_size, "level": level,
            "target_power": TARGET_POWER,
            "se_at_0.8": math.sqrt(0.16 / sims), "rows": rows, "smallest_at_ratio_2": smallest}
