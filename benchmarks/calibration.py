"""Calibration of the stability statistics on simulated studies with known truth.

``python -m benchmarks.calibration [--sims N]`` simulates one-factor studies (seeds nested in
settings, settings paired and correlated between the losses; :mod:`supcon_ray.stats.simulate`) for
3, 6 and 12 settings x 2, 3 and 5 seeds, and measures, per design:

* false-claim rate: a claim of either direction when the true ratio is 1 (nominal 0.05);
* coverage of the 95% interval for sigma_a(CE) / sigma_a(SupCon) (true ratio 1 and 2);
* power: the right claim (``supcon_less_sensitive``) when the true ratio is 2 and 4;
* the rejection rate of the method this project used before (Brown-Forsythe on pooled trials), for contrast;
* a four-factor null study: the chance that a report makes any claim (Holm across factors + pooled test).

``--factors 3,4,3 --seeds 3`` instead simulates one multi-factor design (here the Fig. 4a study's:
3 optimizers, 4 augmentations, 3 learning rates), every factor with the same true ratio, and
measures the report-level (pooled) claim: false claims at ratio 1, interval coverage, and power at
ratios 2 and 4; writes ``benchmarks/out/calibration_design.json``.

It prints a Markdown table and writes ``benchmarks/out/calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import pandas as pd
from scipy import stats as sps

from benchmarks.common import write_json
from supcon_ray.stats import analyze_factors
from supcon_ray.stats.simulate import simulate_factor

DESIGNS = [(k, s) for k in (3, 6, 12) for s in (2, 3, 5)]


def _one_factor(rng: np.random.Generator, k: int, s: int, ratio: float) -> dict:
    df = simulate_factor(rng, k, s, ratio=ratio)
    factor, _ = analyze_factors(df, "test_top1", sensitivity=False)
    f = factor[0]
    ce, sup = (df[df.loss == x]["test_top1"].to_numpy() for x in ("ce", "supcon"))
    return {"claim": f["claim"], "covered": bool(f["ci95"][0] <= ratio <= f["ci95"][1]),
            "naive_reject": bool(sps.levene(ce, sup, center="median").pvalue < 0.05)}


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def _design(rng: np.random.Generator, settings: list[int], seeds: int, ratio: float) -> dict:
    df = pd.concat([simulate_factor(rng, k, seeds, ratio=ratio, factor=f"f{i}") for i, k in enumerate(settings)],
                   ignore_index=True)
    factors, overall = analyze_factors(df, "test_top1", sensitivity=False)
    return {"claim": overall["claim"], "covered": bool(overall["ci95"][0] <= ratio <= overall["ci95"][1]),
            "factor_claims": [f["claim"] for f in factors]}


def calibrate_design(settings: list[int], seeds: int, n: int) -> dict:
    """Pooled-claim rates of one multi-factor design (see the module docstring)."""
    rng = np.random.default_rng(2026)
    runs = {ratio: [_design(rng, settings, seeds, ratio) for _ in range(n)] for ratio in (1.0, 2.0, 4.0)}
    directional = ("supcon_less_sensitive", "ce_less_sensitive")
    return {
        "settings": settings, "seeds": seeds, "sims": n,
        "false_claim": float(np.mean([r["claim"] in directional for r in runs[1.0]])),
        "coverage_ratio1": float(np.mean([r["covered"] for r in runs[1.0]])),
        "coverage_ratio2": float(np.mean([r["covered"] for r in runs[2.0]])),
        "power_ratio2": float(np.mean([r["claim"] == "supcon_less_sensitive" for r in runs[2.0]])),
        "power_ratio4": float(np.mean([r["claim"] == "supcon_less_sensitive" for r in runs[4.0]])),
        "any_factor_claim_ratio1": float(np.mean([any(c in directional for c in r["factor_claims"]) for r in runs[1.0]])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=400, help="simulated studies per design and truth (default 400)")
    ap.add_argument("--factors", help="one multi-factor design instead: settings per factor, e.g. 3,4,3")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per setting for --factors (default 3)")
    args = ap.parse_args(argv)
    n = args.sims
    if args.factors:
        try:
            settings = [int(k) for k in args.factors.split(",")]
        except ValueError:
            ap.error(f"--factors: {args.factors!r} is not a comma-separated list of setting counts, e.g. 3,4,3")
        if any(k < 2 for k in settings) or args.seeds < 2:
            ap.error("--factors: every factor needs at least 2 settings, and --seeds at least 2")
        start = time.perf_counter()
        r = calibrate_design(settings, args.seeds, n)
        print(f"{n} simulated studies per truth; factors of {args.factors} settings x {args.seeds} seeds; pooled claim:")
        print("| false claims, ratio 1 | 95% CI coverage, ratio 1 | coverage, ratio 2 | power, ratio 2 | power, ratio 4 | any factor claims, ratio 1 |")
        print("|---:|---:|---:|---:|---:|---:|")
        print(f"| {r['false_claim']:.3f} | {r['coverage_ratio1']:.3f} | {r['coverage_ratio2']:.3f} | {r['power_ratio2']:.3f} "
              f"| {r['power_ratio4']:.3f} | {r['any_factor_claim_ratio1']:.3f} |")
        print(f"Wall time {time.perf_counter() - start:.0f} s.")
        write_json(f"calibration_design_{'-'.join(map(str, settings))}x{args.seeds}", r)
        return 0
    rng = np.random.default_rng(2026)
    rows = []
    start = time.perf_counter()
    for k, s in DESIGNS:
        runs = {ratio: [_one_factor(rng, k, s, ratio) for _ in range(n)] for ratio in (1.0, 2.0, 4.0)}
        null = runs[1.0]
        rows.append({
            "settings": k, "seeds": s,
            "false_claim": float(np.mean([r["claim"] in ("supcon_less_sensitive", "ce_less_sensitive") for r in null])),
            "insufficient": float(np.mean([r["claim"] == "insufficient" for r in null])),
            "coverage_ratio1": float(np.mean([r["covered"] for r in null])),
            "coverage_ratio2": float(np.mean([r["covered"] for r in runs[2.0]])),
            "power_ratio2": float(np.mean([r["claim"] == "supcon_less_sensitive" for r in runs[2.0]])),
            "power_ratio4": float(np.mean([r["claim"] == "supcon_less_sensitive" for r in runs[4.0]])),
            "naive_false_claim": float(np.mean([r["naive_reject"] for r in null])),
        })
        print(f"  {k} settings x {s} seeds done ({time.perf_counter() - start:.0f} s)", flush=True)
    any_claim = []
    for _ in range(n):
        df = pd.concat([simulate_factor(rng, 6, 3, factor=f"f{i}") for i in range(4)], ignore_index=True)
        factors, overall = analyze_factors(df, "test_top1", sensitivity=False)
        claims = [f["claim"] for f in factors] + [overall["claim"]]
        any_claim.append(any(c in ("supcon_less_sensitive", "ce_less_sensitive") for c in claims))
    family = float(np.mean(any_claim))
    se = _se(0.05, n)
    print(f"\n{n} simulated studies per cell; Monte-Carlo standard error at 0.05 is {se:.3f}, at 0.95 {se:.3f}.")
    print("| settings x seeds | false claims (ratio 1) | old test's false claims | 95% CI coverage, ratio 1 | coverage, ratio 2 | power, ratio 2 | power, ratio 4 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        note = " (insufficient)" if r["insufficient"] == 1 else ""
        print(f"| {r['settings']} x {r['seeds']} | {r['false_claim']:.3f}{note} | {r['naive_false_claim']:.3f} | "
              f"{r['coverage_ratio1']:.3f} | {r['coverage_ratio2']:.3f} | {r['power_ratio2']:.3f} | {r['power_ratio4']:.3f} |")
    print(f"\nFour null factors (6 settings x 3 seeds each) in one report: any claim in {family:.3f} of reports.")
    print(f"Wall time {time.perf_counter() - start:.0f} s.")
    write_json("calibration", {"sims": n, "designs": rows, "four_null_factors_any_claim": family,
                                 "model": "setting_std 0.03 (SupCon), seed_std 0.01, pair_corr 0.5"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
