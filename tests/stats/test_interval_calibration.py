"""Intervals checked in both directions: coverage bounded below *and* above, away from ratio 1, against
references that do not share code with the intervals they check.

What these tests catch that the calibration tests beside them did not:

* a wrong variance of the spread ratio away from ratio 1 in ``compare_these`` (for instance the CE
  term of ``Z(rho)`` divided by ``rho^2`` instead of ``rho^4``): it leaves every p-value of ratio 1 as
  it was, but the 95% interval's coverage at a true ratio of 0.5 falls to about 0.85 and at a true
  ratio of 2 rises to about 0.985 (too wide). The older tests bound coverage from below only and only
  at ratios >= 1; here it is bounded on both sides at 0.5 and at 2, and each end of the interval
  must miss about its share (a variance divided wrongly in the bootstrap draws alone gives intervals
  that never miss on one side);
* a null that is not at its level where the spreads are as small as seed noise: false claims and the
  coverage of ratio 1, both bounded on both sides, tight enough that a doubled false-claim rate fails;
* Fieller's interval built with the wrong variance (``b``'s variance swapped for ``a``'s, the
  ``a.variance`` term dropped, the wrong degrees of freedom): its end points are compared with a
  brute-force inversion of its defining inequality on a fine grid, and its coverage (and the drop
  difference's) on simulated drops with known truth is bounded on both sides at true ratios 2 and 0.5.

Bounds are the nominal rate plus or minus 3 binomial standard errors of the simulation count, widened
on one side only where the method is known to be conservative there (each widening is stated with the
rates measured on the correct code and under the bug it must catch).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from supcon_ray.stats import compare_these
from supcon_ray.stats.drop import Contrast, compare_drops, fieller, loss_drop
from supcon_ray.stats.simulate import simulate_tables, spread_ratio
from supcon_ray.stats.variance import SettingTable

from rates import assert_between, se

#: Bootstrap draws of ``compare_these``. Fewer than 2 / alpha - 1 = 39 cannot reach p < 0.05 at all.
#: 200 puts the Monte-Carlo rejection region at exactly 5 draws per tail for both the claim rule
#: (p < alpha) and the interval rule (p > alpha): 2 (h + 1) / 201 < 0.05 iff h <= 4 (199 would make
#: the claim rule reject only at h <= 3, a 0.04 test). Coverage at ratios 0.5 and 2 measured with 100,
#: 200, 500 and 2000 draws (1000 simulations each) was 0.954/0.955, 0.957/0.955, 0.949/0.959 and
#: 0.951/0.957: the draw count moves nothing beyond Monte-Carlo error, and below about 400 draws a call
#: costs the same (2 ms), so 200 is the cheapest stable count.
DRAWS = 200
NOMINAL = 0.95
TAIL = (1 - NOMINAL) / 2


# -- "these settings": the spread ratio's interval at ratios below and above 1 ----------------------------

#: Simulated factors per true ratio. 1000 gives a binomial SE of 0.0069 at 0.95: bounds [0.929, 0.971].
RATIO_SIMS = 1000


@pytest.mark.parametrize("ratio,seed", [(0.5, 101), (2.0, 102)])
def test_spread_ratio_interval_covers_at_its_level_below_and_above_ratio_one(ratio, seed):
    """4 settings x 3 seeds, SupCon's spread 3x seed noise (0.03 against 0.01), CE's ``ratio`` times it.

    Measured on the correct code (five seeds of 1000 simulations each): coverage 0.939 to 0.963 at
    ratio 0.5 and 0.944 to 0.960 at ratio 2; each end's miss rate 0.010 to 0.040. With the CE variance
    of Z(rho) divided by rho^2 instead of rho^4: 0.836 to 0.866 at 0.5 (both ends miss 0.06 to 0.09)
    and 0.975 to 0.994 at 2. With that division wrong in the bootstrap draws only: 0.988 to 0.998 at
    0.5, and at 2 the lower end never misses (0.000), the upper end 0.036 to 0.066.
    """
    rng = np.random.default_rng(seed)
    below = above = 0  # the truth below the interval's lower end / above its upper end
    for _ in range(RATIO_SIMS):
        block, truth = simulate_tables(rng, 4, 3, ratio, setting_std=0.03, seed_std=0.01, exact_spread=True)
        true_ratio = spread_ratio(truth)  # the ratio of the spreads of the setting means actually drawn
        assert true_ratio == pytest.approx(ratio)
        low, high = compare_these([block], spread_intervals=False, draws=DRAWS).ci95
        below += true_ratio < low
        above += true_ratio > high
    coverage = 1 - (below + above) / RATIO_SIMS
    one_se = se(NOMINAL, RATIO_SIMS)
    assert_between(coverage, NOMINAL - 3 * one_se, NOMINAL + 3 * one_se, f"coverage at true ratio {ratio}")
    # each end misses about its 2.5% share; 3 SE at 1000 simulations is [0.010, 0.040] and the correct
    # code reaches both edges, so the band is [0.005, 0.050]: an interval one end of which never misses
    # (or misses twice its share) is built on the wrong scale on that side
    for end, misses in (("lower", below), ("upper", above)):
        assert_between(misses / RATIO_SIMS, TAIL / 5, 2 * TAIL, f"misses beyond the {end} end at true ratio {ratio}")


#: Simulated null factors. 2000 gives an SE of 0.0049 at 0.05: a false-claim bound of 0.065, which a
#: doubled rate (0.10) fails with probability ~1 (it is 7 SE of a 0.10 rate away).
NULL_SIMS = 2000
#: How far below nominal the null rates may sit: where the spreads are as small as seed noise the test is
#: conservative by design (its nuisance spread is moved one SE up; module docstring of these_settings).
#: docs/method.md's calibration table gives 0.039 false claims, coverage 0.963, at 4 x 3 "spread = noise".
NULL_CONSERVATIVE = 0.012


def test_null_where_each_spread_equals_seed_noise_claims_at_its_level_and_covers_one():
    """Both losses' spread over the settings drawn exactly equals their seed noise (0.01), 4 x 3.

    Measured on the correct code (five seeds of 2000): false claims 0.034 to 0.051, coverage of
    ratio 1 0.956 to 0.974. Without the nuisance shift (NUISANCE_SHIFT = 0): false claims 0.043 to 0.064.
    """
    rng = np.random.default_rng(103)
    claims = below = above = 0
    for _ in range(NULL_SIMS):
        block, truth = simulate_tables(rng, 4, 3, 1.0, setting_std=0.01, seed_std=0.01, exact_spread=True)
        true_ratio = spread_ratio(truth)
        assert true_ratio == pytest.approx(1.0)
        r = compare_these([block], spread_intervals=False, draws=DRAWS)
        claims += r.p_value < 0.05
        below += true_ratio < r.ci95[0]
        above += true_ratio > r.ci95[1]
    one_se = se(1 - NOMINAL, NULL_SIMS)
    rate = claims / NULL_SIMS
    assert_between(rate, 1 - NOMINAL - 3 * one_se - NULL_CONSERVATIVE, 1 - NOMINAL + 3 * one_se, "false-claim rate")
    assert 1 - NOMINAL + 3 * one_se < 0.07  # a doubled rate (0.10) is far outside
    coverage = 1 - (below + above) / NULL_SIMS
    assert_between(coverage, NOMINAL - 3 * one_se, NOMINAL + 3 * one_se + NULL_CONSERVATIVE, "coverage of ratio 1")


# -- Fieller's interval against a brute-force inversion --------------------------------------------------

def _contrast(estimate: float, variance: float, df: float) -> Contrast:
    """A contrast whose variance has ``df`` Welch-Satterthwaite degrees of freedom on its own."""
    return Contrast(estimate, variance, variance**2 / df if variance > 0 else 0.0)


#: (a, b, bounded). The df of each ratio's contrast a - r b is computed by hand below.
FIELLER_CASES = {
    "clear denominator": (_contrast(0.10, 4e-4, 4), _contrast(0.05, 1e-4, 6), True),
    "ratio above 1, unequal df": (_contrast(0.30, 2e-3, 2), _contrast(0.20, 5e-4, 10), True),
    "ratio below 1": (_contrast(0.04, 1e-4, 8), _contrast(0.12, 4e-4, 3), True),
    "numerator not clear of 0: lower end at 0": (_contrast(0.01, 4e-4, 4), _contrast(0.10, 1e-4, 4), True),
    "noise-free denominator": (_contrast(0.10, 4e-4, 2), _contrast(0.05, 0.0, math.inf), True),
    "denominator within noise of 0": (_contrast(0.10, 4e-4, 4), _contrast(0.02, 4e-4, 4), False),
    "denominator barely unclear": (_contrast(0.20, 1e-4, 5), _contrast(0.05, 6e-4, 5), False),
}


def _accepted(a: Contrast, b: Contrast, r: np.ndarray) -> np.ndarray:
    """Whether the two-sided 5% t-test of ``a - r b = 0`` accepts, with that contrast's own Welch-Satterthwaite
    degrees of freedom (``(Va + r^2 Vb)^2 / (wa + r^4 wb)``)."""
    wa = a.variance**2 / a.df if math.isfinite(a.df) else 0.0
    wb = b.variance**2 / b.df if math.isfinite(b.df) else 0.0
    variance = a.variance + r * r * b.variance
    denominator = wa + r**4 * wb
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denominator > 0, variance**2 / np.where(denominator > 0, denominator, 1.0), np.inf)
    q = np.where(np.isinf(df), sps.norm.ppf(0.975), sps.t.ppf(0.975, np.where(np.isinf(df), 1.0, df)))
    return (a.estimate - r * b.estimate) ** 2 <= q * q * variance


@pytest.mark.parametrize("name", list(FIELLER_CASES))
def test_fieller_matches_a_brute_force_inversion_of_its_tests(name):
    a, b, bounded = FIELLER_CASES[name]
    big, n = 50.0, 2_000_001
    r = np.linspace(0.0, big, n)
    step = r[1] - r[0]
    inside = _accepted(a, b, r)
    assert inside.any()
    low, high = fieller(a, b, 0.05)
    if not bounded:
        # accepted up to the grid's end and far beyond it: no bounded interval
        assert inside[-1] and _accepted(a, b, np.array([1e9]))[0]
        assert (low, high) == (0.0, math.inf)
        return
    accepted = r[inside]
    assert not inside[-1] and accepted[-1] < big / 2, "case meant to be bounded"
    # the true ends lie within one grid step outside the extreme accepted grid values
    assert accepted[0] - step - 1e-12 <= low <= accepted[0] + 1e-12, (low, accepted[0])
    assert accepted[-1] - 1e-12 <= high <= accepted[-1] + step + 1e-12, (high, accepted[-1])
    assert low <= a.estimate / b.estimate <= high


# -- the drop's ratio (Fieller) and difference, by simulation ------------------------------------------

#: Simulated pairs of factors per true ratio. 4000 gives an SE of 0.0034 at 0.95: [0.940, 0.960].
DROP_SIMS = 4000
#: Allowance above nominal for the drop intervals. Fieller's interval over-covers here: Welch-Satterthwaite
#: degrees of freedom from 3-seed variances, and (0, inf) where the denominator is not clearly away from 0
#: (5 to 8% of draws at ratio 0.5). Measured on the correct code (five seeds of 4000): 0.955 to 0.965 at
#: both ratios. With b's variance swapped for a's in Fieller: 0.990 to 0.995 at ratio 2 (44% unbounded),
#: 0.915 to 0.937 at 0.5; with the a.variance term dropped: 0.78 to 0.80 at both. The difference's Welch
#: interval is slightly conservative when the losses' noise differs: 0.947 to 0.964.
FIELLER_EXCESS = 0.015
DIFFERENCE_EXCESS = 0.005
#: SupCon's true setting means: base first, its drop 0.85 - 0.80 = 0.05; CE's profile is ``ratio`` times it.
PROFILE = np.array([0.0, -0.06, -0.03, -0.06])


def _table(y: np.ndarray) -> SettingTable:
    """Settings x seeds runs to a table (mean and within-setting sum of squares by numpy)."""
    k, n = y.shape
    mean = y.mean(axis=1)
    ss = ((y - mean[:, None]) ** 2).sum(axis=1)
    return SettingTable(tuple(f"s{i}" for i in range(k)), np.full(k, float(n)), mean, ss)


@pytest.mark.parametrize("ratio,seed_std,seed", [(2.0, (0.03, 0.01), 201), (0.5, (0.01, 0.015), 202)])
def test_drop_ratio_and_difference_intervals_cover_at_their_level(ratio, seed_std, seed):
    """4 settings x 3 seeds, base the first; each loss its own seed noise, so that a and b's variances differ."""
    means = {"ce": 0.80 + ratio * PROFILE, "supcon": 0.85 + PROFILE}
    true = {loss: float(m[0] - m[1:].mean()) for loss, m in means.items()}
    true_ratio, true_diff = true["ce"] / true["supcon"], true["ce"] - true["supcon"]
    assert true_ratio == pytest.approx(ratio)
    rng = np.random.default_rng(seed)
    ratio_covered = diff_covered = 0
    for _ in range(DROP_SIMS):
        drops = [loss_drop([(_table(means[loss][:, None] + sd * rng.standard_normal((4, 3))), "s0")])
                 for loss, sd in zip(("ce", "supcon"), seed_std)]
        c = compare_drops(*drops)
        # a ratio only where both estimated drops are positive; otherwise it cannot cover (never here in practice)
        ratio_covered += not math.isnan(c.ratio) and c.ratio_ci95[0] <= true_ratio <= c.ratio_ci95[1]
        diff_covered += c.difference_ci95[0] <= true_diff <= c.difference_ci95[1]
    one_se = se(NOMINAL, DROP_SIMS)
    assert_between(ratio_covered / DROP_SIMS, NOMINAL - 3 * one_se, NOMINAL + 3 * one_se + FIELLER_EXCESS,
             f"Fieller coverage at true ratio {ratio}")
    assert_between(diff_covered / DROP_SIMS, NOMINAL - 3 * one_se, NOMINAL + 3 * one_se + DIFFERENCE_EXCESS,
             f"difference coverage at true ratio {ratio}")


