"""A study's trials: what one planned trial is, its id, and the ordinary trials of step 2.

:func:`plan_trials` expands a validated study into :class:`TrialSpec` s:

* ``vary`` (one factor at a time): for each factor, each setting, each loss and each seed, the
  loss's base (:func:`supcon_ray.study.bases.base_config`) with that setting applied. A setting is a
  value for the factor's own key (``lars``) or a mapping of several keys (``{optimizer: rmsprop,
  lr: 0.01}``). Settings that only touch contrastive keys (temperature...) skip ``ce``.
* ``search`` with ``grid``, ``random`` or ``qmc``: configurations drawn up front
  (:mod:`supcon_ray.study.sampling`), then paired: the same configurations and seeds for every loss.
* ``search`` with ``tpe``: adaptive, so it cannot be planned; the runner runs one Optuna TPE search
  per loss through Ray Tune and turns each suggestion into a trial with :func:`tpe_spec`.

The protocol's other trials (step 1, nuisance searches, replicates) are planned by
:mod:`supcon_ray.study.protocol` with :func:`make_spec`. Every trial records its :class:`Phase`.

Trial ids are built from the full configuration (a hash of every TrainConfig value, the phase and
the study's name), so close floats never share an id; identical random draws are dropped up front
and the plan says how many. Ids are recorded: nothing here may change the id of a planned trial.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from supcon_ray.config import ConfigError, TrainConfig
from supcon_ray.data.names import absolute_dataset_name
from supcon_ray.designs import DesignKind, design_name
from supcon_ray.labels import distinct_labels, format_label
from supcon_ray.study.bases import base_config
from supcon_ray.study.sampling import sample_design
from supcon_ray.study.schema import EXECUTION_KEYS, RESOURCE_KEYS, Study
from supcon_ray.study.values import applies_to, fold_options, resolve, setting_values


class Phase(StrEnum):
    """What a trial was run for, recorded in its ``phase`` column (the values are a data contract):
    choosing each loss's base in step 1, selecting a nuisance configuration (never analysed), or
    entering the statistics (step 2's ordinary trials and step 3's replicates)."""

    TUNE_BASE = "tune_base"
    NUISANCE = "nuisance"
    STUDY = "study"


#: The ``factor`` recorded for a trial of a sampled space (the ``search`` block).
SEARCH_FACTOR = "search"


@dataclass
class TrialSpec:
    """One planned trial: which loss, seed, factor and setting, and its full TrainConfig.

    ``phase``: a :class:`Phase` (a plain string given is read as one); ``nuisance`` holds the re-tuned
    values of a nuisance trial.
    """

    trial_id: str
    loss: str
    seed: int
    factor: str
    setting: str
    design: str
    train: dict[str, Any] = field(repr=False)
    sampler_seed: int | None = None
    phase: Phase = Phase.STUDY
    nuisance: dict[str, Any] | None = None
    #: the study file's folder: ``train["dataset"]`` (as written) resolves against it (:func:`train_config`)
    folder: str | None = None

    def __post_init__(self) -> None:
        self.phase = Phase(self.phase)


def train_config(spec: dict[str, Any]) -> TrainConfig:
    """The TrainConfig a planned trial (``asdict(TrialSpec)``) trains, its dataset path resolved."""
    train = spec["train"]
    return TrainConfig(**{**train, "dataset": absolute_dataset_name(train["dataset"], spec.get("folder"))})


def trial_id(study: str, phase: str, factor: str, label: str, train: dict[str, Any]) -> str:
    """A readable id whose digest covers what the trial computes: every TrainConfig value exactly, with the
    dataset as written in the study file, and no resources (where and on how much it runs), so ids are
    the same on every machine. The factor and label only name it: the same configuration reached from
    two factors (the base) is one trial."""
    computed = {k: v for k, v in train.items() if k not in RESOURCE_KEYS | EXECUTION_KEYS}
    key = json.dumps({"study": study, "phase": str(phase), "train": computed}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9.=_-]+", "_", f"{factor}-{label}")[:60]
    return f"{train['loss']}-{slug}-s{train['seed']}-{digest}"


def make_spec(study: Study, loss: str, factor: str, values: dict[str, Any], seed: int, design: str,
              sampler_seed: int | None = None, *, tuned: dict[str, Any] | None = None, phase: Phase = Phase.STUDY,
              label: str | None = None, nuisance: dict[str, Any] | None = None, rung: int | None = None) -> TrialSpec:
    """The trial of ``values`` (and ``nuisance`` values) applied to the loss's (tuned) base, for ``seed``.
    ``rung``: a selection run of a search with fidelity trained for that many epochs, its schedule decayed
    within them (:mod:`supcon_ray.study.fidelity`); its id names the epochs. None: the configuration's own."""
    base = base_config(study, loss, tuned)
    label = format_label(values) if label is None else label
    short = {"epochs": rung} if rung is not None else {}
    train = fold_options({**fold_options(base), **resolve(values, base), **(nuisance or {}), **short, "seed": seed})
    train = TrainConfig(**{**train, "dataset": absolute_dataset_name(study.dataset, study.folder)}).model_dump()
    train["dataset"] = study.dataset  # as written: ids and rows hold no machine path
    if not train["options"]:
        del train["options"]  # added after the first studies: absent while empty, so no recorded id changed
    id_label = label + ("," + format_label(nuisance) if nuisance else "") + (f",epochs={rung}" if rung is not None else "")
    return TrialSpec(trial_id(study.study, phase, factor, id_label, train), loss, seed, factor, label, design,
                     train, sampler_seed, Phase(phase), nuisance, study.folder)


