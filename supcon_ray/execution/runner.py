"""Running a study's trials on Ray Tune and recording each one in Parquet.

Every trial is a Ray Tune function trial that trains one :class:`TrainConfig`:

* ``workers_per_trial > 1`` (or ``launcher: ray_train``): the trial launches a Ray Train
  ``TorchTrainer`` run named after the trial id (so a retried trial resumes its own checkpoints)
  and reserves only :data:`~supcon_ray.execution.ray_runtime.TRIAL_DRIVER_CPUS` for itself.
* one worker with ``launcher: auto``: the trial trains inside the Tune trial process, reserving
  the worker's CPUs/GPUs, and checkpoints through ``ray.tune.report``. This skips the ~20 s that
  starting a TorchTrainer costs on a small machine (see docs/performance.md).

When a trial ends, its row and epochs are written to Parquet (:class:`ResultStore`); a trial whose
row already exists returns it without training, so retries and resumed studies never duplicate.

Tune reuses trial processes (``reuse_actors``): a trial that finds a process already warm skips
starting one and importing torch, which is most of a trial's start-up. Each inline trial first
puts back the process state a fresh process has (:func:`reset_process_state`), so results are
bit-identical to a fresh process (``weights_digest``; ``process_trials_before`` says how many
trials the process ran before this one).
"""

from __future__ import annotations

import math
import os
import tempfile
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from supcon_ray import __version__
from supcon_ray.config import TrainConfig
from supcon_ray.execution.ray_runtime import TRIAL_DRIVER_CPUS
from supcon_ray.results.storage import ResultStore
from supcon_ray.study import Phase, Study, tpe_spec, train_config
from supcon_ray.study.protocol import Block, tpe_step1_spec

#: Trials this process has run before the current one (0: a fresh process).
_trials_in_process = 0
#: The environment when this process ran its first trial, restored before every later one.
_first_environ: dict[str, str] | None = None
FINAL_KEYS = ("status", "test_top1", "val_top1", "train_loss", "seconds", "world_size")


def uses_ray_train(cfg: TrainConfig, launcher: str) -> bool:
    return launcher == "ray_train" or cfg.workers > 1


def trial_resources(cfg: TrainConfig, launcher: str) -> dict[str, float]:
    """What the Tune trial itself reserves."""
    if uses_ray_train(cfg, launcher):
        return {"CPU": TRIAL_DRIVER_CPUS}
    res = {"CPU": cfg.cpus_per_worker}
    if cfg.gpus_per_worker:
        res["GPU"] = cfg.gpus_per_worker
    return res


def _versions() -> dict[str, str]:
    import ray
    import torch

    return {"supcon_ray_version": __version__, "torch_version": torch.__version__, "ray_version": ray.__version__}


def trial_row(spec: dict[str, Any], result: dict[str, Any], started: datetime, finished: datetime,
              node_id: str | None, study: str, error: str | None = None) -> dict[str, Any]:
    """The Parquet row of a finished (or failed) trial."""
    phase = spec.get("phase", Phase.STUDY)
    row = {**spec["train"], "study": study, "trial_id": spec["trial_id"], "loss": spec["loss"], "seed": spec["seed"],
           "factor": spec["factor"], "setting": spec["setting"], "design": spec["design"],
           # nuisance trials enter the statistics only if selected (the manifest's analysed list)
           "phase": None if phase is None else str(phase), "in_stats": phase == Phase.STUDY,
           "sampler_seed": spec.get("sampler_seed"), "node_id": node_id, "started_at": started,
           "finished_at": finished, "error": error, **_versions()}
    for key in ("status", "test_top1", "val_top1", "train_loss", "linear_train_loss", "chance_top1",
                "diverged_stage", "diverged_epoch", "seconds", "world_size", "weights_digest", "resumed_from",
                "run_started_unix", "first_batch_unix", "last_batch_unix", "process_trials_before", "val_images",
                "test_images", "epochs_run"):
        row[key] = result.get(key)
    seconds, workers = result.get("seconds"), result.get("world_size")
    row["device_seconds"] = seconds * workers if seconds is not None and workers else None
    return row


def reset_process_state(cfg: TrainConfig) -> int:
    """Make a reused trial process look fresh to the trial about to run; return how many ran before it.

    Restores what a trial can change and a fresh process would not have: environment variables it
    set (Ray's own ``RAY_*`` / ``TUNE_*`` excepted: Ray sets those per trial), torch's thread count,
    grad mode, default dtype, anomaly detection and determinism flags. Seeds need nothing here: the
    training loop seeds torch from the config, and the global Python / NumPy generators are not used
    for anything that decides a result. Memory the last trial held is released.
    """
    import gc

    import torch

    global _trials_in_process, _first_environ
    before = _trials_in_process
    _trials_in_process += 1
    if _first_environ is None:
        _first_environ = dict(os.environ)
    else:
        for key in set(os.environ) - set(_first_environ):
            if not key.startswith(("RAY_", "TUNE_")):
                del os.environ[key]
        for key, value in _first_environ.items():
            if not key.startswith(("RAY_", "TUNE_")) and os.environ.get(key) != value:
                os.environ[key] = value
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.set_grad_enabled(True)
    torch.set_default_dtype(torch.float32)
    torch.autograd.set_detect_anomaly(False)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = False
    return before


