"""The one training loop: trains a :class:`~supcon_ray.engine.stages.Stage`, whatever the loss.

:class:`Loop` owns what every step shares: the data loader (its workers persist across the stage's
epochs), DistributedDataParallel, the optimizer and schedule, autocast and the fp16 gradient scaler,
the batched augmentation's generator, and the sync policy. A step never waits for the device: the
loss sum and the non-finite flag accumulate on it, and each epoch ends with one all-reduce and one
device-to-host copy. A non-finite loss anywhere in an epoch raises :class:`Diverged` at its end.

Batched augmentation draws from a generator on the device seeded with (seed, rank, epoch, step), so
a run resumed at an epoch boundary repeats the continuous run's batches exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from supcon_ray.data.batch_augment import BatchAugment
from supcon_ray.config import ConfigError, TrainConfig
from supcon_ray.engine.evaluation import Cached
from supcon_ray.data.loader import EpochIndices, epoch_loader, item_seed, loader_options
from supcon_ray.networks.optim import build_optimizer, build_scheduler
from supcon_ray.engine.precision import amp_context
from supcon_ray.engine.session import Session
from supcon_ray.engine.stages import Stage


class Diverged(Exception):
    """A non-finite loss in epoch ``epoch`` (counted from 1) of a stage."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


def cached_batches(data: Cached, batch_size: int, seed: int, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled float32 batches indexed straight from in-memory tensors (the last partial batch dropped).

    The order is the one ``DistributedSampler(seed=seed)`` gives one replica at ``epoch``.
    """
    features, labels = data
    gen = torch.Generator()
    gen.manual_seed(seed + epoch)
    order = torch.randperm(len(labels), generator=gen).to(features.device)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        yield features.index_select(0, idx).float(), labels.index_select(0, idx)


def augment_views(augment: BatchAugment, x: torch.Tensor, views: int, generator: torch.Generator) -> torch.Tensor:
    """The batched policy on a uint8 batch: ``[B, C, H, W]`` -> ``[B, views, C, S, S]`` (``[B, C, S, S]``
    for one view); a batch the loader cropped per view arrives as ``[B, views, C, S, S]``."""
    if x.dim() == 5:
        b = x.shape[0]
        return augment(x.flatten(0, 1), generator).view(b, views, x.shape[2], augment.size, augment.size)
    if views == 1:
        return augment(x, generator)
    return torch.stack([augment(x, generator) for _ in range(views)], 1)


class Loop:
    """Trains ``stage`` of a run with ``cfg`` in ``session``."""

    def __init__(self, stage: Stage, cfg: TrainConfig, session: Session) -> None:
        self.stage, self.cfg, self.session = stage, cfg, session
        self.world = session.world_size if stage.distributed else 1
        self.rank = session.rank if stage.distributed else 0
        self.per_worker = stage.batch_size // self.world
        self.cached = isinstance(stage.data, tuple)
        self.sampler = self.loader = None
        if self.cached:
            size = len(stage.data[1])
            self.steps_per_epoch = size // self.per_worker
        else:
            size = len(stage.data)
            self.sampler = EpochIndices(DistributedSampler(stage.data, num_replicas=self.world, rank=self.rank,
                                                           shuffle=True, seed=cfg.seed, drop_last=True))
            self.steps_per_epoch = len(self.sampler) // self.per_worker
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size {stage.batch_size} is larger than the {stage.name} training set "
                              f"({size} samples over {self.world} worker(s))")
        if not self.cached:  # one loader for the stage: its workers persist across epochs
            options = loader_options(cfg.num_workers, cfg.cpus_per_worker, session.device)
            self.loader = epoch_loader(stage.data, self.sampler, self.per_worker, options)
        self.module = stage.module
        if stage.distributed and self.world > 1:
            if cfg.sync_bn:
                self.module = nn.SyncBatchNorm.convert_sync_batchnorm(self.module)
            self.module = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[session.device.index] if session.device.type == "cuda" else None)
        self.optimizer = build_optimizer(stage.optimizer, stage.module.parameters(), stage.lr, cfg.momentum,
                                         stage.weight_decay, cfg.nesterov, rmsprop_eps=cfg.rmsprop_eps)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, stage.epochs * self.steps_per_epoch,
                                         int(cfg.warmup_epochs * self.steps_per_epoch),
                                         steps_per_epoch=self.steps_per_epoch, decay_rate=cfg.lr_decay_rate,
                                         decay_epochs=cfg.lr_decay_epochs)
        self.autocast, self.scaler = amp_context(cfg, session.device)
        self.generator = torch.Generator(device=session.device) if stage.augment is not None else None
        self.first_batch_unix: float | None = None
        self.last_batch_unix: float | None = None
        self._sums: torch.Tensor | None = None

    # -- state ------------------------------------------------------------------------------------
    def load(self, state: dict[str, Any]) -> int:
        """Restore the optimizer, schedule and scaler of a checkpoint; return the epochs already done."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        return state["epoch"]

    def state(self) -> dict[str, Any]:
        """The optimizer, schedule and scaler state of a checkpoint."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    # -- steps ------------------------------------------------------------------------------------
    def batches(self, epoch: int):
        """Epoch ``epoch``'s batches (from 0)."""
        if self.cached:
            return cached_batches(self.stage.data, self.per_worker, self.cfg.seed, epoch)
        self.sampler.set_epoch(epoch)
        return self.loader

    def start_epoch(self) -> None:
        self.module.train()
        # [loss sum, non-finite steps], on the device: a step never waits for it
        self._sums = torch.zeros(2, dtype=torch.float64, device=self.session.device)

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, index: int) -> None:
        """One optimisation step on a loader batch (``index`` of ``epoch``), without a host sync."""
        device = self.session.device
        y = y.to(device, non_blocking=True)
        if self.stage.augment is not None:
            self.generator.manual_seed(item_seed(item_seed(self.cfg.seed, self.rank, 1 << 40), epoch, index))
            x = augment_views(self.stage.augment, x.to(device, non_blocking=True), self.stage.views, self.generator)
        with self.autocast:
            loss = self.stage.objective(self.module, x, y)
        finite = torch.isfinite(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.scheduler.step()
        self._sums += torch.stack([torch.where(finite, loss.detach().double(), 0.0), (~finite).double()])

    def end_epoch(self, steps: int, images: int) -> tuple[float, float, bool]:
        """The epoch's mean loss over steps and ranks, its images over ranks, and whether any step
        diverged: one all-reduce and one device-to-host copy."""
        totals = torch.cat([self._sums * torch.tensor([1.0 / self.world, 1.0], dtype=torch.float64,
                                                      device=self._sums.device),
                            torch.tensor([float(images)], dtype=torch.float64, device=self._sums.device)])
        if self.stage.distributed and self.world > 1:
            dist.all_reduce(totals)
        loss_sum, bad, images_all = totals.tolist()
        loss = loss_sum / max(steps, 1)
        return loss, images_all, bool(bad) or not math.isfinite(loss)

    # -- epochs -----------------------------------------------------------------------------------
    def fit(self, start_epoch: int, on_epoch: Callable[[dict[str, Any]], None]) -> float:
        """Train from ``start_epoch`` to the stage's last epoch, calling ``on_epoch(metrics)`` after each;
        return the last epoch's mean loss. Raises :class:`Diverged`."""
        stage, session = self.stage, self.session
        loss = math.nan
        try:
            for epoch in range(start_epoch, stage.epochs):
                batches = self.batches(epoch)
                self.start_epoch()
                steps, images, t0 = 0, 0, time.perf_counter()
                if session.show_progress and session.rank == 0:
                    from tqdm import tqdm

                    batches = tqdm(batches, total=self.steps_per_epoch, leave=False, dynamic_ncols=True,
                                   desc=f"{stage.name} {epoch + 1}/{stage.epochs}")
                for x, y in batches:
                    if self.first_batch_unix is None:
                        self.first_batch_unix = time.time()
                    self.step(x, y, epoch, steps)
                    steps += 1
                    images += y.shape[0] * stage.views
                    self.last_batch_unix = time.time()
                loss, images_all, diverged = self.end_epoch(steps, images)
                seconds = time.perf_counter() - t0
                if diverged:
                    raise Diverged(epoch + 1)
                on_epoch({"stage": stage.name, "epoch": epoch + 1, "train_loss": loss,
                          "lr": self.optimizer.param_groups[0]["lr"], "images_per_second": images_all / max(seconds, 1e-9),
                          "val_top1": stage.evaluate() if stage.evaluate is not None else None,
                          "epoch_seconds": seconds})
        finally:
            self.loader = None  # stops its persistent workers
        return loss
