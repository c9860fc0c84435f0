"""The stability statistics: against brute-force computations, and calibrated on simulated studies
with known truth (false-claim rate, interval coverage, power)."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from supcon_ray.stats import SettingTable, compare, components, expected_max_unbiased, holm
from views import analyze_factors
from supcon_ray.stats.divergence import divergence_summary
from supcon_ray.stats.simulate import simulate_factor
from supcon_ray.stats.tuning_curve import curves_with_band

from rates import assert_coverage, assert_rate_at_most


def _runs(groups: list[list[float]]) -> SettingTable:
    settings = pd.Series([f"s{i}" for i, g in enumerate(groups) for _ in g])
    return SettingTable.from_values(settings, pd.Series([v for g in groups for v in g]))


# -- variance components -------------------------------------------------------------------------
def test_components_match_anova_by_hand():
    groups = [[0.80, 0.82, 0.81], [0.70, 0.74], [0.90, 0.88, 0.86, 0.91]]
    c = components(_runs(groups))
    all_y = [v for g in groups for v in g]
    grand = sum(all_y) / len(all_y)
    ssw = sum((v - sum(g) / len(g)) ** 2 for g in groups for v in g)
    ssb = sum(len(g) * (sum(g) / len(g) - grand) ** 2 for g in groups)
    n, k = len(all_y), len(groups)
    msw, msb = ssw / (n - k), ssb / (k - 1)
    n0 = (n - sum(len(g) ** 2 for g in groups) / n) / (k - 1)
    assert c.seed_std == pytest.approx(math.sqrt(msw))
    assert c.setting_var_raw == pytest.approx((msb - msw) / n0)
    assert c.setting_std == pytest.approx(math.sqrt((msb - msw) / n0))
    assert c.setting_std_ci95[0] <= c.setting_std <= c.setting_std_ci95[1]


def test_seed_noise_alone_gives_zero_between_setting_std():
    rng = np.random.default_rng(0)
    groups = [list(0.8 + rng.normal(0, 0.05, 3)) for _ in range(4)]
    groups[0] = [0.8, 0.8, 0.8]
    means = [np.mean(g) for g in groups]
    c = components(_runs([[m] * 2 for m in means]))  # no within-setting noise: sigma_a is the std of the means
    assert c.setting_std == pytest.approx(np.std(means, ddof=1))
    flat = components(_runs([[0.7, 0.9], [0.9, 0.7], [0.8, 0.8]]))  # equal means: all spread is seed noise
    assert flat.setting_std == 0.0 and flat.setting_var_raw < 0


# -- the paired permutation test against a brute-force loop over raw runs -------------------------
def _brute_p(ce_groups, sup_groups, scale=1.0):
    """Swap whole settings between the losses, on runs centred per loss, with every statistic
    recomputed from the runs by hand."""
    def centred(groups, mult):
        flat = [v * mult for g in groups for v in g]
        mu = sum(flat) / len(flat)
        return [[v * mult - mu for v in g] for g in groups]

    def v(groups):
        all_y = [x for g in groups for x in g]
        n, k = len(all_y), len(groups)
        grand = sum(all_y) / n
        ssb = sum(len(g) * (sum(g) / len(g) - grand) ** 2 for g in groups)
        ssw = sum((x - sum(g) / len(g)) ** 2 for g in groups for x in g)
        n0 = (n - sum(len(g) ** 2 for g in groups) / n) / (k - 1)
        return (ssb / (k - 1) - ssw / (n - k)) / n0

    c, s = centred(ce_groups, 1 / scale), centred(sup_groups, 1.0)
    stats = []
    for z in itertools.product([False, True], repeat=len(c)):
        a = [s[i] if zi else c[i] for i, zi in enumerate(z)]
        b = [c[i] if zi else s[i] for i, zi in enumerate(z)]
        stats.append(abs(v(a) - v(b)))  # one factor: the swap-invariant scale S_f divides every swap alike
    return sum(t >= stats[0] * (1 - 1e-9) for t in stats) / len(stats)


def _brute_pooled_p(factors):
    """Two or more factors: T = |sum_f (v_CE - v_SupCon) / S_f| over joint swaps, S_f by hand."""
    def mean(x):
        return sum(x) / len(x)

    def centred(groups):
        mu = mean([v for g in groups for v in g])
        return [[v - mu for v in g] for g in groups]

    def v(groups):
        all_y = [x for g in groups for x in g]
        n, k = len(all_y), len(groups)
        grand = mean(all_y)
        ssb = sum(len(g) * (mean(g) - grand) ** 2 for g in groups)
        ssw = sum((x - mean(g)) ** 2 for g in groups for x in g)
        n0 = (n - sum(len(g) ** 2 for g in groups) / n) / (k - 1)
        return (ssb / (k - 1) - ssw / (n - k)) / n0

    def scale(c, s):
        k = len(c)
        n0 = mean([(len(a) + len(b)) / 2 for a, b in zip(c, s)])
        dfw = sum(len(g) for g in c + s) - 2 * k
        total = 0.0
        for groups in (c, s):
            ms_between = sum(len(g) * mean(g) ** 2 for g in groups) / (k - 1)  # runs already centred per loss
            ms_within = sum((x - mean(g)) ** 2 for g in groups for x in g) / dfw
            total += (ms_between + ms_within) / (2 * n0)
        return total

    blocks = [(centred(c), centred(s)) for c, s in factors]
    sizes = [len(c) for c, _ in blocks]
    stats = []
    for z in itertools.product([False, True], repeat=sum(sizes)):
        t, start = 0.0, 0
        for (c, s), k in zip(blocks, sizes):
            zz = z[start:start + k]
            a = [s[i] if zi else c[i] for i, zi in enumerate(zz)]
            b = [c[i] if zi else s[i] for i, zi in enumerate(zz)]
            t += (v(a) - v(b)) / scale(c, s)
            start += k
        stats.append(abs(t))
    return sum(t >= stats[0] * (1 - 1e-9) for t in stats) / len(stats)


def test_pooled_permutation_p_value_matches_brute_force_with_equal_factor_weights():
    rng = np.random.default_rng(8)
    f1 = ([list(0.8 + 0.05 * rng.standard_normal() + rng.normal(0, 0.01, 3)) for _ in range(3)],
          [list(0.85 + 0.02 * rng.standard_normal() + rng.normal(0, 0.01, 3)) for _ in range(3)])
    f2 = ([list(0.5 + 3 * rng.standard_normal() + rng.normal(0, 1.0, 2)) for _ in range(4)],  # a factor 60x larger
          [list(0.6 + 2 * rng.standard_normal() + rng.normal(0, 1.0, 2)) for _ in range(4)])
    res = compare([(_runs(c), _runs(s)) for c, s in (f1, f2)])
    assert res.p_value == pytest.approx(_brute_pooled_p([f1, f2]))
    # every factor weighs the same whatever its scale: rescaling one factor changes nothing
    f2_small = tuple([[x / 1000 for x in g] for g in side] for side in f2)
    again = compare([(_runs(c), _runs(s)) for c, s in (f1, f2_small)])
    assert again.p_value == pytest.approx(res.p_value) and again.ratio == pytest.approx(res.ratio)


def test_permutation_statistic_does_not_saturate_so_six_settings_can_bound_the_interval():
    # 6 settings, seed noise far below the spreads: the interval's ends come from the data, not from ties
    rng = np.random.default_rng(12)
    base = rng.standard_normal(6)
    ce = [list(0.7 + 0.06 * base[i] + rng.normal(0, 0.001, 4)) for i in range(6)]
    sup = [list(0.8 + 0.03 * (0.3 * base[i] + rng.standard_normal()) + rng.normal(0, 0.001, 4)) for i in range(6)]
    res = compare([(_runs(ce), _runs(sup))])
    assert res.ci95[0] > 0 and math.isfinite(res.ci95[1])


def test_permutation_p_value_matches_brute_force():
    rng = np.random.default_rng(3)
    ce = [list(0.8 + 0.06 * rng.standard_normal() + rng.normal(0, 0.01, n)) for n in (3, 2, 3, 3, 2, 3)]
    sup = [list(0.85 + 0.02 * rng.standard_normal() + rng.normal(0, 0.01, n)) for n in (2, 3, 3, 2, 3, 3)]
    res = compare([(_runs(ce), _runs(sup))])
    assert res.exact and res.min_p == pytest.approx(2 / 64)
    assert res.p_value == pytest.approx(_brute_p(ce, sup))
    # the interval inverts the test: just inside it the test does not reject, just outside it does
    low, high = res.ci95
    assert 0 < low < res.ratio < high
    assert _brute_p(ce, sup, low * 1.03) > 0.05 and _brute_p(ce, sup, low / 1.03) <= 0.05
    if math.isfinite(high):
        assert _brute_p(ce, sup, high / 1.03) > 0.05 and _brute_p(ce, sup, high * 1.03) <= 0.05


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    assert holm([0.5]) == [0.5]


# -- calibration on simulated studies with known truth -------------------------------------------
def _claims(rng, n, k, s, ratio, **kw):
    out = []
    for _ in range(n):
        f = analyze_factors(simulate_factor(rng, k, s, ratio=ratio, **kw), "test_top1", sensitivity=False)[0][0]
        out.append((f["claim"], f["ci95"][0] <= ratio <= f["ci95"][1]))
    return out


# Coverage each design is held to: nominal, except where the method is known to fall short (the case is
# kept as a guard against getting worse). With 2 seeds the swap test's inverted interval covers ratio 1
# in 0.905 of these 400 draws while its test keeps its level: the test and the interval disagree there,
# as issue 40 reports (item 6); its fix should move this back to 0.95.
@pytest.mark.parametrize("k,s,coverage_of_method", [(6, 3, 0.95), (8, 2, 0.905)])
def test_no_effect_false_claims_and_coverage_are_nominal(k, s, coverage_of_method):
    n = 400
    res = _claims(np.random.default_rng(10 + k), n, k, s, 1.0)
    false_claims = np.mean([c in ("supcon_less_sensitive", "ce_less_sensitive") for c, _ in res])
    coverage = np.mean([cov for _, cov in res])
    assert_rate_at_most(false_claims, n)
    assert_coverage(coverage, n, nominal=coverage_of_method)


def test_strong_effect_is_claimed_in_the_right_direction():
    res = _claims(np.random.default_rng(5), 10, 12, 3, 5.0)
    assert sum(c == "supcon_less_sensitive" for c, _ in res) >= 9
    res = _claims(np.random.default_rng(6), 10, 12, 3, 1 / 5.0)
    assert sum(c == "ce_less_sensitive" for c, _ in res) >= 9


def test_three_settings_cannot_tell():
    df = simulate_factor(np.random.default_rng(0), 3, 5, ratio=10.0)
    factors, overall = analyze_factors(df, "test_top1")
    assert factors[0]["claim"] == "insufficient" and overall["claim"] == "insufficient"
    assert "cannot tell" in factors[0]["sentence"] and "smallest possible p-value is 0.25" in factors[0]["sentence"]


def test_one_diverged_run_does_not_drive_the_ratio():
    rng = np.random.default_rng(1)
    df = simulate_factor(rng, 6, 3, ratio=0.3, seed_std=0.002)  # CE is the *less* sensitive loss
    clean = analyze_factors(df, "test_top1")[0][0]
    i = df.index[(df.loss == "ce") & (df.setting == "factor=2")][0]
    df.loc[i, ["status", "test_top1"]] = ["diverged", 0.1]
    f = analyze_factors(df, "test_top1")[0][0]
    assert f["ratio"] < 1 and f["ratio"] == pytest.approx(clean["ratio"], rel=0.3)
    assert f["losses"]["ce"]["diverged"] == 1 and f["losses"]["ce"]["divergence_rate"] == pytest.approx(1 / 18)
    assert f["conservative"]["ratio"] > 1 > f["ratio"]  # scored at chance, the diverged run shows in its own view


def test_unpaired_settings_are_never_compared():
    rng = np.random.default_rng(2)
    df = simulate_factor(rng, 6, 3)
    extra = df[(df.loss == "supcon") & (df.setting == "factor=0")].assign(setting="factor=contrastive_only", test_top1=0.2)
    f = analyze_factors(pd.concat([df, extra]), "test_top1")[0][0]
    base = analyze_factors(df, "test_top1")[0][0]
    assert f["unpaired_settings"] == ["factor=contrastive_only"] and f["paired_settings"] == 6
    assert f["ratio"] == pytest.approx(base["ratio"]) and f["p_value"] == pytest.approx(base["p_value"])
    one_ce = pd.concat([df[df.loss == "supcon"], df[(df.loss == "ce") & (df.setting == "factor=0")]])
    g = analyze_factors(one_ce, "test_top1")[0][0]
    assert g["claim"] == "insufficient" and g["paired_settings"] == 1


def test_pooled_test_decides_where_small_factors_cannot():
    rng = np.random.default_rng(4)
    df = pd.concat([simulate_factor(rng, 3, 3, ratio=6.0, factor=f"f{i}") for i in range(4)], ignore_index=True)
    factors, overall = analyze_factors(df, "test_top1")
    assert all(f["claim"] == "insufficient" for f in factors)
    assert overall["n_settings"] == 12 and overall["claim"] == "supcon_less_sensitive"


def test_divergence_fisher_exact():
    df = pd.DataFrame({"loss": ["ce"] * 10 + ["supcon"] * 10,
                       "status": ["diverged"] * 6 + ["completed"] * 4 + ["diverged"] * 0 + ["completed"] * 9 + ["failed"]})
    d = divergence_summary(df)
    assert d["per_loss"]["ce"] == {"completed": 4, "diverged": 6, "failed": 0, "divergence_rate": 0.6}
    assert d["per_loss"]["supcon"]["failed"] == 1
    from scipy.stats import fisher_exact
    assert d["fisher_p"] == pytest.approx(fisher_exact([[6, 4], [0, 9]]).pvalue)


# -- expected best of k configurations --------------------------------------------------------------
@pytest.mark.parametrize("values", [[0.3, 0.9], [0.2, 0.9, 0.4, 0.5], [0.1, 0.1, 0.6, 0.3, 0.8]])
def test_unbiased_expected_max_is_the_mean_over_subsets(values):
    for k in range(1, len(values) + 1):
        subsets = list(itertools.combinations(values, k))
        assert expected_max_unbiased(values, k) == pytest.approx(sum(max(s) for s in subsets) / len(subsets))


def test_expected_max_band_is_paired_and_contains_the_curve():
    rng = np.random.default_rng(0)
    v = rng.uniform(0.5, 0.9, 12)
    c = curves_with_band({"ce": v, "supcon": v + 0.01})
    assert len(c["ce"]["low"]) == len(c["ce"]["high"]) == 6  # no band past k = N / 2, where a resampled max sits low
    assert max(c["ce"]["high"]) <= v.max()
    for loss in ("ce", "supcon"):
        assert all(lo - 1e-12 <= m <= hi + 1e-12 for lo, m, hi in zip(c[loss]["low"], c[loss]["mean"], c[loss]["high"]))
    assert np.allclose(np.array(c["supcon"]["low"]) - np.array(c["ce"]["low"]), 0.01)  # same resamples for both losses
    # a bootstrap band, not the curve itself: at k = 1 (the mean of one configuration) its width is about
    # 2 x 1.96 standard errors of the mean of 12 scores
    half = 1.96 * v.std(ddof=1) / math.sqrt(len(v))
    width = c["ce"]["high"][0] - c["ce"]["low"][0]
    assert 1.5 * half < width < 2.5 * half, (width, half)
    with pytest.raises(ValueError):
        curves_with_band({"ce": v, "supcon": v[:5]})


def test_expected_max_section_uses_only_random_configurations_run_for_every_loss():
    from supcon_ray.stats import expected_max_section

    rng = np.random.default_rng(0)
    rows = [{"study": "s", "factor": "search", "setting": f"c{i}", "loss": loss, "seed": seed, "status": "completed",
             "design": "search:random", "val_top1": rng.uniform(0.5, 0.9)}
            for i in range(6) for loss in ("ce", "supcon") for seed in (0, 1)]
    rows.append({**rows[0], "setting": "c_ce_only", "loss": "ce"})  # not run for SupCon: left out
    rows.append({**rows[0], "setting": "one_factor", "design": "one_factor"})  # not a random draw: left out
    section = expected_max_section(pd.DataFrame(rows))
    assert section["available"] and section["n_configs"] == 6
    df = pd.DataFrame(rows[:24])
    ce_means = df[df.loss == "ce"].groupby("setting")["val_top1"].mean().to_numpy()
    assert section["curves"]["ce"]["mean"][1] == pytest.approx(expected_max_unbiased(ce_means, 2))
    one_factor = pd.DataFrame(rows).assign(design="one_factor")
    assert not expected_max_section(one_factor)["available"] and "not random draws" in expected_max_section(one_factor)["reason"]


@pytest.mark.parametrize("argv", [["--sims", "3"], ["--question", "neither"]])
def test_calibration_bad_input_exits_2(argv, capsys):
    from benchmarks.calibration import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "--" in capsys.readouterr().err


def test_importance_handles_keys_missing_in_some_trials():
    from supcon_ray.stats.importance import importance

    rng = np.random.default_rng(0)
    rows = [{"loss": "ce", "lr": lr, "image_size": 16.0 if i % 2 else np.nan, "dataset": "c" if i % 2 else None,
             "test_top1": 0.5 + 0.1 * np.log10(lr) + rng.normal(0, 0.01)}
            for i, lr in enumerate([0.01, 0.03, 0.1, 0.3, 1.0, 0.02, 0.05, 0.2])]
    df = pd.DataFrame(rows).astype({"dataset": "str"})  # pandas' string dtype keeps None as missing
    out = importance(df, "test_top1", ["lr", "image_size", "dataset"])
    assert set(out["ce"]) == {"lr", "image_size", "dataset"}
    assert out["ce"]["lr"]["mean"] > out["ce"]["image_size"]["mean"]


def test_logit_is_the_log_odds_clipped_at_eps():
    from supcon_ray.stats import logit

    assert logit(np.array([0.5, 0.9, 0.1])) == pytest.approx([0.0, math.log(9), -math.log(9)])
    assert logit(np.array([1.0, 0.0]), eps=1e-3) == pytest.approx([math.log(999), -math.log(999)])
    assert logit([1, 0]).dtype == float  # integers (all or nothing right) are proportions too


def test_simulated_patterns_default_to_equal_spreads():
    from benchmarks.calibration import study_patterns
    from supcon_ray.stats.simulate import pattern_tables, spread_ratio

    pattern = study_patterns()[0]
    _, truth = pattern_tables(np.random.default_rng(0), pattern, 3)
    assert spread_ratio(truth) == pytest.approx(1.0)


def test_divergence_odds_ratio_puts_the_baseline_first_whatever_the_names():
    """Two losses other than CE and SupCon: CE (the baseline) is the first row of Fisher's table whatever
    the alphabetical order, so the odds ratio reads "CE's odds of diverging over the other's"."""
    rows = ([{"loss": "ce", "status": s} for s in ["diverged"] * 3 + ["completed"] * 7]
            + [{"loss": "barlow", "status": s} for s in ["diverged"] * 1 + ["completed"] * 9 + ["failed"]])
    out = divergence_summary(pd.DataFrame(rows))
    assert out["odds_ratio"] == pytest.approx((3 / 7) / (1 / 9))
    assert out["per_loss"]["barlow"] == {"completed": 9, "diverged": 1, "failed": 1, "divergence_rate": 0.1}
    none = divergence_summary(pd.DataFrame([{"loss": "ce", "status": "failed"}, {"loss": "supcon", "status": "failed"}]))
    assert math.isnan(none["per_loss"]["ce"]["divergence_rate"]) and math.isnan(none["fisher_p"])  # nothing finished


def test_components_count_the_runs():
    t = SettingTable.from_values(pd.Series(["a", "a", "b", "b", "b"]), pd.Series([0.8, 0.82, 0.7, 0.71, 0.72]))
    c = components(t)
    assert (c.n_settings, c.n_runs) == (2, 5)
