"""The one builder of the report's numbers: :func:`build_numbers` turns trials and their study records into
a :class:`~.model.ReportNumbers`, from study folders (:func:`read_study_folders`) or from any table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from supcon_ray.designs import is_adaptive
from supcon_ray.results.cost import fidelity_savings, study_costs
from supcon_ray.display import record_display_names
from supcon_ray.results.folders import load_folders, stats_rows
from supcon_ray.results.storage import HYPERPARAMETER_FIELDS
from supcon_ray.stats import divergence as div
from supcon_ray.stats.agreement import DEFAULT_EQUIVALENCE_RATIO
from supcon_ray.stats.importance import importance, sampled
from supcon_ray.stats.scoring import completed
from supcon_ray.stats.tuning_curve import expected_max_section
from supcon_ray.study import base_margins, nuisance_margins

from .entries import analyze_entries
from .model import ReportNumbers, StudyAnalysis
from .records import StudyRecord, record_of

__all__ = ["build_numbers", "read_study_folders"]


def read_study_folders(dirs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, StudyRecord]]:
    """Trials (each marked ``analysed``), epochs and each study's record, from study folders."""
    trials, epochs, folders = load_folders(dirs)
    records = {f.study: record_of(f) for f in folders}
    for record in records.values():  # plugin losses named as their folders recorded them
        record_display_names(record.manifest.display_names if record.manifest else None)
    return trials, epochs, records


