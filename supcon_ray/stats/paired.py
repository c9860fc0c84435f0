""""Beyond these settings": a paired permutation test, and its inverted interval, for the ratio of two
losses' sensitivities when the settings are a sample of the settings one could have tried.

The unit is the *setting*: both losses run the same settings, and a setting's seed replicates stay
together. For each factor ``f`` (a *block*), each loss's runs are centred on that loss's grand mean;
``v`` is a loss's between-setting variance component (method of moments, seed noise removed,
untruncated; :func:`supcon_ray.stats.variance.between_variance`), and the statistic is

    D_f = (v_CE - v_SupCon) / S_f,        T = |sum_f D_f|

where ``S_f`` is the two losses' average total variance (between-setting mean square plus seed mean
square, divided by ``n0``) computed from every run of the factor. ``S_f`` is the same for every swap,
so ``T`` is a continuous function of the data that cannot saturate (the earlier normalisation by
``|v_CE| + |v_SupCon|`` made ``T = 1`` whenever the two components had opposite signs, and those ties,
not the data, set the interval's ends). Every factor enters the pooled statistic with the same weight,
whatever its scale.

Under the null hypothesis that the two losses are equally sensitive, the pair of setting effects
(CE's, SupCon's) is exchangeable within a setting, so swapping the two losses' runs of any subset of
settings leaves the distribution of the data unchanged. The p-value is the share of the 2^K swaps
(all of them up to :data:`MAX_EXACT`, else a fixed-seed random sample that includes the identity)
whose ``T`` reaches the observed one.

The 95% interval for ``rho = sigma_a(CE) / sigma_a(SupCon)`` inverts the test: CE's runs are
multiplied by ``1 / rho`` and ``rho`` is kept where the test does not reject. Each group's ``v`` and
each ``S_f`` are quadratics in the multiplier for every swap, so the whole grid of ``rho`` costs a few
matrix products. For one factor the point estimate is ``sqrt(v_CE / v_SupCon)``; pooled over factors
it is the common ratio at which ``sum_f D_f = 0`` (the value the interval is centred on).

Centring each loss on its own estimated mean leaves a small bias: a swapped group mixes two
centrings, which widens it a little, so the test is slightly liberal for many settings; the
calibration table in docs/method.md measures it.

Discreteness is honest: with K settings the smallest two-sided p-value is ``2 / 2^K`` (0.25 for 3
settings, 0.0625 for 5), and :attr:`PairedResult.min_p` says when a design can never reach alpha:
this question needs :data:`~supcon_ray.stats.settings.MIN_SETTINGS_BEYOND` settings or more.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from scipy.stats import f as f_distribution

from .inversion import agreeing_p, invert
from .settings import ALPHA, NOISE_LEVEL, NOISE_TO_SPREAD
from .tolerance import at_least, exact_sum, sign, snap
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
    """Setting means less the loss's grand mean; exactly 0 where they are equal within the resolution."""
    return snap(t.mean - exact_sum(t.n * t.mean) / exact_sum(t.n), np.abs(t.mean).max())


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


def _block_scale(ce: SettingTable, supcon: SettingTable) -> np.ndarray:
    """``S_f(lambda) = s0 + s2 lambda^2``: the two losses' average total variance (between-setting mean
    square plus seed mean square, over ``n0``), from every run of the block; the same for every swap."""
    k = len(ce.settings)
    n0 = float((ce.n + supcon.n).mean()) / 2
    dfw = max(float(ce.n.sum() + supcon.n.sum()) - 2 * k, 1.0)
    s2 = (float((ce.n * _centred(ce) ** 2).sum()) / (k - 1) + float(ce.ss.sum()) / dfw) / (2 * n0)
    s0 = (float((supcon.n * _centred(supcon) ** 2).sum()) / (k - 1) + float(supcon.ss.sum()) / dfw) / (2 * n0)
    return np.array([s0, 0.0, s2])


