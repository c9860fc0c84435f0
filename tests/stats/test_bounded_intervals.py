"""Intervals on the metric's own range (issue 40, item 7): an accuracy's interval never leaves [0, 1],
and it is not a clip that hides the width (the logit-scale construction of
:func:`supcon_ray.stats.variance.mean_interval`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from supcon_ray.stats import SettingTable
from supcon_ray.stats.variance import mean_interval, setting_means


def test_a_two_seed_setting_stays_in_range():
    # two seeds 0.556 and 0.800: the symmetric t-interval was [-0.875, 2.231]
    table = SettingTable.from_values(pd.Series(["a", "a"]), pd.Series([0.556, 0.800]))
    low, high = setting_means(table, bounded=True)["a"]["ci95"]
    assert 0 < low < 0.678 < high < 1
    assert high - low > 0.9  # as wide as two seeds honestly leave it, not cut at the edges
    sym = setting_means(table)["a"]["ci95"]
    assert sym[0] < 0 and sym[1] > 1


def test_unbounded_metrics_keep_the_symmetric_interval():
    assert mean_interval(0.5, 0.1, 2.0, False) == (0.3, 0.7)
    assert mean_interval(1.0, 0.0, 2.0, True) == (1.0, 1.0)  # every seed at 1: no width


@pytest.mark.parametrize("mu, sd, n", [(0.98, 0.015, 4), (0.3, 0.2, 3)])
def test_coverage_near_the_edges(mu, sd, n):
    # seeds Beta-distributed around mu: the logit-scale interval covers the true mean 0.95 of the time; the
    # symmetric one covered 0.913 and 0.924 here
    rng = np.random.default_rng(0)
    k = mu * (1 - mu) / sd**2 - 1
    q = float(sps.t.ppf(0.975, n - 1))
    sims, covered = 3000, 0
    for _ in range(sims):
        y = rng.beta(mu * k, (1 - mu) * k, n)
        low, high = mean_interval(float(y.mean()), float(y.std(ddof=1)) / math.sqrt(n), q, True)
        assert 0 <= low <= high <= 1
        covered += low <= mu <= high
    assert covered / sims >= 0.935
