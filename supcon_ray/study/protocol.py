"""The paper's protocol as steps: each plans its trials from the decisions before it, then decides.

Khosla et al.'s Fig. 4a changes the optimizer, the augmentation or the learning rate "from each
loss's best setting". A study runs the steps of :data:`STEPS` in order; :func:`plan` builds any
step's trials from the decisions recorded so far, and :func:`select` makes the step's decision
from its rows. Both are pure: the runner (:mod:`supcon_ray.execution.study_run`) runs what is planned
and not yet recorded, and records each decision once in the manifest (:mod:`supcon_ray.results.manifest`).
Each trial records its :class:`~supcon_ray.study.trials.Phase` (what it was run for); a step's trials
may have several phases.

1. ``tune_base`` (``phase = "tune_base"``): for every loss, ``budget`` distinct configurations of
   ``tune_base.space`` (the same number for every loss; random / QMC drawn up front, TPE adaptive)
   x ``tune_base.seeds``. Decision ``bases``: per loss, the configuration with the best mean of
   ``select`` (a validation metric) over seeds. Without ``tune_base``: the study file's base.
2. ``study``: ``vary`` / ``search`` from each loss's base (``phase = "study"``, analysed), and for a
   factor with ``nuisance`` hyperparameters, per setting and loss, the same small search x
   ``nuisance.seeds`` (``phase = "nuisance"``, not analysed). Decision ``nuisance``: per setting and
   loss, the configuration best by validation mean over the selection seeds.
3. ``replicates``: each nuisance pick run on the study's seeds (``phase = "study"``, analysed).

Fair by construction: selection seeds (step 1, nuisance searches) are disjoint from the study
seeds (the study file refuses an overlap), so no run that chose a configuration is an analysed
replicate; every loss gets the same number of distinct configurations; a configuration reached from
several factors (the base) is one trial, analysed under each factor. One tie rule everywhere
(:func:`best`): the highest finite mean, and among equals the first in the design's order. A pick
at the edge of its search space is flagged (:func:`edge_flags`): the best may lie outside.

Diverged runs count at the chance level recorded for them; a step with failed or missing trials
decides nothing (:class:`StepIncomplete`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from supcon_ray.config import ConfigError
from supcon_ray.designs import DesignKind, design_name
from supcon_ray.labels import distinct_labels, format_label
from supcon_ray.display import display
from supcon_ray.study.bases import base_config
from supcon_ray.study.fidelity import Halving, full_length_epochs, halve, planned_epochs, rung_sizes
from supcon_ray.study.margins import base_margins
from supcon_ray.study.sampling import Design, draw_design
from supcon_ray.study.schema import Distribution, Fidelity, Study
from supcon_ray.study.trials import Phase, TrialSpec, make_spec, plan_trials
from supcon_ray.study.values import applies_to, setting_values, space_for


class Step(StrEnum):
    """The protocol's steps, in order. The manifest records their trial ids under the key ``stages``
    (:data:`supcon_ray.results.manifest.MANIFEST_STEPS_KEY`, the first studies' word); a training *stage*
    is something else, a part of one run (pre-training, the linear read-out: :mod:`supcon_ray.engine.stages`)."""

    TUNE_BASE = "tune_base"
    STUDY = "study"
    REPLICATES = "replicates"


STEPS = tuple(Step)


class Block(StrEnum):
    """The study file's blocks that a TPE search tunes adaptively (:class:`Adaptive`): ``tune_base`` (step 1)
    or ``search`` (a sampled space of step 2). The runner rebuilds each suggestion's trial from it."""

    TUNE_BASE = "tune_base"
    SEARCH = "search"


class Decision(StrEnum):
    """The keys of the decisions the manifest records (a data contract): step 1's ``bases``, step 2's
    ``nuisance`` picks, and the ``rungs`` each search with fidelity decided (``{search: [rung, ...]}``,
    :func:`supcon_ray.study.fidelity.halve`; present only in studies with a ``fidelity`` block)."""

    BASES = "bases"
    NUISANCE = "nuisance"
    RUNGS = "rungs"


#: The ``factor`` recorded for a step-1 trial.
TUNE_BASE_FACTOR = "tune_base"
#: The key under which an edge flag (:func:`edge_flags`) records the phase of the pick it flags
#: (``tune_base`` or ``nuisance``): recorded as ``stage`` in every manifest since the first studies.
FLAG_PHASE_KEY = "stage"
#: How a base taken from the study file (no ``tune_base`` block) reads in manifests.
BASE_FROM_FILE = "given in the study file"
#: How a tuned base's source reads in manifests (kept as recorded since the first studies, which named the
#: protocol's steps "stages").
BASE_FROM_STEP1 = "stage 1 (tune_base)"


def source_text(source: str | None) -> str:
    """A recorded base source as the console and the report name it (the protocol's steps, today's word)."""
    return "step 1 (tune_base)" if source == BASE_FROM_STEP1 else str(source or "?")


#: Share of a range (log scale for loguniform) at either end where a pick counts as on the edge.
EDGE_SHARE = 0.1


class StepIncomplete(RuntimeError):
    """A step has failed or missing trials, so it cannot decide on an equal budget yet."""


@dataclass
class Adaptive:
    """One adaptive TPE search the runner runs for a step (it cannot be planned up front)."""

    name: str
    loss: str
    space: dict[str, Distribution]
    budget: int
    seeds: list[int]
    sampler_seed: int
    metric: str
    block: Block
    tuned: dict[str, Any] | None = None


@dataclass
class Halved:
    """One search with fidelity as planned so far: its name (the key of its rungs in the manifest), its
    configurations in the design's order, the selection seeds, each configuration's runs per rung epochs
    (``runs[(index, epochs)]``) and where its halving stands."""

    name: str
    configs: list[dict[str, Any]]
    seeds: list[int]
    epochs: int
    fidelity: Fidelity
    runs: dict[tuple[int, int], list[TrialSpec]]
    halving: Halving

    @property
    def planned_trials(self) -> int:
        """Trials the whole halving runs (its rung sizes x seeds: the same whatever the scores)."""
        f = self.fidelity
        return len(self.seeds) * sum(n for _, n in rung_sizes(len(self.configs), self.epochs, f.min_epochs,
                                                              f.reduction_factor))

    @property
    def pick_runs(self) -> list[TrialSpec]:
        """The pick's runs at the rung it won (empty before there is a pick)."""
        h = self.halving
        return [] if h.pick is None else self.runs[(h.pick, h.pick_epochs)]

    def record(self) -> dict[str, Any]:
        """What the pick's record says of the halving: the rung it won at, how many rungs, the trial-epochs
        run against those of every configuration at full length."""
        f, n, seeds = self.fidelity, len(self.configs), len(self.seeds)
        return {"method": f.method, "min_epochs": f.min_epochs, "reduction_factor": f.reduction_factor,
                "epochs": self.halving.pick_epochs, "rungs": len(self.halving.rungs),
                "trial_epochs": planned_epochs(n, seeds, self.epochs, f.min_epochs, f.reduction_factor),
                "full_length_trial_epochs": full_length_epochs(n, seeds, self.epochs)}


@dataclass
class Plan:
    """A step's planned trials (unique ids, in order), the statistics' entries among them
    (``{trial_id, factor, setting}``; a shared trial appears under each factor) and its TPE searches.
    ``halved``: its searches with fidelity (``{name: Halved}``), whose later rungs are planned once the
    earlier ones are recorded: while one has no pick (:attr:`pending`), the runner plans the step again
    after running it."""

    step: Step
    specs: list[TrialSpec] = field(default_factory=list)
    analysed: list[dict[str, str]] = field(default_factory=list)
    adaptive: list[Adaptive] = field(default_factory=list)
    halved: dict[str, Halved] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """Whether a search with fidelity has no pick yet (more rungs may follow once these are recorded)."""
        return any(h.halving.pick is None for h in self.halved.values())

    @property
    def rungs(self) -> dict[str, list[dict[str, Any]]]:
        """Every search's decided rungs, as the manifest records them under ``decisions["rungs"]``."""
        return {name: h.halving.rungs for name, h in self.halved.items() if h.halving.rungs}

    @property
    def ids(self) -> list[str]:
        return [s.trial_id for s in self.specs]

    @property
    def trial_count(self) -> int:
        """How many trials the step runs: its planned specs, the rungs of its searches with fidelity not planned
        yet, and every TPE search's budget on its seeds."""
        later = sum(h.planned_trials - len(h.halving.runs()) * len(h.seeds) for h in self.halved.values())
        return len(self.specs) + later + sum(a.budget * len(a.seeds) for a in self.adaptive)


def best(candidates: list[tuple[float, Any]]) -> Any:
    """The one tie rule: the item with the highest finite mean; among equals (or when no mean is finite)
    the first in the design's order."""
    top = max(range(len(candidates)), key=lambda i: (_finite(candidates[i][0]), -i))
    return candidates[top][1]


def _finite(x: float | None) -> float:
    return x if x is not None and math.isfinite(x) else -math.inf


# ------------------------------------------------------------------------------------------ plans

def plan(study: Study, step: str, decisions: dict[str, Any], trials: pd.DataFrame | None = None) -> Plan:
    """The trials of ``step`` (a :class:`Step`) given the ``decisions`` recorded so far (``bases`` before
    ``study``, ``nuisance`` before ``replicates``). A search with fidelity plans its rungs from the ``trials``
    recorded so far and the ``rungs`` decisions (never decided again): without rows, its first rung.
    Raises ConfigError for a plan with a setting listed twice."""
    rungs = decisions.get(Decision.RUNGS) or {}
    # indexed once: every search with fidelity of the step reads its runs' rows from it
    runs = trials.drop_duplicates("trial_id", keep="last").set_index("trial_id") if trials is not None and len(trials) \
        else None
    if step == Step.TUNE_BASE:
        return _plan_step1(study, runs, rungs)
    if step == Step.STUDY:
        return _plan_study(study, decisions.get(Decision.BASES), runs, rungs)
    if step == Step.REPLICATES:
        return _plan_replicates(study, decisions.get(Decision.BASES), decisions.get(Decision.NUISANCE) or [])
    raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")


def step1_design(study: Study, loss: str) -> Design:
    """The configurations step 1 tries for ``loss`` (random / QMC; the same count for every loss)."""
    tb = study.tune_base
    return draw_design(tb.sampler, space_for(tb.space, loss), tb.budget, tb.seed)


def _scorer(indexed: pd.DataFrame | None, select: str):
    """``score(specs)``: the mean of ``select`` over the runs when every one has a scored row (completed or
    diverged), else None (:func:`supcon_ray.study.fidelity.halve`). ``indexed``: the recorded rows by trial id."""
    if indexed is None:
        return lambda specs: None

    def score(specs: list[TrialSpec]) -> float | None:
        ids = [s.trial_id for s in specs]
        if not all(i in indexed.index for i in ids) or (indexed.loc[ids, "status"] == "failed").any():
            return None
        mean = float(pd.to_numeric(indexed.loc[ids, select], errors="coerce").mean())
        return mean  # NaN (no score recorded) ranks last

    return score


def _halved(name: str, configs: list[dict[str, Any]], seeds: list[int], fidelity: Fidelity, select: str,
            make, rows: pd.DataFrame | None, recorded: dict[str, list[dict[str, Any]]]) -> Halved:
    """One search with fidelity: ``make(index, rung_epochs or None, seed)`` builds a run (None: full length);
    ``rows``: the recorded rows indexed by trial id (None before any)."""
    epochs = int(make(0, None, seeds[0]).train["epochs"])
    runs: dict[tuple[int, int], list[TrialSpec]] = {}

    def at(i: int, r: int) -> list[TrialSpec]:
        if (i, r) not in runs:
            runs[(i, r)] = [make(i, r if r < epochs else None, seed) for seed in seeds]
        return runs[(i, r)]

    score = _scorer(rows, select)
    halving = halve(len(configs), epochs, fidelity.min_epochs, fidelity.reduction_factor,
                    lambda i, r: score(at(i, r)), recorded.get(name))
    for i, r in halving.runs():
        at(i, r)
    runs = {key: runs[key] for key in sorted(runs, key=lambda k: (k[1], k[0]))}
    return Halved(name, configs, list(seeds), epochs, fidelity, runs, halving)


def _halved_specs(h: Halved) -> list[TrialSpec]:
    """The runs the search needs so far, rung by rung, in the design's order."""
    wanted = set(h.halving.runs())
    return [s for key, specs in h.runs.items() if key in wanted for s in specs]


def _plan_step1(study: Study, trials: pd.DataFrame | None = None,
                recorded: dict[str, list[dict[str, Any]]] | None = None) -> Plan:
    tb = study.tune_base
    out = Plan(Step.TUNE_BASE)
    if tb is None:
        return out
    if tb.sampler == "tpe":
        out.adaptive = [Adaptive(f"tune-base-tpe-{loss}", loss, space_for(tb.space, loss), tb.budget, tb.seeds,
                                 tb.seed, tb.select, Block.TUNE_BASE) for loss in study.losses]
        return out
    for loss in study.losses:
        configs = step1_design(study, loss).configs
        if tb.fidelity is not None:
            labels = distinct_labels(configs)
            design = design_name(DesignKind.TUNE_BASE, tb.sampler)

            def make(i, rung, seed, loss=loss, configs=configs, labels=labels, design=design):
                return make_spec(study, loss, TUNE_BASE_FACTOR, configs[i], seed, design, tb.seed,
                                 phase=Phase.TUNE_BASE, label=labels[i], rung=rung)

            h = _halved(step1_search(loss), configs, tb.seeds, tb.fidelity, tb.select, make, trials, recorded or {})
            out.halved[h.name] = h
            out.specs += _halved_specs(h)
            continue
        for values, label in zip(configs, distinct_labels(configs)):
            for seed in tb.seeds:
                out.specs.append(make_spec(study, loss, TUNE_BASE_FACTOR, values, seed,
                                           design_name(DesignKind.TUNE_BASE, tb.sampler), tb.seed,
                                           phase=Phase.TUNE_BASE, label=label))
    _unique(out.specs)
    return out


def step1_search(loss: str) -> str:
    """The name of ``loss``'s step-1 search (the key of its rungs in the manifest)."""
    return f"{TUNE_BASE_FACTOR}/{loss}"


def nuisance_search(factor: str, setting: str, loss: str) -> str:
    """The name of a nuisance search (the key of its rungs in the manifest)."""
    return f"nuisance/{factor}/{setting}/{loss}"


def tpe_step1_spec(study: Study, loss: str, config: dict[str, Any]) -> TrialSpec:
    """The step-1 trial a TPE suggestion stands for (``__trial_index__`` picks the seed)."""
    tb = study.tune_base
    values = {k: config[k] for k in space_for(tb.space, loss)}
    seed = tb.seeds[int(config.get("__trial_index__", 0)) % len(tb.seeds)]
    return make_spec(study, loss, TUNE_BASE_FACTOR, values, seed, design_name(DesignKind.TUNE_BASE, "tpe"), tb.seed,
                     phase=Phase.TUNE_BASE, label=format_label(values, None))


def step1_budget(study: Study) -> dict[str, int]:
    """Distinct configurations per loss in step 1 (equal: the study file refuses a design that is not)."""
    tb = study.tune_base
    if tb is None:
        return {}
    if tb.sampler == "tpe":
        return {loss: tb.budget for loss in study.losses}
    return {loss: len(step1_design(study, loss).configs) for loss in study.losses}


def nuisance_designs(study: Study) -> dict[tuple[str, str], Design]:
    """``{(factor, loss): Design}`` of every nuisance search (shared by all the factor's settings)."""
    out = {}
    for factor, nz in study.nuisance.items():
        for loss in study.losses:
            space = space_for(nz.space, loss)
            if space:
                out[(factor, loss)] = draw_design(nz.sampler, space, nz.budget, nz.seed)
    return out


def _factor_settings(study: Study, factor: str) -> list[tuple[dict[str, Any], str]]:
    values = [setting_values(factor, s) for s in study.vary[factor]]
    return list(zip(values, distinct_labels(values)))


def _skips(study: Study, loss: str, values: dict[str, Any]) -> bool:
    return not applies_to(base_config(study, loss), values)


def _plan_study(study: Study, bases: dict[str, Any] | None, trials: pd.DataFrame | None = None,
                recorded: dict[str, list[dict[str, Any]]] | None = None) -> Plan:
    tuned = tuned_values(bases)
    out = Plan(Step.STUDY)
    ordinary = plan_trials(study, tuned, skip_factors=set(study.nuisance), check=False)
    designs = nuisance_designs(study)
    searches = []
    for factor, nz in study.nuisance.items():
        for values, label in _factor_settings(study, factor):
            for loss in study.losses:
                if _skips(study, loss, values):
                    continue
                design = designs.get((factor, loss))
                if design is None:  # nothing this loss uses is re-tuned: ordinary trials
                    ordinary += [make_spec(study, loss, factor, values, seed, design_name(DesignKind.ONE_FACTOR), tuned=tuned.get(loss),
                                           label=label) for seed in study.seeds]
                    continue
                if nz.fidelity is not None:
                    def make(i, rung, seed, loss=loss, values=values, label=label, nz=nz, design=design, factor=factor):
                        return make_spec(study, loss, factor, values, seed, design_name(DesignKind.NUISANCE_SEARCH, nz.sampler),
                                         nz.seed, tuned=tuned.get(loss), phase=Phase.NUISANCE, label=label,
                                         nuisance=design.configs[i], rung=rung)

                    h = _halved(nuisance_search(factor, label, loss), design.configs, nz.seeds, nz.fidelity, nz.select,
                                make, trials, recorded or {})
                    out.halved[h.name] = h
                    searches += _halved_specs(h)
                    continue
                for config in design.configs:
                    searches += [make_spec(study, loss, factor, values, seed, design_name(DesignKind.NUISANCE_SEARCH, nz.sampler), nz.seed,
                                           tuned=tuned.get(loss), phase=Phase.NUISANCE, label=label, nuisance=config)
                                 for seed in nz.seeds]
    out.specs, out.analysed = _unique(ordinary)
    search_specs, _ = _unique(searches)
    out.specs += search_specs
    if study.search is not None and study.search.sampler == "tpe":
        out.adaptive = [Adaptive(f"tune-tpe-{loss}", loss, study.search.space, study.search.num_samples, study.seeds,
                                 study.search.seed, "val_top1", Block.SEARCH, tuned.get(loss)) for loss in study.losses]
    return out


def _plan_replicates(study: Study, bases: dict[str, Any] | None, picks: list[dict[str, Any]]) -> Plan:
    tuned = tuned_values(bases)
    out = Plan(Step.REPLICATES)
    labels = {f: {label: values for values, label in _factor_settings(study, f)} for f in study.nuisance}
    for pick in picks:
        if not pick.get("best"):
            continue
        factor, nz = pick["factor"], study.nuisance[pick["factor"]]
        values = labels[factor][pick["setting"]]
        out.specs += [make_spec(study, pick["loss"], factor, values, seed, design_name(DesignKind.NUISANCE, nz.sampler), nz.seed,
                                tuned=tuned.get(pick["loss"]), label=pick["setting"], nuisance=pick["best"]["nuisance"])
                      for seed in study.seeds]
    out.specs, out.analysed = _unique(out.specs)
    return out


def _unique(specs: list[TrialSpec]) -> tuple[list[TrialSpec], list[dict[str, str]]]:
    """One trial per computation, with an analysis entry per (factor, setting) it stands for.

    The same configuration in two factors (the base: ``lr: x1`` and the base's own augmentation) is
    run once and analysed under both; twice in one factor is a setting listed twice (ConfigError)."""
    first: dict[str, TrialSpec] = {}
    unique, entries = [], []
    for s in specs:
        key = s.trial_id.rsplit("-", 1)[1]  # the digest of what the trial computes
        seen = first.get(key)
        if seen is not None and seen.factor == s.factor:
            raise ConfigError(f"{s.factor}: settings {seen.setting!r} and {s.setting!r} are the same configuration "
                              f"for {s.loss} (seed {s.seed}); list each setting once")
        if seen is None:
            first[key] = seen = s
            unique.append(s)
        entries.append({"trial_id": seen.trial_id, "factor": s.factor, "setting": s.setting})
    return unique, entries


# -------------------------------------------------------------------------------------- decisions

def select(study: Study, step: str, planned: Plan, trials: pd.DataFrame) -> dict[str, Any]:
    """The decision of ``step`` from its rows: ``{"bases": ...}``, ``{"nuisance": [...]}`` or ``{}``.

    Raises :class:`StepIncomplete` if a trial the decision needs failed or has no row."""
    if step == Step.TUNE_BASE:
        return {Decision.BASES: pick_bases(study, trials, planned.specs, planned.halved) if study.tune_base
                else file_bases(study)}
    if step == Step.STUDY and study.nuisance:
        picks = select_nuisance(study, planned.specs, trials, planned.halved)
        missing = [p for p in picks if not p["complete"]]
        if missing:
            p = missing[0]
            raise StepIncomplete(f"nuisance search of {p['loss']} at {p['factor']}={p['setting']} has failed or "
                                  f"missing trials ({len(missing)} setting(s) so); no configuration is picked on an "
                                  "unequal budget. Run again with --resume (failed trials are re-run).")
        return {Decision.NUISANCE: picks}
    return {}


def pick_bases(study: Study, trials: pd.DataFrame, specs: list[TrialSpec] | None = None,
               halved: dict[str, Halved] | None = None) -> dict[str, dict[str, Any]]:
    """Each loss's best step-1 configuration by the mean of ``select`` over seeds (:func:`best`).

    ``specs``: the planned step-1 trials (random / QMC), whose order breaks ties; a TPE step is
    ordered by start time. ``halved``: the searches with fidelity, whose pick is their halving's.
    Raises :class:`StepIncomplete` if a loss has failed or missing trials.
    Returns ``{loss: record}`` (see :func:`supcon_ray.results.manifest.Manifest.bases`).
    """
    tb = study.tune_base
    phases = trials["phase"] if "phase" in trials else pd.Series(index=trials.index, dtype=object)
    bases = {}
    for loss in study.losses:
        rows = trials[(phases == Phase.TUNE_BASE) & (trials["loss"] == loss)]
        h = (halved or {}).get(step1_search(loss))
        if h is not None:
            bases[loss] = _halved_base(tb, h, rows)
            continue
        if specs:
            order = {s.trial_id: i for i, s in enumerate(specs)}
            planned = [i for i in order if i.startswith(f"{loss}-")]
            rows = rows[rows["trial_id"].isin(list(order))]
            rows = rows.assign(_o=rows["trial_id"].map(order)).sort_values("_o")
            want = len(planned)
        else:
            rows = rows.sort_values(["started_at", "trial_id"]) if "started_at" in rows else rows
            want = 1
        failed = int((rows["status"] == "failed").sum())
        if failed or len(rows) < want:
            raise StepIncomplete(f"step 1 for {loss}: {len(rows) - failed} of {want} trials finished, {failed} failed; "
                                  "no base is picked on an unequal budget. Run again with --resume (failed trials "
                                  "are re-run).")
        keys = list(space_for(tb.space, loss))
        groups = []
        for values, g in rows.groupby(keys, sort=False, dropna=False):
            values = values if isinstance(values, tuple) else (values,)
            if len(g) == len(tb.seeds):
                groups.append((float(g[tb.select].mean()),
                               {"values": dict(zip(keys, values)), "trial_ids": sorted(g["trial_id"])}))
        if not groups:
            raise StepIncomplete(f"step 1 for {loss}: no configuration has all {len(tb.seeds)} seeds recorded")
        chosen = best(groups)
        mean = next(m for m, g in groups if g is chosen)
        bases[loss] = {
            "source": BASE_FROM_STEP1,
            "values": {k: _python(v) for k, v in chosen["values"].items()},
            "select": tb.select,
            "mean": mean,
            "seeds": [int(x) for x in tb.seeds],
            "trial_ids": [str(x) for x in chosen["trial_ids"]],
            "configurations": len(groups),
            Block.TUNE_BASE: tb.model_dump(mode="json"),
        }
        margin = base_margins(rows.assign(study="s"), tb.select).get("s", {}).get(loss)
        if margin is not None:  # how clearly it won: the lead over the runner-up, with its standard error
            bases[loss]["margin"] = margin
    return bases


def _halved_base(tb, h: Halved, rows: pd.DataFrame) -> dict[str, Any]:
    """A base picked by successive halving: its runs at the rung it won, and the margin over that rung's others."""
    if h.halving.pick is None:
        r, alive = h.halving.running
        raise StepIncomplete(f"step 1 for {h.name.split('/', 1)[1]}: the rung at {r} epochs ({len(alive)} configurations "
                             "x its seeds) has failed or missing trials; no base is picked on an unequal budget. Run "
                             "again with --resume (failed trials are re-run).")
    ids = [s.trial_id for s in h.pick_runs]
    record = {
        "source": BASE_FROM_STEP1,
        "values": {k: _python(v) for k, v in h.configs[h.halving.pick].items()},
        "select": tb.select,
        "mean": h.halving.pick_score,
        "seeds": [int(x) for x in tb.seeds],
        "trial_ids": sorted(ids),
        "configurations": len(h.configs),
        Block.TUNE_BASE: tb.model_dump(mode="json"),
        "fidelity": h.record(),
    }
    rung = [s.trial_id for i in h.halving.rungs[-1]["alive"] for s in h.runs[(i, h.halving.pick_epochs)]]
    margin = base_margins(rows[rows["trial_id"].isin(rung)].assign(study="s"), tb.select).get("s", {}).get(
        h.name.split("/", 1)[1])
    if margin is not None:
        record["margin"] = margin
    return record


def _python(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def file_bases(study: Study) -> dict[str, dict[str, Any]]:
    """Bases of a study without a tuning step: the study file's own."""
    return {loss: {"source": BASE_FROM_FILE, "values": {}} for loss in study.losses}


def tuned_values(bases: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``{loss: values step 1 put on top of the file's base}``."""
    return {loss: dict(rec.get("values") or {}) for loss, rec in (bases or {}).items()}


def select_nuisance(study: Study, specs: list[TrialSpec], trials: pd.DataFrame,
                    halved: dict[str, Halved] | None = None) -> list[dict[str, Any]]:
    """Per (loss, factor, setting) with nuisance re-tuning: the configuration best by mean validation
    metric over the selection seeds (:func:`best`). A setting is ``complete`` when every planned run
    of its search has a scored row (completed or diverged); only complete settings have a ``best``,
    which names the selection runs it was chosen on. A search with fidelity (``halved``) is complete
    once its halving has a pick, and its ``best`` says at which rung it won (``fidelity``)."""
    rows = trials.set_index("trial_id") if len(trials) else trials
    groups: dict[tuple[str, str, str], dict[str, list[TrialSpec]]] = {}
    for s in specs:
        h = (halved or {}).get(nuisance_search(s.factor, s.setting, s.loss))
        if h is not None:
            groups.setdefault((s.loss, s.factor, s.setting), {})
            continue
        if s.phase == Phase.NUISANCE:
            key = json.dumps(s.nuisance, sort_keys=True)
            groups.setdefault((s.loss, s.factor, s.setting), {}).setdefault(key, []).append(s)
    out = []
    for (loss, factor, setting), configs in groups.items():
        nz = study.nuisance[factor]
        entry: dict[str, Any] = {"loss": loss, "factor": factor, "setting": setting, "select": nz.select,
                                 "seeds": list(nz.seeds), "configurations": len(configs), "complete": True, "best": None}
        h = (halved or {}).get(nuisance_search(factor, setting, loss))
        if h is not None:
            entry["configurations"] = len(h.configs)
            entry["complete"] = h.halving.pick is not None
            if entry["complete"]:
                entry["best"] = {"nuisance": h.configs[h.halving.pick], "mean": h.halving.pick_score,
                                 "selection_trial_ids": [s.trial_id for s in h.pick_runs], "fidelity": h.record()}
            out.append(entry)
            continue
        candidates = []
        for runs in configs.values():
            ids = [s.trial_id for s in runs]
            present = [i for i in ids if len(rows) and i in rows.index]
            if len(present) < len(ids) or (rows.loc[ids, "status"] == "failed").any():
                entry["complete"] = False
                break
            mean = float(rows.loc[ids, nz.select].mean())
            candidates.append((mean, {"nuisance": runs[0].nuisance, "mean": mean if math.isfinite(mean) else None,
                                      "selection_trial_ids": ids}))
        if entry["complete"]:
            entry["best"] = best(candidates)
        out.append(entry)
    return out


def edge_flags(study: Study, decisions: dict[str, Any]) -> list[dict[str, Any]]:
    """Picks at the edge of their search space: a range's outer :data:`EDGE_SHARE` (log scale for
    loguniform) or a choice list's smallest / largest number. The best may lie outside the space."""
    flags = []
    tb = study.tune_base
    if tb is not None:
        for loss, rec in (decisions.get(Decision.BASES) or {}).items():
            for key, value in (rec.get("values") or {}).items():
                flags += _edge(tb.space.get(key), key, value, {FLAG_PHASE_KEY: Phase.TUNE_BASE, "loss": loss})
    for pick in decisions.get(Decision.NUISANCE) or []:
        for key, value in ((pick.get("best") or {}).get("nuisance") or {}).items():
            where = {FLAG_PHASE_KEY: Phase.NUISANCE, "loss": pick["loss"], "factor": pick["factor"], "setting": pick["setting"]}
            flags += _edge(study.nuisance[pick["factor"]].space.get(key), key, value, where)
    return flags


def _edge(dist: Distribution | None, key: str, value: Any, where: dict[str, Any]) -> list[dict[str, Any]]:
    if dist is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return []
    if dist.kind == "choice":
        numbers = sorted(v for v in dist.choice if isinstance(v, (int, float)) and not isinstance(v, bool))
        if len(numbers) < 2:
            return []
        lo, hi, side = numbers[0], numbers[-1], None
        side = "largest" if value == hi else "smallest" if value == lo else None
    else:
        lo, hi = getattr(dist, dist.kind)
        scale = (lambda x: math.log(x)) if dist.kind == "loguniform" else (lambda x: x)
        share = (scale(value) - scale(lo)) / (scale(hi) - scale(lo))
        side = "largest" if share >= 1 - EDGE_SHARE else "smallest" if share <= EDGE_SHARE else None
    if side is None:
        return []
    text = (f"{where['loss']}: {key}={value:.4g} picked " + (f"for {where['setting']} "
            if "factor" in where else "for the base ") + f"is at the {side} end of the space [{lo:g}, {hi:g}]; "
            "the best may lie outside it")
    return [{**where, "key": key, "value": value, "side": side, "low": lo, "high": hi, "text": text}]


def adaptive_entries(trials: pd.DataFrame, ran: list[str]) -> list[dict[str, str]]:
    """The statistics' entries of a TPE ``search`` block: its recorded study-phase rows among ``ran``."""
    rows = trials[trials["trial_id"].isin(ran) & (trials["phase"] == Phase.STUDY)]
    return [{"trial_id": t, "factor": f, "setting": s} for t, f, s in zip(rows["trial_id"], rows["factor"], rows["setting"])]


# ------------------------------------------------------------------------------------------ print

def fidelity_text(fidelity: Fidelity, configurations: int, seeds: int, epochs: int) -> str:
    """A search's halving in words for ``--dry-run``: rungs, trials, trial-epochs against full length."""
    sizes = rung_sizes(configurations, epochs, fidelity.min_epochs, fidelity.reduction_factor)
    spent = planned_epochs(configurations, seeds, epochs, fidelity.min_epochs, fidelity.reduction_factor)
    full = full_length_epochs(configurations, seeds, epochs)
    return (f"fidelity ({fidelity.method} successive halving, R={fidelity.reduction_factor}): rungs at "
            f"{', '.join(str(r) for r, _ in sizes)} of {epochs} epochs with {', '.join(str(n) for _, n in sizes)} "
            f"configurations, {seeds * sum(n for _, n in sizes)} trials, {spent} of {full} trial-epochs "
            f"({spent / full:.0%}) per search")


def planned_trial_count(study: Study) -> int:
    """How many trials the whole study runs: every step, TPE searches included (a progress bar's total).
    Replicates are counted before the nuisance picks exist: one per setting, loss and study seed."""
    bases = {loss: {"values": {}} for loss in study.losses}
    n = 0
    for step in (Step.TUNE_BASE, Step.STUDY):
        n += plan(study, step, {Decision.BASES: bases}).trial_count
    return n + _replicate_count(study)


def _replicate_count(study: Study) -> int:
    designs = nuisance_designs(study)
    return sum(len(study.seeds) for factor in study.nuisance for values, _ in _factor_settings(study, factor)
               for loss in study.losses if not _skips(study, loss, values) and (factor, loss) in designs)


def print_protocol(study: Study, out) -> int:
    """Print every step, its budgets and trial counts (``--dry-run``); return the number of planned trials."""
    total = 0
    tb = study.tune_base
    if tb is None:
        print("step 1: none (no tune_base block): each loss starts from the study file's base", file=out)
    else:
        budget = step1_budget(study)
        first = plan(study, Step.TUNE_BASE, {})
        n = first.trial_count if tb.fidelity is not None else sum(budget.values()) * len(tb.seeds)
        total += n
        print(f"step 1 (tune_base): sampler={tb.sampler} (seed {tb.seed}), select={tb.select} (mean over selection "
              f"seeds {tb.seeds}), space: {', '.join(tb.space)}", file=out)
        for loss in study.losses:
            note = step1_design(study, loss).note if tb.sampler != "tpe" else "adaptive"
            h = first.halved.get(step1_search(loss))
            if h is not None:
                print(f"  {display(loss):7} {budget[loss]} configurations x {len(tb.seeds)} seed(s), "
                      + fidelity_text(h.fidelity, len(h.configs), len(h.seeds), h.epochs)
                      + (f" ({note})" if note else ""), file=out)
                continue
            print(f"  {display(loss):7} {budget[loss]} configurations x {len(tb.seeds)} seed(s) = {budget[loss] * len(tb.seeds)}"
                  f" trials{' (' + note + ')' if note else ''}", file=out)
        print(f"  step 1 total: {n} trials; each loss's best configuration becomes its base", file=out)
    p = plan(study, Step.STUDY, {Decision.BASES: {loss: {"values": {}} for loss in study.losses}})
    total += p.trial_count - sum(a.budget * len(a.seeds) for a in p.adaptive)
    nuisance = [s for s in p.specs if s.phase == Phase.NUISANCE]
    shared = len(p.analysed) - (len(p.specs) - len(nuisance))
    later = p.trial_count - len(p.specs) - sum(a.budget * len(a.seeds) for a in p.adaptive)
    print(f"step 2: {len(p.specs) + later} planned trials ({len(p.specs) - len(nuisance)} ordinary, {len(nuisance) + later} in "
          f"nuisance searches)" + (", from each loss's tuned base (tuned keys shown at the file's values)" if tb else "")
          + (f"; {shared} analysed entries reuse a trial of another factor (the base runs once)" if shared else ""),
          file=out)
    for (factor, loss), design in nuisance_designs(study).items():
        nz = study.nuisance[factor]
        print(f"  nuisance {factor}/{loss}: {', '.join(design.configs[0])} re-tuned per setting: "
              f"{len(design.configs)} configurations x selection seeds {nz.seeds} ({nz.sampler}, seed {nz.seed}); "
              f"the best by {nz.select} mean is then run on the study seeds"
              f"{' (' + design.note + ')' if design.note else ''}", file=out)
        halved = [h for h in p.halved.values() if h.name.startswith(f"nuisance/{factor}/") and h.name.endswith(f"/{loss}")]
        if halved:
            h = halved[0]
            print(f"    {fidelity_text(h.fidelity, len(h.configs), len(h.seeds), h.epochs)}; the table lists the "
                  "first rung's runs", file=out)
    width = max([7, *(len(display(loss)) for loss in study.losses)])
    print(f"  {'loss':{width}} {'phase':9} {'factor':14} {'setting':40} {'seed':>4}  epochs", file=out)
    for s in p.specs:
        setting = s.setting + (f" [{format_label(s.nuisance)}]" if s.nuisance else "")
        print(f"  {display(s.loss):{width}} {s.phase:9} {s.factor:14} {setting[:40]:40} {s.seed:>4}  {s.train['epochs']}",
              file=out)
    replicates = _replicate_count(study)
    if replicates:
        total += replicates
        print(f"step 3 (replicates): {replicates} trials, each nuisance pick on the study seeds {study.seeds}", file=out)
    if study.search is not None and study.search.sampler == "tpe":
        n = (study.search.num_samples or 0) * len(study.seeds) * len(study.losses)
        total += n
        print(f"  plus adaptive TPE: {study.search.num_samples} configurations x {len(study.seeds)} seeds per loss "
              f"= {n} trials (sampler seed {study.search.seed})", file=out)
    print(f"total: {total} trials", file=out)
    return total
