"""Every number of the stability report (the ``--json`` contract of ``python -m supcon_ray.report``).

Reads ``trials/`` and ``epochs/`` (Parquet) of one or more study folders and writes ``report.html``
(plotly.js embedded, works offline). Several folders give the paper's Fig. 4a view: every factor
side by side, in one multiple-comparison family. This module only formats: every number comes from
:mod:`supcon_ray.stats`.

Two questions per factor and pooled: the top-level keys of a factor answer "beyond these settings"
(settings as a sample; :mod:`supcon_ray.stats.paired`), ``these_settings`` answers "for these
settings" (the settings tried; :mod:`supcon_ray.stats.these_settings`). In ``these_settings`` an
open lower end is ``0``, an unbounded upper end is ``null``, and ``ratio`` is ``null`` when both
spreads are 0 (claim ``no_difference``) or only SupCon's is (then ``ci95`` says how large).

``--json FILE`` writes the numbers (NaN and infinity as null)::

    {"metric": str, "studies": [str],
     "factors": [{"study", "factor", "n_settings", "paired_settings", "unpaired_settings": [str],
                  "losses": {loss: {"completed", "diverged", "failed", "divergence_rate", "mean", "seed_std",
                                    "setting_std", "setting_std_ci95": [lo, hi],
                                    "settings": {setting: {"mean", "n", "ci95", "drop_from_best"}}}},
                  "ratio", "ci95": [lo, hi], "p_value", "p_adjusted", "min_p", "claim", "sentence",
                  "divergence_fisher_p", "question", "logit": {...}, "conservative": {...},
                  "these_settings": {"ratio", "ci95": [lo, hi], "p_value", "p_adjusted", "claim", "sentence",
                                     "n_settings", "losses": {loss: {"spread", "spread_ci95": [lo, hi]}},
                                     "agreement"?: {...}},
                  "baseline": "ce" | null, "method": loss, "uneven_noise"?: [setting],
                  "drop": {"measure", "ratio", "ci95", "difference": {"estimate", "ci95"} | null, "p_value",
                           "p_adjusted", "claim", "sentence", "n_settings", "reason"?,
                           "losses": {loss: {"drop", "ci95", "p_value", "base_setting", "worst", "worst_setting",
                                             "width_decades"}}, "agreement"?: {...}},
                  "primary": "spread" | "drop", "primary_agreement"?: {"outcome", "paper", "ci90", "margin",
                                                                        "tost_p", "tost_p_adjusted", "measure"}}],
     "overall": {"factors", "n_settings", "ratio", "ci95", "p_value", "p_adjusted", "claim", "sentence",
                 "question", "logit": {...}, "conservative": {...}, "these_settings": {...}, "drop": {...},
                 "primary"?, "primary_agreement"?},
     "analysis": {study: {"primary", "equivalence_ratio", "declared"}},
     "divergence": {"per_loss": {loss: {completed, diverged, failed, divergence_rate}}, "fisher_p", "odds_ratio"},
     "expected_max": {"metric", "available", "reason"?, "n_configs", "curves": {loss: {k, mean, low, high}}},
     "importance": {loss: {hyperparameter: {mean, sd, noise_mean, noise_sd, above_noise}}},
     "bases": {study: {loss: {..., "margin": {"best", "runner_up", "best_mean", "runner_up_mean", "margin",
                                              "se", "se_basis", "validation_images", "within_noise"}}}},
     "nuisance"?: {study: [{"loss", "factor", "setting", "pick": {key: value}, "mean", "configurations", "select",
                            "margin": {...} | null}]},
     "notes": [str]}

Each setting's ``ci95`` is a t-interval over that setting's own seeds (null with one run). ``nuisance``
(studies with re-tuned nuisance hyperparameters) gives each setting's pick with its lead over the
runner-up of its search, as ``bases`` does for step 1.

Two-method entries compare ``method`` with ``baseline`` (ratio = baseline / method). A factor run by one
loss (``baseline`` null, ``method`` that loss) has no ratio: its ``these_settings`` and ``drop`` test "no
effect beyond seed noise" (claims ``moves`` / ``no_detectable_effect``) and keep the estimates under
``losses``. ``drop`` is the drop from the base (:mod:`supcon_ray.stats.drop_answer`), ``agreement`` the
outcome against the paper's direction (:mod:`supcon_ray.stats.agreement`), computed for each measure
and, as ``primary_agreement`` at the entry's top level, for its study's primary measure (``analysis``: as recorded in the
manifest on the first run; ``declared`` false for folders from before). ``uneven_noise`` names the
settings whose seed noise made the "beyond" swap test inapplicable (claim ``insufficient``).

Exit status 2 when nothing can be reported (no trials, a missing folder, an unknown metric).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from pydantic import ValidationError

from supcon_ray import stats
from supcon_ray.designs import is_adaptive
from supcon_ray.results.folders import stats_rows
from supcon_ray.results.storage import HYPERPARAMETER_FIELDS
from supcon_ray.stats.agreement import DEFAULT_EQUIVALENCE_RATIO
from supcon_ray.stats.base_margin import base_margins
from supcon_ray.stats.importance import importance, sampled


def clean_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return clean_json(obj.item())
    return obj


def _runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Each run once (a base trial analysed in several factors appears once per factor in ``trials``)."""
    return trials.drop_duplicates("trial_id") if "trial_id" in trials else trials


