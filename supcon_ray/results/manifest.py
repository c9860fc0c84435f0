"""The manifest: the one record of a study's state, ``<storage>/<study>/manifest.json``.

Every step of a run reads and writes this record, and nothing else decides what a study is:

* ``fingerprint``: everything in the study that changes what a trial computes (the validated study
  without its description, resources or quick block). ``--resume`` compares it first and refuses,
  naming the changed keys, before anything runs (:func:`changed_keys`).
* ``stages``: the planned trial ids of every step of the protocol, in plan order (``tune_base``, ``study``,
  ``replicates``; :data:`supcon_ray.study.STEPS`). Adaptive TPE steps list the ids they ran. In code the
  field is :attr:`Manifest.steps`; the file keeps the first studies' key (:data:`MANIFEST_STEPS_KEY`).
* ``decisions``: what each step decided, with its inputs: ``bases`` (each loss's base from step 1,
  or the study file's) and ``nuisance`` (per factor setting and loss, the re-tuned configuration and
  the selection runs it was chosen on). A decision is recorded once and never recomputed.
* ``analysed``: exactly the trials that enter the statistics, as ``{trial_id, factor, setting}``
  entries; one trial may stand in several factors (the base), and is still one run.
* ``flags``: selected values at the edge of their search space (the best may lie outside).
* ``analysis``: the primary measure and the equivalence margin as the study file declared them on the
  first run, before any data (``None`` for folders started before it was recorded: their primary is
  the spread, and the drop answer was added afterwards). The report uses these, whatever the study
  file says later.

The storage writes it atomically (a temporary file renamed into place; one PUT on object stores).
:func:`read_manifest` is the only reader. A trials folder without one (results produced elsewhere) is
read by its ``in_stats`` column (:func:`analysed_rows`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from supcon_ray.results.storage import read_text
from supcon_ray.display import display_names
from supcon_ray.study import ANALYSIS_KEYS, EXECUTION_KEYS, analysis_settings
from supcon_ray.study.protocol import Decision

MANIFEST_FILE = "manifest.json"
FORMAT = 1
#: The file's key for :attr:`Manifest.steps` (each protocol step's trial ids): the first studies called the
#: protocol's steps "stages", and every recorded manifest keeps that key. A training stage is another thing
#: (:mod:`supcon_ray.engine.stages`).
MANIFEST_STEPS_KEY = "stages"


@dataclass
class Manifest:
    """See the module docstring. ``analysed`` is None only for a folder written before the manifest."""

    study: str
    fingerprint: dict[str, Any]
    #: ``{step: trial ids}``, written under :data:`MANIFEST_STEPS_KEY`
    steps: dict[str, list[str]] = field(default_factory=dict)
    decisions: dict[str, Any] = field(default_factory=dict)
    analysed: list[dict[str, str]] | None = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)
    format: int = FORMAT
    analysis: dict[str, Any] | None = None
    #: what the study has cost so far (:meth:`supcon_ray.results.cost.StudyCost.as_dict`), rewritten at the end
    #: of every run; absent from manifests written before
    cost: dict[str, Any] | None = None
    #: how the study's plugin losses are named by every writer (``{loss: display}``, from their registration on
    #: the first run); absent where none registered one
    display_names: dict[str, str] | None = None

    def to_json(self) -> str:
        """The file's text: the fields in their order, ``steps`` under :data:`MANIFEST_STEPS_KEY`
        (``cost`` and ``display_names`` only once recorded, so a manifest from before reads and writes back
        unchanged)."""
        record = {(MANIFEST_STEPS_KEY if k == "steps" else k): v for k, v in asdict(self).items()
                  if not (k in ("cost", "display_names") and v is None)}
        return json.dumps(record, indent=1, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        if MANIFEST_STEPS_KEY in data:
            data["steps"] = data.pop(MANIFEST_STEPS_KEY)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def bases(self) -> dict[str, dict[str, Any]]:
        """``{loss: record}``: the base each loss's step 2 started from (empty until step 1 ends)."""
        return self.decisions.get(Decision.BASES) or {}


def fingerprint(study, plugin_digests: dict[str, str] | None = None) -> dict[str, Any]:
    """What a study's trials compute: the validated study without description, resources, quick block,
    the folder it was read from, the analysis keys (``study.ANALYSIS_KEYS``), or the base's execution settings
    (``study.EXECUTION_KEYS``); none of them changes a trial's result. Its plugins enter as ``{entry: SHA-256 of
    the module's bytes}`` (``plugin_digests``, else read now); a study without plugins has no ``plugins`` key."""
    dumped = study.model_dump(mode="json", exclude={"quick", "description", "resources", "folder", "tracking",
                                                    *ANALYSIS_KEYS})
    entries = dumped.pop("plugins", None) or []
    if entries:
        if plugin_digests is None:
            from supcon_ray.plugins import digests

            plugin_digests = digests(entries, study.folder)
        dumped["plugins"] = dict(plugin_digests)
    for part, values in (dumped.get("base") or {}).items():
        if isinstance(values, dict):
            dumped["base"][part] = {k: v for k, v in values.items() if k not in EXECUTION_KEYS}
    return dumped


