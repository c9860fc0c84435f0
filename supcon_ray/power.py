"""``python -m supcon_ray.power STUDY_DIR [STUDY_DIR ...]``: what design would decide each question.

For every factor of every study folder, takes the seed noise (each loss's own) and SupCon's spread
across settings that the study measured, and prints the power of both questions ("for these
settings", "beyond these settings") for true ratios CE/SupCon of 1.5, 2 and 4 against settings x
seeds, and the smallest design reaching 80% power at ratio 2 (:mod:`supcon_ray.stats.power`). Each
factor's answer is planned at the level it faces in the report of these folders: alpha divided by the
size of the question's Holm family there (every compared factor, plus each pooled answer over two or
more of them; :func:`family_size`). Each design is priced: the trial-epochs of its analysed runs and
the hours they take at the study's own measured seconds per trial-epoch (:class:`Price`). The
simulation takes a while per factor, so a line on standard error says which factor it is on.
A pilot study works as well as a finished one. ``--json FILE`` writes every number.

Exit status 2 on a missing folder or a folder without trials.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .config import EXIT_USAGE, ConfigError
from .analysis import read_study_folders
from .analysis.units import default_baseline, setting_tables
from .results.cost import study_costs
from .results.folders import stats_rows
from .stats import completed, compare_these
from .stats.power import RATIOS, SEEDS, SETTINGS, Measured, plan
from .stats.settings import MIN_SETTINGS_BEYOND
from .stats.claims import display
from .stats.variance import components


def measured(rows: pd.DataFrame, metric: str, baselines: dict[str, str] | None = None) -> dict[str, Measured | str]:
    """Per ``study / factor`` (and compared method, where a factor compares several with the baseline): what it
    measured, or why it cannot be planned from. ``baselines``: each study's baseline (default: ``ce``)."""
    out: dict[str, Measured | str] = {}
    for (study, factor), g in rows.groupby(["study", "factor"], sort=True):
        done = completed(g, metric)
        tables = setting_tables(done, metric)
        study_rows = rows[rows["study"] == study] if "study" in rows else rows
        base = (baselines or {}).get(str(study)) or default_baseline(list(study_rows["loss"].astype(str)))
        methods = [x for x in sorted(set(g["loss"].astype(str))) if x != base]
        for method in methods or [None]:
            name = f"{study} / {factor}" + (f" ({method} vs {base})" if len(methods) > 1 else "")
            pair = (base, method)
            if method is None or not set(pair) <= set(tables):
                out[name] = f"needs completed runs of both {display(method or 'a second method')} and {display(base)}"
                continue
            out[name] = _measured_pair(tables, pair)
    return out


def family_size(names: list[str], pairs: dict[str, tuple[str, str] | None]) -> int:
    """The size of a question's Holm family in the report of these factors: one answer per factor and
    compared method (``names``), plus one pooled answer per compared pair pooled over two or more of them
    (``pairs``: each name's pair, ``None`` where it compares nothing)."""
    counts: dict[tuple[str, str], int] = {}
    for name in names:
        if pairs.get(name) is not None:
            counts[pairs[name]] = counts.get(pairs[name], 0) + 1
    return max(1, len(names) + sum(1 for c in counts.values() if c >= 2))


def _measured_pair(tables: dict, pair: tuple[str, str]) -> Measured | str:
    b, m = pair
    seed = {loss: components(tables[loss]).seed_std for loss in pair}
    if any(math.isnan(s) for s in seed.values()):  # no replicates
        return "needs 2 or more seeds per setting to measure seed noise"
    paired = sorted(set(tables[b].settings) & set(tables[m].settings))
    if len(paired) < 2:
        return "needs 2 or more settings run for both losses"
    blocks = [(tables[b].subset(paired), tables[m].subset(paired))]
    spread = compare_these(blocks, interval=False, names=pair).spreads[m] if min(t.n.min() for t in blocks[0]) >= 2 else 0.0
    # a spread measured at 0 gives no signal to scale: plan for one equal to the method's seed noise
    note = "" if spread > 0 else f" (measured 0: planned for a spread equal to {display(m)}'s seed std)"
    per_setting = {loss: tuple(float(np.sqrt(ss / (n - 1))) for n, ss in zip(tables[loss].n, tables[loss].ss) if n > 1)
                   for loss in pair}
    return Measured(seed[b], seed[m], spread if spread > 0 else seed[m], note, per_setting[b], per_setting[m], pair)


@dataclass(frozen=True)
class Price:
    """What one factor's design costs to run: analysed runs of ``epochs`` each, at ``seconds_per_epoch``
    (the study's own, measured over every run it recorded; NaN where it recorded no time)."""

    epochs: int
    seconds_per_epoch: float

    def of(self, settings: int, seeds: int, losses: int = 2) -> dict[str, float]:
        """Trial-epochs and hours of ``settings`` x ``seeds`` runs of each of ``losses`` methods."""
        trial_epochs = settings * seeds * losses * self.epochs
        return {"trial_epochs": trial_epochs, "hours": trial_epochs * self.seconds_per_epoch / 3600}


def prices(trials: pd.DataFrame, names: list[str]) -> dict[str, Price]:
    """Each planned factor's :class:`Price`: its analysed runs' median epochs, and its study's measured
    seconds per trial-epoch (:mod:`supcon_ray.results.cost`)."""
    costs = study_costs(trials)
    analysed = stats_rows(trials)
    out = {}
    for name in names:
        study, _, rest = name.partition(" / ")
        factor = rest.split(" (", 1)[0]
        rows = analysed[(analysed["study"] == study) & (analysed["factor"] == factor)]
        epochs = int(pd.to_numeric(rows.get("epochs"), errors="coerce").median()) if len(rows) else 0
        c = costs.get(study)
        rate = c.trial_seconds / c.trial_epochs if c is not None and c.trial_epochs and c.trial_seconds else math.nan
        out[name] = Price(epochs, rate)
    return out


