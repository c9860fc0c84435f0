"""Mutation testing of the core, sampled to fit a 2-core machine: ``python tools/mutation.py``.

mutmut (``pip install mutmut``; configured in ``pyproject.toml`` under ``[tool.mutmut]``) writes every
mutant of the core modules (``stats/``, ``networks/losses.py``, ``networks/optim.py``,
``engine/stages.py``, ``plugins/_load.py``, ``results/manifest.py``: about 8,800), runs the selected
tests once to learn which tests reach each function, and then runs each mutant against only those tests
(``-x``: the first failure kills it). All 8,800 take days on 2 cores, so this command draws a stratified
sample: ``--per-module`` mutants from each module file (all of a smaller file's), with a fixed
``--seed``, so that the same mutants are drawn before and after a change to the tests, and their scores
compare. The score of a module is killed / (killed + survived + no tests + timeout + suspicious): a
mutant the tests never reach counts against the score, as it should.

It prints one row per module (a Markdown table, ``--json PATH`` for the raw statuses) and lists the
survivors; ``mutmut show NAME`` prints a survivor's diff. A survivor is either a missing test or an
equivalent mutant (no input tells it apart from the original): say which when you record the scores in
``docs/development.md``.

Run it before changing the core, with nothing else running; it is not part of CI.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Statuses that count in the score's denominator (``skipped``/``not checked`` were not run).
SCORED = ("killed", "survived", "no tests", "timeout", "suspicious", "segfault", "caught by type check")
_LINE = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+?)\s*$")


def _mutmut(*args: str, check: bool = True) -> str:
    exe = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if exe is None:
        raise SystemExit("mutation: mutmut is not installed: pip install mutmut")
    run = subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise SystemExit(f"mutation: mutmut {' '.join(args[:1])} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run.stdout


def statuses() -> dict[str, str]:
    """Every generated mutant's name -> mutmut's status for it."""
    out = {}
    for line in _mutmut("results", "--all", "true").splitlines():
        m = _LINE.match(line)
        if m:
            out[m["name"]] = m["status"]
    return out


def module_of(name: str) -> str:
    """``supcon_ray.stats.drop.x_fieller__mutmut_3`` -> ``supcon_ray.stats.drop``."""
    return name.split(".x")[0] if ".x" in name else name.rsplit(".", 1)[0]


def sample(names: list[str], per_module: int, seed: int) -> list[str]:
    """``per_module`` names from each module (all of a smaller one's), drawn with ``seed``."""
    by_module: dict[str, list[str]] = defaultdict(list)
    for n in sorted(names):
        by_module[module_of(n)].append(n)
    rng = random.Random(seed)
    out = []
    for module in sorted(by_module):
        group = by_module[module]
        out.extend(group if len(group) <= per_module else rng.sample(group, per_module))
    return out


def generate() -> None:
    """Write the mutants and collect which tests reach each function (runs the selected tests once)."""
    # `mutmut run` with a filter generates and collects stats, then runs only the matching mutants: a
    # filter on the 9 mutants of the small claims module keeps the set-up step cheap.
    _mutmut("run", "supcon_ray.stats.claims.*", check=False)


def table(drawn: list[str], status: dict[str, str]) -> tuple[str, list[str]]:
    """The per-module Markdown table of the drawn mutants, and the survivors' names."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for n in drawn:
        counts[module_of(n)][status.get(n, "not checked")] += 1
    rows = ["| module | drawn | killed | survived | no tests | timeout | score |", "|---|---:|---:|---:|---:|---:|---:|"]
    total: dict[str, int] = defaultdict(int)
    for module in sorted(counts):
        c = counts[module]
        for k, v in c.items():
            total[k] += v
        rows.append(_row(module.removeprefix("supcon_ray."), c))
    rows.append(_row("**all**", total))
    survivors = [n for n in drawn if status.get(n) not in ("killed", "caught by type check", "not checked", "skipped")]
    return "\n".join(rows), survivors


def _row(label: str, c: dict[str, int]) -> str:
    scored = sum(c.get(k, 0) for k in SCORED)
    killed = c.get("killed", 0) + c.get("caught by type check", 0)
    score = f"{killed / scored:.0%}" if scored else "n/a"
    return (f"| {label} | {sum(c.values())} | {killed} | {c.get('survived', 0)} | {c.get('no tests', 0)} | "
            f"{c.get('timeout', 0) + c.get('suspicious', 0) + c.get('segfault', 0)} | {score} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--per-module", type=int, default=12, help="mutants drawn from each module file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (keep it to compare runs)")
    parser.add_argument("--module", action="append", default=[],
                        help="only modules whose dotted name contains this (repeatable), e.g. stats.drop")
    parser.add_argument("--fresh", action="store_true", help="delete mutants/ first (after changing tests)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--json", type=Path, help="write every drawn mutant's status here")
    parser.add_argument("--report-only", action="store_true", help="print the table of the last run, run nothing")
    parser.add_argument("--since", type=Path, help="a --json file of an earlier run: draw the same mutants and run only "
                        "those it did not kill (after adding tests; a test only added cannot revive a killed mutant)")
    args = parser.parse_args(argv)
    if args.per_module < 1:
        parser.error("--per-module must be at least 1")
    if args.fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    start = time.monotonic()
    if not (ROOT / "mutants").exists():
        print("mutation: generating mutants and mapping tests to functions (a few minutes)...", flush=True)
        generate()
    names = [n for n in statuses() if not args.module or any(m in module_of(n) for m in args.module)]
    if not names:
        print("mutation: no mutants match", args.module, file=sys.stderr)
        return 2
    earlier = json.loads(args.since.read_text()) if args.since else {}
    drawn = [n for n in earlier if n in set(names)] if earlier else sample(names, args.per_module, args.seed)
    run = [n for n in drawn if earlier.get(n) != "killed"]
    if not args.report_only and run:
        print(f"mutation: running {len(run)} of {len(names)} mutants (seed {args.seed})...", flush=True)
        _mutmut("run", "--max-children", str(args.max_children), *run, check=False)
    status = statuses() | {n: "killed" for n in drawn if earlier.get(n) == "killed"}
    text, survivors = table(drawn, status)
    print(text)
    print(f"\n{len(survivors)} survivor(s) ({time.monotonic() - start:.0f} s); `mutmut show NAME` prints each diff:")
    for n in survivors:
        print(f"  {n}: {status.get(n)}")
    if args.json:
        args.json.write_text(json.dumps({n: status.get(n, "not checked") for n in drawn}, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
