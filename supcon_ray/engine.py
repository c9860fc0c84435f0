"""The one training loop, with the loss as a parameter.

A run is a list of stages: ``supcon`` / ``simclr`` pre-train the encoder and projection head with
the contrastive loss on two views, then train a linear classifier on the frozen encoder
(``pretrain`` -> ``linear``); ``ce`` trains encoder and classifier end to end (``ce``). Every stage
goes through :func:`_fit_stage`; what differs (module, data, objective, optimizer settings) is
described by a :class:`_Stage`.

The loop runs the same way in one process and inside each Ray Train worker: a :class:`Session`
says which rank it is, on which device, and where metrics and checkpoints go. Each epoch it
reports ``epoch, stage, train_loss, lr, images_per_second, val_top1`` (validation top-1 where the
stage evaluates; ``images_per_second`` counts every view a contrastive step sees) and a checkpoint
(network, optimizer, scheduler, gradient-scaler and RNG state, epoch, history) from which a resumed
run continues exactly, with DataLoader workers too: each epoch's worker seeds are drawn from the
checkpointed RNG. Test top-1 is measured once, at the end.

Mixed precision (``TrainConfig.amp``) runs the forward pass under ``torch.autocast`` for the
training device, CPU included, so CPU bf16 autocast exercises the GPU code path; fp16 adds a
gradient scaler. The contrastive loss always computes in float32. On CUDA, ``deterministic``
(default on) selects deterministic cuDNN / cuBLAS kernels, which with the seeds makes same-seed
runs repeat.

The linear stage of a contrastive run trains the classifier on ``r`` from the frozen encoder,
either on features computed once and kept on the training device (``linear_stage="cached"``, the
default; batches are indexed straight from the tensors) or on augmented images through the frozen
encoder every step (``"augmented"``, as in the paper).

A non-finite loss ends the run cleanly with ``status="diverged"``, the stage and epoch it happened,
and ``test_top1 = val_top1 = 1 / num_classes`` (chance level, so a stability study counts the run
instead of losing it).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .augment import SMALL_IMAGE, MultiView, build_transform, eval_transform
from .batch_augment import BatchAugment
from .config import ConfigError, TrainConfig
from .data import Splits, Transformed, load_dataset
from .loader import EpochIndices, SeededItems, epoch_loader, item_seed, loader_options
from .losses import SupConLoss, cross_entropy_loss
from .models import Network, build_network
from .optim import build_optimizer, build_scheduler
from .probe import fit_probe

STAGES = {"supcon": ("pretrain", "linear"), "simclr": ("pretrain", "linear"), "ce": ("ce",)}
#: ``reporter(metrics, state)``: ``state`` is the checkpoint dict on rank 0, ``{"rng": ...}`` elsewhere.
Reporter = Callable[[dict[str, Any], dict[str, Any] | None], None]
#: Features and labels held in memory on the training device (the cached linear stage).
Cached = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Session:
    """Where the loop runs and where its reports go."""

    reporter: Reporter
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resume_state: dict[str, Any] | None = None
    show_progress: bool = False


@dataclass
class _Stage:
    name: str
    module: nn.Module  # what is trained (and wrapped in DDP when distributed)
    dataset: torch.utils.data.Dataset | Cached  # images through a DataLoader, or in-memory tensors
    objective: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    epochs: int
    batch_size: int  # global
    optimizer: str
    lr: float
    weight_decay: float
    distributed: bool  # False: every rank runs the stage identically on the full data
    evaluate: Callable[[], float] | None  # validation top-1 after each epoch
    views: int = 1  # images per sample in a step (2 for contrastive pre-training)
    augment: BatchAugment | None = None  # the batched path: the policy applied on the device each step


class _Diverged(Exception):
    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``TrainConfig.amp`` on ``device``, or None for full precision."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":  # native bf16 only: V100 / T4 report emulated bf16 as supported, and it is slow there
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("amp: bf16 is not supported on this GPU; use --amp fp16 or --amp off")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _amp_context(cfg: TrainConfig, device: torch.device):
    """(autocast context, gradient scaler or None) for the training device."""
    dtype = amp_dtype(cfg.amp, device)
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False), None
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return torch.autocast(device_type=device.type, dtype=dtype), scaler


def _cuda_determinism(enabled: bool) -> None:
    """Deterministic (or autotuned) cuDNN / cuBLAS kernels for this process."""
    if enabled:
        # cuBLAS reads this when it creates its handle, i.e. before the first matmul on the device
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    # warn_only: an op with no deterministic CUDA kernel warns instead of stopping the run
    torch.use_deterministic_algorithms(enabled, warn_only=True)


def contrastive_loss(cfg: TrainConfig) -> SupConLoss:
    """The run's SupCon / SimCLR loss; scaled by ``tau / base_temperature`` when ``temperature_scaling``."""
    base = cfg.base_temperature if cfg.temperature_scaling else None
    return SupConLoss(cfg.temperature, base, cfg.variant, method=cfg.loss_method)


