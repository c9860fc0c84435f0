"""The drop from the base, one-method answers, agreement that can disagree, and the declared primary measure.

Checks are independent of the code under test: drops and their variances by brute force over the
runs, coverage and false claims on simulated factors with known truth of several kinds (uneven noise,
a bimodal collapse, heavy-tailed seed noise), and the folders' own manifests for the contracts."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from supcon_ray.stats import SettingTable, compare_these
from views import analyze_factors
from supcon_ray.stats.agreement import Outcome, outcome
from supcon_ray.stats.drop import Contrast, compare_drops, equivalence_p, fieller, loss_drop
from supcon_ray.stats.simulate import bimodal_tables, simulate_factor
from supcon_ray.stats.these_settings import spread_of_one

from rates import assert_coverage, assert_rate_at_most

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = [ROOT / "docs" / "results" / name for name in ("fig4a-digits", "fig4a-cifar10-subset")]


def _table(groups: list[list[float]], names: list[str] | None = None) -> SettingTable:
    names = names or [f"s{i}" for i in range(len(groups))]
    settings = pd.Series([names[i] for i, g in enumerate(groups) for _ in g])
    return SettingTable.from_values(settings, pd.Series([v for g in groups for v in g]))


def test_drop_and_its_variance_match_a_brute_force_computation():
    groups = [[0.80, 0.84, 0.82], [0.60, 0.20, 0.62, 0.58], [0.70, 0.71, 0.72], [0.75, 0.77]]
    d = loss_drop([(_table(groups), "s0")])
    means = [sum(g) / len(g) for g in groups]
    assert d.drop == pytest.approx(means[0] - sum(means[1:]) / 3)
    var = [sum((x - m) ** 2 for x in g) / (len(g) - 1) / len(g) for g, m in zip(groups, means)]
    v = var[0] + sum(var[1:]) / 9  # each setting's own noise: never pooled
    assert d.contrast.variance == pytest.approx(v)
    pieces = [var[0] ** 2 / 2] + [(w / 9) ** 2 / (len(g) - 1) for w, g in zip(var[1:], groups[1:])]
    assert d.contrast.df == pytest.approx(v * v / sum(pieces))
    assert d.worst == pytest.approx(means[0] - means[1]) and d.worst_setting == "s1"
    with pytest.raises(ValueError, match="2 seeds"):
        loss_drop([(_table([[0.8, 0.81], [0.7]]), "s0")])


def test_drop_intervals_cover_under_uneven_noise_collapse_and_heavy_tails():
    """Coverage of each loss's drop and of the difference over three truths; the difference's
    non-coverage at equal drops is its false-claim rate."""
    rng = np.random.default_rng(7)
    sims = 400
    for kind in ("uneven", "bimodal", "t3"):
        cover, claims = [], []
        for _ in range(sims):
            if kind == "bimodal":  # CE: seeds at chance half the time at its two extreme settings; equal true drops
                (ce_t, sc_t), truth = bimodal_tables(rng, 5, 3, 1.0)
            else:
                truth = {"ce": np.array([0.8, 0.75, 0.6, 0.79, 0.7]), "supcon": np.array([0.85, 0.8, 0.65, 0.84, 0.75])}
                sd = np.array([0.005, 0.005, 0.08, 0.005, 0.04])  # one or two settings carry most of the noise
                noise = (lambda size: rng.standard_t(3, size) / math.sqrt(3)) if kind == "t3" else rng.standard_normal
                y = {loss: truth[loss][:, None] + sd[:, None] * noise((5, 3)) for loss in truth}
                ce_t, sc_t = (_table([list(r) for r in y[loss]]) for loss in ("ce", "supcon"))
            base = ce_t.settings[2]
            ce, sc = loss_drop([(ce_t, base)]), loss_drop([(sc_t, base)])
            c = compare_drops(ce, sc)
            true = {loss: truth[loss][2] - np.delete(truth[loss], 2).mean() for loss in ("ce", "supcon")}
            assert true["ce"] == pytest.approx(true["supcon"])
            cover.append(ce.ci95[0] <= true["ce"] <= ce.ci95[1])
            claims.append(c.p_value < 0.05)
        assert_coverage(float(np.mean(cover)), sims)
        assert_rate_at_most(float(np.mean(claims)), sims, what=f"{kind}: false claims")


def test_difference_has_power_and_fieller_is_bounded_only_when_the_denominator_is_clear():
    ce = _table([[0.80, 0.81, 0.79], [0.50, 0.52, 0.51], [0.40, 0.41, 0.39]])
    sc = _table([[0.85, 0.86, 0.84], [0.80, 0.81, 0.79], [0.75, 0.76, 0.74]])
    a, b = loss_drop([(ce, "s0")]), loss_drop([(sc, "s0")])
    c = compare_drops(a, b)
    assert c.direction == 1 and c.p_value < 0.01 and c.difference_ci95[0] > 0.2
    assert c.ratio == pytest.approx(a.drop / b.drop) and c.ratio_ci95[0] < c.ratio < c.ratio_ci95[1] < math.inf
    flat = loss_drop([(_table([[0.80, 0.85, 0.75], [0.79, 0.74, 0.84], [0.81, 0.78, 0.80]]), "s0")])
    assert fieller(a.contrast, flat.contrast, 0.05) == (0.0, math.inf)  # SupCon's drop not clear of 0: no bound
    assert flat.drop > 0 and not math.isnan(compare_drops(a, flat).ratio)  # both positive: a ratio, but unbounded
    negative = loss_drop([(_table([[0.70, 0.71, 0.69], [0.80, 0.81, 0.79]]), "s0")])
    assert negative.drop < 0 and math.isnan(compare_drops(a, negative).ratio)


def _tost(a: Contrast, b: Contrast, m: float) -> float:
    return max((a + b.scaled(-1 / m)).one_sided_p(0.0, greater=True), (a + b.scaled(-m)).one_sided_p(0.0, greater=False))


def test_fieller_inverts_the_test_at_each_ratio_so_it_agrees_with_the_equivalence_test():
    """The ratio of drops' 90% interval lies inside [1/m, m] exactly when both one-sided tests reject (TOST
    below 0.05): each ratio is tested with its own contrast's Welch-Satterthwaite degrees of freedom. With
    the degrees of freedom of ratio 1 for all (before), the case below read "inside" at TOST p = 0.051."""
    a = Contrast(4.175970712850269, 0.023601541371069647, 3.5718741732568025e-05)
    b = Contrast(3.913144709633408, 0.09129731161870007, 0.0008505244777828551)
    low, high = fieller(a, b, 0.10)
    assert _tost(a, b, 1.25) > 0.05 and high > 1.25
    rng = np.random.default_rng(0)
    for _ in range(1000):
        va, vb = rng.uniform(0.1, 2, 2) ** 2
        a = Contrast(rng.uniform(2, 6), va, va**2 / rng.uniform(1.5, 20))
        b = Contrast(a.estimate / rng.uniform(0.9, 1.1), vb, vb**2 / rng.uniform(1.5, 20))
        low, high = fieller(a, b, 0.10)
        assert (1 / 1.25 <= low and high <= 1.25) == (_tost(a, b, 1.25) < 0.05)
        for end in (low, high):  # each end is where its own test stops rejecting
            if 0 < end < math.inf:
                d = a + b.scaled(-end)
                assert abs(d.p_value()) == pytest.approx(0.10, abs=1e-6)


def test_fieller_with_known_variances_is_the_closed_form():
    a, b = Contrast(3.0, 0.5, 0.0), Contrast(2.0, 0.2, 0.0)  # no Welch-Satterthwaite pieces: normal quantiles
    q2 = 1.959963984540054 ** 2
    A, B, C = 4 - q2 * 0.2, 6.0, 9 - q2 * 0.5
    root = math.sqrt(B * B - A * C)
    assert fieller(a, b, 0.05) == pytest.approx(((B - root) / A, (B + root) / A), rel=1e-9)
    assert fieller(a, Contrast(0.5, 0.2, 0.0), 0.05) == (0.0, math.inf)  # b not clearly away from 0


def test_one_method_test_is_one_sided_at_no_effect_and_its_interval_agrees():
    """At a spread of 0 (the edge of what a spread can be) only a larger spread is an alternative, so the test
    is one-sided (Self & Liang 1987): a spread whose bootstrap upper tail is 4% moves at 5%. Doubling the tail
    (the old test) said "no detectable effect" here. The interval inverts the same test, so it excludes 0."""
    r = spread_of_one([_table([[0.791, 0.805, 0.805], [0.759, 0.784, 0.788], [0.809, 0.806, 0.815],
                               [0.801, 0.817, 0.827]])])
    assert 0.025 < r.p_value < 0.05
    assert 0 < r.ci95[0] < r.spread < r.ci95[1]


def test_one_method_power_is_that_of_a_one_sided_test_at_its_level():
    """9 settings x 3 seeds with a true spread equal to the seed noise: the one-sided test finds it in 0.70
    (the calibration table), the doubled tail in 0.49; under no effect both uneven and even noise stay at level."""
    rng = np.random.default_rng(5)

    def table(k: int, sd: np.ndarray, spread: float) -> SettingTable:
        z = rng.standard_normal(k)
        means = 0.8 + (spread * (z - z.mean()) / z.std(ddof=1) if spread else 0.0)
        return _table([list(m + s * rng.standard_normal(3)) for m, s in zip(np.broadcast_to(means, k), sd)])

    even = np.full(9, 0.01)
    found = [spread_of_one([table(9, even, 0.01)], interval=False).p_value < 0.05 for _ in range(300)]
    assert float(np.mean(found)) >= 0.60
    uneven = 0.01 * np.resize([0.2, 0.2, 3.0, 0.2, 1.0], 9)
    for sd in (even, uneven):
        claims = [spread_of_one([table(9, sd, 0.0)], interval=False).p_value < 0.05 for _ in range(400)]
        assert_rate_at_most(float(np.mean(claims)), 400)


def test_one_method_spread_tests_no_effect_and_is_calibrated():
    rng = np.random.default_rng(3)
    claims = []
    for _ in range(400):  # no effect, uneven noise: a test of "moves" at its level
        sd = np.array([0.002, 0.002, 0.03, 0.002, 0.01])
        y = 0.8 + sd[:, None] * rng.standard_normal((5, 3))
        claims.append(spread_of_one([_table([list(r) for r in y])], interval=False).p_value < 0.05)
    assert_rate_at_most(float(np.mean(claims)), 400)
    moving = _table([[0.80, 0.81, 0.80], [0.70, 0.71, 0.70], [0.60, 0.61, 0.60]])
    r = spread_of_one([moving])
    assert r.p_value < 0.01 and r.ci95[0] > 0.05 and r.ci95[0] <= r.spread <= r.ci95[1]


def _one_method_study() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    rows = []
    for i, (t, m) in enumerate([(0.03, 0.70), (0.1, 0.85), (0.3, 0.83), (1.0, 0.60)]):
        for seed in range(3):
            rows.append({"study": "temp", "factor": "temperature", "loss": "supcon", "setting": f"temperature={t}",
                         "seed": seed, "status": "completed", "design": "one_factor", "chance_top1": 0.1,
                         "test_top1": m + 0.005 * rng.standard_normal(), "trial_id": f"t{i}{seed}"})
    return pd.DataFrame(rows)


def test_a_one_method_factor_gets_its_own_answer_and_json():
    df = _one_method_study()
    factors, overall = analyze_factors(df, "test_top1", sensitivity=False,
                                       bases={("temp", "temperature"): {"supcon": "temperature=0.1"}})
    (f,) = factors
    assert f["method"] == "supcon" and f["baseline"] is None
    t, d = f["these_settings"], f["drop"]
    assert t["ratio"] is None and t["ci95"] == [None, None] and set(t["losses"]) == {"supcon"}
    assert t["claim"] == "moves" and t["p_value"] < 0.05 and "moves across" in t["sentence"]
    assert d["ratio"] is None and d["difference"] is None and d["claim"] == "moves"
    drop = d["losses"]["supcon"]
    assert drop["base_setting"] == "temperature=0.1" and drop["drop"] == pytest.approx(0.85 - (0.70 + 0.83 + 0.60) / 3, abs=0.01)
    assert drop["width_decades"]["within_5_points"] == pytest.approx(math.log10(0.3 / 0.1))
    assert "nothing to compare" in f["sentence"]  # what "beyond these settings" means for one method
    assert overall["these_settings"]["claim"] == "moves" and overall["drop"]["claim"] == "moves"
    json.dumps(factors)  # plain data


def test_two_method_entries_carry_drop_agreement_and_method_keys():
    rng = np.random.default_rng(5)
    df = simulate_factor(rng, 5, 3, ratio=3.0, factor="lr", exact_spread=True)
    df["setting"] = df["setting"].map({f"lr={i}": f"lr=x{m}" for i, m in enumerate([0.1, 0.3, 1, 3, 10])})
    factors, overall = analyze_factors(df, "test_top1", sensitivity=False)
    (f,) = factors
    assert f["baseline"] == "ce" and f["method"] == "supcon"
    d = f["drop"]
    assert set(d) >= {"ratio", "ci95", "difference", "p_value", "p_adjusted", "claim", "losses", "agreement"}
    assert {v["base_setting"] for v in d["losses"].values()} == {"lr=x1"}  # the x1 rule without a study file
    assert set(f["these_settings"]["agreement"]) >= {"outcome", "ci90", "margin"}
    assert f["primary_agreement"]["measure"] == "spread" and f["primary"] == "spread"
    assert f["primary_agreement"]["outcome"] == f["these_settings"]["agreement"]["outcome"]
    no_base = analyze_factors(df.assign(setting=df["setting"].str.replace("x1", "x1.5", regex=False)), "test_top1",
                              sensitivity=False)[0][0]["drop"]
    assert no_base["claim"] == "insufficient" and "not among" in no_base["reason"]


def test_agreement_outcomes_include_both_kinds_of_disagreement():
    assert outcome("supcon_less_sensitive", "supcon_less_sensitive", 1.0) == Outcome.AGREE
    assert outcome("ce_less_sensitive", "supcon_less_sensitive", 1.0) == Outcome.OPPOSITE
    assert outcome("no_difference", "supcon_less_sensitive", 0.01) == Outcome.EQUIVALENT
    assert outcome("no_difference", "supcon_less_sensitive", 0.2) == Outcome.INCONCLUSIVE
    assert outcome("no_difference", None, 0.01) is None
    # equal, precisely measured spreads: "no meaningful difference" is said; a ratio of 2 is not
    ce = _table([[0.80, 0.801, 0.799], [0.70, 0.701, 0.699], [0.60, 0.601, 0.599], [0.75, 0.751, 0.749]])
    sc = _table([[0.85, 0.851, 0.849], [0.75, 0.751, 0.749], [0.65, 0.651, 0.649], [0.80, 0.801, 0.799]])
    same = compare_these([(ce, sc)], equivalence_ratio=1.25)
    assert same.tost_p < 0.05 and 1 / 1.25 < same.ci90[0] <= same.ci90[1] < 1.25
    far = _table([[0.85, 0.851, 0.849], [0.80, 0.801, 0.799], [0.75, 0.751, 0.749], [0.825, 0.826, 0.824]])
    assert compare_these([(ce, far)], equivalence_ratio=1.25).tost_p > 0.5


def test_equivalence_is_rarely_said_when_the_true_ratio_is_the_margin():
    """TOST at m: with the truth exactly at the margin, "no meaningful difference" at most at its level
    (bimodal collapse for the drop; an exact profile for the spread)."""
    rng = np.random.default_rng(13)
    said_drop, said_spread = [], []
    for _ in range(200):
        (ce_t, sc_t), _ = bimodal_tables(rng, 5, 3, 1.25)
        ce, sc = loss_drop([(ce_t, "s2")]), loss_drop([(sc_t, "s2")])
        said_drop.append(equivalence_p(ce, sc, 1.25) < 0.05)
        prof = np.array([0.0, -0.05, 0.05, 0.02, -0.02])
        y = {"ce": 0.8 + 1.25 * prof, "supcon": 0.85 + prof}
        tables = [_table([list(m + 0.004 * rng.standard_normal(3)) for m in y[loss]]) for loss in ("ce", "supcon")]
        said_spread.append(compare_these([tuple(tables)], interval=False, equivalence_ratio=1.25, draws=500).tost_p < 0.05)
    assert np.mean(said_drop) <= 0.07 and np.mean(said_spread) <= 0.08


def test_primary_and_margin_are_declared_in_the_manifest_and_out_of_the_fingerprint(tmp_path):
    import yaml

    from supcon_ray.config import ConfigError
    from supcon_ray.results.manifest import Manifest, analysis_edits, changed_keys, fingerprint, read_manifest
    from supcon_ray.study import Study, analysis_settings, load_study

    base = yaml.safe_load((ROOT / "search_spaces" / "fig4a_digits.yaml").read_text())
    plain = Study.model_validate({k: v for k, v in base.items() if k != "quick"})
    declared = Study.model_validate({**{k: v for k, v in base.items() if k != "quick"}, "primary": "drop",
                                     "equivalence_ratio": 1.5})
    assert changed_keys(fingerprint(plain), fingerprint(declared)) == []
    assert analysis_settings(declared) == {"primary": "drop", "equivalence_ratio": 1.5}
    recorded = Manifest("s", {}, analysis=analysis_settings(declared))
    assert analysis_edits(recorded, declared) == []
    edits = analysis_edits(recorded, {"primary": "spread", "equivalence_ratio": 1.5})
    assert len(edits) == 1 and "primary" in edits[0] and "'drop'" in edits[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**base, "primary": "variance"}))
    with pytest.raises(ConfigError, match="primary"):
        load_study(bad)
    for folder in FOLDERS:  # the committed folders: re-fingerprinted unchanged, no recorded analysis
        if not folder.is_dir():
            pytest.skip(f"{folder} is not in this checkout")
        m = read_manifest(str(folder))
        study = Study.model_validate(yaml.safe_load((folder / "study.yaml").read_text()))
        assert changed_keys(m.fingerprint, fingerprint(study)) == [] and m.analysis is None


def test_report_uses_the_recorded_primary_and_flags_a_later_edit(tmp_path):
    import shutil

    from supcon_ray.report import build_report
    from supcon_ray.reporting.console import headline

    folder = FOLDERS[0]
    if not folder.is_dir():
        pytest.skip(f"{folder} is not in this checkout")
    _, typed = build_report([str(folder)], str(tmp_path / "r.html"))
    numbers = typed.as_dict()
    assert numbers["analysis"]["fig4a-digits"] == {"primary": "spread", "equivalence_ratio": 1.25, "declared": False}
    assert any("added afterwards" in n for n in numbers["notes"])
    assert headline(typed)[1].startswith("(secondary) All factors pooled, drop from the base")
    lr = next(f for f in numbers["factors"] if f["factor"] == "lr")
    assert lr["drop"]["losses"]["ce"]["drop"] == pytest.approx(0.386, abs=0.001)  # the 0.387 vs 0.157
    assert lr["drop"]["losses"]["supcon"]["drop"] == pytest.approx(0.157, abs=0.001)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["analysis"] = {"primary": "drop", "equivalence_ratio": 1.25}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with open(copy / "study.yaml", "a") as fh:
        fh.write("primary: spread\n")  # edited after the first run
    _, typed = build_report([str(copy)], str(tmp_path / "r2.html"))
    numbers = typed.as_dict()
    assert numbers["analysis"]["fig4a-digits"]["primary"] == "drop"
    assert any("was declared 'drop'" in n for n in numbers["notes"])
    assert headline(typed)[0].startswith("All factors pooled, drop from the base")
    assert all(f["primary_agreement"]["measure"] == "drop" for f in numbers["factors"] if "primary_agreement" in f)
    assert any("primary_agreement" in f for f in numbers["factors"])


def test_beyond_says_cannot_tell_where_seeds_split_and_keeps_its_level_there():
    """A bimodal collapse (one loss's seeds split between chance and success at two settings) broke the
    swap test (0.43 false claims at 6 x 4); such factors now get "cannot tell", and the rule stays quiet
    under even or merely unequal normal noise."""
    from supcon_ray.stats import compare
    from supcon_ray.stats.paired import uneven_noise
    from supcon_ray.stats.simulate import simulate_tables

    rng = np.random.default_rng(17)
    claims, fired, others = [], [], []
    for _ in range(400):
        (ce, sc), _ = bimodal_tables(rng, 6, 4, 1.0)
        flagged = uneven_noise(ce, sc)
        fired.append(bool(flagged))
        claims.append(not flagged and compare([(ce, sc)], interval=False).p_value < 0.05)
        others.append(not set(flagged) <= {ce.settings[0], ce.settings[-1]})  # a normal setting named
    assert_rate_at_most(float(np.mean(claims)), 400)
    assert np.mean(fired) >= 0.8, np.mean(fired)
    assert np.mean(others) <= 0.03, np.mean(others)  # the collapsing settings are the ones named
    for seed_std in (0.01, (0.03, 0.01)):  # even, and CE's noise 3x SupCon's everywhere: at most ~NOISE_LEVEL
        quiet = [bool(uneven_noise(*simulate_tables(rng, 6, 4, 1.0, 0.03, seed_std)[0])) for _ in range(400)]
        assert np.mean(quiet) <= 0.03, (seed_std, np.mean(quiet))
    df = simulate_factor(rng, 6, 4, factor="lr")
    at = df["setting"] == "lr=5"
    df.loc[at & (df["loss"] == "ce"), "test_top1"] = [0.1, 0.8, 0.1, 0.8]  # CE's seeds split at one setting
    (f,), overall = analyze_factors(df, "test_top1", sensitivity=False)
    assert f["uneven_noise"] == ["lr=5"] and f["claim"] == "insufficient"
    assert "Seed noise too uneven at lr=5 for 4 seeds" in f["sentence"]
    assert overall["claim"] == "insufficient"  # the flagged factor stays out of the pooled swap test
    assert "Seed noise is too uneven for this question in " in overall["sentence"], overall["sentence"]


@pytest.mark.parametrize("k, s, split, both", [(6, 6, "one", False), (6, 6, "two", False), (6, 6, "two", True),
                                             (6, 4, "one", True)])
def test_the_uneven_noise_rule_holds_on_splits_it_was_not_chosen_on(k, s, split, both):
    """Issue 40, item 4: the rule was chosen on a split at CE's two extreme settings (6 x 4). On one split
    setting, two, a split in both losses, and six seeds, the old rule (20x the loss's median and half
    the spread) let through 0.08 to 0.14 false claims: a split inflates the setting means' spread, which
    hid it from its own rule, and two splits lifted the median. The F-test forward search holds each."""
    from supcon_ray.stats import compare
    from supcon_ray.stats.paired import uneven_noise

    rng = np.random.default_rng(40)
    claims = []
    for _ in range(400):
        block, _ = bimodal_tables(rng, k, s, 1.0, split=split, both=both)
        claims.append(not uneven_noise(*block) and compare([block], interval=False).p_value < 0.05)
    assert_rate_at_most(float(np.mean(claims)), 400)


def test_a_visible_split_is_always_flagged_and_only_one_sided_draws_can_mislead():
    """One split setting at 6 x 4: when all four seeds land on one side (1/8 of draws) the data are those
    of a real effect at that setting, and no rule that keeps a real collapse can tell them apart; every
    draw whose seeds landed on both sides is flagged, so the false claims come from the one-sided draws
    alone (docs/method.md gives the rate, and 2^(1 - seeds) as its cause)."""
    from supcon_ray.stats.paired import uneven_noise

    rng = np.random.default_rng(41)
    visible = flagged = 0
    for _ in range(400):
        (ce, sc), _ = bimodal_tables(rng, 6, 4, 1.0, split="one")
        if ce.ss[3] / 3 > 100 * 0.01**2:  # both chance and success among the middle setting's seeds
            visible += 1
            flagged += "s3" in uneven_noise(ce, sc)
    assert visible >= 300 and flagged == visible, (visible, flagged)


def test_a_new_study_records_its_analysis_and_a_resume_keeps_it(tmp_path):
    import yaml

    from supcon_ray.results.manifest import analysis_edits, open_manifest, read_manifest, save_manifest
    from supcon_ray.results.storage import ResultStore
    from supcon_ray.study import load_study

    base = yaml.safe_load((ROOT / "search_spaces" / "fig4a_digits.yaml").read_text())
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump({**base, "primary": "drop"}))
    store = ResultStore(str(tmp_path / "results"), base["study"])
    manifest = open_manifest(store, load_study(first), resume=False)
    assert manifest.analysis == {"primary": "drop", "equivalence_ratio": 1.25}
    save_manifest(store, manifest)
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump({**base, "primary": "spread", "equivalence_ratio": 2.0}))
    resumed = open_manifest(store, load_study(edited), resume=True)  # analysis keys: not a change of computation
    assert resumed.analysis == {"primary": "drop", "equivalence_ratio": 1.25}
    assert read_manifest(store.uri).analysis == resumed.analysis
    assert [line.split(" ")[0] for line in analysis_edits(resumed, load_study(edited))] == ["equivalence_ratio", "primary"]


def test_a_base_shared_by_several_factors_counts_its_seed_noise_once_when_pooled():
    """The base runs once and stands in every factor with its value: pooled over factors, its cell's
    coefficients add and its noise counts once. Treated as independent copies, the pooled drop's
    variance is too small (false claims 0.19 in a review's simulation)."""
    rng = np.random.default_rng(23)
    shared, naive = [], []
    for _ in range(400):
        base = list(0.8 + 0.02 * rng.standard_normal(3))
        tables = [(_table([base] + [list(0.8 + 0.02 * rng.standard_normal(3)) for _ in range(2)],
                          ["b", f"f{f}x", f"f{f}y"]), "b") for f in range(3)]
        keys = [["base", f"f{f}x", f"f{f}y"] for f in range(3)]
        shared.append(loss_drop(tables, keys=keys).p_value < 0.05)
        naive.append(loss_drop(tables).p_value < 0.05)
    assert_rate_at_most(float(np.mean(shared)), 400)
    assert np.mean(naive) > 0.12, np.mean(naive)
    # through the report's analysis: the base's trial ids are the same in both factors
    rows = []
    for factor, others in (("augment", ["randaugment", "simaugment"]), ("lr", ["x0.1", "x10"])):
        for loss in ("ce", "supcon"):
            for setting in ["base", *others]:
                for seed in range(3):
                    label = f"{factor}={'autoaugment' if factor == 'augment' else 'x1'}" if setting == "base" else f"{factor}={setting}"
                    rows.append({"study": "s", "factor": factor, "loss": loss, "setting": label, "seed": seed,
                                 "status": "completed", "design": "one_factor",
                                 "test_top1": 0.8 + 0.01 * seed + (0.0 if setting == "base" else -0.05),
                                 "trial_id": f"{loss}-base-{seed}" if setting == "base" else f"{loss}-{label}-{seed}"})
    bases = {("s", "augment"): {"ce": "augment=autoaugment", "supcon": "augment=autoaugment"},
             ("s", "lr"): {"ce": "lr=x1", "supcon": "lr=x1"}}
    _, overall = analyze_factors(pd.DataFrame(rows), "test_top1", sensitivity=False, bases=bases)
    ce = overall["drop"]["losses"]["ce"]
    var_base = np.var([0.8, 0.81, 0.82], ddof=1) / 3
    var_other = var_base  # every cell has the same three seeds' spread
    half = (ce["ci95"][1] - ce["ci95"][0]) / 2
    expected = 1.0 * var_base + 4 * (0.25 ** 2) * var_other  # base coefficient (1+1)/2; four others at -1/4
    from scipy import stats as sps
    df = expected**2 / ((var_base**2 + 4 * (0.0625 * var_other) ** 2) / 2)
    assert half == pytest.approx(sps.t.ppf(0.975, df) * math.sqrt(expected), rel=1e-6)


def test_the_paper_direction_applies_only_to_the_factors_it_names():
    """Fig. 4b-d state accuracy levels, not which loss moves less: a study of batch size (or epochs, or
    temperature) alone gets no agreement outcome, pooled or per factor; with a Fig. 4a factor in the pool
    it gets one, and other pairs never do."""
    from supcon_ray.stats.agreement import PAPER_POOLED, pooled_direction

    assert pooled_direction(["batch_size", "epochs"], ("ce", "supcon")) is None
    assert pooled_direction(["batch_size", "lr"], ("ce", "supcon")) == PAPER_POOLED
    assert pooled_direction(["lr"], ("ce", "poly1")) is None and pooled_direction(["lr"], None) is None
    rng = np.random.default_rng(5)
    df = simulate_factor(rng, 5, 3, ratio=3.0, factor="batch_size", exact_spread=True)
    bases = {(df["study"].iloc[0], "batch_size"): {"ce": "batch_size=2", "supcon": "batch_size=2"}}
    factors, overall = analyze_factors(df, "test_top1", sensitivity=False, bases=bases)
    assert overall["these_settings"]["claim"] == "supcon_less_sensitive"  # the claim is still made...
    for answer in (factors[0]["these_settings"], overall["these_settings"], factors[0]["drop"], overall["drop"]):
        assert answer["agreement"]["outcome"] is None  # ...but scored against no direction
    lr = simulate_factor(rng, 5, 3, ratio=3.0, factor="lr", exact_spread=True)
    _, overall = analyze_factors(pd.concat([df, lr]), "test_top1", sensitivity=False)
    assert overall["these_settings"]["agreement"]["outcome"] == "agree"


def test_setting_means_more_alike_than_seed_noise_never_claim_a_spread():
    """Identical setting means with seed noise give a negative unbiased spread (estimate 0). The equal-tailed
    test used to reject "no effect" in its lower tail (p = 0.001: a false "moves" claim) and gave intervals
    that excluded their own estimate, or none at all. Now 0 is kept, the upper end reflects the seed noise,
    and a ratio at the edge (one spread 0) keeps its edge; and under the null the "moves" claims stay at
    or below alpha, underdispersed draws included."""
    under = [_table([[0.65, 0.75, 0.85]] * k) for k in (3, 4)]
    for t in under:
        one = spread_of_one([t])
        assert one.spread == 0 and one.p_value > 0.5
        assert one.ci95[0] == 0 and one.ci95[1] > 0.05  # seed std 0.1 over 3 seeds cannot bound it near 0
    sc = _table([[0.90, 0.91, 0.92], [0.80, 0.81, 0.82], [0.85, 0.86, 0.87], [0.70, 0.71, 0.72]])
    r = compare_these([(under[1], sc)], equivalence_ratio=1.25)
    assert r.ratio == 0 and r.ci95[0] == 0 and r.ci90[0] == 0 and r.spread_ci95["ce"][0] == 0
    both = compare_these([(under[0], under[0])])
    assert math.isnan(both.ratio) and both.ci95 == (0.0, math.inf)
    rng = np.random.default_rng(11)
    claims = [spread_of_one([_table(list(0.8 + 0.05 * rng.standard_normal((4, 3))))], interval=False).p_value < 0.05
              for _ in range(400)]
    assert_rate_at_most(float(np.mean(claims)), 400)


def test_a_ratio_of_drops_needs_both_drops_above_zero():
    """A drop of exactly 0 (the base's mean equals the other settings' mean) has no ratio: ``drop_CE / 0``."""
    ce = loss_drop([(_table([[0.80, 0.81, 0.79], [0.50, 0.52, 0.51], [0.40, 0.41, 0.39]]), "s0")])
    flat = loss_drop([(_table([[0.80, 0.81, 0.79], [0.70, 0.71, 0.69], [0.90, 0.91, 0.89]]), "s0")])
    assert flat.drop == 0.0 and ce.drop > 0
    c = compare_drops(ce, flat)
    assert math.isnan(c.ratio) and all(math.isnan(e) for e in c.ratio_ci95)
    assert c.difference == pytest.approx(ce.drop) and c.direction == 1


def test_a_setting_with_one_seed_is_never_flagged_for_uneven_noise():
    """A setting with one seed has no seed-noise estimate (0 by the rule's definition), so it cannot be the
    concentration of the noise; the others, evenly noisy, flag nothing either."""
    from supcon_ray.stats import uneven_noise

    rng = np.random.default_rng(4)
    groups = [list(0.8 + 0.01 * rng.standard_normal(3)) for _ in range(5)] + [[0.6]]
    ce = _table(groups)
    sc = _table([list(0.85 + 0.01 * rng.standard_normal(3)) for _ in range(6)])
    assert uneven_noise(ce, sc) == []
