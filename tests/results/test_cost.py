"""What a study cost, from its trials: per phase, each run once, recorded values first, inferred for old rows."""

import math
from pathlib import Path

import pandas as pd
import pytest

from supcon_ray.results.cost import cost_line, folder_bytes, study_costs

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def _rows():
    base = dict(study="s", epochs=5, seconds=10.0, world_size=1, status="completed", diverged_stage=None,
                diverged_epoch=None)
    return pd.DataFrame([
        {**base, "trial_id": "t1", "phase": "tune_base"},
        {**base, "trial_id": "t2", "phase": "nuisance", "status": "diverged", "diverged_stage": "pretrain",
         "diverged_epoch": 2, "seconds": 4.0},
        {**base, "trial_id": "t3", "phase": "study", "world_size": 2},           # two workers: twice the device time
        {**base, "trial_id": "t3", "phase": "study", "world_size": 2},           # the base, in a second factor
        {**base, "trial_id": "t4", "phase": "study", "status": "failed", "seconds": None},
        {**base, "trial_id": "t5", "phase": "study", "status": "diverged", "diverged_stage": "linear",
         "diverged_epoch": 1},                                                    # diverged in the read-out
    ])


def test_each_phase_counts_each_run_once_with_the_epochs_it_trained():
    cost = study_costs(_rows())["s"]
    by = {p.phase: p for p in cost.phases}
    assert [p.phase for p in cost.phases] == ["tune_base", "nuisance", "study"]
    assert (by["tune_base"].trials, by["tune_base"].trial_epochs) == (1, 5)
    assert (by["nuisance"].trial_epochs, by["nuisance"].trial_seconds) == (2, 4.0)  # stopped at its divergence
    assert by["study"].trials == 3 and by["study"].trial_epochs == 5 + 0 + 5        # failed: none; linear: all 5
    assert by["study"].device_seconds == 2 * 10.0 + 0 + 10.0
    assert cost.selection_share == pytest.approx((10 + 4) / (10 + 4 + 20))
    assert cost.selection_epoch_share == pytest.approx(7 / 17)


def test_recorded_epochs_and_device_seconds_win_over_the_inferred_ones():
    rows = _rows().assign(epochs_run=[3, None, 4, 4, None, None], device_seconds=[7.5, None, None, None, None, None])
    cost = study_costs(rows)["s"]
    by = {p.phase: p for p in cost.phases}
    assert by["tune_base"].trial_epochs == 3 and by["tune_base"].device_seconds == 7.5
    assert by["study"].trial_epochs == 4 + 0 + 5 and by["nuisance"].trial_epochs == 2


def test_a_study_without_selection_says_so_and_one_without_time_has_no_share():
    cost = study_costs(_rows()[lambda d: d["phase"] == "study"])["s"]
    assert cost.selection_share == 0.0
    assert "no selection runs" in cost_line(cost)
    empty = study_costs(_rows().assign(seconds=0.0, phase="study", status="failed"))["s"]
    assert math.isnan(empty.selection_share) and empty.as_dict()["selection_share_seconds"] is None


def test_the_published_folders_cost_what_the_issue_measured():
    """Issue 41 measured the selection share of trial-seconds of each published study by hand."""
    from supcon_ray.results.folders import load_folders

    expected = {"fig4a-cifar10-subset": 0.34, "fig4a-digits": 0.37, "fig4a-three-methods-digits": 0.37,
                "fig4b-batch-size-digits": 0.72, "fig4c-epochs-digits": 0.27, "fig4d-temperature-digits": 0.25}
    for name, share in expected.items():
        trials, _, folders = load_folders([str(RESULTS / name)])
        cost = study_costs(trials, {name: folders[0].disk_bytes})[name]
        assert round(cost.selection_share, 2) == share, name
        assert cost.disk_bytes == folder_bytes(RESULTS / name) > 0


def test_a_report_page_in_the_folder_does_not_count_as_its_disk(tmp_path):
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / "a.parquet").write_bytes(b"x" * 100)
    (tmp_path / "report.html").write_bytes(b"y" * 1000)
    assert folder_bytes(tmp_path) == 100
    assert folder_bytes(tmp_path / "missing") == 0


def test_the_planner_prices_a_design_at_the_studys_own_rate():
    """``supcon-ray power`` prices each design: trial-epochs of both methods' analysed runs, and hours at the
    study's measured seconds per trial-epoch (every run it recorded, selection included)."""
    from supcon_ray.power import prices
    from supcon_ray.results.folders import load_folders

    trials, _, _ = load_folders([str(RESULTS / "fig4a-digits")])
    price = prices(trials, ["fig4a-digits / lr"])["fig4a-digits / lr"]
    cost = study_costs(trials)["fig4a-digits"]
    assert price.epochs == 5 and price.seconds_per_epoch == pytest.approx(cost.trial_seconds / cost.trial_epochs)
    p = price.of(9, 3)
    assert p["trial_epochs"] == 9 * 3 * 2 * 5
    assert p["hours"] == pytest.approx(270 * cost.trial_seconds / cost.trial_epochs / 3600)
