"""The study file's schema: the pydantic models a study file is validated into, and the constants they own.

A study file (YAML, loaded with ``yaml.safe_load``) describes one study; see docs/usage.md, "Study files".
Each block is a model here: :class:`Study` (the whole file), :class:`Base` (each loss's best setting),
``vary`` (factors and their settings, grid generators expanded: :mod:`supcon_ray.study.grids`),
:class:`Search` (a sampled space of :class:`Distribution` s), :class:`TuneBase` (step 1) and
:class:`Nuisance` (hyperparameters re-tuned per setting), :class:`Resources`, :class:`Compare` and
:class:`Tracking`. A model checks what one block can check alone; the checks across blocks (a key
both tuned and varied, equal budgets, values valid for a TrainConfig) are
:mod:`supcon_ray.study.validation`'s, which is where a study is loaded.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, SerializationInfo, SerializerFunctionWrapHandler,
                      ValidationInfo, field_validator, model_serializer, model_validator)

from supcon_ray import registry
from supcon_ray.config import TrainConfig
from supcon_ray.data.names import validate_dataset_name
from supcon_ray.study import grids
from supcon_ray.study.values import numeric_keys

#: TrainConfig keys the ``resources`` block sets (where and on how much a trial runs): refused in a base block
#: and a tuning space, and left out of trial ids.
RESOURCE_KEYS = {"workers", "cpus_per_worker", "gpus_per_worker"}
#: How a trial runs, not what it computes (loader draws are seeded per sample; checkpoints do not change
#: results; the kNN monitor restores the random state it draws from): left out of trial ids and of the
#: manifest's fingerprint, so they may change between runs
EXECUTION_KEYS = {"num_workers", "checkpoint_every", "monitor"}
#: A setting's or a choice list's single value.
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


class Fidelity(_Strict):
    """Selection at a fraction of its cost (:mod:`supcon_ray.study.fidelity`): synchronous successive halving
    whose every rung is a run of its own, trained for the rung's epochs with its schedule decayed within them
    (budgeted training, Li et al. 2020). Rung ``k`` trains the configurations still in the search for
    ``min_epochs * reduction_factor**k`` epochs (the full length at most); the best ``ceil(n / reduction_factor)``
    by the search's ``select`` (mean over its selection seeds) go on; the search ends when one is left or when
    the survivors have run at full length. Analysed replicates always run at full length."""

    method: Literal["budgeted"] = Field("budgeted", description="each rung a run of its own (the only method)")
    min_epochs: int = Field(ge=1, description="epochs of the first rung, below the full length")
    reduction_factor: int = Field(3, ge=2, description="the share 1/R of a rung's configurations that go on (R >= 2)")


class _TuningSpace(_Strict):
    """What every tuning stage shares: a sampler seed, a space, a validation metric to select on, the
    selection seeds its runs use, and optionally a :class:`Fidelity` (left out: every configuration runs at
    full length, and the block dumps exactly as before the key existed, so no fingerprint moves)."""

    seed: int = Field(0, ge=0, description="the sampler's seed")
    space: dict[str, Distribution]
    select: str = "val_top1"
    seeds: list[int] = Field(SELECTION_SEEDS, min_length=1,
                             description="selection seeds, disjoint from the study's (default [1000])")
    fidelity: Fidelity | None = None

    @model_serializer(mode="wrap")
    def _without_unset_fidelity(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        out = handler(self)
        if out.get("fidelity", 0) is None:  # added after the first studies: absent while unset
            del out["fidelity"]
        return out

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


def default_baseline(losses: Iterable[str], named: str | None = None) -> str | None:
    """The loss every other loss is compared with: the ``named`` one (a study's ``compare.baseline``), else
    ``ce`` where present, else the first in alphabetical order (one loss: that loss). A study file with
    several losses and no ce must name one (its validation says so); a table of runs gets the rule as is."""
    if named:
        return named
    losses = sorted(set(losses))
    return "ce" if "ce" in losses else (losses[0] if losses else None)


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
        """The loss every other loss is compared with (:func:`default_baseline`)."""
        return default_baseline(self.losses, self.compare.baseline if self.compare is not None else None)


#: Study keys that say how the results are analysed, not what a trial computes (never in the fingerprint).
ANALYSIS_KEYS = {"primary", "equivalence_ratio", "compare"}


def analysis_settings(study: Study) -> dict[str, Any]:
    """What the manifest records of the analysis on a study's first run (``compare`` only where the file sets it,
    so a folder's record is unchanged by the key's addition)."""
    out: dict[str, Any] = {"primary": study.primary, "equivalence_ratio": study.equivalence_ratio}
    if study.compare is not None:
        out["compare"] = study.compare.model_dump()
    return out


def study_as_yaml(study: Study) -> str:
    """The validated study (after --quick) as YAML, stored beside its results: no machine path in it."""
    unset = {k for k in ("plugins", "compare", "tracking") if not getattr(study, k)}  # added keys: absent while unset
    return yaml.safe_dump(study.model_dump(mode="json", exclude={"quick", "folder", *unset}), sort_keys=False)
