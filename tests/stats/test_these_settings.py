""""For these settings": the estimator by hand, the claim rules, the JSON contract, and calibration on
simulated factors with known truth (the truth is the spread of the setting means actually drawn)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from supcon_ray.stats import SettingTable, compare_these, components, holm
from views import analyze_factors
from supcon_ray.stats.simulate import bimodal_tables, pattern_tables, simulate_factor, simulate_tables, spread_ratio

from rates import assert_coverage, assert_rate_at_most


def _table(groups: list[list[float]]) -> SettingTable:
    settings = pd.Series([f"s{i}" for i, g in enumerate(groups) for _ in g])
    return SettingTable.from_values(settings, pd.Series([v for g in groups for v in g]))


def test_spread_estimate_matches_the_definition_by_hand():
    ce = [[0.80, 0.82, 0.81], [0.70, 0.74, 0.72], [0.90, 0.88, 0.86]]
    sup = [[0.85, 0.86, 0.84], [0.83, 0.85, 0.84], [0.86, 0.87, 0.88]]
    r = compare_these([(_table(ce), _table(sup))])

    def by_hand(groups):
        means = [sum(g) / len(g) for g in groups]
        grand = sum(means) / len(means)
        var_means = sum((m - grand) ** 2 for m in means) / (len(means) - 1)
        s2 = sum((x - sum(g) / len(g)) ** 2 for g in groups for x in g) / sum(len(g) - 1 for g in groups)
        noise = s2 * sum(1 / len(g) for g in groups) / len(groups)
        return math.sqrt(max(var_means - noise, 0))

    assert r.spreads["ce"] == pytest.approx(by_hand(ce)) and r.spreads["supcon"] == pytest.approx(by_hand(sup))
    assert r.ratio == pytest.approx(by_hand(ce) / by_hand(sup))
    assert r.direction == 1 and r.ci95[0] < r.ratio < r.ci95[1]
    for loss in ("ce", "supcon"):
        low, high = r.spread_ci95[loss]
        assert low <= r.spreads[loss] <= high <= math.sqrt(3 / 8)  # no wider than an accuracy std over 3 settings can be


def test_noise_free_collapse_is_decided_and_equal_spreads_are_not():
    chance = [[0.1, 0.1, 0.1]]
    ce = [[0.8, 0.8, 0.8], [0.82, 0.82, 0.82]] + chance  # CE collapses at chance with zero seed variance
    sup = [[0.78, 0.79, 0.80], [0.80, 0.81, 0.82], [0.70, 0.71, 0.72]]
    r = compare_these([(_table(ce), _table(sup))])
    assert r.p_value < 0.01 and r.direction == 1 and r.ci95[0] > 2
    same = compare_these([(_table(ce), _table(ce[::-1]))])  # the same setting means in another order
    assert same.p_value == 1.0 and same.ratio == pytest.approx(1.0) and same.direction == 0
    assert same.ci95[0] <= 1.0 <= same.ci95[1] and all(math.isfinite(e) for e in same.ci95)
    for low, high in same.spread_ci95.values():
        assert low <= same.spreads["ce"] * (1 + 1e-9) and high >= same.spreads["ce"] * (1 - 1e-9)


def test_inputs_it_cannot_use_are_refused():
    with pytest.raises(ValueError, match="2 seeds"):
        compare_these([(_table([[0.8], [0.7, 0.71]]), _table([[0.8, 0.81], [0.7, 0.71]]))])
    with pytest.raises(ValueError, match="2 paired settings"):
        compare_these([(_table([[0.8, 0.81]]), _table([[0.8, 0.81]]))])


def _analyse(df):
    return analyze_factors(df, "test_top1", sensitivity=False)


def test_report_entries_follow_the_json_contract_with_no_nan():
    rng = np.random.default_rng(0)
    flat = simulate_factor(rng, 3, 3, setting_std=0.0, seed_std=0.0, factor="flat")  # both spreads exactly 0
    one_seed = simulate_factor(rng, 3, 3, factor="thin")
    one_seed = one_seed[~((one_seed.loss == "ce") & (one_seed.setting == "thin=0") & (one_seed.seed > 0))]
    strong = simulate_factor(rng, 4, 3, ratio=6.0, factor="strong", exact_spread=True)
    factors, overall = _analyse(pd.concat([flat, one_seed, strong], ignore_index=True))
    by = {f["factor"]: f["these_settings"] for f in factors}
    keys = {"ratio", "ci95", "p_value", "p_adjusted", "claim", "sentence", "losses"}
    assert all(keys <= set(t) for t in [*by.values(), overall["these_settings"]])
    assert by["flat"]["ratio"] is None and by["flat"]["claim"] == "no_difference"
    assert by["thin"]["claim"] == "insufficient" and "ce at 0" in by["thin"]["sentence"]
    assert by["strong"]["claim"] == "supcon_less_sensitive" and by["strong"]["ci95"][0] > 1
    assert set(by["strong"]["losses"]) == {"ce", "supcon"}
    json.dumps([by, overall["these_settings"]], allow_nan=False)  # NaN never appears in these keys
    # one Holm family per question: the factor tests and the pooled test
    ps = [by["flat"]["p_value"], by["strong"]["p_value"], overall["these_settings"]["p_value"]]
    adjusted = holm(ps)
    assert by["strong"]["p_adjusted"] == pytest.approx(adjusted[1])
    assert overall["these_settings"]["p_adjusted"] == pytest.approx(adjusted[2])


def test_sentences_name_the_settings_and_the_question():
    df = simulate_factor(np.random.default_rng(1), 3, 3, ratio=5.0, factor="optimizer", exact_spread=True)
    df["setting"] = df["setting"].map({"optimizer=0": "optimizer=sgd", "optimizer=1": "optimizer=lars",
                                       "optimizer=2": "optimizer=rmsprop"})
    f = _analyse(df)[0][0]
    assert "for these settings: across lars, rmsprop and sgd" in f["these_settings"]["sentence"]
    assert "not about other settings" in f["these_settings"]["sentence"]
    assert "beyond these settings: cannot tell" in f["sentence"] and "supcon_ray.power" in f["sentence"]



def test_sentences_list_numeric_settings_by_size_not_as_text():
    df = simulate_factor(np.random.default_rng(2), 4, 3, ratio=5.0, factor="lr", exact_spread=True)
    df["setting"] = df["setting"].map({"lr=0": "lr=x12.82", "lr=1": "lr=x1", "lr=2": "lr=x2.34", "lr=3": "lr=x0.1"})
    f = _analyse(df)[0][0]
    assert "across x0.1, x1, x2.34 and x12.82" in f["these_settings"]["sentence"]

def test_spreads_in_the_table_use_the_paired_settings_only():
    df = simulate_factor(np.random.default_rng(2), 6, 3)
    extra = df[(df.loss == "supcon") & (df.setting == "factor=0")].assign(setting="factor=only_supcon", test_top1=0.1)
    f = _analyse(pd.concat([df, extra], ignore_index=True))[0][0]
    paired = _analyse(df)[0][0]
    assert f["losses"]["supcon"]["setting_std"] == pytest.approx(paired["losses"]["supcon"]["setting_std"])
    assert f["losses"]["supcon"]["spread_settings"] == 6


# -- calibration at a size CI can afford ----------------------------------------------------------
def _rates(rng, k, s, ratio, sims, **kw):
    claims, covered = [], []
    for _ in range(sims):
        block, truth = simulate_tables(rng, k, s, ratio, **kw)
        r = compare_these([block], spread_intervals=False)
        claims.append(r.p_value < 0.05)
        covered.append(r.ci95[0] <= spread_ratio(truth) <= r.ci95[1])
    return float(np.mean(claims)), float(np.mean(covered))


@pytest.mark.parametrize("k,truth", [(3, {}), (4, {"seed_std": (0.03, 0.01)}), (3, {"collapsed": 1}),
                                     (4, {"effects": "t3", "pair_corr": 0.9})])
def test_null_false_claims_and_coverage_are_nominal(k, truth):
    sims = 400
    kw = {"setting_std": 0.03, "seed_std": 0.01, "exact_spread": "collapsed" not in truth, **truth}
    false_claims, coverage = _rates(np.random.default_rng(k), k, 3, 1.0, sims, **kw)
    assert_rate_at_most(false_claims, sims)
    assert_coverage(coverage, sims)


def _uneven_truths():
    """Seed noise that differs across settings, as it does in real sweeps, and heavy-tailed seed noise."""
    from benchmarks.calibration import study_patterns

    patterns = {p.name: p for p in study_patterns()}
    if "fig4a-cifar10-subset lr" not in patterns:
        pytest.skip("docs/results/fig4a-cifar10-subset is not in this checkout")
    cifar_lr = patterns["fig4a-cifar10-subset lr"]  # CE's seed std 0.064 at x12.8, 0.053 at x30; <= 0.007 elsewhere
    return {
        "CIFAR-10 subset lr noise pattern": lambda rng, ratio: pattern_tables(rng, cifar_lr, 3, ratio),
        "bimodal collapse": lambda rng, ratio: bimodal_tables(rng, 3, 3, ratio),
        "heavy-tailed seed noise": lambda rng, ratio: simulate_tables(rng, 4, 3, ratio, setting_std=0.03, seed_std=0.01,
                                                                      exact_spread=True, noise="t3"),
    }


# The rates each truth is held to: nominal (false claims 0.05, coverage 0.95), except the known shortfalls
# docs/method.md states, kept as guards against getting worse: under the bimodal collapse on 3 settings false
# claims up to 0.065 and coverage down to 0.935 (these 400 draws: 0.0825 and 0.9175), and coverage 0.92 at
# ratio 2 on the 9-setting learning-rate patterns (issue 40, item 8).
@pytest.mark.parametrize("name,false_claims,coverage1,coverage2", [
    ("CIFAR-10 subset lr noise pattern", 0.05, 0.95, 0.92),
    ("bimodal collapse", 0.065, 0.935, 0.935),
    ("heavy-tailed seed noise", 0.05, 0.95, 0.95)])
def test_uneven_seed_noise_keeps_false_claims_and_coverage_nominal(name, false_claims, coverage1, coverage2):
    # a pooled seed variance, simulated evenly at every setting, made 35% of claims false on the CIFAR pattern
    draw = _uneven_truths()[name]
    rng, sims = np.random.default_rng(21), 400
    claims = covered1 = covered2 = 0
    for _ in range(sims):
        block, truth = draw(rng, 1.0)
        r = compare_these([block], spread_intervals=False)
        claims += r.p_value < 0.05
        covered1 += r.ci95[0] <= spread_ratio(truth) <= r.ci95[1]
        block, truth = draw(rng, 2.0)
        r = compare_these([block], spread_intervals=False)
        covered2 += r.ci95[0] <= spread_ratio(truth) <= r.ci95[1]
    assert_rate_at_most(claims / sims, sims, nominal=false_claims)
    assert_coverage(covered1 / sims, sims, nominal=coverage1)
    assert_coverage(covered2 / sims, sims, nominal=coverage2)


def test_a_twofold_difference_is_found_on_the_cifar_lr_noise_pattern():
    draw = _uneven_truths()["CIFAR-10 subset lr noise pattern"]
    rng, sims = np.random.default_rng(22), 60
    found = sum(bool((r := compare_these([draw(rng, 2.0)[0]], interval=False)).p_value < 0.05 and r.direction > 0)
                for _ in range(sims))
    assert found / sims >= 0.80 - 3 * math.sqrt(0.8 * 0.2 / sims), found


def test_each_setting_interval_uses_its_own_seeds():
    table = _table([[0.480, 0.488, 0.491], [0.10, 0.30, 0.25]])  # a tight setting and a collapsing one
    comp = components(table)
    from supcon_ray.stats.variance import setting_means

    means = setting_means(table)
    for name, seeds in (("s0", [0.480, 0.488, 0.491]), ("s1", [0.10, 0.30, 0.25])):
        half = 4.302652729911275 * np.std(seeds, ddof=1) / math.sqrt(3)  # t(0.975, 2 df)
        assert means[name]["ci95"] == pytest.approx([np.mean(seeds) - half, np.mean(seeds) + half])
    assert means["s0"]["ci95"][1] - means["s0"]["ci95"][0] < 0.04  # a pooled std (0.06 here) gave +-0.15
    assert comp.seed_std > 0.05


def test_a_fourfold_difference_is_found_nearly_always():
    # 3 settings x 3 seeds, seed noise half of SupCon's spread
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(40):
        block, _ = simulate_tables(rng, 3, 3, 4.0, setting_std=0.02, seed_std=0.01, exact_spread=True)
        r = compare_these([block], interval=False)
        found += r.p_value < 0.05 and r.direction > 0
    assert found >= 38


def test_random_effects_interval_covers_and_stays_within_what_an_accuracy_allows():
    rng = np.random.default_rng(3)
    sims, covered = 300, 0
    for _ in range(sims):
        block, _ = simulate_tables(rng, 6, 3, 1.0, setting_std=0.03, seed_std=0.02)
        low, high = components(block[1], bound=0.5).setting_std_ci95
        covered += low <= 0.03 <= high
        assert high <= 0.5
    se = math.sqrt(0.05 * 0.95 / sims)
    assert covered / sims >= 0.95 - 3 * se
    wide = components(_table([[0.1, 0.9, 0.5], [0.95, 0.05, 0.5], [0.5, 0.5, 0.99]]), bound=0.5)
    assert wide.setting_std_ci95[1] <= 0.5


def test_each_loss_spread_interval_covers_the_spread_of_the_settings_drawn():
    rng = np.random.default_rng(5)
    sims, covered = 150, {"ce": 0, "supcon": 0}
    for _ in range(sims):
        block, truth = simulate_tables(rng, 3, 3, 2.0, setting_std=0.01, seed_std=0.01, exact_spread=True)
        r = compare_these([block])
        for loss in covered:
            low, high = r.spread_ci95[loss]
            covered[loss] += low - 1e-12 <= float(np.std(truth[loss], ddof=1)) <= high + 1e-12
    se = math.sqrt(0.05 * 0.95 / sims)
    assert all(c / sims >= 0.95 - 3 * se for c in covered.values()), covered



def test_intervals_narrower_than_a_grid_step_still_cover_precise_spreads():
    # spreads far above seed noise (as on the CIFAR subset): the intervals are a few per cent wide, narrower
    # than the search grid's steps, and must still hold the estimate and cover the truth
    rng = np.random.default_rng(11)
    sims, covered = 100, {"ratio": 0, "ce": 0, "supcon": 0}
    for _ in range(sims):
        block, truth = simulate_tables(rng, 4, 3, 1.25, setting_std=0.04, seed_std=0.003, exact_spread=True)
        r = compare_these([block])
        assert r.ci95[0] <= r.ratio <= r.ci95[1]
        covered["ratio"] += r.ci95[0] <= spread_ratio(truth) <= r.ci95[1]
        for loss in ("ce", "supcon"):
            low, high = r.spread_ci95[loss]
            assert low <= r.spreads[loss] <= high
            covered[loss] += low - 1e-12 <= float(np.std(truth[loss], ddof=1)) <= high + 1e-12
    se = math.sqrt(0.05 * 0.95 / sims)
    assert all(c / sims >= 0.95 - 3 * se for c in covered.values()), covered

# -- a factor pooled over studies (datasets as blocks) ---------------------------------------------

def test_a_factor_run_in_two_studies_is_pooled_over_them_with_its_own_holm_family():
    rng = np.random.default_rng(7)
    parts = [simulate_factor(rng, 4, 3, ratio=6.0, factor="lr", study=study, exact_spread=True) for study in ("a", "b")]
    parts.append(simulate_factor(rng, 3, 3, ratio=1.0, factor="augment", study="a"))  # one study only: not pooled
    trials = pd.concat(parts, ignore_index=True)
    factors, overall = _analyse(trials)
    [lr] = overall["by_factor"]
    assert lr["factor"] == "lr" and lr["studies"] == ["a", "b"] and lr["n_settings"] == 8
    # the pooled answers are the block tests of exactly these two studies' lr runs
    from supcon_ray.stats.paired import compare_pooled
    from supcon_ray.analysis.units import setting_tables
    blocks = []
    for study in ("a", "b"):
        t = setting_tables(trials[(trials.study == study) & (trials.factor == "lr")], "test_top1")
        blocks.append((t["ce"], t["supcon"]))
    assert lr["these_settings"]["p_value"] == pytest.approx(compare_these(blocks).p_value)
    assert lr["p_value"] == pytest.approx(compare_pooled(blocks).p_value)
    # one pooled factor: its Holm family has one member, so adjusted equals raw
    assert lr["these_settings"]["p_adjusted"] == pytest.approx(lr["these_settings"]["p_value"])
    assert lr["these_settings"]["claim"] == "supcon_less_sensitive"
    # 4 settings in each of two studies reach alpha (6 sign-flip directions, smallest p 1/32) where 4 in one
    # study cannot (16 swaps, smallest p 1/8)
    assert lr["claim"] != "insufficient" and all(f["claim"] == "insufficient" for f in factors)
    assert "across a and b (each a block)" in lr["sentence"]
    json.dumps(lr["these_settings"], allow_nan=False)


def test_pooling_over_studies_keeps_the_false_claim_rate_under_the_null():
    # equal true spreads in both studies, unequal seed noise per loss: the pooled "these settings"
    # claim must be false at most about alpha of the time (its truth is the spread actually drawn, so
    # exact_spread makes the truth ratio exactly 1)
    rng = np.random.default_rng(11)
    false = 0
    sims = 400
    for _ in range(sims):
        blocks = [simulate_tables(rng, 3, 3, ratio=1.0, seed_std=(0.02, 0.01), exact_spread=True)[0] for _ in range(2)]
        false += compare_these(blocks, interval=False).p_value < 0.05
    assert_rate_at_most(false / sims, sims)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 9])
def test_spread_bound_is_the_largest_std_values_in_0_1_allow(k):
    """The cap on a spread's interval: no K accuracies in [0, 1] have a larger std (ddof 1) than
    sqrt(K / (4 (K - 1))); the extreme points 0 and 1 reach it for an even K."""
    import itertools

    from supcon_ray.stats.these_settings import MAX_ACCURACY_STD, spread_bound

    brute = max(float(np.std(v, ddof=1)) for v in itertools.product([0.0, 1.0], repeat=k))
    bound = spread_bound([SettingTable.from_values(pd.Series([f"s{i}" for i in range(k)]), pd.Series([0.5] * k))])
    assert bound == pytest.approx(math.sqrt(k / (4 * (k - 1))))
    assert brute <= bound * (1 + 1e-12) and (k % 2 or brute == pytest.approx(bound))
    assert spread_bound([]) == MAX_ACCURACY_STD


def test_a_collapsed_truth_mirrors_ces_profile_at_the_stated_ratio():
    """Under "collapse at chance" SupCon's true means are CE's profile reversed and shrunk by the ratio, around
    CE's mean: the truth's spread ratio is exactly the ratio asked for."""
    from supcon_ray.stats.simulate import true_means

    for ratio in (1.0, 2.0, 0.5):
        truth = true_means(np.random.default_rng(3), 5, ratio=ratio, collapsed=1)
        assert truth["ce"][-1] == 0.1
        assert spread_ratio(truth) == pytest.approx(ratio)
        assert truth["supcon"].mean() == pytest.approx(truth["ce"].mean())
