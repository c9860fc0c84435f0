"""``python -m supcon_ray.report DIR [DIR ...]``: the stability report as one self-contained HTML page.

Reads ``trials/`` and ``epochs/`` (Parquet) of one or more study folders with their study records
(:func:`supcon_ray.analysis.read_study_folders`), builds every number once
(:func:`supcon_ray.analysis.build_numbers`; :mod:`supcon_ray.reporting.numbers` documents the ``--json``
contract) and writes ``report.html`` (:mod:`supcon_ray.reporting.html`), and on request the JSON, the Markdown tables
(:mod:`supcon_ray.reporting.markdown`), a static figure, or an exported folder for publishing
(:mod:`supcon_ray.results.export`). Several folders give the paper's Fig. 4a view: every factor side by
side, in one multiple-comparison family.

``--table FILE`` reports a table of runs from anywhere instead (Ray Tune, Optuna, MLflow, a spreadsheet:
:mod:`supcon_ray.results.table`), with the same HTML, ``--json`` and ``--markdown``.

Exit status 2 when nothing can be reported (no trials, a missing folder, an unknown metric, a table with a
missing or ill-typed column, duplicated runs or an unknown status), and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from supcon_ray.config import EXIT_USAGE, ConfigError
from supcon_ray.reporting.console import headline
from supcon_ray.results.table import parse_columns, read_table
from supcon_ray.reporting.files import FIGURE_FORMATS, build_report, build_table_report, write_figure
from supcon_ray.reporting.markdown import results_markdown
from supcon_ray.results.export import export

__all__ = ["FIGURE_FORMATS", "build_report", "main", "write_figure"]  # the report's files, from supcon_ray.reporting


def main(argv: list[str] | None = None, prog: str = "python -m supcon_ray.report") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("results_dirs", nargs="*", metavar="RESULTS_DIR", help="one or more study folders: <storage>/<study>")
    p.add_argument("--table", metavar="FILE", help="report a table of runs instead (.csv or .parquet; - for CSV on "
                   "standard input): from Ray Tune, Optuna, MLflow or a spreadsheet, with columns loss, factor, "
                   "setting, seed and the metric (status and study optional); see --columns")
    p.add_argument("--columns", metavar="NAME=COLUMN,...", help="with --table: the table's own names for loss, factor, "
                   "setting, seed, status, study, e.g. loss=config/method,seed=config/seed")
    p.add_argument("--baseline", metavar="LOSS", help="with --table: the loss every other one is compared with "
                   "(default ce where the table has it, else the first in alphabetical order)")
    p.add_argument("-o", "--output", help="HTML file (default RESULTS_DIR/report.html for one folder, ./report.html for "
                   "several or a table)")
    p.add_argument("--json", help="also write every number to this JSON file")
    p.add_argument("--metric", default="test_top1", help="the trial column to compare (default test_top1)")
    p.add_argument("--markdown", metavar="FILE", help="also write the results tables as Markdown to FILE ('-': print them)")
    p.add_argument("--figure", metavar="FILE", help="also write the combined per-setting view (Fig. 4a; 4b-d for numeric "
                   "factors) as a static .svg or .png "
                   "(needs pip install -e '.[figures]' and Chrome or Chromium)")
    p.add_argument("--export", metavar="OUT", help="write one study folder's trials, epochs, manifest and study file to "
                   "OUT for publishing (compacted Parquet, no machine paths), then exit")
    args = p.parse_args(argv)
    if bool(args.table) == bool(args.results_dirs):
        print("error: give one or more study folders, or --table FILE (not both)", file=sys.stderr)
        return EXIT_USAGE
    if not args.table and (args.columns or args.baseline):
        print(f"error: {'--columns' if args.columns else '--baseline'}: only with --table", file=sys.stderr)
        return EXIT_USAGE
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
        if args.table:
            path, numbers = build_table_report(read_table(args.table), args.output, args.json, args.metric, args.figure,
                                               parse_columns(args.columns), args.baseline)
        else:
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
