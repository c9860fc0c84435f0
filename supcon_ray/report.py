"""``python -m supcon_ray.report DIR [DIR ...]``: the stability report as one self-contained HTML page.

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
     "notes": [str]}

Each setting's ``ci95`` is a t-interval over that setting's own seeds (null with one run).

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

import argparse
import html
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from . import plots, stats
from .config import EXIT_USAGE, ConfigError
from .manifest import MANIFEST_FILE, analysed_rows, read_manifest
from .stats import divergence as div
from .stats.agreement import DEFAULT_EQUIVALENCE_RATIO
from .stats.base_margin import base_margins, margin_sentence
from .stats.importance import importance, sampled
from .stats.settings import ALPHA, MIN_SETTINGS_BEYOND
from .markdown import INTERVAL_NOTE, claim_words, columns, results_markdown, slots
from .stats.claims import display
from .storage import HYPERPARAMETER_FIELDS, read_results, read_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .verdict{font-size:1.05em;background:#f7f9fc;border-left:4px solid #1f77b4;padding:.5em 1em}
.overall{font-size:1.15em;background:#eef6ee;border-left:5px solid #2a8a2a;padding:.6em 1em}
.note{color:#8a5a00;background:#fff8e6;border-left:4px solid #e0a800;padding:.4em 1em}
"""
class _ClaimText(dict):
    """A claim in words, for any ``<loss>_less_sensitive`` too."""

    def __missing__(self, claim: str) -> str:
        return claim_words(claim)


CLAIM_TEXT = _ClaimText()


