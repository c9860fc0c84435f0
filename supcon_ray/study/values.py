"""The configuration algebra of a study: how a setting's values become a trial's hyperparameters.

Plain mappings in and out (no study): a setting of a factor is a mapping of hyperparameters
(:func:`setting_values`); a hyperparameter is a :class:`~supcon_ray.config.TrainConfig` field or a
plugin's option written ``options.<name>`` (:func:`option_name`, folded into the trial's
``options`` mapping by :func:`fold_options`); a numeric value written ``x0.1`` is relative to the
loss's (tuned) base (:func:`relative_multiplier`, multiplied out by :func:`resolve`). Which keys a
loss uses decides whether a setting runs for it (:func:`applies_to`) and which part of a tuning space
it searches (:func:`space_for`): a loss of kind ``classifier`` (CE) has no temperature or linear stage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from supcon_ray import registry
from supcon_ray.config import ConfigError, TrainConfig

#: Keys only a contrastive loss uses (two views, a temperature, a linear read-out stage): a setting that
#: sets nothing else skips a classifier loss, and a tuning space without them is what CE searches.
CONTRASTIVE_ONLY = {"temperature", "base_temperature", "temperature_scaling", "variant", "loss_method",
                    "normalize_representation", "linear_stage", "linear_epochs", "linear_optimizer", "linear_lr",
                    "linear_batch_size"}
#: A plugin's own hyperparameter is written ``options.<name>`` wherever a hyperparameter is (a factor, a key
#: of a setting); base blocks may also give ``options: {<name>: value}``. Trials hold them in ``options``.
OPTION_PREFIX = "options."
#: A value relative to the base: ``x`` and a non-negative multiplier (``x0.1``, ``x2``, ``x1e-2``).
_RELATIVE = re.compile(r"^x(?P<m>(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)$")

_Dimension = TypeVar("_Dimension")


def setting_values(factor: str, setting: Any) -> dict[str, Any]:
    """The hyperparameters a setting of ``factor`` sets: the mapping as written, or ``{factor: setting}``."""
    return dict(setting) if isinstance(setting, dict) else {factor: setting}


def option_name(key: str) -> str | None:
    """``options.epsilon`` -> ``epsilon``; ``None`` for any other key."""
    return key[len(OPTION_PREFIX):] if isinstance(key, str) and key.startswith(OPTION_PREFIX) and \
        len(key) > len(OPTION_PREFIX) else None


def is_hyperparameter(key: str) -> bool:
    """A TrainConfig field or a plugin option (``options.<name>``)."""
    return key in TrainConfig.model_fields or option_name(key) is not None


def fold_options(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every ``options.<name>`` key moved into its ``options`` mapping (over what it held)."""
    flat = {k: v for k, v in values.items() if option_name(k) is None}
    given = {option_name(k): v for k, v in values.items() if option_name(k) is not None}
    if given:
        flat["options"] = {**(values.get("options") or {}), **given}
    return flat


def declared_options(base: dict[str, Any]) -> dict[str, Any]:
    """The options the loss, model and dataset of ``base`` declare, with their values there (else defaults)."""
    out: dict[str, Any] = {}
    for reg, key in ((registry.LOSSES, "loss"), (registry.MODELS, "model"), (registry.DATASETS, "dataset")):
        name = base.get(key, TrainConfig.model_fields[key].default)
        if name in reg:
            out.update(reg.meta(name, "options") or {})
    return {**out, **(base.get("options") or {})}


def relative_multiplier(key: str, value: Any) -> float | None:
    """The multiplier of a relative value such as ``x0.1`` for a hyperparameter, else None."""
    if not isinstance(value, str) or not is_hyperparameter(key):
        return None
    m = _RELATIVE.match(value.strip())
    return float(m["m"]) if m else None


def is_numeric(key: str) -> bool:
    """Whether the TrainConfig field ``key`` holds a number (an ``int``, a ``float`` or an optional float)."""
    annotation = TrainConfig.model_fields[key].annotation
    return annotation in (int, float) or annotation == (float | None)


def numeric_keys() -> dict[str, type]:
    """Each numeric hyperparameter and its type (``int`` or ``float``)."""
    return {k: (int if f.annotation is int else float) for k, f in TrainConfig.model_fields.items() if is_numeric(k)}


def resolve(values: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``values`` with relative entries (``lr: x0.1``) multiplied out against ``base`` (defaults fill gaps).

    Raises ConfigError for a relative plugin option the base has no number for."""
    out = {}
    for key, value in values.items():
        mult = relative_multiplier(key, value)
        if mult is None:
            out[key] = value
            continue
        option = option_name(key)
        if option is not None:
            ref = declared_options(base).get(option)
            if not isinstance(ref, (int, float)) or isinstance(ref, bool):
                raise ConfigError(f"{key}: {value!r} is relative to the base, but the base has no number for "
                                  f"option {option!r}")
            out[key] = max(1, round(ref * mult)) if isinstance(ref, int) else float(ref * mult)
            continue
        ref = base.get(key, TrainConfig.model_fields[key].default)
        scaled = ref * mult
        out[key] = max(1, round(scaled)) if TrainConfig.model_fields[key].annotation is int else float(scaled)
    return out


def uses_contrastive_keys(loss: str) -> bool:
    """Whether ``loss`` pre-trains on two views (its registered kind): only those use :data:`CONTRASTIVE_ONLY`."""
    return registry.LOSSES.meta(loss, "kind") == "contrastive"


def applies_to(loss_base: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether a setting of ``values`` is run for the loss whose base is ``loss_base``: not when it only sets
    keys that loss does not use (contrastive keys for a classifier loss; another plugin's options)."""
    if not uses_contrastive_keys(loss_base["loss"]) and set(values) <= CONTRASTIVE_ONLY:
        return False
    options = [option_name(k) for k in values if option_name(k) is not None]
    if options and len(options) == len(values):
        return any(o in declared_options(loss_base) for o in options)
    return True


def space_for(space: Mapping[str, _Dimension], loss: str) -> dict[str, _Dimension]:
    """The part of a tuning space (key -> distribution) that ``loss`` uses (CE has no temperature or
    linear stage)."""
    return {k: d for k, d in space.items() if uses_contrastive_keys(loss) or k not in CONTRASTIVE_ONLY}


def same_value(a: Any, b: Any) -> bool:
    """Two hyperparameter values are the same: numbers within a relative 1e-9 (a multiplied-out ``x1`` equals
    the base it came from), anything else by ``==``."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b
