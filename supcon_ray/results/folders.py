"""Reading study folders: trials, epochs and what each folder recorded of its study, and the rows the
statistics read. A folder without a manifest is read by the rule of :func:`supcon_ray.results.manifest.analysed_rows`
(rows marked ``in_stats``): that is how trials produced elsewhere are analysed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from supcon_ray.config import ConfigError
from supcon_ray.results.cost import folder_bytes
from supcon_ray.results.manifest import Manifest, analysed_rows, read_manifest
from supcon_ray.results.storage import read_results, read_text


def study_meta(results_dir: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(read_text(results_dir, "study.yaml") or "") or {}


@dataclass(frozen=True)
class Folder:
    """What one study folder recorded of its study: the study file (``study.yaml``, ``{}`` where none)
    and the manifest (``None`` for trials produced elsewhere)."""

    study: str
    study_file: dict[str, Any]
    manifest: Manifest | None
    #: the folder's bytes on disk (``None`` for a cloud URI)
    disk_bytes: int | None = None


def load_folders(results_dirs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[Folder]]:
    """Trials (each marked ``analysed``), epochs and the :class:`Folder` of every folder, in order;
    ConfigError when a folder is missing or has no trials."""
    trials, epochs, folders = [], [], []
    for d in results_dirs:
        if "://" not in d and not Path(d).is_dir():
            raise ConfigError(f"{d}: no such folder (give a study folder, <storage>/<study>)")
        t, e = read_results(d)
        t, e = t.to_pandas(), e.to_pandas()
        if t.empty:
            raise ConfigError(f"{d}: no trials found in {d}/trials (run a study first)")
        manifest = read_manifest(d)
        used = analysed_rows(t, d, manifest).assign(analysed=True)  # a trial shared by two factors: once under each
        t = pd.concat([used, t[~t["trial_id"].isin(used["trial_id"])].assign(analysed=False)], ignore_index=True)
        disk = None if "://" in d else folder_bytes(d)
        folders.append(Folder(str(t["study"].iloc[0]), study_meta(d), manifest, disk))
        trials.append(t)
        epochs.append(e)
    return pd.concat(trials, ignore_index=True), pd.concat(epochs, ignore_index=True), folders


def load(results_dirs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]]]:
    """Trials, epochs and each study's file with its recorded ``bases``, ``flags``, ``nuisance_picks`` and
    ``analysis`` in one mapping (the scripts' view; the report, the planner and the API read :func:`load_folders`)."""
    trials, epochs, folders = load_folders(results_dirs)
    metas = {}
    for f in folders:
        m = f.manifest
        metas[f.study] = {**f.study_file, "bases": m.bases if m else {}, "flags": m.flags if m else [],
                          "nuisance_picks": (m.decisions.get("nuisance") or []) if m else [],
                          "analysis": m.analysis if m else None}
    return trials, epochs, metas


def stats_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that enter the statistics (column ``analysed``, set by :func:`load` from the manifest,
    :func:`supcon_ray.results.manifest.analysed_rows`): selection runs are shown, not analysed."""
    return trials[trials["analysed"]] if "analysed" in trials else trials
