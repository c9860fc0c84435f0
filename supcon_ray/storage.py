"""Study results as Parquet: one file per finished trial, written atomically.

Layout under ``<storage>/<study>/``:

* ``trials/<trial_id>.parquet``: one row per trial (:data:`TRIAL_SCHEMA`).
* ``epochs/<trial_id>.parquet``: one row per trial per reported epoch (:data:`EPOCH_SCHEMA`).

Both folders read as datasets with ``pandas.read_parquet(dir)``, ``pyarrow.dataset`` or DuckDB
(``read_parquet('trials/*.parquet')``). A trial's files are written when it ends: on a local disk
to a temporary name and renamed into place, on object stores (``s3://``, ``gs://``) with one put,
which is atomic there. So a crash or kill loses at most the trials in flight, never leaves a
half-written file, and writing a trial again replaces its row instead of duplicating it.
"""

from __future__ import annotations

import math
import os
import types
import typing
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .config import TrainConfig

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
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        pa.field("sampler_seed", pa.int64()),
        pa.field("supcon_ray_version", pa.string()),
        pa.field("torch_version", pa.string()),
        pa.field("ray_version", pa.string()),
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
        self.fs, base = pafs.FileSystem.from_uri(root) if "://" in root else (pafs.LocalFileSystem(), os.path.abspath(root))
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

    def write_trial(self, row: dict[str, Any], epochs: list[dict[str, Any]]) -> None:
        """Record a finished trial: its epochs first, then its row (the row marks it done)."""
        trial_id = row["trial_id"]
        keys = [f.name for f in KEY_FIELDS]
        self._write(_table([{**{k: row[k] for k in keys}, **e} for e in epochs], EPOCH_SCHEMA), "epochs", trial_id)
        self._write(_table([row], TRIAL_SCHEMA), "trials", trial_id)

    def finished_ids(self) -> set[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.path}/trials", allow_not_found=True))
        return {os.path.basename(i.path)[: -len(".parquet")] for i in infos if i.path.endswith(".parquet")}

    def read_trial(self, trial_id: str) -> dict[str, Any]:
        return pq.read_table(f"{self.path}/trials/{trial_id}.parquet", filesystem=self.fs).to_pylist()[0]

    def write_text(self, name: str, text: str) -> None:
        with self.fs.open_output_stream(f"{self.path}/{name}") as f:
            f.write(text.encode())


def read_results(directory: str) -> tuple[pa.Table, pa.Table]:
    """The ``trials`` and ``epochs`` tables of a study folder (empty tables if absent)."""
    fs, base = pafs.FileSystem.from_uri(directory) if "://" in directory else (pafs.LocalFileSystem(), os.path.abspath(directory))
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
