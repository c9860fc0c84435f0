"""``python -m supcon_ray.tune --space search_spaces/<study>.yaml``: run a stability study.

Validates the study file, plans its trials (one factor at a time, or a sampled space), runs them
on Ray Tune (joining ``--address`` / ``RAY_ADDRESS``, or a local Ray instance), records each trial
in Parquet under ``<storage>/<study>/``, prints a per-loss summary and writes the stability report.

A study with ``tune_base`` runs two stages (:mod:`supcon_ray.protocol`): stage 1 finds each loss's
base on the same budget, stage 2 changes one factor at a time from there (re-tuning ``nuisance``
hyperparameters per setting). ``--quick`` applies the file's ``quick`` block (offline, CPU, small).
``--dry-run`` prints both stages with their budgets and trial counts. ``--resume`` continues an
interrupted study: recorded trials and a finished stage 1 are not run again, failed trials are
(their rows kept under ``attempts/``), interrupted ones restart from their last checkpoint.

The console shows one progress bar and one line per finished trial (:mod:`supcon_ray.progress`;
plain lines when stdout is not a terminal), then the summary; Ray's own tables and checkpoint
lines only with ``--verbose``. Every trial that ends in an error, including one that never
started, is recorded with status ``failed`` and its error text.
Exit status 2 for bad input (file, names, numbers, resources, a cluster this driver cannot join),
1 if any trial failed (after the summary) or stage 1 ends with failed trials, 130 if interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .config import EXIT_USAGE, ConfigError, TrainConfig
from .protocol import StageIncomplete, plan_stage1, plan_stage2
from .study import Study, TrialSpec, load_study

#: Tune keeps a finished trial's process for the next trial of the same resources, so torch is imported
#: once per process, not once per trial; the runner resets the process state each trial needs
#: (:func:`supcon_ray.runner.reset_process_state`), so results match a fresh process bit for bit.
REUSE_TRIAL_PROCESSES = True


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
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's status tables, checkpoint lines and log deduplication notices")
    return p


def trial_name(trial) -> str:
    spec = trial.config["spec"]
    return f"{spec['loss']}:{spec['setting']}:s{spec['seed']}"


def trial_dirname(trial) -> str:
    return f"{trial.config['spec']['trial_id']}-{trial.trial_id}"


def print_plan(study: Study, specs: list[TrialSpec] | None = None, out=None) -> None:
    """The ``--dry-run`` plan: resources, then both stages with their budgets and trial counts."""
    from .protocol import print_protocol

    out = out or sys.stdout
    r = study.resources
    print(f"study {study.study}: {study.description}".rstrip(": "), file=out)
    print(f"dataset={study.dataset} model={study.model} losses={','.join(study.losses)} seeds={study.seeds}", file=out)
    print(f"resources: {r.workers_per_trial} worker(s)/trial x ({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU), "
          f"max_concurrent_trials={r.max_concurrent_trials or 'auto'}, launcher={r.launcher}", file=out)
    print_protocol(study, out)


def _fmt_values(values: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()) or "-"


def summarize(results_dir: str, out=None) -> None:
    """Each loss's base, then per loss the trials that enter the statistics (stage 1 and unselected
    nuisance runs are counted on their own line)."""
    from .protocol import load_bases, stats_trials
    from .storage import read_results

    out = out or sys.stdout
    trials, _ = read_results(results_dir)
    df = trials.to_pandas()
    bases = load_bases(results_dir)
    if bases:
        print("\nbase per loss:", file=out)
        for loss, rec in bases.items():
            origin = rec.get("source", "?")
            if rec.get("trial_ids"):
                origin += (f", {rec.get('select')} mean {rec['mean']:.4f} over seeds {rec.get('seeds')} "
                           f"(best of {rec.get('configurations')}; trial {rec['trial_ids'][0]})")
            print(f"  {loss:8} {_fmt_values(rec.get('values') or {})}  [{origin}]", file=out)
    used = stats_trials(df, results_dir)
    print(f"\n{'loss':8} {'trials':>6} {'completed':>9} {'diverged':>8} {'failed':>6}  test_top1 mean ± std", file=out)
    for loss, g in used.groupby("loss"):
        counts = g["status"].value_counts()
        scored = g[g["status"] != "failed"]["test_top1"]
        stat = f"{scored.mean():.4f} ± {scored.std(ddof=1):.4f}" if len(scored) > 1 else (f"{scored.mean():.4f}" if len(scored) else "-")
        print(f"{loss:8} {len(g):>6} {counts.get('completed', 0):>9} {counts.get('diverged', 0):>8} "
              f"{counts.get('failed', 0):>6}  {stat}", file=out)
    print("(diverged trials count at chance level; failed trials have no score)", file=out)
    rest = len(df) - len(used)
    if rest:
        phases = df.loc[~df.index.isin(used.index), "phase"].fillna("study").value_counts().to_dict()
        print(f"not in the statistics: {rest} trial(s) ({', '.join(f'{n} {p}' for p, n in phases.items())})", file=out)


def _progress_reporter():
    """Ray's status table (``--verbose`` only)."""
    from ray import tune

    return tune.CLIReporter(
        parameter_columns={"spec/loss": "loss", "spec/setting": "setting", "spec/seed": "seed"},
        metric_columns={"stage": "stage", "epoch": "epoch", "train_loss": "loss", "val_top1": "val_top1",
                        "test_top1": "test_top1"},
        max_report_frequency=30, max_column_length=28)


