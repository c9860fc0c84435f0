"""Which trials carry a score, and how they are counted.

Scoring rule: ``completed`` trials carry their metric. ``diverged`` trials are recorded at chance
level (see :mod:`supcon_ray.engine.trainer`); the main analysis leaves them out of the spread and reports
divergence as its own result, and the *conservative* view scores them at chance. ``failed`` trials
(infrastructure errors) have no score and are only counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STATUSES = ("completed", "diverged", "failed")


def completed(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Completed trials that have a value of ``metric``."""
    return trials[(trials["status"] == "completed") & trials[metric].notna()]


def scored(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Completed and diverged trials (diverged ones at their recorded chance-level value)."""
    return trials[trials["status"].isin(["completed", "diverged"]) & trials[metric].notna()]


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    """``{completed, diverged, failed}`` counts of ``trials``."""
    counts = trials["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def divergence_rate(counts: dict[str, int]) -> float:
    """Diverged / (completed + diverged); NaN when nothing finished. Failed trials never ran to the end."""
    finished = counts["completed"] + counts["diverged"]
    return counts["diverged"] / finished if finished else float("nan")


def logit(values: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``: spreads near 100% accuracy are
    stretched, so a ceiling cannot pass for stability."""
    p = np.clip(np.asarray(values, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))