def changed_keys(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted key paths at which two fingerprints differ (``base.common.epochs``, ``seeds``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                out.append(sub)
            else:
                out += changed_keys(old[key], new[key], sub)
        return out
    return [] if old == new else [path or "(study)"]


def read_manifest(study_dir: str) -> Manifest | None:
    """The folder's manifest, or None for a folder without one (trials produced elsewhere)."""
    text = read_text(study_dir, MANIFEST_FILE)
    return Manifest.from_json(text) if text else None


def analysed_rows(trials: pd.DataFrame, study_dir: str, manifest: Manifest | None = None) -> pd.DataFrame:
    """Exactly the rows that enter the stability statistics, one per manifest entry (a trial that stands in
    two factors appears once under each, with that factor and setting). Failed rows stay in (the
    statistics count them and do not score them); planned trials without a row are simply absent.

    A trials folder without a manifest (results produced elsewhere, with the documented columns): every
    row whose ``in_stats`` is true, or that has no ``phase`` (a table without those columns: every row).
    """
    manifest = manifest if manifest is not None else read_manifest(study_dir)
    if manifest is None or manifest.analysed is None:
        return _rows_in_stats(trials)
    if not manifest.analysed or trials.empty:
        return trials.iloc[0:0]
    entries = pd.DataFrame(manifest.analysed)
    rows = trials.drop(columns=["factor", "setting"]).reset_index().rename(columns={"index": "_row"})
    out = entries.merge(rows, on="trial_id", how="inner")
    return out.set_index("_row").rename_axis(None)[list(trials.columns)]


def _rows_in_stats(trials: pd.DataFrame) -> pd.DataFrame:
    if "in_stats" not in trials:
        return trials
    no_phase = trials["phase"].isna() if "phase" in trials else pd.Series(True, index=trials.index)
    return trials[trials["in_stats"].fillna(False).astype(bool) | no_phase]


def open_manifest(store, study, resume: bool, plugin_digests: dict[str, str] | None = None) -> Manifest:
    """The manifest a run continues (``resume``) or starts, checked before anything runs.

    Raises ConfigError (exit 2): a storage that already holds this study without ``resume``; a
    ``resume`` whose study computes something else than the recorded one (naming the changed keys);
    a ``resume`` of a folder written before manifests (its runs cannot be told apart safely)."""
    from supcon_ray.config import ConfigError

    recorded = read_manifest(store.uri)
    done = store.finished_ids()
    now = fingerprint(study, plugin_digests)
    if not resume:
        if done:
            raise ConfigError(f"--storage: {store.uri} already holds {len(done)} finished trial(s) of study "
                              f"'{study.study}'. Add --resume to continue it, or choose another --storage.")
        return Manifest(study.study, now, analysis=analysis_settings(study), display_names=display_names(study.losses))
    if recorded is None or (recorded.analysed is None and not done):
        if done:
            raise ConfigError(f"--resume: {store.uri} holds trials but no manifest; run the study into another --storage.")
        return Manifest(study.study, now, analysis=analysis_settings(study), display_names=display_names(study.losses))
    if recorded.analysed is None:
        raise ConfigError(f"--resume: {store.uri} was written before studies kept a manifest, so its runs cannot be "
                          "matched to this study file safely. Run the study into another --storage.")
    changed = changed_keys(recorded.fingerprint, now)
    edited = [k.split(".", 1)[1] for k in changed if k.startswith("plugins.") and k.split(".", 1)[1] in
              (recorded.fingerprint.get("plugins") or {}) and k.split(".", 1)[1] in (now.get("plugins") or {})]
    if edited:
        raise ConfigError(f"--resume: plugin module {edited[0]!r} was edited since this storage was started (its bytes "
                          f"differ from the recorded ones), so its trials would compute something else. Restore its "
                          f"recorded version, or run the edited plugin into another --storage; nothing was added.")
    if changed:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        raise ConfigError(f"--resume: the study file changes what its trials compute since this storage was started: "
                          f"{shown}. Resuming would mix runs of two studies. Put the edited study in another --storage "
                          f"(or give it a new 'study:' name); the recorded runs stay as they are.")
    return recorded


def analysis_edits(manifest: Manifest, study_or_file: Any) -> list[str]:
    """One line per analysis key (``primary``, ``equivalence_ratio``) whose value in ``study_or_file`` (a
    Study, or the study file's dict) differs from the one recorded on the first run; the recorded one stands."""
    def get(key: str, default: Any = None) -> Any:
        value = study_or_file.get(key, default) if isinstance(study_or_file, dict) else getattr(study_or_file, key, default)
        return value.model_dump() if hasattr(value, "model_dump") else value

    if manifest.analysis is None:  # a folder started before the analysis was recorded
        declared = {k: get(k, None) for k in sorted(ANALYSIS_KEYS)}
        if declared.get("primary") not in (None, "spread"):
            return [f"primary is {declared['primary']!r} in the study file, but this folder was started before the "
                    "primary measure was recorded: its data came first, so the report keeps the spread as primary and "
                    "labels the drop as added afterwards."]
        return []
    recorded = manifest.analysis
    out = []
    for key in sorted(ANALYSIS_KEYS):
        now = get(key, None)
        if (key in recorded or key == "compare") and now is not None and now != recorded.get(key):
            out.append(f"{key} was declared {recorded[key]!r} on this study's first run, before any data; the study "
                       f"file now says {now!r}. The report keeps {recorded[key]!r}, so no measure is chosen after "
                       "seeing the results (start a new study to change it).")
    return out


def save_manifest(store, manifest: Manifest) -> None:
    """Write the manifest atomically (see :meth:`supcon_ray.results.storage.ResultStore.write_text`)."""
    store.write_text(MANIFEST_FILE, manifest.to_json())
