"""A table of runs from anywhere (a Ray Tune ``ResultGrid.get_dataframe()``, an Optuna
``Study.trials_dataframe()``, MLflow's ``search_runs()``, a spreadsheet) read as a study's trials.

:func:`prepare_table` is the one place such a table is checked, then trusted: the columns ``loss``,
``factor``, ``setting``, ``seed`` and the metric (``columns`` maps these names to the table's own, e.g.
``{"loss": "config/method"}``); ``status`` (``completed`` / ``diverged`` / ``failed``, default completed) and
``study`` (default ``study``) are optional. A missing column, a metric or seed that is not a number, a status
outside the three, or two rows for the same (study, loss, factor, setting, seed) raise
:class:`~supcon_ray.config.ConfigError` naming the column or the rows. :func:`read_table` reads a CSV or
Parquet file (``-``: CSV on standard input) and :func:`parse_columns` the command line's mapping.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from supcon_ray.config import ConfigError

__all__ = ["OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "STATUSES", "parse_columns", "prepare_table", "read_table"]

#: The columns a table needs besides the metric, and the optional ones with their defaults.
REQUIRED_COLUMNS = ("loss", "factor", "setting", "seed")
OPTIONAL_COLUMNS = {"status": "completed", "study": "study"}
#: A run's statuses (a diverged run counts at the chance level its metric records; a failed one is not scored).
STATUSES = ("completed", "diverged", "failed")
#: Other columns a table may map: a run's id and the design it came from.
EXTRA_COLUMNS = ("trial_id", "design")


def parse_columns(text: str | None) -> dict[str, str]:
    """``"loss=method,setting=config/lr"`` as ``{"loss": "method", "setting": "config/lr"}``."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        ours, sep, theirs = part.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ConfigError(f"--columns: {part!r} is not NAME=COLUMN; e.g. --columns loss=method,seed=config/seed")
        out[ours.strip()] = theirs.strip()
    return out


def read_table(path: str) -> pd.DataFrame:
    """A table of runs from a ``.csv`` or ``.parquet`` file, or CSV on standard input for ``-``."""
    if path == "-":
        return pd.read_csv(io.StringIO(sys.stdin.read()))
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--table: no such file {path!r}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(p)
        if suffix == ".csv":
            return pd.read_csv(p)
    except Exception as err:  # noqa: BLE001 - a reader's error, named with its file
        raise ConfigError(f"--table: {path}: cannot be read: {err}") from None
    raise ConfigError(f"--table: {path!r} must end in .csv or .parquet (or be - for CSV on standard input)")


def _numeric(table: pd.DataFrame, name: str, given: str) -> pd.Series:
    values = pd.to_numeric(table[name], errors="coerce")
    bad = values.isna() & table[name].notna()
    if bad.any():
        row = bad.idxmax()
        raise ConfigError(f"column {name!r}{given}: row {row} holds {table.loc[row, name]!r}, not a number "
                          f"({int(bad.sum())} such row(s))")
    return values


def prepare_table(trials: pd.DataFrame, metric: str, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The table as the analysis reads it. Raises :class:`ConfigError` (see the module)."""
    mapping = dict(columns or {})
    known = [*REQUIRED_COLUMNS, metric, *OPTIONAL_COLUMNS, *EXTRA_COLUMNS]
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise ConfigError(f"columns: {unknown[0]!r} is not a column the analysis reads; they are: {', '.join(known)}")
    missing_source = [theirs for theirs in mapping.values() if theirs not in trials]
    if missing_source:
        ours = next(k for k, v in mapping.items() if v == missing_source[0])
        raise ConfigError(f"columns: {ours}={missing_source[0]}: the table has no column {missing_source[0]!r}; it has: "
                          f"{', '.join(map(str, trials.columns))}")
    table = trials.drop(columns=[c for c in mapping if c in trials and c not in mapping.values()])
    table = table.rename(columns={theirs: ours for ours, theirs in mapping.items()}).reset_index(drop=True)
    for name in (*REQUIRED_COLUMNS, metric):
        if name not in table:
            hint = " (map it with --columns NAME=COLUMN, or columns={...} in the API)"
            raise ConfigError(f"column {name!r} is missing{hint}; the table has: {', '.join(map(str, trials.columns))}")
    for name, default in OPTIONAL_COLUMNS.items():
        if name not in table:
            table[name] = default
    given = {name: f" (mapped from {mapping[name]!r})" if name in mapping else "" for name in known}
    table[metric] = _numeric(table, metric, given[metric])
    seeds = _numeric(table, "seed", given["seed"])
    if seeds.isna().any() or (seeds != seeds.round()).any():
        row = (seeds.isna() | (seeds != seeds.round())).idxmax()
        raise ConfigError(f"column 'seed'{given['seed']}: row {row} holds {table.loc[row, 'seed']!r}, not a whole number")
    table["seed"] = seeds.astype(int)
    for name in ("loss", "factor", "setting", "study", "status"):
        table[name] = table[name].astype(str)
    bad = table.loc[~table["status"].isin(STATUSES), "status"]
    if len(bad):
        raise ConfigError(f"column 'status'{given['status']}: row {bad.index[0]} holds {bad.iloc[0]!r}; must be one of: "
                          f"{', '.join(STATUSES)}")
    key = ["study", "loss", "factor", "setting", "seed"]
    twice = table[table.duplicated(key, keep=False)]
    if len(twice):
        first = twice.iloc[0]
        rows = twice[(twice[key] == first[key]).all(axis=1)].index.tolist()
        raise ConfigError(f"rows {', '.join(map(str, rows))} are the same run (loss {first['loss']!r}, factor "
                          f"{first['factor']!r}, setting {first['setting']!r}, seed {first['seed']}): each (study, "
                          f"loss, factor, setting, seed) may appear once ({len(twice)} rows so)")
    if "design" not in table:
        table["design"] = "one_factor"
    return table
