"""``python -m supcon_ray.report DIR [DIR ...]``: the stability report as one self-contained HTML page.

Reads ``trials/`` and ``epochs/`` (Parquet) of one or more study folders (:mod:`supcon_ray.results.folders`),
computes every number (:mod:`supcon_ray.reporting.numbers`, whose docstring is the ``--json`` contract) and
writes ``report.html`` (:mod:`supcon_ray.reporting.html`), and on request the JSON, the Markdown tables
(:mod:`supcon_ray.reporting.markdown`), a static figure, or an exported folder for publishing
(:mod:`supcon_ray.results.export`). Several folders give the paper's Fig. 4a view: every factor side by
side, in one multiple-comparison family.

Exit status 2 when nothing can be reported (no trials, a missing folder, an unknown metric).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from supcon_ray.config import EXIT_USAGE, ConfigError
from supcon_ray.reporting import plots
from supcon_ray.reporting.html import render
from supcon_ray.reporting.markdown import results_markdown
from supcon_ray.reporting.numbers import clean_json, compute, headline, with_margins
from supcon_ray.stats.base_margin import nuisance_margins
from supcon_ray.results.export import export
from supcon_ray.results.folders import load, stats_rows


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
    picks = {s: m["nuisance_picks"] for s, m in metas.items() if m.get("nuisance_picks")}
    if picks:
        numbers["nuisance"] = {s: nuisance_margins(trials[trials["study"] == s], p) for s, p in picks.items()}
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
        Path(json_path).write_text(json.dumps(clean_json(numbers), indent=2))
    if figure:
        write_figure(trials, numbers, figure)
    return out, numbers


FIGURE_FORMATS = (".svg", ".png")


def write_figure(trials: pd.DataFrame, numbers: dict[str, Any], output: str) -> Path:
    """Write the combined per-setting view of ``numbers`` (one panel per study and factor: the paper's Fig. 4a,
    or its Fig. 4b-d curves for numeric factors) as a static image (plotly's kaleido export)."""
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


def main(argv: list[str] | None = None, prog: str = "python -m supcon_ray.report") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR", help="one or more study folders: <storage>/<study>")
    p.add_argument("-o", "--output", help="HTML file (default RESULTS_DIR/report.html for one folder, ./report.html for several)")
    p.add_argument("--json", help="also write every number to this JSON file")
    p.add_argument("--metric", default="test_top1", help="the trial column to compare (default test_top1)")
    p.add_argument("--markdown", metavar="FILE", help="also write the results tables as Markdown to FILE ('-': print them)")
    p.add_argument("--figure", metavar="FILE", help="also write the combined per-setting view (Fig. 4a; 4b-d for numeric "
                   "factors) as a static .svg or .png "
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
