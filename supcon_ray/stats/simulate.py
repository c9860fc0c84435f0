"""Simulated studies with known truth, in the trials-table shape, for calibration, tests and the planner.

Model, per loss ``l``, setting ``s`` and seed ``r``: ``y = mu_l + a_ls + e_lsr``. The setting effects
of the two losses are paired and correlated (``pair_corr``): ``a_supcon = sigma * z1`` and
``a_ce = ratio * sigma * (c z1 + sqrt(1 - c^2) z2)``; ``z`` is standard normal, or Student t with 3
degrees of freedom scaled to unit variance (``effects="t3"``, heavy tails). Seed noise
``e ~ N(0, seed_std_l^2)``, each loss its own (``seed_std`` may be a pair ``(ce, supcon)``).

* Random effects ("beyond these settings"): the true ratio of the losses' population spreads is ``ratio``.
* ``exact_spread=True`` rescales each loss's drawn effects so that their spread over *these* settings
  (K - 1 divisor) is exactly ``sigma`` for SupCon and ``ratio * sigma`` for CE: the truth of the
  "these settings" question is then ``ratio`` exactly.
* ``collapsed=c``: CE's last ``c`` settings sit at chance with no seed noise (a learning rate at which
  training collapses); SupCon's true means are CE's in reverse order, centred on its own mean and
  divided by ``ratio``, so at ratio 1 SupCon collapses at its first settings and both spreads are equal.

Every row carries ``true_mean`` (its setting's true mean), so the truth of "these settings" can be
computed from what was actually drawn (:func:`spread_ratio` does it for :func:`simulate_tables`). A run diverges with probability ``p_diverge`` (per loss) and
is then recorded at chance, as the engine records it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from supcon_ray.designs import DesignKind, design_name

from .variance import SettingTable

EFFECTS = ("normal", "t3")


def _effects(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal(size)
    if kind == "t3":
        return rng.standard_t(3, size) / np.sqrt(3.0)
    raise ValueError(f"effects: {kind!r} is not one of {', '.join(EFFECTS)}")


def _rescale(a: np.ndarray, target: float) -> np.ndarray:
    a = a - a.mean()
    sd = a.std(ddof=1)
    return a * (target / sd) if sd > 0 else a


def true_means(rng: np.random.Generator, n_settings: int, ratio: float = 1.0, setting_std: float = 0.03,
               pair_corr: float = 0.5, means: tuple[float, float] = (0.80, 0.85), effects: str = "normal",
               exact_spread: bool = False, collapsed: int = 0, chance: float = 0.1) -> dict[str, np.ndarray]:
    """Each loss's true setting means (see the module docstring)."""
    z1, z2 = _effects(rng, effects, n_settings), _effects(rng, effects, n_settings)
    a_sc = setting_std * z1
    a_ce = ratio * setting_std * (pair_corr * z1 + np.sqrt(1 - pair_corr**2) * z2)
    if exact_spread:
        a_sc, a_ce = _rescale(a_sc, setting_std), _rescale(a_ce, ratio * setting_std)
    m_ce, m_sc = means[0] + a_ce, means[1] + a_sc
    if collapsed:
        m_ce[n_settings - collapsed:] = chance
        m_sc = m_ce.mean() + (m_ce[::-1] - m_ce.mean()) / ratio
    return {"ce": m_ce, "supcon": m_sc}


def simulate_factor(rng: np.random.Generator, n_settings: int, n_seeds: int, ratio: float = 1.0,
                    setting_std: float = 0.03, seed_std: float | tuple[float, float] = 0.01, pair_corr: float = 0.5,
                    means: tuple[float, float] = (0.80, 0.85), p_diverge: tuple[float, float] = (0.0, 0.0),
                    factor: str = "factor", study: str = "sim", chance: float = 0.1, effects: str = "normal",
                    exact_spread: bool = False, collapsed: int = 0) -> pd.DataFrame:
    """One factor of a one-at-a-time study: ``n_settings`` x ``n_seeds`` runs for CE and SupCon."""
    truth = true_means(rng, n_settings, ratio, setting_std, pair_corr, means, effects, exact_spread, collapsed, chance)
    noise = dict(zip(("ce", "supcon"), seed_std if isinstance(seed_std, tuple) else (seed_std, seed_std)))
    rows = []
    for li, loss in enumerate(("ce", "supcon")):
        for s in range(n_settings):
            m = float(truth[loss][s])
            sd = 0.0 if abs(m - chance) < 1e-12 else noise[loss]  # a collapsed setting sits exactly at chance
            for r in range(n_seeds):
                y = m + sd * rng.standard_normal()
                diverged = rng.random() < p_diverge[li]
                rows.append({"study": study, "factor": factor, "loss": loss, "setting": f"{factor}={s}", "seed": r,
                             "status": "diverged" if diverged else "completed", "design": design_name(DesignKind.ONE_FACTOR),
                             "test_top1": chance if diverged else y, "val_top1": chance if diverged else y,
                             "chance_top1": chance, "true_mean": m, "trial_id": f"{study}-{factor}-{loss}-{s}-{r}"})
    return pd.DataFrame(rows)