def analysis_of(metas: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each study's primary measure and equivalence margin: as recorded in its manifest on the first run
    (``declared``), else the defaults (a folder started before they were recorded: the spread is its
    primary and the drop was added afterwards); with any later edit of the study file named."""
    from supcon_ray.results.manifest import Manifest, analysis_edits

    out = {}
    for study, meta in metas.items():
        recorded = meta.get("analysis")
        settings = {"primary": "spread", "equivalence_ratio": DEFAULT_EQUIVALENCE_RATIO, **(recorded or {})}
        # the baseline as recorded on the first run; the study file's only for folders from before records
        compare = settings.pop("compare", None) or ({} if recorded is not None else meta.get("compare")) or {}
        if isinstance(compare, dict) and compare.get("baseline"):
            settings["baseline"] = compare["baseline"]
        edits = analysis_edits(Manifest(study, {}, analysis=recorded), meta) if recorded else []
        out[study] = {**settings, "declared": recorded is not None, "edits": edits}
    return out


def base_settings_of(metas: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, str | None]]:
    """Each (study, factor)'s base setting per loss, from the folder's study file and its recorded bases
    (:func:`supcon_ray.study.definition.base_settings`); a folder without a readable study file has none."""
    from supcon_ray.study.definition import Study, base_settings

    out = {}
    for study, meta in metas.items():
        data = {k: v for k, v in meta.items() if k in Study.model_fields and k != "folder"}
        try:
            parsed = Study.model_validate(data, context={"recorded": True})  # plugin names as recorded
        except ValidationError:  # no study file, or one from another version: fall back to the x1 rule
            continue
        tuned = {loss: rec.get("values") or {} for loss, rec in (meta.get("bases") or {}).items()}
        for factor, per_loss in base_settings(parsed, tuned).items():
            out[(study, factor)] = per_loss
    return out


def compute(trials: pd.DataFrame, metric: str, with_importance: bool = True,
            metas: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every number of the report (the ``--json`` contract), from the trials of one or more studies
    (``metas``: each study's file, recorded bases and analysis, as :func:`load` reads them)."""
    notes = []
    metas = metas or {}
    analysis = analysis_of(metas)
    bases = base_settings_of(metas)
    margins = {a["equivalence_ratio"] for a in analysis.values()}
    margin = margins.pop() if len(margins) == 1 else DEFAULT_EQUIVALENCE_RATIO
    if len(margins) > 0:
        notes.append(f"The studies declare different equivalence ratios; agreement uses {margin}.")
    primary = {s: a["primary"] for s, a in analysis.items()}
    for s, a in analysis.items():
        notes += [f"{s}: {line}" for line in a["edits"]]
        if not a["declared"]:
            notes.append(f"{s}: this folder's primary measure is the spread (the only one when it ran); the drop from "
                         "the base is a secondary answer added afterwards.")
    baselines = {s: a["baseline"] for s, a in analysis.items() if a.get("baseline")}
    kwargs = {"bases": bases, "equivalence_ratio": margin, "primary": primary, "baselines": baselines}
    rows = stats_rows(trials)
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
    factors, overall = stats.analyze_factors(rows, metric, **kwargs)
    for f in factors:
        if f["unpaired_settings"]:
            notes.append(f"{f['study']} / {f['factor']}: {len(f['unpaired_settings'])} setting(s) completed for one loss "
                         f"only ({', '.join(f['unpaired_settings'])}); shown, never compared.")
    hyper = [f.name for f in HYPERPARAMETER_FIELDS if f.name not in ("loss", "seed")]
    studies = sorted(rows["study"].unique().tolist())
    # each study's own pooled answer (its own Holm families), as its single-study report gives it
    per_study = {s: stats.analyze_factors(rows[rows["study"] == s], metric, sensitivity=False, **kwargs)[1]
                 for s in studies} if len(studies) > 1 else {}
    if len(set(primary.get(s, "spread") for s in studies)) > 1:
        notes.append("These folders declare different primary measures, so no pooled headline is given: each "
                     "folder's own pooled answer under its primary is shown.")
    return {
        "overall_per_study": {s: {k: v for k, v in o.items() if k not in ("by_factor", "by_method")}
                              for s, o in per_study.items()},
        "metric": metric,
        "studies": studies,
        "factors": factors,
        "overall": overall,
        # every compared method's pooled answer (one entry for a study of two methods: the same as overall)
        "overall_by_method": overall.pop("by_method", None) or (
            {overall["method"]: {k: v for k, v in overall.items() if k not in ("by_factor", "factors")}}
            if overall.get("method") else {}),
        # every distinct run once: a base trial analysed in two factors is one run
        "divergence": stats.divergence_summary(_runs(rows)),
        "divergence_all_trials": stats.divergence_summary(_runs(trials)),
        "chance": float(trials["chance_top1"].dropna().iloc[0]) if trials.get("chance_top1", pd.Series()).notna().any() else None,
        "expected_max": stats.expected_max_section(rows, "val_top1"),
        "importance": importance(sampled(stats.completed(rows, metric)), metric, hyper) if with_importance else {},
        "notes": notes,
        "analysis": {s: {k: v for k, v in a.items() if k != "edits"} for s, a in analysis.items() if s in studies},
    }


def with_margins(bases: dict[str, dict[str, Any]], trials: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each step-1 base with its pick's ``margin`` (:func:`supcon_ray.stats.base_margins`), computed
    from the step-1 rows: a folder whose manifest predates the margin gets it too."""
    out: dict[str, dict[str, Any]] = {}
    for study, per_loss in bases.items():
        rows = trials[trials["study"] == study]
        by_select = {select: base_margins(rows, select).get(study, {})
                     for select in {rec.get("select", "val_top1") for rec in per_loss.values()}}
        out[study] = {}
        for loss, rec in per_loss.items():
            margin = by_select[rec.get("select", "val_top1")].get(loss)
            out[study][loss] = {**rec, "margin": margin} if margin and rec.get("trial_ids") else rec
    return out


def primary_first(entry: dict[str, Any], primary: str) -> list[str]:
    """An entry's "for these settings" sentences, the primary measure's first, the other labelled secondary."""
    spread, drop = entry["these_settings"]["sentence"], (entry.get("drop") or {}).get("sentence")
    if drop is None:
        return [spread]
    return [drop, f"(secondary) {spread}"] if primary == "drop" else [spread, f"(secondary) {drop}"]


def headline(numbers: dict[str, Any]) -> list[str]:
    """The report's conclusions as plain lines: the pooled verdicts (the primary measure's first, then the
    secondary measure's, then "beyond these settings"), then the same per factor. Folders with different
    primaries get each folder's own pooled answer instead of one pooled verdict."""
    o = numbers["overall"]
    primary = {s: a["primary"] for s, a in (numbers.get("analysis") or {}).items()}
    kinds = set(primary.values()) or {"spread"}
    lines: list[str] = []
    by_method = numbers.get("overall_by_method") or {}
    if len(kinds) == 1:
        kind = kinds.pop()
        for pooled in (by_method.values() if len(by_method) > 1 else [o]):  # every compared method's pooled answer
            lines += [*primary_first(pooled, kind), pooled["sentence"]]
    else:
        for study, own in (numbers.get("overall_per_study") or {}).items():
            lines += [f"{study} (primary: {primary.get(study, 'spread')}): {line}"
                      for line in primary_first(own, primary.get(study, "spread"))]
    for f in numbers["factors"]:
        lines += [*primary_first(f, primary.get(f["study"], "spread")), f["sentence"]]
    return lines
