"""The base pick's margin: the best step-1 configuration's lead over the runner-up, with its standard error
(paired over selection seeds, or binomial on the validation set with one seed), flagged when within noise."""

import math
from pathlib import Path

import pandas as pd
import pytest

from supcon_ray.stats import base_margins
from supcon_ray.stats.base_margin import margin_sentence, validation_images

ROOT = Path(__file__).resolve().parents[2]


def _stage1(values: dict[str, list[float]], loss: str = "supcon") -> pd.DataFrame:
    return pd.DataFrame([{"study": "s", "loss": loss, "setting": setting, "seed": 1000 + i, "design": "tune_base:qmc",
                          "status": "completed", "val_top1": v}
                         for setting, vs in values.items() for i, v in enumerate(vs)])


def test_the_validation_set_size_is_read_from_the_accuracies():
    assert validation_images(pd.Series([137 / 144, 136 / 144, 108 / 144])) == 144
    assert validation_images(pd.Series([666 / 1500, 658 / 1500, 654 / 1500, 15 / 1500])) == 1500
    assert validation_images(pd.Series([0.123456789123])) is None  # not a count over any plausible set


def test_one_seed_uses_the_binomial_error_and_flags_a_pick_within_noise():
    # digits SupCon: 137 of 144 against 136 of 144, one image apart
    m = base_margins(_stage1({"lr=3.523": [137 / 144], "lr=7.125": [136 / 144], "lr=0.1": [100 / 144]}))["s"]["supcon"]
    p1, p2 = 137 / 144, 136 / 144
    assert m["best"] == "lr=3.523" and m["runner_up"] == "lr=7.125" and m["validation_images"] == 144
    assert m["margin"] == pytest.approx(1 / 144)
    assert m["se"] == pytest.approx(math.sqrt(p1 * (1 - p1) / 144 + p2 * (1 - p2) / 144))
    assert m["within_noise"] and "picked within noise" in margin_sentence(m)
    clear = base_margins(_stage1({"a": [130 / 144], "b": [90 / 144]}))["s"]["supcon"]
    assert not clear["within_noise"] and "within noise" not in margin_sentence(clear)


def test_several_seeds_use_the_paired_differences():
    m = base_margins(_stage1({"a": [0.80, 0.84, 0.82], "b": [0.79, 0.80, 0.80]}))["s"]["supcon"]
    diffs = [0.01, 0.04, 0.02]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert m["margin"] == pytest.approx(mean) and m["se"] == pytest.approx(sd / math.sqrt(3))
    assert "paired" in m["se_basis"] and not m["within_noise"]


def test_the_committed_digits_study_reports_supcons_pick_as_within_noise():
    from supcon_ray.reporting.numbers import with_margins
    from supcon_ray.results.folders import load

    folder = ROOT / "docs" / "results" / "fig4a-digits"
    if not folder.is_dir():
        pytest.skip("docs/results/fig4a-digits is not in this checkout")
    trials, _, metas = load([str(folder)])
    bases = with_margins({s: m["bases"] for s, m in metas.items()}, trials)["fig4a-digits"]
    sc, ce = bases["supcon"]["margin"], bases["ce"]["margin"]
    assert sc["margin"] == pytest.approx(1 / 144) and sc["within_noise"]  # 0.9514 against 0.9444
    assert ce["margin"] == pytest.approx(0.8125 - 0.513889, abs=1e-4) and not ce["within_noise"]
