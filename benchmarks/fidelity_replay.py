"""Would a cheaper selection have kept the picks? Successive halving replayed on recorded learning curves.

``python -m benchmarks.fidelity_replay FOLDER [FOLDER ...] [--min-epochs N ...] [--factor R ...]``

Every selection search of a study folder (step 1's ``tune_base`` search per loss, each nuisance search
per loss, factor and setting) ran every configuration at full length and recorded a validation score
after every epoch (CE's own classifier; a contrastive loss's only with ``monitor: knn``). This replays
*synchronous* successive halving on those curves: at rung epochs ``m, m R, m R^2, ...`` (then the full
length), the configurations ranked by their mean over the search's seeds of the rung score, the best
``ceil(n / R)`` continue; the pick is the best survivor's full-length selection score, as the search
picks now. A synchronous rung waits for its configurations, so its decisions do not depend on the order
in which runs finish (ASHA's do: ray-project/ray#13616), and a replay is exact.

For each search and (m, R), it reports:

* **kept**: the pick is within noise of the full-length pick (the base margin's own rule: Gupta's subset,
  :func:`supcon_ray.study.within_noise`, over the search's full-length scores);
* **regret**: the full-length pick's mean selection score less that of the replayed pick;
* **cost**: trial-epochs run, as a share of running every configuration to the full length;
* **time**: trial-seconds, the same share in measured seconds: a budgeted rung costs its own run's
  seconds; a continued run the seconds of the epochs it trained plus its run's whole fixed cost (start,
  read-out: the seconds its full-length run spent outside its epochs), an upper bound, as a run stopped at a
  rung would skip its read-out.

With ``--budgets FOLDER`` (the same configurations trained for fewer epochs, each schedule decayed within
its budget: Li et al. 2020's budgeted training), step 1's searches are replayed again with every rung a
run of its own, scored by that run's own selection score (for a contrastive loss, its linear probe).

Replays: all the search's seeds; each seed alone (a one-seed search); and 200 random subsets of three
quarters of the configurations (a fixed stream per search and plan), each judged against the full-length pick of the same subset.
These curves come from runs under the *full* schedule, so a rung's score is the run's mid-schedule score
(continuing runs, as Hyperband and ASHA promote them), with the short-horizon bias that implies
(Wu et al. 2018); a budgeted rung (its schedule decayed within its own epochs, Li et al. 2020) would need
its own runs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from supcon_ray.results.folders import load_folders
from supcon_ray.results.storage import HYPERPARAMETER_FIELDS
from supcon_ray.study import within_noise
from supcon_ray.study.fidelity import full_length_epochs, halve, planned_epochs, rung_epochs, rung_sizes

#: Columns that are not a configuration's hyperparameters (a search's configurations differ in the others).
NOT_CONFIG = {"seed", "study", "trial_id", "factor", "setting", "design", "phase", "in_stats", "analysed", "status",
              "num_workers", "checkpoint_every", "monitor", "workers", "cpus_per_worker", "gpus_per_worker"}
SUBSETS = 200


@dataclass(frozen=True)
class Search:
    """One selection search: per configuration and seed, its curve (rung score per epoch) and its
    full-length selection score."""

    name: str
    loss: str
    epochs: int
    curves: dict[tuple[str, int], np.ndarray]  # (config, seed) -> score after epoch 1..E
    final: pd.DataFrame  # config, seed, val_top1
    #: (config, seed) -> (the full-length run's seconds, its seconds per epoch 1..E); None: not recorded
    seconds: dict[tuple[str, int], tuple[float, np.ndarray]] | None = None


def _config_labels(g: pd.DataFrame, hyper: list[str]) -> pd.Series:
    varying = [c for c in hyper if c in g and g[c].astype(str).nunique() > 1]
    if not varying:
        return pd.Series("base", index=g.index)
    return g[varying].astype(str).apply(lambda r: ",".join(f"{k}={v}" for k, v in r.items()), axis=1)


def searches(folder: str) -> list[Search]:
    """Every selection search of ``folder`` whose runs recorded a rung score each epoch."""
    trials, epochs, _ = load_folders([folder])
    trials = trials.drop_duplicates("trial_id")
    runs = trials[trials["phase"].astype(str).isin(["tune_base", "nuisance"]) & (trials["status"] == "completed")]
    main = epochs[epochs["stage"] != "linear"]
    hyper = [f.name for f in HYPERPARAMETER_FIELDS if f.name not in NOT_CONFIG and f.name in trials]
    out = []
    keys = {"tune_base": ["loss"], "nuisance": ["loss", "factor", "setting"]}
    for phase, by in keys.items():
        for key, g in runs[runs["phase"].astype(str) == phase].groupby(by, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            g = g.assign(config=_config_labels(g, hyper))
            if g["config"].nunique() < 2:
                continue
            e = main[main["trial_id"].isin(g["trial_id"])]
            if e["val_top1"].isna().all():
                continue  # no rung score (a contrastive search without monitor: knn)
            length = int(g["epochs"].max())
            curves, seconds = {}, {}
            for row in g.itertuples():
                run = e[e["trial_id"] == row.trial_id].sort_values("epoch")
                c = run["val_top1"].to_numpy(dtype=float)
                if len(c) == length and np.isfinite(c).all():
                    curves[(row.config, int(row.seed))] = c
                    per_epoch = run["epoch_seconds"].to_numpy(dtype=float) if "epoch_seconds" in run else None
                    if per_epoch is not None and np.isfinite(per_epoch).all() and math.isfinite(row.seconds):
                        seconds[(row.config, int(row.seed))] = (float(row.seconds), per_epoch)
            final = g[["config", "seed", "val_top1"]].assign(seed=g["seed"].astype(int))
            final = final[[(c, s) in curves for c, s in zip(final["config"], final["seed"])]]
            if final["config"].nunique() >= 2:
                out.append(Search(f"{trials['study'].iloc[0]} {phase} " + " / ".join(map(str, key)), str(key[0]),
                                  length, curves, final, seconds if len(seconds) == len(curves) else None))
    return out


def _halving(search: Search, configs: list[str], seeds: list[int], min_epochs: int, factor: int,
             budgets: dict[tuple[str, int, int], float] | None) -> tuple[str, list[tuple[int, list[str]]]]:
    """The pick of successive halving over ``configs`` x ``seeds``, and its rungs: ``(epochs, configurations
    run)`` each (see :func:`replay`)."""
    if budgets is not None:
        full = search.final[search.final["seed"].isin(seeds)].groupby("config")["val_top1"].mean()

        def score(i: int, r: int) -> float:
            c = configs[i]
            return float(full[c]) if r == search.epochs else float(np.mean([budgets[(c, s, r)] for s in seeds]))

        h = halve(len(configs), search.epochs, min_epochs, factor, score)
        return configs[h.pick], [(rung["epochs"], [configs[i] for i in rung["alive"]]) for rung in h.rungs]
    alive = list(configs)
    rungs = []
    for r in rung_epochs(search.epochs, min_epochs, factor):
        rungs.append((r, list(alive)))
        if r == search.epochs:
            break
        score = {c: np.mean([search.curves[(c, s)][r - 1] for s in seeds]) for c in alive}
        keep = max(1, math.ceil(len(alive) / factor))
        alive = sorted(alive, key=lambda c: (-score[c], configs.index(c)))[:keep]
    final = search.final[search.final["seed"].isin(seeds)].groupby("config")["val_top1"].mean()
    return max(alive, key=lambda c: (final[c], -configs.index(c))), rungs


def _epoch_share(search: Search, configs: list[str], seeds: list[int], rungs: list[tuple[int, list[str]]],
                 budgets: bool, min_epochs: int, factor: int) -> float:
    """Trial-epochs the rungs train, as a share of every configuration at full length: budgeted rungs as the
    ``fidelity`` block plans them (each run from scratch), a continued one only the epochs since the last rung."""
    full = full_length_epochs(len(configs), len(seeds), search.epochs)
    if budgets:
        return planned_epochs(len(configs), len(seeds), search.epochs, min_epochs, factor) / full
    spent, previous = 0, 0
    for r, alive in rungs:
        spent += (r - previous) * len(alive) * len(seeds)
        previous = r
    return spent / full


def _seconds_share(search: Search, configs: list[str], seeds: list[int], rungs: list[tuple[int, list[str]]],
                   budget_seconds: dict[tuple[str, int, int], float] | None, budgeted: bool) -> float | None:
    """Trial-seconds the rungs spend, as a share of the full-length runs' (see :func:`time_share`)."""
    if search.seconds is None or (budgeted and budget_seconds is None):
        return None
    full = sum(search.seconds[(c, s)][0] for c in configs for s in seeds)
    if budgeted:
        return sum(search.seconds[(c, s)][0] if r == search.epochs else budget_seconds[(c, s, r)]
                   for r, alive in rungs for c in alive for s in seeds) / full
    trained = {c: r for r, alive in rungs for c in alive}  # the last rung each configuration reached
    spent = 0.0
    for c in configs:
        for s in seeds:
            total, per_epoch = search.seconds[(c, s)]
            spent += float(per_epoch[:trained[c]].sum()) + (total - float(per_epoch.sum()))
    return spent / full


