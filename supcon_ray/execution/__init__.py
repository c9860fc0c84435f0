"""Execution on Ray: a study's run (its steps in order, each decision recorded), the Tune executor of a
step's trials, the trial process, data-parallel runs on Ray Train, joining or starting Ray, and the console.
"""

from supcon_ray.exports import exports

__all__ = [
    "Executor",
    "Outcome",
    "StudyConsole",
    "check_dataset_files",
    "exit_status",
    "fit_distributed",
    "init_ray",
    "run_study",
    "run_trial",
]
__getattr__, __dir__ = exports(__name__, {
    "Executor": "executor",
    "run_trial": "runner",
    "fit_distributed": "distributed",
    "init_ray": "ray_runtime",
    "StudyConsole": "progress",
    "Outcome": "study_run",
    "check_dataset_files": "study_run",
    "exit_status": "study_run",
    "run_study": "study_run",
})
