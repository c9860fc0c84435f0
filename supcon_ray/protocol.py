"""The paper's protocol: find each loss's base on the same budget, then change one factor at a time.

Khosla et al.'s Fig. 4a changes the optimizer, the augmentation or the learning rate "from each
loss's best setting". A study with a ``tune_base`` block runs in two stages:

1. **Stage 1** (``phase = "tune_base"``): for every loss, ``budget`` configurations of
   ``tune_base.space`` (the same number for every loss; random / QMC drawn up front, TPE adaptive)
   x ``tune_base.seeds``. :func:`pick_bases` takes, per loss, the configuration with the best mean of
   ``select`` (a validation metric, never a test one) over seeds. Diverged runs count at the chance
   level recorded for them; a stage with failed or missing trials picks nothing (:class:`StageIncomplete`).
2. **Stage 2**: ``vary`` / ``search`` from each loss's base (:func:`plan_stage2`). A factor with
   ``nuisance`` hyperparameters runs, for every setting and loss, the same small search (the same
   configurations) x the study's seeds (``phase = "nuisance"``); :func:`select_nuisance` keeps the
   configuration whose seed replicates are best by validation mean, and only those enter the
   statistics (:func:`stats_trials`). Ordinary stage-2 trials have ``phase = "study"``.

The bases are recorded in ``study.yaml`` (``bases``: :func:`load_bases`) once stage 1 ends; a
``--resume`` reads them back instead of running stage 1 again, so stage 2's base never changes.
Without ``tune_base`` the bases are the study file's (source :data:`BASE_FROM_FILE`).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pandas as pd

from .config import ConfigError
from .study import (CONTRASTIVE_ONLY, Design, Study, TrialSpec, _setting_values, _space_for, check_unique,
                    distinct_labels, draw_design, make_spec, plan_trials, setting_label)

STAGE1 = "tune_base"
BASE_FROM_FILE = "given in the study file"
BASE_FROM_STAGE1 = "stage 1 (tune_base)"
SELECTION_FILE = "selection.json"


class StageIncomplete(RuntimeError):
    """Stage 1 has failed or missing trials, so no base can be picked on an equal budget yet."""


# ----------------------------------------------------------------------------------------- stage 1

def stage1_design(study: Study, loss: str) -> Design:
    """The configurations stage 1 tries for ``loss`` (random / QMC; the same count for every loss)."""
    tb = study.tune_base
    return draw_design(tb.sampler, _space_for(tb.space, loss), tb.budget, tb.seed)


def plan_stage1(study: Study) -> list[TrialSpec]:
    """Stage 1's planned trials (none for TPE, which is adaptive and planned by the runner)."""
    tb = study.tune_base
    if tb is None or tb.sampler == "tpe":
        return []
    specs = []
    for loss in study.losses:
        configs = stage1_design(study, loss).configs
        for values, label in zip(configs, distinct_labels(configs)):
            for seed in tb.seeds:
                specs.append(make_spec(study, loss, STAGE1, values, seed, f"tune_base:{tb.sampler}", tb.seed,
                                       phase="tune_base", label=label))
    return check_unique(specs)


def tpe_stage1_spec(study: Study, loss: str, config: dict[str, Any]) -> TrialSpec:
    """The stage-1 trial a TPE suggestion stands for (``__trial_index__`` picks the seed)."""
    tb = study.tune_base
    values = {k: config[k] for k in _space_for(tb.space, loss)}
    seed = tb.seeds[int(config.get("__trial_index__", 0)) % len(tb.seeds)]
    return make_spec(study, loss, STAGE1, values, seed, "tune_base:tpe", tb.seed, phase="tune_base",
                     label=setting_label(values, None))


def stage1_budget(study: Study) -> dict[str, int]:
    """Configurations per loss in stage 1 (equal by construction; fewer only if a finite space runs out)."""
    tb = study.tune_base
    if tb is None:
        return {}
    if tb.sampler == "tpe":
        return {loss: tb.budget for loss in study.losses}
    return {loss: len(stage1_design(study, loss).configs) for loss in study.losses}


