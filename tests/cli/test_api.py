"""The Python API: a study built from a dict with the file's validation, a run that returns what the command
would, and analyze() on any table of runs giving the same numbers as the report."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import supcon_ray
from supcon_ray.config import ConfigError
from views import numbers_of

ROOT = Path(__file__).resolve().parents[2]

TINY = {"study": "api-tiny", "dataset": "digits", "model": "resnet-mini", "losses": ["supcon", "ce"], "seeds": [0],
        "base": {"common": {"epochs": 1, "batch_size": 256, "augment": "basic", "train_size": 400, "test_size": 200},
                 "supcon": {"lr": 0.1, "linear_stage": "cached", "linear_epochs": 2}, "ce": {"lr": 0.1}},
        "vary": {"optimizer": ["sgd"]},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "max_concurrent_trials": 2}}


def test_a_study_from_a_dict_is_validated_like_a_file(tmp_path):
    study = supcon_ray.load_study(TINY)
    assert study.study == "api-tiny" and study.losses == ["supcon", "ce"]
    bad = {**TINY, "vary": {"optimizer": ["sgd", {"optimizer": "adam"}]}}
    with pytest.raises(ConfigError, match=r"vary\.optimizer\[1\]\.optimizer: unknown optimizer 'adam'; must be one of"):
        supcon_ray.load_study(bad)
    (tmp_path / "data").mkdir()
    relative = {**TINY, "dataset": "parquet:data"}
    assert supcon_ray.load_study(relative, folder=tmp_path).folder == str(tmp_path.resolve())
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(TINY))  # JSON is YAML
    assert supcon_ray.load_study(path).study == "api-tiny"


def _table(rng, names=("loss", "factor", "setting", "seed", "test_top1")) -> pd.DataFrame:
    rows = []
    for loss, spread in (("ce", 0.06), ("supcon", 0.01)):
        for i, setting in enumerate(["a", "b", "c", "d"]):
            effect = spread * (i - 1.5)
            for seed in range(3):
                rows.append(dict(zip(names, (loss, "optimizer", setting, seed, 0.8 + effect + rng.normal(0, 0.004)))))
    return pd.DataFrame(rows)


def test_analyze_a_hand_built_table_gives_the_reports_numbers():
    table = _table(np.random.default_rng(1))
    numbers = supcon_ray.analyze(table)
    expected = numbers_of(table.assign(status="completed", study="study", design="one_factor"), "test_top1",
                          with_importance=False).to_json()
    assert numbers == json.loads(json.dumps(expected))
    (entry,) = numbers["factors"]
    assert (entry["baseline"], entry["method"]) == ("ce", "supcon")
    assert entry["these_settings"]["claim"] == "supcon_less_sensitive"
    assert numbers["overall_by_method"]["supcon"]["these_settings"]["ratio"] == entry["these_settings"]["ratio"]


def test_analyze_a_study_folder_gives_exactly_what_report_json_writes(tmp_path):
    """A folder's numbers through the API carry what only the folder knows (the tuned bases with their
    margins, the notes of its manifest), as ``report --json`` writes them; a missing folder says so."""
    from supcon_ray.report import main

    folder = ROOT / "docs" / "results" / "fig4a-digits"
    assert main([str(folder), "-o", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")]) == 0
    numbers = supcon_ray.analyze(folder)
    assert numbers == json.loads((tmp_path / "r.json").read_text())
    assert numbers["bases"]["fig4a-digits"] and numbers["notes"]
    with pytest.raises(ConfigError, match="no such folder"):
        supcon_ray.analyze(tmp_path / "missing")


def test_analyze_reads_another_tables_columns_through_a_mapping_and_names_a_missing_one():
    names = ("method", "hyperparameter", "value", "replicate", "acc")
    table = _table(np.random.default_rng(1), names)
    mapping = {"loss": "method", "factor": "hyperparameter", "setting": "value", "seed": "replicate"}
    numbers = supcon_ray.analyze(table, metric="acc", columns=mapping)
    plain = supcon_ray.analyze(_table(np.random.default_rng(1)))
    assert numbers["factors"][0]["these_settings"] == plain["factors"][0]["these_settings"]
    with pytest.raises(ConfigError, match=r"columns: seed=rep: the table has no column 'rep'; it has: method"):
        supcon_ray.analyze(table, metric="acc", columns={**mapping, "seed": "rep"})
    with pytest.raises(ConfigError, match="column 'loss' is missing"):
        supcon_ray.analyze(table, metric="acc")
    with pytest.raises(ConfigError, match="column 'status': row 0 holds 'ok'; must be one of: completed, diverged, failed"):
        supcon_ray.analyze(table.assign(status="ok"), metric="acc", columns=mapping)
    flipped = supcon_ray.analyze(table, metric="acc", columns=mapping, baseline="supcon")
    assert math.isclose(flipped["factors"][0]["these_settings"]["ratio"],
                        1 / numbers["factors"][0]["these_settings"]["ratio"], rel_tol=1e-6)


@pytest.mark.ray
def test_run_returns_the_folder_the_outcome_and_the_commands_exit_status(ray_session, tmp_path):
    run = supcon_ray.run(TINY, storage=str(tmp_path / "results"))
    assert run.exit_status == 0 and run.error is None and run.outcome.failed == 0
    assert Path(run.folder, "report.html").is_file()
    trials = supcon_ray.read_trials(run.folder)
    assert len(trials) == 2 and trials["analysed"].all()
    again = supcon_ray.run(TINY, storage=str(tmp_path / "results"))  # not --resume: refused, nothing run
    assert again.exit_status == 2 and "--resume" in again.error
    assert supcon_ray.run(TINY, storage=str(tmp_path / "results"), resume=True).exit_status == 0
    assert len(supcon_ray.read_trials(run.folder)) == 2
