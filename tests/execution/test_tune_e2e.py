"""A tiny real study on digits end to end, and a study killed mid-way then resumed."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from supcon_ray.results.manifest import read_manifest
from supcon_ray.study.protocol import BASE_FROM_FILE, BASE_FROM_STEP1
from supcon_ray.results.storage import EPOCH_SCHEMA, TRIAL_SCHEMA
from supcon_ray.tune import main

pytestmark = pytest.mark.ray

TINY = """
study: tiny
dataset: digits
model: resnet-mini
losses: [supcon, ce]
seeds: [0]
base:
  common: {epochs: 1, batch_size: 256, augment: basic, train_size: 400, test_size: 200}
  supcon: {lr: 0.1, linear_stage: cached, linear_epochs: 2}
  ce: {lr: 0.1}
vary:
  optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 2, max_failures: 1}
"""


def _study(tmp_path, text=TINY):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_tiny_study_records_every_trial_once(ray_session, tmp_path, capsys):
    space = _study(tmp_path)
    storage = tmp_path / "results"
    assert main(["--space", str(space), "--storage", str(storage), "--no-report"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "SupCon" in out and "CE" in out and str(storage / "tiny") in out
    # not a terminal: plain lines, one per finished trial, then the summary; none of Ray's own output
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", captured.out + captured.err), "control characters"
    per_trial = [ln for ln in out.splitlines() if re.match(r"\[\d/4\] ", ln)]
    assert len(per_trial) == 4 and all("completed" in ln and "test_top1 0." in ln for ln in per_trial), out
    assert out.index("[4/4]") < out.index("test_top1 mean") < out.index("results:")
    assert "progress: 4/4 trials done, 0 running, 0 failed" in out
    for noise in ("== Status ==", "Checkpoint successfully created", "Ray deduplicates logs",
                  "Experiment state snapshotting"):
        assert noise not in captured.out + captured.err, noise
    trials = pd.read_parquet(storage / "tiny" / "trials")
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert set(trials["loss"]) == {"supcon", "ce"}
    assert set(trials["setting"]) == {"optimizer=sgd", "optimizer=rmsprop,lr=0.01"}
    assert (trials["status"] == "completed").all() and trials["test_top1"].between(0, 1).all()
    assert list(trials.columns) == TRIAL_SCHEMA.names
    assert trials["node_id"].notna().all() and trials["torch_version"].notna().all()
    # no tuning stage: every trial is an ordinary step-2 trial, and the bases are the file's
    assert set(trials["phase"]) == {"study"} and trials["in_stats"].all()
    assert {loss: rec["source"] for loss, rec in read_manifest(str(storage / "tiny")).bases.items()} == {
        "supcon": BASE_FROM_FILE, "ce": BASE_FROM_FILE}
    # what it cost: every row records its epochs and device time, the manifest and the summary the whole study
    assert trials["epochs_run"].eq(1).all() and trials["device_seconds"].gt(0).all()
    cost = read_manifest(str(storage / "tiny")).cost
    assert cost["trials"] == 4 and cost["trial_epochs"] == 4 and cost["disk_bytes"] > 0
    assert re.search(r"^cost: 4 trials, 4 trial-epochs, .* no selection runs; [0-9.]+ (kB|MB) on disk$", out, re.M), out
    # disk kept to what resume needs: no finished trial keeps a checkpoint (a 3 MB file per epoch before)
    assert not list((storage / "tiny").rglob("checkpoint.pt")), "finished trials' checkpoints were left behind"
    # Tune's own logs: result.json per trial (its ResultGrid reads it back), no CSV, and TensorBoard event
    # files only with `tracking.tensorboard` (tensorboardX is installed here, so Tune's defaults would write them)
    assert len(list((storage / "tiny").rglob("result.json"))) == 4
    assert not list((storage / "tiny").rglob("events.out.tfevents.*")) and not list((storage / "tiny").rglob("progress.csv"))
    assert "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS" not in os.environ  # set for the run only
    epochs = ds.dataset(storage / "tiny" / "epochs").to_table()
    assert epochs.schema.names == EPOCH_SCHEMA.names
    per_trial = epochs.to_pandas().groupby("trial_id").size().to_dict()
    assert per_trial == {t: (3 if t.startswith("supcon") else 1) for t in trials["trial_id"]}
    # the same storage again, without --resume, refuses instead of mixing two runs
    assert main(["--space", str(space), "--storage", str(storage), "--no-report"]) == 2
    # with --resume, nothing is run twice
    capsys.readouterr()
    assert main(["--space", str(space), "--storage", str(storage), "--resume", "--no-report"]) == 0
    assert len(pd.read_parquet(storage / "tiny" / "trials")) == 4
    again = capsys.readouterr().out
    assert "step 1 already recorded" not in again  # there was no step 1
    # bases given in the study file are shown with their values
    assert "  SupCon   lr=0.1, linear_stage=cached, linear_epochs=2  [given in the study file]" in again, again
    assert "  CE       lr=0.1  [given in the study file]" in again


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run (zombies excluded: they can write nothing), from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(stat.parent.name))
    return alive


def _wait_until_gone(pgid: int) -> None:
    """Return once no process of the group ``pgid`` runs (SIGKILL is sent to all at once, but takes effect
    as each is next scheduled)."""
    for _ in range(600):
        if not _live_members(pgid):
            return
        time.sleep(0.1)
    pytest.fail(f"processes {_live_members(pgid)} of group {pgid} outlived SIGKILL by 60 s")


def test_killed_study_resumes_without_loss_or_duplicates(tmp_path):
    text = TINY.replace("epochs: 1,", "epochs: 3,").replace("seeds: [0]", "seeds: [0, 1]")
    space = _study(tmp_path, text)
    storage = tmp_path / "results"
    trials_dir = storage / "tiny" / "trials"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "supcon_ray.tune", "--space", str(space), "--storage", str(storage), "--no-report"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # the kill lands after 2 of 8 trials are recorded (a trial of 3 epochs takes seconds; 8 take far longer
        # than the gap between two polls); the deadline only bounds a broken run and fails it by name
        deadline = time.monotonic() + 600
        while not (trials_dir.is_dir() and len(list(trials_dir.glob("*.parquet"))) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the study {'ended' if proc.poll() is not None else 'recorded < 2 trials in 600 s'} "
                            "before it could be interrupted")
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started
        proc.wait(timeout=60)
        _wait_until_gone(proc.pid)  # no trial process of the group can still write
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    recorded = {p.name for p in trials_dir.glob("*.parquet")}
    assert 2 <= len(recorded) < 8
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(recorded)} already recorded" in done.stdout
    trials = pd.read_parquet(trials_dir)
    assert len(trials) == 8 and trials["trial_id"].is_unique
    assert (trials["status"] == "completed").all()
    assert not list((storage / "tiny" / ".tmp").glob("*")), "no half-written files left behind"
    # the trials resumed from their checkpoints, then removed them once their rows were written
    assert not list((storage / "tiny").rglob("checkpoint.pt")), "finished trials' checkpoints were left behind"
    # the restored run keeps this project's loggers: no Tune CSV or TensorBoard files appear on resume
    assert not list((storage / "tiny").rglob("progress.csv")) and not list((storage / "tiny").rglob("events.out.tfevents.*"))
    assert len(list((storage / "tiny").rglob("result.json"))) >= 8


FIDELITY = TINY.replace("epochs: 1,", "epochs: 4,").replace("vary:", """tune_base:
  sampler: qmc
  budget: 4
  seeds: [1000]
  space: {lr: {loguniform: [0.01, 1.0]}}
  fidelity: {min_epochs: 1, reduction_factor: 2}
