"""``python -m supcon_ray.report RESULTS_DIR``: the stability report as one self-contained HTML page.

Reads ``trials/`` and ``epochs/`` (Parquet) of a study folder and writes ``report.html`` (plotly.js
embedded, works offline). Sections: 1 headline spreads, ratio and tests per factor; 2 every trial
per setting and loss (the paper's Fig. 4a view); 3 seed noise floor; 4 expected best validation
accuracy versus number of trials; 5 hyperparameter importance; 6 learning curves. Diverged and
failed trials are counted in every table.

``--json FILE`` writes the numbers of sections 1, 3 and 4::

    {"study": str, "metric": str, "scoring": str, "counts": {loss: {completed, diverged, failed}},
     "headline": [{"factor", "n_settings", "losses": {loss: {n, mean, std, range, iqr, completed,
                   diverged, failed, settings}}, "ratio_ce_over_supcon", "ratio_ci95": [low, high],
                   "brown_forsythe_stat", "brown_forsythe_p", "verdict"}],
     "noise_floor": [{"factor", "loss", "settings", "seeds_per_setting", "seed_std", "setting_std"}],
     "expected_max": {"metric": "val_top1", "curves": {loss: [E[max of k trials] for k = 1..N]}},
     "notes": [str]}

NaN is written as null. Exit status 2 only when nothing can be reported.
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

from . import plots, stats
from .config import EXIT_USAGE, ConfigError
from .storage import read_results

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .verdict{font-size:1.05em;background:#f7f9fc;border-left:4px solid #1f77b4;padding:.5em 1em}
.note{color:#8a5a00;background:#fff8e6;border-left:4px solid #e0a800;padding:.4em 1em}
"""


def _num(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _clean_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_json(v) for v in obj]
    return obj


