"""The decorators a plugin module registers its losses, encoders and datasets with.

Each adds one name to its registry (:mod:`supcon_ray.registry`) with the decorated builder and the
module that defines it; the training code builds a plugin's name through that builder, exactly where
it builds a built-in one. A name already registered by anything else raises, naming both modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .. import registry
from ..display import register_display

Builder = TypeVar("Builder", bound=Callable[..., Any])
#: A plugin name: lower case, digits, ``_`` and ``-`` (it appears in trial ids and file names).
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
#: The types a plugin's own hyperparameter (an option) may take.
OPTION_TYPES = (bool, int, float, str)
KINDS = ("classifier", "contrastive")


class PluginError(ValueError):
    """A plugin that cannot be used: missing, failing on import, registering a taken name, or building
    something that breaks the contract. The message names the module and the name."""


def _check_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(options or {})
    for key, value in out.items():
        if not isinstance(key, str) or not NAME.match(key.replace(".", "_")):
            raise PluginError(f"{name}: option {key!r}: an option name is lower case letters, digits and '_'")
        if not isinstance(value, OPTION_TYPES):
            raise PluginError(f"{name}: option {key!r}: its default must be a bool, int, float or str, "
                              f"not {type(value).__name__}")
    return out


def _register(reg: registry.Registry, name: str, meta: dict[str, Any]) -> Callable[[Builder], Builder]:
    if not isinstance(name, str) or not NAME.match(name):
        raise PluginError(f"{reg.kind} name {name!r}: use lower case letters, digits, '_' and '-' "
                          "(at most 40 characters, starting with a letter)")

    def decorate(builder: Builder) -> Builder:
        module = getattr(builder, "__module__", None) or "?"
        if not callable(builder):
            raise PluginError(f"plugin module {module!r}: {reg.kind} {name!r}: the decorated builder is not callable")
        try:
            reg.add(name, {**meta, "module": module, "builder": builder})
        except ValueError as err:
            raise PluginError(str(err)) from None
        return builder

    return decorate


#: What a contrastive plugin loss is given under data-parallel training: every worker's batch (``global``,
#: as the built-in SupCon contrasts) or its own worker's only (``local``).
BATCHES = ("global", "local")


def register_loss(name: str, *, kind: str, labels: bool = True, options: Mapping[str, Any] | None = None,
                  batch: str = "global", display: str | None = None) -> Callable[[Builder], Builder]:
    """Register a training objective under ``name``.

    ``kind="classifier"``: trained end to end on logits, like ``ce``; ``build(cfg)`` returns
    ``loss(logits [batch, classes], labels [batch]) -> scalar tensor``.
    ``kind="contrastive"``: pre-trained on two augmented views, then read out by the linear stage,
    like ``supcon``; ``build(cfg)`` returns ``loss(features [batch, views, dim], labels [batch]) -> scalar``
    (``features`` are the projection head's L2-normalised outputs; ``labels`` is ``None`` when
    ``labels=False``, a self-supervised loss). ``cfg`` is the run's :class:`~supcon_ray.config.TrainConfig`;
    ``cfg.option(key)`` reads the loss's own hyperparameters, declared in ``options`` with their defaults.

    ``batch`` (contrastive losses): under data-parallel training with ``N`` workers, ``"global"`` (the default)
    gives the loss the features and labels of every worker's batch, concatenated in rank order, with gradients
    flowing to this worker's slice, so the update equals single-process training on the concatenated batch (the
    built-in SupCon contrasts the same way); ``"local"`` gives it this worker's batch only. One process: the same.

    ``display``: how the console, the report and its figures name the loss (``"Poly-1"``; default its name);
    the name stays what rows, trial ids and the JSON record.
    """
    if kind not in KINDS:
        raise PluginError(f"loss {name!r}: kind must be one of: {', '.join(KINDS)}")
    if batch not in BATCHES:
        raise PluginError(f"loss {name!r}: batch must be one of: {', '.join(BATCHES)}")
    if display is not None and (not isinstance(display, str) or not 0 < len(display) <= 40 or not display.isprintable()
                                or display != display.strip()):
        raise PluginError(f"loss {name!r}: display must be a name of 1 to 40 printable characters")
    meta = {"kind": kind, "labels": bool(labels), "options": _check_options(name, options), "batch": batch}
    decorate = _register(registry.LOSSES, name, {**meta, **({"display": display} if display else {})})
    if not display:
        return decorate

    def named(builder: Builder) -> Builder:
        out = decorate(builder)
        register_display(name, display)  # once the name is taken: a refused registration names nothing
        return out

    return named


def register_encoder(name: str, *, options: Mapping[str, Any] | None = None) -> Callable[[Builder], Builder]:
    """Register an encoder (``model:``) under ``name``: ``build(cfg, in_channels)`` returns an
    ``nn.Module`` mapping images ``[batch, in_channels, H, W]`` to features ``[batch, out_dim]``, with an
    ``out_dim`` attribute; the projection head and the linear classifier are put on top of it."""
    return _register(registry.MODELS, name, {"options": _check_options(name, options)})


def register_dataset(name: str, *, options: Mapping[str, Any] | None = None) -> Callable[[Builder], Builder]:
    """Register a dataset (``dataset:``) under ``name``: ``build(cfg)`` returns ``(train, test)``, each a
    sequence of ``(image, label)`` with ``image`` a uint8 tensor ``[channels, H, W]`` (every image one size)
    and ``label`` an int from 0. Validation is carved from ``train`` as for every dataset; the data is held
    in memory, so this suits datasets up to some hundred thousand small images."""
    return _register(registry.DATASETS, name, {"options": _check_options(name, options)})
