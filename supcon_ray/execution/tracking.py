"""Experiment tracking through Ray Tune's own integrations: MLflow (``MLflowLoggerCallback``) and
TensorBoard (``TBXLoggerCallback``), turned on by a study file's ``tracking:`` block.

Every trial becomes one MLflow run, named by its trial id, with its training configuration as
parameters, every epoch's metrics (``train_loss``, ``val_top1``, ...) and the final ones, and tags for
study, factor, setting, seed, phase and loss. A trial already recorded in the study's folder when a
step starts (a resumed study, a retried trial) is not logged again. Tracking is an execution setting:
in neither the fingerprint nor any trial id.
"""

from __future__ import annotations

import os
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from supcon_ray.execution.runner import spec_of

#: The trial spec's fields that tag each MLflow run.
TAGS = ("study", "factor", "setting", "seed", "phase", "loss", "trial_id", "design")


class StudyMLflowCallback(MLflowLoggerCallback):
    """Ray Tune's MLflow logger, one run per trial of the study: named by the trial id, tagged with what the
    trial is, its ``TrainConfig`` as parameters; trials in ``recorded`` are skipped."""

    def __init__(self, tracking_uri: str, experiment_name: str, study: str, recorded: set[str],
                 tpe: tuple | None = None) -> None:
        super().__init__(tracking_uri=tracking_uri, experiment_name=experiment_name)
        self.study, self.recorded, self.tpe = study, set(recorded), tpe
        self._skipped: set = set()

    def _spec(self, trial) -> dict[str, Any] | None:
        try:
            return spec_of(trial.config, self.tpe)
        except (KeyError, TypeError):  # a trial that never got a config: nothing to log
            return None

    def log_trial_start(self, trial) -> None:
        spec = self._spec(trial)
        if spec is None or spec["trial_id"] in self.recorded:
            self._skipped.add(trial)
            return
        if trial not in self._trial_runs:
            tags = {**self.tags, **{k: str(spec.get(k)) for k in TAGS if k != "study"}, "study": self.study}
            run = self.mlflow_util.start_run(tags=tags, run_name=spec["trial_id"])
            self._trial_runs[trial] = run.info.run_id
            params = {k: v for k, v in spec["train"].items() if not isinstance(v, dict)}
            params.update({f"options.{k}": v for k, v in (spec["train"].get("options") or {}).items()})
            self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=params)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial in self._skipped or trial not in self._trial_runs:
            return
        numeric = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=numeric,
                                     step=int(result.get("training_iteration") or iteration))

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if trial in self._skipped or trial not in self._trial_runs:
            return
        self.mlflow_util.end_run(run_id=self._trial_runs[trial], status="FAILED" if failed else "FINISHED")


def callbacks(tracking, study: str, recorded: set[str], tpe: tuple | None = None) -> list:
    """The Tune callbacks a study's ``tracking`` block asks for (none without one)."""
    if tracking is None:
        return []
    out: list = []
    if tracking.mlflow:
        if tracking.mlflow_uri.startswith("file:"):
            # MLflow 3 keeps its folder store in maintenance mode and asks for this opt-in to use it; a server
            # or a database URI (sqlite:///..., with the full mlflow package) needs none
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        out.append(StudyMLflowCallback(tracking.mlflow_uri, tracking.experiment or study, study, recorded, tpe))
    if tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        out.append(TBXLoggerCallback())
    return out