def tpe_spec(study: Study, loss: str, config: dict[str, Any], tuned: dict[str, Any] | None = None) -> TrialSpec:
    """The trial an adaptive TPE suggestion of the ``search`` block stands for (``__trial_index__`` picks the seed)."""
    values = {k: config[k] for k in study.search.space}
    seed = study.seeds[int(config.get("__trial_index__", 0)) % len(study.seeds)]
    return make_spec(study, loss, SEARCH_FACTOR, values, seed, design_name(DesignKind.SEARCH, "tpe"), study.search.seed,
                     tuned=tuned, label=format_label(values, None))


def plan_trials(study: Study, tuned: dict[str, dict[str, Any]] | None = None,
                skip_factors: set[str] | frozenset = frozenset(), check: bool = True) -> list[TrialSpec]:
    """Every ordinary step-2 trial of a (non-adaptive) study, in a stable order, from each loss's base
    (with step 1's ``tuned`` values per loss). TPE trials are planned by the runner; factors with
    nuisance hyperparameters (``skip_factors``) by :func:`supcon_ray.study.protocol.plan`. ``check``: refuse two
    trials of the same id (:func:`check_unique`)."""
    tuned = tuned or {}
    specs: list[TrialSpec] = []
    for factor, settings in study.vary.items():
        if factor in skip_factors:
            continue
        all_values = [setting_values(factor, setting) for setting in settings]
        for values, label in zip(all_values, distinct_labels(all_values)):
            for loss in study.losses:
                if not applies_to(base_config(study, loss, tuned.get(loss)), values):
                    continue
                for seed in study.seeds:
                    specs.append(make_spec(study, loss, factor, values, seed, design_name(DesignKind.ONE_FACTOR),
                                           tuned=tuned.get(loss), label=label))
    if study.search is not None and study.search.sampler != "tpe":
        configs = sample_design(study.search)
        for values, label in zip(configs, distinct_labels(configs)):
            for loss in study.losses:
                for seed in study.seeds:
                    specs.append(make_spec(study, loss, SEARCH_FACTOR, values, seed,
                                           design_name(DesignKind.SEARCH, study.search.sampler), study.search.seed,
                                           tuned=tuned.get(loss), label=label))
    return check_unique(specs) if check else specs


def check_unique(specs: list[TrialSpec]) -> list[TrialSpec]:
    """Refuse a plan in which two trials are the same configuration (e.g. a setting listed twice)."""
    seen: dict[str, TrialSpec] = {}
    for s in specs:
        if s.trial_id in seen:
            first = seen[s.trial_id]
            raise ConfigError(f"{s.factor}: settings {first.setting!r} and {s.setting!r} are the same configuration "
                              f"for {s.loss} (seed {s.seed}); list each setting once")
        seen[s.trial_id] = s
    return specs
