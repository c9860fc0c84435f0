"""``python -m supcon_ray.tune --space search_spaces/<study>.yaml``: run a stability study.

Validates the study file, plans its trials (one factor at a time, or a sampled space), runs them
on Ray Tune (joining ``--address`` / ``RAY_ADDRESS``, or a local Ray instance), records each trial
in Parquet under ``<storage>/<study>/``, prints a per-loss summary and writes the stability report.

``--quick`` applies the file's ``quick`` block (offline, CPU, small). ``--dry-run`` prints the plan.
``--resume`` continues an interrupted study: recorded trials are not run again, interrupted ones
restart from their last checkpoint. Exit status 2 for bad input (file, names, numbers, resources).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .config import EXIT_USAGE, ConfigError, TrainConfig
from .study import Study, TrialSpec, load_study, plan_trials


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m supcon_ray.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", required=True, type=Path, help="study file (YAML), e.g. search_spaces/optimizers.yaml")
    p.add_argument("--quick", action="store_true", help="apply the file's quick block: offline, CPU, minutes")
    p.add_argument("--dry-run", action="store_true", help="print the planned trials and resources, then exit")
    p.add_argument("--storage", default="./results", help="results root: a folder, s3://bucket/path or gs://... (default ./results)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study in the same storage")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else start a local instance)")
    p.add_argument("--max-concurrent-trials", type=int, help="override resources.max_concurrent_trials")
    p.add_argument("--no-report", action="store_true", help="do not build the HTML report at the end")
    return p


def trial_name(trial) -> str:
    spec = trial.config["spec"]
    return f"{spec['loss']}:{spec['setting']}:s{spec['seed']}"


def trial_dirname(trial) -> str:
    return f"{trial.config['spec']['trial_id']}-{trial.trial_id}"


def print_plan(study: Study, specs: list[TrialSpec], out=None) -> None:
    out = out or sys.stdout
    r = study.resources
    print(f"study {study.study}: {study.description}".rstrip(": "), file=out)
    print(f"dataset={study.dataset} model={study.model} losses={','.join(study.losses)} seeds={study.seeds}", file=out)
    print(f"resources: {r.workers_per_trial} worker(s)/trial x ({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU), "
          f"max_concurrent_trials={r.max_concurrent_trials or 'auto'}, launcher={r.launcher}", file=out)
    if specs:
        print(f"{len(specs)} planned trials:", file=out)
        print(f"  {'loss':7} {'factor':14} {'setting':40} {'seed':>4}  epochs", file=out)
        for s in specs:
            print(f"  {s.loss:7} {s.factor:14} {s.setting[:40]:40} {s.seed:>4}  {s.train['epochs']}", file=out)
    if study.search is not None and study.search.sampler == "tpe":
        n = study.search.num_samples or 0
        print(f"plus adaptive TPE: {n} configurations x {len(study.seeds)} seeds per loss "
              f"= {n * len(study.seeds) * len(study.losses)} trials (sampler seed {study.search.seed})", file=out)


def summarize(results_dir: str, out=None) -> None:
    from .storage import read_results

    out = out or sys.stdout
    trials, _ = read_results(results_dir)
    df = trials.to_pandas()
    print(f"\n{'loss':8} {'trials':>6} {'completed':>9} {'diverged':>8} {'failed':>6}  test_top1 mean ± std", file=out)
    for loss, g in df.groupby("loss"):
        counts = g["status"].value_counts()
        scored = g[g["status"] != "failed"]["test_top1"]
        stat = f"{scored.mean():.4f} ± {scored.std(ddof=1):.4f}" if len(scored) > 1 else (f"{scored.mean():.4f}" if len(scored) else "-")
        print(f"{loss:8} {len(g):>6} {counts.get('completed', 0):>9} {counts.get('diverged', 0):>8} "
              f"{counts.get('failed', 0):>6}  {stat}", file=out)
    print("(diverged trials count at chance level; failed trials have no score)", file=out)


def run_study(study: Study, specs: list[TrialSpec], storage: str, resume: bool, address: str | None,
              max_concurrent: int | None) -> str:
    """Run every trial; return the study's results folder."""
    from ray import tune

    from .ray_runtime import check_fits, init_ray
    from .runner import (default_concurrency, error_text, record_failures, run_trial, storage_uri,
                         trial_resources, uses_ray_train)
    from .storage import ResultStore
    from .study import study_as_yaml

    store = ResultStore(storage_uri(storage), study.study)
    done = store.finished_ids()
    if done and not resume:
        raise ConfigError(f"--storage: {store.uri} already holds {len(done)} finished trial(s) of study "
                          f"'{study.study}'. Add --resume to continue it, or choose another --storage.")
    store.write_text("study.yaml", study_as_yaml(study))
    r = study.resources
    probe = TrainConfig(**specs[0].train) if specs else TrainConfig(workers=r.workers_per_trial,
                                                                   cpus_per_worker=r.cpus_per_worker,
                                                                   gpus_per_worker=r.gpus_per_worker)
    init_ray(address)
    per_trial = trial_resources(probe, r.launcher)
    if uses_ray_train(probe, r.launcher):
        check_fits(probe.workers, probe.cpus_per_worker, probe.gpus_per_worker, per_trial["CPU"])
        concurrency_cpus, concurrency_gpus = probe.workers * probe.cpus_per_worker + per_trial["CPU"], probe.workers * probe.gpus_per_worker
    else:
        check_fits(1, per_trial["CPU"], per_trial.get("GPU", 0.0))
        concurrency_cpus, concurrency_gpus = per_trial["CPU"], per_trial.get("GPU", 0.0)
    concurrency = max_concurrent or r.max_concurrent_trials or default_concurrency(concurrency_cpus, concurrency_gpus)
    todo = [s for s in specs if s.trial_id not in done]
    print(f"{len(specs)} trials planned, {len(specs) - len(todo)} already recorded, {len(todo)} to run; "
          f"up to {concurrency} at once. Results: {store.uri}", flush=True)

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, storage=storage_uri(storage), study=study.study, launcher=r.launcher,
                             max_failures=r.max_failures),
        per_trial,
    )
    errors: dict[str, str] = {}
    if todo:
        tune_path = f"{store.uri}/tune"
        reporter = tune.CLIReporter(
            parameter_columns={"spec/loss": "loss", "spec/setting": "setting", "spec/seed": "seed"},
            metric_columns={"stage": "stage", "epoch": "epoch", "train_loss": "loss", "val_top1": "val_top1",
                            "test_top1": "test_top1"},
            max_report_frequency=30, max_column_length=28)
        run_config = tune.RunConfig(name="tune", storage_path=store.uri, verbose=1, progress_reporter=reporter,
                                    failure_config=tune.FailureConfig(max_failures=r.max_failures))
        if resume and tune.Tuner.can_restore(tune_path):
            tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(trainable,
                               param_space={"spec": tune.grid_search([asdict(s) for s in todo])},
                               tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=False,
                                                           trial_name_creator=trial_name,
                                                           trial_dirname_creator=trial_dirname),
                               run_config=run_config)
        try:
            grid = tuner.fit()
        except KeyboardInterrupt:
            grid = None
        if grid is not None:
            for res in grid:
                if res.error is not None:
                    errors[res.config["spec"]["trial_id"]] = error_text(res.error)
        missing = [s for s in todo if s.trial_id not in store.finished_ids() and s.trial_id not in errors]
        if missing:
            raise KeyboardInterrupt
    failed = record_failures(store, specs, errors, study.study)
    if failed:
        print(f"{failed} trial(s) failed after {r.max_failures} retries; recorded with status 'failed'", flush=True)
    return store.uri


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        study = load_study(args.space, quick=args.quick)
        specs = plan_trials(study)
        if args.max_concurrent_trials is not None and args.max_concurrent_trials < 1:
            raise ConfigError("--max-concurrent-trials must be >= 1")
        if args.dry_run:
            print_plan(study, specs)
            return 0
        if study.search is not None and study.search.sampler == "tpe":
            raise ConfigError("search.sampler: tpe is not supported by this version of the runner; "
                              "use grid, random or qmc (paired designs)")
        results = run_study(study, specs, args.storage, args.resume, args.address, args.max_concurrent_trials)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        quick = " --quick" if args.quick else ""
        print(f"\nInterrupted. Finished trials are saved. Resume with:\n  python -m supcon_ray.tune --space {args.space}"
              f"{quick} --storage {args.storage} --resume", file=sys.stderr)
        return 130
    summarize(results)
    if not args.no_report:
        try:
            from .report import build_report
        except ImportError:
            build_report = None
        if build_report is not None:
            path = build_report(results)
            print(f"report: {path}")
    print(f"results: {results}  ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
