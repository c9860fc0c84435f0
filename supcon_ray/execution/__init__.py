"""Execution on Ray: the Tune executor of a study's trials, the trial process, data-parallel runs on
Ray Train, joining or starting Ray, and the console.
"""

from supcon_ray.exports import exports

__all__ = [
    "Executor",
    "StudyConsole",
    "fit_distributed",
    "init_ray",
    "run_trial",
]
__getattr__, __dir__ = exports(__name__, {
    "Executor": "executor",
    "run_trial": "runner",
    "fit_distributed": "distributed",
    "init_ray": "ray_runtime",
    "StudyConsole": "progress",
})
