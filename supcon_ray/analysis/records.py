"""A study as the analysis reads it: its folder's study file, validated where this version can, its
manifest's decisions (the tuned bases, the nuisance picks, the edge flags, the analysis declared on the
first run), and from these its analysis settings and each factor's base setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from supcon_ray.results.folders import Folder
from supcon_ray.results.manifest import Manifest, analysis_edits
from supcon_ray.stats.agreement import DEFAULT_EQUIVALENCE_RATIO
from supcon_ray.study import Study, base_settings

from .model import StudyAnalysis

__all__ = ["StudyRecord", "record_of", "table_record"]


@dataclass(frozen=True)
class StudyRecord:
    """One study: ``study_file`` as its folder recorded it (``{}`` for a bare table), ``study`` that file
    validated (``None`` where it cannot be: no file, or one from another version), and ``manifest``
    (``None`` for trials produced elsewhere). ``baseline`` names the compared baseline of a bare table."""

    name: str
    study_file: Mapping[str, Any]
    study: Study | None
    manifest: Manifest | None
    baseline: str | None = None
    #: the study folder's bytes on disk (``None`` for a table or a cloud URI)
    disk_bytes: int | None = None

    @property
    def bases(self) -> Mapping[str, Any]:
        """``{loss: record}``: the base each loss's step 2 started from (empty for a table)."""
        return self.manifest.bases if self.manifest else {}

    @property
    def flags(self) -> list[Mapping[str, Any]]:
        return self.manifest.flags if self.manifest else []

    @property
    def nuisance_picks(self) -> list[Mapping[str, Any]]:
        return (self.manifest.decisions.get("nuisance") or []) if self.manifest else []

    @property
    def description(self) -> str | None:
        return self.study_file.get("description")

    def analysis(self) -> StudyAnalysis:
        """The primary measure and equivalence margin as recorded in the manifest on the first run
        (``declared``), else the defaults (a folder started before they were recorded: the spread is its
        primary and the drop was added afterwards); with any later edit of the study file named."""
        recorded = self.manifest.analysis if self.manifest else None
        settings = {"primary": "spread", "equivalence_ratio": DEFAULT_EQUIVALENCE_RATIO, **(recorded or {})}
        # the baseline as recorded on the first run; the study file's only for folders from before records
        compare = settings.get("compare") or ({} if recorded is not None else self.study_file.get("compare")) or {}
        baseline = self.baseline or (compare.get("baseline") if isinstance(compare, dict) else None)
        edits = analysis_edits(Manifest(self.name, {}, analysis=recorded), dict(self.study_file)) if recorded else []
        return StudyAnalysis(settings["primary"], settings["equivalence_ratio"], recorded is not None,
                             baseline or None, tuple(edits))

    def base_settings(self) -> dict[str, dict[str, str | None]]:
        """Each factor's base setting per loss (:func:`supcon_ray.study.base_settings`), from the study and its
        tuned bases; empty where the study cannot be validated (the ``x1`` rule applies then)."""
        if self.study is None:
            return {}
        tuned = {loss: rec.get("values") or {} for loss, rec in self.bases.items()}
        return base_settings(self.study, tuned)


def _validated(study_file: Mapping[str, Any]) -> Study | None:
    data = {k: v for k, v in study_file.items() if k in Study.model_fields and k != "folder"}
    try:
        return Study.model_validate(data, context={"recorded": True})  # plugin names as recorded
    except ValidationError:  # no study file, or one from another version
        return None


def record_of(folder: Folder) -> StudyRecord:
    """The record of a study folder read by :func:`supcon_ray.results.folders.load_folders`."""
    return StudyRecord(folder.study, folder.study_file, _validated(folder.study_file), folder.manifest,
                       disk_bytes=folder.disk_bytes)


def table_record(study: str, baseline: str | None = None) -> StudyRecord:
    """The record of a study known only from a table of runs (no study file, no manifest)."""
    return StudyRecord(study, {}, None, None, baseline)