def _statistics(coef_a: np.ndarray, coef_b: np.ndarray, scale: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``sum_f D_f`` for every multiplier in ``lam`` and every swap: shape ``(G, P)``.

    ``coef_a``, ``coef_b``: ``(F, P, 3)``; ``scale``: ``(F, 3)`` (quadratics in lambda)."""
    powers = np.stack([np.ones_like(lam), lam, lam**2], axis=1)  # (G, 3)
    out = 0.0
    for ca, cb, sc in zip(coef_a, coef_b, scale):
        out = out + (powers @ (ca - cb).T) / np.maximum(powers @ sc, 1e-300)[:, None]
    return out


def _p_values(coef_a: np.ndarray, coef_b: np.ndarray, scale: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Two-sided permutation p-value at each multiplier in ``lam``; swap 0 is the observed data."""
    t = np.abs(_statistics(coef_a, coef_b, scale, lam))
    return at_least(t, t[:, :1]).mean(axis=1)  # ties (the all-swapped copy of the data, equal spreads) count


def _common_ratio(v_ce: np.ndarray, v_sc: np.ndarray, scale: np.ndarray) -> float:
    """The ratio at which ``sum_f (v_CE / rho^2 - v_SupCon) / S_f(1 / rho) = 0`` (observed data);
    ``0`` or ``inf`` where the sum keeps one sign."""
    def total(rho: float) -> float:
        lam2 = 1 / rho**2
        return float(np.sum((lam2 * v_ce - v_sc) / np.maximum(scale[:, 0] + lam2 * scale[:, 2], 1e-300)))
    lo, hi = float(RHO_GRID[0]), float(RHO_GRID[-1])
    if not (v_ce > 0).any() and not (v_sc > 0).any():  # neither loss moves: no ratio
        return math.nan
    if total(lo) <= 0:
        return 0.0
    if total(hi) >= 0:
        return math.inf
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if total(mid) > 0 else (lo, mid)
    return math.sqrt(lo * hi)


def uneven_noise(ce: SettingTable, supcon: SettingTable) -> list[str]:
    """The settings of a block at which one loss's seed noise is too concentrated for the swap test: empty
    when the test applies.

    A setting is flagged when both hold:

    * *its noise stands out*: per loss, a forward search over its settings with a seed variance (two or
      more runs, not all equal: a setting whose runs all sit at one value, e.g. a collapse at chance, is
      an effect, not noise), in increasing order of that variance: the lower half is the reference, and
      each next setting is tested against the pooled variance of those below it (one-sided F test, at
      :data:`~.settings.NOISE_LEVEL` divided by the number of such cells of both losses); the first that
      is too large is flagged with every setting above it, else it joins the reference. Starting from
      the lower half keeps two split settings from masking each other;
    * *and it matters*: the variance of that loss's mean there exceeds :data:`~.settings.NOISE_TO_SPREAD`
      times the variance of the means of the settings whose noise does not stand out (the two losses'
      average), so splits do not hide themselves by widening the spread they are compared with.

    Under even normal seed noise a factor is flagged in about ``NOISE_LEVEL`` of draws; a split setting,
    whose variance is hundreds of times the others', is flagged whenever its seeds landed on both sides."""
    cells = [(t, np.flatnonzero((t.n > 1) & (t.ss > 0))) for t in (ce, supcon)]
    level = NOISE_LEVEL / max(sum(len(ix) for _, ix in cells), 1)
    out: list[tuple[SettingTable, int]] = []  # (loss, setting) whose noise stands out
    for t, ix in cells:
        df = t.n[ix] - 1
        var = t.ss[ix] / df
        order = np.argsort(var, kind="stable")
        half = (len(order) + 1) // 2
        ss, dfs = float(t.ss[ix][order[:half]].sum()), float(df[order[:half]].sum())
        for j, i in enumerate(order[half:]):
            if f_distribution.sf(var[i] / (ss / dfs), df[i], dfs) < level:
                out += [(t, int(ix[m])) for m in order[half + j:]]
                break
            ss, dfs = ss + float(t.ss[ix[i]]), dfs + float(df[i])
    rest = np.ones(len(ce.settings), dtype=bool)
    rest[[i for _, i in out]] = False
    if rest.sum() < 2:  # no settings left to measure the spread by: the noise matters
        return [ce.settings[i] for i in sorted({i for _, i in out})]
    spread = (float(np.var(ce.mean[rest], ddof=1)) + float(np.var(supcon.mean[rest], ddof=1))) / 2
    return [ce.settings[i] for i in sorted({i for t, i in out if t.ss[i] / (t.n[i] - 1) / t.n[i] > NOISE_TO_SPREAD * spread})]


def _usable(blocks: list[tuple[SettingTable, SettingTable]], keys: list | None = None
            ) -> tuple[list[tuple[SettingTable, SettingTable]], list | None]:
    """The blocks with at least 2 settings (and their keys, kept aligned), checked once: each block's two
    tables list the same settings in the same order."""
    kept = [i for i, (c, _) in enumerate(blocks) if len(c.settings) >= 2]
    if not kept:
        raise ValueError("a paired comparison needs a factor with at least 2 paired settings")
    for i in kept:
        if blocks[i][0].settings != blocks[i][1].settings:
            raise ValueError("paired blocks must list the same settings in the same order")
    return [blocks[i] for i in kept], [keys[i] for i in kept] if keys is not None else None


def compare(blocks: list[tuple[SettingTable, SettingTable]], alpha: float = ALPHA, seed: int = 0,
            interval: bool = True) -> PairedResult:
    """Compare CE with SupCon over one or more factors (blocks) of paired settings.

    Each block is ``(ce_table, supcon_table)`` over the same settings in the same order, with at
    least 2 settings. See the module docstring for the test and the interval. ``interval=False``
    skips the interval (the planner).
    """
    blocks, _ = _usable(blocks)
    sizes = [len(c.settings) for c, _ in blocks]
    z, exact = _swaps(sum(sizes), seed)
    coef_a, coef_b, scale = [], [], []
    start = 0
    for (c, s), k in zip(blocks, sizes):
        a, b = _block_coefficients(c, s, z[:, start:start + k])
        coef_a.append(a)
        coef_b.append(b)
        scale.append(_block_scale(c, s))
        start += k
    coef_a, coef_b, scale = np.stack(coef_a), np.stack(coef_b), np.stack(scale)
    v_ce = np.array([float(between_variance(c.n, c.mean, c.ss)) for c, _ in blocks])
    v_sc = np.array([float(between_variance(s.n, s.mean, s.ss)) for _, s in blocks])
    p_of = lambda lam: _p_values(coef_a, coef_b, scale, lam)  # noqa: E731
    p_value = float(p_of(np.array([1.0]))[0])
    direction = sign(float(_statistics(coef_a, coef_b, scale, np.array([1.0]))[0, 0]), 1.0)  # D is scale-free
    if len(blocks) == 1:
        ce_v, sc_v = max(v_ce[0], 0.0), max(v_sc[0], 0.0)
        ratio = math.sqrt(ce_v / sc_v) if sc_v > 0 else (math.inf if ce_v > 0 else math.nan)
    else:
        ratio = _common_ratio(v_ce, v_sc, scale)
    # the test that agrees with the interval (inversion.agreeing_p): the p-value is not monotone in rho
    p_value = agreeing_p(lambda rho: p_of(1 / rho), RHO_GRID, 1.0, ratio, p_value)
    low = high = math.nan
    if interval:
        low, high = invert(lambda rho: p_of(1 / rho), RHO_GRID, alpha, log=True, low_open=0.0, high_open=math.inf,
                           estimate=ratio, steps=BISECTION_STEPS)
    min_p = 2 / len(z) if exact else 1 / len(z)
    return PairedResult(ratio, (low, high), p_value, min_p, direction, sum(sizes), exact)


# --- pooled over several blocks -------------------------------------------------------------------

def _cells(blocks: list[tuple[SettingTable, SettingTable]], keys: list[tuple[list[Hashable], list[Hashable]]] | None
           ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The distinct cells of runs over the blocks (a study's base is one cell in all its factors: the same
    key), each block's cell indices, and each loss's per-cell mean, count and sum of squares."""
    where: dict[Hashable, int] = {}
    index = []
    for f, (c, _) in enumerate(blocks):
        ks = keys[f][0] if keys else [(f, s) for s in c.settings]
        index.append(np.array([where.setdefault(k, len(where)) for k in ks]))
    n = len(where)
    data = {name: np.zeros(n) for name in ("m_ce", "m_sc", "n_ce", "n_sc", "ss_ce", "ss_sc")}
    for (c, sc), ix in zip(blocks, index):
        data["m_ce"][ix], data["n_ce"][ix], data["ss_ce"][ix] = c.mean, c.n, c.ss
        data["m_sc"][ix], data["n_sc"][ix], data["ss_sc"][ix] = sc.mean, sc.n, sc.ss
    return index, data


def _contrasts(index: list[np.ndarray], n_cells: int) -> np.ndarray:
    """A fixed orthonormal basis of the within-block contrasts over the cells (columns): for each block in
    order, each of its cells less its first one (cells shared with other blocks first), orthonormalised in
    that order (modified Gram-Schmidt; a direction already spanned is dropped). It depends on the design
    alone, never on the data, so the test does not move when runs are reordered or moved by a rounding
    error; for blocks without shared cells it is each block's Helmert basis, in which ``A`` is diagonal."""
    count = np.bincount(np.concatenate(index), minlength=n_cells)
    basis: list[np.ndarray] = []
    for ix in index:
        order = sorted(range(len(ix)), key=lambda i: (count[ix[i]] == 1, i))  # shared cells first
        first = ix[order[0]]
        for i in order[1:]:
            v = np.zeros(n_cells)
            v[ix[i]], v[first] = 1.0, -1.0
            for q in basis:
                v -= (q @ v) * q
            norm = float(np.linalg.norm(v))
            if norm > 1e-9:
                basis.append(v / norm)
    return np.stack(basis, axis=1) if basis else np.zeros((n_cells, 0))


class _Flips:
    """The sign-flip test of :func:`compare_pooled` for every multiplier ``lam`` of CE's runs: the block
    weights ``1 / S_f`` are taken once (at ``lam = 1``), so the statistic of each sign pattern is
    ``lam^2 x - y`` and the p-value falls monotonely on each side of the estimate. Each direction's
    squares are less their seed noise (each cell's own ``s2 / n``), so the statistic is 0 at the estimate,
    where every sign pattern is as likely above as below it."""

    def __init__(self, blocks: list[tuple[SettingTable, SettingTable]], index: list[np.ndarray],
                 data: dict[str, np.ndarray], seed: int) -> None:
        n_cells = len(data["m_ce"])
        a = np.zeros((n_cells, n_cells))
        for (c, sc), ix in zip(blocks, index):
            k = len(ix)
            s0, _, s2 = _block_scale(c, sc)
            a[np.ix_(ix, ix)] += (np.eye(k) - 1 / k) / (k - 1) / max(s0 + s2, 1e-300)
        vectors = _contrasts(index, n_cells)
        values = np.einsum("ij,ik,kj->j", vectors, a, vectors)  # each direction's weight: q_j' A q_j
        # each cell's seed variance of its mean (0 for a cell of one run): the part of (q_j'y)^2 that is noise
        noise = {loss: np.where(data[f"n_{loss}"] > 1, data[f"ss_{loss}"] / np.maximum(data[f"n_{loss}"] - 1, 1)
                                / np.maximum(data[f"n_{loss}"], 1), 0.0) for loss in ("ce", "sc")}
        # w' A u with w = lam y_CE - y_SC, u = lam y_CE + y_SC: per direction j, a_j ((lam q_j'y_CE)^2 - (q_j'y_SC)^2),
        # each square less its seed noise
        q2 = vectors**2
        self.x = values * ((vectors.T @ data["m_ce"]) ** 2 - q2.T @ noise["ce"])
        self.y = values * ((vectors.T @ data["m_sc"]) ** 2 - q2.T @ noise["sc"])
        flips, self.exact = _swaps(len(values), seed)
        self.signs = np.where(flips, -1.0, 1.0)
        self.r = len(values)

    def statistic(self, lam: np.ndarray) -> np.ndarray:
        """Every sign pattern's statistic at each multiplier: shape ``(len(lam), patterns)``."""
        lam2 = np.asarray(lam, dtype=float)[:, None] ** 2
        return (lam2 * self.x - self.y) @ self.signs.T

    def p_values(self, lam: np.ndarray) -> np.ndarray:
        t = self.statistic(np.atleast_1d(lam))
        upper = at_least(t, t[:, :1]).mean(axis=1)
        lower = at_least(-t, -t[:, :1]).mean(axis=1)
        return np.minimum(1.0, 2 * np.minimum(upper, lower))

    def ratio(self) -> float:
        """The ratio CE/SupCon at which the observed statistic is 0 (``0``/``inf`` where one side is not above 0)."""
        v_ce, v_sc = float(self.x.sum()), float(self.y.sum())
        if v_ce <= 0 and v_sc <= 0:
            return math.nan
        if v_sc <= 0:
            return math.inf
        return math.sqrt(max(v_ce, 0.0) / v_sc)


def compare_pooled(blocks: list[tuple[SettingTable, SettingTable]], alpha: float = ALPHA, seed: int = 0,
                   interval: bool = True, keys: list[tuple[list[Hashable], list[Hashable]]] | None = None
                   ) -> PairedResult:
    """The "beyond" comparison pooled over several blocks (factors, or one factor across studies), valid
    where the swap test of :func:`compare` is not.

    Swapping whole settings between the losses is a symmetry of the data only where the two losses have
    the same mean; :func:`compare` centres each loss on its own mean first, and with several small blocks
    the swapped arrangements are then less variable than the observed one (the test made 0.11 false
    claims at 3 blocks x 3 settings; a study's base, one cell in every block, was swapped independently
    per block besides). Here the statistic ``sum_f (q_CE,f - q_SC,f) / S_f`` (``q``: a loss's variance of
    setting means over the block, ``S_f`` as in :func:`compare`) is
    written over the *distinct cells of runs* as ``w' A u``, with ``w = y_CE - y_SC`` and ``u = y_CE + y_SC``
    the cells' differences and sums and ``A = sum_f C_f / ((K_f - 1) S_f)`` (``C_f`` centring over block
    ``f``'s cells; the weights ``1 / S_f`` are taken at the data as observed, for every tested ratio).
    ``A 1 = 0``, so the losses' mean difference drops out exactly. In a fixed orthonormal basis ``q_j`` of
    the within-block contrasts (:func:`_contrasts`; the Helmert basis of each block where no cell is
    shared, in which ``A`` is diagonal) the statistic is ``sum_j a_j (q_j' w)(q_j' u)`` with
    ``a_j = q_j' A q_j``, and under the null (each cell's pair of runs exchangeable, normal,
    seed noise alike) the ``q_j' w`` are independent, symmetric and independent of the ``q_j' u``, so
    flipping their signs is an exact symmetry: the p-value is equal-tailed over the ``2^r`` sign patterns
    (``r``: the contrasts, one fewer per block than the settings swapped by :func:`compare`), twice the
    smaller share of patterns at or beyond the observed statistic on either side. The seed-noise term
    of each direction's squares (each cell's ``s2 / n``, weighted by the direction's squared coefficients) is
    removed from them before the signs are flipped. The 95% interval inverts it as :func:`compare` does (each pattern's
    statistic is ``lam^2 x - y`` in CE's multiplier, so the p-value falls monotonely away from the estimate);
    the point estimate is the ratio at which the observed statistic is 0. ``keys`` (per block, each loss's key per setting)
    makes a cell shared by several blocks one cell."""
    blocks, keys = _usable(blocks, keys)
    test = _Flips(blocks, *_cells(blocks, keys), seed)
    p_of = lambda rho: test.p_values(1 / np.asarray(rho, dtype=float))  # noqa: E731
    ratio = test.ratio()
    stat = float(test.statistic(np.array([1.0]))[0, 0])
    p_value = agreeing_p(p_of, RHO_GRID, 1.0, ratio, float(test.p_values(np.array([1.0]))[0]))
    low = high = math.nan
    if interval:
        low, high = invert(p_of, RHO_GRID, alpha, log=True, low_open=0.0, high_open=math.inf, estimate=ratio,
                           steps=BISECTION_STEPS)
    exact, r = test.exact, test.r
    min_p = 2 / 2**r if exact else 1 / N_RANDOM
    return PairedResult(ratio, (low, high), p_value, min_p, sign(stat, abs(stat) + 1e-300),
                        sum(len(c.settings) for c, _ in blocks), exact)
