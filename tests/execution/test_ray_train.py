"""Ray Train (CPU, gloo): 2-worker runs, exact resume, divergence, fail-fast resources."""

import json

import pytest

from supcon_ray.config import TrainConfig
from supcon_ray.execution.distributed import fit_distributed
from supcon_ray.train import main

pytestmark = pytest.mark.ray
SMALL = dict(dataset="digits", model="resnet-mini", batch_size=128, augment="basic", cpus_per_worker=0.5,
             train_size=400, test_size=200)


def test_two_worker_supcon_end_to_end(ray_session, tmp_path, capsys):
    code = main(["--loss", "supcon", "--workers", "2", "--cpus-per-worker", "0.5", "--epochs", "2",
                 "--linear-epochs", "5", "--batch-size", "128", "--augment", "basic", "--train-size", "600",
                 "--output", str(tmp_path), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["world_size"] == 2 and out["status"] == "completed"
    assert out["test_top1"] > 0.3  # chance is 0.1


class StopAfterReports:
    """A Ray Train callback that aborts the run after ``n`` reports (a stand-in for a crash)."""

    def __new__(cls, n):
        from ray.train import UserCallback

        class _Stop(UserCallback):
            def __init__(self):
                self.seen = 0

            def after_report(self, run_context, metrics, checkpoint):
                self.seen += 1
                if self.seen == n:
                    raise RuntimeError("stopped by test")

        return _Stop()


def test_resume_after_stop_matches_uninterrupted(ray_session, tmp_path):
    cfg = TrainConfig(loss="ce", epochs=3, workers=2, **SMALL)
    full = fit_distributed(cfg, "full", str(tmp_path))
    with pytest.raises(Exception):
        fit_distributed(cfg, "interrupted", str(tmp_path), callbacks=[StopAfterReports(2)])
    resumed = fit_distributed(cfg, "interrupted", str(tmp_path))
    assert full["resumed_from"] is None and resumed["resumed_from"] == "ce:2"  # it resumed, from the last checkpoint
    assert resumed["weights_digest"] == full["weights_digest"]
    assert resumed["test_top1"] == full["test_top1"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]
    assert len(resumed["history"]) == 3


def test_absurd_lr_is_recorded_as_diverged(ray_session, tmp_path):
    cfg = TrainConfig(loss="supcon", epochs=2, linear_epochs=2, workers=2, lr=1e12, **SMALL)
    result = fit_distributed(cfg, "diverge", str(tmp_path))
    assert result["status"] == "diverged" and result["diverged_epoch"] >= 1
    assert result["test_top1"] == pytest.approx(0.1)


def test_infeasible_resources_exit_2_before_any_worker_is_asked_for(ray_session, capsys, monkeypatch):
    import ray.train.torch

    def no_trainer(*args, **kwargs):  # Ray Train would wait for the workers forever
        raise AssertionError("a TorchTrainer was started for a request the cluster cannot hold")

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", no_trainer)
    assert main(["--workers", "3", "--cpus-per-worker", "1", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "asked for 3 worker(s) x (1 CPU, 0 GPU)" in err and "2 CPU and 0 GPU over 1 node(s)" in err


def test_a_two_worker_run_prints_its_epochs_as_it_goes(tmp_path):
    """``train --workers 2`` shows rank 0's epoch lines (it printed nothing for about 30 s, then its result)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "supcon_ray.train", "--loss", "ce", "--workers", "2",
                           "--cpus-per-worker", "0.5", "--epochs", "2", "--batch-size", "64", "--augment", "basic",
                           "--train-size", "300", "--test-size", "100", "--output", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if "[ce] epoch " in ln]
    assert [ln.split("[ce] epoch ", 1)[1].split(":")[0] for ln in lines] == ["1", "2"], done.stderr[-3000:]
    assert "ce: status=completed" in done.stdout
    # no harmless red lines on one machine: Ray Train's preemption watcher (for clusters' draining nodes)
    # logged a core_worker.cc error on every run; DDP's channels-last stride hint on every worker
    assert "PreemptionWatcher" not in done.stderr and "Grad strides do not match" not in done.stderr