def replay(search: Search, configs: list[str], seeds: list[int], min_epochs: int, factor: int,
           budgets: dict[tuple[str, int, int], float] | None = None) -> tuple[str, float]:
    """The pick of successive halving over ``configs`` x ``seeds``, and its cost as a share of full length.
    Without ``budgets`` the runs continue from rung to rung (a rung's score: the full-schedule curve at that
    epoch). With ``budgets`` (``(config, seed, epochs) -> val_top1`` of runs trained for that many epochs,
    their schedule decayed within them) every rung is a run of its own, exactly as a study's ``fidelity``
    block runs it (:func:`supcon_ray.study.fidelity.halve`: the search ends when one configuration is left)."""
    pick, rungs = _halving(search, configs, seeds, min_epochs, factor, budgets)
    return pick, _epoch_share(search, configs, seeds, rungs, budgets is not None, min_epochs, factor)


def time_share(search: Search, configs: list[str], seeds: list[int], min_epochs: int, factor: int,
               budgets: dict[tuple[str, int, int], float] | None = None,
               budget_seconds: dict[tuple[str, int, int], float] | None = None) -> float | None:
    """The trial-seconds :func:`replay`'s halving spends, as a share of the full-length runs' seconds (None where
    the seconds are not recorded). Budgeted: each rung's runs cost their own seconds (``budget_seconds``, and the
    full-length runs' at the last rung). Continued: a run costs the seconds of the epochs it trained plus its
    full-length run's whole fixed cost (an upper bound: stopped at a rung, it would skip its read-out)."""
    _, rungs = _halving(search, configs, seeds, min_epochs, factor, budgets)
    return _seconds_share(search, configs, seeds, rungs, budget_seconds, budgets is not None)


