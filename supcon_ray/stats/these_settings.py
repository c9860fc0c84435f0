""""For these settings": across the settings tried, does CE's mean accuracy move more than SupCon's?

This is the question of the paper's Fig. 4a. The settings are *fixed*: the only noise is seed noise.

Estimand, per loss ``L`` and factor ``f`` with ``K`` settings and true setting means ``m_s`` (the
mean over infinitely many seeds)::

    theta_Lf^2 = sum_s (m_s - mean(m))^2 / (K - 1)       (the spread of these settings, K - 1 divisor)

Several factors pool into ``Theta_L^2 = mean_f theta_Lf^2`` (every factor once). The ratio is
``R = Theta_CE / Theta_SupCon``; above 1, CE's accuracy moves more across the settings tried.

Estimator: ``theta_hat^2 = var(setting means, K - 1) - mean_s(s2_s / n_s)``, with ``s2_s`` setting
``s``'s own seed variance. It is unbiased whatever the seed noise at each setting, and it is never
pooled across settings or losses: in a learning-rate sweep one or two settings, where training
starts to collapse and seeds split between chance and above, carry most of the noise (the CIFAR
subset's CE has seed std 0.064 at x12.8 against 0.007 or less elsewhere), and the two losses' noise
may differ by several times. ``spread`` is ``sqrt(max(0, .))``. (For balanced designs the point
estimate equals the pooled-variance one; what per-setting noise changes is its variance and its
bootstrap: a pooled variance, simulated evenly at every setting, made 35% of claims false on the
CIFAR subset's own lr noise pattern, against 6% with per-setting noise; ``benchmarks.calibration``.)

Test and interval: a studentised parametric bootstrap, inverted. For a candidate ratio ``rho``::

    Z(rho) = (sum_f theta_hat_CEf^2 / rho^2 - sum_f theta_hat_SCf^2) / sqrt(sum_f V_CEf / rho^4 + sum_f V_SCf)

with ``V`` the normal-theory variance of ``theta_hat^2`` under per-setting noise ``D_s = s2_s / n_s``
(``(2 tr((C D)^2) + 4 theta^2 sum_s D_s u_s^2) / (K - 1)^2`` for the setting means, ``C`` the centring
matrix and ``u`` the unit-spread profile, plus ``2 sum_s D_s^2 / (n_s - 1) / K^2`` for the noise
correction) at the estimates. The null distribution of ``Z(rho)`` is simulated from the
normal model fitted *under the constraint* ``R = rho``: each loss keeps each setting's seed variance, its
observed profile of setting means (rescaled) and its observed split over factors, and the common
scale is the precision-weighted combination of both losses' estimates, truncated at zero and then
moved up by one standard error (:data:`NUISANCE_SHIFT`). The shift is what keeps the test at its
level where the spreads are close to seed noise: the null distribution of ``Z`` narrows when the
model's spread is below the truth (measured: with the true spread plugged in, 0.047 false claims on
3 settings x 3 seeds with spread equal to seed noise; with the truncated estimate, 0.080, because
the estimate is often 0; with the shifted estimate, 0.049), while above the truth it changes little;
at spreads well above seed noise the shift is negligible, so power is unchanged. What remains is a
small excess there: 0.055 to 0.058 false claims at 3 settings x 3 seeds with spreads 3 to 10 times
the seed noise (9,000 simulations), the bootstrap-t's small-sample error with 2 between-setting
degrees of freedom; flooring the spread at one standard error instead of shifting it does not
change that and is liberal at low signal (0.062) (those figures are from the pooled-variance version;
the calibration table in docs/method.md has today's). Setting means and each setting's seed variance
are drawn from their exact sampling distributions (normal, scaled chi-square with ``n_s - 1``
degrees of freedom, so the few degrees of freedom of a per-setting variance are in the reference
distribution),
with the same random numbers for every ``rho``, so the p-value curve is smooth and reproducible.
The p-value is equal-tailed, ``2 min(P(Z* >= Z), P(Z* <= Z))`` (never below ``2 / (draws + 1)``); the 95% interval is every ``rho``
whose p-value exceeds alpha (searched on a grid that includes the estimate, so an interval narrower
than a grid step is still found), its ends refined by bisection. Each loss's ``spread_ci95`` inverts the
same construction for one loss.

Why this construction: an exact pivot does not exist (the distribution of ``theta_hat`` depends on
the noncentrality ``K theta^2 n / sigma^2`` and on each loss's unknown seed variance), and with 2 to 4
seeds a nonparametric resampling of seeds has almost nothing to resample. Studentising makes ``Z``
nearly pivotal, and the constrained fit keeps the test at its level where ``theta`` is small or
zero, where a percentile bootstrap of ``theta_hat`` is biased upward. Settings at chance with zero
seed variance are handled exactly: with no noise, the simulated statistic has none either. Every
decision on a computed value (a zero variance, equal spreads, a draw tied with the observed
statistic, the direction) is taken at the resolution of :mod:`.tolerance`, so equal spreads give
``Z = 0`` and p = 1 on every machine, and the same runs in any order give the same answer. The
calibration (``python -m benchmarks.calibration``) measures the false-claim rate, coverage and power
over unequal seed noise, collapses at chance, heavy-tailed setting effects and correlated pairs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from .inversion import agreeing_p, invert
from .settings import ALPHA, BOOTSTRAP_DRAWS, MAX_ACCURACY_STD
from .tolerance import at_least, at_most, exact_sum, sign, snap
from .variance import SettingTable

RHO_GRID = np.exp(np.linspace(math.log(1e-3), math.log(1e3), 61))  # 26% steps, refined by bisection
BISECTION_STEPS = 10
#: The common spread of the null model sits this many standard errors above its estimate (see the module docstring).
#: Chosen by measurement, not derived (a Berger-Boos supremum over the nuisance would be): the calibration table in
#: docs/method.md, measured with per-setting noise and this shift, is what shows the test holds its level with it.
NUISANCE_SHIFT = 1.0
_TINY = 1e-300


@dataclass(frozen=True)
class TheseSettingsResult:
    """``ratio`` = Theta_CE / Theta_SupCon (``nan`` when both spreads are 0, ``inf`` when only SupCon's is),
    its 95% interval (``0`` / ``inf`` where open), the equal-tailed p-value of ``ratio = 1``, the sign of
    the observed difference (``+1``: CE moves more), and each loss's spread with its interval."""

    ratio: float
    ci95: tuple[float, float]
    p_value: float
    direction: int
    spreads: dict[str, float]
    spread_ci95: dict[str, tuple[float, float]]
    n_settings: int
    #: The 90% interval and the TOST p-value of "the ratio lies outside [1/m, m]" (``equivalence_ratio`` m),
    #: when asked for: both one-sided tests of the same bootstrap at rho = 1/m and rho = m.
    ci90: tuple[float, float] = (math.nan, math.nan)
    tost_p: float = math.nan


class _Factor:
    """One loss on one factor: sufficient statistics, and the bootstrap draws of its estimator for any
    true spread (common random numbers). Seed noise is each setting's own: ``D_s = s2_s / n_s``."""

    def __init__(self, table: SettingTable, rng: np.random.Generator, draws: int) -> None:
        n, k = table.n.astype(float), len(table.settings)
        self.k = k
        self.dfs = n - 1  # each setting's seed degrees of freedom (at least 1: compare_these checks)
        self.d = table.ss / self.dfs / n  # D_s: the variance of setting s's mean (exactly 0 for equal seeds)
        self.noise = exact_sum(self.d) / k  # E[var(setting means)] - theta^2
        mean = table.mean.astype(float)
        d = snap(mean - exact_sum(mean) / k, np.abs(mean).max())  # equal setting means: exactly 0
        vd = exact_sum(d * d) / (k - 1)  # the same for the same means in any order, on any machine
        self.raw = float(snap(vd - self.noise, vd + self.noise))  # unbiased theta^2 (may be negative)
        if vd > 0:
            u = d / math.sqrt(vd)
        else:  # no observed profile: any unit-spread shape (the estimator's law depends little on it)
            u = np.zeros(k)
            u[0], u[1:] = 1.0, -1.0 / (k - 1)
            u /= math.sqrt(u @ u / (k - 1))
        self.u2 = u * u
        e = rng.standard_normal((draws, k)) * np.sqrt(self.d)
        ec = e - e.mean(axis=1, keepdims=True)
        self.ve = (ec**2).sum(axis=1) / (k - 1)
        self.cue = (ec @ u) / (k - 1)
        d_star = self.d * rng.chisquare(self.dfs, (draws, k)) / self.dfs  # each setting's re-estimated D_s
        self.noise_star = d_star.mean(axis=1)
        self.parts_star = self._parts(d_star)
        self.var = self.variance(max(self.raw, 0.0), self._parts(self.d))

    def _parts(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For noise ``D`` (last axis: settings): ``tr((C D)^2)``, ``sum_s D_s u_s^2`` and the variance of
        the noise correction ``mean_s D_s``, with ``C`` the centring matrix."""
        k = self.k
        trace = (d**2).sum(axis=-1) * (1 - 2 / k) + d.sum(axis=-1) ** 2 / k**2
        return trace, (d * self.u2).sum(axis=-1), 2 * (d**2 / self.dfs).sum(axis=-1) / k**2

    def variance(self, theta2, parts) -> np.ndarray:
        """Normal-theory variance of ``theta_hat^2`` at true ``theta^2`` (profile ``u``) and noise ``parts``:
        ``(2 tr((C D)^2) + 4 theta^2 sum_s D_s u_s^2) / (K - 1)^2 + Var(mean_s D_s_hat)``. With equal
        noise it is the familiar ``(2 D^2 + 4 theta^2 D) / (K - 1) + 2 D^2 / df``."""
        trace, du, correction = parts
        return (2 * trace + 4 * theta2 * du) / (self.k - 1) ** 2 + correction

    def draw(self, theta2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(estimates, their variance estimates), shape ``(len(theta2), draws)``, at true spreads ``theta2``."""
        theta = np.sqrt(np.maximum(theta2, 0.0))[:, None]
        est = theta**2 + 2 * theta * self.cue + self.ve - self.noise_star
        return est, self.variance(np.maximum(est, 0.0), self.parts_star)


class _Loss:
    """One loss over one or more factors: ``Theta^2 = mean_f theta_f^2``, each factor's runs its own."""

    def __init__(self, tables: list[SettingTable], rng: np.random.Generator, draws: int) -> None:
        self.factors = [_Factor(t, rng, draws) for t in tables]
        self.raw = exact_sum(f.raw for f in self.factors)  # F * Theta_hat^2
        self.var = exact_sum(f.var for f in self.factors)
        self.shares = _shares(self.factors)

    @property
    def spread(self) -> float:
        return math.sqrt(max(self.raw, 0.0) / len(self.factors))

    def draw(self, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Summed estimates and variances over factors when the true ``sum_f theta_f^2`` is ``total``."""
        est, var = 0.0, 0.0
        for f, share in zip(self.factors, self.shares):
            e, v = f.draw(total * share)
            est, var = est + e, var + v
        return est, var


def _shares(factors) -> np.ndarray:
    """Each factor's share of the loss's summed spread under a null model: its own estimate's share (equal
    shares where no factor's estimate is above 0)."""
    shares = np.array([max(f.raw, 0.0) for f in factors])
    return shares / shares.sum() if shares.sum() > 0 else np.full(len(shares), 1 / len(shares))


class _Profile:
    """One factor's estimate without draws: its settings' noise, ``theta_hat^2`` and unit-spread profile
    (what :class:`_Factor` computes; the cells' draws are the loss's, :class:`_SharedLoss`)."""

    def __init__(self, table: SettingTable) -> None:
        n, k = table.n.astype(float), len(table.settings)
        self.k = k
        self.noise = exact_sum(table.ss / (n - 1) / n) / k
        mean = table.mean.astype(float)
        d = snap(mean - exact_sum(mean) / k, np.abs(mean).max())
        vd = exact_sum(d * d) / (k - 1)
        self.raw = float(snap(vd - self.noise, vd + self.noise))
        if vd > 0:
            self.u = d / math.sqrt(vd)
        else:
            self.u = np.zeros(k)
            self.u[0], self.u[1:] = 1.0, -1.0 / (k - 1)
            self.u /= math.sqrt(self.u @ self.u / (k - 1))


class _SharedLoss:
    """One loss over factors that share cells of runs: the base's runs stand in every factor of a study.

    The pooled estimate ``sum_f theta_hat_f^2`` is then a quadratic form ``y' A y - w' D_hat`` in the
    vector ``y`` of the distinct cells' means, ``A = sum_f C_f / (K_f - 1)`` over each factor's cells and
    ``w_c = sum_{f containing c} 1 / K_f``, so a shared cell's noise enters every factor's estimate at
    once. Its normal-theory variance::

        2 sum_{c,c'} A_cc'^2 D_c D_c'  +  sum_c D_c g_c^2  +  2 sum_c w_c^2 D_c^2 / df_c,
        g_c = sum_{(f, s) at cell c} 2 theta_f u_fs / (K_f - 1)

    which is the sum of the factors' variances when no cell is shared, and their covariances besides
    when one is. In the bootstrap every cell gets one noise draw and one re-estimated variance, used by
    every factor that contains it."""

    def __init__(self, tables: list[SettingTable], keys: list[list[Hashable]], rng: np.random.Generator,
                 draws: int) -> None:
        cells = list(dict.fromkeys(k for ks in keys for k in ks))
        where = {c: i for i, c in enumerate(cells)}
        self.idx = [np.array([where[k] for k in ks]) for ks in keys]
        d, dfs = np.zeros(len(cells)), np.ones(len(cells))
        a, self.w = np.zeros((len(cells), len(cells))), np.zeros(len(cells))
        self.factors = [_Profile(t) for t in tables]
        for t, ix, f in zip(tables, self.idx, self.factors):
            n = t.n.astype(float)
            d[ix], dfs[ix] = t.ss / (n - 1) / n, n - 1
            a[np.ix_(ix, ix)] += (np.eye(f.k) - 1 / f.k) / (f.k - 1)
            self.w[ix] += 1 / f.k
        self.d, self.dfs, self.a2 = d, dfs, a * a
        self.parts = np.zeros((len(tables), len(cells)))  # g_c = sum_f theta_f parts[f, c]
        for part, ix, f in zip(self.parts, self.idx, self.factors):
            np.add.at(part, ix, 2 * f.u / (f.k - 1))
        e = rng.standard_normal((draws, len(cells))) * np.sqrt(d)
        d_star = d * rng.chisquare(dfs, (draws, len(cells))) / dfs
        self.ve, self.cue, self.noise_star = [], [], []
        for ix, f in zip(self.idx, self.factors):
            ec = e[:, ix] - e[:, ix].mean(axis=1, keepdims=True)
            self.ve.append((ec**2).sum(axis=1) / (f.k - 1))
            self.cue.append((ec @ f.u) / (f.k - 1))
            self.noise_star.append(d_star[:, ix].mean(axis=1))
        self.d_star = d_star
        self.fixed_star = self._fixed(d_star)
        self.raw = exact_sum(f.raw for f in self.factors)
        self.var = float(self._fixed(d) + self._linear([max(f.raw, 0.0) for f in self.factors], d))
        self.shares = _shares(self.factors)

    def _fixed(self, d: np.ndarray) -> np.ndarray:
        """The variance terms that do not depend on the spreads: the noise's quadratic form and the noise
        correction (last axis: cells)."""
        return 2 * ((d @ self.a2) * d).sum(axis=-1) + 2 * (self.w**2 * d**2 / self.dfs).sum(axis=-1)

    def _linear(self, theta2: list, d: np.ndarray) -> np.ndarray:
        """``sum_c D_c g_c^2`` for the factors' spreads ``theta2`` (each broadcast against ``d``'s leading axes)."""
        theta = np.sqrt(np.stack(np.broadcast_arrays(*[np.asarray(t, dtype=float) for t in theta2])))
        g = np.tensordot(theta, self.parts, axes=(0, 0))
        return (d * g * g).sum(axis=-1)

    @property
    def spread(self) -> float:
        return math.sqrt(max(self.raw, 0.0) / len(self.factors))

    def draw(self, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Summed estimates and variances over factors when the true ``sum_f theta_f^2`` is ``total``."""
        est, parts = 0.0, []
        for share, ve, cue, noise in zip(self.shares, self.ve, self.cue, self.noise_star):
            theta = np.sqrt(np.maximum(total * share, 0.0))[:, None]
            e = theta**2 + 2 * theta * cue + ve - noise
            parts.append(np.maximum(e, 0.0))
            est = est + e
        return est, self.fixed_star + self._linear(parts, self.d_star)


def _loss(tables: list[SettingTable], keys: list[list[Hashable]] | None, rng: np.random.Generator,
          draws: int) -> _Loss | _SharedLoss:
    """The loss's estimate over its factors: :class:`_SharedLoss` where a cell of runs stands in more than one
    factor (``keys``: one per setting of each factor), else :class:`_Loss`."""
    if keys is not None:
        flat = [k for ks in keys for k in ks]
        if len(set(flat)) < len(flat):
            return _SharedLoss(tables, keys, rng, draws)
    return _Loss(tables, rng, draws)


def _equal_tailed(z_star: np.ndarray, z_obs: np.ndarray) -> np.ndarray:
    """``2 min(P(Z* >= z), P(Z* <= z))``, each tail counted as ``(hits + 1) / (draws + 1)`` so that a
    p-value is never 0 (its floor is ``2 / (draws + 1)``); a draw tied with ``z`` counts in both tails."""
    upper, lower = _tails(z_star, z_obs)
    return np.minimum(1.0, 2 * np.minimum(upper, lower))


def _z(a: np.ndarray, b: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``(a - b) / sqrt(var)``, the difference exactly 0 where ``a`` and ``b`` are equal within the
    resolution (:mod:`.tolerance`): a statistic equal to its null value gives ``Z = 0`` on every machine,
    however little noise there is."""
    return snap(a - b, np.abs(a) + np.abs(b)) / np.sqrt(np.maximum(var, _TINY))


def _tails(z_star: np.ndarray, z_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P(Z* >= z), P(Z* <= z))``, each counted as ``(hits + 1) / (draws + 1)``; a tie counts in both."""
    b = z_star.shape[1]
    upper = (at_least(z_star, z_obs[:, None]).sum(axis=1) + 1) / (b + 1)
    lower = (at_most(z_star, z_obs[:, None]).sum(axis=1) + 1) / (b + 1)
    return upper, lower


def _ratio_p(ce: _Loss, sc: _Loss, rho: np.ndarray) -> np.ndarray:
    """p-value of ``R = rho`` for each ``rho``."""
    return _equal_tailed(*_ratio_z(ce, sc, rho))


def _ratio_z(ce: _Loss, sc: _Loss, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap draws ``Z*`` and the observed ``Z`` of ``R = rho`` for each ``rho``."""
    r2 = rho**2
    z_obs = _z(ce.raw / r2, sc.raw, ce.var / r2**2 + sc.var)
    # F * tau^2 under the null: both losses' estimates, precision-weighted (an estimate without noise decides
    # alone), then one standard error up: see the module docstring
    v_sc, v_ce = sc.var, ce.var / r2**2
    with np.errstate(divide="ignore", invalid="ignore"):
        w_sc = np.where(v_sc == 0, 1.0, np.where(v_ce == 0, 0.0, 1 / max(v_sc, _TINY)))
        w_ce = np.where(v_ce == 0, 1.0, np.where(v_sc == 0, 0.0, 1 / np.maximum(v_ce, _TINY)))
        se = np.sqrt(np.where(v_sc + v_ce > 0, v_sc * v_ce / np.maximum(v_sc + v_ce, _TINY), 0.0))
    total_sc = np.maximum(0.0, (w_sc * sc.raw + w_ce * ce.raw / r2) / (w_sc + w_ce)) + NUISANCE_SHIFT * se
    e_ce, v_ce = ce.draw(r2 * total_sc)
    e_sc, v_sc = sc.draw(total_sc)
    z_star = _z(e_ce / r2[:, None], e_sc, v_ce / r2[:, None] ** 2 + v_sc)
    return z_star, z_obs


def _tost_p(ce: _Loss, sc: _Loss, margin: float) -> float:
    """TOST p-value of "R <= 1/m or R >= m": the largest upper tail at ``rho = 1/m`` and below (rejecting
    ``R <= 1/m``) and the largest lower tail at ``rho = m`` and above (rejecting ``R >= m``). Every ratio of
    the null set is tested, not only its edge: with few seeds the tails are not monotone in ``rho``."""
    low = np.append(RHO_GRID[RHO_GRID < 1 / margin], 1 / margin)
    high = np.append(margin, RHO_GRID[RHO_GRID > margin])
    upper, _ = _tails(*_ratio_z(ce, sc, low))
    _, lower = _tails(*_ratio_z(ce, sc, high))
    return float(max(upper.max(), lower.max()))


def _spread_p(loss: _Loss, t: np.ndarray) -> np.ndarray:
    """p-value of ``Theta = t`` for one loss, for each ``t``: equal-tailed, except at ``t = 0``, the edge of
    the parameter space, where the test is one-sided (``P(Z* >= Z)``): under a null on the boundary only
    a spread above 0 is an alternative, so the reference distribution is one-sided (Self & Liang 1987),
    and doubling the tail would test at half the level. Setting means more alike than seed noise
    predicts (a negative unbiased estimate) are no evidence of a spread above 0, so they never reject
    ``Theta = 0``: no "moves" claim from them, and an interval that keeps 0 where the estimate is 0. The
    interval inverts this same test, so it excludes 0 exactly when the p-value is below alpha."""
    n_f = len(loss.factors)
    z_obs = _z(np.full(len(t), loss.raw), n_f * t**2, np.full(len(t), loss.var))
    e, v = loss.draw(n_f * t**2)
    z_star = _z(e, n_f * (t**2)[:, None], v)
    upper, lower = _tails(z_star, z_obs)
    return np.minimum(1.0, np.where(t == 0, upper, 2 * np.minimum(upper, lower)))


def _spread_interval(loss: _Loss, alpha: float, bound: float | None) -> tuple[float, float]:
    noise = math.sqrt(max(sum(f.noise for f in loss.factors) / len(loss.factors), 0.0))
    top = 10 * (loss.spread + noise) + 1e-9
    if bound is not None:
        top = bound
    grid = np.concatenate([[0.0], np.geomspace(top * 1e-4, top, 60)])
    high_open = bound if bound is not None else math.inf
    low, high = invert(lambda t: _spread_p(loss, t), grid, alpha, log=False, low_open=0.0, high_open=high_open,
                       estimate=loss.spread, steps=BISECTION_STEPS)
    if loss.raw < 0:
        # setting means more alike than seed noise predicts reject every spread in the lower tail, however
        # small; they are no evidence against a spread that noise hides, so the upper end is never below
        # the one the same noise gives when the means vary exactly as noise predicts (estimate 0)
        level = copy.copy(loss)
        level.raw = 0.0
        _, high0 = invert(lambda t: _spread_p(level, t), grid, alpha, log=False, low_open=0.0, high_open=high_open,
                          estimate=0.0, steps=BISECTION_STEPS)
        low, high = 0.0, max(x for x in (high, high0, 0.0) if not math.isnan(x))
    return low, high


def _keep_edge(ci: tuple[float, float], ratio: float) -> tuple[float, float]:
    """The ratio's interval, reaching 0 where the baseline's spread is estimated 0 (ratio 0), infinity
    where the method's is (ratio inf), and both where both are (ratio undefined): the estimate then sits
    at the edge of the parameter space, and the test can reject the ratios near it only because one
    loss's setting means are more alike than its seed noise predicts, which is no evidence against them."""
    low, high = ci
    if math.isnan(ratio) or (ratio in (0.0, math.inf) and math.isnan(low)):
        return 0.0, math.inf  # both spreads estimated 0, or no ratio accepted at all: nothing bounds it
    if ratio == 0 and math.isfinite(low):
        low = 0.0
    if ratio == math.inf and (math.isnan(high) or high < math.inf):
        high = math.inf
        low = low if math.isfinite(low) else 0.0
    return low, high


def spread_bound(tables: list[SettingTable]) -> float:
    """The largest ``Theta`` that values in [0, 1] allow: each factor's spread is at most
    ``sqrt(K / (4 (K - 1)))`` (half the settings at 0, half at 1)."""
    return max(math.sqrt(len(t.settings) / (4 * (len(t.settings) - 1))) for t in tables) if tables else MAX_ACCURACY_STD


def compare_these(blocks: list[tuple[SettingTable, SettingTable]], alpha: float = ALPHA, seed: int = 0,
                  draws: int = BOOTSTRAP_DRAWS, bounded: bool = True, interval: bool = True,
                  spread_intervals: bool = True, equivalence_ratio: float | None = None,
                  names: tuple[str, str] = ("ce", "supcon"),
                  keys: list[tuple[list[Hashable], list[Hashable]]] | None = None) -> TheseSettingsResult:
    """Compare a baseline (CE) with a method (SupCon) over the settings tried, on one or more factors (blocks).

    ``keys``: per block, each loss's key of the runs at each setting (the set of trial ids); a key that
    appears in several blocks is one cell of runs in all of them (a study's base), whose noise counts
    once with its covariances (:class:`_SharedLoss`). ``names`` keys the result's per-loss spreads. Each block is ``(baseline_table, method_table)`` over the same settings in the same order, with at least
    2 settings and at least 2 seeds in every setting. ``bounded``: the metric lies in [0, 1], so spread
    intervals stop at :func:`spread_bound`. ``interval=False`` skips every interval (the planner);
    ``spread_intervals=False`` only the per-loss ones (the calibration). ``equivalence_ratio`` m adds
    the 90% interval and the TOST p-value of "the ratio lies outside [1/m, m]" (equivalence).
    """
    for c, s in blocks:
        if c.settings != s.settings:
            raise ValueError("paired blocks must list the same settings in the same order")
        if len(c.settings) < 2:
            raise ValueError("a 'these settings' comparison needs at least 2 paired settings per factor")
        if min(c.n.min(), s.n.min()) < 2:
            raise ValueError("a 'these settings' comparison needs at least 2 seeds in every setting for each loss")
    if not blocks:
        raise ValueError("no factor to compare")
    rng = np.random.default_rng(seed)
    ce = _loss([c for c, _ in blocks], [list(k[0]) for k in keys] if keys else None, rng, draws)
    sc = _loss([s for _, s in blocks], [list(k[1]) for k in keys] if keys else None, rng, draws)
    if ce.spread == 0 and sc.spread == 0:
        ratio = math.nan
    else:
        ratio = ce.spread / sc.spread if sc.spread > 0 else math.inf
    p_of = lambda r: _ratio_p(ce, sc, r)  # noqa: E731
    # the test that agrees with the interval: see inversion.agreeing_p
    p_value = agreeing_p(p_of, RHO_GRID, 1.0, ratio, float(p_of(np.array([1.0]))[0]))
    spreads = {names[0]: ce.spread, names[1]: sc.spread}
    if not interval:
        nan2 = (math.nan, math.nan)
        tost = _tost_p(ce, sc, equivalence_ratio) if equivalence_ratio is not None else math.nan
        return TheseSettingsResult(ratio, nan2, p_value, sign(ce.raw - sc.raw, abs(ce.raw) + abs(sc.raw)), spreads,
                                   {names[0]: nan2, names[1]: nan2}, sum(len(c.settings) for c, _ in blocks), nan2, tost)
    # the ratio's p-value falls as rho moves away from the estimate on either side
    ci = _keep_edge(invert(p_of, RHO_GRID, alpha, log=True, low_open=0.0, high_open=math.inf, estimate=ratio,
                           steps=BISECTION_STEPS), ratio)
    if ci == (0.0, math.inf):
        # no ratio is bounded (both spreads estimated 0, or one is and no ratio is accepted): the data are
        # no evidence against any ratio, ratio 1 included
        p_value = 1.0
    bound = spread_bound([c for c, _ in blocks]) if bounded else None
    if spread_intervals:
        spread_ci = {names[0]: _spread_interval(ce, alpha, bound), names[1]: _spread_interval(sc, alpha, bound)}
    else:
        spread_ci = {names[0]: (math.nan, math.nan), names[1]: (math.nan, math.nan)}
    ci90, tost = (math.nan, math.nan), math.nan
    if equivalence_ratio is not None:
        ci90 = _keep_edge(invert(p_of, RHO_GRID, 2 * alpha, log=True, low_open=0.0, high_open=math.inf,
                                 estimate=ratio, steps=BISECTION_STEPS), ratio)
        tost = _tost_p(ce, sc, equivalence_ratio)
    return TheseSettingsResult(ratio, ci, p_value, sign(ce.raw - sc.raw, abs(ce.raw) + abs(sc.raw)), spreads, spread_ci,
                               sum(len(c.settings) for c, _ in blocks), ci90, tost)


@dataclass(frozen=True)
class OneLossSpread:
    """One loss's spread over the settings tried, its 95% interval, and the p-value of "no effect beyond
    seed noise" (spread 0), from the same bootstrap-t whose inversion gives the interval."""

    spread: float
    ci95: tuple[float, float]
    p_value: float
    n_settings: int


def spread_of_one(tables: list[SettingTable], alpha: float = ALPHA, seed: int = 0, draws: int = BOOTSTRAP_DRAWS,
                  bounded: bool = True, interval: bool = True,
                  keys: list[list[Hashable]] | None = None) -> OneLossSpread:
    """One method's spread over one or more factors (root mean square over factors), with the test of
    ``Theta = 0``: a study of one loss (the paper's Fig. 4b-d, temperature) asks whether its accuracy
    moves across the settings tried more than seed noise explains. Each table needs at least 2
    settings with at least 2 seeds each. ``keys`` as in :func:`compare_these` (one list per table)."""
    for t in tables:
        if len(t.settings) < 2:
            raise ValueError("a 'these settings' spread needs at least 2 settings per factor")
        if t.n.min() < 2:
            raise ValueError("a 'these settings' spread needs at least 2 seeds in every setting")
    if not tables:
        raise ValueError("no factor to analyse")
    loss = _loss(tables, keys, np.random.default_rng(seed), draws)
    p_value = float(_spread_p(loss, np.array([0.0]))[0])
    ci = (math.nan, math.nan)
    if interval:
        ci = _spread_interval(loss, alpha, spread_bound(tables) if bounded else None)
    return OneLossSpread(loss.spread, ci, p_value, sum(len(t.settings) for t in tables))
