"""What a study cost: per phase (tuning the base, nuisance searches, the analysed runs), its trials,
trial-epochs, wall seconds and device-seconds, and the disk its folder holds.

Read from the trials table alone, so every folder has it, including those written before trials
recorded ``epochs_run`` and ``device_seconds``: for such rows a completed run trained its configured
``epochs``, a run that diverged in training stopped at ``diverged_epoch``, and a failed run counts no
epochs; device-seconds are ``seconds`` times ``world_size`` (the workers, one device each). A run
shared by several factors (a study's base) counts once. ``seconds`` is the wall time of the attempt
that finished; an attempt cut short by a crash and resumed is not in it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["PhaseCost", "StudyCost", "SELECTION_PHASES", "cost_line", "fidelity_savings", "folder_bytes", "study_costs"]

#: Phases whose runs only choose settings (never analysed): the selection a study pays for.
SELECTION_PHASES = ("tune_base", "nuisance")
#: The order phases are listed in.
PHASE_ORDER = ("tune_base", "nuisance", "study")


@dataclass(frozen=True)
class PhaseCost:
    """One phase's runs: how many, the epochs they trained, their wall seconds and device-seconds."""

    phase: str
    trials: int
    trial_epochs: int
    trial_seconds: float
    device_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "trials": self.trials, "trial_epochs": self.trial_epochs,
                "trial_seconds": round(self.trial_seconds, 1), "device_seconds": round(self.device_seconds, 1)}


@dataclass(frozen=True)
class StudyCost:
    """A study's cost per phase, in :data:`PHASE_ORDER`; ``disk_bytes``: its folder on disk (``None``
    where it is not a local folder)."""

    study: str
    phases: tuple[PhaseCost, ...]
    disk_bytes: int | None = None
    #: trial-epochs the study would have trained with every selection search at full length (studies whose
    #: searches have a ``fidelity`` block; None otherwise): :func:`fidelity_savings`
    full_fidelity_epochs: int | None = None

    def _sum(self, attr: str, phases: tuple[str, ...] | None = None) -> float:
        return sum(getattr(p, attr) for p in self.phases if phases is None or p.phase in phases)

    @property
    def trials(self) -> int:
        return int(self._sum("trials"))

    @property
    def trial_epochs(self) -> int:
        return int(self._sum("trial_epochs"))

    @property
    def trial_seconds(self) -> float:
        return self._sum("trial_seconds")

    @property
    def device_seconds(self) -> float:
        return self._sum("device_seconds")

    @property
    def selection_share(self) -> float:
        """The share of trial-seconds spent choosing settings (:data:`SELECTION_PHASES`); NaN with none."""
        total = self.trial_seconds
        return self._sum("trial_seconds", SELECTION_PHASES) / total if total > 0 else math.nan

    @property
    def selection_epoch_share(self) -> float:
        """The share of trial-epochs spent choosing settings; NaN with none."""
        total = self.trial_epochs
        return self._sum("trial_epochs", SELECTION_PHASES) / total if total > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        share = self.selection_share
        epoch_share = self.selection_epoch_share
        return {"phases": [p.as_dict() for p in self.phases], "trials": self.trials,
                "trial_epochs": self.trial_epochs, "trial_seconds": round(self.trial_seconds, 1),
                "device_seconds": round(self.device_seconds, 1),
                "selection_share_seconds": None if math.isnan(share) else round(share, 4),
                "selection_share_epochs": None if math.isnan(epoch_share) else round(epoch_share, 4),
                "disk_bytes": self.disk_bytes,
                **({"full_fidelity_epochs": self.full_fidelity_epochs} if self.full_fidelity_epochs is not None else {})}


def _epochs_run(rows: pd.DataFrame) -> pd.Series:
    """Epochs each run trained: recorded, else inferred from its status (see the module docstring)."""
    configured = pd.to_numeric(rows.get("epochs"), errors="coerce").fillna(0)
    stopped = pd.to_numeric(rows.get("diverged_epoch"), errors="coerce")
    in_training = rows.get("diverged_stage", pd.Series(None, index=rows.index)).fillna("linear") != "linear"
    inferred = configured.where(rows["status"] != "failed", 0)
    inferred = inferred.where(~((rows["status"] == "diverged") & in_training & stopped.notna()), stopped)
    if "epochs_run" in rows:
        recorded = pd.to_numeric(rows["epochs_run"], errors="coerce")
        inferred = recorded.where(recorded.notna(), inferred)
    return inferred.astype(int)


