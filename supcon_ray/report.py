"""``python -m supcon_ray.report DIR [DIR ...]``: the stability report as one self-contained HTML page.

Reads ``trials/`` and ``epochs/`` (Parquet) of one or more study folders with their study records
(:func:`supcon_ray.analysis.read_study_folders`), builds every number once
(:func:`supcon_ray.analysis.build_numbers`; :mod:`supcon_ray.reporting.numbers` documents the ``--json``
contract) and writes ``report.html`` (:mod:`supcon_ray.reporting.html`), and on request the JSON, the Markdown tables
(:mod:`supcon_ray.reporting.markdown`), a static figure, or an exported folder for publishing
(:mod:`supcon_ray.results.export`). Several folders give the paper's Fig. 4a view: every factor side by
side, in one multiple-comparison family.

Exit status 2 when nothing can be reported (no trials, a missing folder, an unknown metric).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from supcon_ray.config import EXIT_USAGE, ConfigError
from supcon_ray.reporting.console import headline
from supcon_ray.reporting.files import FIGURE_FORMATS, build_report, write_figure
from supcon_ray.reporting.markdown import results_markdown
from supcon_ray.results.export import export

__all__ = ["FIGURE_FORMATS", "build_report", "main", "write_figure"]  # the report's files, from supcon_ray.reporting


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