def _runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Each run once (a base trial analysed in several factors appears once per factor in ``trials``)."""
    return trials.drop_duplicates("trial_id") if "trial_id" in trials else trials


def _notes(trials: pd.DataFrame, rows: pd.DataFrame, metric: str, analysis: dict[str, StudyAnalysis],
           margin_note: str | None) -> list[str]:
    """What a reader must know before the numbers (the entries' notes follow)."""
    notes = [margin_note] if margin_note else []
    for s, a in analysis.items():
        notes += [f"{s}: {line}" for line in a.edits]
        if not a.declared:
            notes.append(f"{s}: this folder's primary measure is the spread (the only one when it ran); the drop from "
                         "the base is a secondary answer added afterwards.")
    unused = int((~trials["analysed"]).sum()) if "analysed" in trials else 0
    if unused:
        notes.append(f"{unused} trials of the tuning stage or of nuisance searches (selection runs) are recorded "
                     "but do not enter the statistics.")
    if rows[metric].isna().all():
        notes.append(f"No trial has a value of {metric!r}: only counts and learning curves can be shown.")
    losses = sorted(rows["loss"].unique())
    if len(losses) < 2:
        notes.append(f"Only {', '.join(losses)} here: a comparison of methods needs two; each factor gets that "
                     "method's own answers.")
    for (study, factor), g in rows.groupby(["study", "factor"]):
        if g["setting"].nunique() < 2:
            notes.append(f"{study} / {factor} has a single setting: there is no spread across settings.")
    if rows["design"].map(is_adaptive).any():
        notes.append("Some trials come from an adaptive TPE search: their settings concentrate where the sampler "
                     "expected good results, so their spread is not a sample of the space.")
    return notes


def _bases_with_margins(records: Mapping[str, StudyRecord], trials: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each step-1 base with its pick's ``margin`` (:func:`supcon_ray.study.base_margins`), computed from the
    step-1 rows: a folder whose manifest predates the margin gets it too."""
    out: dict[str, dict[str, Any]] = {}
    for study, record in records.items():
        if not record.bases:
            continue
        rows = trials[trials["study"] == study]
        per_loss = record.bases
        for loss, rec in per_loss.items():  # a base picked by successive halving: its lead at the rung it won
            won = (rec.get("fidelity") or {}).get("epochs")
            if won is not None and "epochs" in rows:
                other_rung = (rows["phase"] == "tune_base") & (rows["loss"] == loss) & (rows["epochs"] != won)
                rows = rows[~other_rung]
        by_select = {select: base_margins(rows, select).get(study, {})
                     for select in {rec.get("select", "val_top1") for rec in per_loss.values()}}
        out[study] = {}
        for loss, rec in per_loss.items():
            margin = by_select[rec.get("select", "val_top1")].get(loss)
            out[study][loss] = {**rec, "margin": margin} if margin and rec.get("trial_ids") else rec
    return out


def build_numbers(trials: pd.DataFrame, metric: str, records: Mapping[str, StudyRecord] | None = None,
                  with_importance: bool = True) -> ReportNumbers:
    """Every number of the report, from the trials of one or more studies and their records (``records``:
    study -> :class:`StudyRecord`; none for a bare table, which then gets the defaults)."""
    records = records or {}
    analysis = {s: r.analysis() for s, r in records.items()}
    bases = {(s, factor): per_loss for s, r in records.items() for factor, per_loss in r.base_settings().items()}
    margins = {a.equivalence_ratio for a in analysis.values()}
    margin = margins.pop() if len(margins) == 1 else DEFAULT_EQUIVALENCE_RATIO
    margin_note = f"The studies declare different equivalence ratios; agreement uses {margin}." if margins else None
    primary = {s: a.primary for s, a in analysis.items()}
    kwargs = {"bases": bases, "equivalence_ratio": margin, "primary": primary,
              "baselines": {s: a.baseline for s, a in analysis.items() if a.baseline}}
    rows = stats_rows(trials)
    notes = _notes(trials, rows, metric, analysis, margin_note)
    result = analyze_entries(rows, metric, **kwargs)
    for f in result.factors:
        if f.unpaired_settings:
            notes.append(f"{f.study} / {f.factor}: {len(f.unpaired_settings)} setting(s) completed for one loss "
                         f"only ({', '.join(f.unpaired_settings)}); shown, never compared.")
    studies = sorted(rows["study"].unique().tolist())
    # each study's own pooled answer (its own Holm families), as its single-study report gives it
    per_study = {s: analyze_entries(rows[rows["study"] == s], metric, sensitivity=False, **kwargs).overall
                 for s in studies} if len(studies) > 1 else {}
    if len(set(primary.get(s, "spread") for s in studies)) > 1:
        notes.append("These folders declare different primary measures, so no pooled headline is given: each "
                     "folder's own pooled answer under its primary is shown.")
    hyper = [f.name for f in HYPERPARAMETER_FIELDS if f.name not in ("loss", "seed")]
    chance = trials.get("chance_top1", pd.Series())
    flags = [f"{s}: {flag['text']}" for s, r in records.items() for flag in r.flags]
    notes += [f"Edge of the search space: {f}" for f in flags]
    picks = {s: r.nuisance_picks for s, r in records.items() if r.nuisance_picks}
    return ReportNumbers(
        metric=metric, studies=tuple(studies), factors=result.factors, overall=result.overall,
        overall_by_method=result.by_method, overall_per_study=per_study,
        divergence=div.divergence_summary(_runs(rows)),  # every distinct run once
        divergence_all_trials=div.divergence_summary(_runs(trials)),
        chance=float(chance.dropna().iloc[0]) if chance.notna().any() else None,
        expected_max=expected_max_section(rows, "val_top1"),
        importance=importance(sampled(completed(rows, metric)), metric, hyper) if with_importance else {},
        notes=tuple(notes), analysis={s: a for s, a in analysis.items() if s in studies},
        bases=_bases_with_margins(records, trials) or None,
        nuisance={s: nuisance_margins(trials[trials["study"] == s], p) for s, p in picks.items()} or None,
        flags=tuple(flags) or None,
        cost=study_costs(trials, {s: r.disk_bytes for s, r in records.items()},
                         {s: fidelity_savings(r.manifest.decisions) for s, r in records.items() if r.manifest})
        if any(r.manifest is not None for r in records.values()) else None,
        several_methods=len(result.by_method) > 1)
