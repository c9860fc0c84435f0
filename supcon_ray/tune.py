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


def _progress_reporter():
    from ray import tune

    return tune.CLIReporter(
        parameter_columns={"spec/loss": "loss", "spec/setting": "setting", "spec/seed": "seed"},
        metric_columns={"stage": "stage", "epoch": "epoch", "train_loss": "loss", "val_top1": "val_top1",
                        "test_top1": "test_top1"},
        max_report_frequency=30, max_column_length=28)


def _fit(make_tuner, tune_path: str, resume: bool, trainable, spec_of_config) -> tuple[dict[str, str], int]:
    """Run (or, with ``resume``, restore) one Tuner.

    Returns ``{trial_id: (spec, error text)}`` for trials that failed and the number left unfinished.
    """
    from ray import tune

    from .runner import error_text

    if resume and tune.Tuner.can_restore(tune_path):
        tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_errored=True)
    else:
        tuner = make_tuner()
    grid = tuner.fit()
    errors, unfinished = {}, 0
    for res in grid:
        if res.error is not None:
            spec = spec_of_config(res.config)
            errors[spec["trial_id"]] = (spec, error_text(res.error))
        elif not (res.metrics or {}).get("final"):
            unfinished += 1
    return errors, unfinished


def run_study(study: Study, specs: list[TrialSpec], storage: str, resume: bool, address: str | None,
              max_concurrent: int | None) -> str:
    """Run every trial (planned ones, then one adaptive TPE search per loss); return the results folder."""
    from ray import tune

    from .ray_runtime import check_fits, init_ray
    from .runner import (default_concurrency, record_failures, run_trial, spec_of, storage_uri, trial_resources,
                         uses_ray_train)
    from .storage import ResultStore
    from .study import optuna_space, study_as_yaml

    store = ResultStore(storage_uri(storage), study.study)
    done = store.finished_ids()
    if done and not resume:
        raise ConfigError(f"--storage: {store.uri} already holds {len(done)} finished trial(s) of study "
                          f"'{study.study}'. Add --resume to continue it, or choose another --storage.")
    store.write_text("study.yaml", study_as_yaml(study))
    r = study.resources
    probe = TrainConfig(workers=r.workers_per_trial, cpus_per_worker=r.cpus_per_worker, gpus_per_worker=r.gpus_per_worker)
    init_ray(address)
    per_trial = trial_resources(probe, r.launcher)
    if uses_ray_train(probe, r.launcher):
        check_fits(probe.workers, probe.cpus_per_worker, probe.gpus_per_worker, per_trial["CPU"])
        need_cpus, need_gpus = probe.workers * probe.cpus_per_worker + per_trial["CPU"], probe.workers * probe.gpus_per_worker
    else:
        check_fits(1, per_trial["CPU"], per_trial.get("GPU", 0.0))
        need_cpus, need_gpus = per_trial["CPU"], per_trial.get("GPU", 0.0)
    concurrency = max_concurrent or r.max_concurrent_trials or default_concurrency(need_cpus, need_gpus)
    todo = [s for s in specs if s.trial_id not in done]
    tpe = study.search is not None and study.search.sampler == "tpe"
    print(f"{len(specs)} trials planned, {len(specs) - len(todo)} already recorded, {len(todo)} to run"
          f"{' (plus adaptive TPE searches)' if tpe else ''}; up to {concurrency} at once. Results: {store.uri}", flush=True)

    def trainable(tpe_args=None):
        fn = tune.with_parameters(run_trial, storage=storage_uri(storage), study=study.study, launcher=r.launcher,
                                  max_failures=r.max_failures, tpe=tpe_args)
        return tune.with_resources(fn, per_trial)

    def run_config(name: str):
        return tune.RunConfig(name=name, storage_path=store.uri, verbose=1, progress_reporter=_progress_reporter(),
                              failure_config=tune.FailureConfig(max_failures=r.max_failures))

    errors: dict[str, tuple[dict, str]] = {}
    unfinished = 0
    try:
        if todo:
            planned = trainable()
            e, u = _fit(lambda: tune.Tuner(
                planned, param_space={"spec": tune.grid_search([asdict(s) for s in todo])},
                tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=False,
                                            trial_name_creator=trial_name, trial_dirname_creator=trial_dirname),
                run_config=run_config("tune")), f"{store.uri}/tune", resume, planned, lambda c: spec_of(c, None))
            errors.update(e)
            unfinished += u
        if tpe:
            import optuna
            from ray.tune.search import Repeater
            from ray.tune.search.optuna import OptunaSearch

            study_dict = study.model_dump(mode="json")
            for loss in study.losses:
                tpe_args = (study_dict, loss)
                fn = trainable(tpe_args)
                searcher = Repeater(OptunaSearch(space=optuna_space(study.search), metric="val_top1", mode="max",
                                                 sampler=optuna.samplers.TPESampler(seed=study.search.seed)),
                                    repeat=len(study.seeds), set_index=True)
                e, u = _fit(lambda fn=fn, searcher=searcher: tune.Tuner(
                    fn, tune_config=tune.TuneConfig(search_alg=searcher, max_concurrent_trials=concurrency,
                                                    num_samples=study.search.num_samples * len(study.seeds),
                                                    reuse_actors=False),
                    run_config=run_config(f"tune-tpe-{loss}")), f"{store.uri}/tune-tpe-{loss}", resume, fn,
                    lambda c, a=tpe_args: spec_of(c, a))
                errors.update(e)
                unfinished += u
    except KeyboardInterrupt:
        unfinished += 1
    failed = record_failures(store, errors, study.study)
    if failed:
        print(f"{failed} trial(s) failed after {r.max_failures} retries; recorded with status 'failed'", flush=True)
    if unfinished:
        raise KeyboardInterrupt
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
