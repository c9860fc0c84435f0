"""The "beyond these settings" test pooled over several blocks (issue 40, item 3): valid with several
small blocks and with a study's base shared by every block (:func:`supcon_ray.stats.paired.compare_pooled`).

Swapping settings after centring each loss on its own mean made 0.11 to 0.14 false claims at 3 blocks x
3 settings x 3 seeds (nominal 0.05); the sign-flip test over the within-block contrasts removes the
losses' mean difference exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from supcon_ray.stats import SettingTable
from supcon_ray.stats.paired import compare, compare_pooled
from supcon_ray.stats.simulate import StudyTruth, simulate_study, simulate_tables

from views import analyze_factors


@pytest.mark.parametrize("truth", [{}, {"seed_std": (0.03, 0.01)}, {"effects": "t3"}])
def test_several_small_blocks_keep_the_level(truth):
    rng = np.random.default_rng(7)
    sims, claims, old = 300, 0, 0
    for _ in range(sims):
        blocks = [simulate_tables(rng, 3, 3, ratio=1.0, **{"setting_std": 0.03, "seed_std": 0.01, **truth})[0]
                  for _ in range(3)]
        claims += compare_pooled(blocks, interval=False).p_value < 0.05
        old += compare(blocks, interval=False).p_value < 0.05
    assert claims / sims <= 0.07
    assert old / sims >= 0.09  # what the swap test pooled over the blocks did on the same studies


def test_the_smallest_p_value_is_as_likely_as_it_claims():
    # exact under the normal null: the observed pattern is equally likely to be any of the 2^6 patterns
    rng = np.random.default_rng(3)
    sims = 600
    smallest = sum(compare_pooled([simulate_tables(rng, 3, 3, setting_std=0.03)[0] for _ in range(3)],
                                  interval=False).p_value <= 2 / 64 for _ in range(sims))
    assert smallest / sims <= 2 / 64 + 3 * np.sqrt(2 / 64 / sims)


def _shared_base_blocks(rng: np.random.Generator):
    """Three factors of one study: the base's runs the same cell in each, both losses with the same truth."""
    rows = simulate_study(rng, StudyTruth("null", drops=(0.0, 0.04), seed_std=0.01))
    blocks, keys = [], []
    for _, g in rows.groupby("factor", sort=True):
        tables = {loss: SettingTable.from_values(h["setting"], h["test_top1"]) for loss, h in g.groupby("loss")}
        blocks.append((tables["ce"], tables["supcon"]))
        keys.append(tuple([frozenset(g[(g.loss == loss) & (g.setting == s)]["trial_id"]) for s in tables[loss].settings]
                          for loss in ("ce", "supcon")))
    return rows, blocks, keys


def test_a_shared_base_is_one_cell_in_every_block():
    rng = np.random.default_rng(11)
    sims, claims = 300, 0
    for _ in range(sims):
        _, blocks, keys = _shared_base_blocks(rng)
        claims += compare_pooled(blocks, interval=False, keys=keys).p_value < 0.05
    assert claims / sims <= 0.07
    # 7 distinct cells, 6 sign-flip directions: each block's two contrasts, those touching the base orthogonalised
    assert compare_pooled(blocks, keys=keys).min_p == pytest.approx(2 / 64)


def test_the_report_pools_beyond_with_the_shared_base():
    rows, blocks, keys = _shared_base_blocks(np.random.default_rng(2))
    _, overall = analyze_factors(rows, "test_top1", sensitivity=False)
    assert overall["p_value"] == pytest.approx(compare_pooled(blocks, keys=keys).p_value)
    assert overall["ci95"][0] == pytest.approx(compare_pooled(blocks, keys=keys).ci95[0])


def test_power_with_several_blocks():
    rng = np.random.default_rng(5)
    sims = 100
    hits = sum(compare_pooled([simulate_tables(rng, 6, 3, ratio=3.0, setting_std=0.03)[0] for _ in range(3)],
                              interval=False).p_value < 0.05 for _ in range(sims))
    assert hits / sims >= 0.6


def test_the_estimate_lies_in_its_interval_and_the_test_agrees_with_it():
    rng = np.random.default_rng(9)
    for _ in range(40):
        blocks = [simulate_tables(rng, 4, 3, ratio=2.0, setting_std=0.02, seed_std=(0.02, 0.01))[0] for _ in range(3)]
        r = compare_pooled(blocks)
        low, high = r.ci95
        assert low <= r.ratio <= high, (r.ratio, r.ci95)
        assert (r.p_value < 0.05) != (low <= 1.0 <= high), (r.p_value, r.ci95)


def test_a_block_too_small_to_compare_does_not_shift_the_other_blocks_keys():
    # a one-setting block is left out; the keys of the blocks after it must stay with their own blocks
    _, blocks, keys = _shared_base_blocks(np.random.default_rng(4))
    single = (blocks[0][0].subset([blocks[0][0].settings[0]]), blocks[0][1].subset([blocks[0][1].settings[0]]))
    with_single = compare_pooled([single, *blocks], keys=[(["lone-ce"], ["lone-sc"]), *keys])
    assert with_single == compare_pooled(blocks, keys=keys)