class _FrozenProbe(nn.Module):
    """A linear classifier on ``r`` from a frozen encoder (the augmented linear stage).

    Only the classifier is a submodule: the optimizer, DistributedDataParallel and ``train()`` see
    its parameters alone, and the encoder runs in eval mode (frozen BatchNorm) without gradients.
    """

    def __init__(self, representation: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self._frozen = (representation,)  # a tuple attribute is not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        representation = self._frozen[0]
        representation.eval()
        with torch.no_grad():
            r = representation(x)
        return self.classifier(r)


def _cached_batches(data: Cached, batch_size: int, seed: int, epoch: int):
    """Shuffled batches indexed straight from in-memory tensors (the last partial batch dropped).

    The order is the one ``DistributedSampler(seed=seed)`` gives one replica at ``epoch``.
    """
    features, labels = data
    gen = torch.Generator()
    gen.manual_seed(seed + epoch)
    order = torch.randperm(len(labels), generator=gen).to(features.device)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        yield features.index_select(0, idx).float(), labels.index_select(0, idx)


def _augment_views(augment: BatchAugment, x: torch.Tensor, views: int, generator: torch.Generator) -> torch.Tensor:
    """The batched policy on a uint8 batch: ``[B, C, H, W]`` -> ``[B, views, C, S, S]`` (or ``[B, C, S, S]``
    for one view); a batch the loader cropped per view arrives as ``[B, views, C, S, S]``."""
    if x.dim() == 5:
        b = x.shape[0]
        return augment(x.flatten(0, 1), generator).view(b, views, *x.shape[2:3], augment.size, augment.size)
    if views == 1:
        return augment(x, generator)
    return torch.stack([augment(x, generator) for _ in range(views)], 1)


@torch.no_grad()
def _top1(module: nn.Module, dataset, batch_size: int, session: Session, shard: bool) -> float:
    """Top-1 accuracy of ``module`` on ``dataset``: images (split over the ranks when ``shard``) or this rank's
    shard of cached features; with ``shard`` the counts are summed over the ranks."""
    was_training = module.training
    module.eval()
    correct, total = torch.zeros((), dtype=torch.int64, device=session.device), 0  # counted on the device
    if isinstance(dataset, tuple):
        features, labels = dataset
        for start in range(0, len(labels), batch_size):
            chunk = features[start:start + batch_size].float()
            correct += (module(chunk).argmax(1) == labels[start:start + batch_size]).sum()
        total = len(labels)
    else:
        indices = range(session.rank, len(dataset), session.world_size) if shard else range(len(dataset))
        subset = torch.utils.data.Subset(dataset, list(indices))
        for x, y in DataLoader(subset, batch_size=batch_size):
            x, y = x.to(session.device), y.to(session.device)
            correct += (module(x).argmax(1) == y).sum()
            total += y.numel()
    module.train(was_training)
    counts = torch.stack([correct.double(), torch.tensor(float(total), dtype=torch.float64, device=session.device)])
    if shard and session.world_size > 1:
        dist.all_reduce(counts)
    correct, total = counts.tolist()
    return correct / max(total, 1)


@torch.no_grad()
def _encode(encoder: nn.Module, dataset, session: Session, autocast, dtype: torch.dtype, num_workers: int,
            batch_size: int = 512) -> Cached:
    """This rank's shard (items ``rank``, ``rank + world``, ...) of the frozen-encoder features of
    ``dataset``, encoded under the run's autocast into one preallocated ``dtype`` tensor on the device."""
    encoder.eval()
    indices = list(range(session.rank, len(dataset), session.world_size))
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size, num_workers=num_workers,
                        pin_memory=session.device.type == "cuda")
    labels = torch.empty(len(indices), dtype=torch.int64, device=session.device)
    feats, pos = None, 0
    for x, y in loader:
        with autocast:
            f = encoder(x.to(session.device, non_blocking=True))
        if feats is None:
            feats = torch.empty(len(indices), f.shape[1], dtype=dtype, device=session.device)
        feats[pos:pos + len(y)] = f
        labels[pos:pos + len(y)] = y.to(session.device, non_blocking=True)
        pos += len(y)
    return (feats if feats is not None else torch.empty(0, 0, dtype=dtype, device=session.device)), labels


