"""The stability report as one self-contained HTML page (plotly.js embedded, works offline): formats a
:class:`~supcon_ray.analysis.ReportNumbers` and computes nothing new. One function per section."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from supcon_ray.analysis import FactorEntry, PooledEntry, ReportNumbers, StudyRecord
from supcon_ray.analysis.formatting import TEXT, interval, number, p_value
from supcon_ray.analysis.wording import INTERVAL_NOTE, claim_words, divergence_sentence, margin_sentence, source_text
from supcon_ray.reporting import plots
from supcon_ray.reporting.console import primary_first
from supcon_ray.reporting.markdown import columns, slots
from supcon_ray.results.folders import stats_rows
from supcon_ray.results.cost import cost_line
from supcon_ray.stats.claims import display
from supcon_ray.stats.settings import ALPHA, MIN_SETTINGS_BEYOND

__all__ = ["CSS", "render"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .verdict{font-size:1.05em;background:#f7f9fc;border-left:4px solid #1f77b4;padding:.5em 1em}
.overall{font-size:1.15em;background:#eef6ee;border-left:5px solid #2a8a2a;padding:.6em 1em}
.note{color:#8a5a00;background:#fff8e6;border-left:4px solid #e0a800;padding:.4em 1em}
"""


def _num(x: Any, digits: int = 4) -> str:
    return number(x, digits, TEXT)


def _ci(ci: Any, digits: int = 3) -> str:
    return interval(ci, digits, TEXT)


def _p(x: Any) -> str:
    return p_value(x, TEXT)


def _ratio(answer: Any) -> str:
    return f"{_num(answer.ratio, 2)} {_ci(answer.ci95, 2)}"


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


def _bases_html(bases: Mapping[str, Any]) -> str:
    rows = []
    for study, per_loss in bases.items():
        for loss, b in per_loss.items():
            values = ", ".join(f"{k}={_num(v, 4) if isinstance(v, float) else v}" for k, v in (b.get("values") or {}).items())
            source = source_text(b.get("source"))
            if "mean" in b:
                source += (f": best of {b.get('configurations', '?')} configurations by mean {b.get('select', 'val_top1')} "
                           f"{_num(b['mean'], 4)} over seeds {b.get('seeds')}"
                           + (f", by successive halving (won at {b['fidelity']['epochs']} epochs)" if b.get("fidelity") else ""))
            lead = margin_sentence(b["margin"]) if b.get("margin") else ""
            rows.append([study, loss, values or "(as in the study file)", source, lead])
    return ("<p>Each loss's base setting, from which every factor is changed one at a time, and how clearly "
            "step 1 picked it (within noise: another configuration is in Gupta's 95% subset of those that may be the best):</p>"
            + _table(["study", "loss", "tuned base", "where it came from", "lead over the runner-up"], rows, left=5))


def _widths(per_loss: Mapping[str, Any]) -> str:
    """Each loss's width (decades) of the numeric settings within 1 and 5 accuracy points of its best."""
    parts = []
    for loss, v in per_loss.items():
        w = v.width_decades
        if w:
            parts.append(f"{loss} {_num(w['within_1_points'], 2)} / {_num(w['within_5_points'], 2)}")
    return "; ".join(parts) or "–"


@dataclass(frozen=True)
class _Row:
    """A row of the answer tables: a factor entry, or a pooled entry named as one."""

    name: str
    entry: FactorEntry | PooledEntry
    paired_settings: int


def _rows(numbers: ReportNumbers, several_pairs: bool) -> list[_Row]:
    def name(study: str, factor: str, e: FactorEntry | PooledEntry) -> str:
        return f"{study} / {factor}" + (f" ({e.method} vs {e.baseline})" if several_pairs and e.baseline else "")
    rows = [_Row(name(f.study, f.factor, f), f, f.paired_settings) for f in numbers.factors]
    pooled = numbers.overall_by_method.items() if several_pairs and numbers.overall_by_method else [("", numbers.overall)]
    return rows + [_Row(name("all factors", "pooled" + (f" ({k})" if several_pairs else ""), o), o, o.n_settings)
                   for k, o in pooled]


