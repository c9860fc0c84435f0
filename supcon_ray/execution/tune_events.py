"""The Ray Tune callback behind the study's console (:mod:`supcon_ray.execution.progress`) and its failure records.

Kept apart from :mod:`supcon_ray.execution.progress` because it imports Ray, which must not be imported
before :func:`supcon_ray.execution.progress.configure_console` has set Ray's output environment.
"""

from __future__ import annotations

import os
from typing import Any

from ray.tune import Callback

from supcon_ray.execution.progress import current


class TuneEvents(Callback):
    """Ray Tune callback: trial starts, retries, ends and errors, sent to the running study's console
    (:func:`supcon_ray.execution.progress.current`), which also keeps every errored trial's spec and error text.

    ``tpe``: how to read a spec from a trial's config (see :func:`supcon_ray.execution.runner.spec_of`).
    """

    def __init__(self, tpe: tuple | None = None) -> None:
        self.tpe = tpe

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with the experiment
        return {"tpe": self.tpe}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.tpe = state.get("tpe")

    def spec(self, trial) -> dict[str, Any] | None:
        """The trial's spec from its Tune config: the planned spec for a grid, the TPE suggestion's otherwise.
        Tune knows a trial's config before it starts, so this works for trials that never ran."""
        from supcon_ray.execution.runner import spec_of

        try:
            return spec_of(trial.config, self.tpe) if trial.config else None
        except Exception:  # noqa: BLE001 - a spec that cannot be read must not stop the study
            return None

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        console = current()
        if console is not None:
            console.trial_started(trial.trial_id)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        console = current()
        if console is not None:
            console.trial_retried(trial.trial_id, self.spec(trial), trial_error_text(trial))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        last = dict(trial.last_result or {})
        if last.get("final"):  # its row is in Parquet: nothing reads its checkpoints again
            from supcon_ray.execution.disk import remove_checkpoints

            try:
                remove_checkpoints(trial.storage.storage_filesystem, trial.storage.trial_fs_path)
            except Exception:  # noqa: BLE001 - disk left over is never worth stopping a study for
                pass
        console = current()
        if console is not None:
            console.trial_finished(trial.trial_id, self.spec(trial), last)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        console = current()
        if console is not None:
            console.trial_failed(trial.trial_id, self.spec(trial), trial_error_text(trial), str(trial.path))

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        console = current()
        if console is not None:
            console.tick()


def trial_error_text(trial) -> str:
    """The error a Tune trial ended with.

    Tune writes it to the trial's local folder first (``trial.pickled_error_file`` / ``error_file``)
    and copies it to storage later, so the local files are read first.
    """
    import cloudpickle

    from supcon_ray.execution.runner import error_text

    for read in (lambda: _read_local(trial.pickled_error_file, cloudpickle.loads), trial.get_pickled_error):
        try:
            err = read()
        except Exception:  # noqa: BLE001 - an unreadable error file: try the next source
            err = None
        if err is not None:
            return error_text(err)
    for read in (lambda: _read_local(trial.error_file, bytes.decode), trial.get_error):
        try:
            text = read()
        except Exception:  # noqa: BLE001
            text = None
        if text:
            return str(text).strip()[-2000:]
    return "unknown error (Ray Tune recorded none)"


def _read_local(path: str | None, parse):
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return parse(f.read())
