"""Every name a configuration may use, one registry per kind, readable without torch.

Validating a study file, planning a study, analysing its results and writing the report need the
*names* of losses, encoders, optimizers, schedules and augmentation policies, and what is known of
each without building it (a loss's ``kind``: ``contrastive``, pre-trained on two views and then read
out by the linear stage, or ``classifier``, trained end to end on logits). Those live here, so
``supcon_ray.study``, ``supcon_ray.report`` and ``supcon_ray.power`` never import torch; the training
modules build each name (:attr:`Registry.home` says which module) and
``tests/test_registry.py`` checks that every registered name builds there and nothing else does,
so a name cannot exist without its code. An unknown name fails with "must be one of", listing
what is registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterator, Mapping


@dataclass(frozen=True)
class Registry:
    """The names of one ``kind`` of thing, each with what is known of it without building it, and
    the module (``home``) whose code builds them."""

    kind: str
    home: str
    entries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = {name: MappingProxyType(dict(meta)) for name, meta in self.entries.items()}
        object.__setattr__(self, "entries", MappingProxyType(frozen))

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        return tuple(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def check(self, name: str) -> str:
        """``name`` if it is registered, else ``ValueError`` naming the kind and listing the names."""
        if name not in self.entries:
            raise ValueError(f"unknown {self.kind} {name!r}; must be one of: {', '.join(self.entries)}")
        return name

    def meta(self, name: str, key: str, default: Any = None) -> Any:
        """What is known of ``name`` under ``key`` (``default`` when nothing is)."""
        return self.entries[self.check(name)].get(key, default)

    def where(self, key: str, value: Any) -> tuple[str, ...]:
        """The names whose ``key`` is ``value`` (e.g. every contrastive loss)."""
        return tuple(n for n, m in self.entries.items() if m.get(key) == value)


#: Training objectives (built in :mod:`supcon_ray.losses` and :mod:`supcon_ray.stages`). ``kind`` decides
#: the protocol: ``contrastive`` losses pre-train an encoder on two views, then the linear stage reads it
#: out; ``classifier`` losses train end to end on logits. ``labels``: whether the loss sees the labels.
LOSSES = Registry("loss", "supcon_ray.losses", {
    "supcon": {"kind": "contrastive", "labels": True},
    "simclr": {"kind": "contrastive", "labels": False},
    "ce": {"kind": "classifier", "labels": True},
})
#: Encoders (:data:`supcon_ray.models.ENCODERS` holds each one's architecture).
MODELS = Registry("model", "supcon_ray.models", {
    "resnet-mini": {"stem": "cifar"},
    "resnet-micro": {"stem": "cifar"},
    "resnet18": {"stem": "cifar"},
    "resnet34": {"stem": "cifar"},
    "resnet50": {"stem": "cifar"},
    "resnet50-imagenet": {"stem": "imagenet"},
})
#: Optimizers and learning-rate schedules (:mod:`supcon_ray.optim`).
OPTIMIZERS = Registry("optimizer", "supcon_ray.optim", {"sgd": {}, "lars": {}, "rmsprop": {}, "adamw": {}})
SCHEDULES = Registry("schedule", "supcon_ray.optim", {"cosine": {}, "step": {}, "exponential": {}})
#: Augmentation policies (:mod:`supcon_ray.augment`, :mod:`supcon_ray.batch_augment`).
POLICIES = Registry("augmentation", "supcon_ray.augment", {
    "none": {}, "basic": {}, "simaugment": {}, "autoaugment": {}, "randaugment": {}, "stacked_randaugment": {},
})
#: Every registry, by kind.
REGISTRIES = {r.kind: r for r in (LOSSES, MODELS, OPTIMIZERS, SCHEDULES, POLICIES)}
