"""A run from start to result: the stages of :mod:`supcon_ray.engine.stages`, each trained by
:class:`~supcon_ray.engine.loop.Loop` (or, for ``linear_stage: lbfgs``, solved by :mod:`supcon_ray.engine.probe`).

The run is the same in one process and inside each Ray Train worker: a :class:`Session` says which
rank it is, on which device, and where metrics and checkpoints go. Each epoch reports
``epoch, stage, train_loss, lr, images_per_second, val_top1, epoch_seconds`` (``images_per_second``
counts every view a contrastive step sees), and every ``checkpoint_every`` epochs and at each
stage's end a :class:`~supcon_ray.engine.run_state.RunState` from which a resumed run continues exactly.
Test top-1 is measured once, at the end.

The linear stage of a contrastive run reads the frozen encoder's features of ``r``, encoded once,
each rank its shard (:mod:`supcon_ray.engine.evaluation`): ``lbfgs`` (default) fits the converged probe on
them, data-parallel; ``cached`` trains an SGD probe on all of them; ``augmented`` trains on augmented
images through the frozen encoder every step (the paper's way) and evaluates on the features.

On CUDA, ``deterministic`` (default on) selects deterministic cuDNN / cuBLAS kernels, which with the
seeds makes same-seed runs repeat. A non-finite loss ends the run cleanly with ``status="diverged"``,
the stage and epoch it happened, and ``test_top1 = val_top1 = 1 / num_classes`` (chance level, so a
stability study counts the run instead of losing it).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.distributed as dist

from supcon_ray.data.augment import eval_transform
from supcon_ray.config import ConfigError, TrainConfig
from supcon_ray.data.datasets import Splits, Transformed, load_dataset
from supcon_ray.engine.evaluation import Cached, encode
from supcon_ray.data.loader import loader_options
from supcon_ray.engine.loop import Diverged, Loop
from supcon_ray.networks.models import build_network
from supcon_ray.engine.precision import amp_context, amp_dtype, cuda_determinism
from supcon_ray.engine.probe import fit_probe
from supcon_ray.engine.run_state import RunState, weights_digest
from supcon_ray.engine.session import Session
from supcon_ray.engine.stages import RunContext, stages_of, build_stage, features_needed, features_top1, images_top1

__all__ = ["Session", "Trainer", "train"]


class Trainer:
    """Runs one :class:`TrainConfig` through its stages in one :class:`Session`."""

    def __init__(self, cfg: TrainConfig, session: Session, splits: Splits | None = None) -> None:
        self.cfg, self.session = cfg, session
        # wall-clock marks (unix seconds) for start-up and tear-down overhead measurements
        self.run_started_unix = time.time()
        self.first_batch_unix: float | None = None
        self.last_batch_unix: float | None = None
        splits = splits or load_dataset(cfg.dataset, cfg.data_dir, cfg.download, cfg.val_fraction,
                                        train_size=cfg.train_size, test_size=cfg.test_size, image_size=cfg.image_size,
                                        cfg=cfg)
        if cfg.batch_size % session.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the number of workers ({session.world_size})")
        if session.device.type == "cuda":
            cuda_determinism(cfg.deterministic)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        net = build_network(cfg.model, splits.in_channels, splits.num_classes,
                            normalize_representation=cfg.normalize_representation, cfg=cfg).to(session.device)
        channels_last = cfg.channels_last if cfg.channels_last is not None else session.device.type == "cuda"
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        crop = cfg.crop_size or (splits.image_size if splits.uniform_size else 224)
        as_stored = splits.uniform_size and crop == splits.image_size
        self.context = RunContext(cfg, net, splits, session.device, session.rank, session.world_size, crop,
                                  eval_transform(crop, splits.mean, splits.std, as_stored), channels_last)
        self.net, self.splits = net, splits
        self.history: list[dict[str, Any]] = []
        self.features: dict[str, Cached] = {}
        self.chance = 1.0 / splits.num_classes

    def stage(self, name: str) -> Loop:
        """The loop of stage ``name``, with the features it reads encoded first."""
        self.cache_features(features_needed(name, self.cfg))
        return Loop(build_stage(name, self.context, self.features), self.cfg, self.session)

    def cache_features(self, splits: tuple[str, ...]) -> None:
        """This rank's shard of the unaugmented frozen-encoder features of ``splits`` (bf16 when training in bf16)."""
        cfg, device = self.cfg, self.session.device
        autocast, _ = amp_context(cfg, device)
        dtype = torch.bfloat16 if amp_dtype(cfg.amp, device) == torch.bfloat16 else torch.float32
        workers = loader_options(cfg.num_workers, cfg.cpus_per_worker, device)["num_workers"]
        for split in splits:
            if split not in self.features:
                data = Transformed(getattr(self.splits, split), self.context.eval_transform)
                self.features[split] = encode(self.net.representation(), data, self.session.rank,
                                              self.session.world_size, device, autocast, dtype, workers)

    def _report(self, metrics: dict[str, Any], stage: str, loop: Loop | None, last: bool) -> None:
        """Record an epoch; checkpoint every ``checkpoint_every`` epochs and at the stage's ``last`` epoch."""
        self.history.append(metrics)
        state = None
        if metrics["epoch"] % self.cfg.checkpoint_every == 0 or last:
            if self.session.rank == 0:
                state = RunState(self.net.state_dict(), stage, metrics["epoch"], history=self.history,
                                 **(loop.state() if loop is not None else {})).to_checkpoint()
            else:
                state = {"rng": torch.get_rng_state()}
        self.session.reporter(dict(metrics, final=False), state)

    def _fit(self, name: str, resume: dict[str, Any] | None) -> float:
        loop = self.stage(name)
        start = loop.load(resume) if resume is not None else 0
        try:
            return loop.fit(start, lambda m: self._report(m, name, loop, m["epoch"] == loop.stage.epochs))
        finally:
            self.first_batch_unix = self.first_batch_unix or loop.first_batch_unix
            self.last_batch_unix = loop.last_batch_unix or self.last_batch_unix

    def _fit_probe(self) -> None:
        """``linear_stage: lbfgs``: the converged probe on the cached features, its L2 penalty picked on
        validation, data-parallel over the ranks' shards; one history row, then a checkpoint."""
        t0 = time.perf_counter()
        self.cache_features(("train", "val", "test"))
        reduce = dist.all_reduce if self.session.world_size > 1 else (lambda t: None)
        fit = fit_probe(self.features["train"], self.features["val"], self.splits.num_classes, reduce=reduce)
        clf = self.net.classifier
        with torch.no_grad():
            clf.weight.copy_(fit.weight.to(clf.weight.dtype))
            clf.bias.copy_(fit.bias.to(clf.bias.dtype))
        seconds = time.perf_counter() - t0
        self._report({"stage": "linear", "epoch": 1, "train_loss": fit.train_loss, "lr": None,
                      "images_per_second": len(self.splits.train) / max(seconds, 1e-9), "val_top1": fit.val_top1,
                      "epoch_seconds": seconds}, "linear", None, last=True)

    def _epochs_of(self, stage: str) -> int:
        if stage == "linear":
            return 1 if self.cfg.linear_stage == "lbfgs" else self.cfg.linear_epochs
        return self.cfg.epochs

    def run(self) -> dict[str, Any]:
        """Train every stage (resuming where the session's checkpoint left off); return the final result."""
        cfg, session = self.cfg, self.session
        t0 = time.perf_counter()
        stages = stages_of(cfg.loss)
        resume = session.resume_state
        done_before = 0
        if resume is not None:
            self.net.load_state_dict(resume["network"])
            self.history = list(resume["history"])
            done_before = stages.index(resume["stage"])
            if resume["epoch"] >= self._epochs_of(resume["stage"]):
                done_before += 1  # that stage had finished
                resume = None
        torch.manual_seed(cfg.seed * 1009 + session.rank + 1)
        if session.resume_state is not None:
            torch.set_rng_state(session.resume_state["rng"])
        status, diverged_at, main_loss = "completed", None, math.nan
        for name in stages[done_before:]:
            if name == "linear" and cfg.linear_stage == "lbfgs":
                self._fit_probe()
                continue
            try:
                loss = self._fit(name, resume if resume is not None and resume["stage"] == name else None)
            except Diverged as d:
                status, diverged_at = "diverged", {"stage": name, "epoch": d.epoch}
                break
            if name != "linear":
                main_loss = loss
        if status == "completed":
            val_top1, test_top1 = self._final_accuracy()
        else:
            val_top1 = test_top1 = self.chance
        if math.isnan(main_loss):
            main_loss = next((h["train_loss"] for h in reversed(self.history) if h["stage"] != "linear"), math.nan)
        return {
            "loss": cfg.loss,
            "status": status,
            "test_top1": test_top1,
            "val_top1": val_top1,
            "train_loss": main_loss,
            "linear_train_loss": next((h["train_loss"] for h in reversed(self.history) if h["stage"] == "linear"), None),
            "epochs": cfg.epochs,
            # the L-BFGS read-out is solved to convergence: it has no epochs of its own
            "linear_epochs": cfg.linear_epochs if cfg.contrastive and cfg.linear_stage != "lbfgs" else None,
            "linear_stage": cfg.linear_stage if cfg.contrastive else None,
            "diverged_stage": diverged_at["stage"] if diverged_at else None,
            "diverged_epoch": diverged_at["epoch"] if diverged_at else None,
            "num_classes": self.splits.num_classes,
            "chance_top1": self.chance,
            "val_images": len(self.splits.val),
            "test_images": len(self.splits.test),
            "world_size": session.world_size,
            "weights_digest": weights_digest(self.net),
            "resumed_from": (RunState.from_checkpoint(session.resume_state).resumed_from()
                             if session.resume_state is not None else None),
            "run_started_unix": self.run_started_unix,
            "first_batch_unix": self.first_batch_unix,
            "last_batch_unix": self.last_batch_unix,
            "seconds": time.perf_counter() - t0,
            "epochs_run": sum(1 for h in self.history if h["stage"] != "linear"),
            "history": self.history,
        }

    def _final_accuracy(self) -> tuple[float, float]:
        if self.cfg.contrastive:
            self.cache_features(("val", "test"))  # already there unless resumed after the linear stage
            return features_top1(self.context, self.features["val"]), features_top1(self.context, self.features["test"])
        module = self.net.end_to_end()
        return images_top1(self.context, module, "val"), images_top1(self.context, module, "test")


def train(cfg: TrainConfig, session: Session, splits: Splits | None = None) -> dict[str, Any]:
    """Run ``cfg`` in ``session`` and return the final result (see :class:`Trainer`)."""
    return Trainer(cfg, session, splits).run()
