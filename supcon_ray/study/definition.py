"""Study files: schema, validation and expansion into trials.

A study file (YAML, loaded with ``yaml.safe_load``) describes one study; see docs/usage.md, "Study files".
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

Two more blocks describe the paper's protocol; :mod:`supcon_ray.study.protocol` plans and runs them:

* ``tune_base`` (step 1): each loss's base is found by a search of ``budget`` configurations
  (the same for every loss) x ``seeds``, picked by the mean of ``select`` (a validation metric)
  over seeds. Step 2 (``vary`` / ``search``) starts from there.
* ``nuisance``: per factor, hyperparameters re-tuned for each setting and loss on a small equal
  budget (e.g. ``lr`` per optimizer); the best configuration's seed replicates enter the statistics.

A setting may give a numeric key relative to the (tuned) base: ``lr: x0.1`` is a tenth of the
base's learning rate. That is how a tuned key can also be a varied factor (absolute values of a
tuned key are refused: step 1's choice would be thrown away).

Trial ids are built from the full configuration (a hash of every TrainConfig value, the phase and
the factor), so close floats never share an id; identical random draws are dropped up front and
the plan says how many.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import itertools
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from supcon_ray.study import grids
from supcon_ray import registry
from supcon_ray.designs import DesignKind, design_name
from supcon_ray.config import ConfigError, TrainConfig, format_validation_error
from supcon_ray.data.names import absolute_dataset_name, validate_dataset_name

CONTRASTIVE_ONLY = {"temperature", "base_temperature", "temperature_scaling", "variant", "loss_method",
                    "normalize_representation", "linear_stage", "linear_epochs", "linear_optimizer", "linear_lr",
                    "linear_batch_size"}
RESOURCE_KEYS = {"workers", "cpus_per_worker", "gpus_per_worker"}
#: how a trial runs, not what it computes (loader draws are seeded per sample; checkpoints do not change
#: results): left out of trial ids and of the manifest's fingerprint, so they may change between runs
EXECUTION_KEYS = {"num_workers", "checkpoint_every"}
Scalar = Union[bool, int, float, str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distribution(_Strict):
    """One search dimension: exactly one of the keys."""

    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    # ``builtins.int``: inside this class body the name ``int`` is the field itself
    int: tuple[builtins.int, builtins.int] | None = None
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


#: Metrics a tuning stage may select on (higher is better). Test metrics are refused on purpose.
VALIDATION_METRICS = ("val_top1",)
TEST_METRICS = ("test_top1",)
#: Keys no tuning space may contain: they say what is compared, or where it runs.
UNTUNABLE = {"loss", "seed", "dataset", "data_dir", "download", "model"} | RESOURCE_KEYS


def _validation_metric(select: str) -> str:
    if select in TEST_METRICS or select.startswith("test"):
        raise ValueError(f"{select!r} is a test metric: a tuning stage must choose without looking at the test set; "
                         f"select on a validation metric: {', '.join(VALIDATION_METRICS)}")
    if select not in VALIDATION_METRICS:
        raise ValueError(f"unknown metric {select!r}; valid: {', '.join(VALIDATION_METRICS)}")
    return select


#: Default seeds of the selection runs (step 1, nuisance searches): disjoint from any study's seeds as
#: written in the shipped files, so no run that chose a configuration is also an analysed replicate.
SELECTION_SEEDS = [1000]


class _TuningSpace(_Strict):
    """What every tuning stage shares: a sampler seed, a space, a validation metric to select on, and the
    selection seeds its runs use."""

    seed: int = Field(0, ge=0, description="the sampler's seed")
    space: dict[str, Distribution]
    select: str = "val_top1"
    seeds: list[int] = Field(SELECTION_SEEDS, min_length=1,
                             description="selection seeds, disjoint from the study's (default [1000])")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds):
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct and >= 0")
        return seeds

    @field_validator("select")
    @classmethod
    def _select(cls, select):
        return _validation_metric(select)


class TuneBase(_TuningSpace):
    """Step 1: find each loss's base on the same budget."""

    sampler: Literal["tpe", "random", "qmc"] = "tpe"
    budget: int = Field(ge=1, description="configurations per loss, the same for every loss")