def _device_seconds(rows: pd.DataFrame) -> pd.Series:
    seconds = pd.to_numeric(rows.get("seconds"), errors="coerce").fillna(0.0)
    workers = pd.to_numeric(rows.get("world_size"), errors="coerce").fillna(1.0)
    inferred = seconds * workers
    if "device_seconds" in rows:
        recorded = pd.to_numeric(rows["device_seconds"], errors="coerce")
        inferred = recorded.where(recorded.notna(), inferred)
    return inferred


def fidelity_savings(decisions: Mapping[str, Any] | None) -> int | None:
    """Trial-epochs a study's searches with fidelity did not train, by their picks' records in the manifest's
    ``decisions`` (each pick's ``fidelity``: its search's planned trial-epochs against every configuration at
    full length); None for a study with none."""
    records = [rec.get("fidelity") for rec in ((decisions or {}).get("bases") or {}).values()]
    records += [(pick.get("best") or {}).get("fidelity") for pick in (decisions or {}).get("nuisance") or []]
    records = [r for r in records if r]
    if not records:
        return None
    return int(sum(r["full_length_trial_epochs"] - r["trial_epochs"] for r in records))


def study_costs(trials: pd.DataFrame, disk: Mapping[str, int | None] | None = None,
                saved: Mapping[str, int | None] | None = None) -> dict[str, StudyCost]:
    """Each study's :class:`StudyCost` from its trials (every run once, selection runs included);
    ``disk``: each study folder's bytes, where known; ``saved``: the trial-epochs its searches with fidelity
    did not train (:func:`fidelity_savings`), where it has any."""
    out: dict[str, StudyCost] = {}
    runs = trials.drop_duplicates(["study", "trial_id"]) if "trial_id" in trials else trials
    for study, g in runs.groupby("study", sort=True):
        phase = g["phase"].fillna("study").astype(str) if "phase" in g else pd.Series("study", index=g.index)
        epochs, device = _epochs_run(g), _device_seconds(g)
        seconds = pd.to_numeric(g.get("seconds"), errors="coerce").fillna(0.0)
        phases = []
        for name in [p for p in PHASE_ORDER if (phase == p).any()] + sorted(set(phase) - set(PHASE_ORDER)):
            at = phase == name
            phases.append(PhaseCost(name, int(at.sum()), int(epochs[at].sum()), float(seconds[at].sum()),
                                    float(device[at].sum())))
        kept = (saved or {}).get(str(study))
        out[str(study)] = StudyCost(str(study), tuple(phases), (disk or {}).get(str(study)),
                                    None if kept is None else int(epochs.sum()) + kept)
    return out


def _duration(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds < 3600 else f"{seconds / 3600:.1f} h ({seconds:,.0f} s)"


def _bytes(n: int) -> str:
    if n < 1e6:
        return f"{n / 1e3:.0f} kB"
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def cost_line(cost: StudyCost) -> str:
    """One line for the console, the report and its markdown: the whole study, then its selection share."""
    parts = [f"{cost.trials} trials, {cost.trial_epochs:,} trial-epochs, {_duration(cost.trial_seconds)} of trial "
             f"time ({cost.device_seconds:,.0f} device-seconds)"]
    chosen = [p for p in cost.phases if p.phase in SELECTION_PHASES]
    if chosen:
        each = ", ".join(f"{p.phase} {p.trials} trials" for p in chosen)
        parts.append(f"selection ({each}) {cost.selection_share:.0%} of the trial time and "
                     f"{cost.selection_epoch_share:.0%} of the trial-epochs")
    else:
        parts.append("no selection runs")
    if cost.full_fidelity_epochs:
        parts.append(f"with every selection run at full length {cost.full_fidelity_epochs:,} trial-epochs "
                     f"(this study trained {cost.trial_epochs / cost.full_fidelity_epochs:.0%} of them)")
    if cost.disk_bytes is not None:
        parts.append(f"{_bytes(cost.disk_bytes)} on disk")
    return "; ".join(parts)


def folder_bytes(path: str | os.PathLike) -> int:
    """Bytes of every file under a local study folder (0 if it does not exist), but for the report's own
    pages (``*.html`` in the folder itself: ``python -m supcon_ray.report`` writes one there), so that
    reading a folder does not change what it reports."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            if name.endswith(".html") and os.path.samefile(root, path):
                continue
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while we looked
                pass
    return total