def _price_cell(price: Price | None, settings: int, seeds: int) -> str:
    if price is None:
        return "n/a"
    p = price.of(settings, seeds)
    hours = f", {p['hours']:.2g} h" if math.isfinite(p["hours"]) else ""
    return f"{p['trial_epochs']:,} trial-epochs{hours}"


def _print_plan(name: str, m: Measured, result: dict[str, Any], price: Price | None = None) -> None:
    print(f"\n## {name}")
    b, s = display(m.names[0]), display(m.names[1])
    uneven = "".join(f"; {loss}'s largest at one setting {max(stds):.3g}" for loss, stds in
                     ((b, m.seed_stds_ce), (s, m.seed_stds_supcon)) if stds)
    print(f"Measured: seed std {b} {m.seed_std_ce:.3g}, {s} {m.seed_std_supcon:.3g} (pooled{uneven}; each simulated "
          f"setting draws its seed std from the measured settings'); {s}'s spread across settings "
          f"{m.spread_supcon:.3g}{m.note}. {result['sims']} simulated studies per cell (standard error about "
          f"{result['se_at_0.8']:.2f} near 0.8).")
    heads = " | ".join(f"these, ratio {r:g}" for r in RATIOS) + " | " + " | ".join(f"beyond, ratio {r:g}" for r in RATIOS)
    if price is not None:
        rate = (f"{price.seconds_per_epoch:.3g} s per trial-epoch, this study's own" if math.isfinite(price.seconds_per_epoch)
                else "no time recorded, so no hours")
        print(f"Cost: the analysed runs of both methods, {price.epochs} epochs each (the median of the factor's "
              f"runs), at {rate} (the factor's base "
              "runs are shared with the study's other factors; selection runs are extra).")
    print(f"| settings x seeds | {heads} | cost |")
    print("|---|" + "---:|" * (2 * len(RATIOS)) + "---:|")
    by = {(r["settings"], r["seeds"], r["ratio"]): r for r in result["rows"]}
    for k in SETTINGS:
        for s in SEEDS:
            cells = [f"{by[(k, s, r)]['these_settings']:.2f}" for r in RATIOS]
            cells += [f"{by[(k, s, r)]['beyond']:.2f}" if k >= MIN_SETTINGS_BEYOND else "cannot reach 0.05" for r in RATIOS]
            print(f"| {k} x {s} | " + " | ".join(cells) + f" | {_price_cell(price, k, s)} |")
    for q, label in (("these_settings", "for these settings"), ("beyond", "beyond these settings")):
        best = result["smallest_at_ratio_2"][q]
        if best:
            print(f"Smallest design with {result['target_power']:.0%} power at ratio 2, {label}: {best['settings']} settings "
                  f"x {best['seeds']} seeds per loss (power {best['power']:.2f}; "
                  f"{_price_cell(price, best['settings'], best['seeds'])}).")
        else:
            print(f"No design up to {max(SETTINGS)} settings x {max(SEEDS)} seeds reaches {result['target_power']:.0%} power "
                  f"at ratio 2, {label}.")


def main(argv: list[str] | None = None, prog: str = "python -m supcon_ray.power") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("results_dirs", nargs="+", metavar="STUDY_DIR", help="finished or pilot study folders")
    p.add_argument("--sims", type=int, default=100, help="simulated studies per design and ratio (default 100)")
    p.add_argument("--metric", default="test_top1", help="the trial column (default test_top1)")
    p.add_argument("--json", help="also write every number to this JSON file")
    args = p.parse_args(argv)
    if args.sims < 10:
        print("error: --sims: at least 10 simulated studies are needed", file=sys.stderr)
        return EXIT_USAGE
    try:
        trials, _, records = read_study_folders(args.results_dirs)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.metric not in trials:
        print(f"error: --metric: no column {args.metric!r} in the trials", file=sys.stderr)
        return EXIT_USAGE
    out = {}
    chosen = {s: r.analysis().baseline for s, r in records.items()}
    baselines = {s: b for s, b in chosen.items() if b}
    found = measured(stats_rows(trials), args.metric, baselines)
    size = family_size(list(found), {n: m.names if isinstance(m, Measured) else None for n, m in found.items()})
    print(f"Each answer is planned at the level it faces in this report's Holm family of {size} answer(s) per "
          f"question: {0.05 / size:.3g} (0.05 / {size}; Holm's first step, the level whenever no other answer "
          f"of the family is significant).")
    priced = prices(trials, list(found))
    todo = [n for n, m in found.items() if isinstance(m, Measured)]
    for name, m in found.items():
        if isinstance(m, str):
            print(f"\n## {name}\nCannot plan from this factor: it {m}.")
            out[name] = {"error": m}
            continue
        print(f"simulating {name} ({todo.index(name) + 1} of {len(todo)}): {len(SETTINGS) * len(SEEDS)} designs x "
              f"{len(RATIOS)} ratios, {args.sims} studies each ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = plan(m, sims=args.sims, family_size=size)
        print(f"  done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        price = priced.get(name)
        result["cost"] = [{"settings": k, "seeds": s, **{key: (v if math.isfinite(v) else None)
                                                        for key, v in price.of(k, s).items()}}
                          for k in SETTINGS for s in SEEDS]
        _print_plan(name, m, result, price)
        out[name] = result
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
