"""Study files: schema, validation and expansion into trials.

A study file (YAML, loaded with ``yaml.safe_load``) describes one study; see README "Study files".
:func:`load_study` validates it completely before anything starts: any problem raises
:class:`~supcon_ray.config.ConfigError` naming the file, the key path (``vary.optimizer[2].lr``)
and what is allowed. :func:`plan_trials` expands a validated study into :class:`TrialSpec` s:

* ``vary`` (one factor at a time): for each factor, each setting, each loss and each seed, the
  loss's best setting (``base.common`` + ``base.<loss>``) with that setting applied. A setting is a
  value for the factor's own key (``lars``) or a mapping of several keys (``{optimizer: rmsprop,
  lr: 0.01}``). Settings that only touch contrastive keys (temperature...) skip ``ce``.
* ``search`` with ``grid``, ``random`` or ``qmc``: configurations drawn up front by the Optuna
  sampler, then paired: the same configurations and seeds for every loss.
* ``search`` with ``tpe``: adaptive, so it cannot be planned; the runner runs one Optuna TPE search
  per loss through Ray Tune (its spread is not a uniform sample of the space: the report says so).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .config import ConfigError, TrainConfig, format_validation_error

CONTRASTIVE_ONLY = {"temperature", "base_temperature", "variant", "loss_method", "linear_epochs",
                    "linear_optimizer", "linear_lr", "linear_batch_size"}
RESOURCE_KEYS = {"workers", "cpus_per_worker", "gpus_per_worker"}
Scalar = Union[bool, int, float, str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distribution(_Strict):
    """One search dimension: exactly one of the keys."""

    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    int: tuple[int, int] | None = None
    choice: list[Scalar] | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("loguniform", "uniform", "int", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of: loguniform, uniform, int, choice")
        kind = given[0]
        if kind == "choice":
            if not self.choice:
                raise ValueError("choice needs at least one value")
        else:
            lo, hi = getattr(self, kind)
            if not lo < hi:
                raise ValueError(f"{kind} needs [low, high] with low < high")
            if kind == "loguniform" and lo <= 0:
                raise ValueError("loguniform needs low > 0")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("loguniform", "uniform", "int", "choice") if getattr(self, k) is not None)


class Search(_Strict):
    sampler: Literal["grid", "random", "qmc", "tpe"]
    num_samples: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    space: dict[str, Distribution]

    @field_validator("space")
    @classmethod
    def _space_keys(cls, space):
        if not space:
            raise ValueError("search.space needs at least one key")
        for key in space:
            if key not in TrainConfig.model_fields:
                raise ValueError(f"unknown hyperparameter {key!r}; valid: {', '.join(TrainConfig.model_fields)}")
        return space


class Resources(_Strict):
    workers_per_trial: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(2, ge=0)
    #: auto: a 1-worker trial trains inside the Tune trial itself (about 20 s less start-up per trial);
    #: ray_train: every trial is a TorchTrainer run.
    launcher: Literal["auto", "ray_train"] = "auto"


class Base(_Strict):
    common: dict[str, Any] = {}
    supcon: dict[str, Any] = {}
    simclr: dict[str, Any] = {}
    ce: dict[str, Any] = {}


class Study(_Strict):
    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    dataset: str = "digits"
    model: str = "resnet-mini"
    losses: list[Literal["supcon", "simclr", "ce"]] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    base: Base = Base()
    vary: dict[str, list[Union[Scalar, dict[str, Any]]]] = {}
    search: Search | None = None
    resources: Resources = Resources()
    quick: dict[str, Any] | None = None

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds):
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be >= 0")
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds

    @field_validator("vary")
    @classmethod
    def _vary(cls, vary):
        for factor, settings in vary.items():
            if not settings:
                raise ValueError(f"factor {factor!r} is empty: list at least one setting")
        return vary

    @model_validator(mode="after")
    def _something_to_run(self):
        if not self.vary and self.search is None:
            raise ValueError("a study needs 'vary' (one factor at a time) or 'search' (a sampled space)")
        return self


@dataclass
class TrialSpec:
    """One planned trial: which loss, seed, factor and setting, and its full TrainConfig."""

    trial_id: str
    loss: str
    seed: int
    factor: str
    setting: str
    design: str
    train: dict[str, Any] = field(repr=False)
    sampler_seed: int | None = None


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def setting_label(values: dict[str, Any]) -> str:
    """A readable label such as ``optimizer=rmsprop,lr=0.01``."""
    return ",".join(f"{k}={_fmt(v)}" for k, v in values.items())


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _check_partial(values: dict[str, Any], path: str, source: str) -> None:
    """Validate a partial TrainConfig (defaults fill the rest) and report errors at ``path``."""
    try:
        TrainConfig(**values)
    except ValidationError as err:
        lines = format_validation_error(err).splitlines()
        raise ConfigError("\n".join(f"{source}: {path}.{line}" if path else f"{source}: {line}" for line in lines)) from None


def _setting_values(factor: str, setting: Any) -> dict[str, Any]:
    return dict(setting) if isinstance(setting, dict) else {factor: setting}


def load_study(path: str | Path, quick: bool = False) -> Study:
    """Read, validate and (with ``quick``) apply the ``quick`` block of the study file at ``path``."""
    path = Path(path)
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such study file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a study file is a mapping with keys study, losses, seeds, base, vary/search, ...")
    unknown = set(raw.get("quick") or {}) - set(Study.model_fields) - {"quick"}
    if unknown:
        raise ConfigError(f"{source}: quick.{sorted(unknown)[0]}: unknown key; valid: {', '.join(Study.model_fields)}")
    if quick:
        overrides = raw.get("quick")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{source}: --quick needs a 'quick' block in the study file")
        raw = _deep_merge({k: v for k, v in raw.items() if k != "quick"}, overrides)
    try:
        study = Study(**raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    _check_partial({"dataset": study.dataset, "model": study.model}, "", source)
    for part in ("common", "supcon", "simclr", "ce"):
        values = getattr(study.base, part)
        bad = RESOURCE_KEYS & set(values)
        if bad:
            raise ConfigError(f"{source}: base.{part}.{sorted(bad)[0]}: set workers and CPUs/GPUs under 'resources'")
        _check_partial(values, f"base.{part}", source)
    for factor, settings in study.vary.items():
        for i, setting in enumerate(settings):
            values = _setting_values(factor, setting)
            if not isinstance(setting, dict) and factor not in TrainConfig.model_fields:
                raise ConfigError(f"{source}: vary.{factor}[{i}]: {factor!r} is not a hyperparameter, so each setting "
                                  f"must be a mapping of hyperparameters; valid keys: {', '.join(TrainConfig.model_fields)}")
            _check_partial(values, f"vary.{factor}[{i}]", source)
    for loss in study.losses:
        _check_partial(_base_config(study, loss), f"base.{loss}", source)
    return study


def _base_config(study: Study, loss: str) -> dict[str, Any]:
    r = study.resources
    return {
        "dataset": study.dataset,
        "model": study.model,
        **study.base.common,
        **getattr(study.base, loss),
        "loss": loss,
        "workers": r.workers_per_trial,
        "cpus_per_worker": r.cpus_per_worker,
        "gpus_per_worker": r.gpus_per_worker,
    }


def _trial_id(study: str, loss: str, factor: str, label: str, seed: int) -> str:
    digest = hashlib.sha1(json.dumps([study, loss, factor, label, seed]).encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9.=_-]+", "_", f"{factor}-{label}")[:60]
    return f"{loss}-{slug}-s{seed}-{digest}"


def _spec(study: Study, loss: str, factor: str, values: dict[str, Any], seed: int, design: str,
          sampler_seed: int | None = None) -> TrialSpec:
    label = setting_label(values)
    train = {**_base_config(study, loss), **values, "seed": seed}
    return TrialSpec(_trial_id(study.study, loss, factor, label, seed), loss, seed, factor, label, design,
                     TrainConfig(**train).model_dump(), sampler_seed)


def optuna_space(search: Search) -> dict[str, Any]:
    """The search space as Optuna distributions."""
    import optuna

    distributions = {}
    for key, d in search.space.items():
        if d.kind == "loguniform":
            distributions[key] = optuna.distributions.FloatDistribution(*d.loguniform, log=True)
        elif d.kind == "uniform":
            distributions[key] = optuna.distributions.FloatDistribution(*d.uniform)
        elif d.kind == "int":
            distributions[key] = optuna.distributions.IntDistribution(*d.int)
        else:
            distributions[key] = optuna.distributions.CategoricalDistribution(d.choice)
    return distributions


def tpe_spec(study: Study, loss: str, config: dict[str, Any]) -> TrialSpec:
    """The trial an adaptive TPE suggestion stands for (``__trial_index__`` picks the seed)."""
    values = {k: config[k] for k in study.search.space}
    seed = study.seeds[int(config.get("__trial_index__", 0)) % len(study.seeds)]
    return _spec(study, loss, "search", values, seed, "search:tpe", study.search.seed)


def sample_design(search: Search) -> list[dict[str, Any]]:
    """Configurations for a grid / random / QMC search, drawn up front (random and QMC with Optuna's samplers)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = optuna_space(search)
    if search.sampler == "grid":
        not_listed = [k for k, d in search.space.items() if d.kind != "choice"]
        if not_listed:
            raise ConfigError(f"search.space.{not_listed[0]}: the grid sampler needs 'choice' lists, not ranges")
        grid = {k: d.choice for k, d in search.space.items()}
        size = 1
        for values in grid.values():
            size *= len(values)
        if search.num_samples not in (None, size):
            raise ConfigError(f"search.num_samples: the grid has {size} points; leave num_samples out or set it to {size}")
        # every grid point once, in a fixed order (Optuna's GridSampler would repeat points past the grid size)
        return [dict(zip(grid, point)) for point in itertools.product(*grid.values())]
    else:
        if search.num_samples is None:
            raise ConfigError(f"search.num_samples: required for the {search.sampler} sampler")
        n = search.num_samples
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = (optuna.samplers.RandomSampler(seed=search.seed) if search.sampler == "random"
                       else optuna.samplers.QMCSampler(seed=search.seed, scramble=True))
    study = optuna.create_study(sampler=sampler)
    design = []
    for _ in range(n):
        trial = study.ask(distributions)
        design.append(dict(trial.params))
        study.tell(trial, 0.0)  # value unused: these samplers do not adapt
    return design


def plan_trials(study: Study) -> list[TrialSpec]:
    """Every trial a (non-adaptive) study runs, in a stable order. TPE trials are planned by the runner."""
    specs: list[TrialSpec] = []
    for factor, settings in study.vary.items():
        for setting in settings:
            values = _setting_values(factor, setting)
            for loss in study.losses:
                if loss == "ce" and set(values) <= CONTRASTIVE_ONLY:
                    continue
                for seed in study.seeds:
                    specs.append(_spec(study, loss, factor, values, seed, "one_factor"))
    if study.search is not None and study.search.sampler != "tpe":
        for values in sample_design(study.search):
            for loss in study.losses:
                for seed in study.seeds:
                    specs.append(_spec(study, loss, "search", values, seed, f"search:{study.search.sampler}",
                                       study.search.seed))
    return specs


def study_as_yaml(study: Study) -> str:
    """The validated study (after --quick) as YAML, stored beside its results."""
    return yaml.safe_dump(study.model_dump(mode="json", exclude={"quick"}), sort_keys=False)