def _gather(shard: Cached, size: int, session: Session) -> Cached:
    """Every rank's feature shard, in dataset order (rank r holds items r, r + world, ...)."""
    world = session.world_size
    if world == 1:
        return shard
    features, labels = shard
    rows = -(-size // world)
    pad = lambda t: torch.cat([t, t.new_zeros(rows - len(t), *t.shape[1:])])  # noqa: E731
    parts_f = [torch.empty(rows, features.shape[1], dtype=features.dtype, device=features.device) for _ in range(world)]
    parts_l = [torch.empty(rows, dtype=labels.dtype, device=labels.device) for _ in range(world)]
    dist.all_gather(parts_f, pad(features))
    dist.all_gather(parts_l, pad(labels))
    full_f = torch.empty(size, features.shape[1], dtype=features.dtype, device=features.device)
    full_l = torch.empty(size, dtype=labels.dtype, device=labels.device)
    for r in range(world):
        count = len(range(r, size, world))
        full_f[r::world], full_l[r::world] = parts_f[r][:count], parts_l[r][:count]
    return full_f, full_l


class Trainer:
    """Runs one :class:`TrainConfig` through its stages in one :class:`Session`."""

    def __init__(self, cfg: TrainConfig, session: Session, splits: Splits | None = None) -> None:
        self.cfg, self.session = cfg, session
        # wall-clock marks (unix seconds) for start-up and tear-down overhead measurements
        self.run_started_unix = time.time()
        self.first_batch_unix: float | None = None
        self.last_batch_unix: float | None = None
        self.splits = splits or load_dataset(cfg.dataset, cfg.data_dir, cfg.download, cfg.val_fraction,
                                                 train_size=cfg.train_size, test_size=cfg.test_size,
                                                 image_size=cfg.image_size)
        if cfg.batch_size % session.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the number of workers ({session.world_size})")
        if session.device.type == "cuda":
            _cuda_determinism(cfg.deterministic)
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.net: Network = build_network(cfg.model, self.splits.in_channels, self.splits.num_classes,
                                          normalize_representation=cfg.normalize_representation).to(session.device)
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else session.device.type == "cuda"
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        uniform = self.splits.uniform_size
        self.crop_size = cfg.crop_size or (self.splits.image_size if uniform else 224)
        self.eval_tf = eval_transform(self.crop_size, self.splits.mean, self.splits.std,
                                      uniform and self.crop_size == self.splits.image_size)
        self.history: list[dict[str, Any]] = []
        self.features: dict[str, Cached] = {}
        self.chance = 1.0 / self.splits.num_classes

    # -- stages ---------------------------------------------------------------------------
    def batched(self) -> bool:
        """Whether this run's policy runs on whole batches on the device (``TrainConfig.augment_path``)."""
        path = self.cfg.augment_path
        if path == "auto":
            return self.session.device.type == "cuda" or self.crop_size <= SMALL_IMAGE
        return path == "batched"

    def _train_data(self, views: int) -> tuple[SeededItems, BatchAugment | None]:
        """The training items of a stage (``views`` per sample) and, on the batched path, the device policy.

        Per image: the loader applies the policy. Batched: the loader yields uint8 images as stored
        (or, for images of differing sizes, each view's crop) and the step applies the rest."""
        cfg, s = self.cfg, self.splits
        if not self.batched():
            tf = build_transform(cfg.augment, self.crop_size, s.mean, s.std, cfg.dataset, cfg.policy_options)
            return SeededItems(s.train, MultiView(tf, views) if views > 1 else tf, cfg.seed), None
        augment = BatchAugment(cfg.augment, self.crop_size, s.mean, s.std, cfg.dataset, cfg.policy_options,
                               crop=s.uniform_size)
        crop = None if s.uniform_size else augment.loader_crop()
        return SeededItems(s.train, MultiView(crop, views) if crop is not None and views > 1 else crop, cfg.seed), augment

    def _stage(self, name: str) -> _Stage:
        cfg, s = self.cfg, self.splits
        if name == "pretrain":
            supcon = contrastive_loss(cfg)
            use_labels = cfg.loss == "supcon"

            def contrastive(module, x, y):
                b, v = x.shape[:2]
                z = module(self._layout(x.reshape(b * v, *x.shape[2:])))
                return supcon(z.view(b, v, -1), y if use_labels else None)  # the loss casts to float32

            data, augment = self._train_data(2)
            return _Stage(name, self.net.contrastive(), data, contrastive, cfg.epochs, cfg.batch_size, cfg.optimizer,
                          cfg.lr, cfg.weight_decay, True, None, views=2, augment=augment)
        ce = cross_entropy_loss(cfg.label_smoothing)

        def classify(module, x, y):
            return ce(module(self._layout(x)).float(), y)

        if name == "ce":
            module = self.net.end_to_end()
            evaluate = lambda: _top1(module, Transformed(s.val, self.eval_tf), 512, self.session, shard=True)  # noqa: E731
            data, augment = self._train_data(1)
            return _Stage(name, module, data, classify, cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.lr,
                          cfg.weight_decay, True, evaluate, augment=augment)
        # linear: validation and test always on cached unaugmented features of r
        self._cache_features(("train", "val", "test") if cfg.linear_stage == "cached" else ("val", "test"))
        evaluate = lambda: _top1(self.net.classifier, self.features["val"], 4096, self.session, shard=True)  # noqa: E731
        if cfg.linear_stage == "cached":  # every rank trains the same classifier on all the features
            train = _gather(self.features["train"], len(s.train), self.session)
            return _Stage(name, self.net.classifier, train, classify, cfg.linear_epochs,
                          cfg.linear_batch_size, cfg.linear_optimizer, cfg.linear_lr, 0.0, False, evaluate)
        # augmented: the run's augmentation through the frozen encoder, data-parallel like pre-training
        probe = _FrozenProbe(self.net.representation(), self.net.classifier)
        data, augment = self._train_data(1)
        return _Stage(name, probe, data, classify, cfg.linear_epochs, cfg.linear_batch_size,
                      cfg.linear_optimizer, cfg.linear_lr, 0.0, True, evaluate, augment=augment)

    def _cache_features(self, splits: tuple[str, ...]) -> None:
        """Each rank's shard of the unaugmented features of ``splits``, in bf16 when the run trains in bf16."""
        autocast, _ = _amp_context(self.cfg, self.session.device)
        dtype = torch.bfloat16 if amp_dtype(self.cfg.amp, self.session.device) == torch.bfloat16 else torch.float32
        workers = loader_options(self.cfg.num_workers, self.cfg.cpus_per_worker, self.session.device)["num_workers"]
        for split in splits:
            self.features[split] = _encode(self.net.representation(), Transformed(getattr(self.splits, split), self.eval_tf),
                                           self.session, autocast, dtype, workers)

    def _reduce(self, t: torch.Tensor) -> None:
        if self.session.world_size > 1:
            dist.all_reduce(t)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.session.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    # -- the loop -------------------------------------------------------------------------
    def _fit_stage(self, stage: _Stage, resume: dict[str, Any] | None) -> float:
        cfg, session = self.cfg, self.session
        world = session.world_size if stage.distributed else 1
        rank = session.rank if stage.distributed else 0
        per_worker = stage.batch_size // world
        cached = isinstance(stage.dataset, tuple)
        if cached:
            sampler = loader = None
            steps_per_epoch = len(stage.dataset[1]) // per_worker
        else:
            sampler = EpochIndices(DistributedSampler(stage.dataset, num_replicas=world, rank=rank, shuffle=True,
                                                      seed=cfg.seed, drop_last=True))
            steps_per_epoch = len(sampler) // per_worker
        if steps_per_epoch == 0:
            size = len(stage.dataset[1]) if cached else len(stage.dataset)
            raise ConfigError(f"batch_size {stage.batch_size} is larger than the {stage.name} training set "
                              f"({size} samples over {world} worker(s))")
        if not cached:  # one loader for the stage: its workers persist across epochs
            options = loader_options(cfg.num_workers, cfg.cpus_per_worker, session.device)
            loader = epoch_loader(stage.dataset, sampler, per_worker, options)
        module = stage.module
        if stage.distributed and world > 1:
            if cfg.sync_bn:
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[session.device.index] if session.device.type == "cuda" else None)
        optimizer = build_optimizer(stage.optimizer, stage.module.parameters(), stage.lr, cfg.momentum,
                                    stage.weight_decay, cfg.nesterov, rmsprop_eps=cfg.rmsprop_eps)
        scheduler = build_scheduler(optimizer, cfg.schedule, stage.epochs * steps_per_epoch,
                                    int(cfg.warmup_epochs * steps_per_epoch), steps_per_epoch=steps_per_epoch,
                                    decay_rate=cfg.lr_decay_rate, decay_epochs=cfg.lr_decay_epochs)
        autocast, scaler = _amp_context(cfg, session.device)
        generator = torch.Generator(device=session.device) if stage.augment is not None else None
        start_epoch = 0
        if resume is not None:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            if scaler is not None and resume.get("scaler"):
                scaler.load_state_dict(resume["scaler"])
            start_epoch = resume["epoch"]
        train_loss = math.nan
        for epoch in range(start_epoch, stage.epochs):
            if cached:
                batches = _cached_batches(stage.dataset, per_worker, cfg.seed, epoch)
            else:
                sampler.set_epoch(epoch)
                batches = loader
            module.train()
            # per-step sums stay on the device; one all-reduce at the end of the epoch
            loss_sum = torch.zeros((), dtype=torch.float64, device=session.device)
            bad = torch.zeros((), dtype=torch.float64, device=session.device)
            n_steps, images, t0 = 0, 0, time.perf_counter()
            if session.show_progress and session.rank == 0:
                from tqdm import tqdm

                batches = tqdm(batches, total=steps_per_epoch, desc=f"{stage.name} {epoch + 1}/{stage.epochs}",
                               leave=False, dynamic_ncols=True)
            for x, y in batches:
                if self.first_batch_unix is None:
                    self.first_batch_unix = time.time()
                y = y.to(session.device, non_blocking=True)
                if stage.augment is not None:
                    generator.manual_seed(item_seed(item_seed(cfg.seed, rank, 1 << 40), epoch, n_steps))
                    x = _augment_views(stage.augment, x.to(session.device, non_blocking=True), stage.views, generator)
                with autocast:
                    loss = stage.objective(module, x, y)
                finite = torch.isfinite(loss.detach())
                bad += (~finite).double()
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                scheduler.step()
                loss_sum += torch.where(finite, loss.detach().double(), 0.0)
                n_steps += 1
                images += y.shape[0] * stage.views
                self.last_batch_unix = time.time()
            totals = torch.stack([loss_sum / world, bad, torch.tensor(float(images), dtype=torch.float64,
                                                                      device=session.device)])
            if stage.distributed and world > 1:
                dist.all_reduce(totals)
            loss_total, n_bad, images = totals.tolist()  # the epoch's one device-to-host sync
            seconds = time.perf_counter() - t0
            train_loss = loss_total / max(n_steps, 1)
            if n_bad or not math.isfinite(train_loss):
                raise _Diverged(epoch + 1)
            metrics = {
                "stage": stage.name,
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_second": images / max(seconds, 1e-9),
                "val_top1": stage.evaluate() if stage.evaluate is not None else None,
                "epoch_seconds": seconds,
            }
            self.history.append(metrics)
            # a checkpoint every checkpoint_every epochs and at the stage's last; rank 0 saves everything,
            # other ranks only their own RNG state
            state = None
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == stage.epochs:
                state = (self._state(stage.name, epoch + 1, optimizer, scheduler, scaler) if session.rank == 0
                         else {"rng": torch.get_rng_state()})
            session.reporter(dict(metrics, final=False), state)
        del loader  # stops its persistent workers
        return train_loss

    def _fit_probe(self) -> None:
        """``linear_stage: lbfgs``: the converged probe on cached features, its L2 penalty picked on
        validation (:mod:`supcon_ray.probe`); one history row, then a checkpoint."""
        t0 = time.perf_counter()
        self._cache_features(("train", "val", "test"))
        fit = fit_probe(self.features["train"], self.features["val"], self.splits.num_classes, reduce=self._reduce)
        clf = self.net.classifier
        with torch.no_grad():
            clf.weight.copy_(fit.weight.to(clf.weight.dtype))
            clf.bias.copy_(fit.bias.to(clf.bias.dtype))
        seconds = time.perf_counter() - t0
        metrics = {"stage": "linear", "epoch": 1, "train_loss": fit.train_loss, "lr": None,
                   "images_per_second": len(self.splits.train) / max(seconds, 1e-9),
                   "val_top1": fit.val_top1, "epoch_seconds": seconds}
        self.history.append(metrics)
        state = self._state("linear", 1, None, None) if self.session.rank == 0 else {"rng": torch.get_rng_state()}
        self.session.reporter(dict(metrics, final=False), state)

    def _state(self, stage: str, epoch: int, optimizer, scheduler, scaler=None) -> dict[str, Any]:
        return {
            "network": self.net.state_dict(),
            "stage": stage,
            "epoch": epoch,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": torch.get_rng_state(),
            "history": list(self.history),
        }

    def run(self) -> dict[str, Any]:
        """Train every stage (resuming where the session's checkpoint left off); return the final result."""
        cfg, session = self.cfg, self.session
        t0 = time.perf_counter()
        stages = STAGES[cfg.loss]
        resume = session.resume_state
        done_before = 0
        if resume is not None:
            self.net.load_state_dict(resume["network"])
            self.history = list(resume["history"])
            done_before = stages.index(resume["stage"])
            if resume["epoch"] >= self._epochs_of(resume["stage"]):
                done_before += 1  # that stage had finished
                resume = None
        torch.manual_seed(cfg.seed * 1009 + session.rank + 1)  # augmentation randomness differs per rank
        if session.resume_state is not None:
            torch.set_rng_state(session.resume_state["rng"])
        status, diverged_at = "completed", None
        main_loss = math.nan
        for i, name in enumerate(stages):
            if i < done_before:
                continue
            if name == "linear" and cfg.linear_stage == "lbfgs":
                self._fit_probe()
                continue
            stage = self._stage(name)
            try:
                loss = self._fit_stage(stage, resume if resume is not None and resume["stage"] == name else None)
            except _Diverged as d:
                status, diverged_at = "diverged", {"stage": name, "epoch": d.epoch}
                break
            if name != "linear":
                main_loss = loss
        if done_before and "linear" in stages and not self.features and status == "completed":
            self._cache_features(("val", "test"))  # resumed after the linear stage had finished
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
            "linear_epochs": cfg.linear_epochs if cfg.contrastive else None,
            "diverged_stage": diverged_at["stage"] if diverged_at else None,
            "diverged_epoch": diverged_at["epoch"] if diverged_at else None,
            "num_classes": self.splits.num_classes,
            "chance_top1": self.chance,
            "world_size": session.world_size,
            "weights_digest": self._weights_digest(),
            "resumed_from": (f"{session.resume_state['stage']}:{session.resume_state['epoch']}"
                             if session.resume_state is not None else None),
            "run_started_unix": self.run_started_unix,
            "first_batch_unix": self.first_batch_unix,
            "last_batch_unix": self.last_batch_unix,
            "seconds": time.perf_counter() - t0,
            "history": self.history,
        }

    def _weights_digest(self) -> str:
        """SHA-256 of the final weights: equal digests mean bit-identical networks."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def _epochs_of(self, stage: str) -> int:
        if stage == "linear":
            return 1 if self.cfg.linear_stage == "lbfgs" else self.cfg.linear_epochs
        return self.cfg.epochs

    def _final_accuracy(self) -> tuple[float, float]:
        if self.cfg.contrastive:
            clf = self.net.classifier
            return (_top1(clf, self.features["val"], 4096, self.session, shard=True),
                    _top1(clf, self.features["test"], 4096, self.session, shard=True))
        module = self.net.end_to_end()
        return (_top1(module, Transformed(self.splits.val, self.eval_tf), 512, self.session, shard=True),
                _top1(module, Transformed(self.splits.test, self.eval_tf), 512, self.session, shard=True))


def train(cfg: TrainConfig, session: Session, splits: Splits | None = None) -> dict[str, Any]:
    """Run ``cfg`` in ``session`` and return the final result (see :class:`Trainer`)."""
    return Trainer(cfg, session, splits).run()