def judge(search: Search, configs: list[str], seeds: list[int], pick: str) -> tuple[bool, float]:
    """Whether ``pick`` is within noise of the full-length pick over ``configs`` (all of the search's seeds
    judge it), and the regret in mean selection score."""
    rows = search.final[search.final["config"].isin(configs)]
    means = rows.groupby("config")["val_top1"].mean()
    best = max(configs, key=lambda c: (means[c], -configs.index(c)))
    kept = pick in within_noise(rows.assign(setting=rows["config"]), "setting", "val_top1", best)
    return kept, float(means[best] - means[pick])


def budget_runs(folder: str, search: Search, column: str = "val_top1") -> dict[tuple[str, int, int], float] | None:
    """The runs of a budgets folder (``search_spaces/fidelity_budgets_digits.yaml``) that stand for
    ``search``'s configurations at fewer epochs: ``(config, seed, epochs) -> column`` (``val_top1``, or
    ``seconds``), configurations labelled as the search labels them (by the hyperparameters that vary in it,
    epochs aside)."""
    trials, _, _ = load_folders([folder])
    rows = trials[(trials["loss"] == search.loss) & (trials["status"] == "completed")].drop_duplicates("trial_id")
    keys = sorted({k.split("=", 1)[0] for c in search.final["config"] for k in c.split(",")})
    if not keys or not set(keys) <= set(rows.columns):
        return None
    labels = rows[keys].astype(str).apply(lambda r: ",".join(f"{k}={v}" for k, v in r.items()), axis=1)
    out = {(c, int(s), int(e)): float(v) for c, s, e, v in zip(labels, rows["seed"], rows["epochs"], rows[column])}
    need = {(c, int(sd)) for c, sd in zip(search.final["config"], search.final["seed"])}
    shortest = min((e for _, _, e in out), default=None)
    return out if shortest is not None and all((c, sd, shortest) in out for c, sd in need) else None