def _train_inline(cfg: TrainConfig, trial_id: str) -> dict[str, Any]:
    """Train in this Tune trial process, checkpointing through Tune."""
    import ray.tune
    import torch

    from supcon_ray.engine.checkpoint import load_state, save_state
    from supcon_ray.engine.trainer import Session, train
    from supcon_ray.execution.fault_injection import pause_after_first_checkpoint

    before = reset_process_state(cfg)
    state = None
    checkpoint = ray.tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_state(d)

    first_attempt = [checkpoint is None]

    def reporter(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        with tempfile.TemporaryDirectory() as d:
            save_state(state, d)
            ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(d))
        if first_attempt[0]:  # a fault-injection test may hold the trial here (off unless its variable is set)
            first_attempt[0] = False
            pause_after_first_checkpoint(trial_id, ray.get_runtime_context().get_node_id())

    device = torch.device("cuda" if cfg.gpus_per_worker > 0 and torch.cuda.is_available() else "cpu")
    return train(cfg, Session(reporter, device=device, resume_state=state)) | {"process_trials_before": before}


def spec_of(config: dict[str, Any], tpe: tuple | None) -> dict[str, Any]:
    """The trial spec of a Tune config: planned (``config["spec"]``) or a TPE suggestion.

    ``tpe``: ``(study as a dict, loss)`` for the ``search`` block, optionally followed by the block
    (a :class:`~supcon_ray.study.protocol.Block`) and the loss's tuned base values (step 2 only).
    """
    if tpe is None:
        return config["spec"]
    study_dict, loss, *rest = tpe
    block = rest[0] if rest else Block.SEARCH
    tuned = rest[1] if len(rest) > 1 else None
    if block == Block.TUNE_BASE:
        return asdict(tpe_step1_spec(Study(**study_dict), loss, config))
    return asdict(tpe_spec(Study(**study_dict), loss, config, tuned))


def run_trial(config: dict[str, Any], storage: str, study: str, launcher: str, max_failures: int,
              tpe: tuple | None = None, plugins: list[dict] | None = None) -> None:
    """The Ray Tune trainable: train the trial's spec once and record it.

    ``tpe``: see :func:`spec_of`, when ``config`` is a TPE suggestion; ``plugins``: the study's plugin
    sources (:class:`supcon_ray.plugins.PluginSource` as dicts), loaded here before anything reads a name.
    """
    import ray
    import ray.tune

    if plugins:
        from supcon_ray.plugins import activate

        activate(plugins)

    spec = spec_of(config, tpe)
    store = ResultStore(storage, study)
    if spec["trial_id"] in store.finished_ids():  # already recorded (a retry, or a resumed study)
        row = store.read_trial(spec["trial_id"])
        ray.tune.report({k: row[k] for k in FINAL_KEYS} | {"final": True})
        return
    cfg = train_config(spec)
    started = datetime.now(timezone.utc)
    node_id = ray.get_runtime_context().get_node_id()
    if uses_ray_train(cfg, launcher):
        from ray.tune.integration.ray_train import TuneReportCallback

        from supcon_ray.execution.distributed import fit_distributed

        result = fit_distributed(cfg, spec["trial_id"], f"{store.uri}/runs", callbacks=[TuneReportCallback()],
                                 max_failures=max_failures, reserved_cpus=TRIAL_DRIVER_CPUS, plugins=plugins)
        node_id = result.get("node_id", node_id)
    else:
        result = _train_inline(cfg, spec["trial_id"])
    row = trial_row(spec, result, started, datetime.now(timezone.utc), node_id, study)
    store.write_trial(row, result["history"])
    if uses_ray_train(cfg, launcher):  # its row is written: a retry returns the row, never these checkpoints
        from supcon_ray.execution.disk import remove_run

        remove_run(f"{store.uri}/runs", spec["trial_id"])
    # "final": the row is in Parquet (TuneEvents then removes this trial's Tune checkpoints)
    ray.tune.report({k: row[k] for k in FINAL_KEYS} | {"final": True})


def record_failures(store: ResultStore, errors: dict[str, tuple[dict[str, Any], str]], study: str) -> int:
    """Write a ``failed`` row for every errored trial that has no row yet; return how many."""
    done = store.finished_ids()
    now = datetime.now(timezone.utc)
    n = 0
    for trial_id, (spec, error) in errors.items():
        if trial_id in done:
            continue
        result = {"status": "failed", "test_top1": math.nan, "val_top1": math.nan}
        store.write_trial(trial_row(spec, result, now, now, None, study, error), [])
        n += 1
    return n


def error_text(err: BaseException | None) -> str:
    if err is None:
        return "unknown error"
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    return text[-2000:]


def default_concurrency(per_trial_cpus: float, per_trial_gpus: float) -> int:
    """How many trials fit on the cluster at once, by CPUs and GPUs."""
    from supcon_ray.execution.ray_runtime import cluster_capacity

    cap = cluster_capacity()
    by_cpu = int((cap.cpus + 1e-9) // per_trial_cpus) if per_trial_cpus else 10**6
    by_gpu = int((cap.gpus + 1e-9) // per_trial_gpus) if per_trial_gpus else 10**6
    return max(1, min(by_cpu, by_gpu))


def storage_uri(storage: str) -> str:
    return storage if "://" in storage else os.path.abspath(storage)
