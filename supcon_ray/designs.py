"""How a trial's configuration was chosen (its ``design``), named once: the planner builds the names here
and every reader (the statistics, the report) asks here what a name means, never by its substrings.

The values are the ``design`` column of the trials (a data contract): ``one_factor`` (a setting of a
varied factor), ``search:<sampler>`` (a sampled space), ``tune_base:<sampler>`` (step 1, choosing each
loss's base), ``one_factor+nuisance:<sampler>`` (a setting whose nuisance hyperparameters were
re-tuned by a search of that sampler) and ``nuisance_search:<sampler>`` (a selection run of that search).
"""

from __future__ import annotations

from enum import StrEnum


class DesignKind(StrEnum):
    """The kinds of design; with a sampler, :func:`design_name` gives the recorded name."""

    ONE_FACTOR = "one_factor"
    SEARCH = "search"
    TUNE_BASE = "tune_base"
    NUISANCE = "one_factor+nuisance"
    NUISANCE_SEARCH = "nuisance_search"


#: Samplers that draw configurations up front, so their spread is a sample of the space.
RANDOM_SAMPLERS = ("random", "qmc", "grid")
#: Names of the sampled-space designs whose configurations are random draws (the expected-best curve needs them).
RANDOM_DESIGNS = tuple(f"{DesignKind.SEARCH}:{s}" for s in RANDOM_SAMPLERS)


def design_name(kind: DesignKind, sampler: str | None = None) -> str:
    """The recorded name of a design: ``one_factor``, or ``<kind>:<sampler>``."""
    if kind == DesignKind.ONE_FACTOR:
        return str(kind)
    if not sampler:
        raise ValueError(f"a {kind} design needs its sampler")
    return f"{kind}:{sampler}"


def kind_of(design: str | None) -> DesignKind | None:
    """The kind of a recorded design name (``None`` for an empty or unknown one)."""
    head = str(design or "").partition(":")[0]
    return DesignKind(head) if head in DesignKind._value2member_map_ else None


def sampler_of(design: str | None) -> str | None:
    """The sampler of a recorded design name (``None`` for ``one_factor``)."""
    name = str(design or "")
    return name.partition(":")[2] or None


def is_nuisance(design: str | None) -> bool:
    """Whether the design re-tuned nuisance hyperparameters per setting."""
    return kind_of(design) == DesignKind.NUISANCE


def is_adaptive(design: str | None) -> bool:
    """Whether an adaptive sampler (TPE) chose the configuration: not a sample of the space."""
    return sampler_of(design) == "tpe"


def is_nuisance_search(design: str | None) -> bool:
    """Whether the trial is a selection run of a nuisance search (never analysed)."""
    return kind_of(design) == DesignKind.NUISANCE_SEARCH


def is_tune_base(design: str | None) -> bool:
    """Whether the trial belongs to step 1 (choosing each loss's base)."""
    return kind_of(design) == DesignKind.TUNE_BASE
