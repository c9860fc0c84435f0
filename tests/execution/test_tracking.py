"""Experiment tracking through Ray Tune's integrations: every trial one MLflow run with its configuration,
per-epoch and final metrics and tags, read back with MLflow's own client; a resumed study logs no
recorded trial twice; without MLflow installed a study that asks for it exits 2 saying what to install."""

import importlib.util
import textwrap

import pytest

from supcon_ray.config import ConfigError
from supcon_ray.results.manifest import fingerprint
from supcon_ray.study import load_study
from supcon_ray.tune import main

STUDY = """
study: tracked
dataset: digits
model: resnet-mini
losses: [supcon, ce]
seeds: [0]
base:
  common: {epochs: 2, batch_size: 256, augment: basic, train_size: 400, test_size: 200}
  supcon: {lr: 0.1, linear_stage: cached, linear_epochs: 2}
  ce: {lr: 0.1}
vary:
  optimizer: [sgd]
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 2}
tracking: {mlflow: mlruns, tensorboard: true}
"""


@pytest.mark.ray
def test_every_trial_is_one_mlflow_run_and_a_resume_logs_none_twice(ray_session, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the test install has MLflow: pip install -e '.[test]'")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the client reads the folder store too
    from mlflow.tracking import MlflowClient

    space = tmp_path / "tracked.yaml"
    space.write_text(textwrap.dedent(STUDY))
    storage = tmp_path / "results"
    assert main(["--space", str(space), "--storage", str(storage), "--no-report"]) == 0
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and {r.data.tags["loss"] for r in runs} == {"supcon", "ce"}
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert tags["study"] == "tracked" and tags["factor"] == "optimizer" and tags["setting"] == "optimizer=sgd"
        assert tags["seed"] == "0" and tags["phase"] == "study" and run.info.run_name == tags["trial_id"]
        assert params["lr"] == "0.1" and params["epochs"] == "2" and params["loss"] == tags["loss"]
        assert 0 <= metrics["test_top1"] <= 1 and run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert len(history) >= 2  # every epoch's report, then the final one
    # TensorBoard event files beside Tune's trial directories
    assert list((storage / "tracked").rglob("events.out.tfevents.*"))
    # a resumed study runs nothing new and logs no recorded trial again
    assert main(["--space", str(space), "--storage", str(storage), "--resume", "--no-report"]) == 0
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_tracking_is_an_execution_setting_and_needs_its_packages(tmp_path, monkeypatch):
    space = tmp_path / "tracked.yaml"
    space.write_text(textwrap.dedent(STUDY))
    untracked = tmp_path / "plain.yaml"
    untracked.write_text(textwrap.dedent(STUDY).replace("tracking: {mlflow: mlruns, tensorboard: true}\n", ""))
    if importlib.util.find_spec("mlflow") and importlib.util.find_spec("tensorboardX"):
        study = load_study(space)
        assert study.tracking.mlflow_uri == (tmp_path / "mlruns").resolve().as_uri()
        assert fingerprint(study) == fingerprint(load_study(untracked))  # not part of what trials compute
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"tracking\.mlflow: needs MLflow, an optional extra: pip install -e '\.\[tracking\]'"):
        load_study(space)