class Nuisance(_TuningSpace):
    """Hyperparameters re-tuned for every setting of one factor (and every loss), on the same budget."""

    sampler: Literal["grid", "random", "qmc"] = "random"
    budget: int | None = Field(None, ge=1, description="configurations per setting and loss (grid: its size)")


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


class Base(BaseModel):
    """Each loss's best setting: ``common`` for every loss, then a block per loss (the built-in ones' blocks
    are always present; a plugin loss's block is written under its own name)."""

    model_config = ConfigDict(extra="allow")

    common: dict[str, Any] = {}
    supcon: dict[str, Any] = {}
    simclr: dict[str, Any] = {}
    ce: dict[str, Any] = {}

    def block(self, loss: str) -> dict[str, Any]:
        """The block of ``loss`` (empty where the file has none)."""
        return (getattr(self, loss, None) if loss in type(self).model_fields else (self.model_extra or {}).get(loss)) or {}


class Compare(_Strict):
    """Which loss every other loss of the study is compared with."""

    baseline: str


def _registered_loss(name: str, info: ValidationInfo) -> str:
    """A loss name the registry knows (plugins loaded first); trusted as recorded where the caller reads a
    folder's own study file (``context={"recorded": True}``: the report never loads plugins)."""
    if (info.context or {}).get("recorded"):
        return name
    return registry.LOSSES.check(name)


class Tracking(_Strict):
    """Experiment tracking through Ray Tune's integrations: an execution setting (in neither the fingerprint
    nor any trial id). ``mlflow``: a tracking URI, a local folder (relative to the study file) or a server
    (``http://...``); ``experiment``: the MLflow experiment (default: the study's name); ``tensorboard``: also
    write TensorBoard event files into the study folder's Tune directories."""

    mlflow: str | None = None
    experiment: str | None = None
    tensorboard: bool = False
    #: Set by :func:`load_study` from ``mlflow``: the URI MLflow is given (a local folder made absolute).
    mlflow_uri: str | None = Field(None, exclude=True)


class Study(_Strict):
    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    dataset: str = "digits"
    model: str = "resnet-mini"
    losses: list[Annotated[str, AfterValidator(_registered_loss)]] = Field(min_length=1)  # registered losses
    seeds: list[int] = Field(min_length=1)
    base: Base = Base()
    vary: dict[str, list[Union[Scalar, dict[str, Any]]]] = {}
    search: Search | None = None
    tune_base: TuneBase | None = None
    nuisance: dict[str, Nuisance] = {}
    resources: Resources = Resources()
    #: The primary measure of sensitivity, declared before the data (recorded in the manifest on the first
    #: run): ``spread`` (the paper's Fig. 4a reading) or ``drop`` (the drop from the base). Analysis only:
    #: in neither the fingerprint nor any trial id.
    primary: Literal["spread", "drop"] = "spread"
    #: A ratio CE/SupCon within [1/m, m] is "no meaningful difference" (the agreement with the paper).
    #: Analysis only, like ``primary``.
    equivalence_ratio: float = Field(1.25, gt=1.0, le=100.0)
    quick: dict[str, Any] | None = None
    #: The user's modules that register losses, encoders or datasets (:mod:`supcon_ray.plugins`): module
    #: names, paths relative to this file, or entry-point names. Their bytes enter the fingerprint.
    plugins: list[str] = []
    #: ``{baseline: <loss>}``: every other loss is compared with this one (default ``ce`` where the study
    #: has it). Analysis only, like ``primary``.
    compare: Compare | None = None
    #: Experiment tracking (MLflow, TensorBoard): how trials are watched, not what they compute.
    tracking: Tracking | None = None
    #: Set by :func:`load_study`, never written in a study file: the study file's folder, against which
    #: relative dataset paths resolve when files are opened. Not part of any trial id or the fingerprint.
    folder: str | None = None

    @field_validator("losses")
    @classmethod
    def _losses(cls, losses):
        if len(set(losses)) != len(losses):
            raise ValueError("losses must be distinct")
        return losses

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds):
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be >= 0")
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, name):
        # kept as written (ids and published rows hold no machine path); resolved where files are opened
        return validate_dataset_name(name)

    @field_validator("nuisance", mode="before")
    @classmethod
    def _no_nuisance(cls, nuisance):
        return {} if nuisance is None else nuisance  # a quick block may switch re-tuning off with null

    @field_validator("vary", mode="before")
    @classmethod
    def _grids(cls, vary):
        """Expand grid generators (``lr: {x_logspace: [0.03, 30, 9]}``; :mod:`supcon_ray.study.grids`)."""
        if not isinstance(vary, dict):
            return vary
        out = {}
        for factor, spec in vary.items():
            try:
                out[factor] = grids.expand(factor, spec, numeric_keys())
            except ValueError as err:
                raise ValueError(f"{factor}: {err}") from None
        return out

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

    @model_validator(mode="after")
    def _baseline(self, info: ValidationInfo):
        if self.compare is not None and self.compare.baseline not in self.losses:
            raise ValueError(f"compare.baseline: {self.compare.baseline!r} is not one of the study's losses; must be "
                             f"one of: {', '.join(self.losses)}")
        if self.compare is None and len(self.losses) > 1 and "ce" not in self.losses \
                and not (info.context or {}).get("recorded"):
            raise ValueError(f"compare: the study has no ce to compare its losses with; say which loss is the "
                             f"baseline, e.g. compare: {{baseline: {self.losses[0]}}} (one of: {', '.join(self.losses)})")
        return self

    @property
    def baseline(self) -> str | None:
        """The loss every other loss is compared with: ``compare.baseline``, else ``ce`` where the study has it."""
        if self.compare is not None:
            return self.compare.baseline
        return "ce" if "ce" in self.losses else (self.losses[0] if len(self.losses) == 1 else None)


