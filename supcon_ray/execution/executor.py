"""Running a step's trials on Ray Tune: planned ones as a grid, adaptive ones as Optuna TPE searches.

:class:`Executor` joins (or starts) Ray, checks the trial resources fit, and runs what a step
planned and the storage has not recorded. ``--resume`` restores the latest Tune experiment of a
step (interrupted trials continue from their checkpoints), then runs a fresh one for any left
over. Every trial that ends in an error, including one that never started, gets a ``failed`` row
(:func:`supcon_ray.execution.runner.record_failures`); trials left unfinished (Ctrl-C: Tune stops and
returns) are counted in :attr:`Executor.unfinished`, never signalled by an exception.
"""

from __future__ import annotations

import glob
import os
from dataclasses import asdict
from typing import Any

from supcon_ray.config import TrainConfig
from supcon_ray.results.storage import ResultStore
from supcon_ray.study import Study, Step, optuna_space
from supcon_ray.study.protocol import Adaptive, Block, Plan

#: Tune keeps a finished trial's process for the next trial of the same resources, so torch is imported
#: once per process, not once per trial; the runner resets the process state each trial needs
#: (:func:`supcon_ray.execution.runner.reset_process_state`), so results match a fresh process bit for bit.
REUSE_TRIAL_PROCESSES = True

#: Tune's switch for the loggers it adds to every run: CSV, JSON and, wherever tensorboardX is installed,
#: TensorBoard event files. A run made here names its JSON logger itself (Tune reads ``result.json`` back
#: for its ResultGrid) and TensorBoard only with ``tracking.tensorboard``: the default set wrote event files
#: for every trial and cost the driver seconds importing tensorboardX before the first trial started.
DEFAULT_LOGGERS_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"

STEP_TITLES = {Step.TUNE_BASE: "step 1 (tune_base)", Step.STUDY: "step 2", Step.REPLICATES: "step 3 (replicates)"}
#: The Tune experiment folder of each step's planned trials (under the study's storage folder).
STEP_EXPERIMENTS = {Step.TUNE_BASE: "tune-base", Step.STUDY: "tune", Step.REPLICATES: "tune-replicates"}


def trial_name(trial) -> str:
    spec = trial.config["spec"]
    return f"{spec['loss']}:{spec['setting']}:s{spec['seed']}"


def trial_dirname(trial) -> str:
    return f"{trial.config['spec']['trial_id']}-{trial.trial_id}"


def _progress_reporter():
    """Ray's status table (``--verbose`` only)."""
    from ray import tune

    return tune.CLIReporter(
        parameter_columns={"spec/loss": "loss", "spec/setting": "setting", "spec/seed": "seed"},
        metric_columns={"stage": "stage", "epoch": "epoch", "train_loss": "loss", "val_top1": "val_top1",
                        "test_top1": "test_top1"},
        max_report_frequency=30, max_column_length=28)


def restorable(path: str) -> bool:
    """Whether a Tune experiment folder holds a run to restore: Ray's own test (its ``tuner.pkl``) and, on a local
    disk, an experiment state. A process killed in the moment after a Tuner starts leaves a ``tuner.pkl`` alone,
    whose restore would start trials without their configuration; such a folder is used afresh instead."""
    from ray import tune

    if not tune.Tuner.can_restore(path):
        return False
    local = path.removeprefix("file://")
    return "://" in local or bool(glob.glob(os.path.join(glob.escape(local), "experiment_state-*.json")))


def made_with_default_loggers(path: str) -> bool:
    """Whether the Tune experiment at ``path`` was made with Tune's default loggers (before a study named its own
    JSON logger): its trials hold ``progress.csv``. Its restored run keeps the callbacks it was made with, so it
    needs the defaults back to write ``result.json``; a folder on object storage is taken to be one."""
    local = path.removeprefix("file://")
    return "://" in local or bool(glob.glob(os.path.join(glob.escape(local), "*", "progress.csv")))


