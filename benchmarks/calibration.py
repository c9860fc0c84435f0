"""Calibration of both questions' statistics on simulated studies with known truth.

``python -m benchmarks.calibration [--sims N]`` simulates one factor at a time
(:func:`supcon_ray.stats.simulate.simulate_tables`: seeds nested in settings, settings paired and
correlated between the losses) under several kinds of truth, and measures, per question and design:

* false claims: a claim of either direction when the truth is "no difference" (nominal 0.05);
* coverage of the 95% interval for the ratio CE/SupCon at true ratio 1 and 2 (nominal 0.95);
* power: the right claim (``supcon_less_sensitive``) at true ratio 4;
* for "beyond": the share of null intervals bounded at both ends.

**For these settings** (3 and 4 settings x 3 seeds): the truth is the spread of the setting means
actually drawn in each simulation; the simulated means are rescaled so that it is exactly the
target ratio (``exact_spread``), except under "collapse", where CE's last setting and SupCon's first
sit at chance with no seed noise. **Beyond these settings** (6 settings x 4 seeds, 12 x 3): the truth
is the generating ratio of population spreads.

Truths: SupCon's spread 3x, 1x, 10x and 30x the seed noise and 0 (no spread at all: false claims only);
CE's seed noise 3x SupCon's; pair correlation 0 and 0.9; heavy-tailed (t3) setting effects; a
collapse at chance. Writes ``benchmarks/out/calibration.json`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from benchmarks.common import write_json
from supcon_ray.stats import compare, compare_these
from supcon_ray.stats.settings import ALPHA
from supcon_ray.stats.simulate import simulate_tables, spread_ratio

SEED_STD = 0.01
TRUTHS = {
    "spread 3x noise": {"setting_std": 0.03},
    "spread = noise": {"setting_std": 0.01},
    "spread 10x noise": {"setting_std": 0.10},
    # beyond the CIFAR subset's augmentation spreads (10 to 15x the seed std): intervals narrower than a grid step
    "spread 30x noise": {"setting_std": 0.06, "seed_std": 0.002},
    "spread 0": {"setting_std": 0.0},
    "CE noise 3x": {"setting_std": 0.03, "seed_std": (0.03, 0.01)},
    "pair corr 0": {"setting_std": 0.03, "pair_corr": 0.0},
    "pair corr 0.9": {"setting_std": 0.03, "pair_corr": 0.9},
    "heavy tails (t3)": {"setting_std": 0.03, "effects": "t3"},
    "collapse at chance": {"setting_std": 0.03, "collapsed": 1},
}
THESE_DESIGNS = [(3, 3), (4, 3)]
BEYOND_DESIGNS = [(6, 4), (12, 3)]
BEYOND_TRUTHS = ["spread 3x noise", "spread = noise", "CE noise 3x", "pair corr 0", "pair corr 0.9", "heavy tails (t3)"]
DIRECTIONAL = (1, -1)


def _covered(ci: tuple[float, float], truth: float) -> bool:
    return bool(ci[0] <= truth <= ci[1])


def these_cell(rng: np.random.Generator, k: int, s: int, truth: dict, sims: int) -> dict:
    """False claims and coverage at ratio 1, coverage at ratio 2, power at ratio 4, for one truth."""
    kw = {"seed_std": SEED_STD, **truth}
    zero = kw["setting_std"] == 0
    claims, cover1, cover2, power4 = [], [], [], []
    for _ in range(sims):
        block, means = simulate_tables(rng, k, s, 1.0, exact_spread=not kw.get("collapsed"), **kw)
        r = compare_these([block], interval=not zero, spread_intervals=False)
        claims.append(r.p_value < ALPHA and not math.isnan(r.ratio))
        if not zero:
            cover1.append(_covered(r.ci95, spread_ratio(means)))
            block, means = simulate_tables(rng, k, s, 2.0, exact_spread=True, **kw)
            cover2.append(_covered(compare_these([block], spread_intervals=False).ci95, spread_ratio(means)))
            block, _ = simulate_tables(rng, k, s, 4.0, exact_spread=True, **kw)
            r = compare_these([block], interval=False)
            power4.append(r.p_value < ALPHA and r.direction > 0)
    mean = lambda x: float(np.mean(x)) if x else math.nan  # noqa: E731
    return {"false_claim": mean(claims), "coverage_ratio1": mean(cover1), "coverage_ratio2": mean(cover2),
            "power_ratio4": mean(power4)}


def beyond_cell(rng: np.random.Generator, k: int, s: int, truth: dict, sims: int) -> dict:
    kw = {"seed_std": SEED_STD, **truth}
    claims, cover1, bounded, cover2, power4 = [], [], [], [], []
    for _ in range(sims):
        block, _ = simulate_tables(rng, k, s, 1.0, **kw)
        r = compare([block])
        claims.append(r.p_value < ALPHA)
        cover1.append(_covered(r.ci95, 1.0))
        bounded.append(r.ci95[0] > 0 and math.isfinite(r.ci95[1]))
        block, _ = simulate_tables(rng, k, s, 2.0, **kw)
        cover2.append(_covered(compare([block]).ci95, 2.0))
        block, _ = simulate_tables(rng, k, s, 4.0, **kw)
        r = compare([block], interval=False)
        power4.append(r.p_value < ALPHA and r.direction > 0)
    return {"false_claim": float(np.mean(claims)), "coverage_ratio1": float(np.mean(cover1)),
            "bounded_ratio1": float(np.mean(bounded)), "coverage_ratio2": float(np.mean(cover2)),
            "power_ratio4": float(np.mean(power4))}


def _f(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=2000, help="simulated factors per design and truth (default 2000)")
    ap.add_argument("--question", choices=("these", "beyond", "both"), default="both")
    ap.add_argument("--truth", action="append", choices=list(TRUTHS), metavar="NAME",
                    help="only this truth (repeatable; default: all)")
    args = ap.parse_args(argv)
    if args.sims < 10:
        ap.error("--sims: at least 10")
    n = args.sims
    start = time.perf_counter()
    out = {"sims": n, "seed_std": SEED_STD, "alpha": ALPHA, "these_settings": [], "beyond": []}
    se = math.sqrt(0.05 * 0.95 / n)
    if args.question in ("these", "both"):
        rng = np.random.default_rng(2026)
        print(f"For these settings: {n} simulated factors per cell; Monte-Carlo standard error {se:.3f} at 0.05 and 0.95.")
        print("| truth | settings x seeds | false claims, ratio 1 | coverage, ratio 1 | coverage, ratio 2 | power, ratio 4 |")
        print("|---|---|---:|---:|---:|---:|")
        for name, truth in TRUTHS.items():
            if args.truth and name not in args.truth:
                continue
            for k, s in THESE_DESIGNS:
                r = {"truth": name, "settings": k, "seeds": s, **these_cell(rng, k, s, truth, n)}
                out["these_settings"].append(r)
                print(f"| {name} | {k} x {s} | {_f(r['false_claim'])} | {_f(r['coverage_ratio1'])} | "
                      f"{_f(r['coverage_ratio2'])} | {_f(r['power_ratio4'])} |", flush=True)
    if args.question in ("beyond", "both"):
        rng = np.random.default_rng(2027)
        print(f"\nBeyond these settings: {n} simulated factors per cell.")
        print("| truth | settings x seeds | false claims, ratio 1 | coverage, ratio 1 | bounded both ends, ratio 1 "
              "| coverage, ratio 2 | power, ratio 4 |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for name in BEYOND_TRUTHS:
            if args.truth and name not in args.truth:
                continue
            for k, s in BEYOND_DESIGNS:
                r = {"truth": name, "settings": k, "seeds": s, **beyond_cell(rng, k, s, TRUTHS[name], n)}
                out["beyond"].append(r)
                print(f"| {name} | {k} x {s} | {_f(r['false_claim'])} | {_f(r['coverage_ratio1'])} | "
                      f"{_f(r['bounded_ratio1'])} | {_f(r['coverage_ratio2'])} | {_f(r['power_ratio4'])} |", flush=True)
    out["seconds"] = time.perf_counter() - start
    print(f"\nWall time {out['seconds']:.0f} s.")
    part = "" if args.question == "both" else f"_{args.question}"
    write_json(f"calibration{part}{'_part' if args.truth else ''}", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
