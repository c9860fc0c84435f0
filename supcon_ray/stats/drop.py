"""The drop from the base: how much accuracy a loss loses, on average, away from the setting it was tuned at.

The spread (:mod:`.these_settings`) is the paper's Fig. 4a reading: how much the setting means move
around their own average. A user mostly asks something else: "how much do I lose if I move away from
the setting I tuned?" Tunability studies measure that as a drop from the tuned default (Probst,
Boulesteix and Bischl 2019; Wortsman et al. 2023 for learning rates). Per loss and factor with base
setting ``b`` (the factor's setting equal to the base configuration's value: ``lr: x1``, the base
augmentation, the base optimizer) and the other settings ``s != b`` (``K - 1`` of them)::

    drop = m_b - mean_{s != b} m_s          (accuracy points; positive: the base is better)

with ``m_s`` setting ``s``'s mean over its seeds. It is a linear contrast of the setting means, so its
variance under each setting's own seed noise is exact: ``V = D_b + sum_{s != b} D_s / (K - 1)^2``,
``D_s = s2_s / n_s`` (``s2_s`` setting ``s``'s own seed variance; never pooled across settings, since in
learning-rate sweeps one or two settings, where training collapses, carry most of the noise). Its
reference distribution is Student's t with Welch-Satterthwaite degrees of freedom
``V^2 / sum_s (c_s^2 D_s)^2 / (n_s - 1)``: with 3 seeds a setting's variance has 2 degrees of freedom,
and where one setting dominates ``V`` the degrees of freedom fall towards 2, widening the interval as
they should. The calibration (``python -m benchmarks.calibration --question drop``) measures the
false-claim rate and coverage under uneven noise, bimodal collapses and heavy-tailed seed noise.

Comparisons of two losses over the same settings:

* the **difference** ``drop_CE - drop_SupCon`` with its t-interval and two-sided test (the losses'
  seeds are independent, so the variances add; Welch-Satterthwaite over every setting of both);
* the **ratio** ``drop_CE / drop_SupCon`` only where both drops are positive, with Fieller's interval
  (the set of ratios ``r`` for which ``drop_CE - r drop_SupCon`` is not rejected, each with the
  Welch-Satterthwaite degrees of freedom of its own contrast), unbounded when SupCon's drop is not
  clearly above zero by its own test.

Several factors pool as the mean drop over factors (every factor once). Descriptive companions
(no interval): the worst drop (the largest ``m_b - m_s``) and, for a numeric factor, the width in
decades of the settings whose mean lies within 1 and within 5 accuracy points of the best.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .settings import ALPHA
from .tolerance import exact_sum, sign, snap
from .variance import SettingTable

#: Bands (in the metric's units: accuracy points of 1 and 5) of the descriptive "width within" figures.
WIDTH_BANDS = (0.01, 0.05)


@dataclass(frozen=True)
class Contrast:
    """A linear contrast of setting means: estimate, variance, and its Welch-Satterthwaite pieces
    (``sum_s (c_s^2 D_s)^2 / (n_s - 1)``), so that contrasts of independent losses add."""

    estimate: float
    variance: float
    ws_denominator: float

    def __add__(self, other: "Contrast") -> "Contrast":
        return Contrast(self.estimate + other.estimate, self.variance + other.variance,
                        self.ws_denominator + other.ws_denominator)

    def scaled(self, c: float) -> "Contrast":
        return Contrast(c * self.estimate, c * c * self.variance, c**4 * self.ws_denominator)

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom (``inf`` without noise)."""
        return self.variance**2 / self.ws_denominator if self.ws_denominator > 0 else math.inf

    def interval(self, alpha: float = ALPHA) -> tuple[float, float]:
        half = _quantile(alpha, self.df) * math.sqrt(self.variance)
        return self.estimate - half, self.estimate + half

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided t-test of ``estimate = null``; without noise 1 when equal (within the resolution), else 0."""
        diff = float(snap(self.estimate - null, abs(self.estimate) + abs(null) + 1e-300))
        if self.variance <= 0:
            return 1.0 if diff == 0 else 0.0
        return float(2 * sps.t.sf(abs(diff) / math.sqrt(self.variance), self.df))

    def one_sided_p(self, null: float, greater: bool) -> float:
        """p-value of ``estimate <= null`` against ``> null`` (``greater``), or the mirror."""
        diff = float(snap(self.estimate - null, abs(self.estimate) + abs(null) + 1e-300))
        if self.variance <= 0:
            return 0.0 if (diff > 0 if greater else diff < 0) else 1.0
        t = diff / math.sqrt(self.variance)
        return float(sps.t.sf(t, self.df) if greater else sps.t.cdf(t, self.df))


def _quantile(alpha: float, df: float) -> float:
    return float(sps.norm.ppf(1 - alpha / 2) if math.isinf(df) else sps.t.ppf(1 - alpha / 2, df))


Cell = tuple[float, float, float, float]  # (coefficient, mean, D = s2 / n, n) of one cell of runs


def drop_cells(table: SettingTable, base: str, keys: list[Hashable] | None = None) -> dict[Hashable, Cell]:
    """The drop of one factor as a linear contrast over its cells of runs: ``+1`` for the base setting,
    ``-1 / (K - 1)`` for each other one; keyed by ``keys`` (one per setting; default the setting names)."""
    k = len(table.settings)
    if base not in table.settings or k < 2:
        raise ValueError("the drop needs the base setting and at least one other setting")
    n = table.n.astype(float)
    if (n < 2).any():
        raise ValueError("the drop needs at least 2 seeds in every setting")
    d = table.ss / (n - 1) / n  # D_s
    keys = list(table.settings) if keys is None else keys
    return {key: (1.0 if s == base else -1.0 / (k - 1), float(m), float(ds), float(ns))
            for key, s, m, ds, ns in zip(keys, table.settings, table.mean, d, n)}


def contrast_of(cells: dict[Hashable, Cell]) -> Contrast:
    """A linear contrast from its cells, each cell's own seed noise counted once."""
    c = np.array([cell[0] for cell in cells.values()])
    mean, d, n = (np.array([cell[i] for cell in cells.values()]) for i in (1, 2, 3))
    estimate = float(snap(exact_sum(c * mean), np.abs(mean).max()))  # equal means: exactly 0
    terms = c * c * d
    return Contrast(estimate, exact_sum(terms), exact_sum(terms**2 / (n - 1)))


