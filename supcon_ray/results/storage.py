"""Study results as Parquet: one file per finished trial, written atomically.

Layout under ``<storage>/<study>/``:

* ``trials/<trial_id>.parquet``: one row per trial (:data:`TRIAL_SCHEMA`).
* ``epochs/<trial_id>.parquet``: one row per trial per reported epoch (:data:`EPOCH_SCHEMA`).

Both folders read as datasets with ``pandas.read_parquet(dir)``, ``pyarrow.dataset`` or DuckDB
(``read_parquet('trials/*.parquet')``). A trial's files are written when it ends: on a local disk
to a temporary name and renamed into place, on object stores (``s3://``, ``gs://``) with one put,
which is atomic there. So a crash or kill loses at most the trials in flight, never leaves a
half-written file, and writing a trial again replaces its row instead of duplicating it.

Beside those two folders:

* ``manifest.json``: the study's one state (:mod:`supcon_ray.results.manifest`): its fingerprint, the
  planned trial ids of every stage, every decision (bases, nuisance picks) and exactly the trials
  the statistics read. Written atomically after every step.
* ``study.yaml``: the validated study as run (after ``--quick``), for people and for publishing.
* ``attempts/<trial_id>.attempt<k>.parquet``: the row of a trial that ``failed`` (an infrastructure
  error), moved there by ``--resume`` before the trial runs again, so its error stays on record
  while ``trials/`` keeps one row per trial.

Column ``phase``: ``tune_base`` for step 1, ``nuisance`` for nuisance-search (selection) trials,
``study`` for trials the statistics may read; ``in_stats`` is True for ``study`` trials. Which
rows enter the statistics is the manifest's ``analysed`` list alone
(:func:`supcon_ray.results.manifest.analysed_rows`); a trials folder without a manifest (results
produced elsewhere) is read by its ``in_stats`` column.
"""

from __future__ import annotations

import json

import math
import os
import types
import typing
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from supcon_ray.config import TrainConfig

STATUSES = ("completed", "diverged", "failed")


