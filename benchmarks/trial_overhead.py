"""Fixed cost of a study trial: from asking for it to its first training batch, and from its last
batch to its row in Parquet, for a 1-worker trial (trained inside the Tune trial) in a fresh and in
a reused trial process, a 1-worker trial forced through Ray Train, and a 2-worker Ray Train trial.

Ray is started once before the timings (its ~7 s start-up is not a per-trial cost). Each case runs a
one-trial study (CE, digits, resnet-mini, 1 epoch) through the real runner; the marks come from the
trial's Parquet row (``started_at``: trial function entered; ``run_started_unix``: training code
started; ``first_batch_unix`` / ``last_batch_unix``) and the row file's modification time.

The "reused process" case runs two trials one after the other and times the second, which Tune
runs in the first one's process (``process_trials_before`` = 1): it is asked for when the first
trial's row is written. ``--no-reuse`` turns process reuse off (start-up as before it existed).

    python -m benchmarks.trial_overhead [--no-reuse] [--cases ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from .common import print_table, write_json

CASES = {
    "1 worker (in trial)": {"workers_per_trial": 1, "cpus_per_worker": 1, "launcher": "auto"},
    "1 worker (in trial), reused process": {"workers_per_trial": 1, "cpus_per_worker": 1, "launcher": "auto"},
    "1 worker (Ray Train)": {"workers_per_trial": 1, "cpus_per_worker": 1, "launcher": "ray_train"},
    "2 workers (Ray Train)": {"workers_per_trial": 2, "cpus_per_worker": 0.5, "launcher": "ray_train"},
}


def run_case(name: str, resources: dict, root: Path) -> dict:
    import pandas as pd

    from supcon_ray.execution import run_study
    from supcon_ray.study import load_study

    res = ", ".join(f"{k}: {v}" for k, v in resources.items())
    study_name = "overhead_" + "".join(c for c in name if c.isalnum())
    path = root / f"{study_name}.yaml"
    path.write_text(textwrap.dedent(f"""
        study: {study_name}
        losses: [ce]
        seeds: {"[0, 1]" if "reused" in name else "[0]"}
        base: {{common: {{epochs: 1, batch_size: 256, augment: basic}}}}
        vary: {{optimizer: [sgd]}}
        resources: {{{res}, max_concurrent_trials: 1, max_failures: 0}}
    """))
    study = load_study(path)
    t_ask = time.time()
    folder = run_study(study, str(root / "results"), False, None, None).folder
    t_return = time.time()
    trials_dir = Path(folder) / "trials"
    rows = pd.read_parquet(trials_dir).sort_values("first_batch_unix")
    row = rows.iloc[-1]
    t_row = os.path.getmtime(trials_dir / f"{row['trial_id']}.parquet")
    if len(rows) > 1:  # the second trial is asked for when the first one's row is written
        t_ask = os.path.getmtime(trials_dir / f"{rows.iloc[0]['trial_id']}.parquet")
    entered = row["started_at"].timestamp()
    return {
        "case": name,
        # Ray Train trials run in their own worker processes, which the column does not describe
        "process_trials_before": int(row["process_trials_before"]) if pd.notna(row["process_trials_before"]) else "n/a",
        "ask_to_first_batch_s": row["first_batch_unix"] - t_ask,
        "last_batch_to_parquet_s": t_row - row["last_batch_unix"],
        "ask_to_trial_entered_s": entered - t_ask,
        "trial_entered_to_training_code_s": row["run_started_unix"] - entered,
        "training_code_to_first_batch_s": row["first_batch_unix"] - row["run_started_unix"],
        "training_s": row["last_batch_unix"] - row["first_batch_unix"],
        "parquet_to_study_returns_s": t_return - t_row,
        "total_s": t_return - t_ask,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--json", help="output file (default benchmarks/out/trial_overhead.json)")
    p.add_argument("--no-reuse", action="store_true", help="a fresh process for every trial (Tune reuse_actors off)")
    args = p.parse_args(argv)
    from supcon_ray.execution import executor
    from supcon_ray.execution.ray_runtime import init_ray

    executor.REUSE_TRIAL_PROCESSES = not args.no_reuse  # read by the executor when it runs a step

    t0 = time.time()
    init_ray(num_cpus=2)
    ray_start = time.time() - t0
    print(f"Ray started in {ray_start:.1f} s (once, not per trial)", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.cases:
            results.append(run_case(name, CASES[name], Path(d)))
            print(f"  {name}: ask->first batch {results[-1]['ask_to_first_batch_s']:.1f} s", flush=True)
    print()
    keys = ["ask_to_first_batch_s", "last_batch_to_parquet_s", "ask_to_trial_entered_s", "trial_entered_to_training_code_s",
            "training_code_to_first_batch_s", "training_s", "parquet_to_study_returns_s", "total_s"]
    print_table(["case"] + [k.removesuffix("_s") for k in keys], [[r["case"]] + [r[k] for k in keys] for r in results])
    print("process_trials_before: " + ", ".join(f"{r['case']}: {r['process_trials_before']}" for r in results))
    write_json("trial_overhead", {"ray_start_s": ray_start, "reuse": not args.no_reuse, "results": results}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