@dataclass(frozen=True)
class LossDrop:
    """One loss's drop (pooled: mean over factors) with its interval and the test of no drop, plus the
    descriptive worst drop and widths (single factor only; ``None`` otherwise)."""

    drop: float
    ci95: tuple[float, float]
    p_value: float
    contrast: Contrast
    worst: float | None = None
    worst_setting: str | None = None
    width_decades: dict[str, float | None] | None = None


def _width(table: SettingTable, positions: dict[str, float] | None) -> dict[str, float | None] | None:
    """Decades spanned by the settings within each band of the best mean (numeric factors only)."""
    if not positions or any(positions.get(s) is None or positions[s] <= 0 for s in table.settings):
        return None
    best = float(np.max(table.mean))
    out: dict[str, float | None] = {}
    for band in WIDTH_BANDS:
        inside = [math.log10(positions[s]) for s, m in zip(table.settings, table.mean) if m >= best - band - 1e-12]
        out[f"within_{round(band * 100)}_points"] = max(inside) - min(inside)
    return out


def loss_drop(tables: list[tuple[SettingTable, str]], alpha: float = ALPHA,
              positions: dict[str, float] | None = None, keys: list[list[Hashable]] | None = None) -> LossDrop:
    """One loss's drop over one factor (one ``(table, base setting)``) or pooled over several (the mean
    over factors). ``keys`` names each factor's cells of runs (one key per setting): a cell that stands
    in several factors (the base, run once and analysed in every factor whose base value it has) is
    one set of runs, so its coefficients add and its seed noise counts once. Without keys every
    factor's cells are distinct."""
    pooled: dict[Hashable, Cell] = {}
    for i, (table, base) in enumerate(tables):
        factor_keys = keys[i] if keys is not None else [(i, s) for s in table.settings]
        for key, (c, m, d, n) in drop_cells(table, base, factor_keys).items():
            c0 = pooled[key][0] if key in pooled else 0.0
            pooled[key] = (c0 + c / len(tables), m, d, n)
    mean = contrast_of(pooled)
    worst = worst_setting = width = None
    if len(tables) == 1:
        table, base = tables[0]
        gaps = {s: float(table.mean[table.settings.index(base)] - m) for s, m in zip(table.settings, table.mean) if s != base}
        worst_setting = max(gaps, key=gaps.get)
        worst = gaps[worst_setting]
        width = _width(table, positions)
    return LossDrop(mean.estimate, mean.interval(alpha), mean.p_value(), mean, worst, worst_setting, width)


