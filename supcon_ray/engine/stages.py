"""What each stage of a run trains: built from the run's context, without side effects.

A run is a list of stages (:func:`stages_of`): ``supcon`` / ``simclr`` pre-train the encoder and
projection head with the contrastive loss on two views, then fit a linear classifier on the frozen
encoder (``pretrain`` -> ``linear``); ``ce`` trains encoder and classifier end to end (``ce``).
:func:`build_stage` describes one as a :class:`Stage` (module, data, objective, optimizer settings,
evaluation) for :class:`~supcon_ray.engine.loop.Loop` to train. The linear stage reads features the caller
encoded first (:func:`features_needed`); ``linear_stage: lbfgs`` has no Stage (it is solved, not
trained: :mod:`supcon_ray.engine.probe`).

Training data: per image, a loader worker applies the augmentation policy; batched
(:func:`batched`), the loader yields uint8 images as stored (or, for images of differing sizes, each
view's crop) and the loop applies the rest of the policy on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from supcon_ray.data.augment import SMALL_IMAGE, MultiView, build_transform
from supcon_ray.data.batch_augment import BatchAugment
from supcon_ray.config import TrainConfig
from supcon_ray.data.datasets import Splits, Transformed
from supcon_ray.engine.monitor import knn_top1
from supcon_ray.engine.evaluation import Cached, gather, top1
from supcon_ray.data.loader import SeededItems
from supcon_ray.networks.losses import SupConLoss, cross_entropy_loss, plugin_objective
from supcon_ray.networks.models import Network
from supcon_ray import registry

#: The stages of a run by the loss's registered kind (:data:`supcon_ray.registry.LOSSES`).
STAGES_BY_KIND = {"contrastive": ("pretrain", "linear"), "classifier": ("ce",)}


def stages_of(loss: str) -> tuple[str, ...]:
    """The stages a run of ``loss`` trains, from the kind it is registered with."""
    return STAGES_BY_KIND[registry.LOSSES.meta(loss, "kind")]
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RunContext:
    """What every stage of one run is built from."""

    cfg: TrainConfig
    net: Network
    splits: Splits
    device: torch.device
    rank: int
    world_size: int
    crop_size: int  # training crop side
    eval_transform: Callable[[torch.Tensor], torch.Tensor]
    channels_last: bool

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the training device, channels-last where the run uses it."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


@dataclass
class Stage:
    """One stage: ``module`` trained on ``data`` with ``objective(module, x, y)``."""

    name: str
    module: nn.Module  # what is trained (and wrapped in DDP when distributed)
    data: SeededItems | Cached  # items through a DataLoader, or in-memory feature tensors
    objective: Objective
    epochs: int
    batch_size: int  # global
    optimizer: str
    lr: float
    weight_decay: float
    distributed: bool  # False: every rank runs the stage identically on all the data
    evaluate: Callable[[], float] | None  # validation top-1 after each epoch
    views: int = 1  # images per sample in a step (2 for contrastive pre-training)
    augment: BatchAugment | None = None  # the batched path: the policy the loop applies on the device


def contrastive_loss(cfg: TrainConfig) -> SupConLoss:
    """The run's SupCon / SimCLR loss; scaled by ``tau / base_temperature`` when ``temperature_scaling``."""
    base = cfg.base_temperature if cfg.temperature_scaling else None
    return SupConLoss(cfg.temperature, base, cfg.variant, method=cfg.loss_method)


class FrozenProbe(nn.Module):
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


def batched(cfg: TrainConfig, device: torch.device, crop_size: int) -> bool:
    """Whether the run's policy runs on whole batches on the device (``TrainConfig.augment_path``)."""
    if cfg.augment_path == "auto":
        return device.type == "cuda" or crop_size <= SMALL_IMAGE
    return cfg.augment_path == "batched"


def train_items(ctx: RunContext, views: int) -> tuple[SeededItems, BatchAugment | None]:
    """A stage's training items (``views`` per sample) and, on the batched path, the device policy."""
    cfg, s = ctx.cfg, ctx.splits
    if not batched(cfg, ctx.device, ctx.crop_size):
        tf = build_transform(cfg.augment, ctx.crop_size, s.mean, s.std, cfg.dataset, cfg.policy_options)
        return SeededItems(s.train, MultiView(tf, views) if views > 1 else tf, cfg.seed), None
    augment = BatchAugment(cfg.augment, ctx.crop_size, s.mean, s.std, cfg.dataset, cfg.policy_options,
                           crop=s.uniform_size)
    crop = None if s.uniform_size else augment.loader_crop()
    return SeededItems(s.train, MultiView(crop, views) if crop is not None and views > 1 else crop, cfg.seed), augment