def _header(page: _Page, trials: pd.DataFrame, numbers: ReportNumbers, records: Mapping[str, StudyRecord],
            who: tuple[str, str]) -> None:
    B, M = who
    rows = stats_rows(trials)
    page.add(f"<h1>Stability report: {html.escape(', '.join(numbers.studies))}</h1>")
    for study in numbers.studies:
        record = records.get(study)
        if record is not None and record.description:
            page.add(f"<p><b>{html.escape(study)}</b>: {html.escape(str(record.description))}</p>")
    chance = trials["chance_top1"].dropna() if "chance_top1" in trials else pd.Series(dtype=float)
    named = {k: ", ".join(map(str, trials[k].dropna().unique())) if k in trials else "" for k in ("dataset", "model")}
    what = (f"Dataset <b>{html.escape(named['dataset'])}</b>, model <b>{html.escape(named['model'])}</b>"
            if named["dataset"] or named["model"] else "A table of runs (no dataset or model recorded)")
    page.add(f"<p>{what}, metric <b>{html.escape(numbers.metric)}</b>, "
             f"{len(trials)} trials ({len(rows)} in the statistics). The unit of every interval and test is the "
             f"<i>setting</i>: seeds are nested in settings, and {B} and {M} are compared only over settings both ran, "
             "paired by setting. Spreads use completed runs; divergence is its own result (section 3), and a conservative "
             f"view scores diverged runs at chance ({_num(float(chance.iloc[0]), 3) if len(chance) else '1/classes'}). "
             "Test accuracy is measured once per trial, on its final model; nothing selects on it.</p>")
    if numbers.bases:
        page.add(_bases_html(numbers.bases))
    for note in numbers.notes:
        page.note(note)
    for study, cost in (numbers.cost or {}).items():
        page.add(f"<p>Cost of <b>{html.escape(study)}</b>: {html.escape(cost_line(cost))}.</p>")


def _questions(page: _Page, numbers: ReportNumbers, who: tuple[str, str], cols: tuple[str, str], several_pairs: bool) -> None:
    """Section 1: the pooled verdicts, what each question asks, and every factor's answers to both."""
    B, M = who
    page.add(f"<h2>1. Is {M} less sensitive to its hyperparameters than {B}? Two questions</h2>")
    primaries = {a.primary for a in numbers.analysis.values()} or {"spread"}
    for pooled in numbers.pooled_rows():  # every compared method's pooled answer
        lines = primary_first(pooled, next(iter(primaries))) if len(primaries) == 1 else [pooled.these_settings.sentence]
        for line in [*lines, pooled.beyond.sentence]:
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
    table = []
    for row in _rows(numbers, several_pairs):
        f, t = row.entry, row.entry.these_settings
        mm, bb = slots(f, cols)
        spread = [t.losses.get(loss) for loss in (bb, mm)]
        sig = [f.losses.get(loss) if isinstance(f, FactorEntry) else None for loss in (bb, mm)]
        table.append([row.name, row.paired_settings,
                      *(f"{_num(v.spread, 3)} {_ci(v.spread_ci95)}" if v else "" for v in spread),
                      _ratio(t), _p(t.p_adjusted), claim_words(t.claim),
                      *(f"{_num(v.setting_std, 3)} {_ci(v.setting_std_ci95)}" if v else "" for v in sig),
                      _ratio(f.beyond), _p(f.beyond.p_adjusted), claim_words(f.claim)])
    page.add(_table(["study / factor", "paired settings", f"these: spread {B} [95% CI]", f"these: spread {M} [95% CI]",
                     "these: ratio [95% CI]", "these: p (Holm)", "for these settings", f"beyond: σa {B} [95% CI]",
                     f"beyond: σa {M} [95% CI]", "beyond: ratio [95% CI]", "beyond: p (Holm)", "beyond these settings"],
                    table))
    for f in numbers.factors:
        page.add(f'<p class="verdict">{html.escape(f.these_settings.sentence)}<br>{html.escape(f.beyond.sentence)}</p>')


