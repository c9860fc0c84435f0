"""The analysis as the tests read it: the ``--json`` form of its entries (the contract the report writes),
so an assertion names the same keys a user of ``report --json`` or ``supcon_ray.analyze`` reads."""

from __future__ import annotations

from typing import Any

import pandas as pd

from supcon_ray.analysis import ReportNumbers, StudyRecord, analyze_entries, build_numbers


def analyze_factors(trials: pd.DataFrame, metric: str, **kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every factor entry and the headline pooled entry as JSON-form dicts (NaN kept); with several compared
    methods, ``overall["by_method"]`` holds each method's pooled entry."""
    result = analyze_entries(trials, metric, **kwargs)
    overall = result.overall.as_dict()
    if len(result.by_method) > 1:
        overall["by_method"] = {k: o.as_dict(by_factor=False) for k, o in result.by_method.items()}
    return [f.as_dict() for f in result.factors], overall


def numbers_of(trials: pd.DataFrame, metric: str, with_importance: bool = True,
               records: dict[str, StudyRecord] | None = None) -> ReportNumbers:
    """The typed report numbers of ``trials`` (a table, or folders' trials with their ``records``)."""
    return build_numbers(trials, metric, records, with_importance=with_importance)


def compute(trials: pd.DataFrame, metric: str, with_importance: bool = True,
            records: dict[str, StudyRecord] | None = None) -> dict[str, Any]:
    """The report's numbers in their ``--json`` form (NaN kept)."""
    return numbers_of(trials, metric, with_importance, records).as_dict()