@dataclass(frozen=True)
class DropComparison:
    """``drop_CE - drop_SupCon`` (positive: CE loses more away from its base) with its interval and
    two-sided p-value, its direction, and the ratio ``drop_CE / drop_SupCon`` with Fieller's interval
    (``nan`` unless both drops are positive; an unbounded end is ``inf``)."""

    difference: float
    difference_ci95: tuple[float, float]
    p_value: float
    direction: int
    ratio: float
    ratio_ci95: tuple[float, float]
    contrast: Contrast


def fieller(a: Contrast, b: Contrast, alpha: float) -> tuple[float, float]:
    """Fieller's ``1 - alpha`` interval for ``a / b`` (independent estimates), restricted to ratios >= 0: the
    ratios ``r`` whose contrast ``a - r b`` a two-sided t-test at ``alpha`` does not reject, each test with
    the Welch-Satterthwaite degrees of freedom of its own contrast, so the interval is exactly the inversion
    of the tests at each ratio (the equivalence test's included; with one degrees of freedom for all, as
    before, the two could disagree). The connected set around ``a / b``; ``(0, inf)`` where it is not bounded
    (``b`` not clearly away from zero by its own test)."""
    if b.estimate <= 0 or b.estimate**2 <= _quantile(alpha, b.df) ** 2 * b.variance:
        return 0.0, math.inf  # far ratios are never rejected: b is not clearly away from 0

    def rejected(r: float) -> bool:  # the test of ratio r rejects: |a - r b| beyond its own t quantile
        d = a + b.scaled(-r)
        return d.estimate**2 > _quantile(alpha, d.df) ** 2 * d.variance

    estimate = max(a.estimate / b.estimate, 0.0)
    if rejected(estimate):  # a < 0: no ratio >= 0 near the estimate is accepted
        return 0.0, math.inf
    high = max(estimate, 1e-12) * 2
    while not rejected(high):
        high *= 2
    low = 0.0 if not rejected(0.0) else _bisect(rejected, estimate, 0.0)
    return low, _bisect(rejected, estimate, high)


def _bisect(outside, inside: float, out: float, steps: int = 200) -> float:
    """The boundary between a point ``inside`` the set and one ``out`` of it (``outside(out)`` true)."""
    for _ in range(steps):
        mid = (inside + out) / 2
        if mid in (inside, out):
            break
        if outside(mid):
            out = mid
        else:
            inside = mid
    return (inside + out) / 2


def compare_drops(ce: LossDrop, supcon: LossDrop, alpha: float = ALPHA) -> DropComparison:
    """Compare two losses' drops over the same settings (see the module docstring)."""
    diff = ce.contrast + supcon.contrast.scaled(-1.0)
    estimate = float(snap(diff.estimate, abs(ce.drop) + abs(supcon.drop)))
    diff = Contrast(estimate, diff.variance, diff.ws_denominator)
    if ce.drop > 0 and supcon.drop > 0:
        ratio, ratio_ci = ce.drop / supcon.drop, fieller(ce.contrast, supcon.contrast, alpha)
    else:
        ratio, ratio_ci = math.nan, (math.nan, math.nan)
    return DropComparison(estimate, diff.interval(alpha), diff.p_value(), sign(estimate, abs(ce.drop) + abs(supcon.drop)),
                          ratio, ratio_ci, diff)


def equivalence_p(ce: LossDrop, supcon: LossDrop, margin: float) -> float:
    """TOST p-value of "the ratio of drops lies outside ``[1 / margin, margin]``" (``nan`` unless both
    drops are positive): the larger of the one-sided p-values of ``drop_CE - drop_SupCon / m <= 0``
    and ``drop_CE - m drop_SupCon >= 0``."""
    if not (ce.drop > 0 and supcon.drop > 0):
        return math.nan
    low = ce.contrast + supcon.contrast.scaled(-1 / margin)
    high = ce.contrast + supcon.contrast.scaled(-margin)
    return max(low.one_sided_p(0.0, greater=True), high.one_sided_p(0.0, greater=False))
