"""One answer, one inversion: a test's p-value is below alpha exactly when its own 95% interval excludes
the null value, at every seed count the docs allow (issue 40, item 9).

Both ratio tests' p-values are not monotone in the tested ratio with few seeds: with 2 seeds per setting
the "these settings" bootstrap-t accepts ratios far below 1 (both spreads could be near 0) while it
rejects 1, and the swap test accepts extreme ratios where one loss's runs dominate every swap. The
interval is the hull of the accepted ratios, so the test must be the one derived from it
(:func:`supcon_ray.stats.inversion.agreeing_p`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from supcon_ray.stats import compare, compare_these
from supcon_ray.stats.inversion import agreeing_p, invert
from supcon_ray.stats.simulate import simulate_tables


def _contains(ci: tuple[float, float], value: float) -> bool:
    return ci[0] <= value <= ci[1]


def test_these_settings_test_agrees_with_its_interval_with_two_seeds():
    # 3 settings x 2 seeds, CE's spread 4 times SupCon's: before the fix 20 of 108 significant answers in
    # 150 such factors printed a 95% interval containing 1
    rng = np.random.default_rng(1)
    significant = 0
    for _ in range(60):
        block, _ = simulate_tables(rng, 3, 2, ratio=4.0, setting_std=0.01, seed_std=0.01, exact_spread=True)
        r = compare_these([block])
        assert (r.p_value < 0.05) != _contains(r.ci95, 1.0), (r.ratio, r.ci95, r.p_value)
        significant += r.p_value < 0.05
    assert significant >= 20  # the check is not vacuous: many answers are claims


@pytest.mark.parametrize("seed, settings, seeds", [(1014, 6, 2), (1024, 6, 3), (1058, 6, 2)])
def test_beyond_test_agrees_with_its_interval(seed, settings, seeds):
    # factors where the swap test's smallest p-value (1/32) came with an interval [0, inf]
    block, _ = simulate_tables(np.random.default_rng(seed), settings, seeds, ratio=3.0, setting_std=0.02,
                               seed_std=0.01)
    r = compare([block])
    assert (r.p_value < 0.05) != _contains(r.ci95, 1.0), (r.ratio, r.ci95, r.p_value)


def test_tost_tests_every_ratio_outside_the_margin():
    # TOST rejects "outside [1/m, m]" only if every ratio there is rejected, so a 90% interval that reaches
    # beyond the margin never comes with an equivalence p-value below 0.05
    rng = np.random.default_rng(5)
    claims = 0
    for _ in range(40):
        block, _ = simulate_tables(rng, 4, 3, ratio=1.0, setting_std=0.05, seed_std=0.01, exact_spread=True)
        r = compare_these([block], equivalence_ratio=1.25)
        if r.tost_p < 0.05:
            claims += 1
            assert 1 / 1.25 <= r.ci90[0] and r.ci90[1] <= 1.25, (r.ci90, r.tost_p)
    assert claims >= 5  # equivalence is claimed often enough to check


def test_agreeing_p_is_the_hull_test():
    # a p-value curve with a second accepted region beyond the null, seen from the estimate
    grid = np.exp(np.linspace(math.log(0.01), math.log(100), 41))

    def p_of(x):
        x = np.asarray(x, dtype=float)
        return np.where((x > 2) | (x < 0.05), 0.5, 0.01)

    low, high = invert(p_of, grid, 0.05, log=True, low_open=0.0, high_open=math.inf, estimate=4.0, steps=4)
    assert _contains((low, high), 1.0)  # the hull reaches the far region
    p = agreeing_p(p_of, grid, 1.0, 4.0, float(p_of(np.array([1.0]))[0]))
    assert p == 0.5  # so the test does not reject 1
    # without the far region the p-value is the null's own
    assert agreeing_p(lambda x: np.where(np.asarray(x) > 2, 0.5, 0.01), grid, 1.0, 4.0, 0.01) == 0.01
    assert agreeing_p(p_of, grid, 1.0, math.nan, 0.01) == 0.01