def _tables(y: dict[str, np.ndarray]) -> tuple[SettingTable, SettingTable]:
    """(CE table, SupCon table) of runs ``y[loss]``, shape ``(settings, seeds)``."""
    out = []
    for loss in ("ce", "supcon"):
        k, n = y[loss].shape
        mean = y[loss].mean(axis=1)
        out.append(SettingTable(tuple(f"s{i}" for i in range(k)), np.full(k, float(n)), mean,
                                ((y[loss] - mean[:, None]) ** 2).sum(axis=1)))
    return out[0], out[1]


def simulate_tables(rng: np.random.Generator, n_settings: int, n_seeds: int, ratio: float = 1.0,
                    setting_std: float = 0.03, seed_std: float | tuple[float, float] = 0.01, pair_corr: float = 0.5,
                    effects: str = "normal", exact_spread: bool = False, collapsed: int = 0,
                    chance: float = 0.1, noise: str = "normal") -> tuple[tuple[SettingTable, SettingTable], dict[str, np.ndarray]]:
    """The model of :func:`simulate_factor` straight to ``(CE table, SupCon table)`` (no trials table;
    for simulations by the thousand), and the true setting means. ``noise="t3"``: heavy-tailed seed
    noise (Student t, 3 degrees of freedom, scaled to ``seed_std``)."""
    truth = true_means(rng, n_settings, ratio, setting_std, pair_corr, (0.80, 0.85), effects, exact_spread,
                       collapsed, chance)
    stds = seed_std if isinstance(seed_std, tuple) else (seed_std, seed_std)
    y = {}
    for loss, sd in zip(("ce", "supcon"), stds):
        m = truth[loss]
        sds = np.where(np.abs(m - chance) < 1e-12, 0.0, sd)[:, None]
        y[loss] = m[:, None] + sds * _effects(rng, noise, n_settings * n_seeds).reshape(n_settings, n_seeds)
    return _tables(y), truth


@dataclass(frozen=True)
class NoisePattern:
    """One factor's observed shape, per loss: each setting's mean and seed std (from a real study)."""

    name: str
    means: dict[str, np.ndarray]
    seed_stds: dict[str, np.ndarray]


def pattern_tables(rng: np.random.Generator, pattern: NoisePattern, n_seeds: int,
                   ratio: float = 1.0) -> tuple[tuple[SettingTable, SettingTable], dict[str, np.ndarray]]:
    """A factor with a real study's per-setting seed noise: SupCon's true means are its observed ones,
    CE's observed profile is rescaled so that its spread is exactly ``ratio`` times SupCon's, and every
    setting keeps its own observed seed std (normal noise). The truth of "these settings" is ``ratio``."""
    sc = np.asarray(pattern.means["supcon"], dtype=float)
    ce = np.asarray(pattern.means["ce"], dtype=float)
    target = ratio * sc.std(ddof=1)
    truth = {"supcon": sc, "ce": ce.mean() + (ce - ce.mean()) * (target / ce.std(ddof=1))}
    y = {loss: truth[loss][:, None] + np.asarray(pattern.seed_stds[loss])[:, None]
         * rng.standard_normal((len(truth[loss]), n_seeds)) for loss in ("ce", "supcon")}
    return _tables(y), truth


def bimodal_tables(rng: np.random.Generator, n_settings: int, n_seeds: int, ratio: float = 1.0,
                   setting_std: float = 0.03, seed_std: float = 0.01, chance: float = 0.1,
                   level: float = 0.8, split: str = "ends", both: bool = False
                   ) -> tuple[tuple[SettingTable, SettingTable], dict[str, np.ndarray]]:
    """Collapse that splits the seeds: at CE's split settings each seed lands at chance with probability
    1/2 (no noise there) and otherwise near ``a_s``, so the true mean is ``(chance + a_s) / 2``;
    elsewhere CE's runs are ``a_s`` plus normal noise. SupCon has CE's true means, centred profile
    divided by ``ratio``, with even normal noise; with ``both`` its seeds split at the same settings too
    (chance, or ``2 m - chance`` for its true mean ``m``). The truth is ``ratio``. ``split``: the split
    settings, :data:`SPLITS` (``"ends"``: the first and the last; ``"one"``: the middle one; ``"two"``:
    the second and the one after the middle)."""
    a = level + setting_std * rng.standard_normal(n_settings)
    ends = np.array(SPLITS[split](n_settings))
    m_ce = a.copy()
    m_ce[ends] = (chance + a[ends]) / 2
    y_ce = a[:, None] + seed_std * rng.standard_normal((n_settings, n_seeds))
    at_chance = rng.random((len(ends), n_seeds)) < 0.5
    y_ce[ends] = np.where(at_chance, chance, y_ce[ends])
    m_sc = m_ce.mean() + (m_ce - m_ce.mean()) / ratio
    y_sc = m_sc[:, None] + seed_std * rng.standard_normal((n_settings, n_seeds))
    if both:
        high = 2 * m_sc[ends] - chance
        y_sc[ends] = high[:, None] + seed_std * rng.standard_normal((len(ends), n_seeds))
        y_sc[ends] = np.where(rng.random((len(ends), n_seeds)) < 0.5, chance, y_sc[ends])
    return _tables({"ce": y_ce, "supcon": y_sc}), {"ce": m_ce, "supcon": m_sc}