def features_needed(name: str, cfg: TrainConfig) -> tuple[str, ...]:
    """The splits whose frozen-encoder features stage ``name`` reads (encode them before building it)."""
    if name != "linear":
        return ()
    return ("val", "test") if cfg.linear_stage == "augmented" else ("train", "val", "test")


def images_top1(ctx: RunContext, module: nn.Module, split: str) -> float:
    """Top-1 of ``module`` on the unaugmented images of ``split``, split over the ranks."""
    data = Transformed(getattr(ctx.splits, split), ctx.eval_transform)
    return top1(module, data, 512, ctx.rank, ctx.world_size, ctx.device, shard=True)


def features_top1(ctx: RunContext, features: Cached) -> float:
    """Top-1 of the run's classifier on this rank's shard of cached features, counts summed over ranks."""
    return top1(ctx.net.classifier, features, 4096, ctx.rank, ctx.world_size, ctx.device, shard=True)


def build_stage(name: str, ctx: RunContext, features: dict[str, Cached]) -> Stage:
    """Stage ``name`` of the run (``features``: the shards :func:`features_needed` names)."""
    cfg = ctx.cfg
    built_in = registry.LOSSES.built_in(cfg.loss)
    if name == "pretrain":
        supcon = contrastive_loss(cfg) if built_in else plugin_objective(cfg.loss, cfg)
        use_labels = bool(registry.LOSSES.meta(cfg.loss, "labels"))

        def contrastive(module, x, y):
            b, v = x.shape[:2]
            z = module(ctx.layout(x.reshape(b * v, *x.shape[2:])))
            z = z.view(b, v, -1)  # the built-in loss casts to float32 itself; a plugin's gets float32 features
            return supcon(z if built_in else z.float(), y if use_labels else None)

        data, augment = train_items(ctx, 2)
        monitor = (lambda: knn_top1(ctx)) if cfg.monitor == "knn" else None  # noqa: E731
        return Stage(name, ctx.net.contrastive(), data, contrastive, cfg.epochs, cfg.batch_size, cfg.optimizer,
                     cfg.lr, cfg.weight_decay, True, monitor, views=2, augment=augment)
    ce = cross_entropy_loss(cfg.label_smoothing)

    def classify(module, x, y):
        return ce(module(ctx.layout(x)).float(), y)

    if name == "ce":  # end to end on logits: CE, or a plugin's classifier loss (the linear stage is always CE)
        module = ctx.net.end_to_end()
        objective = ce if built_in else plugin_objective(cfg.loss, cfg)
        data, augment = train_items(ctx, 1)
        return Stage(name, module, data, lambda m, x, y: objective(m(ctx.layout(x)).float(), y), cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.lr,
                     cfg.weight_decay, True, lambda: images_top1(ctx, module, "val"), augment=augment)
    if name != "linear" or cfg.linear_stage == "lbfgs":
        raise ValueError(f"no trained stage {name!r} for linear_stage={cfg.linear_stage!r}")
    evaluate = lambda: features_top1(ctx, features["val"])  # noqa: E731
    if cfg.linear_stage == "cached":  # every rank trains the same classifier on all the features
        train = gather(features["train"], len(ctx.splits.train), ctx.world_size)
        return Stage(name, ctx.net.classifier, train, classify, cfg.linear_epochs, cfg.linear_batch_size,
                     cfg.linear_optimizer, cfg.linear_lr, 0.0, False, evaluate)
    # augmented: the run's augmentation through the frozen encoder, data-parallel like pre-training
    probe = FrozenProbe(ctx.net.representation(), ctx.net.classifier)
    data, augment = train_items(ctx, 1)
    return Stage(name, probe, data, classify, cfg.linear_epochs, cfg.linear_batch_size, cfg.linear_optimizer,
                 cfg.linear_lr, 0.0, True, evaluate, augment=augment)