def evaluate(search: Search, min_epochs: int, factor: int,
             budgets: dict[tuple[str, int, int], float] | None = None,
             budget_seconds: dict[tuple[str, int, int], float] | None = None) -> dict:
    # each replay set its own stream: the same search and plan draw the same subsets whatever else is replayed
    rng = np.random.default_rng([zlib.crc32(search.name.encode()), min_epochs, factor])
    configs = sorted(search.final["config"].unique())
    seeds = sorted(search.final["seed"].unique())
    plans = [(configs, seeds, "all seeds")] + [(configs, [s], "one seed") for s in seeds]
    k = max(2, math.ceil(0.75 * len(configs)))
    plans += [(sorted(rng.choice(configs, k, replace=False).tolist()), seeds, "subset") for _ in range(SUBSETS)]
    kept, regret, cost, seconds = [], [], [], []
    for cs, ss, _ in plans:
        pick, rungs = _halving(search, cs, ss, min_epochs, factor, budgets)  # once per plan: epochs and seconds
        ok, r = judge(search, cs, ss, pick)
        kept.append(ok)
        regret.append(r)
        cost.append(_epoch_share(search, cs, ss, rungs, budgets is not None, min_epochs, factor))
        seconds.append(_seconds_share(search, cs, ss, rungs, budget_seconds, budgets is not None))
    first_pick, first_cost = replay(search, configs, seeds, min_epochs, factor, budgets)
    return {"search": search.name + (" (budgeted)" if budgets is not None else ""), "loss": search.loss,
            "configurations": len(configs), "seeds": len(seeds),
            "epochs": search.epochs, "min_epochs": min_epochs, "factor": factor,
            "kept_all_seeds": judge(search, configs, seeds, first_pick)[0], "cost_all_seeds": first_cost,
            "kept": float(np.mean(kept)), "regret_mean": float(np.mean(regret)),
            "regret_90": float(np.quantile(regret, 0.9)), "cost": float(np.mean(cost)),
            "time": float(np.mean(seconds)) if None not in seconds else math.nan, "replays": len(plans)}


