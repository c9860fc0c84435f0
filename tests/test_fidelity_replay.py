"""The successive-halving replay (``benchmarks.fidelity_replay``) on curves of known shape: its rungs, the
runs it keeps, what it costs, and when its pick leaves the full-length pick's noise."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.fidelity_replay import Search, rank_agreement, replay, judge, time_share
from supcon_ray.study.fidelity import rung_epochs as rungs


def _search(curves: dict[str, list[float]], seeds=(0, 1), noise=0.0) -> Search:
    rng = np.random.default_rng(0)
    c, final = {}, []
    for name, curve in curves.items():
        for s in seeds:
            values = np.array(curve) + noise * rng.standard_normal(len(curve))
            c[(name, s)] = values
            final.append({"config": name, "seed": s, "val_top1": float(values[-1])})
    return Search("s", "ce", len(next(iter(curves.values()))), c, pd.DataFrame(final))


def test_rungs_grow_by_the_factor_and_end_at_the_full_length():
    assert rungs(12, 3, 2) == [3, 6, 12] and rungs(12, 3, 3) == [3, 9, 12] and rungs(5, 1, 2) == [1, 2, 4, 5]
    assert rungs(5, 5, 2) == [5]


def test_monotone_curves_keep_the_best_at_the_cost_of_its_rungs():
    # eight configurations whose order never changes: halving keeps the best, at 4*3 + 2*3 + 1*6 epochs per seed
    curves = {f"c{i}": list(np.linspace(0.1, 0.1 + 0.1 * i, 12)) for i in range(8)}
    s = _search(curves)
    configs, seeds = sorted(curves), [0, 1]
    pick, cost = replay(s, configs, seeds, 3, 2)
    assert pick == "c7"
    assert cost == pytest.approx((8 * 3 + 4 * 3 + 2 * 6) / (8 * 12))  # rungs 3, 6, 12: 8 -> 4 -> 2 survivors
    assert judge(s, configs, seeds, pick) == (True, 0.0)


def test_a_late_bloomer_is_lost_by_an_early_rung_and_judged_so():
    # c_late is worst for most of the run and best at its end (as a small learning rate under a cosine schedule
    # is not): a rung at epoch 2 drops it; the replay's pick is then clearly worse than the full-length pick
    curves = {"c_late": [0.1, 0.1, 0.2, 0.5, 0.95], "c_a": [0.5, 0.6, 0.6, 0.6, 0.6], "c_b": [0.4, 0.5, 0.55, 0.55, 0.55],
              "c_c": [0.3, 0.3, 0.3, 0.3, 0.3]}
    s = _search(curves, noise=0.001)
    configs = sorted(curves)
    pick, _ = replay(s, configs, [0, 1], 2, 2)
    kept, regret = judge(s, configs, [0, 1], pick)
    assert pick == "c_a" and not kept and regret == pytest.approx(0.35, abs=0.01)
    assert replay(s, configs, [0, 1], 5, 2)[0] == "c_late"  # no early rung: the full-length pick
    rho = rank_agreement(s)
    assert rho[-1] == pytest.approx(1.0) and rho[1] < 0  # epoch 2 ranks them against the final order


def test_budgeted_rungs_are_runs_of_their_own_scored_and_paid_as_such():
    # the late bloomer of a full schedule is no late bloomer when its schedule ends at the rung: short runs
    # (their own decayed schedules) rank it first, so budgeted halving keeps it, paying each rung in full
    curves = {"c_late": [0.1, 0.1, 0.2, 0.5, 0.95], "c_a": [0.5, 0.6, 0.6, 0.6, 0.6], "c_b": [0.4, 0.5, 0.55, 0.55, 0.55],
              "c_c": [0.3, 0.3, 0.3, 0.3, 0.3]}
    s = _search(curves)
    short = {"c_late": 0.7, "c_a": 0.6, "c_b": 0.5, "c_c": 0.3}
    budgets = {(c, seed, e): short[c] for c in curves for seed in (0, 1) for e in (1, 2, 4)}
    configs = sorted(curves)
    pick, cost = replay(s, configs, [0, 1], 2, 2, budgets)
    assert pick == "c_late" and judge(s, configs, [0, 1], pick)[0]
    # rungs 2 and 4, each a fresh run; the search ends with one left (its full-length runs are the analysed ones)
    assert cost == pytest.approx((4 * 2 + 2 * 4) / (4 * 5))


def test_time_is_paid_in_measured_seconds_continued_runs_with_their_whole_fixed_cost():
    # four configurations in a fixed order, 1 s an epoch for c0 and c1, 3 s for c2 and c3 (a larger model), each
    # run 2 s outside its epochs (start and read-out); rungs 1, 2, 4 of 4 epochs: 4 -> 2 -> 1 survivors
    curves = {f"c{i}": [0.1 * (i + 1)] * 4 for i in range(4)}
    s = _search(curves, seeds=(0,))
    per = {"c0": 1.0, "c1": 1.0, "c2": 3.0, "c3": 3.0}
    timed = Search(s.name, s.loss, s.epochs, s.curves, s.final,
                   {(c, 0): (4 * per[c] + 2.0, np.full(4, per[c])) for c in curves})
    configs = sorted(curves)
    assert time_share(s, configs, [0], 1, 2) is None  # no seconds recorded: no time share
    # c0, c1 stop after epoch 1, c2 after epoch 2, c3 runs all 4; each pays its 2 s of fixed cost
    spent = (1 + 2) + (1 + 2) + (2 * 3 + 2) + (4 * 3 + 2)
    assert time_share(timed, configs, [0], 1, 2) == pytest.approx(spent / (6 + 6 + 14 + 14))
    # budgeted: every rung its own run, paid at the seconds that run took, fixed cost and all: 4 runs of 1 epoch,
    # then c2 and c3 for 2; the search ends with one left (its full-length runs are the analysed ones)
    budgets = {(c, 0, e): 0.1 * (int(c[1]) + 1) for c in curves for e in (1, 2)}
    seconds = {(c, 0, e): per[c] * e + 2.0 for c in curves for e in (1, 2)}
    spent = (1 + 2) + (1 + 2) + (3 + 2) + (3 + 2) + 2 * (2 * 3 + 2)
    assert time_share(timed, configs, [0], 1, 2, budgets, seconds) == pytest.approx(spent / 40)
    assert time_share(timed, configs, [0], 1, 2, budgets) is None  # budgeted runs without their seconds