#: Study keys that say how the results are analysed, not what a trial computes (never in the fingerprint).
ANALYSIS_KEYS = {"primary", "equivalence_ratio", "compare"}


def analysis_settings(study: Study) -> dict[str, Any]:
    """What the manifest records of the analysis on a study's first run (``compare`` only where the file sets it,
    so a folder's record is unchanged by the key's addition)."""
    out: dict[str, Any] = {"primary": study.primary, "equivalence_ratio": study.equivalence_ratio}
    if study.compare is not None:
        out["compare"] = study.compare.model_dump()
    return out


#: ``phase`` of a trial: step 1, a nuisance search of step 2, or an ordinary step-2 trial.
PHASES = ("tune_base", "nuisance", "study")


@dataclass
class TrialSpec:
    """One planned trial: which loss, seed, factor and setting, and its full TrainConfig.

    ``phase`` is one of :data:`PHASES`; ``nuisance`` holds the re-tuned values of a nuisance trial.
    """

    trial_id: str
    loss: str
    seed: int
    factor: str
    setting: str
    design: str
    train: dict[str, Any] = field(repr=False)
    sampler_seed: int | None = None
    phase: str = "study"
    nuisance: dict[str, Any] | None = None
    #: the study file's folder: ``train["dataset"]`` (as written) resolves against it (:func:`train_config`)
    folder: str | None = None


def train_config(spec: dict[str, Any]) -> TrainConfig:
    """The TrainConfig a planned trial (``asdict(TrialSpec)``) trains, its dataset path resolved."""
    train = spec["train"]
    return TrainConfig(**{**train, "dataset": absolute_dataset_name(train["dataset"], spec.get("folder"))})


def _fmt(value: Any, digits: int | None = 4) -> str:
    if not isinstance(value, float):
        return str(value)
    return repr(value) if digits is None else f"{value:.{digits}g}"


def setting_label(values: dict[str, Any], digits: int | None = 4) -> str:
    """A readable label such as ``optimizer=rmsprop,lr=0.01`` (floats to ``digits`` significant digits; None: exact)."""
    return ",".join(f"{k}={_fmt(v, digits)}" for k, v in values.items())


def distinct_labels(designs: list[dict[str, Any]]) -> list[str]:
    """Labels for distinct configurations, with as few digits as keep them distinct (exact at worst)."""
    for digits in (4, 6, 8, 10, 12, None):
        labels = [setting_label(d, digits) for d in designs]
        if len(set(labels)) == len(labels):
            return labels
    return labels  # only reached for duplicate configurations, which callers drop first


_RELATIVE = re.compile(r"^x(?P<m>(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)$")
#: A plugin's own hyperparameter is written ``options.<name>`` wherever a hyperparameter is (a factor, a key
#: of a setting); base blocks may also give ``options: {<name>: value}``. Trials hold them in ``options``.
OPTION_PREFIX = "options."


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
    """The multiplier of a relative value such as ``x0.1`` for a numeric key, else None."""
    if not isinstance(value, str) or not is_hyperparameter(key):
        return None
    m = _RELATIVE.match(value.strip())
    return float(m["m"]) if m else None


