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

Plugins (:mod:`supcon_ray.plugins`) add names at run time through :meth:`Registry.add`; their entries
carry the ``builder`` and the ``module`` that registered them. A plugin name exists only in the processes
that loaded the plugin (the driver of a study, its trial processes and Ray Train workers), never in the
report, planner or analysis, which read what they need from the recorded data.
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
        own = {name: MappingProxyType(dict(meta)) for name, meta in self.entries.items()}
        object.__setattr__(self, "_own", own)
        object.__setattr__(self, "entries", MappingProxyType(own))

    def add(self, name: str, meta: Mapping[str, Any]) -> None:
        """Register a plugin's ``name`` (``meta`` holds its ``module`` and ``builder``). The same module
        registering the same name again (a re-import, a new version of its source) replaces its entry;
        any other owner raises ``ValueError`` naming both."""
        old = self._own.get(name)  # type: ignore[attr-defined]
        if old is not None and old.get("module") != meta.get("module"):
            where = f"plugin module {old['module']!r}" if old.get("module") else f"built into {self.home}"
            raise ValueError(f"{self.kind} {name!r} is already registered ({where}); "
                             f"plugin module {meta.get('module')!r} cannot register it again: choose another name")
        self._own[name] = MappingProxyType(dict(meta))  # type: ignore[attr-defined]

    def forget_plugins(self) -> None:
        """Drop every name a plugin added (a notebook or a test that loads plugins afresh)."""
        for name in [n for n, meta in self._own.items() if meta.get("module") is not None]:  # type: ignore[attr-defined]
            del self._own[name]  # type: ignore[attr-defined]

    def built_in(self, name: str) -> bool:
        """Whether ``name`` is built in (not added by a plugin)."""
        return self.check(name) in self.entries and self.entries[name].get("module") is None

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


#: Training objectives (built in :mod:`supcon_ray.networks.losses` and :mod:`supcon_ray.engine.stages`). ``kind`` decides
#: the protocol: ``contrastive`` losses pre-train an encoder on two views, then the linear stage reads it
#: out; ``classifier`` losses train end to end on logits. ``labels``: whether the loss sees the labels.
LOSSES = Registry("loss", "supcon_ray.networks.losses", {
    "supcon": {"kind": "contrastive", "labels": True},
    "simclr": {"kind": "contrastive", "labels": False},
    "ce": {"kind": "classifier", "labels": True},
})
#: Encoders (:data:`supcon_ray.networks.models.ENCODERS` holds each one's architecture).
MODELS = Registry("model", "supcon_ray.networks.models", {
    "resnet-mini": {"stem": "cifar"},
    "resnet-micro": {"stem": "cifar"},
    "resnet18": {"stem": "cifar"},
    "resnet34": {"stem": "cifar"},
    "resnet50": {"stem": "cifar"},
    "resnet50-imagenet": {"stem": "imagenet"},
})
#: Optimizers and learning-rate schedules (:mod:`supcon_ray.networks.optim`).
OPTIMIZERS = Registry("optimizer", "supcon_ray.networks.optim", {"sgd": {}, "lars": {}, "rmsprop": {}, "adamw": {}})
SCHEDULES = Registry("schedule", "supcon_ray.networks.optim", {"cosine": {}, "step": {}, "exponential": {}})
#: Augmentation policies (:mod:`supcon_ray.data.augment`, :mod:`supcon_ray.data.batch_augment`).
POLICIES = Registry("augmentation", "supcon_ray.data.augment", {
    "none": {}, "basic": {}, "simaugment": {}, "autoaugment": {}, "randaugment": {}, "stacked_randaugment": {},
})
#: Datasets by name besides the ``parquet:DIR`` / ``imagefolder:DIR`` forms (:mod:`supcon_ray.data.names`),
#: loaded by :mod:`supcon_ray.data.datasets`.
DATASETS = Registry("dataset", "supcon_ray.data.datasets", {"digits": {}, "cifar10": {}, "cifar100": {}})
#: Every registry, by kind.
REGISTRIES = {r.kind: r for r in (LOSSES, MODELS, OPTIMIZERS, SCHEDULES, POLICIES, DATASETS)}


def forget_plugins() -> None:
    """Drop every plugin's names from every registry (the built-in ones stay)."""
    for reg in REGISTRIES.values():
        reg.forget_plugins()
