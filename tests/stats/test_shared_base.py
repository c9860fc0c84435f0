"""The pooled "for these settings" answer when every factor shares the base's runs (issue 40, item 2).

A study's base trial is analysed in every factor, so its seed noise enters every factor's spread at
once. The pooled statistic's variance must include those covariances, and its bootstrap must draw the
base's noise once for all factors; treating the factors as independent made 26 of 300 simulated
studies with identical losses print a claim.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from supcon_ray.stats import SettingTable, compare_these, spread_of_one
from supcon_ray.stats.these_settings import _loss

SEEDS = 3
BASE = 0.85
#: Three factors, each the base and two settings 2 to 4 points below it (the base dominates each spread).
OTHERS = [(0.82, 0.81), (0.83, 0.815), (0.81, 0.825)]


def _tables(rng: np.random.Generator, sd: float) -> tuple[list[SettingTable], list[list[str]]]:
    """One loss's three factor tables, the base cell's runs the same in each, with their cell keys."""
    base = BASE + sd * rng.standard_normal(SEEDS)
    tables, keys = [], []
    for f, others in enumerate(OTHERS):
        runs = [base] + [m + sd * rng.standard_normal(SEEDS) for m in others]
        settings = pd.Series([f"s{i}" for i, r in enumerate(runs) for _ in r])
        tables.append(SettingTable.from_values(settings, pd.Series(np.concatenate(runs))))
        keys.append(["base", f"f{f}a", f"f{f}b"])
    return tables, keys


def test_variance_of_the_pooled_estimate_counts_the_shared_base_once():
    rng = np.random.default_rng(0)
    sd = 0.01
    estimates = []
    for _ in range(3000):
        tables, keys = _tables(rng, sd)
        estimates.append(_loss(tables, keys, np.random.default_rng(1), 10).raw)
    empirical = float(np.var(estimates, ddof=1))
    # the formula at the truth: each setting at its true mean, its seed variance exactly sd^2
    true_tables = [SettingTable(("s0", "s1", "s2"), np.full(3, float(SEEDS)), np.array([BASE, *o]),
                                np.full(3, sd**2 * (SEEDS - 1))) for o in OTHERS]
    keys = [["base", f"f{f}a", f"f{f}b"] for f in range(3)]
    shared = _loss(true_tables, keys, np.random.default_rng(1), 10).var
    independent = _loss(true_tables, None, np.random.default_rng(1), 10).var
    assert shared == pytest.approx(empirical, rel=0.12)
    assert independent < 0.7 * empirical  # what treating the factors as independent gets wrong


def test_bootstrap_draws_reproduce_the_covariance():
    # the simulated estimates' spread matches the formula when every cell's noise is drawn once
    tables, keys = _tables(np.random.default_rng(3), 0.01)
    loss = _loss(tables, keys, np.random.default_rng(4), 20000)
    est, _ = loss.draw(np.array([loss.raw]))
    assert float(np.var(est[0])) == pytest.approx(loss.var, rel=0.1)


def test_pooled_comparison_with_a_shared_base_keeps_its_level():
    # identical losses, the base best by 2 to 4 points: the pooled claim was wrong in 26/300 studies
    rng = np.random.default_rng(11)
    sims, claims = 150, 0
    for _ in range(sims):
        ce, ce_keys = _tables(rng, 0.005)
        sc, sc_keys = _tables(rng, 0.005)
        keys = [(["ce-base", *k[1:]], ["sc-base", *s[1:]]) for k, s in zip(ce_keys, sc_keys)]
        r = compare_these(list(zip(ce, sc)), draws=500, interval=False, keys=keys)
        claims += r.p_value < 0.05
    assert claims / sims <= 0.07


def test_without_shared_cells_the_answer_is_unchanged():
    tables, keys = _tables(np.random.default_rng(5), 0.01)
    distinct = [[f"{f}-{k}" for k in ks] for f, ks in enumerate(keys)]
    a = spread_of_one(tables, keys=distinct)
    b = spread_of_one(tables)
    assert a == b
    shared = spread_of_one(tables, keys=keys)
    assert shared.spread == pytest.approx(b.spread)  # the estimate is the same; its uncertainty is not
    assert shared.ci95[1] > b.ci95[1]