def _num(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(ci: list[float | None], digits: int = 3) -> str:
    """``[low, high]``; a ``None`` upper end (the JSON form of an unbounded one) prints as ∞."""
    high = "∞" if ci[1] is None and ci[0] is not None else _num(ci[1], digits)
    return f"[{_num(ci[0], digits)}, {high}]"


def _p(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _clean_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_json(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _clean_json(obj.item())
    return obj


def _table(headers: list[str], rows: list[list[Any]], left: int = 1) -> str:
    def cell(tag: str, i: int, c: Any) -> str:
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{html.escape(str(c))}</{tag}>"
    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Page:
    """Collects sections; embeds plotly.js once, with the first figure."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.js_included = False
        self.figure_ids: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def figure(self, fig, div_id: str) -> None:
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=not self.js_included, div_id=div_id,
                                      config={"displaylogo": False}))
        self.js_included = True
        self.figure_ids.append(div_id)


def _study_meta(results_dir: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(read_text(results_dir, "study.yaml") or "") or {}


def export(results_dir: str, output: str) -> list[Path]:
    """Write what publishing a study needs, exactly what ``docs/results/<study>/`` holds: the trials and
    epochs compacted into one Parquet file each, the manifest and the study file. Trial rows hold the
    dataset as written in the study file, so nothing names the machine that ran it."""
    import pyarrow.parquet as pq

    trials, epochs = read_results(results_dir)
    if trials.num_rows == 0:
        raise ConfigError(f"{results_dir}: no trials found in {results_dir}/trials (run a study first)")
    out = Path(output)
    written = []
    for folder, table in (("trials", trials), ("epochs", epochs)):
        (out / folder).mkdir(parents=True, exist_ok=True)
        table = table.sort_by([("trial_id", "ascending")] + ([("epoch", "ascending")] if "epoch" in table.column_names else []))
        pq.write_table(table, out / folder / f"{folder}.parquet")
        written.append(out / folder / f"{folder}.parquet")
    manifest = read_manifest(results_dir)
    if manifest is not None and manifest.analysed is not None:  # folders from before manifests have none
        (out / MANIFEST_FILE).write_text(manifest.to_json())
        written.append(out / MANIFEST_FILE)
    for name in ("study.yaml", "selection.json"):
        text = read_text(results_dir, name)
        if text is not None:
            (out / name).write_text(text)
            written.append(out / name)
    return written


def stats_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that enter the statistics (column ``analysed``, set by :func:`load` from the manifest,
    :func:`supcon_ray.manifest.analysed_rows`): selection runs are shown, not analysed."""
    return trials[trials["analysed"]] if "analysed" in trials else trials


def _runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Each run once (a base trial analysed in several factors appears once per factor in ``trials``)."""
    return trials.drop_duplicates("trial_id") if "trial_id" in trials else trials


def analysis_of(metas: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each study's primary measure and equivalence margin: as recorded in its manifest on the first run
    (``declared``), else the defaults (a folder started before they were recorded: the spread is its
    primary and the drop was added afterwards); with any later edit of the study file named."""
    from .manifest import Manifest, analysis_edits

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
    (:func:`supcon_ray.study.base_settings`); a folder without a readable study file has none."""
    from .study import Study, base_settings

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
    if rows["design"].fillna("").str.contains("tpe").any():
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


def _bases_html(bases: dict[str, Any]) -> str:
    rows = []
    for study, per_loss in bases.items():
        for loss, b in per_loss.items():
            values = ", ".join(f"{k}={_num(v, 4) if isinstance(v, float) else v}" for k, v in (b.get("values") or {}).items())
            source = b.get("source", "")
            if "mean" in b:
                source += (f": best of {b.get('configurations', '?')} configurations by mean {b.get('select', 'val_top1')} "
                           f"{_num(b['mean'], 4)} over seeds {b.get('seeds')}")
            lead = margin_sentence(b["margin"]) if b.get("margin") else ""
            rows.append([study, loss, values or "(as in the study file)", source, lead])
    return ("<p>Each loss's base setting, from which every factor is changed one at a time, and how clearly "
            "stage 1 picked it (a lead under one standard error is a pick within noise):</p>"
            + _table(["study", "loss", "tuned base", "where it came from", "lead over the runner-up"], rows, left=5))


def _widths(per_loss: dict[str, Any]) -> str:
    """Each loss's width (decades) of the numeric settings within 1 and 5 accuracy points of its best."""
    parts = []
    for loss, v in per_loss.items():
        w = v.get("width_decades")
        if w:
            parts.append(f"{loss} {_num(w['within_1_points'], 2)} / {_num(w['within_5_points'], 2)}")
    return "; ".join(parts) or "–"


def render(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, numbers: dict[str, Any],
           metas: dict[str, dict[str, Any]]) -> tuple[str, list[str]]:
    """The HTML page and its figure ids."""
    rows = stats_rows(trials)
    studies = numbers["studies"]
    title = ", ".join(studies)
    (base_loss, method_loss), several_pairs = columns(numbers)
    B, M = ("each baseline", "each method") if several_pairs else (display(base_loss), display(method_loss))
    page = _Page()
    page.add(f"<h1>Stability report: {html.escape(title)}</h1>")
    for study in studies:
        if metas.get(study, {}).get("description"):
            page.add(f"<p><b>{html.escape(study)}</b>: {html.escape(str(metas[study]['description']))}</p>")
    chance = trials["chance_top1"].dropna() if "chance_top1" in trials else pd.Series(dtype=float)
    page.add(f"<p>Dataset <b>{html.escape(', '.join(map(str, trials['dataset'].dropna().unique())))}</b>, model "
             f"<b>{html.escape(', '.join(map(str, trials['model'].dropna().unique())))}</b>, metric <b>{html.escape(metric)}</b>, "
             f"{len(trials)} trials ({len(rows)} in the statistics). The unit of every interval and test is the "
             f"<i>setting</i>: seeds are nested in settings, and {B} and {M} are compared only over settings both ran, "
             "paired by setting. Spreads use completed runs; divergence is its own result (section 3), and a conservative "
             f"view scores diverged runs at chance ({_num(float(chance.iloc[0]), 3) if len(chance) else '1/classes'}). "
             "Test accuracy is measured once per trial, on its final model; nothing selects on it.</p>")
    if numbers.get("bases"):
        page.add(_bases_html(numbers["bases"]))
    for note in numbers["notes"]:
        page.note(note)

    o = numbers["overall"]
    page.add(f"<h2>1. Is {M} less sensitive to its hyperparameters than {B}? Two questions</h2>")
    primaries = {a["primary"] for a in (numbers.get("analysis") or {}).values()} or {"spread"}
    by_method = numbers.get("overall_by_method") or {}
    for pooled in (by_method.values() if len(by_method) > 1 else [o]):  # every compared method's pooled answer
        lines = _primary_first(pooled, next(iter(primaries))) if len(primaries) == 1 else [pooled["these_settings"]["sentence"]]
        for line in [*lines, pooled["sentence"]]:
            page.add(f'<p class="overall">{html.escape(line)}</p>')
    page.add(f"<p><b>For these settings</b> (what the paper's Fig. 4a shows): across the settings tried, does {B}'s mean "
             f"accuracy move more than {M}'s? The spread is the std of each loss's true setting means over exactly these "
             "settings (seed noise removed); the only noise is seed noise, each loss's own. Test and interval: a "
             "studentised parametric bootstrap, inverted. It says nothing about settings that were not tried.</p>"
             f"<p><b>Beyond these settings</b>: would {M} vary less across <i>other</i> settings like these? The settings "
             "are treated as a sample: σ<sub>a</sub> is the between-setting std of the population of settings (method of "
             "moments), p-values come from a paired permutation test that swaps the two losses' runs of whole settings, and "
             f"intervals invert that test. With fewer than {MIN_SETTINGS_BEYOND} settings it cannot reach α = {ALPHA} whatever the data "
             "('cannot tell'); <code>python -m supcon_ray.power STUDY_DIR</code> computes the design that would decide it.</p>"
             "<p>Each question is its own Holm family over every factor and the pooled test of this report. Ratios are "
             f"{B} / {M}: above 1, {M} varies less. {INTERVAL_NOTE}</p>")
    pooled_rows = [dict(po, study="all factors", factor="pooled" + (f" ({k})" if several_pairs else ""),
                        paired_settings=po["n_settings"], losses={})
                   for k, po in ((numbers.get("overall_by_method") or {"": o}) if several_pairs else {"": o}).items()]
    table = []
    for f in numbers["factors"] + pooled_rows:
        t = f["these_settings"]
        mm, bb = slots(f, (base_loss, method_loss))
        spread = {loss: t["losses"].get(loss) for loss in (bb, mm)}
        sig = {loss: f["losses"].get(loss, {}) for loss in (bb, mm)}
        table.append([f"{f['study']} / {f['factor']}" + (f" ({f['method']} vs {f['baseline']})"
                                                         if several_pairs and f.get("baseline") else ""),
                      f["paired_settings"],
                      *(f"{_num(v['spread'], 3)} {_ci(v['spread_ci95'])}" if v else "" for v in spread.values()),
                      f"{_num(t['ratio'], 2)} {_ci(t['ci95'], 2)}", _p(t["p_adjusted"]), CLAIM_TEXT[t["claim"]],
                      *(f"{_num(v.get('setting_std'), 3)} {_ci(v.get('setting_std_ci95', [math.nan] * 2))}" if v else ""
                        for v in sig.values()),
                      f"{_num(f['ratio'], 2)} {_ci(f['ci95'], 2)}", _p(f["p_adjusted"]), CLAIM_TEXT[f["claim"]]])
    page.add(_table(["study / factor", "paired settings", f"these: spread {B} [95% CI]", f"these: spread {M} [95% CI]",
                     "these: ratio [95% CI]", "these: p (Holm)", "for these settings", f"beyond: σa {B} [95% CI]",
                     f"beyond: σa {M} [95% CI]", "beyond: ratio [95% CI]", "beyond: p (Holm)", "beyond these settings"],
                    table))
    for f in numbers["factors"]:
        page.add(f'<p class="verdict">{html.escape(f["these_settings"]["sentence"])}<br>{html.escape(f["sentence"])}</p>')
    page.add("<h3>Drop from the base</h3><p>How much accuracy each loss loses, on average, away from the setting it "
             "was tuned at (the base setting's mean minus the mean of the other settings' means; each setting's own seed "
             f"noise; Welch-Satterthwaite t-intervals). The difference {B} − {M} is its own Holm family; the ratio "
             "(Fieller interval) only where both drops are positive. Agreement with the paper: significant in its direction "
             "(agree), against it (disagree: opposite), a ratio shown inside [1/m, m] by two one-sided tests (disagree: no "
             "meaningful difference), else inconclusive.</p>")
    drops = []
    for f in numbers["factors"] + pooled_rows:
        d = f.get("drop") or {}
        if not d:
            continue
        per = d.get("losses", {})
        diff = d.get("difference") or {}
        mm, bb = slots(f, (base_loss, method_loss))
        drops.append([f"{f['study']} / {f['factor']}" + (f" ({f['method']} vs {f['baseline']})"
                                                         if several_pairs and f.get("baseline") else ""),
                      *(f"{_num(per[x]['drop'], 3)} {_ci(per[x]['ci95'])}" if x in per else "" for x in (bb, mm)),
                      f"{_num(diff.get('estimate'), 3)} {_ci(diff.get('ci95', [None, None]))}" if diff else "",
                      _p(d.get("p_adjusted")), CLAIM_TEXT[d["claim"]],
                      f"{_num(d['ratio'], 2)} {_ci(d['ci95'], 2)}" if d.get("ratio") is not None else "–",
                      (d.get("agreement") or {}).get("outcome") or "–", _widths(per)])
    page.add(_table(["study / factor", f"drop {B} [95% CI]", f"drop {M} [95% CI]", f"difference {B} − {M} [95% CI]",
                     "p (Holm)", "claim", "ratio [95% CI]", "agreement",
                     "decades within 1 / 5 points of the best"], drops))
    across = o.get("by_factor") or []
    if across:
        page.add("<h3>Each factor pooled over the studies that ran it</h3><p>Each study (dataset) is a block; for these "
                 "settings every study's settings stay fixed and each loss's spread is the root mean square over studies. "
                 f"Each question is its own Holm family over these pooled factors. {INTERVAL_NOTE}</p>")
        page.add(_table(["factor", "studies", "paired settings", "these: ratio [95% CI]", "these: p (Holm)",
                         "for these settings", "beyond: ratio [95% CI]", "beyond: p (Holm)", "beyond these settings"],
                        [[a["factor"], ", ".join(a["studies"]), a["n_settings"],
                          f"{_num(a['these_settings']['ratio'], 2)} {_ci(a['these_settings']['ci95'], 2)}",
                          _p(a["these_settings"]["p_adjusted"]), CLAIM_TEXT[a["these_settings"]["claim"]],
                          f"{_num(a['ratio'], 2)} {_ci(a['ci95'], 2)}", _p(a["p_adjusted"]), CLAIM_TEXT[a["claim"]]]
                         for a in across], left=2))
        for a in across:
            page.add(f'<p class="verdict">{html.escape(a["these_settings"]["sentence"])}<br>{html.escape(a["sentence"])}</p>')
    if numbers["factors"]:
        page.figure(plots.sensitivity_intervals(numbers["factors"]), "fig-sensitivity")

    page.add("<h2>2. Accuracy per setting (the paper's Fig. 4a view)</h2>")
    page.add("<p>Each loss's mean per setting with a 95% t-interval over that setting's own seeds; completed runs as "
             "circles, diverged runs as crosses at chance, failed runs as triangles at the bottom. Numeric factors sit "
             "on a numeric axis. The table gives each setting's drop from that loss's best setting.</p>")
    if numbers["factors"]:
        page.figure(plots.fig4a(trials[trials.index.isin(rows.index)], numbers["factors"], metric), "fig-settings")
        drops = [[f"{f['study']} / {f['factor']}", loss, s, v["n"], _num(v["mean"]), _num(v["drop_from_best"])]
                 for f in numbers["factors"] for loss, le in f["losses"].items() for s, v in le["settings"].items()]
        page.add(_table(["study / factor", "loss", "setting", "runs", "mean", "drop from best"], drops, left=3))

    page.add("<h2>3. Divergence</h2>")
    d = numbers["divergence"]
    page.add(_table(["loss", "completed", "diverged", "failed", "divergence rate"],
                    [[loss, c["completed"], c["diverged"], c["failed"], _num(c["divergence_rate"], 3)] for loss, c in d["per_loss"].items()]))
    page.add(f'<p class="verdict">{html.escape(div.sentence(d, "All studies"))}</p>')
    page.add(_table(["study / factor", "diverged per loss", "Fisher p"],
                    [[f"{f['study']} / {f['factor']}", ", ".join(f"{display(loss)} {le.get('diverged', '–')}"
                                                                 for loss, le in f["losses"].items()),
                      _p(f["divergence_fisher_p"])] for f in numbers["factors"]]))

    page.add("<h2>4. Seed noise next to the effect of settings</h2>")
    page.add("<p>Both on the scale of one run: the seed std (pooled within settings) and the between-setting std with "
             "seed noise removed. Where the second is not clearly larger, the factor matters no more than luck.</p>")
    page.add(_table(["study / factor", "loss", "settings", "runs", "seed std", "between-setting std"],
                    [[f"{f['study']} / {f['factor']}", loss, len(le["settings"]), le["completed"], _num(le["seed_std"]),
                      _num(le["setting_std"])] for f in numbers["factors"] for loss, le in f["losses"].items()], left=2))

    page.add("<h2>5. Robustness of the conclusion</h2>")
    page.add("<p>Near 100% accuracy spreads shrink for reasons unrelated to stability, so the same analysis is repeated "
             "on the logit scale. The conservative view scores diverged runs at chance level and compares the spread of "
             "setting means without removing seed noise, so a setting where runs diverge counts as sensitive.</p>")
    robust = []
    for f in numbers["factors"] + [dict(o, study="all", factor="pooled")]:
        for view in ("logit", "conservative"):
            v = f.get(view)
            if v:
                robust.append([f"{f['study']} / {f['factor']}", view, f"{_num(v['ratio'], 2)} {_ci(v['ci95'], 2)}",
                               _p(v["p_adjusted"]), CLAIM_TEXT[v["claim"]], "yes" if v["changes_conclusion"] else "no"])
    page.add(_table(["study / factor", "view", "ratio [95% CI]", "p (Holm)", "claim", "changes the conclusion"], robust, left=2))

    page.add("<h2>6. Expected best validation accuracy versus number of configurations</h2>")
    em = numbers["expected_max"]
    if em["available"]:
        page.add(f"<p>From {em['n_configs']} randomly sampled configurations run for every loss (unbiased estimator of "
                 "Tang et al. 2020; 95% band resamples configurations, paired across losses).</p>")
        page.figure(plots.expected_max_band(em), "fig-expected-max")
    else:
        page.note(em["reason"])

    page.add("<h2>7. Hyperparameter importance</h2>")
    if numbers["importance"]:
        page.add("<p>fANOVA share of variance per hyperparameter, fitted to the sampled-search trials only: mean ± sd "
                 "over the evaluator seeds, next to the same evaluation on randomly permuted metrics (grey), with the "
                 "permutation p-value. Keys that one setting changes together share one effect.</p>")
        page.figure(plots.importance_bars(numbers["importance"]), "fig-importance")
        page.add(_table(["loss", "hyperparameter", "importance", "noise baseline", "permutation p", "above noise"],
                        [[loss, k, f"{_num(v['mean'], 3)} ± {_num(v['sd'], 3)}", f"{_num(v['noise_mean'], 3)} ± {_num(v['noise_sd'], 3)}",
                          _p(v["p_value"]), "yes" if v["above_noise"] else "no"] for loss, imp in numbers["importance"].items() for k, v in imp.items()], left=2))
    else:
        page.note("Importance is fitted only to sampled searches (random, QMC or grid) with a hyperparameter that varies "
                  "over 4 or more completed runs of a loss; this report has none. One-at-a-time settings change keys "
                  "together (a learning rate re-tuned per optimizer), so an importance fitted to them would mislead.")

    page.add("<h2>8. Learning curves</h2>")
    if len(epochs):
        page.figure(plots.learning_curves(epochs), "fig-learning-curves")
    else:
        page.note("No per-epoch rows in epochs/.")
    body = "\n".join(page.parts)
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>supcon-ray: {html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>{body}</body></html>")
    return doc, page.figure_ids


def load(results_dirs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]]]:
    """Trials, epochs and study metadata of every folder; ConfigError when a folder has no trials."""
    trials, epochs, metas = [], [], {}
    for d in results_dirs:
        if "://" not in d and not Path(d).is_dir():
            raise ConfigError(f"{d}: no such folder (give a study folder, <storage>/<study>)")
        t, e = read_results(d)
        t, e = t.to_pandas(), e.to_pandas()
        if t.empty:
            raise ConfigError(f"{d}: no trials found in {d}/trials (run a study first)")
        manifest = read_manifest(d)
        used = analysed_rows(t, d, manifest).assign(analysed=True)  # a trial shared by two factors: once under each
        t = pd.concat([used, t[~t["trial_id"].isin(used["trial_id"])].assign(analysed=False)], ignore_index=True)
        metas[str(t["study"].iloc[0])] = {**_study_meta(d), "bases": manifest.bases if manifest else {},
                                          "flags": manifest.flags if manifest else [],
                                          "analysis": manifest.analysis if manifest else None}
        trials.append(t)
        epochs.append(e)
    return pd.concat(trials, ignore_index=True), pd.concat(epochs, ignore_index=True), metas


def with_margins(bases: dict[str, dict[str, Any]], trials: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each stage-1 base with its pick's ``margin`` (:func:`supcon_ray.stats.base_margins`), computed
    from the stage-1 rows: a folder whose manifest predates the margin gets it too."""
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


def build_report(results_dirs: list[str] | str, output: str | None = None, json_path: str | None = None,
                 metric: str = "test_top1", figure: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Write the report for one or more study folders (and, with ``figure``, the Fig. 4a view as a
    static image); return the HTML path and its numbers."""
    dirs = [results_dirs] if isinstance(results_dirs, str) else list(results_dirs)
    trials, epochs, metas = load(dirs)
    numeric = [c for c in trials.columns if pd.api.types.is_float_dtype(trials[c])]
    if metric not in numeric:
        raise ConfigError(f"--metric: no numeric column {metric!r} in the trials; valid: {', '.join(numeric)}")
    numbers = compute(trials, metric, metas=metas)
    bases = {s: m["bases"] for s, m in metas.items() if m.get("bases")}
    if bases:
        numbers["bases"] = with_margins(bases, trials)
    flags = [f"{s}: {flag['text']}" for s, m in metas.items() for flag in m.get("flags") or []]
    if flags:
        numbers["flags"] = flags
        numbers["notes"] += [f"Edge of the search space: {f}" for f in flags]
    doc, _ = render(trials, epochs, metric, numbers, metas)
    if output:
        out = Path(output)
    elif len(dirs) == 1 and "://" not in dirs[0]:
        out = Path(dirs[0]) / "report.html"
    else:
        out = Path("report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, out)
    if json_path:
        Path(json_path).write_text(json.dumps(_clean_json(numbers), indent=2))
    if figure:
        write_figure(trials, numbers, figure)
    return out, numbers


FIGURE_FORMATS = (".svg", ".png")


def write_figure(trials: pd.DataFrame, numbers: dict[str, Any], output: str) -> Path:
    """Write the combined Fig. 4a view of ``numbers`` as a static image (plotly's kaleido export)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise ConfigError("--figure needs the kaleido package: pip install -e '.[figures]' "
                          "(and Chrome or Chromium, e.g. apt-get install chromium)") from None
    fig = plots.fig4a(stats_rows(trials), numbers["factors"], numbers["metric"])
    width = 420 * min(max(len(numbers["factors"]), 1), 3)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.write_image(str(out), width=width, height=fig.layout.height)
    except Exception as err:  # kaleido reports a missing browser in several ways
        raise ConfigError(f"--figure: could not export {out} ({type(err).__name__}: {err}); kaleido needs "
                          "Chrome or Chromium installed (apt-get install chromium)") from None
    return out


def _primary_first(entry: dict[str, Any], primary: str) -> list[str]:
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
            lines += [*_primary_first(pooled, kind), pooled["sentence"]]
    else:
        for study, own in (numbers.get("overall_per_study") or {}).items():
            lines += [f"{study} (primary: {primary.get(study, 'spread')}): {line}"
                      for line in _primary_first(own, primary.get(study, "spread"))]
    for f in numbers["factors"]:
        lines += [*_primary_first(f, primary.get(f["study"], "spread")), f["sentence"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supcon_ray.report", description=__doc__.split("\n\n")[0])
    p.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR", help="one or more study folders: <storage>/<study>")
    p.add_argument("-o", "--output", help="HTML file (default RESULTS_DIR/report.html for one folder, ./report.html for several)")
    p.add_argument("--json", help="also write every number to this JSON file")
    p.add_argument("--metric", default="test_top1", help="the trial column to compare (default test_top1)")
    p.add_argument("--markdown", metavar="FILE", help="also write the results tables as Markdown to FILE ('-': print them)")
    p.add_argument("--figure", metavar="FILE", help="also write the combined Fig. 4a view as a static .svg or .png "
                   "(needs pip install -e '.[figures]' and Chrome or Chromium)")
    p.add_argument("--export", metavar="OUT", help="write one study folder's trials, epochs, manifest and study file to "
                   "OUT for publishing (compacted Parquet, no machine paths), then exit")
    args = p.parse_args(argv)
    if args.export:
        if len(args.results_dirs) != 1:
            print("error: --export: give exactly one study folder", file=sys.stderr)
            return EXIT_USAGE
        try:
            written = export(args.results_dirs[0], args.export)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USAGE
        print("\n".join(f"wrote {p}" for p in written))
        return 0
    if args.figure and Path(args.figure).suffix.lower() not in FIGURE_FORMATS:
        print(f"error: --figure: {args.figure!r} must end in one of {', '.join(FIGURE_FORMATS)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        path, numbers = build_report(args.results_dirs, args.output, args.json, args.metric, args.figure)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.markdown:
        text = results_markdown(numbers)
        if args.markdown == "-":
            print(text)
        else:
            Path(args.markdown).write_text(text, encoding="utf-8")
    print("\n".join(headline(numbers)))
    print(f"report: {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