def _drops(page: _Page, numbers: ReportNumbers, who: tuple[str, str], cols: tuple[str, str], several_pairs: bool) -> None:
    B, M = who
    page.add("<h3>Drop from the base</h3><p>How much accuracy each loss loses, on average, away from the setting it "
             "was tuned at (the base setting's mean minus the mean of the other settings' means; each setting's own seed "
             f"noise; Welch-Satterthwaite t-intervals). The difference {B} − {M} is its own Holm family; the ratio "
             "(Fieller interval) only where both drops are positive. Agreement with the paper: significant in its direction "
             "(agree), against it (disagree: opposite), a ratio shown inside [1/m, m] by two one-sided tests (disagree: no "
             "meaningful difference), else inconclusive.</p>")
    drops = []
    for row in _rows(numbers, several_pairs):
        d = row.entry.drop
        mm, bb = slots(row.entry, cols)
        drops.append([row.name, *(f"{_num(d.losses[x].drop, 3)} {_ci(d.losses[x].ci95)}" if x in d.losses else ""
                                  for x in (bb, mm)),
                      f"{_num(d.difference.estimate, 3)} {_ci(d.difference.ci95)}" if d.difference else "",
                      _p(d.p_adjusted), claim_words(d.claim), _ratio(d) if d.ratio is not None else "–",
                      (d.agreement.outcome if d.agreement else None) or "–", _widths(d.losses)])
    page.add(_table(["study / factor", f"drop {B} [95% CI]", f"drop {M} [95% CI]", f"difference {B} − {M} [95% CI]",
                     "p (Holm)", "claim", "ratio [95% CI]", "agreement",
                     "decades within 1 / 5 points of the best"], drops))


def _across(page: _Page, numbers: ReportNumbers) -> None:
    across = numbers.overall.by_factor or ()
    if not across:
        return
    page.add("<h3>Each factor pooled over the studies that ran it</h3><p>Each study (dataset) is a block; for these "
             "settings every study's settings stay fixed and each loss's spread is the root mean square over studies. "
             f"Each question is its own Holm family over these pooled factors. {INTERVAL_NOTE}</p>")
    page.add(_table(["factor", "studies", "paired settings", "these: ratio [95% CI]", "these: p (Holm)",
                     "for these settings", "beyond: ratio [95% CI]", "beyond: p (Holm)", "beyond these settings"],
                    [[a.factor, ", ".join(a.studies), a.n_settings, _ratio(a.these_settings),
                      _p(a.these_settings.p_adjusted), claim_words(a.these_settings.claim),
                      _ratio(a.beyond), _p(a.beyond.p_adjusted), claim_words(a.claim)] for a in across], left=2))
    for a in across:
        page.add(f'<p class="verdict">{html.escape(a.these_settings.sentence)}<br>{html.escape(a.beyond.sentence)}</p>')


def _per_setting(page: _Page, trials: pd.DataFrame, numbers: ReportNumbers) -> None:
    page.add("<h2>2. Accuracy per setting (the paper's Fig. 4a view)</h2>")
    page.add("<p>Each loss's mean per setting with a 95% t-interval over that setting's own seeds; completed runs as "
             "circles, diverged runs as crosses at chance, failed runs as triangles at the bottom. Numeric factors sit "
             "on a numeric axis. The table gives each setting's drop from that loss's best setting.</p>")
    if numbers.factors:
        rows = stats_rows(trials)
        page.figure(plots.fig4a(trials[trials.index.isin(rows.index)], numbers.factors, numbers.metric), "fig-settings")
        drops = [[f"{f.study} / {f.factor}", loss, s, v.n, _num(v.mean), _num(v.drop_from_best)]
                 for f in numbers.factors for loss, le in f.losses.items() for s, v in le.settings.items()]
        page.add(_table(["study / factor", "loss", "setting", "runs", "mean", "drop from best"], drops, left=3))


def _divergence_and_noise(page: _Page, numbers: ReportNumbers) -> None:
    page.add("<h2>3. Divergence</h2>")
    d = numbers.divergence
    page.add(_table(["loss", "completed", "diverged", "failed", "divergence rate"],
                    [[loss, c["completed"], c["diverged"], c["failed"], _num(c["divergence_rate"], 3)]
                     for loss, c in d["per_loss"].items()]))
    page.add(f'<p class="verdict">{html.escape(divergence_sentence(d, "All studies"))}</p>')
    page.add(_table(["study / factor", "diverged per loss", "Fisher p"],
                    [[f"{f.study} / {f.factor}", ", ".join(f"{display(loss)} {le.diverged}" for loss, le in f.losses.items()),
                      _p(f.divergence_fisher_p)] for f in numbers.factors]))
    page.add("<h2>4. Seed noise next to the effect of settings</h2>")
    page.add("<p>Both on the scale of one run: the seed std (pooled within settings) and the between-setting std with "
             "seed noise removed. Where the second is not clearly larger, the factor matters no more than luck.</p>")
    page.add(_table(["study / factor", "loss", "settings", "runs", "seed std", "between-setting std"],
                    [[f"{f.study} / {f.factor}", loss, len(le.settings), le.completed, _num(le.seed_std),
                      _num(le.setting_std)] for f in numbers.factors for loss, le in f.losses.items()], left=2))