vary:""").replace("optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]", "optimizer: [sgd]")


def test_a_killed_study_with_fidelity_resumes_without_re_deciding_a_rung(tmp_path, capsys):
    """Successive halving in step 1 (4 configurations at 1 epoch, the best 2 at 2 epochs, per loss), killed
    once a rung is recorded and resumed: every rung recorded before the kill stands, nothing runs twice, the
    analysed runs train at full length, and the cost says what full fidelity would have cost."""
    import json

    space = _study(tmp_path, FIDELITY)
    storage = tmp_path / "results"
    manifest_file = storage / "tiny" / "manifest.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "supcon_ray.tune", "--space", str(space), "--storage", str(storage), "--no-report"]

    def rungs() -> dict:
        try:
            return json.loads(manifest_file.read_text())["decisions"].get("rungs") or {}
        except (OSError, ValueError, KeyError):
            return {}

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not any(rungs().values()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the study ended (or ran 600 s) before a rung was recorded")
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        _wait_until_gone(proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = rungs()
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads(manifest_file.read_text())
    after = manifest["decisions"]["rungs"]
    for name, decided in before.items():
        assert after[name][:len(decided)] == decided, name  # recorded once, never decided again
    trials = pd.read_parquet(storage / "tiny" / "trials")
    assert trials["trial_id"].is_unique and (trials["status"] == "completed").all()
    planned = [i for ids in manifest["stages"].values() for i in ids]
    assert sorted(trials["trial_id"]) == sorted(planned)
    step1 = trials[trials["phase"] == "tune_base"]
    assert step1.groupby(["loss", "epochs"]).size().to_dict() == {(loss, e): n for loss in ("ce", "supcon")
                                                                  for e, n in ((1, 4), (2, 2))}
    for loss, rec in manifest["decisions"]["bases"].items():
        assert rec["fidelity"]["epochs"] == 2 and [r["epochs"] for r in after[f"tune_base/{loss}"]] == [1, 2]
        picked = step1[step1["trial_id"].isin(rec["trial_ids"])]
        assert (picked["epochs"] == 2).all() and rec["values"]["lr"] == pytest.approx(picked["lr"].iloc[0])
    assert (trials[trials["phase"] == "study"]["epochs"] == 4).all()  # analysed runs at full length
    # 2 x (4 x 1 + 2 x 2) = 16 selection epochs where full fidelity trains 2 x 4 x 4 = 32; the 2 analysed runs 8
    assert manifest["cost"]["trial_epochs"] == 24 and manifest["cost"]["full_fidelity_epochs"] == 40
    assert "with every selection run at full length 40 trial-epochs (this study trained 60% of them)" in done.stdout
    # the progress total is what this sitting ran: each later rung counted once, not its earlier rungs again
    counts = re.findall(r"progress: (\d+)/(\d+) trials done", done.stdout)
    assert counts and counts[-1][0] == counts[-1][1] and all(int(a) <= int(b) for a, b in counts), counts
    # the report says how each base was picked, and the same cost
    from supcon_ray.report import main as report

    capsys.readouterr()
    assert report([str(storage / "tiny"), "--markdown", "-"]) == 0
    page = capsys.readouterr().out
    assert page.count("(successive halving, won at 2 epochs)") == 2, page
    assert "with every selection run at full length 40 trial-epochs" in page


def test_tpe_search_runs_one_search_per_loss(ray_session, tmp_path):
    text = TINY.replace("vary:\n  optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]",
                        "search:\n  sampler: tpe\n  num_samples: 2\n  seed: 7\n  space: {lr: {loguniform: [0.01, 0.5]}}\n")
    text = text.replace("seeds: [0]", "seeds: [0, 1]").replace("losses: [supcon, ce]", "losses: [ce]")
    text += "tune_base: {sampler: tpe, budget: 2, space: {weight_decay: {loguniform: [1.0e-5, 1.0e-3]}}}\n"
    storage = tmp_path / "results"
    assert main(["--space", str(_study(tmp_path, text)), "--storage", str(storage), "--no-report"]) == 0
    everything = pd.read_parquet(storage / "tiny" / "trials")
    # step 1 is a TPE search too (2 configurations x 1 seed); step 2 starts from its best
    step1 = everything[everything["phase"] == "tune_base"]
    assert len(step1) == 2 and set(step1["design"]) == {"tune_base:tpe"} and not step1["in_stats"].any()
    manifest = read_manifest(str(storage / "tiny"))
    base = manifest.bases["ce"]
    assert base["source"] == BASE_FROM_STEP1 and base["mean"] == step1["val_top1"].max()
    trials = everything[everything["phase"] == "study"]
    assert (trials["weight_decay"] == base["values"]["weight_decay"]).all()
    assert len(trials) == 4 and everything["trial_id"].is_unique  # 2 suggestions x 2 seeds
    assert set(trials["design"]) == {"search:tpe"} and set(trials["sampler_seed"]) == {7}
    assert sorted(trials["seed"]) == [0, 0, 1, 1]
    assert trials.groupby("setting")["seed"].nunique().eq(2).all()  # each suggestion replicated over seeds
    # the manifest lists what each adaptive search ran, and the statistics read exactly the search's trials
    assert sorted(manifest.steps["tune_base"]) == sorted(step1["trial_id"])
    assert sorted(e["trial_id"] for e in manifest.analysed) == sorted(trials["trial_id"])


def test_two_worker_trials_go_through_ray_train(ray_session, tmp_path):
    text = TINY.replace("vary:\n  optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]", "vary:\n  optimizer: [sgd]")
    text = text.replace("losses: [supcon, ce]", "losses: [supcon]")
    text = text.replace("workers_per_trial: 1, cpus_per_worker: 1", "workers_per_trial: 2, cpus_per_worker: 0.5")
    storage = tmp_path / "results"
    assert main(["--space", str(_study(tmp_path, text)), "--storage", str(storage), "--no-report"]) == 0
    trials = pd.read_parquet(storage / "tiny" / "trials")
    assert len(trials) == 1 and trials["world_size"].tolist() == [2] and trials["status"].tolist() == ["completed"]
    epochs = pd.read_parquet(storage / "tiny" / "epochs")
    assert epochs["stage"].tolist() == ["pretrain", "linear", "linear"]
    # its row is written: the Ray Train run's checkpoints and state are gone, two workers' time is counted twice
    assert not list((storage / "tiny").rglob("checkpoint.pt")) and not list((storage / "tiny" / "runs").glob("*"))
    assert trials["epochs_run"].tolist() == [1]
    assert trials["device_seconds"].iloc[0] == pytest.approx(2 * trials["seconds"].iloc[0])


def test_trials_that_fail_before_reporting_are_recorded_as_failed(ray_session, tmp_path, capsys):
    """No trial ever reports (its Tune result has no config): each is recorded ``failed`` with its
    error from the plan, the summary is printed, and the exit status is 1, without a traceback."""
    broken = tmp_path / "absent"  # files that exist (so the study starts) but cannot be read
    broken.mkdir()
    for split in ("train", "test"):
        (broken / f"{split}.parquet").write_bytes(b"not parquet")
    text = TINY.replace("dataset: digits", f"dataset: 'parquet:{broken}'").replace("losses: [supcon, ce]", "losses: [ce]")
    storage = tmp_path / "results"
    assert main(["--space", str(_study(tmp_path, text)), "--storage", str(storage), "--no-report"]) == 1
    captured = capsys.readouterr()
    trials = pd.read_parquet(storage / "tiny" / "trials")
    assert len(trials) == 2 and (trials["status"] == "failed").all()
    assert trials["error"].str.contains("absent").all(), trials["error"].tolist()
    assert set(trials["setting"]) == {"optimizer=sgd", "optimizer=rmsprop,lr=0.01"} and set(trials["loss"]) == {"ce"}
    assert "test_top1 mean" in captured.out and "results:" in captured.out
    assert len([ln for ln in captured.out.splitlines() if re.match(r"\[\d/2\] CE .* failed ", ln)]) == 2
    assert "Traceback" not in captured.out + captured.err
    assert "2 trial(s) failed" in captured.err and "--resume" in captured.err


def test_a_reused_trial_process_gives_bit_identical_results(ray_session, tmp_path):
    """The same CE trial, run first in a fresh trial process and then in a process that has just run a
    SupCon trial (Tune reuses it), ends with the same weights bit for bit."""
    one = TINY.replace("vary:\n  optimizer: [sgd, {optimizer: rmsprop, lr: 0.01}]", "vary:\n  optimizer: [sgd]")
    one = one.replace("max_concurrent_trials: 2", "max_concurrent_trials: 1")
    fresh_storage, reused_storage = tmp_path / "fresh", tmp_path / "reused"
    assert main(["--space", str(_study(tmp_path, one.replace("losses: [supcon, ce]", "losses: [ce]"))),
                 "--storage", str(fresh_storage), "--no-report"]) == 0
    assert main(["--space", str(_study(tmp_path, one)), "--storage", str(reused_storage), "--no-report"]) == 0
    fresh = pd.read_parquet(fresh_storage / "tiny" / "trials").set_index("loss")
    reused = pd.read_parquet(reused_storage / "tiny" / "trials").set_index("loss")
    assert fresh.loc["ce", "process_trials_before"] == 0
    # one process ran both trials, SupCon first (plan order, one at a time), so CE's run is the reused one
    assert reused.loc["supcon", "process_trials_before"] == 0 and reused.loc["ce", "process_trials_before"] == 1
    assert fresh.loc["ce", "trial_id"] == reused.loc["ce", "trial_id"]
    assert isinstance(fresh.loc["ce", "weights_digest"], str) and len(fresh.loc["ce", "weights_digest"]) > 8
    assert fresh.loc["ce", "weights_digest"] == reused.loc["ce", "weights_digest"]
    assert fresh.loc["ce", "test_top1"] == reused.loc["ce", "test_top1"]
    # each row records the images its accuracies are scored on (the base margin's standard error reads them)
    n_val, n_test = int(fresh.loc["ce", "val_images"]), int(fresh.loc["ce", "test_images"])
    assert n_val > 0 and n_test > 0
    assert abs(fresh.loc["ce", "val_top1"] * n_val - round(fresh.loc["ce", "val_top1"] * n_val)) < 1e-6


def test_an_experiment_killed_as_it_started_is_started_afresh_not_restored(tmp_path):
    """A kill in the moment after a Tuner starts leaves its folder with ``tuner.pkl`` alone (seen when a study
    with fidelity was killed as a rung began); restoring it started trials without their configuration."""
    from supcon_ray.execution.executor import restorable

    started = tmp_path / "tune-base-1"
    started.mkdir()
    (started / "tuner.pkl").write_bytes(b"")
    assert not restorable(str(started))
    (started / "experiment_state-2026-12-06_16-12-39.json").write_text("{}")
    assert restorable(str(started))
    assert not restorable(str(tmp_path / "absent"))


def test_a_folder_made_with_tunes_default_loggers_gets_them_back_when_restored(tmp_path):
    """Tune's defaults (CSV, JSON, TensorBoard) are off for runs made now, which name their JSON logger; a
    restored run keeps the callbacks it was made with, so one made before (its trials hold progress.csv)
    needs the defaults back, or its trials would write no result.json and Tune would warn of every one."""
    from supcon_ray.execution.executor import made_with_default_loggers

    made = tmp_path / "tune"
    (made / "ce-optimizer-sgd-s0-1234-abcde_00000").mkdir(parents=True)
    (made / "ce-optimizer-sgd-s0-1234-abcde_00000" / "result.json").write_text("{}\n")
    assert not made_with_default_loggers(str(made)) and not made_with_default_loggers(f"file://{made}")
    (made / "ce-optimizer-sgd-s0-1234-abcde_00000" / "progress.csv").write_text("a\n1\n")
    assert made_with_default_loggers(str(made)) and made_with_default_loggers(f"file://{made}")
    assert made_with_default_loggers("s3://bucket/results/study/tune")