class Executor:
    """Runs a study's trials on Ray Tune, recording each in ``store``; counts failed and unfinished ones."""

    def __init__(self, study: Study, store: ResultStore, console, resume: bool, address: str | None = None,
                 max_concurrent: int | None = None, verbose: bool = False, plugins: list[dict] | None = None) -> None:
        from supcon_ray.execution.progress import quiet_ray_loggers
        from supcon_ray.execution.ray_runtime import check_fits, init_ray
        from supcon_ray.execution.runner import default_concurrency, trial_resources, uses_ray_train

        self.study, self.store, self.console, self.resume, self.verbose = study, store, console, resume, verbose
        self.failed = self.unfinished = 0
        self.plugins = plugins or []  # the plugins' sources: every trial process loads them before its config
        r = study.resources
        probe = TrainConfig(workers=r.workers_per_trial, cpus_per_worker=r.cpus_per_worker,
                            gpus_per_worker=r.gpus_per_worker)
        init_ray(address)
        quiet_ray_loggers(verbose)  # also when Ray was started by the caller
        self.per_trial = trial_resources(probe, r.launcher)
        if uses_ray_train(probe, r.launcher):
            check_fits(probe.workers, probe.cpus_per_worker, probe.gpus_per_worker, self.per_trial["CPU"])
            cpus, gpus = probe.workers * probe.cpus_per_worker + self.per_trial["CPU"], probe.workers * probe.gpus_per_worker
        else:
            check_fits(1, self.per_trial["CPU"], self.per_trial.get("GPU", 0.0))
            cpus, gpus = self.per_trial["CPU"], self.per_trial.get("GPU", 0.0)
        self.concurrency = max_concurrent or r.max_concurrent_trials or default_concurrency(cpus, gpus)

    # -- one step ------------------------------------------------------------------------------

    def run(self, planned: Plan, tpe_study: dict[str, Any]) -> list[str]:
        """Run a step's planned trials, then its TPE searches; record failures. Returns the ids the TPE
        searches ran (planned ids are already known)."""
        self._run_planned(planned)
        ran: list[str] = []
        for search in planned.adaptive:
            if self.unfinished:
                break
            ran += self._run_tpe(search, tpe_study)
        self._record_failures()
        return ran

    def _record_failures(self) -> None:
        from supcon_ray.execution.runner import record_failures

        failed = record_failures(self.store, self.console.errors, self.study.study)
        if failed:
            self.console.write(f"warning: {failed} trial(s) failed after {self.study.resources.max_failures} retries; "
                               "recorded with status 'failed' and their error (--resume runs them again)")
        self.failed += failed
        self.console.errors.clear()

    def _trainable(self, tpe_args: tuple | None = None):
        from ray import tune

        from supcon_ray.execution.runner import run_trial

        r = self.study.resources
        fn = tune.with_parameters(run_trial, storage=self.store.root, study=self.study.study, launcher=r.launcher,
                                  max_failures=r.max_failures, tpe=tpe_args, plugins=self.plugins)
        return tune.with_resources(fn, self.per_trial)

    def _run_config(self, name: str, tpe_args: tuple | None = None):
        from ray import tune
        from ray.tune.logger import JsonLoggerCallback

        from supcon_ray.execution.tune_events import TuneEvents

        tracking = []
        if self.study.tracking is not None:
            from supcon_ray.execution.tracking import callbacks

            tracking = callbacks(self.study.tracking, self.study.study, self.store.finished_ids(), tpe_args)
        # the latest checkpoint per running trial is all a resume needs; a finished one's go with its row
        # (supcon_ray.execution.disk)
        return tune.RunConfig(name=name, storage_path=self.store.uri, verbose=1 if self.verbose else 0,
                              checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                              progress_reporter=_progress_reporter() if self.verbose else None,
                              callbacks=[TuneEvents(tpe_args), JsonLoggerCallback(), *tracking],
                              failure_config=tune.FailureConfig(max_failures=self.study.resources.max_failures))

    def _run_planned(self, planned: Plan) -> None:
        """Run the planned trials not yet recorded: restore the step's latest Tune experiment on resume,
        then a fresh one for any left over."""
        from ray import tune

        name = STEP_EXPERIMENTS[planned.step]
        specs = planned.specs
        finished = self.store.finished_ids()
        todo = [s for s in specs if s.trial_id not in finished]
        if specs:
            self.console.write(f"{STEP_TITLES[planned.step]}: {len(specs)} trials planned, {len(specs) - len(todo)} "
                               f"already recorded, {len(todo)} to run; up to {self.concurrency} at once. "
                               f"Results: {self.store.uri}")
        self.console.not_to_run(len(specs) - len(todo))
        if not todo:
            return
        by_id = {s.trial_id: asdict(s) for s in todo}
        paths = [f"{self.store.uri}/{name}"]
        while restorable(paths[-1]):
            paths.append(f"{self.store.uri}/{name}-{len(paths)}")
        fn = self._trainable()
        if self.resume and len(paths) > 1:
            self.unfinished += self._fit(None, paths[-2], fn, None, by_id)
            self._record_failures()
            finished = self.store.finished_ids()
            todo = [s for s in specs if s.trial_id not in finished]
            if not todo or self.unfinished:
                return
        config = tune.TuneConfig(max_concurrent_trials=self.concurrency, reuse_actors=REUSE_TRIAL_PROCESSES,
                                 trial_name_creator=trial_name, trial_dirname_creator=trial_dirname)
        self.unfinished += self._fit(lambda: tune.Tuner(
            fn, param_space={"spec": tune.grid_search([asdict(s) for s in todo])}, tune_config=config,
            run_config=self._run_config(paths[-1].rsplit("/", 1)[1])), None, fn, None, by_id)

    def _run_tpe(self, search: Adaptive, study_dict: dict[str, Any]) -> list[str]:
        """One adaptive TPE search of ``search.budget`` configurations x its seeds; returns the ids it ran."""
        import optuna
        from ray import tune
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch

        args = (study_dict, search.loss, search.block) + ((search.tuned,) if search.block == Block.SEARCH else ())
        fn = self._trainable(args)
        searcher = Repeater(OptunaSearch(space=optuna_space(search.space), metric=search.metric, mode="max",
                                         sampler=optuna.samplers.TPESampler(seed=search.sampler_seed)),
                            repeat=len(search.seeds), set_index=True)
        ran: list[str] = []
        config = tune.TuneConfig(search_alg=searcher, max_concurrent_trials=self.concurrency,
                                 num_samples=search.budget * len(search.seeds), reuse_actors=REUSE_TRIAL_PROCESSES)
        path = f"{self.store.uri}/{search.name}"
        self.unfinished += self._fit(lambda: tune.Tuner(fn, tune_config=config,
                                                        run_config=self._run_config(search.name, args)),
                                     path if self.resume else None, fn, args, None, ran)
        return ran

    def _fit(self, make_tuner, restore: str | None, trainable, tpe: tuple | None,
             planned: dict[str, dict] | None, ran: list[str] | None = None) -> int:
        """Run (or restore from ``restore``) one Tuner; return how many trials it left unfinished.

        Errored trials reach ``console.errors`` through :class:`supcon_ray.execution.tune_events.TuneEvents`. A
        result with an error the callback did not see (none expected) is identified from its config, or,
        for a trial that never reported (its ``res.config`` is None), from the plan by its folder name
        (``<planned trial_id>-<tune id>``, :func:`trial_dirname`).
        """
        from ray import tune

        from supcon_ray.execution.runner import error_text, spec_of

        if restore and restorable(restore):
            tuner = tune.Tuner.restore(restore, trainable=trainable, resume_errored=True)
            defaults = "0" if made_with_default_loggers(restore) else "1"
        elif make_tuner is None:
            return 0
        else:
            tuner, defaults = make_tuner(), "1"
        unfinished = 0
        before = os.environ.get(DEFAULT_LOGGERS_ENV)
        os.environ[DEFAULT_LOGGERS_ENV] = before if before is not None else defaults
        try:
            results = tuner.fit()
        finally:
            if before is None:
                os.environ.pop(DEFAULT_LOGGERS_ENV, None)
        for res in results:
            spec = spec_of(res.config, tpe) if res.config else None
            if ran is not None and spec is not None:
                ran.append(spec["trial_id"])
            if res.error is not None:
                if str(res.path) in self.console.error_paths:
                    continue
                if spec is None and planned and res.path:
                    spec = planned.get(os.path.basename(str(res.path)).rsplit("-", 1)[0])
                self.console.trial_failed(str(res.path), spec, error_text(res.error), str(res.path))
            elif not (res.metrics or {}).get("final"):
                unfinished += 1
        return unfinished