@pytest.mark.parametrize("settings,seed_var", [(3, 1e-4), (5, 4e-4), (8, 1e-6)])
def test_spread_interval_reduces_to_the_chi_square_interval_when_seed_noise_is_known(settings, seed_var):
    """With (practically) unlimited seeds per setting the seed variance is known, and the interval for the
    between-setting variance is exact: ``((k - 1) MSB / chi2_{1-a/2, k-1} - s2, (k - 1) MSB / chi2_{a/2, k-1} - s2)
    / n``. The modified large-sample interval (Ting et al. 1990) must reduce to it; a wrong degrees of freedom
    in any of its chi-square or F quantiles does not."""
    from supcon_ray.stats import components

    n = 10**7  # seeds per setting: dfw ~ settings * 1e7
    means = np.linspace(0.7, 0.8, settings) + np.array([0.003 * (-1) ** i for i in range(settings)])
    table = SettingTable(tuple(f"s{i}" for i in range(settings)), np.full(settings, float(n)), means,
                         np.full(settings, seed_var * (n - 1)))
    low, high = components(table).setting_std_ci95
    msb = n * float(np.sum((means - means.mean()) ** 2)) / (settings - 1)
    df1 = settings - 1
    want_low = (df1 * msb / sps.chi2.ppf(0.975, df1) - seed_var) / n
    want_high = (df1 * msb / sps.chi2.ppf(0.025, df1) - seed_var) / n
    assert low**2 == pytest.approx(max(want_low, 0.0), rel=1e-4)
    assert high**2 == pytest.approx(want_high, rel=1e-4)
