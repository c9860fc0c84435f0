"""Both questions' answers do not depend on the last bit: the same runs in another order, or moved by a
few units in the last place (what another machine's summation order or BLAS kernel does), give the same
p-values, directions and claims, and degenerate inputs (equal spreads, zero seed noise) give p = 1 and a
finite, or explicitly unbounded, interval on every machine."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from supcon_ray.stats import SettingTable, compare, compare_these
from views import analyze_factors
from supcon_ray.stats.simulate import simulate_factor
from supcon_ray.stats.tolerance import at_least, exact_sum, sign, snap


def _ulps(values: np.ndarray, rng: np.random.Generator, most: int = 4) -> np.ndarray:
    """Each value moved by a random number of ulps in ``[-most, most]``."""
    out = np.array(values, dtype=float)
    for i, k in enumerate(rng.integers(-most, most + 1, out.size)):
        for _ in range(abs(int(k))):
            out.flat[i] = np.nextafter(out.flat[i], math.copysign(math.inf, k))
    return out


def _table(groups, rng=None, shuffle=False) -> SettingTable:
    """A setting table from runs per setting; ``rng``: every run moved by a few ulps; ``shuffle``: the
    runs listed in a random order (settings and seeds)."""
    settings = np.array([f"s{i}" for i, g in enumerate(groups) for _ in g])
    values = np.array([v for g in groups for v in g], dtype=float)
    if rng is not None:
        values = _ulps(values, rng)
        if shuffle:
            order = rng.permutation(len(values))
            settings, values = settings[order], values[order]
    return SettingTable.from_values(pd.Series(settings), pd.Series(values))


NOISE_FREE = {
    # the case that failed on a fresh machine: the same setting means in another order, no seed noise
    "same means, other order": ([[0.8] * 3, [0.82] * 3, [0.1] * 3], [[0.1] * 3, [0.82] * 3, [0.8] * 3]),
    "both flat": ([[0.5] * 3] * 4, [[0.7] * 3] * 4),
    "flat at chance against flat": ([[0.1] * 2] * 3, [[0.93] * 2] * 3),
    "accuracies k/n, same means": ([[0.3, 0.3], [0.7, 0.7], [0.9, 0.9]], [[0.9, 0.9], [0.3, 0.3], [0.7, 0.7]]),
}


@pytest.mark.parametrize("case", sorted(NOISE_FREE))
def test_equal_spreads_are_no_evidence_whatever_the_rounding(case):
    ce, sup = NOISE_FREE[case]
    seen = set()
    for trial in range(6):
        rng = None if trial == 0 else np.random.default_rng(trial)
        block = [(_table(ce, rng, shuffle=trial % 2 == 0), _table(sup, rng, shuffle=trial % 2 == 1))]
        these = compare_these(block, draws=400)
        assert these.p_value == 1.0 and these.direction == 0, (trial, these)
        low, high = these.ci95
        if math.isnan(these.ratio):  # both spreads 0: no ratio, and the interval says so
            assert (low, high) == (0.0, math.inf)
        else:
            assert these.ratio == pytest.approx(1.0, rel=1e-9)
            assert math.isfinite(low) and math.isfinite(high) and low <= these.ratio <= high * (1 + 1e-12)
        for loss, (lo, hi) in these.spread_ci95.items():
            spread = these.spreads[loss]
            assert not math.isnan(lo) and lo <= spread * (1 + 1e-9) + 1e-12 and hi >= spread * (1 - 1e-9), (loss, lo, hi)
        beyond = compare(block, interval=True)
        assert beyond.p_value == 1.0 and beyond.direction == 0, (trial, beyond)
        assert not any(math.isnan(e) for e in beyond.ci95)
        seen.add((these.p_value, these.direction, beyond.p_value, beyond.direction))
    assert len(seen) == 1


def _factors(rng: np.random.Generator) -> pd.DataFrame:
    """Three factors with known truths: uneven noise, a collapse at chance with zero noise, a strong effect."""
    return pd.concat([
        simulate_factor(rng, 4, 3, seed_std=(0.004, 0.03), factor="uneven"),
        simulate_factor(rng, 5, 3, ratio=2.0, collapsed=1, factor="collapse"),
        simulate_factor(rng, 4, 3, ratio=5.0, exact_spread=True, factor="strong"),
    ], ignore_index=True)


def _decisions(factors, overall):
    keep = []
    for e in [*factors, overall]:
        t = e["these_settings"]
        keep.append((e.get("factor"), t["p_value"], t["claim"], e["p_value"], e["claim"]))
    return keep


def _numbers(factors, overall):
    return [[e["these_settings"]["ratio"], *e["these_settings"]["ci95"], e["ratio"], *e["ci95"]]
            for e in [*factors, overall]]


def test_answers_do_not_move_when_runs_are_reordered_or_moved_by_ulps():
    trials = _factors(np.random.default_rng(5))
    reference = analyze_factors(trials, "test_top1", sensitivity=False)
    claims = {e["these_settings"]["claim"] for e in reference[0]}
    assert "supcon_less_sensitive" in claims  # a decided factor is among them, so a flip would show

    shuffled = trials.sample(frac=1.0, random_state=3).reset_index(drop=True)  # settings and seeds in another order
    again = analyze_factors(shuffled, "test_top1", sensitivity=False)
    assert json.dumps(again, sort_keys=True, default=str) == json.dumps(reference, sort_keys=True, default=str)

    for seed in range(3):
        moved = trials.assign(test_top1=_ulps(trials["test_top1"].to_numpy(), np.random.default_rng(seed)))
        result = analyze_factors(moved, "test_top1", sensitivity=False)
        assert _decisions(*result) == _decisions(*reference)
        for got, want in zip(_numbers(*result), _numbers(*reference)):
            assert [g is None for g in got] == [w is None for w in want]  # a null (no ratio) stays null
            assert [g for g in got if g is not None] == pytest.approx([w for w in want if w is not None], rel=1e-6)


def test_tolerance_rules():
    # the correctly rounded sum does not depend on order, where a float loop does
    values = [0.1, 1e16, 0.3, -1e16, 0.7]
    assert exact_sum(values) == exact_sum(values[::-1]) == exact_sum(sorted(values))
    assert sum(values) != sum(values[::-1])
    assert float(snap(3e-17, 0.8)) == 0.0 and float(snap(1e-6, 0.8)) == 1e-6
    assert sign(0.82 - (0.8 + 0.02), 0.82) == 0 and sign(0.01, 0.82) == 1 and sign(-0.01, 0.82) == -1
    z = np.array([0.0, 1e-15, -1e-15, 0.5, -0.5])
    assert at_least(z, 0.0).tolist() == [True, True, True, True, False]