def _arrow_type(annotation: Any) -> pa.DataType:
    """Arrow type of a TrainConfig field (``X | None`` is a nullable X; Literal is a string)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return {bool: pa.bool_(), int: pa.int64(), float: pa.float64()}.get(annotation, pa.string())


#: One typed column per hyperparameter, taken from TrainConfig so the two never drift apart.
HYPERPARAMETER_FIELDS = [pa.field(name, _arrow_type(f.annotation)) for name, f in TrainConfig.model_fields.items()]
#: The columns that identify a trial, first in both tables.
KEY_FIELDS = [
    pa.field("study", pa.string()),
    pa.field("trial_id", pa.string()),
    pa.field("loss", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("factor", pa.string()),
    pa.field("setting", pa.string()),
]
TRIAL_SCHEMA = pa.schema(
    KEY_FIELDS
    + [
        pa.field("design", pa.string()),
        pa.field("phase", pa.string()),
        pa.field("in_stats", pa.bool_()),
    ]
    + [f for f in HYPERPARAMETER_FIELDS if f.name not in ("loss", "seed")]
    + [
        pa.field("status", pa.string()),
        pa.field("test_top1", pa.float64()),
        pa.field("val_top1", pa.float64()),
        pa.field("train_loss", pa.float64()),
        pa.field("linear_train_loss", pa.float64()),
        pa.field("chance_top1", pa.float64()),
        pa.field("diverged_stage", pa.string()),
        pa.field("diverged_epoch", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("seconds", pa.float64()),
        pa.field("world_size", pa.int64()),
        pa.field("node_id", pa.string()),
        pa.field("weights_digest", pa.string()),
        pa.field("resumed_from", pa.string()),
        pa.field("run_started_unix", pa.float64()),
        pa.field("first_batch_unix", pa.float64()),
        pa.field("last_batch_unix", pa.float64()),
        pa.field("process_trials_before", pa.int64()),  # trials its (reused) process ran before it; 0: fresh
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        pa.field("sampler_seed", pa.int64()),
        pa.field("supcon_ray_version", pa.string()),
        pa.field("torch_version", pa.string()),
        pa.field("ray_version", pa.string()),
        # the images val_top1 and test_top1 are scored on (absent from rows written before they were recorded)
        pa.field("val_images", pa.int64()),
        pa.field("test_images", pa.int64()),
        # what the run cost: epochs trained (every stage but the linear read-out) and wall seconds times
        # workers (absent from rows written before; supcon_ray.results.cost infers them there)
        pa.field("epochs_run", pa.int64()),
        pa.field("device_seconds", pa.float64()),
    ]
)
EPOCH_SCHEMA = pa.schema(
    KEY_FIELDS
    + [
        pa.field("stage", pa.string()),
        pa.field("epoch", pa.int64()),
        pa.field("train_loss", pa.float64()),
        pa.field("lr", pa.float64()),
        pa.field("images_per_second", pa.float64()),
        pa.field("val_top1", pa.float64()),
        pa.field("epoch_seconds", pa.float64()),
    ]
)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    columns = {f.name: [_clean(r.get(f.name)) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


class ResultStore:
    """Reads and writes one study's Parquet results under ``<root>/<study>``."""

    def __init__(self, root: str, study: str) -> None:
        self.root = root
        self.fs, base = study_filesystem(root)
        self.uri = root.rstrip("/") + "/" + study if "://" in root else os.path.join(base, study)
        self.path = f"{base.rstrip('/')}/{study}"
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        for sub in ("trials", "epochs", ".tmp"):
            self.fs.create_dir(f"{self.path}/{sub}", recursive=True)

    def _write(self, table: pa.Table, folder: str, trial_id: str) -> None:
        final = f"{self.path}/{folder}/{trial_id}.parquet"
        if not self.local:
            pq.write_table(table, final, filesystem=self.fs)  # one PUT: atomic on object stores
            return
        tmp = f"{self.path}/.tmp/{trial_id}-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, tmp)
        os.replace(tmp, final)

    def discard_partial_writes(self) -> int:
        """Delete what a killed writer left in ``.tmp`` (a file is renamed into place only once whole, so
        nothing there is a result); return how many. For a driver starting on the folder, before any of
        its trials runs: one driver per study folder."""
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.path}/.tmp", allow_not_found=True))
        partial = [i.path for i in infos if i.type == pafs.FileType.File]
        for path in partial:
            self.fs.delete_file(path)
        return len(partial)

    def write_trial(self, row: dict[str, Any], epochs: list[dict[str, Any]]) -> None:
        """Record a finished trial: its epochs first, then its row (the row marks it done)."""
        trial_id = row["trial_id"]
        keys = [f.name for f in KEY_FIELDS]
        self._write(_table([{**{k: row[k] for k in keys}, **e} for e in epochs], EPOCH_SCHEMA), "epochs", trial_id)
        options = row.get("options")
        if isinstance(options, dict):  # a plugin's own hyperparameters: one JSON column, null when there are none
            row = {**row, "options": json.dumps(options, sort_keys=True) if options else None}
        self._write(_table([row], TRIAL_SCHEMA), "trials", trial_id)

    def finished_ids(self) -> set[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.path}/trials", allow_not_found=True))
        return {os.path.basename(i.path)[: -len(".parquet")] for i in infos if i.path.endswith(".parquet")}

    def read_trial(self, trial_id: str) -> dict[str, Any]:
        return pq.read_table(f"{self.path}/trials/{trial_id}.parquet", filesystem=self.fs).to_pylist()[0]

    def write_text(self, name: str, text: str) -> None:
        """Write a small text file atomically (a temporary file renamed into place; one PUT on object stores)."""
        final = f"{self.path}/{name}"
        if not self.local:
            with self.fs.open_output_stream(final) as f:
                f.write(text.encode())
            return
        tmp = f"{self.path}/.tmp/{name}-{uuid.uuid4().hex}"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, final)

    def read_text(self, name: str) -> str | None:
        """A small text file's content, or None if there is none."""
        path = f"{self.path}/{name}"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as f:
            return f.read().decode()

    def failed_ids(self) -> set[str]:
        """Trials whose recorded row has status ``failed``."""
        import pyarrow.dataset as ds

        if not self.finished_ids():
            return set()
        table = ds.dataset(f"{self.path}/trials", filesystem=self.fs, format="parquet",
                           schema=TRIAL_SCHEMA).to_table(columns=["trial_id", "status"])
        return {t for t, s in zip(table["trial_id"].to_pylist(), table["status"].to_pylist()) if s == "failed"}

    def archive_failed(self) -> list[str]:
        """Move every ``failed`` row to ``attempts/<id>.attempt<k>.parquet`` so the trial runs again; return the ids.

        Copied first, then removed: a crash in between leaves the row in both places, never in neither."""
        ids = sorted(self.failed_ids())
        if ids:
            self.fs.create_dir(f"{self.path}/attempts", recursive=True)
            existing = {os.path.basename(i.path) for i in self.fs.get_file_info(
                pafs.FileSelector(f"{self.path}/attempts", allow_not_found=True))}
        for trial_id in ids:
            k = 1
            while f"{trial_id}.attempt{k}.parquet" in existing:
                k += 1
            self.fs.copy_file(f"{self.path}/trials/{trial_id}.parquet", f"{self.path}/attempts/{trial_id}.attempt{k}.parquet")
            self.fs.delete_file(f"{self.path}/trials/{trial_id}.parquet")
        return ids


def study_filesystem(directory: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of a study folder given as a local path or a URI (``s3://...``)."""
    if "://" in directory:
        return pafs.FileSystem.from_uri(directory)
    return pafs.LocalFileSystem(), os.path.abspath(directory)


def read_text(directory: str, name: str) -> str | None:
    """The text of the small file ``name`` in a study folder, or None if there is none."""
    fs, base = study_filesystem(directory)
    path = f"{base.rstrip('/')}/{name}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def read_results(directory: str) -> tuple[pa.Table, pa.Table]:
    """The ``trials`` and ``epochs`` tables of a study folder (empty tables if absent)."""
    fs, base = study_filesystem(directory)
    out = []
    for folder, schema in (("trials", TRIAL_SCHEMA), ("epochs", EPOCH_SCHEMA)):
        path = f"{base.rstrip('/')}/{folder}"
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.Directory:
            out.append(schema.empty_table())
            continue
        import pyarrow.dataset as ds

        out.append(ds.dataset(path, filesystem=fs, format="parquet", schema=schema).to_table())
    return out[0], out[1]