def planned_trial_count(study: Study, specs: list[TrialSpec] | None = None) -> int:
    """How many trials the whole study runs: both stages, TPE searches included (the progress bar's total)."""
    tb = study.tune_base
    n = len(plan_stage1(study))
    if tb is not None and tb.sampler == "tpe":
        n += tb.budget * len(tb.seeds) * len(study.losses)
    plain = specs is not None and tb is None and not study.nuisance
    n += len(specs) if plain else len(plan_stage2(study, None))
    if study.search is not None and study.search.sampler == "tpe":
        n += study.search.num_samples * len(study.seeds) * len(study.losses)
    return n


def _fit(make_tuner, tune_path: str, resume: bool, trainable, console, spec_of_config,
         planned: dict[str, dict] | None = None) -> int:
    """Run (or, with ``resume``, restore) one Tuner; return how many trials it left unfinished.

    Errored trials reach ``console.errors`` through :class:`supcon_ray.tune_events.TuneEvents`. A
    result with an error the callback did not see (none expected) is identified from its config, or,
    for a trial that never reported (its ``res.config`` is None), from the plan by its folder name
    (``<planned trial_id>-<tune id>``, :func:`trial_dirname`).
    """
    import os

    from ray import tune

    from .runner import error_text

    if resume and tune.Tuner.can_restore(tune_path):
        tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_errored=True)
    else:
        tuner = make_tuner()
    grid = tuner.fit()
    unfinished = 0
    for res in grid:
        if res.error is not None:
            if str(res.path) in console.error_paths:
                continue
            spec = spec_of_config(res.config) if res.config else None
            if spec is None and planned and res.path:
                spec = planned.get(os.path.basename(str(res.path)).rsplit("-", 1)[0])
            console.trial_failed(str(res.path), spec, error_text(res.error), str(res.path))
        elif not (res.metrics or {}).get("final"):
            unfinished += 1
    return unfinished