def _table(headers: list[str], rows: list[list[Any]], left: int = 1) -> str:
    head = "".join(f'<th class="l">{html.escape(h)}</th>' if i < left else f"<th>{html.escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="l">{html.escape(str(c))}</td>' if i < left else f"<td>{html.escape(str(c))}</td>"
                         for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Page:
    """Collects sections; embeds plotly.js once, with the first figure."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.js_included = False
        self.figure_ids: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, fig, div_id: str) -> None:
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=not self.js_included, div_id=div_id,
                                      config={"displaylogo": False}))
        self.js_included = True
        self.figure_ids.append(div_id)


def _study_meta(results_dir: str) -> dict[str, Any]:
    import yaml

    path = Path(results_dir) / "study.yaml"
    if "://" not in results_dir and path.is_file():
        return yaml.safe_load(path.read_text()) or {}
    return {}


def compute(trials: pd.DataFrame, metric: str) -> dict[str, Any]:
    """The numbers of sections 1, 3 and 4 (and notes on what cannot be computed)."""
    notes = []
    losses = sorted(trials["loss"].unique())
    if not {"supcon", "ce"} <= set(losses):
        notes.append(f"Only {', '.join(losses)} in this study: the SupCon-versus-CE comparison needs both losses.")
    for factor, g in trials.groupby("factor"):
        if g["setting"].nunique() < 2:
            notes.append(f"Factor '{factor}' has a single setting: there is no spread across settings to show.")
    if trials["design"].fillna("").str.contains("tpe").any():
        notes.append("Some trials come from an adaptive TPE search: their settings concentrate where the sampler "
                     "expected good results, so their spread is not a uniform sample of the space.")
    return {
        "metric": metric,
        "counts": {loss: stats.status_counts(g) for loss, g in trials.groupby("loss")},
        "headline": stats.factor_headline(trials, metric),
        "noise_floor": stats.noise_floor(trials, metric),
        "expected_max": {"metric": "val_top1", "curves": stats.expected_max_curves(trials, "val_top1")},
        "notes": notes,
    }


def render(results_dir: str, trials: pd.DataFrame, epochs: pd.DataFrame, metric: str, numbers: dict[str, Any]) -> tuple[str, list[str]]:
    meta = _study_meta(results_dir)
    study = meta.get("study") or (trials["study"].iloc[0] if len(trials) else "study")
    chance = trials["chance_top1"].dropna()
    chance_text = f"{chance.iloc[0]:.3f}" if len(chance) else "1 / number of classes"
    page = _Page()
    page.add(f"<h1>Stability report: {html.escape(str(study))}</h1>")
    if meta.get("description"):
        page.add(f"<p>{html.escape(meta['description'])}</p>")
    page.add(f"<p>Dataset <b>{html.escape(str(trials['dataset'].iloc[0]))}</b>, model <b>{html.escape(str(trials['model'].iloc[0]))}</b>, "
             f"metric <b>{html.escape(metric)}</b>, {len(trials)} trials. Scoring: completed and diverged trials are scored; "
             f"a diverged trial counts at chance level ({chance_text}); failed trials (infrastructure errors) have no score "
             f"and are counted. Test accuracy is measured once per trial, on its final model; nothing here selects on it.</p>")
    page.add(_table(["loss", "completed", "diverged", "failed"],
                    [[loss, c["completed"], c["diverged"], c["failed"]] for loss, c in numbers["counts"].items()]))
    for note in numbers["notes"]:
        page.add(f'<p class="note">{html.escape(note)}</p>')

    page.add("<h2>1. Does SupCon vary less than CE?</h2>")
    page.add("<p>Per factor, each loss's spread of the metric over all its trials of that factor (settings and seeds "
             "pooled); the ratio of CE's standard deviation to SupCon's with a 95% bootstrap interval (above 1: SupCon "
             "varies less), and a Brown-Forsythe test of equal variances.</p>")
    for h in numbers["headline"]:
        page.add(f'<p class="verdict">{html.escape(h["verdict"])}</p>')
        rows = [[loss, s["n"], s["completed"], s["diverged"], s["failed"], _num(s["mean"]), _num(s["std"]), _num(s["range"]),
                 _num(s["iqr"])] for loss, s in h["losses"].items()]
        page.add(_table(["loss", "scored", "completed", "diverged", "failed", "mean", "std", "range", "IQR"], rows))
        if "ratio_ce_over_supcon" in h:
            low, high = h["ratio_ci95"]
            page.add(_table(["factor", "std ratio CE / SupCon", "95% CI", "Brown-Forsythe p"],
                            [[h["factor"], _num(h["ratio_ce_over_supcon"], 2), f"[{_num(low, 2)}, {_num(high, 2)}]",
                              _num(h["brown_forsythe_p"], 3)]]))

    page.add("<h2>2. Every trial, per setting and loss</h2>")
    for factor in sorted(trials["factor"].unique()):
        page.figure(plots.settings_box(trials, factor, metric), f"fig-settings-{factor}")

    page.add("<h2>3. Seed noise floor</h2>")
    page.add("<p>Standard deviation across seeds at a fixed setting (pooled over settings) next to the standard deviation "
             "of the per-setting means across settings: where the second is not clearly larger, the hyperparameter "
             "matters no more than luck.</p>")
    if numbers["noise_floor"]:
        page.add(_table(["factor", "loss", "settings", "seeds/setting", "std across seeds", "std across settings"],
                        [[r["factor"], r["loss"], r["settings"], _num(r["seeds_per_setting"], 1), _num(r["seed_std"]),
                          _num(r["setting_std"])] for r in numbers["noise_floor"]], left=2))
        page.figure(plots.noise_floor_bars(numbers["noise_floor"]), "fig-noise-floor")

    page.add("<h2>4. Expected best validation accuracy versus number of trials</h2>")
    page.add("<p>The expected maximum validation top-1 of k trials drawn with replacement from this study's trials "
             "(Dodge et al. 2019), computed exactly from the empirical distribution: how much tuning each loss needs.</p>")
    if numbers["expected_max"]["curves"]:
        page.figure(plots.expected_max_lines(numbers["expected_max"]["curves"], "val_top1"), "fig-expected-max")

    page.add("<h2>5. Hyperparameter importance</h2>")
    importances = stats.importance(trials, metric)
    if importances:
        page.add("<p>Optuna's fANOVA evaluator on the recorded trials (nothing re-run). Keys that one setting changes "
                 "together (for example an optimizer with its own learning rate) are confounded: their shares split "
                 "one effect.</p>")
        page.figure(plots.importance_bars(importances), "fig-importance")
    else:
        page.add('<p class="note">No hyperparameter varied within a loss, so there is nothing to attribute.</p>')

    page.add("<h2>6. Learning curves</h2>")
    if len(epochs):
        page.figure(plots.learning_curves(epochs), "fig-learning-curves")
    else:
        page.add('<p class="note">No per-epoch rows in epochs/.</p>')
    body = "\n".join(page.parts)
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>supcon-ray: {html.escape(str(study))}</title>"
           f"<style>{CSS}</style></head><body>{body}</body></html>")
    return doc, page.figure_ids


def build_report(results_dir: str, output: str | None = None, json_path: str | None = None,
                 metric: str = "test_top1") -> Path:
    """Write the report for the study folder ``results_dir``; return the HTML path."""
    trials_t, epochs_t = read_results(results_dir)
    trials, epochs = trials_t.to_pandas(), epochs_t.to_pandas()
    if trials.empty:
        raise ConfigError(f"{results_dir}: no trials found in {results_dir}/trials (run a study first)")
    numeric = [c for c in trials.columns if pd.api.types.is_float_dtype(trials[c])]
    if metric not in trials.columns or metric not in numeric:
        raise ConfigError(f"--metric: no numeric column {metric!r} in the trials; valid: {', '.join(numeric)}")
    numbers = compute(trials, metric)
    doc, _ = render(results_dir, trials, epochs, metric, numbers)
    out = Path(output) if output else (Path(results_dir) / "report.html" if "://" not in results_dir else Path("report.html"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, out)
    if json_path:
        meta = _study_meta(results_dir)
        payload = {"study": meta.get("study") or str(trials["study"].iloc[0]),
                   "scoring": "completed and diverged trials are scored (diverged at chance level); failed trials are counted, not scored",
                   **numbers}
        Path(json_path).write_text(json.dumps(_clean_json(payload), indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supcon_ray.report", description=__doc__.split("\n\n")[0])
    p.add_argument("results_dir", help="a study folder: <storage>/<study>")
    p.add_argument("-o", "--output", help="HTML file (default RESULTS_DIR/report.html)")
    p.add_argument("--json", help="also write the numbers of sections 1, 3 and 4 to this JSON file")
    p.add_argument("--metric", default="test_top1", help="the trial column to compare (default test_top1)")
    args = p.parse_args(argv)
    try:
        path = build_report(args.results_dir, args.output, args.json, args.metric)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"report: {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
