"""The Python API: what the commands do, from a notebook or a script.

.. code-block:: python

    import supcon_ray

    study = supcon_ray.load_study("search_spaces/optimizers.yaml", quick=True)   # or a dict of the same keys
    run = supcon_ray.run(study, storage="./results")            # the folder, the outcome, the exit status
    numbers = supcon_ray.analyze(run.folder)                    # the dict `report --json` writes

    # any table of runs, e.g. from Ray Tune, Optuna or a spreadsheet:
    numbers = supcon_ray.analyze(df, metric="acc", columns={"loss": "method", "setting": "value"})

:func:`analyze` needs the columns ``loss``, ``factor``, ``setting``, ``seed`` and the metric; ``status``
(``completed`` / ``diverged`` / ``failed``; default completed), ``study`` (default ``study``),
``trial_id`` and ``design`` are optional. ``columns`` maps those names to the table's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from supcon_ray.analysis import build_numbers, read_study_folders, table_record
from supcon_ray.results.table import prepare_table
from supcon_ray.config import ConfigError
from supcon_ray.results.folders import load_folders
from supcon_ray.study import Study, at_own_size, study_from_dict
from supcon_ray.study import load_study as study_file



def load_study(source: str | Path | Mapping[str, Any], *, folder: str | Path | None = None, quick: bool = False):
    """A validated :class:`~supcon_ray.study.Study` from a study file's path or from a mapping of
    the same keys, with the same validation and errors (:class:`~supcon_ray.config.ConfigError`, naming the
    key). ``folder``: where relative dataset and plugin paths resolve for a mapping (default: the working
    directory); ``quick`` applies the ``quick`` block."""
    if isinstance(source, Mapping):
        return study_from_dict(dict(source), folder, quick)
    if folder is not None:
        raise ConfigError("folder: only for a study given as a mapping; a study file's own folder is used")
    return study_file(source, quick=quick)


@dataclass
class Run:
    """What :func:`run` did: the study's results ``folder``, the ``outcome`` (failed and unfinished trials, a
    step that could not decide) and the ``exit_status`` the command would give (0, 1, 130; 2 for bad input)."""

    folder: str | None
    outcome: Any
    exit_status: int
    error: str | None = None


def run(study, storage: str = "./results", *, resume: bool = False, address: str | None = None,
        max_concurrent_trials: int | None = None, report: bool = True, verbose: bool = False) -> Run:
    """Run a study (a :class:`Study`, a path, or a mapping) as ``supcon-ray tune`` does; with ``report`` the
    HTML report is written into its folder when every trial has a row. Bad input gives ``exit_status`` 2 with
    the message in ``error`` and runs nothing."""
    # deferred: running a study needs Ray and the engine (seconds to import); the rest of the API does not
    from supcon_ray.execution import check_dataset_files, exit_status, run_study

    try:
        study = study if isinstance(study, Study) else load_study(study)
        check_dataset_files(study, study.study)
        study, _ = at_own_size(study)
        outcome = run_study(study, storage, resume, address, max_concurrent_trials, verbose=verbose)
    except ConfigError as err:
        return Run(None, None, 2, str(err))
    if report and not (outcome.unfinished or outcome.incomplete):
        from supcon_ray.reporting.files import build_report  # deferred: plotly, only when a report is written

        build_report(outcome.folder)
    return Run(outcome.folder, outcome, exit_status(outcome))


def read_trials(folder: str | Path) -> pd.DataFrame:
    """The trials of a study folder, each marked ``analysed`` (whether it enters the statistics), as the
    report reads them."""
    return load_folders([str(folder)])[0]


def analyze(trials: pd.DataFrame | str | Path | list[str | Path], metric: str = "test_top1", *,
            columns: Mapping[str, str] | None = None, baseline: str | None = None) -> dict[str, Any]:
    """The report's numbers (the dict ``report --json`` writes: :mod:`supcon_ray.reporting.numbers`).

    ``trials`` is a study folder (or a list of them): the numbers are then exactly what ``report --json``
    writes for it, with each study's recorded bases, nuisance picks and edge flags. Or it is any table of
    runs with the documented columns; ``columns`` maps a documented name to the table's own
    (``{"loss": "method"}``), ``baseline`` is the loss every other one is compared with (default: ``ce``
    where the table has it). A missing column or folder raises :class:`~supcon_ray.config.ConfigError`
    naming it; so do a non-numeric metric or seed, a status outside completed / diverged / failed, and two rows
    of the same run (:func:`supcon_ray.results.table.prepare_table`). ``supcon-ray report --table FILE`` writes
    the same numbers with the HTML page. :func:`supcon_ray.analysis.build_numbers` gives them as typed objects."""
    if isinstance(trials, (str, Path, list, tuple)):
        folders = [str(trials)] if isinstance(trials, (str, Path)) else [str(f) for f in trials]
        table, _, records = read_study_folders(folders)
        if metric not in table:
            raise ConfigError(f"metric: no column {metric!r} in the trials of {', '.join(folders)}")
        return build_numbers(table, metric, records).to_json()
    table = prepare_table(trials, metric, columns)
    records = {str(s): table_record(str(s), baseline) for s in table["study"].unique()} if baseline else None
    return build_numbers(table, metric, records).to_json()