#: Where :func:`bimodal_tables` splits the seeds, by name: the settings' positions for ``n`` settings.
SPLITS = {"ends": lambda n: [0, n - 1], "one": lambda n: [n // 2], "two": lambda n: [1, n // 2 + 1]}


def spread_ratio(truth: dict[str, np.ndarray]) -> float:
    """The "these settings" ratio of one factor's true setting means (``nan`` when both spreads are 0)."""
    ce, sc = float(np.var(truth["ce"], ddof=1)), float(np.var(truth["supcon"], ddof=1))
    if ce == 0 and sc == 0:
        return float("nan")
    return float(np.sqrt(ce / sc)) if sc > 0 else float("inf")


#: The relative settings of a simulated factor besides its base ``x1``, in order.
MULTIPLES = ("x0.25", "x0.5", "x2", "x4", "x8", "x0.125", "x16", "x0.0625", "x32", "x64", "x0.03125")


@dataclass(frozen=True)
class StudyTruth:
    """What a simulated one-at-a-time study is, per study: every factor has its base setting ``x1`` (the
    same runs in every factor: one cell of trial ids) and ``n_settings - 1`` others, each below the base by
    a drop drawn uniformly from ``drops`` (the base best by 2 to 4 points: it dominates each factor's
    spread). The methods' true means are these; the baseline's drops are ``ratio`` times theirs, so at
    ``ratio = 1`` every loss has the same true means (an exact null of every question) and otherwise
    every question's truth is ``ratio`` (the drop, the spread over these settings, and the population
    spread). Seed noise has std ``seed_std`` (``noise="t3"``: Student t with 3 degrees of freedom, scaled),
    ``uneven`` times that at each factor's first non-base setting; ``collapse``: that setting sits at
    chance with no noise for every loss."""

    name: str
    drops: tuple[float, float] = (0.02, 0.04)
    seed_std: float = 0.005
    ratio: float = 1.0
    uneven: float = 1.0
    noise: str = "normal"
    collapse: bool = False
    base: float = 0.85
    chance: float = 0.1


def simulate_study(rng: np.random.Generator, truth: StudyTruth, methods: tuple[str, ...] = ("supcon",),
                   baseline: str | None = "ce", n_factors: int = 3, n_settings: int = 3, n_seeds: int = 3,
                   studies: int = 1) -> pd.DataFrame:
    """Runs of ``studies`` simulated studies (``truth``) in the trials-table shape, each with ``n_factors``
    factors of ``n_settings`` settings (the base included) and ``n_seeds`` seeds per setting and loss;
    the losses are ``baseline`` (none: a one-method study) and ``methods``. The base's rows repeat in every
    factor with the same trial ids, as a study folder's analysed trials do."""
    if n_settings - 1 > len(MULTIPLES):
        raise ValueError(f"n_settings: at most {len(MULTIPLES) + 1}")
    losses = ((baseline,) if baseline else ()) + tuple(methods)
    rows = []

    def noise(sd: float, n: int) -> np.ndarray:
        return sd * _effects(rng, "t3" if truth.noise == "t3" else "normal", n)

    for st in range(studies):
        study = f"sim{st}"
        drops = rng.uniform(*truth.drops, (n_factors, n_settings - 1))
        for loss in losses:
            scale = truth.ratio if loss == baseline else 1.0
            base_runs = truth.base + noise(truth.seed_std, n_seeds)
            for f in range(n_factors):
                factor = f"f{f}"
                cells = [("x1", truth.base, base_runs, f"{study}-{loss}-base")]
                for j in range(n_settings - 1):
                    m = truth.base - scale * drops[f, j]
                    sd = truth.seed_std * (truth.uneven if j == 0 else 1.0)
                    if truth.collapse and j == 0:
                        m, runs = truth.chance, np.full(n_seeds, truth.chance)
                    else:
                        runs = m + noise(sd, n_seeds)
                    cells.append((MULTIPLES[j], m, runs, f"{study}-{loss}-{factor}-{j}"))
                for label, m, runs, tid in cells:
                    for r, y in enumerate(runs):
                        rows.append({"study": study, "factor": factor, "loss": loss, "setting": f"{factor}={label}",
                                     "seed": r, "status": "completed", "design": design_name(DesignKind.ONE_FACTOR),
                                     "test_top1": float(y), "chance_top1": truth.chance, "true_mean": float(m),
                                     "trial_id": f"{tid}-{r}"})
    return pd.DataFrame(rows)