def _numeric(key: str) -> bool:
    annotation = TrainConfig.model_fields[key].annotation
    return annotation in (int, float) or annotation == (float | None)


def numeric_keys() -> dict[str, type]:
    """Each numeric hyperparameter and its type (``int`` or ``float``)."""
    return {k: (int if f.annotation is int else float) for k, f in TrainConfig.model_fields.items() if _numeric(k)}


def resolve(values: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``values`` with relative entries (``lr: x0.1``) multiplied out against ``base`` (defaults fill gaps)."""
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


def applies_to(loss_base: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether a setting of ``values`` is run for the loss whose base is ``loss_base``: not when it only sets
    keys that loss does not use (contrastive keys for a classifier loss; another plugin's options)."""
    if not _contrastive(loss_base["loss"]) and set(values) <= CONTRASTIVE_ONLY:
        return False
    options = [option_name(k) for k in values if option_name(k) is not None]
    if options and len(options) == len(values):
        return any(o in declared_options(loss_base) for o in options)
    return True


def _deep_merge(base: dict, override: dict) -> dict:
    """``override`` merged into ``base``, mapping by mapping, except that a ``space`` is replaced whole
    (merging two search spaces would mix distributions, such as a range with a choice list)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        merge = isinstance(v, dict) and isinstance(out.get(k), dict) and k != "space"
        out[k] = _deep_merge(out[k], v) if merge else copy.deepcopy(v)
    return out


def _check_partial(values: dict[str, Any], path: str, source: str) -> None:
    """Validate a partial TrainConfig (defaults fill the rest) and report errors at ``path``."""
    try:
        TrainConfig(**fold_options(values))
    except ValidationError as err:
        lines = format_validation_error(err).splitlines()
        raise ConfigError("\n".join(f"{source}: {path}.{line}" if path else f"{source}: {line}" for line in lines)) from None


def setting_values(factor: str, setting: Any) -> dict[str, Any]:
    return dict(setting) if isinstance(setting, dict) else {factor: setting}


def _load_plugins(raw: dict[str, Any], path: Path, source: str) -> None:
    """Load the plugins the study file names (before its names are validated against the registries)."""
    entries = raw.get("plugins") or []
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ConfigError(f"{source}: plugins: a list of module names, paths to .py files or entry-point names")
    if entries:
        from supcon_ray.plugins import PluginError, load_plugins

        try:
            load_plugins(entries, str(path.resolve().parent))
        except PluginError as err:
            raise ConfigError(f"{source}: {err}") from None


def load_study(path: str | Path, quick: bool = False) -> Study:
    """Read, validate and (with ``quick``) apply the ``quick`` block of the study file at ``path``. The
    plugins it names are loaded into this process first (:mod:`supcon_ray.plugins`)."""
    path = Path(path)
    source = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such study file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    return study_from_dict(raw, path.resolve().parent, quick, source)


def study_from_dict(raw: Any, folder: str | Path | None = None, quick: bool = False, source: str = "study") -> Study:
    """Validate a study given as a mapping (the keys of a study file), exactly as :func:`load_study` validates a
    file: ``folder`` is where relative dataset and plugin paths resolve (default: the working directory);
    ``source`` names it in error messages."""
    path = Path(folder or ".").resolve() / "study.yaml"  # only its folder is used
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a study file is a mapping with keys study, losses, seeds, base, vary/search, ...")
    if "folder" in raw or "folder" in (raw.get("quick") or {}):
        raise ConfigError(f"{source}: folder: set from where the study file lies, not written in it; remove it")
    unknown = set(raw.get("quick") or {}) - set(Study.model_fields) - {"quick"}
    if unknown:
        raise ConfigError(f"{source}: quick.{sorted(unknown)[0]}: unknown key; valid: {', '.join(Study.model_fields)}")
    if quick:
        overrides = raw.get("quick")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{source}: --quick needs a 'quick' block in the study file")
        raw = _deep_merge({k: v for k, v in raw.items() if k != "quick"}, overrides)
    _load_plugins(raw, path, source)
    try:
        study = Study(**{**raw, "folder": str(path.resolve().parent)})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    if study.tracking is not None:
        _check_tracking(study.tracking, str(path.resolve().parent), source)
    _check_partial({"dataset": study.dataset, "model": study.model}, "", source)
    for part in ("common", *type(study.base).model_fields, *(study.base.model_extra or {})):
        if part not in ("common", *type(study.base).model_fields) and part not in registry.LOSSES:
            raise ConfigError(f"{source}: base.{part}: not a loss; a base block is 'common' or a loss's name: "
                              f"{', '.join(('common', *registry.LOSSES.names()))}")
        values = study.base.common if part == "common" else study.base.block(part)
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: base.{part}: a mapping of hyperparameters")
        bad = RESOURCE_KEYS & set(values)
        if bad:
            raise ConfigError(f"{source}: base.{part}.{sorted(bad)[0]}: set workers and CPUs/GPUs under 'resources'")
        # options belong to a loss, model or dataset: checked in each loss's whole base below
        _check_partial({k: v for k, v in values.items() if k != "options" and option_name(k) is None},
                       f"base.{part}", source)
    for factor, settings in study.vary.items():
        for i, setting in enumerate(settings):
            values = setting_values(factor, setting)
            if not isinstance(setting, dict) and not is_hyperparameter(factor):
                raise ConfigError(f"{source}: vary.{factor}[{i}]: {factor!r} is not a hyperparameter, so each setting "
                                  f"must be a mapping of hyperparameters; valid keys: {', '.join(TrainConfig.model_fields)}")
            for key, value in values.items():
                if isinstance(value, str) and value.startswith("x") and key in TrainConfig.model_fields \
                        and _numeric(key) and relative_multiplier(key, value) is None:
                    raise ConfigError(f"{source}: vary.{factor}[{i}].{key}: {value!r} is neither a number nor a "
                                      f"multiple of the base such as x0.5")
            runs = [loss for loss in study.losses if applies_to(base_config(study, loss), values)]
            if not runs:
                raise ConfigError(f"{source}: vary.{factor}[{i}]: no loss of the study uses {', '.join(values)} "
                                  f"(losses: {', '.join(study.losses)})")
            for loss in runs:
                try:
                    resolved = resolve(values, base_config(study, loss))
                except ConfigError as err:
                    raise ConfigError(f"{source}: vary.{factor}[{i}].{err}") from None
                _check_partial({**base_config(study, loss), **resolved}, f"vary.{factor}[{i}]", source)
    for loss in study.losses:
        _check_partial(base_config(study, loss), f"base.{loss}", source)
    if study.search is not None:
        _check_space(study.search.space, "search.space", source)
        if study.search.sampler == "tpe":
            _check_tpe_space(study.search.space, "search.space", source)
    _check_protocol(study, source)
    return study


def _check_tracking(tracking: Tracking, folder: str, source: str) -> None:
    """The packages a ``tracking`` block needs (exit 2 saying what to install), and its MLflow URI resolved."""
    import importlib.util

    if tracking.mlflow:
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(f"{source}: tracking.mlflow: needs MLflow, an optional extra: pip install -e '.[tracking]'")
        uri = tracking.mlflow
        if "://" not in uri and not uri.startswith("file:"):
            uri = Path(folder, uri).resolve().as_uri()
        tracking.mlflow_uri = uri
    if tracking.tensorboard and importlib.util.find_spec("tensorboardX") is None:
        raise ConfigError(f"{source}: tracking.tensorboard: needs tensorboardX, an optional extra: "
                          "pip install -e '.[tracking]'")


def _check_space(space: dict[str, Distribution], path: str, source: str) -> None:
    """Every key a TrainConfig field that may be tuned, every bound / choice a valid value for it."""
    for key, dist in space.items():
        if key not in TrainConfig.model_fields:
            raise ConfigError(f"{source}: {path}.{key}: unknown hyperparameter; valid: {', '.join(TrainConfig.model_fields)}")
        if key in UNTUNABLE:
            raise ConfigError(f"{source}: {path}.{key}: {key!r} cannot be tuned (it says what is compared or where "
                              f"it runs); tunable: {', '.join(k for k in TrainConfig.model_fields if k not in UNTUNABLE)}")
        values = dist.choice if dist.kind == "choice" else list(getattr(dist, dist.kind))
        for v in values:
            _check_partial({key: v}, path, source)


def _check_tpe_space(space: dict[str, Distribution], path: str, source: str) -> None:
    """TPE adapts, so its configurations cannot be made distinct up front; over ranges of floats they are
    distinct (a repeat has probability zero), over a ``choice`` or ``int`` key it could repeat one and so
    give a loss fewer distinct configurations than its budget. Refused: the budget counts distinct ones."""
    for key, dist in space.items():
        if dist.kind in ("choice", "int"):
            raise ConfigError(f"{source}: {path}.{key}: the tpe sampler needs float ranges (uniform, loguniform): over "
                              f"a {dist.kind} it may suggest a configuration twice, and the budget counts distinct "
                              f"configurations. Use the random or qmc sampler for this space")


def _absolute_keys(factor: str, settings: list[Any]) -> dict[str, tuple[int, Any]]:
    """Keys the factor's settings set to absolute values, with the first setting that does."""
    out: dict[str, tuple[int, Any]] = {}
    for i, setting in enumerate(settings):
        for key, value in setting_values(factor, setting).items():
            if relative_multiplier(key, value) is None:
                out.setdefault(key, (i, value))
    return out


def _check_protocol(study: Study, source: str) -> None:
    """``tune_base`` and ``nuisance``: keys, selection seeds, equal budgets and conflicts with the varied factors."""
    tb = study.tune_base
    blocks = ([("tune_base", tb)] if tb is not None else []) + [(f"nuisance.{f}", nz) for f, nz in study.nuisance.items()]
    for path, block in blocks:
        shared = sorted(set(block.seeds) & set(study.seeds))
        if shared:
            raise ConfigError(f"{source}: {path}.seeds: seed {shared[0]} is also a study seed; the runs that select a "
                              f"configuration must not be the replicates that are analysed. Use seeds outside "
                              f"{study.seeds} (default {SELECTION_SEEDS})")
    if tb is not None:
        _check_space(tb.space, "tune_base.space", source)
        if tb.sampler == "tpe":
            _check_tpe_space(tb.space, "tune_base.space", source)
        for factor, settings in study.vary.items():
            for key, (i, value) in _absolute_keys(factor, settings).items():
                if key in tb.space:
                    raise ConfigError(
                        f"{source}: tune_base.space.{key}: {key!r} is tuned in step 1 and also varied by factor "
                        f"{factor!r} (vary.{factor}[{i}] sets {key}={value!r}), which would overwrite the tuned value. "
                        f"Leave {key!r} out of tune_base.space, or give the settings relative to the tuned base "
                        f"(e.g. {key}: x0.5)")
        if study.search is not None:
            for key in study.search.space:
                if key in tb.space:
                    raise ConfigError(f"{source}: tune_base.space.{key}: {key!r} is also in search.space, which would "
                                      f"overwrite the tuned value; leave it out of one of them")
        for loss in study.losses:
            if not space_for(tb.space, loss):
                raise ConfigError(f"{source}: tune_base.space: only contrastive keys ({', '.join(tb.space)}), "
                                  f"which {loss!r} does not use; add a key every loss uses, such as lr")
    for factor, nz in study.nuisance.items():
        path = f"nuisance.{factor}"
        if factor not in study.vary:
            raise ConfigError(f"{source}: {path}: {factor!r} is not a factor under 'vary'; factors: "
                              f"{', '.join(study.vary) or '(none)'}")
        if not nz.space:
            raise ConfigError(f"{source}: {path}.space: name at least one hyperparameter to re-tune")
        _check_space(nz.space, f"{path}.space", source)
        for key, (i, value) in _absolute_keys(factor, study.vary[factor]).items():
            if key in nz.space:
                raise ConfigError(f"{source}: {path}.space.{key}: {key!r} is set by the factor's own settings "
                                  f"(vary.{factor}[{i}] sets {key}={value!r}); a nuisance hyperparameter is "
                                  f"re-tuned for every setting, so the settings must leave it to the search")
        if nz.sampler != "grid" and nz.budget is None:
            raise ConfigError(f"{source}: {path}.budget: required for the {nz.sampler} sampler (configurations "
                              f"per setting and loss, >= 1)")
        try:
            draw_design(nz.sampler, nz.space, nz.budget, nz.seed)
        except ConfigError as err:
            raise ConfigError(f"{source}: {path}.{str(err)}") from None
        _check_equal_budgets(study, nz, path, source)
    if tb is not None and tb.sampler != "tpe":
        _check_equal_budgets(study, tb, "tune_base", source)


def _check_equal_budgets(study: Study, block, path: str, source: str) -> None:
    """Refuse a tuning block that cannot give every loss the same number of distinct configurations
    (CE draws from the space without contrastive keys, which may hold fewer distinct points)."""
    counts = {}
    for loss in study.losses:
        space = space_for(block.space, loss)
        if space:
            counts[loss] = len(draw_design(block.sampler, space, getattr(block, "budget", None), block.seed).configs)
    if len(set(counts.values())) > 1:
        told = ", ".join(f"{loss} {n}" for loss, n in counts.items())
        raise ConfigError(f"{source}: {path}.space: the losses would get unequal budgets of distinct configurations "
                          f"({told}): the keys CE does not use ({', '.join(sorted(CONTRASTIVE_ONLY & set(block.space)))})"
                          f" multiply the contrastive losses' space. Give every loss the same number of distinct "
                          f"configurations: use ranges, or a budget the smallest space can fill")


def _contrastive(loss: str) -> bool:
    """Whether ``loss`` pre-trains on two views (its registered kind): only those use the contrastive keys."""
    return registry.LOSSES.meta(loss, "kind") == "contrastive"


def space_for(space: dict[str, Distribution], loss: str) -> dict[str, Distribution]:
    """The part of a tuning space that ``loss`` uses (CE has no temperature or linear stage)."""
    return {k: d for k, d in space.items() if _contrastive(loss) or k not in CONTRASTIVE_ONLY}


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
    from supcon_ray.data.names import SIZE_KEYS, own_size

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
                if all(_same(resolved[k], full.get(k)) for k in values):
                    match = label
                    break
            out[factor][loss] = match
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def trial_id(study: str, phase: str, factor: str, label: str, train: dict[str, Any]) -> str:
    """A readable id whose digest covers what the trial computes: every TrainConfig value exactly, with the
    dataset as written in the study file, and no resources (where and on how much it runs), so ids are
    the same on every machine. The factor and label only name it: the same configuration reached from
    two factors (the base) is one trial."""
    computed = {k: v for k, v in train.items() if k not in RESOURCE_KEYS | EXECUTION_KEYS}
    key = json.dumps({"study": study, "phase": phase, "train": computed}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9.=_-]+", "_", f"{factor}-{label}")[:60]
    return f"{train['loss']}-{slug}-s{train['seed']}-{digest}"


def make_spec(study: Study, loss: str, factor: str, values: dict[str, Any], seed: int, design: str,
              sampler_seed: int | None = None, *, tuned: dict[str, Any] | None = None, phase: str = "study",
              label: str | None = None, nuisance: dict[str, Any] | None = None) -> TrialSpec:
    """The trial of ``values`` (and ``nuisance`` values) applied to the loss's (tuned) base, for ``seed``."""
    base = base_config(study, loss, tuned)
    label = setting_label(values) if label is None else label
    train = fold_options({**fold_options(base), **resolve(values, base), **(nuisance or {}), "seed": seed})
    train = TrainConfig(**{**train, "dataset": absolute_dataset_name(study.dataset, study.folder)}).model_dump()
    train["dataset"] = study.dataset  # as written: ids and rows hold no machine path
    if not train["options"]:
        del train["options"]  # added after the first studies: absent while empty, so no recorded id changed
    id_label = label + ("," + setting_label(nuisance) if nuisance else "")
    return TrialSpec(trial_id(study.study, phase, factor, id_label, train), loss, seed, factor, label, design,
                     train, sampler_seed, phase, nuisance, study.folder)


def optuna_space(search: Search | dict[str, Distribution]) -> dict[str, Any]:
    """The search space (a ``Search`` or a mapping of :class:`Distribution`) as Optuna distributions."""
    import optuna

    space = search.space if isinstance(search, Search) else search
    distributions = {}
    for key, d in space.items():
        if d.kind == "loguniform":
            distributions[key] = optuna.distributions.FloatDistribution(*d.loguniform, log=True)
        elif d.kind == "uniform":
            distributions[key] = optuna.distributions.FloatDistribution(*d.uniform)
        elif d.kind == "int":
            distributions[key] = optuna.distributions.IntDistribution(*d.int)
        else:
            distributions[key] = optuna.distributions.CategoricalDistribution(d.choice)
    return distributions


def tpe_spec(study: Study, loss: str, config: dict[str, Any], tuned: dict[str, Any] | None = None) -> TrialSpec:
    """The trial an adaptive TPE suggestion of the ``search`` block stands for (``__trial_index__`` picks the seed)."""
    values = {k: config[k] for k in study.search.space}
    seed = study.seeds[int(config.get("__trial_index__", 0)) % len(study.seeds)]
    return make_spec(study, loss, "search", values, seed, design_name(DesignKind.SEARCH, "tpe"), study.search.seed, tuned=tuned,
                     label=setting_label(values, None))


@dataclass
class Design:
    """Configurations drawn up front; ``duplicates``: identical draws that were dropped (and redrawn)."""

    configs: list[dict[str, Any]]
    duplicates: int = 0
    requested: int = 0

    @property
    def note(self) -> str:
        if not self.duplicates:
            return ""
        short = len(self.configs) < self.requested
        return (f"{self.duplicates} identical draw(s) dropped"
                + (f"; the space has only {len(self.configs)} distinct configuration(s)" if short else ", redrawn"))


def draw_design(sampler: str, space: dict[str, Distribution], n: int | None, seed: int,
                count_key: str = "budget") -> Design:
    """``n`` distinct configurations (grid: every point once). Identical draws are dropped and redrawn,
    up to ``20 n`` draws, so a small finite space yields fewer configurations rather than repeats."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "grid":
        not_listed = [k for k, d in space.items() if d.kind != "choice"]
        if not_listed:
            raise ConfigError(f"space.{not_listed[0]}: the grid sampler needs 'choice' lists, not ranges")
        grid = {k: d.choice for k, d in space.items()}
        points = [dict(zip(grid, point)) for point in itertools.product(*grid.values())]
        unique = [dict(t) for t in dict.fromkeys(tuple(p.items()) for p in points)]
        if n not in (None, len(unique)):
            raise ConfigError(f"{count_key}: the grid has {len(unique)} points; leave {count_key} out or set it "
                              f"to {len(unique)}")
        # every grid point once, in a fixed order (Optuna's GridSampler would repeat points past the grid size)
        return Design(unique, len(points) - len(unique), len(points))
    if n is None:
        raise ConfigError(f"{count_key}: required for the {sampler} sampler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        opt_sampler = (optuna.samplers.RandomSampler(seed=seed) if sampler == "random"
                       else optuna.samplers.QMCSampler(seed=seed, scramble=True))
    distributions = optuna_space(space)
    opt_study = optuna.create_study(sampler=opt_sampler)
    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    duplicates = 0
    for _ in range(20 * n):
        if len(configs) == n:
            break
        trial = opt_study.ask(distributions)
        opt_study.tell(trial, 0.0)  # value unused: these samplers do not adapt
        key = json.dumps(trial.params, sort_keys=True)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        configs.append(dict(trial.params))
    return Design(configs, duplicates, n)


def sample_design(search: Search) -> list[dict[str, Any]]:
    """Distinct configurations for a grid / random / QMC search, drawn up front (see :func:`draw_design`)."""
    try:
        return draw_design(search.sampler, search.space, search.num_samples, search.seed, "num_samples").configs
    except ConfigError as err:
        raise ConfigError(f"search.{err}") from None


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
                    specs.append(make_spec(study, loss, factor, values, seed, design_name(DesignKind.ONE_FACTOR), tuned=tuned.get(loss),
                                           label=label))
    if study.search is not None and study.search.sampler != "tpe":
        configs = sample_design(study.search)
        for values, label in zip(configs, distinct_labels(configs)):
            for loss in study.losses:
                for seed in study.seeds:
                    specs.append(make_spec(study, loss, "search", values, seed, design_name(DesignKind.SEARCH, study.search.sampler),
                                           study.search.seed, tuned=tuned.get(loss), label=label))
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


def study_as_yaml(study: Study) -> str:
    """The validated study (after --quick) as YAML, stored beside its results: no machine path in it."""
    unset = {k for k in ("plugins", "compare", "tracking") if not getattr(study, k)}  # added keys: absent while unset
    return yaml.safe_dump(study.model_dump(mode="json", exclude={"quick", "folder", *unset}), sort_keys=False)