def rank_agreement(search: Search) -> list[float]:
    """Spearman correlation, over the search's configurations (means over its seeds), between the rung score
    after each epoch and the full-length selection score: how well each epoch's score ranks the runs as the
    pick does (for a contrastive loss with ``monitor: knn``, the kNN score against the final linear probe)."""
    from scipy.stats import spearmanr

    configs = sorted(search.final["config"].unique())
    seeds = sorted(search.final["seed"].unique())
    final = search.final.groupby("config")["val_top1"].mean()[configs].to_numpy()
    out = []
    for epoch in range(1, search.epochs + 1):
        score = [np.mean([search.curves[(c, s)][epoch - 1] for s in seeds if (c, s) in search.curves]) for c in configs]
        rho = spearmanr(score, final).statistic if np.ptp(score) > 0 and np.ptp(final) > 0 else math.nan
        out.append(float(rho))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fidelity_replay", description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--min-epochs", type=int, nargs="+", default=None,
                    help="rung 0 epochs (default: a quarter and a half of each search's length)")
    ap.add_argument("--factor", type=int, nargs="+", default=[2, 3], help="reduction factors R (default 2 3)")
    ap.add_argument("--budgets", help="a folder of the same configurations trained for fewer epochs (budgeted "
                                      "rungs; search_spaces/fidelity_budgets_digits.yaml): replays step 1 with them too")
    args = ap.parse_args(argv)
    if any(r < 2 for r in args.factor):
        ap.error("--factor: each at least 2")
    t0 = time.perf_counter()
    rows, agreement = [], []
    for folder in args.folders:
        found = searches(folder)
        if not found:
            print(f"{folder}: no selection search with a score every epoch", file=sys.stderr)
        for s in found:
            agreement.append((s, rank_agreement(s)))
            mins = args.min_epochs or sorted({max(1, s.epochs // 4), max(1, s.epochs // 2)})
            budgets = budget_runs(args.budgets, s) if args.budgets and " tune_base " in s.name else None
            budget_seconds = budget_runs(args.budgets, s, "seconds") if budgets is not None else None
            for m in mins:
                if m >= s.epochs:
                    continue
                for r in args.factor:
                    rows.append(evaluate(s, m, r))
                    n = s.final["config"].nunique()
                    if budgets is not None and all(k in {e for (_, _, e) in budgets}
                                                   for k, _ in rung_sizes(n, s.epochs, m, r) if k < s.epochs):
                        rows.append(evaluate(s, m, r, budgets, budget_seconds))
    if not rows:
        return 1
    df = pd.DataFrame(rows)
    print("| search | loss | configs x seeds | epochs | rungs | kept (all seeds) | kept (replays) | regret mean / 90% | cost "
          "| time |")
    print("|---|---|---|---:|---|---|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['search']} | {r['loss']} | {r['configurations']} x {r['seeds']} | {r['epochs']} | "
              f"{', '.join(map(str, rung_epochs(r['epochs'], r['min_epochs'], r['factor'])))} (R={r['factor']}) | "
              f"{'yes' if r['kept_all_seeds'] else 'no'} | {r['kept']:.2f} | {r['regret_mean']:.3f} / {r['regret_90']:.3f} "
              f"| {r['cost']:.2f} | {r['time']:.2f} |")
    print("\nPer loss, rung plan and folder (every search's replays together):")
    print("| folder | loss | rungs | searches | kept (replays) | kept (all seeds) | regret mean | cost | time |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    df["folder"] = df["search"].str.split(" ").str[0]
    df["mode"] = np.where(df["search"].str.endswith("(budgeted)"), "budgeted", "continued")
    for (folder, loss, mode, m, r), g in df.groupby(["folder", "loss", "mode", "min_epochs", "factor"]):
        print(f"| {folder} | {loss} | {mode}: m={m}, R={r} | {len(g)} | {g['kept'].mean():.2f} | "
              f"{g['kept_all_seeds'].mean():.2f} | {g['regret_mean'].mean():.3f} | {g['cost'].mean():.2f} | "
              f"{g['time'].mean():.2f} |")
    print("\nRank agreement of each epoch's score with the full-length selection score (Spearman over the "
          "search's configurations; per loss, the median over its searches):")
    by_loss: dict[tuple[str, str], list[list[float]]] = {}
    for s, rho in agreement:
        by_loss.setdefault((s.name.split(" ")[0], s.loss), []).append(rho)
    for (folder, loss), rhos in sorted(by_loss.items()):
        width = min(len(r) for r in rhos)
        med = [float(np.nanmedian([r[i] for r in rhos])) for i in range(width)]
        print(f"- {folder} {loss} ({len(rhos)} searches): " + ", ".join(f"epoch {i + 1} {m:.2f}" for i, m in enumerate(med)))
    print(f"\nWall time {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