def _group_mean(rows: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """Mean of ``metric`` per configuration (``keys``), with its seeds and trial ids."""
    groups = []
    for values, g in rows.groupby(keys, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        groups.append({"values": dict(zip(keys, values)), "n": len(g), "mean": float(g[metric].mean()),
                       "trial_ids": sorted(g["trial_id"]), "label": g["setting"].iloc[0]})
    return pd.DataFrame(groups)


def _python(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def pick_bases(study: Study, trials: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each loss's best stage-1 configuration by the mean of ``select`` over seeds (ties: the first label).

    Raises :class:`StageIncomplete` if a loss has failed trials or fewer trials than its budget.
    Returns ``{loss: record}`` as stored in ``study.yaml`` (see :func:`load_bases`).
    """
    tb = study.tune_base
    budget = stage1_budget(study)
    phase = trials["phase"] if "phase" in trials else pd.Series(index=trials.index, dtype=object)
    bases = {}
    for loss in study.losses:
        rows = trials[(phase == "tune_base") & (trials["loss"] == loss)]
        failed = int((rows["status"] == "failed").sum())
        # TPE may suggest a configuration twice; the repeat returns the recorded row, so count loosely there
        want = budget[loss] * len(tb.seeds) if tb.sampler != "tpe" else 1
        if failed or len(rows) < want:
            raise StageIncomplete(f"stage 1 for {loss}: {len(rows) - failed} of {want} trials finished, {failed} failed; "
                                  "no base is picked on an unequal budget. Run again with --resume (failed trials "
                                  "are re-run).")
        keys = list(_space_for(tb.space, loss))
        groups = _group_mean(rows, keys, tb.select)
        groups = groups[groups["n"] == len(tb.seeds)]
        if groups.empty:
            raise StageIncomplete(f"stage 1 for {loss}: no configuration has all {len(tb.seeds)} seeds recorded")
        # NaN means (no score at all) sort last; ties go to the first label, deterministically
        order = sorted(range(len(groups)), key=lambda i: (-_finite(groups["mean"].iloc[i]), groups["label"].iloc[i]))
        best = groups.iloc[order[0]]
        bases[loss] = {
            "source": BASE_FROM_STAGE1,
            "values": {k: _python(v) for k, v in best["values"].items()},
            "select": tb.select,
            "mean": float(best["mean"]),
            "seeds": [int(x) for x in tb.seeds],
            "trial_ids": [str(x) for x in best["trial_ids"]],
            "configurations": int(len(groups)),
            "tune_base": study.tune_base.model_dump(mode="json"),
        }
    return bases


def _finite(x: float) -> float:
    return x if x is not None and math.isfinite(x) else -math.inf


def file_bases(study: Study) -> dict[str, dict[str, Any]]:
    """Bases of a study without a tuning stage: the study file's own."""
    return {loss: {"source": BASE_FROM_FILE, "values": {}} for loss in study.losses}


def tuned_values(bases: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``{loss: values stage 1 put on top of the file's base}``."""
    return {loss: dict(rec.get("values") or {}) for loss, rec in (bases or {}).items()}


def recorded_bases(text: str | None, study: Study) -> dict[str, dict[str, Any]] | None:
    """The bases a previous run recorded in ``study.yaml`` (``text``), or None if stage 1 has not ended.

    Refuses (ConfigError) bases from a different ``tune_base`` block: resuming must not mix two stage 1s.
    """
    import yaml

    if not text:
        return None
    bases = (yaml.safe_load(text) or {}).get("bases")
    if not bases:
        return None
    now = study.tune_base.model_dump(mode="json") if study.tune_base else None
    for loss, rec in bases.items():
        if rec.get("tune_base") != now:  # also: a tuning stage added to, or removed from, the study file
            raise ConfigError(f"tune_base: differs from the stage 1 already recorded in this storage (base of {loss}); "
                              "stage 2's base cannot change on --resume. Use another --storage for a new stage 1.")
    missing = set(study.losses) - set(bases)
    if missing:
        raise ConfigError(f"losses: {sorted(missing)[0]!r} has no recorded base in this storage; use another --storage")
    return bases


def load_bases(study_dir: str) -> dict[str, dict[str, Any]]:
    """The base each loss's stage 2 started from, as recorded in ``<study_dir>/study.yaml``.

    ``{loss: {"source": "stage 1 (tune_base)" | "given in the study file", "values": {key: value}, ...}}``;
    stage-1 records also hold ``select`` (the metric), ``mean`` (its mean over ``seeds``), ``seeds``,
    ``trial_ids`` (the chosen configuration's stage-1 trials) and ``configurations`` (how many were tried).
    ``values`` are the tuned keys only; the full base is the study file's ``base`` with them on top.
    Empty if stage 1 has not ended (or the folder predates recorded bases).
    """
    text = _read_text(study_dir, "study.yaml")
    if not text:
        return {}
    import yaml

    return (yaml.safe_load(text) or {}).get("bases") or {}


# ----------------------------------------------------------------------------------------- stage 2

def nuisance_designs(study: Study) -> dict[tuple[str, str], Design]:
    """``{(factor, loss): Design}`` of every nuisance search (shared by all the factor's settings)."""
    out = {}
    for factor, nz in study.nuisance.items():
        for loss in study.losses:
            space = _space_for(nz.space, loss)
            if space:
                out[(factor, loss)] = draw_design(nz.sampler, space, nz.budget, nz.seed)
    return out


def plan_stage2(study: Study, bases: dict[str, dict[str, Any]] | None) -> list[TrialSpec]:
    """Every planned stage-2 trial from each loss's base: ordinary ones, then nuisance searches."""
    tuned = tuned_values(bases)
    specs = plan_trials(study, tuned, skip_factors=set(study.nuisance))
    designs = nuisance_designs(study)
    for factor, nz in study.nuisance.items():
        all_values = [_setting_values(factor, s) for s in study.vary[factor]]
        for values, label in zip(all_values, distinct_labels(all_values)):
            for loss in study.losses:
                if loss == "ce" and set(values) <= CONTRASTIVE_ONLY:
                    continue
                design = designs.get((factor, loss))
                for config in (design.configs if design else [None]):
                    for seed in study.seeds:
                        if config is None:  # nothing this loss uses is re-tuned: an ordinary trial
                            specs.append(make_spec(study, loss, factor, values, seed, "one_factor",
                                                   tuned=tuned.get(loss), label=label))
                        else:
                            specs.append(make_spec(study, loss, factor, values, seed,
                                                   f"one_factor+nuisance:{nz.sampler}", nz.seed, tuned=tuned.get(loss),
                                                   phase="nuisance", label=label, nuisance=config))
    return check_unique(specs)


def select_nuisance(study: Study, specs: list[TrialSpec], trials: pd.DataFrame) -> dict[str, Any]:
    """Per (loss, factor, setting) with nuisance re-tuning: the configuration best by mean validation
    metric over the study's seeds. A setting is ``complete`` when every planned run of its search
    has a scored row (completed or diverged); only complete settings have a ``best``."""
    rows = trials.set_index("trial_id") if len(trials) else trials
    groups: dict[tuple[str, str, str], dict[str, list[TrialSpec]]] = {}
    for s in specs:
        if s.phase == "nuisance":
            key = json.dumps(s.nuisance, sort_keys=True)
            groups.setdefault((s.loss, s.factor, s.setting), {}).setdefault(key, []).append(s)
    out = []
    for (loss, factor, setting), configs in groups.items():
        select = study.nuisance[factor].select
        entry: dict[str, Any] = {"loss": loss, "factor": factor, "setting": setting, "select": select,
                                 "configurations": len(configs), "complete": True, "best": None}
        candidates = []
        for runs in configs.values():
            ids = [s.trial_id for s in runs]
            present = [i for i in ids if len(rows) and i in rows.index]
            if len(present) < len(ids) or (rows.loc[ids, "status"] == "failed").any():
                entry["complete"] = False
                break
            candidates.append((_finite(float(rows.loc[ids, select].mean())), runs[0].setting, runs[0].nuisance, ids))
        if entry["complete"]:
            mean, _, values, ids = max(candidates, key=lambda c: c[0])  # first of equals: the design's order
            entry["best"] = {"nuisance": values, "mean": mean if math.isfinite(mean) else None, "trial_ids": ids}
        out.append(entry)
    return {"settings": out}


def stats_trials(trials: pd.DataFrame, study_dir: str) -> pd.DataFrame:
    """Exactly the rows that enter the stability statistics.

    Ordinary stage-2 trials (``in_stats``; rows from before these columns existed count as such), plus
    the seed replicates of each setting's best nuisance configuration listed in ``selection.json``.
    Stage-1 trials and the other nuisance runs are left out. Failed rows stay in (the statistics count
    them and do not score them).
    """
    if "in_stats" in trials:
        legacy = trials["phase"].isna() if "phase" in trials else pd.Series(True, index=trials.index)
        keep = trials["in_stats"].fillna(False).astype(bool) | legacy
    else:
        keep = pd.Series(True, index=trials.index)
    text = _read_text(study_dir, SELECTION_FILE)
    if text:
        chosen = {i for e in json.loads(text).get("settings", []) if e.get("best") for i in e["best"]["trial_ids"]}
        keep = keep | trials["trial_id"].isin(chosen)
    return trials[keep]


def _read_text(study_dir: str, name: str) -> str | None:
    import pyarrow.fs as pafs

    if "://" in study_dir:
        fs, base = pafs.FileSystem.from_uri(study_dir)
    else:
        fs, base = pafs.LocalFileSystem(), os.path.abspath(study_dir)
    path = f"{base.rstrip('/')}/{name}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode()


# ------------------------------------------------------------------------------------------- plan

def print_protocol(study: Study, out) -> int:
    """Print both stages, their budgets and trial counts (``--dry-run``); return the number of planned trials."""
    total = 0
    tb = study.tune_base
    if tb is None:
        print("stage 1: none (no tune_base block): each loss starts from the study file's base", file=out)
        bases = None
    else:
        budget = stage1_budget(study)
        n = sum(budget.values()) * len(tb.seeds)
        total += n
        print(f"stage 1 (tune_base): sampler={tb.sampler} (seed {tb.seed}), select={tb.select} (mean over seeds "
              f"{tb.seeds}), space: {', '.join(tb.space)}", file=out)
        for loss in study.losses:
            note = stage1_design(study, loss).note if tb.sampler != "tpe" else "adaptive"
            print(f"  {loss:7} {budget[loss]} configurations x {len(tb.seeds)} seed(s) = {budget[loss] * len(tb.seeds)}"
                  f" trials{' (' + note + ')' if note else ''}", file=out)
        print(f"  stage 1 total: {n} trials; each loss's best configuration becomes its base", file=out)
        bases = {loss: {"values": {}} for loss in study.losses}
    specs = plan_stage2(study, bases)
    total += len(specs)
    nuisance = [s for s in specs if s.phase == "nuisance"]
    print(f"stage 2: {len(specs)} planned trials ({len(specs) - len(nuisance)} ordinary, {len(nuisance)} in "
          f"nuisance searches)" + (", from each loss's tuned base (tuned keys shown at the file's values)"
                                   if tb else ""), file=out)
    for (factor, loss), design in nuisance_designs(study).items():
        nz = study.nuisance[factor]
        print(f"  nuisance {factor}/{loss}: {', '.join(design.configs[0])} re-tuned per setting: "
              f"{len(design.configs)} configurations x {len(study.seeds)} seed(s) ({nz.sampler}, seed {nz.seed}); the "
              f"best by {nz.select} mean enters the statistics{' (' + design.note + ')' if design.note else ''}",
              file=out)
    print(f"  {'loss':7} {'phase':9} {'factor':14} {'setting':40} {'seed':>4}  epochs", file=out)
    for s in specs:
        setting = s.setting + (f" [{setting_label(s.nuisance)}]" if s.nuisance else "")
        print(f"  {s.loss:7} {s.phase:9} {s.factor:14} {setting[:40]:40} {s.seed:>4}  {s.train['epochs']}", file=out)
    if study.search is not None and study.search.sampler == "tpe":
        n = (study.search.num_samples or 0) * len(study.seeds) * len(study.losses)
        total += n
        print(f"  plus adaptive TPE: {study.search.num_samples} configurations x {len(study.seeds)} seeds per loss "
              f"= {n} trials (sampler seed {study.search.seed})", file=out)
    print(f"total: {total} trials", file=out)
    return total
