"""A paired permutation test, and its inverted interval, for the ratio of two losses' sensitivities.

The unit is the *setting*: both losses run the same settings, and a setting's seed replicates stay
together. For each factor (a *block*), each loss's runs are centred on that loss's grand mean; the
statistic is the difference of the between-setting variance components (method of moments, seed
noise removed, untruncated; :func:`supcon_ray.stats.variance.between_variance`), normalised so that
it does not depend on the scale of the data:

    T = (v_CE - v_SupCon) / (|v_CE| + |v_SupCon|),   v = sigma_a^2

Under the null hypothesis that the two losses are equally sensitive, the pair of setting effects
(CE's, SupCon's) is exchangeable within a setting, so swapping the two losses' runs of any subset of
settings leaves the distribution of the data unchanged. The p-value is the share of the 2^K swaps
(all of them up to :data:`MAX_EXACT`, else a fixed-seed random sample that includes the identity)
whose ``|T|`` reaches the observed one. Several factors pool into one test with weights ``K_f - 1``
(each factor's swaps are independent); this is the report-level test.

The 95% interval for ``rho = sigma_a(CE) / sigma_a(SupCon)`` inverts the test: CE's runs are
multiplied by ``1 / rho`` and ``rho`` is kept where the test does not reject. Each group's ``v`` is a
quadratic in the multiplier for every swap, so the whole grid of ``rho`` costs two matrix products.

Centring each loss on its own estimated mean leaves a small bias: a swapped group mixes two
centrings, which widens it a little, so the test is slightly liberal for many settings (measured:
false-claim rate and coverage within about one Monte-Carlo standard error of nominal at 12 settings;
see the README's calibration table). Centring each origin within a swapped group instead (a
stratified ANOVA) removes the bias but costs a degree of freedom in every swap and was measured to
be far too conservative (no rejection at all with 6 settings), so it is not used.

Discreteness is honest: with K settings the smallest two-sided p-value is ``2 / 2^K`` (0.25 for 3
settings, 0.0625 for 5), and :attr:`PairedResult.min_p` says when a design can never reach alpha.
The calibration (``python -m benchmarks.calibration``) measures the false-claim rate, coverage and
power of this test on simulated studies with known truth.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .variance import SettingTable, between_variance

MAX_EXACT = 4096  # enumerate every swap up to 2^12 settings
N_RANDOM = 4096
RHO_GRID = np.exp(np.linspace(math.log(1e-3), math.log(1e3), 161))  # 9% steps, refined by bisection
BISECTION_STEPS = 8  # to 0.04% of rho


@dataclass(frozen=True)
class PairedResult:
    """Outcome of a paired comparison: ``ratio`` = sigma_a(CE) / sigma_a(SupCon) (truncated components,
    ``inf`` when SupCon's is zero), its inverted 95% interval (``0`` / ``inf`` where unbounded), the
    two-sided p-value at ratio 1, the smallest p-value this design can produce, and the direction of
    the observed difference (``+1``: CE varies more)."""

    ratio: float
    ci95: tuple[float, float]
    p_value: float
    min_p: float
    direction: int
    n_settings: int
    exact: bool


def _swaps(k: int, seed: int) -> tuple[np.ndarray, bool]:
    if 2**k <= MAX_EXACT:
        return np.array(list(itertools.product([False, True], repeat=k)), dtype=bool), True
    rng = np.random.default_rng(seed)
    z = rng.random((N_RANDOM - 1, k)) < 0.5
    return np.vstack([np.zeros((1, k), dtype=bool), z]), False


def _group_coefficients(n, u, w, ss_fixed, ss_scaled) -> np.ndarray:
    """Coefficients (c0, c1, c2) of sigma_a^2(lambda) for a group whose means are u + lambda * w."""
    k = n.shape[-1]
    total = n.sum(-1)
    du = u - ((n * u).sum(-1) / total)[..., None]
    dw = w - ((n * w).sum(-1) / total)[..., None]
    n0 = (total - (n**2).sum(-1) / total) / (k - 1)
    dfw = total - k
    inv_dfw = np.where(dfw > 0, 1 / np.maximum(dfw, 1), 0.0)
    c0 = ((n * du**2).sum(-1) / (k - 1) - ss_fixed.sum(-1) * inv_dfw) / n0
    c1 = (2 * (n * du * dw).sum(-1) / (k - 1)) / n0
    c2 = ((n * dw**2).sum(-1) / (k - 1) - ss_scaled.sum(-1) * inv_dfw) / n0
    return np.stack([c0, c1, c2], axis=-1)


def _centred(t: SettingTable) -> np.ndarray:
    return t.mean - (t.n * t.mean).sum() / t.n.sum()


def _block_coefficients(ce: SettingTable, supcon: SettingTable, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per swap, coefficients of sigma_a^2(lambda) of the CE-labelled and the SupCon-labelled group,
    where CE's runs are multiplied by lambda and ``z`` marks the settings whose runs are swapped."""
    mc, ms = _centred(ce), _centred(supcon)
    zero = np.zeros_like(z, dtype=float)
    a = _group_coefficients(np.where(z, supcon.n, ce.n), np.where(z, ms, zero), np.where(z, zero, mc),
                            np.where(z, supcon.ss, zero), np.where(z, zero, ce.ss))
    b = _group_coefficients(np.where(z, ce.n, supcon.n), np.where(z, zero, ms), np.where(z, mc, zero),
                            np.where(z, zero, supcon.ss), np.where(z, ce.ss, zero))
    return a, b


def _p_values(coef_a: np.ndarray, coef_b: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Two-sided permutation p-value at each multiplier in ``lam``; swap 0 is the observed data."""
    powers = np.stack([np.ones_like(lam), lam, lam**2], axis=1)  # (G, 3)
    a, b = powers @ coef_a.T, powers @ coef_b.T  # (G, P)
    t = np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-300)
    return (t >= t[:, :1] - 1e-9).mean(axis=1)


def _edge(coef_a: np.ndarray, coef_b: np.ndarray, alpha: float, rejected: float, accepted: float) -> float:
    """Bisect (in log rho) between a rejected and an accepted rho; return the accepted end."""
    for _ in range(BISECTION_STEPS):
        mid = math.sqrt(rejected * accepted)
        if _p_values(coef_a, coef_b, np.array([1 / mid]))[0] > alpha:
            accepted = mid
        else:
            rejected = mid
    return float(accepted)


def compare(blocks: list[tuple[SettingTable, SettingTable]], alpha: float = 0.05, seed: int = 0) -> PairedResult:
    """Compare CE with SupCon over one or more factors (blocks) of paired settings.

    Each block is ``(ce_table, supcon_table)`` over the same settings in the same order, with at
    least 2 settings. See the module docstring for the test and the interval.
    """
    blocks = [(c, s) for c, s in blocks if len(c.settings) >= 2]
    if not blocks:
        raise ValueError("a paired comparison needs a factor with at least 2 paired settings")
    for c, s in blocks:
        if c.settings != s.settings:
            raise ValueError("paired blocks must list the same settings in the same order")
    sizes = [len(c.settings) for c, _ in blocks]
    z, exact = _swaps(sum(sizes), seed)
    weights = np.array(sizes, dtype=float) - 1
    weights /= weights.sum()
    coef_a, coef_b = np.zeros((len(z), 3)), np.zeros((len(z), 3))
    v_ce = v_sc = 0.0
    start = 0
    for (c, s), k, wgt in zip(blocks, sizes, weights):
        a, b = _block_coefficients(c, s, z[:, start:start + k])
        coef_a += wgt * a
        coef_b += wgt * b
        start += k
        v_ce += wgt * float(between_variance(c.n, c.mean, c.ss))
        v_sc += wgt * float(between_variance(s.n, s.mean, s.ss))
    p_grid = _p_values(coef_a, coef_b, 1 / RHO_GRID)
    p_value = float(_p_values(coef_a, coef_b, np.array([1.0]))[0])
    t1 = (coef_a - coef_b).sum(axis=1)
    accepted = np.flatnonzero(p_grid > alpha)
    if accepted.size:
        first, last = accepted[0], accepted[-1]
        low = 0.0 if first == 0 else _edge(coef_a, coef_b, alpha, RHO_GRID[first - 1], RHO_GRID[first])
        high = math.inf if last == len(RHO_GRID) - 1 else _edge(coef_a, coef_b, alpha, RHO_GRID[last + 1], RHO_GRID[last])
    else:
        low = high = math.nan
    v_ce, v_sc = max(v_ce, 0.0), max(v_sc, 0.0)
    ratio = math.sqrt(v_ce / v_sc) if v_sc > 0 else (math.inf if v_ce > 0 else math.nan)
    min_p = 2 / len(z) if exact else 1 / len(z)
    return PairedResult(ratio, (low, high), p_value, min_p, int(np.sign(t1[0])), sum(sizes), exact)
