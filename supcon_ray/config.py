"""The validated configuration of one training run, and how bad input is reported.

:class:`TrainConfig` is the single description of a run: the CLI builds it from flags, a study
trial builds it from the study file, Ray Train workers receive it as a plain dict. Validation
happens here, before anything starts; a bad value raises :class:`ConfigError`, whose message
names the key and what is allowed, and every command line turns it into exit status 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from supcon_ray.data.names import absolute_dataset_name, validate_dataset_name
from .registry import DATASETS, LOSSES, MODELS, OPTIMIZERS, POLICIES, SCHEDULES

if TYPE_CHECKING:
    from supcon_ray.data.augment import PolicyOptions

EXIT_USAGE = 2
#: ``tau_b`` of the authors' TensorFlow code (``scale_by_temperature``): the loss is multiplied by
#: ``tau / tau_b``, so with ``tau_b = 1`` it is scaled by ``tau`` (:mod:`supcon_ray.networks.losses`).
AUTHORS_BASE_TEMPERATURE = 1.0


class ConfigError(ValueError):
    """Bad user input: unknown names, impossible numbers, unreadable files or resources."""


def _one_of(registry):
    def check(value: str) -> str:
        return registry.check(value)

    return check


class TrainConfig(BaseModel):
    """Everything one run needs. Defaults suit a CPU run on ``digits``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    loss: str = "supcon"
    dataset: str = "digits"
    data_dir: str = "./data"
    download: bool = False
    model: str = "resnet-mini"
    epochs: int = Field(10, ge=1)
    linear_epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: str = "sgd"
    lr: float = Field(0.1, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    schedule: str = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    lr_decay_rate: float = Field(0.97, gt=0, le=1)  # schedule "exponential": x rate every lr_decay_epochs
    lr_decay_epochs: float = Field(2.4, gt=0)
    rmsprop_eps: float = Field(1.0, gt=0)  # the paper's RMSProp epsilon
    augment: str = "simaugment"
    # where the policy runs: "per_image" (torchvision, in the loader), "batched" (whole batches on the
    # training device, every sample its own draws: supcon_ray.data.batch_augment), or "auto": batched on a
    # GPU and for images of at most 64 px, per image otherwise (batched float ops are slower on a CPU
    # at 224 px)
    augment_path: Literal["auto", "per_image", "batched"] = "auto"
    # departures from the authors' augmentation code (supcon_ray.data.augment.PolicyOptions)
    augment_crop: Literal["resized", "padded"] = "resized"
    augment_blur: float | None = Field(None, ge=0, le=1)  # None: 0.5 above 64 px, 0 at CIFAR scale
    augment_warp: float = Field(0.0, ge=0, le=1)
    augment_rotation: bool = False
    randaugment_scale: Literal["paper", "torchvision"] = "paper"
    temperature: float = Field(0.1, gt=0)
    # loss x tau / base_temperature: with the default base 1, the loss x tau, as the authors' TensorFlow
    # code does (scale_by_temperature), which takes 1 / tau out of the gradient's scale; base 0.07 is the
    # PyTorch re-implementation's choice (about 14x larger gradients); False: factor 1 (gradient ~ 1 / tau)
    temperature_scaling: bool = True
    base_temperature: float = Field(AUTHORS_BASE_TEMPERATURE, gt=0)
    variant: Literal["out", "in"] = "out"
    loss_method: Literal["auto", "dense", "blockwise"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # L2-normalise the encoder output r before the projection head and the linear classifier (the
    # paper; its TensorFlow code does too). CE end-to-end training is unaffected.
    normalize_representation: bool = True
    # linear stage: "lbfgs" (default): logistic regression on cached unaugmented frozen-encoder features
    # solved to convergence, its L2 penalty picked on validation (no learning rate, epochs or batch size
    # of its own: supcon_ray.engine.probe); "cached": SGD on those features with linear_lr / linear_epochs;
    # "augmented": SGD on augmented images through the frozen encoder each step (the paper)
    linear_stage: Literal["cached", "augmented", "lbfgs"] = "lbfgs"
    linear_optimizer: str = "sgd"
    linear_lr: float = Field(0.1, gt=0)
    linear_batch_size: int = Field(256, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    train_size: int | None = Field(None, ge=1)  # stratified subset of the training pool (validation carved from it)
    test_size: int | None = Field(None, ge=1)  # stratified subset of the test split
    image_size: int | None = Field(None, ge=4, le=1024)  # resize every image once at load time
    # training crop side; None: the stored side where every image has it, else 224 (evaluation then
    # resizes the shorter side to crop_size / 0.875 and takes the centre crop, as for ImageNet)
    crop_size: int | None = Field(None, ge=4, le=1024)
    seed: int = Field(0, ge=0)
    # DataLoader worker processes; None: on a GPU one per CPU of the worker beyond the training loop's,
    # 0 on a CPU (supcon_ray.data.loader.loader_options)
    num_workers: int | None = Field(None, ge=0)
    checkpoint_every: int = Field(1, ge=1)  # epochs between checkpoints; the last epoch of a stage always
    # a validation score for every pre-training epoch of a contrastive loss: "knn", a weighted kNN on the
    # frozen features (supcon_ray.engine.monitor); it changes no result, so it is not in trial ids
    monitor: Literal["none", "knn"] = "none"
    workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    sync_bn: bool = False
    # mixed precision: "auto" = bf16 on CUDA (fp16 where bf16 is unsupported), off on CPU; "bf16" and
    # "fp16" (with a gradient scaler) also run on CPU through CPU autocast. The loss stays float32.
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    deterministic: bool = True  # on CUDA: deterministic cuDNN / cuBLAS kernels, no cuDNN autotuning
    channels_last: bool | None = None  # None: on when training on a GPU
    # the plugins' own hyperparameters (each declared, with its default, by the run's loss, model or
    # dataset registration: supcon_ray.plugins); empty for the built-in names. Left out of trial ids
    # while empty, so adding it changed no recorded id.
    options: dict[str, Union[bool, int, float, str]] = {}

    _names = field_validator("loss")(_one_of(LOSSES))
    _models = field_validator("model")(_one_of(MODELS))
    _optims = field_validator("optimizer", "linear_optimizer")(_one_of(OPTIMIZERS))
    _scheds = field_validator("schedule")(_one_of(SCHEDULES))
    _augs = field_validator("augment")(_one_of(POLICIES))

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_from_bool(cls, value):
        # the former boolean flag: false -> "off", true -> "auto" (which was its meaning)
        return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        return absolute_dataset_name(validate_dataset_name(value))

    @model_validator(mode="after")
    def _options(self):
        declared = self.declared_options()
        for key, value in self.options.items():
            if key not in declared:
                owners = f"{self.loss!r}, model {self.model!r} and dataset {self.dataset!r}"
                raise ValueError(f"options.{key}: not an option of loss {owners}; their options: "
                                 f"{', '.join(declared) or '(none)'}")
            default = declared[key]
            if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
                    value, (int, float) if isinstance(default, (int, float)) and not isinstance(default, bool)
                    else type(default)):
                raise ValueError(f"options.{key}: {value!r} is not a {type(default).__name__} (its default is "
                                 f"{default!r})")
        return self

    def declared_options(self) -> dict[str, Any]:
        """Every option the run's loss, model and dataset registrations declare, with its default."""
        out: dict[str, Any] = {}
        for reg, name in ((LOSSES, self.loss), (MODELS, self.model), (DATASETS, self.dataset)):
            if name in reg:
                out.update(reg.meta(name, "options") or {})
        return out

    def option(self, key: str) -> Any:
        """A plugin option's value for this run: as set in ``options``, else its registered default."""
        declared = self.declared_options()
        if key not in declared:
            raise KeyError(f"{key!r} is not an option of loss {self.loss!r}, model {self.model!r} or dataset "
                           f"{self.dataset!r}; their options: {', '.join(declared) or '(none)'}")
        return self.options.get(key, declared[key])

    @property
    def contrastive(self) -> bool:
        """Whether the run pre-trains on two views, then fits the linear stage (its loss's registered kind)."""
        return LOSSES.meta(self.loss, "kind") == "contrastive"

    @property
    def policy_options(self) -> PolicyOptions:
        """The augmentation departures this run asks for."""
        from supcon_ray.data.augment import PolicyOptions  # torch: only where a run builds its augmentation

        return PolicyOptions(crop=self.augment_crop, blur=self.augment_blur, warp=self.augment_warp,
                             rotation=self.augment_rotation, randaugment_scale=self.randaugment_scale)


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` under ``model`` (through nested models, optional
    ones, and the values of ``dict``/``list`` fields); ``None`` where it is not a model."""
    import typing

    current: Any = model
    parts = list(loc)
    while parts:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(parts.pop(0)))
        if field is None:
            return None
        current = field.annotation
        while True:  # unwrap Optional / Union with one model, and step over a dict key or a list index
            origin, args = typing.get_origin(current), typing.get_args(current)
            if origin is Union or type(current).__name__ == "UnionType":
                models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
                current = models[0] if len(models) == 1 else None
            elif origin in (dict, list) and args:
                if not parts:
                    return None
                parts.pop(0)
                current = args[-1]
            else:
                break
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def unknown_key_message(key: str, allowed: list[str]) -> str:
    """``unknown key``, the closest allowed key where one is close (``difflib``), and every allowed key."""
    import difflib

    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{hint} (valid here: {', '.join(allowed)})"


def format_validation_error(err: ValidationError, source: str = "", model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``source: key.path: message``; an unknown key names the closest valid one and
    every valid key at its level where ``model`` (the validated model) says what they are."""
    lines = []
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, tuple(e["loc"][:-1]))
            msg = unknown_key_message(str(e["loc"][-1]), list(parent.model_fields)) if parent else "unknown key"
        prefix = f"{source}: " if source else ""
        lines.append(f"{prefix}{path or '<root>'}: {msg}")
    return "\n".join(lines)


def make_train_config(values: dict, source: str = "") -> TrainConfig:
    """Validate ``values`` into a :class:`TrainConfig`, raising :class:`ConfigError` on bad input."""
    try:
        return TrainConfig(**values)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, TrainConfig)) from None
