"""Loading a study: a study file (or a mapping of its keys) read, its plugins loaded, and the whole
study validated before anything starts.

:func:`load_study` reads a file, :func:`study_from_dict` a mapping; both validate completely. The
schema (:mod:`supcon_ray.study.schema`) checks each block alone; the checks here run across blocks
and against a :class:`~supcon_ray.config.TrainConfig`: every base, setting and search bound is a
valid value for its hyperparameter, a relative value (``lr: x0.1``) has a base to multiply, a key
tuned in step 1 is not also set absolutely by a factor (step 1's choice would be thrown away),
selection seeds are disjoint from the study's seeds, and every loss gets the same number of
distinct configurations. Any problem raises :class:`~supcon_ray.config.ConfigError` naming the
file, the key path (``vary.optimizer[2].lr``) and what is allowed.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from supcon_ray import registry
from supcon_ray.config import ConfigError, TrainConfig, format_validation_error, unknown_key_message
from supcon_ray.plugins import PluginError, load_plugins
from supcon_ray.study.bases import base_config
from supcon_ray.study.fidelity import full_length_epochs, planned_epochs, rung_sizes
from supcon_ray.study.sampling import draw_design
from supcon_ray.study.schema import (RESOURCE_KEYS, SELECTION_SEEDS, UNTUNABLE, Distribution, Nuisance, Study,
                                     Tracking, TuneBase)
from supcon_ray.study.values import (CONTRASTIVE_ONLY, applies_to, fold_options, is_hyperparameter, is_numeric,
                                     option_name, relative_multiplier, resolve, setting_values, space_for)


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
        lines = format_validation_error(err, model=TrainConfig).splitlines()
        raise ConfigError("\n".join(f"{source}: {path}.{line}" if path else f"{source}: {line}" for line in lines)) from None


def _load_plugins(raw: dict[str, Any], path: Path, source: str) -> None:
    """Load the plugins the study file names (before its names are validated against the registries)."""
    entries = raw.get("plugins") or []
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ConfigError(f"{source}: plugins: a list of module names, paths to .py files or entry-point names")
    if entries:
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
        raise ConfigError(f"{source}: quick.{sorted(unknown)[0]}: "
                          + unknown_key_message(sorted(unknown)[0], [k for k in Study.model_fields if k != "quick"]))
    if quick:
        overrides = raw.get("quick")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{source}: --quick needs a 'quick' block in the study file")
        raw = _deep_merge({k: v for k, v in raw.items() if k != "quick"}, overrides)
    _load_plugins(raw, path, source)
    try:
        study = Study(**{**raw, "folder": str(path.resolve().parent)})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, Study)) from None
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
                        and is_numeric(key) and relative_multiplier(key, value) is None:
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
    for path, block in blocks:
        if block.fidelity is not None:
            _check_fidelity(study, block, path, source)


def _full_lengths(study: Study, path: str) -> dict[str, int]:
    """``{what: epochs}``: the full length every run of the search at ``path`` trains for, per loss (and per
    setting of a nuisance factor)."""
    out = {}
    if path == "tune_base":
        for loss in study.losses:
            out[loss] = int(TrainConfig(**fold_options(base_config(study, loss))).epochs)
        return out
    factor = path.split(".", 1)[1]
    for setting in study.vary[factor]:
        values = setting_values(factor, setting)
        for loss in study.losses:
            base = base_config(study, loss)
            if applies_to(base, values):
                resolved = {**base, **resolve(values, base)}
                out[f"{loss} at {factor}={setting}"] = int(TrainConfig(**fold_options(resolved)).epochs)
    return out


def _check_fidelity(study: Study, block: TuneBase | Nuisance, path: str, source: str) -> None:
    """A ``fidelity`` block that successive halving can run on an equal budget: configurations drawn up
    front, the number of epochs neither searched nor the factor's own value, a first rung below the full
    length, and the same full length (so the same rungs) for every loss and setting."""
    where = f"{source}: {path}.fidelity"
    if block.sampler == "tpe":
        raise ConfigError(f"{where}: needs its configurations drawn up front; the tpe sampler adapts to results. Use "
                          "sampler random, qmc or grid with fidelity")
    if "epochs" in block.space:
        raise ConfigError(f"{where}: the search's space tunes epochs, which successive halving sets per rung; "
                          "leave epochs out of the space or the fidelity block out of the search")
    if path != "tune_base":
        factor = path.split(".", 1)[1]
        if "epochs" in _absolute_keys(factor, study.vary[factor]) or factor == "epochs":
            raise ConfigError(f"{where}: factor {factor!r} sets the number of epochs, which successive halving would "
                              f"cut; fidelity is not allowed on it (allowed on tune_base and on factors that leave "
                              f"epochs alone)")
    lengths = _full_lengths(study, path)
    if len(set(lengths.values())) > 1:
        told = ", ".join(f"{k} {v}" for k, v in lengths.items())
        raise ConfigError(f"{where}: its runs would train for different full lengths ({told}), so the losses would "
                          "get different rungs and budgets; give them the same epochs or leave fidelity out")
    epochs = next(iter(lengths.values()))
    f = block.fidelity
    if f.min_epochs < epochs:
        designs = {len(draw_design(block.sampler, space_for(block.space, loss), getattr(block, "budget", None),
                                   block.seed).configs) for loss in study.losses if space_for(block.space, loss)}
        n = designs.pop()  # equal for every loss (checked above)
        spent, full = planned_epochs(n, 1, epochs, f.min_epochs, f.reduction_factor), full_length_epochs(n, 1, epochs)
        if spent >= full:
            sizes = rung_sizes(n, epochs, f.min_epochs, f.reduction_factor)
            raise ConfigError(f"{where}: rungs at {', '.join(str(r) for r, _ in sizes)} of {epochs} epochs would train "
                              f"{spent} trial-epochs against {full} at full length (per seed, {n} configurations); "
                              "choose a smaller min_epochs or a larger reduction_factor")
    if block.fidelity.min_epochs >= epochs:
        raise ConfigError(f"{where}.min_epochs: {block.fidelity.min_epochs} is not below the {epochs} epochs every run "
                          f"of the search trains for; must be 1 to {epochs - 1}" if epochs > 1 else
                          f"{where}.min_epochs: the search's runs train for 1 epoch, which cannot be cut; leave "
                          "fidelity out")


def _check_equal_budgets(study: Study, block: TuneBase | Nuisance, path: str, source: str) -> None:
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

