"""The report's files: the HTML page for one or more study folders, with on request the JSON and a static
figure. :func:`build_report` reads the folders (:func:`build_table_report` a table of runs), builds the numbers once
(:func:`supcon_ray.analysis.build_numbers`) and hands them to each writer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from supcon_ray.analysis import ReportNumbers, build_numbers, read_study_folders, table_record
from supcon_ray.config import ConfigError
from supcon_ray.reporting import plots
from supcon_ray.reporting.html import render
from supcon_ray.reporting.numbers import write_json
from supcon_ray.results.folders import stats_rows
from supcon_ray.results.table import prepare_table

__all__ = ["FIGURE_FORMATS", "build_report", "build_table_report", "write_figure"]


def build_report(results_dirs: list[str] | str, output: str | None = None, json_path: str | None = None,
                 metric: str = "test_top1", figure: str | None = None) -> tuple[Path, ReportNumbers]:
    """Write the report for one or more study folders (and, with ``figure``, the Fig. 4a view as a
    static image); return the HTML path and its numbers."""
    dirs = [results_dirs] if isinstance(results_dirs, str) else list(results_dirs)
    trials, epochs, records = read_study_folders(dirs)
    numeric = [c for c in trials.columns if pd.api.types.is_float_dtype(trials[c])]
    if metric not in numeric:
        raise ConfigError(f"--metric: no numeric column {metric!r} in the trials; valid: {', '.join(numeric)}")
    if output:
        out = Path(output)
    elif len(dirs) == 1 and "://" not in dirs[0]:
        out = Path(dirs[0]) / "report.html"
    else:
        out = Path("report.html")
    return _write(trials, epochs, records, metric, out, json_path, figure)


def build_table_report(table: pd.DataFrame, output: str | None = None, json_path: str | None = None,
                       metric: str = "test_top1", figure: str | None = None,
                       columns: Mapping[str, str] | None = None, baseline: str | None = None) -> tuple[Path, ReportNumbers]:
    """Write the report for a table of runs from anywhere (:func:`supcon_ray.results.table.prepare_table` checks it
    first, so a bad table writes nothing); default ``./report.html``. The numbers are :func:`supcon_ray.analyze`'s."""
    trials = prepare_table(table, metric, columns)
    records = {str(s): table_record(str(s), baseline) for s in trials["study"].unique()} if baseline else {}
    return _write(trials, pd.DataFrame(), records, metric, Path(output or "report.html"), json_path, figure)


def _write(trials: pd.DataFrame, epochs: pd.DataFrame, records, metric: str, out: Path, json_path: str | None,
           figure: str | None) -> tuple[Path, ReportNumbers]:
    numbers = build_numbers(trials, metric, records)
    doc, _ = render(trials, epochs, numbers, records)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    os.replace(tmp, out)
    if json_path:
        write_json(numbers, json_path)
    if figure:
        write_figure(trials, numbers, figure)
    return out, numbers


FIGURE_FORMATS = (".svg", ".png")


def write_figure(trials: pd.DataFrame, numbers: ReportNumbers, output: str) -> Path:
    """Write the combined per-setting view of ``numbers`` (one panel per study and factor: the paper's Fig. 4a,
    or its Fig. 4b-d curves for numeric factors) as a static image (plotly's kaleido export)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise ConfigError("--figure needs the kaleido package: pip install -e '.[figures]' "
                          "(and Chrome or Chromium, e.g. apt-get install chromium)") from None
    fig = plots.fig4a(stats_rows(trials), numbers.factors, numbers.metric)
    width = 420 * min(max(len(numbers.factors), 1), 3)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.write_image(str(out), width=width, height=fig.layout.height)
    except Exception as err:  # kaleido reports a missing browser in several ways
        raise ConfigError(f"--figure: could not export {out} ({type(err).__name__}: {err}); kaleido needs "
                          "Chrome or Chromium installed (apt-get install chromium)") from None
    return out
