"""Each loss's base: the configuration every factor of a study is changed from.

A loss's base is the study file's ``base`` (``common``, then the loss's own block) with step 1's
tuned values on top, and the ``resources`` block's keys (:func:`base_config`). A factor's base
setting is the one of its settings that equals that configuration (:func:`base_settings`); a
dataset whose images all have one size is trained at that size unless the study says otherwise
(:func:`at_own_size`).
"""

from __future__ import annotations

from typing import Any

from supcon_ray.config import ConfigError, TrainConfig
from supcon_ray.data.names import SIZE_KEYS, absolute_dataset_name, own_size
from supcon_ray.labels import distinct_labels
from supcon_ray.study.schema import Study
from supcon_ray.study.values import OPTION_PREFIX, declared_options, resolve, same_value, setting_values


def base_config(study: Study, loss: str, tuned: dict[str, Any] | None = None) -> dict[str, Any]:
    """The loss's base: the study file's ``base`` with step 1's ``tuned`` values on top."""
    r = study.resources
    return {
        "dataset": study.dataset,
        "model": study.model,
        **study.base.common,
        **study.base.block(loss),
        **(tuned or {}),
        "loss": loss,
        "workers": r.workers_per_trial,
        "cpus_per_worker": r.cpus_per_worker,
        "gpus_per_worker": r.gpus_per_worker,
    }


def at_own_size(study: Study) -> tuple[Study, str]:
    """The study with ``base.common.image_size`` set to its dataset's images' own size, where that is
    one size for every image of a whole ``parquet:`` / ``imagefolder:`` dataset and the study says
    nothing of sizes (no ``crop_size``, ``image_size``, ``train_size`` or ``test_size`` in its base);
    and a sentence saying which size trials use and why (empty for the built-in datasets). The size
    is then part of what every trial computes (its id and the study's fingerprint), so a folder that
    ran at the 224 px crop before refuses to resume instead of mixing sizes."""
    blocks = [study.base.common, *(study.base.block(loss) for loss in study.losses)]
    if any(key in block for block in blocks for key in SIZE_KEYS):
        return study, ""
    try:
        side, note = own_size(absolute_dataset_name(study.dataset, study.folder))
    except ValueError as err:
        raise ConfigError(f"dataset: {study.dataset!r}: {err}") from None
    if side is None:
        return study, note
    base = study.base.model_copy(update={"common": {**study.base.common, "image_size": side}})
    return study.model_copy(update={"base": base}), note


def base_settings(study: Study, tuned: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, str | None]]:
    """Each factor's base setting per loss: the setting whose values equal the loss's (tuned) base
    configuration (``lr: x1``; the base augmentation; the base optimizer, whose runs are its re-tuned
    pick), as the label its trials carry; ``None`` where the base value is not among the settings."""
    out: dict[str, dict[str, str | None]] = {}
    for factor, settings in study.vary.items():
        all_values = [setting_values(factor, setting) for setting in settings]
        labels = distinct_labels(all_values)
        out[factor] = {}
        for loss in study.losses:
            base = base_config(study, loss, (tuned or {}).get(loss))
            full = {**{k: f.default for k, f in TrainConfig.model_fields.items()}, **base,
                    **{OPTION_PREFIX + k: v for k, v in declared_options(base).items()}}
            match = None
            for values, label in zip(all_values, labels):
                resolved = resolve(values, base)
                if all(same_value(resolved[k], full.get(k)) for k in values):
                    match = label
                    break
            out[factor][loss] = match
    return out
