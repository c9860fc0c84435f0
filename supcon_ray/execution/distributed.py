"""Data-parallel training on Ray Train (Train V2): the per-worker loop and its launcher.

:func:`train_loop_per_worker` runs :func:`supcon_ray.engine.trainer.train` in each ``TorchTrainer``
worker (DistributedDataParallel, gloo on CPU, NCCL on GPU; the contrastive loss all-gathers
features so it sees the global batch). Each epoch it reports metrics through
``ray.train.report`` with a checkpoint from rank 0; a restarted run (same storage path and name)
resumes from the latest one. The final report carries the run's result with ``final=True`` (not ``done``: Tune stops a trial that reports ``done``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from supcon_ray.engine.checkpoint import load_state, save_state
from supcon_ray.config import TrainConfig
from supcon_ray.engine.trainer import Session, train
from supcon_ray.execution.ray_runtime import check_fits

RESULT_FILE = "result.json"


def _final_metrics(result: dict[str, Any]) -> dict[str, Any]:
    metrics = {k: v for k, v in result.items() if k != "history"}
    metrics["history_json"] = json.dumps(result["history"])
    metrics["final"] = True
    return metrics


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point; ``config["train"]`` is a :class:`TrainConfig` as a dict."""
    import ray
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    if config.get("plugins"):  # loaded in every worker before its config is read (supcon_ray.plugins)
        from supcon_ray.plugins import activate

        activate(config["plugins"])
    cfg = TrainConfig(**config["train"])
    # DDP's note on channels-last gradients (a performance hint about layouts, not an error), once per worker
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ctx = ray.train.get_context()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    checkpoint = ray.train.get_checkpoint()
    state = finished = None
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_state(d, ctx.get_world_rank())
            if (Path(d) / RESULT_FILE).is_file():
                finished = json.loads((Path(d) / RESULT_FILE).read_text())
    if finished is not None:  # restarted after the run had ended: report the same result again
        ray.train.report(finished)
        return

    lines = bool(config.get("epoch_lines")) and ctx.get_world_rank() == 0

    def reporter(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if lines:  # `train --workers N`: rank 0's epochs on the console (Ray forwards a worker's stderr)
            from supcon_ray.execution.progress import epoch_line

            # written, not print()ed: Ray Train's print patch would echo a print() a second time
            sys.stderr.write(epoch_line(metrics) + "\n")
            sys.stderr.flush()
        with tempfile.TemporaryDirectory() as d:
            save_state(state, d, ctx.get_world_rank())
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))

    session = Session(reporter, ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(), state)
    result = _final_metrics(train(cfg, session))
    result["node_id"] = ray.get_runtime_context().get_node_id()
    if ctx.get_world_rank() != 0:
        ray.train.report(result)
        return
    # The final result travels as a checkpoint: Ray Train's Result.metrics are those of the
    # latest checkpoint, and a restarted run finds it instead of training again.
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / RESULT_FILE).write_text(json.dumps(result))
        ray.train.report(result, checkpoint=Checkpoint.from_directory(d))


def fit_distributed(
    cfg: TrainConfig,
    name: str,
    storage_path: str,
    callbacks: list | None = None,
    max_failures: int = 0,
    reserved_cpus: float = 0.0,
    plugins: list[dict] | None = None,
    epoch_lines: bool = False,
) -> dict[str, Any]:
    """Run ``cfg`` on ``cfg.workers`` Ray Train workers; return the final result dict. ``epoch_lines``: rank 0
    prints each epoch's line (a one-off ``train`` run; a study's console shows its trials instead).

    Fails fast (``ConfigError``) when the workers can never fit on the cluster. ``name`` and
    ``storage_path`` identify the run: launching again with the same pair resumes it.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    check_fits(cfg.workers, cfg.cpus_per_worker, cfg.gpus_per_worker, reserved_cpus)
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.gpus_per_worker:
        resources["GPU"] = cfg.gpus_per_worker
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": cfg.model_dump(), **({"plugins": plugins} if plugins else {}),
                           **({"epoch_lines": True} if epoch_lines else {})},
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=cfg.gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks or [],
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            logging_config=LoggingConfig(log_level="ERROR"),  # no per-report lines on the console
            # controller_failure_limit=0: an unschedulable worker group errors instead of retrying forever
            failure_config=FailureConfig(max_failures=max_failures, controller_failure_limit=0),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    metrics = dict(result.metrics)
    metrics["history"] = json.loads(metrics.pop("history_json", "[]"))
    return metrics
