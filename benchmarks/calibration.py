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
collapse at chance; heavy-tailed (t3) seed noise; a bimodal collapse (at CE's two most extreme
settings each seed lands at chance with probability 1/2). And the committed studies' own per-setting
seed noise (:data:`PATTERN_FOLDERS`): every factor of every published study, each setting with its
observed seed std and the profiles rescaled to equal spreads (ratio 1) or CE's twice SupCon's, at the
study's own number of settings and 3 seeds (:func:`supcon_ray.stats.simulate.pattern_tables`); these
rows also carry power at ratio 2. ``--question study``: every claim the report prints, on whole simulated
studies through :func:`supcon_ray.analyze` (:mod:`benchmarks.study_calibration`; ``--jobs 2`` on two
cores). ``--question one-method``: a loss alone (the temperature studies), its
spread tested against no effect beyond seed noise, under even, uneven and heavy-tailed seed noise.
Writes ``benchmarks/out/calibration.json`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from benchmarks.common import write_json
from supcon_ray.stats import SettingTable, compare, compare_these, spread_of_one
from supcon_ray.stats.paired import uneven_noise
from supcon_ray.stats.settings import ALPHA
from supcon_ray.stats.simulate import NoisePattern, bimodal_tables, pattern_tables, simulate_tables, spread_ratio

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
    "heavy-tailed seed noise (t3)": {"setting_std": 0.03, "noise": "t3"},
    "bimodal collapse": {"setting_std": 0.03, "bimodal": True},
}
#: Truths the uneven-noise rule of "beyond" was not chosen on (issue 40, item 4); that question only.
SPLIT_TRUTHS = {
    "split at one setting": {"setting_std": 0.03, "bimodal": True, "split": "one"},
    "split at two settings": {"setting_std": 0.03, "bimodal": True, "split": "two"},
    "split in both losses": {"setting_std": 0.03, "bimodal": True, "split": "two", "both": True},
}
#: Published study folders whose per-setting seed noise is simulated (each factor with both losses).
PATTERN_FOLDERS = tuple(str(Path(__file__).resolve().parents[1] / "docs" / "results" / name)
                        for name in ("fig4a-digits", "fig4a-cifar10-subset"))
PATTERN_SEEDS = 3
THESE_DESIGNS = [(3, 3), (4, 3)]
BEYOND_DESIGNS = [(6, 4), (12, 3)]
BEYOND_TRUTHS = ["spread 3x noise", "spread = noise", "CE noise 3x", "pair corr 0", "pair corr 0.9", "heavy tails (t3)",
                 "heavy-tailed seed noise (t3)", "bimodal collapse", "split at one setting", "split at two settings",
                 "split in both losses"]
#: Seeds split at some settings: also at six seeds, where a split shows in all but 2^(1 - 6) of draws.
SPLIT_DESIGNS = [(6, 6)]
DIRECTIONAL = (1, -1)


def _covered(ci: tuple[float, float], truth: float) -> bool:
    return bool(ci[0] <= truth <= ci[1])


def _simulator(k: int, s: int, truth: dict | NoisePattern):
    """``draw(rng, ratio) -> (block, true means)`` for one truth and design."""
    if isinstance(truth, NoisePattern):
        return lambda rng, ratio: pattern_tables(rng, truth, s, ratio)
    kw = {"seed_std": SEED_STD, **truth}
    if kw.pop("bimodal", False):
        return lambda rng, ratio: bimodal_tables(rng, k, s, ratio, kw["setting_std"], kw["seed_std"],
                                                 split=kw.get("split", "ends"), both=kw.get("both", False))
    exact = not kw.get("collapsed")
    return lambda rng, ratio: simulate_tables(rng, k, s, ratio, exact_spread=exact or ratio != 1.0, **kw)


def these_cell(rng: np.random.Generator, k: int, s: int, truth: dict | NoisePattern, sims: int) -> dict:
    """False claims and coverage at ratio 1, coverage and power at ratio 2, power at ratio 4, for one truth."""
    draw = _simulator(k, s, truth)
    zero = isinstance(truth, dict) and truth["setting_std"] == 0
    claims, cover1, cover2, power2, power4 = [], [], [], [], []
    for _ in range(sims):
        block, means = draw(rng, 1.0)
        r = compare_these([block], interval=not zero, spread_intervals=False)
        claims.append(r.p_value < ALPHA and not math.isnan(r.ratio))
        if not zero:
            cover1.append(_covered(r.ci95, spread_ratio(means)))
            block, means = draw(rng, 2.0)
            r = compare_these([block], spread_intervals=False)
            cover2.append(_covered(r.ci95, spread_ratio(means)))
            power2.append(r.p_value < ALPHA and r.direction > 0)
            block, _ = draw(rng, 4.0)
            r = compare_these([block], interval=False)
            power4.append(r.p_value < ALPHA and r.direction > 0)
    mean = lambda x: float(np.mean(x)) if x else math.nan  # noqa: E731
    return {"false_claim": mean(claims), "coverage_ratio1": mean(cover1), "coverage_ratio2": mean(cover2),
            "power_ratio2": mean(power2), "power_ratio4": mean(power4)}


def study_patterns(folders: tuple[str, ...] = PATTERN_FOLDERS) -> list[NoisePattern]:
    """Every factor with both losses of the published studies: each setting's mean and seed std of the
    analysed test top-1 (completed runs)."""
    from supcon_ray.results.folders import load, stats_rows
    from supcon_ray.stats import completed

    out = []
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        trials, _, _ = load([folder])
        rows = completed(stats_rows(trials), "test_top1")
        for (study, factor), g in rows.groupby(["study", "factor"], sort=True):
            per = g.groupby(["loss", "setting"])["test_top1"].agg(["mean", "std", "size"])
            if set(per.index.get_level_values(0)) != {"ce", "supcon"}:
                continue
            settings = sorted(set(per.loc["ce"].index) & set(per.loc["supcon"].index))
            if len(settings) < 2:
                continue
            means = {loss: per.loc[loss].loc[settings, "mean"].to_numpy() for loss in ("ce", "supcon")}
            stds = {loss: per.loc[loss].loc[settings, "std"].fillna(0.0).to_numpy() for loss in ("ce", "supcon")}
            out.append(NoisePattern(f"{study} {factor}", means, stds))
    return out


def beyond_cell(rng: np.random.Generator, k: int, s: int, truth: dict, sims: int) -> dict:
    kw = {"seed_std": SEED_STD, **truth}
    if kw.pop("bimodal", False):  # SupCon's effects are CE's divided by the ratio: the population ratio is exact
        def draw(rng, ratio):
            return bimodal_tables(rng, k, s, ratio, kw["setting_std"], kw["seed_std"],
                                  split=kw.get("split", "ends"), both=kw.get("both", False))
    else:
        def draw(rng, ratio):
            return simulate_tables(rng, k, s, ratio, **kw)
    # a factor whose seed noise is too uneven for the swap test gets no answer ("cannot tell": no claim, the
    # interval [0, inf]), exactly as the report gives it (supcon_ray.stats.paired.uneven_noise)
    claims, cover1, bounded, cover2, power4, uneven = [], [], [], [], [], []
    for _ in range(sims):
        block, _ = draw(rng, 1.0)
        flagged = bool(uneven_noise(*block))
        uneven.append(flagged)
        r = compare([block], interval=not flagged)
        claims.append(r.p_value < ALPHA and not flagged)
        cover1.append(flagged or _covered(r.ci95, 1.0))
        bounded.append(not flagged and r.ci95[0] > 0 and math.isfinite(r.ci95[1]))
        block, _ = draw(rng, 2.0)
        cover2.append(bool(uneven_noise(*block)) or _covered(compare([block]).ci95, 2.0))
        block, _ = draw(rng, 4.0)
        r = compare([block], interval=False)
        power4.append(r.p_value < ALPHA and r.direction > 0 and not uneven_noise(*block))
    return {"false_claim": float(np.mean(claims)), "coverage_ratio1": float(np.mean(cover1)),
            "bounded_ratio1": float(np.mean(bounded)), "coverage_ratio2": float(np.mean(cover2)),
            "power_ratio4": float(np.mean(power4)), "uneven_ratio1": float(np.mean(uneven))}


def _drop_draw(k: int, s: int, truth: dict | NoisePattern, equal: bool):
    """``draw(rng, ratio) -> (block, true means)`` for the drop: with ``equal``, both losses' true drops
    are tied by ``drop_CE = ratio * drop_SupCon`` (bimodal collapse, and study patterns with SupCon's
    profile given to CE); otherwise the truth's own means (their true drops differ)."""
    if isinstance(truth, NoisePattern) and equal:
        same = NoisePattern(truth.name, {"ce": truth.means["supcon"], "supcon": truth.means["supcon"]}, truth.seed_stds)
        return lambda rng, ratio: pattern_tables(rng, same, s, ratio)
    return _simulator(k, s, truth)


def _true_drop(m: np.ndarray, base: int) -> float:
    return float(m[base] - np.delete(m, base).mean())


def drop_cell(rng: np.random.Generator, k: int, s: int, truth: dict | NoisePattern, sims: int) -> dict:
    """The drop from the base (base: the middle setting): coverage of each loss's drop and of the
    difference CE - SupCon (its non-coverage at a true difference of 0 is the false-claim rate), at the
    truth's own means; with tied drops (bimodal collapse, study patterns) the false-claim rate at equal
    drops and the rate of "no meaningful difference" (TOST at m = 1.25) when the true ratio is m."""
    from supcon_ray.stats.agreement import DEFAULT_EQUIVALENCE_RATIO as M
    from supcon_ray.stats.drop import compare_drops, equivalence_p, loss_drop

    base = k // 2
    tied = isinstance(truth, NoisePattern) or bool(isinstance(truth, dict) and truth.get("bimodal"))
    draw = _drop_draw(k, s, truth, tied)
    cover = {"ce": [], "supcon": [], "difference": []}
    claims, equivalent = [], []
    for _ in range(sims):
        (ce_t, sc_t), means = draw(rng, 1.0)
        b = ce_t.settings[base]
        ce, sc = loss_drop([(ce_t, b)]), loss_drop([(sc_t, b)])
        c = compare_drops(ce, sc)
        truths = {loss: _true_drop(means[loss], base) for loss in ("ce", "supcon")}
        cover["ce"].append(_covered(ce.ci95, truths["ce"]))
        cover["supcon"].append(_covered(sc.ci95, truths["supcon"]))
        cover["difference"].append(_covered(c.difference_ci95, truths["ce"] - truths["supcon"]))
        if tied:
            claims.append(c.p_value < ALPHA)
            (ce_t, sc_t), _ = draw(rng, M)
            ce, sc = loss_drop([(ce_t, b)]), loss_drop([(sc_t, b)])
            p = equivalence_p(ce, sc, M)
            equivalent.append(bool(p < ALPHA))
    mean = lambda x: float(np.mean(x)) if x else math.nan  # noqa: E731
    return {"coverage_ce": mean(cover["ce"]), "coverage_supcon": mean(cover["supcon"]),
            "coverage_difference": mean(cover["difference"]), "false_claim_equal_drops": mean(claims),
            "equivalence_at_m": mean(equivalent)}


def tost_cell(rng: np.random.Generator, k: int, s: int, truth: dict | NoisePattern, sims: int) -> dict:
    """How often "for these settings" says "no meaningful difference" (TOST at m = 1.25, unadjusted) when
    the true spread ratio is exactly m, and when it is 1 (its power)."""
    from supcon_ray.stats.agreement import DEFAULT_EQUIVALENCE_RATIO as M

    draw = _simulator(k, s, truth)
    at_m, at_1 = [], []
    for _ in range(sims):
        block, _ = draw(rng, M)
        at_m.append(compare_these([block], interval=False, equivalence_ratio=M).tost_p < ALPHA)
        block, _ = draw(rng, 1.0)
        at_1.append(compare_these([block], interval=False, equivalence_ratio=M).tost_p < ALPHA)
    return {"equivalence_at_m": float(np.mean(at_m)), "equivalence_at_1": float(np.mean(at_1))}


#: One method's truths (its own table: no comparison): per-setting seed std relative to the base noise.
ONE_METHOD_NOISE = {"even noise": None, "uneven noise": (0.2, 0.2, 3.0, 0.2, 1.0), "heavy-tailed seed noise (t3)": "t3"}
ONE_METHOD_DESIGNS = [(4, 3), (9, 3), (4, 2)]


def _one_table(rng: np.random.Generator, k: int, s: int, noise, spread: float) -> SettingTable:
    """One loss's table: ``k`` settings whose true means have std ``spread`` exactly, ``s`` seeds each, seed
    noise :data:`SEED_STD` scaled per setting (``noise``: a profile cycled over the settings, or ``"t3"``)."""
    z = rng.standard_normal(k)
    means = 0.8 + (spread * (z - z.mean()) / z.std(ddof=1) if spread > 0 else np.zeros(k))
    scale = np.full(k, SEED_STD) if noise in (None, "t3") else SEED_STD * np.resize(np.array(noise), k)
    draws = rng.standard_t(3, (k, s)) / math.sqrt(3) if noise == "t3" else rng.standard_normal((k, s))
    y = means[:, None] + scale[:, None] * draws
    mean = y.mean(axis=1)
    return SettingTable(tuple(f"s{i}" for i in range(k)), np.full(k, float(s)), mean,
                        ((y - mean[:, None]) ** 2).sum(axis=1))


def one_method_cell(rng: np.random.Generator, k: int, s: int, noise, sims: int) -> dict:
    """The one-method test of "no effect beyond seed noise": false claims ("moves") at spread 0, coverage of the
    spread's 95% interval and power at spreads of 1x and 2x the seed noise."""
    false, cover1, power1, power2 = [], [], [], []
    for _ in range(sims):
        false.append(spread_of_one([_one_table(rng, k, s, noise, 0.0)], interval=False).p_value < ALPHA)
        r = spread_of_one([_one_table(rng, k, s, noise, SEED_STD)])
        cover1.append(_covered(r.ci95, SEED_STD))
        power1.append(r.p_value < ALPHA)
        power2.append(spread_of_one([_one_table(rng, k, s, noise, 2 * SEED_STD)], interval=False).p_value < ALPHA)
    return {"false_claim": float(np.mean(false)), "coverage_spread_1x": float(np.mean(cover1)),
            "power_spread_1x": float(np.mean(power1)), "power_spread_2x": float(np.mean(power2))}


def _f(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def _table(rng: np.random.Generator, cells: list[tuple], cell, sims: int, columns: dict[str, str]) -> list[dict]:
    """Run ``cell(rng, settings, seeds, truth, sims)`` for every ``(name, truth, settings, seeds)`` of ``cells``,
    printing a Markdown row each (``columns``: heading -> result key); return the rows."""
    print("| truth | settings x seeds | " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    rows = []
    for name, truth, k, s in cells:
        r = {"truth": name, "settings": k, "seeds": s, **cell(rng, k, s, truth, sims)}
        rows.append(r)
        print(f"| {name} | {k} x {s} | " + " | ".join(_f(r[key]) for key in columns.values()) + " |", flush=True)
    return rows


def _cells(args) -> list[tuple]:
    """(name, truth, settings, seeds) of every "these settings" cell the arguments select."""
    cells = [(name, truth, k, s) for name, truth in TRUTHS.items() for k, s in THESE_DESIGNS]
    if not args.truth or "study patterns" in args.truth:
        cells += [(f"pattern: {p.name}", p, len(p.means["ce"]), PATTERN_SEEDS) for p in study_patterns()]
    return [c for c in cells if not args.truth or c[0] in args.truth
            or (c[0].startswith("pattern") and "study patterns" in args.truth)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=2000, help="simulated factors per design and truth (default 2000)")
    ap.add_argument("--question", choices=("these", "beyond", "both", "drop", "agreement", "one-method", "study"),
                    default="both",
                    help="both: the two questions' ratio tests; drop: the drop from the base; agreement: the "
                         "equivalence test (TOST) of 'no meaningful difference'; one-method: a loss alone, its "
                         "spread against no effect beyond seed noise; study: every claim of the report on whole "
                         "simulated studies (benchmarks.study_calibration)")
    ap.add_argument("--jobs", type=int, default=1, help="processes for --question study (default 1)")
    ap.add_argument("--truth", action="append", metavar="NAME",
                    help="only this truth (repeatable; 'study patterns': the published studies' noise; default: all)")
    args = ap.parse_args(argv)
    if args.sims < 10:
        ap.error("--sims: at least 10")
    from benchmarks.study_calibration import STUDY_CELLS  # waits: only to check the names

    allowed = [*TRUTHS, *SPLIT_TRUTHS, "study patterns", *(c[0] for c in STUDY_CELLS)]
    for name in args.truth or []:
        if name not in allowed:
            ap.error(f"--truth: {name!r} must be one of: {', '.join(allowed)}")
    n = args.sims
    start = time.perf_counter()
    out = {"sims": n, "seed_std": SEED_STD, "alpha": ALPHA, "these_settings": [], "beyond": []}
    se = math.sqrt(0.05 * 0.95 / n)
    if args.question in ("these", "both"):
        rng = np.random.default_rng(2026)
        print(f"For these settings: {n} simulated factors per cell; Monte-Carlo standard error {se:.3f} at 0.05 and 0.95.")
        print("| truth | settings x seeds | false claims, ratio 1 | coverage, ratio 1 | coverage, ratio 2 "
              "| power, ratio 2 | power, ratio 4 |")
        print("|---|---|---:|---:|---:|---:|---:|")
        cells = [(name, truth, k, s) for name, truth in TRUTHS.items() for k, s in THESE_DESIGNS]
        if not args.truth or "study patterns" in args.truth:
            cells += [(f"pattern: {p.name}", p, len(p.means["ce"]), PATTERN_SEEDS) for p in study_patterns()]
        for name, truth, k, s in cells:
            if args.truth and name not in args.truth and not (name.startswith("pattern") and "study patterns" in args.truth):
                continue
            r = {"truth": name, "settings": k, "seeds": s, **these_cell(rng, k, s, truth, n)}
            out["these_settings"].append(r)
            print(f"| {name} | {k} x {s} | {_f(r['false_claim'])} | {_f(r['coverage_ratio1'])} | "
                  f"{_f(r['coverage_ratio2'])} | {_f(r['power_ratio2'])} | {_f(r['power_ratio4'])} |", flush=True)
    if args.question in ("beyond", "both"):
        rng = np.random.default_rng(2027)
        print(f"\nBeyond these settings: {n} simulated factors per cell.")
        print("| truth | settings x seeds | false claims, ratio 1 | coverage, ratio 1 | bounded both ends, ratio 1 "
              "| coverage, ratio 2 | power, ratio 4 | 'seed noise too uneven', ratio 1 |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for name in BEYOND_TRUTHS:
            if args.truth and name not in args.truth:
                continue
            truth = {**TRUTHS, **SPLIT_TRUTHS}[name]
            for k, s in BEYOND_DESIGNS + (SPLIT_DESIGNS if truth.get("bimodal") else []):
                r = {"truth": name, "settings": k, "seeds": s, **beyond_cell(rng, k, s, truth, n)}
                out["beyond"].append(r)
                print(f"| {name} | {k} x {s} | {_f(r['false_claim'])} | {_f(r['coverage_ratio1'])} | "
                      f"{_f(r['bounded_ratio1'])} | {_f(r['coverage_ratio2'])} | {_f(r['power_ratio4'])} | "
                      f"{_f(r['uneven_ratio1'])} |", flush=True)
    if args.question == "drop":
        print(f"Drop from the base (base: the middle setting): {n} simulated factors per cell; Monte-Carlo standard "
              f"error {se:.3f} at 0.05 and 0.95.")
        out["drop"] = _table(np.random.default_rng(2028), _cells(args), drop_cell, n, {
            "coverage, CE drop": "coverage_ce", "coverage, SupCon drop": "coverage_supcon",
            "coverage, difference": "coverage_difference", "false claims, equal drops": "false_claim_equal_drops",
            "'no meaningful difference' at ratio 1.25": "equivalence_at_m"})
    if args.question == "agreement":
        print(f"'No meaningful difference' (TOST, m = 1.25) for these settings: {n} simulated factors per cell.")
        cells = [c for c in _cells(args) if not (isinstance(c[1], dict) and c[1]["setting_std"] == 0)]
        out["agreement"] = _table(np.random.default_rng(2029), cells, tost_cell, n, {
            "said at true ratio 1.25 (nominal <= 0.05)": "equivalence_at_m", "said at true ratio 1": "equivalence_at_1"})
    if args.question == "one-method":
        print(f"One method, 'moves' against no effect beyond seed noise: {n} simulated factors per cell; seed std "
              f"{SEED_STD} (uneven: per-setting multiples {ONE_METHOD_NOISE['uneven noise']}).")
        cells = [(name, noise, k, s) for name, noise in ONE_METHOD_NOISE.items() for k, s in ONE_METHOD_DESIGNS]
        out["one_method"] = _table(np.random.default_rng(2030), cells, one_method_cell, n, {
            "false claims, spread 0": "false_claim", "coverage, spread 1x noise": "coverage_spread_1x",
            "power, spread 1x": "power_spread_1x", "power, spread 2x": "power_spread_2x"})
    if args.question == "study":
        from benchmarks.study_calibration import STUDY_CELLS, markdown, run_cells  # waits: builds reports

        print(f"Every claim of the report on whole simulated studies: {n} studies per truth.")
        names = [c[0] for c in STUDY_CELLS]
        out["study"] = run_cells(n, args.jobs, names=[t for t in (args.truth or []) if t in names] or None)
        print(markdown(out["study"]))
    out["seconds"] = time.perf_counter() - start
    print(f"\nWall time {out['seconds']:.0f} s.")
    part = "" if args.question == "both" else f"_{args.question}"
    write_json(f"calibration{part}{'_part' if args.truth else ''}", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