def _robustness(page: _Page, numbers: ReportNumbers) -> None:
    page.add("<h2>5. Robustness of the conclusion</h2>")
    page.add("<p>Near 100% accuracy spreads shrink for reasons unrelated to stability, so the same analysis is repeated "
             "on the logit scale. The conservative view scores diverged runs at chance level and compares the spread of "
             "setting means without removing seed noise, so a setting where runs diverge counts as sensitive.</p>")
    robust = []
    named = [(f"{f.study} / {f.factor}", f) for f in numbers.factors] + [("all / pooled", numbers.overall)]
    for name, f in named:
        for view_name, v in (("logit", f.logit), ("conservative", f.conservative)):
            if v:
                robust.append([name, view_name, _ratio(v.result), _p(v.p_adjusted), claim_words(v.claim),
                               "yes" if v.changes_conclusion else "no"])
    page.add(_table(["study / factor", "view", "ratio [95% CI]", "p (Holm)", "claim", "changes the conclusion"], robust, left=2))


def _searches(page: _Page, numbers: ReportNumbers, epochs: pd.DataFrame) -> None:
    """Sections 6-8: the expected best after k configurations, importance, learning curves."""
    page.add("<h2>6. Expected best validation accuracy versus number of configurations</h2>")
    em = numbers.expected_max
    if em["available"]:
        page.add(f"<p>From {em['n_configs']} randomly sampled configurations run for every loss (unbiased estimator of "
                 "Tang et al. 2020; 95% band resamples configurations, paired across losses).</p>")
        page.figure(plots.expected_max_band(em), "fig-expected-max")
    else:
        page.note(em["reason"])
    page.add("<h2>7. Hyperparameter importance</h2>")
    if numbers.importance:
        page.add("<p>fANOVA share of variance per hyperparameter, fitted to the sampled-search trials only: mean ± sd "
                 "over the evaluator seeds, next to the same evaluation on randomly permuted metrics (grey), with the "
                 "permutation p-value. Keys that one setting changes together share one effect.</p>")
        page.figure(plots.importance_bars(numbers.importance), "fig-importance")
        page.add(_table(["loss", "hyperparameter", "importance", "noise baseline", "permutation p", "above noise"],
                        [[loss, k, f"{_num(v['mean'], 3)} ± {_num(v['sd'], 3)}", f"{_num(v['noise_mean'], 3)} ± {_num(v['noise_sd'], 3)}",
                          _p(v["p_value"]), "yes" if v["above_noise"] else "no"]
                         for loss, imp in numbers.importance.items() for k, v in imp.items()], left=2))
    else:
        page.note("Importance is fitted only to sampled searches (random, QMC or grid) with a hyperparameter that varies "
                  "over 4 or more completed runs of a loss; this report has none. One-at-a-time settings change keys "
                  "together (a learning rate re-tuned per optimizer), so an importance fitted to them would mislead.")
    page.add("<h2>8. Learning curves</h2>")
    if len(epochs):
        page.figure(plots.learning_curves(epochs), "fig-learning-curves")
    else:
        page.note("No per-epoch rows in epochs/.")


def render(trials: pd.DataFrame, epochs: pd.DataFrame, numbers: ReportNumbers,
           records: Mapping[str, StudyRecord] | None = None) -> tuple[str, list[str]]:
    """The HTML page and its figure ids."""
    (base_loss, method_loss), several_pairs = columns(numbers)
    who = ("each baseline", "each method") if several_pairs else (display(base_loss), display(method_loss))
    cols = (base_loss, method_loss)
    page = _Page()
    _header(page, trials, numbers, records or {}, who)
    _questions(page, numbers, who, cols, several_pairs)
    _drops(page, numbers, who, cols, several_pairs)
    _across(page, numbers)
    if numbers.factors:
        page.figure(plots.sensitivity_intervals(numbers.factors), "fig-sensitivity")
    _per_setting(page, trials, numbers)
    _divergence_and_noise(page, numbers)
    _robustness(page, numbers)
    _searches(page, numbers, epochs)
    title = ", ".join(numbers.studies)
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>supcon-ray: {html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>{chr(10).join(page.parts)}</body></html>")
    return doc, page.figure_ids