def run_study(study: Study, specs: list[TrialSpec] | None = None, storage: str = "./results", resume: bool = False,
              address: str | None = None, max_concurrent: int | None = None, console=None,
              verbose: bool = False) -> str:
    """Run the study's two stages on Ray Tune; return the results folder.

    Stage 1 (``tune_base``, if any) finds each loss's base and records it in ``study.yaml``; stage 2
    runs the planned trials from there (``specs``, if given, for a study without ``tune_base`` or
    ``nuisance``; else planned by :func:`supcon_ray.protocol.plan_stage2`), then one adaptive TPE search
    per loss for a ``search`` block with ``tpe``. With ``resume``: failed rows are moved to
    ``attempts/`` and those trials run again, a recorded base is reused (stage 1 never runs twice),
    recorded trials are not run again and interrupted ones restart from their last checkpoint.
    Raises :class:`supcon_ray.protocol.StageIncomplete` if stage 1 ends with failed trials.
    Every trial that ends in an error is recorded as ``failed``; ``console`` (a
    :class:`supcon_ray.progress.StudyConsole`, made here if None) counts them in ``console.failed``.
    ``verbose``: Ray's status tables too.
    """
    from .progress import StudyConsole, configure_console, quiet_ray_loggers, set_current

    configure_console(verbose)
    from ray import tune

    from . import protocol
    from .ray_runtime import check_fits, init_ray
    from .runner import (default_concurrency, record_failures, run_trial, spec_of, storage_uri, trial_resources,
                         uses_ray_train)
    from .storage import ResultStore, read_results
    from .study import _space_for, optuna_space, study_as_yaml
    from .tune_events import TuneEvents

    store = ResultStore(storage_uri(storage), study.study)
    done = store.finished_ids()
    if done and not resume:
        raise ConfigError(f"--storage: {store.uri} already holds {len(done)} finished trial(s) of study "
                          f"'{study.study}'. Add --resume to continue it, or choose another --storage.")
    bases = protocol.recorded_bases(store.read_text("study.yaml"), study) if resume else None
    if resume:
        retried = store.archive_failed()
        if retried:
            print(f"{len(retried)} failed trial(s) will run again; their earlier rows are kept under "
                  f"{store.uri}/attempts/", flush=True)
    store.write_text("study.yaml", study_as_yaml(study, bases))
    r = study.resources
    probe = TrainConfig(workers=r.workers_per_trial, cpus_per_worker=r.cpus_per_worker, gpus_per_worker=r.gpus_per_worker)
    init_ray(address)
    quiet_ray_loggers(verbose)  # also when Ray was started by the caller
    per_trial = trial_resources(probe, r.launcher)
    if uses_ray_train(probe, r.launcher):
        check_fits(probe.workers, probe.cpus_per_worker, probe.gpus_per_worker, per_trial["CPU"])
        need_cpus, need_gpus = probe.workers * probe.cpus_per_worker + per_trial["CPU"], probe.workers * probe.gpus_per_worker
    else:
        check_fits(1, per_trial["CPU"], per_trial.get("GPU", 0.0))
        need_cpus, need_gpus = per_trial["CPU"], per_trial.get("GPU", 0.0)
    concurrency = max_concurrent or r.max_concurrent_trials or default_concurrency(need_cpus, need_gpus)

    def trainable(tpe_args=None):
        fn = tune.with_parameters(run_trial, storage=storage_uri(storage), study=study.study, launcher=r.launcher,
                                  max_failures=r.max_failures, tpe=tpe_args)
        return tune.with_resources(fn, per_trial)

    console = console or StudyConsole(planned_trial_count(study, specs))
    set_current(console)

    def run_config(name: str, tpe_args: tuple | None = None):
        return tune.RunConfig(name=name, storage_path=store.uri, verbose=1 if verbose else 0,
                              progress_reporter=_progress_reporter() if verbose else None,
                              callbacks=[TuneEvents(tpe_args)],
                              failure_config=tune.FailureConfig(max_failures=r.max_failures))

    unfinished = 0

    def run_planned(name: str, planned_specs: list[TrialSpec], what: str) -> None:
        """Run the planned trials not yet recorded: restore the latest Tune experiment of ``name`` on resume
        (interrupted trials continue from their checkpoints), then a fresh one for any left over."""
        nonlocal unfinished
        finished = store.finished_ids()
        todo = [s for s in planned_specs if s.trial_id not in finished]
        console.write(f"{what}: {len(planned_specs)} trials planned, {len(planned_specs) - len(todo)} already recorded, "
                      f"{len(todo)} to run; up to {concurrency} at once. Results: {store.uri}")
        console.not_to_run(len(planned_specs) - len(todo))
        if not todo:
            return
        planned = {s.trial_id: asdict(s) for s in todo}
        paths = [f"{store.uri}/{name}"]
        while tune.Tuner.can_restore(paths[-1]):
            paths.append(f"{store.uri}/{name}-{len(paths)}")
        fn = trainable()
        if resume and len(paths) > 1:
            u = _fit(lambda: None, paths[-2], True, fn, console, lambda c: spec_of(c, None), planned)
            unfinished += u
            record_failures(store, console.errors, study.study)
            finished = store.finished_ids()
            todo = [s for s in planned_specs if s.trial_id not in finished]
            if not todo or u:
                return
        fresh = paths[-1].rsplit("/", 1)[1]
        unfinished += _fit(lambda: tune.Tuner(
            fn, param_space={"spec": tune.grid_search([asdict(s) for s in todo])},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=REUSE_TRIAL_PROCESSES,
                                        trial_name_creator=trial_name, trial_dirname_creator=trial_dirname),
            run_config=run_config(fresh)), paths[-1], False, fn, console, lambda c: spec_of(c, None), planned)

    def run_tpe(name: str, space, num_samples: int, seeds: list[int], sampler_seed: int, metric: str,
                tpe_args: tuple) -> None:
        nonlocal unfinished
        import optuna
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch

        fn = trainable(tpe_args)
        searcher = Repeater(OptunaSearch(space=optuna_space(space), metric=metric, mode="max",
                                         sampler=optuna.samplers.TPESampler(seed=sampler_seed)),
                            repeat=len(seeds), set_index=True)
        unfinished += _fit(lambda: tune.Tuner(
            fn, tune_config=tune.TuneConfig(search_alg=searcher, max_concurrent_trials=concurrency,
                                            num_samples=num_samples * len(seeds), reuse_actors=REUSE_TRIAL_PROCESSES),
            run_config=run_config(name, tpe_args)), f"{store.uri}/{name}", resume, fn, console,
            lambda c, a=tpe_args: spec_of(c, a))

    def stop_if_unfinished() -> None:
        failed = record_failures(store, console.errors, study.study)
        if failed:
            console.write(f"warning: {failed} trial(s) failed after {r.max_failures} retries; recorded with status "
                          "'failed' and their error (--resume runs them again)")
        console.errors.clear()
        if unfinished:
            raise KeyboardInterrupt

    study_dict = study.model_dump(mode="json")
    stage2: list[TrialSpec] = []
    try:
        if bases is None:
            tb = study.tune_base
            if tb is not None:
                run_planned("tune-base", protocol.plan_stage1(study), "stage 1 (tune_base)")
                if tb.sampler == "tpe":
                    for loss in study.losses:
                        run_tpe(f"tune-base-tpe-{loss}", _space_for(tb.space, loss), tb.budget, tb.seeds, tb.seed,
                                tb.select, (study_dict, loss, "tune_base"))
                stop_if_unfinished()
                bases = protocol.pick_bases(study, read_results(store.uri)[0].to_pandas())
            else:
                bases = protocol.file_bases(study)
            store.write_text("study.yaml", study_as_yaml(study, bases))
        else:
            console.write("stage 1 already recorded: stage 2 starts from the recorded bases")
        if study.tune_base is not None:
            for loss, rec in bases.items():
                console.write(f"base of {loss}: {_fmt_values(rec.get('values') or {})} ({rec.get('source')}"
                              + (f", {rec['select']} mean {rec['mean']:.4f})" if rec.get("trial_ids") else ")"))
        tuned = protocol.tuned_values(bases)
        plain = specs is not None and study.tune_base is None and not study.nuisance
        stage2 = specs if plain else protocol.plan_stage2(study, bases)
        run_planned("tune", stage2, "stage 2" if study.tune_base is not None else "study")
        if study.search is not None and study.search.sampler == "tpe":
            for loss in study.losses:
                run_tpe(f"tune-tpe-{loss}", study.search.space, study.search.num_samples, study.seeds,
                        study.search.seed, "val_top1", (study_dict, loss, "search", tuned.get(loss)))
    except KeyboardInterrupt:
        unfinished += 1
    finally:
        if stage2 and study.nuisance:
            selection = protocol.select_nuisance(study, stage2, read_results(store.uri)[0].to_pandas())
            store.write_text(protocol.SELECTION_FILE, json.dumps(selection, indent=1))
    try:
        stop_if_unfinished()
    finally:
        console.close()
        set_current(None)
    return store.uri


