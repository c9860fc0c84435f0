"""The shipped example: a plugin loss (examples/poly_loss.py) against CE on digits, run as its --quick
study on Ray and analysed by the report like any built-in pair."""

import json
from pathlib import Path

import pandas as pd
import pytest

from supcon_ray.tune import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "poly1_digits.yaml"


def test_poly1_reduces_to_cross_entropy_at_epsilon_zero_and_adds_one_minus_p_true():
    import torch
    import torch.nn.functional as F

    from supcon_ray.config import TrainConfig
    from supcon_ray.networks.losses import plugin_objective
    from supcon_ray.study import load_study

    load_study(EXAMPLE)  # loads the plugin
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    ce = F.cross_entropy(logits, labels)
    zero = plugin_objective("poly1", TrainConfig(loss="poly1", options={"epsilon": 0.0}))(logits, labels)
    assert torch.allclose(zero, ce)
    p_true = torch.stack([F.softmax(row, 0)[y] for row, y in zip(logits, labels)])  # a plain loop, not the plugin's
    two = plugin_objective("poly1", TrainConfig(loss="poly1", options={"epsilon": 2.0}))(logits, labels)
    assert torch.allclose(two, ce + 2.0 * (1 - p_true).mean())


@pytest.mark.ray
def test_the_example_study_runs_end_to_end_with_the_same_protocol_and_report(ray_session, tmp_path, capsys):
    storage = tmp_path / "results"
    assert main(["--space", str(EXAMPLE), "--quick", "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    folder = storage / "poly1-digits"
    trials = pd.read_parquet(folder / "trials")
    assert set(trials["loss"]) == {"ce", "poly1"} and (trials["status"] == "completed").all()
    epsilon = trials[trials["factor"] == "options.epsilon"]
    assert set(epsilon["loss"]) == {"poly1"} and set(epsilon["setting"]) == {"options.epsilon=3"}
    assert {json.loads(o)["epsilon"] for o in trials.loc[trials["loss"] == "poly1", "options"]} == {1.0, 3.0}
    assert "verdict:" in out and "poly1" in out
    from supcon_ray.analysis import read_study_folders
    from supcon_ray.results.folders import stats_rows
    from views import compute

    loaded, _, records = read_study_folders([str(folder)])
    numbers = compute(loaded, "test_top1", with_importance=False, records=records)
    pairs = {(f["factor"], f["baseline"], f["method"]) for f in numbers["factors"]}
    assert pairs == {("augment", "ce", "poly1"), ("lr", "ce", "poly1"), ("options.epsilon", None, "poly1")}
    assert list(numbers["overall_by_method"]) == ["poly1"]
    assert numbers["analysis"]["poly1-digits"]["baseline"] == "ce"
    assert all(f["these_settings"].get("agreement", {}).get("outcome") is None for f in numbers["factors"])
    # 14 runs, 20 analysed entries: each base run stands in every factor it belongs to (CE's in 2, Poly-1's in 3)
    assert len(trials) == 14 and len(stats_rows(loaded)) == 14 + 2 * 1 + 2 * 2
