"""Any methods compared: every loss against the study's baseline, one entry per (study, factor, method),
each question one Holm family over all comparisons, claims named ``<loss>_less_sensitive``, and the
paper's direction applied to SupCon against CE only."""

import math

import numpy as np
import pandas as pd
import pytest

from supcon_ray.reporting.markdown import results_markdown
from supcon_ray.stats.multiplicity import holm
from views import analyze_factors, compute, numbers_of

SPREADS = {"ce": 0.08, "supcon": 0.02, "poly1": 0.05}
FACTORS = {"lr": [f"lr=x{m}" for m in (0.1, 0.3, 1, 3, 10)], "augment": ["augment=a", "augment=b", "augment=c"]}


def _trials(spreads=SPREADS, factors=FACTORS, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for factor, settings in factors.items():
        for loss, spread in spreads.items():
            effects = rng.normal(0, spread, len(settings))
            for setting, effect in zip(settings, effects):
                for s in range(3):
                    rows.append({"study": "s", "factor": factor, "setting": setting, "loss": loss, "seed": s,
                                 "status": "completed", "test_top1": 0.8 + effect + rng.normal(0, 0.005),
                                 "trial_id": f"{loss}-{setting}-{s}", "design": "one_factor"})
    return pd.DataFrame(rows)


def test_three_methods_give_one_entry_per_method_against_the_baseline():
    factors, overall = analyze_factors(_trials(), "test_top1", sensitivity=False)
    assert [(f["factor"], f["baseline"], f["method"]) for f in factors] == [
        ("augment", "ce", "poly1"), ("augment", "ce", "supcon"), ("lr", "ce", "poly1"), ("lr", "ce", "supcon")]
    for f in factors:  # each entry holds its own pair's numbers only
        assert set(f["losses"]) == {f["baseline"], f["method"]}
        assert set(f["these_settings"]["losses"]) == {f["baseline"], f["method"]}
        t = f["these_settings"]
        spreads = t["losses"]
        assert t["ratio"] == pytest.approx(spreads[f["baseline"]]["spread"] / spreads[f["method"]]["spread"])
        assert t["claim"] in ("no_difference", f"{f['method']}_less_sensitive", f"{f['baseline']}_less_sensitive")
    # ratio baseline / method: SupCon (spread 0.02) is less sensitive than CE (0.08) on both factors
    assert [f["these_settings"]["claim"] for f in factors if f["method"] == "supcon"] == ["supcon_less_sensitive"] * 2
    assert overall["method"] == "supcon" and set(overall["by_method"]) == {"poly1", "supcon"}
    assert overall["by_method"]["poly1"]["baseline"] == "ce"
    assert "poly1 vs CE" in overall["by_method"]["poly1"]["these_settings"]["sentence"]


def test_each_question_is_one_holm_family_over_every_comparison_and_every_methods_pooled_test():
    factors, overall = analyze_factors(_trials(), "test_top1", sensitivity=False)
    pooled = [overall["by_method"][m]["these_settings"] for m in ("poly1", "supcon")]
    raw = [f["these_settings"]["p_value"] for f in factors] + [p["p_value"] for p in pooled]
    expected = holm(raw)
    got = [f["these_settings"]["p_adjusted"] for f in factors] + [p["p_adjusted"] for p in pooled]
    assert got == pytest.approx(expected)
    # the same for the drop (the augment factor has no base among its settings: no drop, out of the family)
    def num(x):
        return math.nan if x is None else x

    drops = [num(f["drop"]["p_value"]) for f in factors] + [
        num(overall["by_method"][m]["drop"]["p_value"]) for m in ("poly1", "supcon")]
    assert sum(not math.isnan(p) for p in drops) >= 4  # the lr entries and both pooled answers
    assert [num(f["drop"]["p_adjusted"]) for f in factors] == pytest.approx(holm(drops)[:4], nan_ok=True)


def test_the_papers_direction_applies_to_supcon_against_ce_only():
    factors, overall = analyze_factors(_trials(), "test_top1", sensitivity=False)
    for f in factors:
        agreement = f["these_settings"]["agreement"]
        if f["method"] == "supcon":
            assert agreement["paper"] == "supcon_less_sensitive" and agreement["outcome"] == "agree"
        else:
            assert agreement["paper"] is None and agreement["outcome"] is None
    assert overall["by_method"]["poly1"]["these_settings"]["agreement"]["outcome"] is None


def test_a_study_without_ce_compares_with_its_declared_baseline_and_names_the_methods():
    trials = _trials({"poly1": 0.08, "supcon": 0.01})
    factors, overall = analyze_factors(trials, "test_top1", sensitivity=False, baselines={"s": "poly1"})
    assert {(f["baseline"], f["method"]) for f in factors} == {("poly1", "supcon")}
    assert overall["these_settings"]["claim"] == "supcon_less_sensitive"
    assert "ratio poly1/SupCon" in overall["these_settings"]["sentence"]
    assert overall["these_settings"]["agreement"]["outcome"] is None  # not the paper's pair
    flipped, _ = analyze_factors(trials, "test_top1", sensitivity=False, baselines={"s": "supcon"})
    ratio = {f["factor"]: f["these_settings"]["ratio"] for f in factors}
    assert {f["factor"]: 1 / f["these_settings"]["ratio"] for f in flipped} == pytest.approx(ratio, rel=1e-6)
    assert {f["these_settings"]["claim"] for f in flipped} == {"supcon_less_sensitive"}


def test_a_ce_supcon_study_keeps_its_entries_and_gains_overall_by_method(tmp_path):
    trials = _trials({"ce": 0.08, "supcon": 0.02})
    numbers = compute(trials, "test_top1", with_importance=False)
    assert [(f["baseline"], f["method"]) for f in numbers["factors"]] == [("ce", "supcon")] * 2
    assert list(numbers["overall_by_method"]) == ["supcon"]
    by = numbers["overall_by_method"]["supcon"]
    assert by["these_settings"] == numbers["overall"]["these_settings"] and by["claim"] == numbers["overall"]["claim"]
    assert "by_method" not in numbers["overall"]


def test_the_report_and_markdown_name_every_method_of_a_three_method_study():
    typed = numbers_of(_trials(), "test_top1", with_importance=False)
    numbers = typed.as_dict()
    assert set(numbers["overall_by_method"]) == {"poly1", "supcon"}
    md = results_markdown(typed)
    assert "| lr (poly1 vs CE) |" in md and "| lr (SupCon vs CE) |" in md
    assert "**all pooled** (poly1 vs CE)" in md and "**all pooled** (SupCon vs CE)" in md
    assert "ratio baseline/method" in md
    assert not math.isnan(numbers["overall"]["these_settings"]["p_value"])


def test_markdown_gives_a_one_method_study_its_own_table_and_every_study_its_curve():
    """A one-method study (Fig. 4d: SupCon's temperature) prints its spread and drop against no effect, no
    ratio or CE column; every study prints each factor's curve, numeric settings in numeric order, the
    means and intervals matching a direct computation over the runs."""
    temps = {"temperature": [f"temperature={t}" for t in (1, 0.1, 0.03, 0.5)]}
    trials = _trials({"supcon": 0.05}, temps, seed=3)
    md = results_markdown(numbers_of(trials, "test_top1", with_importance=False))
    assert "| factor | method | settings | spread [95% CI] |" in md and "CE" not in md and "ratio" not in md
    (row,) = [line for line in md.splitlines() if line.startswith("| temperature | SupCon | 4 |")]
    assert "no detectable effect" in row or "moves" in row
    curve = md[md.index("| temperature | SupCon |\n|---|---|"):].splitlines()[2:6]
    assert [line.split(" | ")[0] for line in curve] == ["| 0.03", "| 0.1", "| 0.5", "| 1"]
    runs = trials[trials["setting"] == "temperature=0.03"]["test_top1"]
    half = 4.302652729749464 * runs.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert curve[0] == f"| 0.03 | {runs.mean():.3f} [{runs.mean() - half:.3f}, {runs.mean() + half:.3f}] (3) |"
    two = results_markdown(numbers_of(_trials({"ce": 0.08, "supcon": 0.02}), "test_top1", with_importance=False))
    assert "**Per setting**" in two and "| lr | CE | SupCon |" in two
    lr = two[two.index("| lr | CE | SupCon |"):]
    assert lr.index("| x0.1 |") < lr.index("| x0.3 |") < lr.index("| x1 |") < lr.index("| x3 |") < lr.index("| x10 |")