def _study_folder(storage: str, study: Study) -> str:
    from .runner import storage_uri

    root = storage_uri(storage)
    return root.rstrip("/") + "/" + study.study if "://" in root else str(Path(root) / study.study)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    from .progress import StudyConsole, configure_console

    configure_console(args.verbose)  # before Ray is imported: it reads some of these when imported
    quick = " --quick" if args.quick else ""
    resume_cmd = f"  python -m supcon_ray.tune --space {args.space}{quick} --storage {args.storage} --resume"
    incomplete = None
    console = None
    try:
        study = load_study(args.space, quick=args.quick)
        plan_stage2(study, None)  # plans (and so checks) stage 2 before anything starts
        plan_stage1(study)
        if args.max_concurrent_trials is not None and args.max_concurrent_trials < 1:
            raise ConfigError("--max-concurrent-trials must be >= 1")
        if args.dry_run:
            print_plan(study)
            return 0
        console = StudyConsole(planned_trial_count(study))
        try:
            results = run_study(study, None, args.storage, args.resume, args.address, args.max_concurrent_trials,
                                console=console, verbose=args.verbose)
        finally:
            console.close()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except StageIncomplete as err:
        incomplete, results = err, _study_folder(args.storage, study)
    except KeyboardInterrupt:
        print(f"\nInterrupted. Finished trials are saved. Resume with:\n{resume_cmd}", file=sys.stderr)
        return 130
    summarize(results)
    if not args.no_report and incomplete is None:
        from .report import build_report, headline

        path, numbers = build_report(results)
        print("\n".join(["", "verdict:", *(f"  {line}" for line in headline(numbers))]))
        print(f"report: {path}")
    print(f"results: {results}  ({time.perf_counter() - t0:.0f} s)")
    failed = console.failed if console is not None else 0
    if incomplete is not None:
        print(f"error: {incomplete}\n{resume_cmd}", file=sys.stderr)
        return 1
    if failed:
        print(f"error: {failed} trial(s) failed; their rows hold the error text (status 'failed'). "
              f"Fix the cause, then run them again with:\n{resume_cmd}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
