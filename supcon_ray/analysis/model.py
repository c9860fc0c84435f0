"""The report's numbers as one typed model: frozen dataclasses, built once (:mod:`.build`), read by every
writer (the JSON, the HTML page, the Markdown tables, the figure, the console verdict, the API).

Each class states the ``--json`` keys it writes; :meth:`ReportNumbers.to_json` gives the whole contract
(documented in :mod:`supcon_ray.reporting.numbers`) with NaN and infinity as ``null``. Values are held
exactly as the contract writes them (an open lower end ``0``, an unbounded upper end ``None``), so a writer
formats a field and never re-derives it.

Vocabulary: an *entry* answers one (study, factor) for one compared :class:`Pair` (or one method alone);
a *pooled* entry answers a group of entries; each entry holds three *answers*, one per question: beyond
these settings (:class:`BeyondAnswer`), for these settings (:class:`TheseAnswer`) and the drop from the
base (:class:`DropAnswer`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from supcon_ray.results.cost import StudyCost

__all__ = [
    "Agreement", "AcrossEntry", "BeyondAnswer", "DropAnswer", "DropDifference", "FactorEntry", "Interval",
    "LossDrop", "LossSpread", "LossSummary", "Pair", "PooledEntry", "ReportNumbers", "SettingMean",
    "StudyAnalysis", "TestResult", "TheseAnswer", "ViewAnswer", "clean_json",
]


def clean_json(obj: Any) -> Any:
    """``obj`` with NaN and infinity as ``None``, tuples as lists, numpy scalars as Python numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return clean_json(obj.item())
    return obj


def _plain(value: Any) -> Any:
    """A model value as plain data (dataclasses by their ``as_dict``), NaN kept."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Pair(NamedTuple):
    """A compared pair: ``method`` against ``baseline`` (ratios are baseline / method); a tuple
    ``(baseline, method)``, as the statistics take it."""

    baseline: str
    method: str


class _Fields:
    """A model class whose JSON is its fields, in their order (no optional key, no renamed one)."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Interval:
    """A two-sided interval as the contract writes it (``None`` for an unknown or unbounded end)."""

    low: float | None
    high: float | None

    @classmethod
    def of(cls, pair: Any) -> Interval:
        low, high = pair
        return cls(low, high)

    def __iter__(self):  # (low, high)
        return iter((self.low, self.high))

    def as_dict(self) -> list[float | None]:
        return [self.low, self.high]


NO_INTERVAL = Interval(None, None)


@dataclass(frozen=True)
class SettingMean(_Fields):
    """One setting's mean over its seeds, with its t-interval (``ci95``), seed count and gap to the best."""

    mean: float
    n: int
    ci95: Interval
    drop_from_best: float


@dataclass(frozen=True)
class LossSummary:
    """One loss in one entry: run counts, its between-setting spread (over the paired settings), each setting."""

    completed: int
    diverged: int
    failed: int
    divergence_rate: float
    mean: float
    seed_std: float
    setting_std: float
    setting_std_ci95: Interval
    settings: Mapping[str, SettingMean]
    seed_noise_removed: bool | None = None
    spread_settings: int | None = None

    @property
    def runs(self) -> int:
        return self.completed + self.diverged + self.failed

    def as_dict(self) -> dict[str, Any]:
        out = {"completed": self.completed, "diverged": self.diverged, "failed": self.failed,
               "divergence_rate": self.divergence_rate, "mean": self.mean, "seed_std": self.seed_std,
               "setting_std": self.setting_std, "setting_std_ci95": self.setting_std_ci95.as_dict()}
        if self.seed_noise_removed is not None:
            out.update(seed_noise_removed=self.seed_noise_removed, spread_settings=self.spread_settings)
        return {**out, "settings": _plain(self.settings)}


@dataclass(frozen=True)
class TestResult:
    """A "beyond these settings" test before multiplicity: the ratio of between-setting stds with its
    interval, the p-value and the smallest p-value the design can reach (``exact``/``direction``: ``None``
    where no test ran)."""

    ratio: float = math.nan
    ci95: Interval = Interval(math.nan, math.nan)
    p_value: float = math.nan
    min_p: float = math.nan
    exact: bool | None = None
    direction: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"ratio": self.ratio, "ci95": self.ci95.as_dict(), "p_value": self.p_value, "min_p": self.min_p}
        if self.exact is not None:
            out.update(exact=self.exact, direction=self.direction)
        return out


@dataclass(frozen=True)
class BeyondAnswer:
    """The "beyond these settings" answer: the test, its Holm-adjusted p, the claim and its sentence."""

    result: TestResult
    p_adjusted: float
    claim: str
    sentence: str

    @property
    def ratio(self) -> float:
        return self.result.ratio

    @property
    def ci95(self) -> Interval:
        return self.result.ci95


@dataclass(frozen=True)
class ViewAnswer:
    """A sensitivity view of the "beyond" answer (logit scale, or diverged runs scored at chance)."""

    result: TestResult
    p_adjusted: float
    claim: str
    changes_conclusion: bool

    def as_dict(self) -> dict[str, Any]:
        return {**self.result.as_dict(), "p_adjusted": self.p_adjusted, "claim": self.claim,
                "changes_conclusion": self.changes_conclusion}


@dataclass(frozen=True)
class Agreement:
    """A claim against the paper's direction: ``outcome`` (``None`` where the paper states none), the ratio's
    90% interval, the equivalence margin and the TOST p-values; ``measure`` names the primary measure where
    this is an entry's headline agreement."""

    outcome: str | None
    paper: str | None
    ci90: Interval
    margin: float
    tost_p: float | None
    tost_p_adjusted: float | None
    measure: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"outcome": self.outcome, "paper": self.paper, "ci90": self.ci90.as_dict(), "margin": self.margin,
               "tost_p": self.tost_p, "tost_p_adjusted": self.tost_p_adjusted}
        return out if self.measure is None else {**out, "measure": self.measure}


@dataclass(frozen=True)
class LossSpread(_Fields):
    """One loss's spread of setting means (seed noise removed) with its interval."""

    spread: float
    spread_ci95: Interval


@dataclass(frozen=True)
class TheseAnswer:
    """The "for these settings" answer. Two methods: the ratio of spreads (``None`` when undefined) with its
    interval; one method (``one_method``): no ratio, the spread tested against no effect beyond seed noise."""

    ratio: float | None
    ci95: Interval
    p_value: float | None
    p_adjusted: float | None
    claim: str
    sentence: str
    losses: Mapping[str, LossSpread]
    n_settings: int | None = None
    agreement: Agreement | None = None
    one_method: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ratio": self.ratio, "ci95": self.ci95.as_dict(), "p_value": self.p_value,
                               "p_adjusted": self.p_adjusted, "claim": self.claim, "sentence": self.sentence}
        if self.n_settings is not None and not self.one_method:
            out["n_settings"] = self.n_settings
        out["losses"] = _plain(self.losses)
        if self.n_settings is not None and self.one_method:
            out["n_settings"] = self.n_settings
        if self.agreement is not None:
            out["agreement"] = self.agreement.as_dict()
        return out


@dataclass(frozen=True)
class LossDrop(_Fields):
    """One loss's drop from its base: the estimate, interval and p-value, its base and worst setting."""

    drop: float
    ci95: Interval
    p_value: float
    base_setting: str | None
    worst: float | None
    worst_setting: str | None
    width_decades: Mapping[str, float | None] | None


@dataclass(frozen=True)
class DropDifference(_Fields):
    """The difference of two losses' drops, baseline minus method, with its t-interval."""

    estimate: float
    ci95: Interval


@dataclass(frozen=True)
class DropAnswer:
    """The drop-from-the-base answer (its own Holm family); ``reason`` says why it cannot tell."""

    measure: str
    ratio: float | None
    ci95: Interval
    difference: DropDifference | None
    p_value: float | None
    p_adjusted: float | None
    claim: str
    sentence: str
    losses: Mapping[str, LossDrop]
    n_settings: int
    reason: str | None = None
    agreement: Agreement | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"measure": self.measure, "ratio": self.ratio, "ci95": self.ci95.as_dict(),
               "difference": _plain(self.difference), "p_value": self.p_value, "p_adjusted": self.p_adjusted,
               "claim": self.claim, "sentence": self.sentence, "losses": _plain(self.losses)}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.agreement is not None:
            out["agreement"] = self.agreement.as_dict()
        return {**out, "n_settings": self.n_settings}


#: How each question is named wherever a number is shown.
QUESTIONS = {"these_settings": "for these settings", "beyond": "beyond these settings"}


class _Entry:
    """What every entry reads alike: its compared pair's baseline and its "beyond" claim (the top-level ``claim``)."""

    @property
    def baseline(self) -> str | None:
        return self.pair.baseline if self.pair else None

    @property
    def claim(self) -> str:
        return self.beyond.claim


def _views(out: dict[str, Any], logit: ViewAnswer | None, conservative: ViewAnswer | None) -> dict[str, Any]:
    if logit is not None:
        out["logit"] = logit.as_dict()
    if conservative is not None:
        out["conservative"] = conservative.as_dict()
    return out


def _headline(out: dict[str, Any], agreement: Agreement | None, primary: str | None) -> dict[str, Any]:
    if agreement is not None:
        out["primary_agreement"] = agreement.as_dict()
    if primary is not None:
        out["primary"] = primary
    return out


@dataclass(frozen=True)
class FactorEntry(_Entry):
    """One (study, factor) answered for one compared :attr:`pair` (``None``: the factor's one method alone)."""

    study: str
    factor: str
    n_settings: int
    paired_settings: int
    unpaired_settings: tuple[str, ...]
    losses: Mapping[str, LossSummary]
    beyond: BeyondAnswer
    divergence_fisher_p: float
    pair: Pair | None
    method: str
    these_settings: TheseAnswer
    drop: DropAnswer
    primary: str
    uneven_noise: tuple[str, ...] | None = None
    primary_agreement: Agreement | None = None
    logit: ViewAnswer | None = None
    conservative: ViewAnswer | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"study": self.study, "factor": self.factor, "n_settings": self.n_settings,
               "paired_settings": self.paired_settings, "unpaired_settings": list(self.unpaired_settings),
               "losses": _plain(self.losses), **self.beyond.result.as_dict(),
               "divergence_fisher_p": self.divergence_fisher_p, "baseline": self.baseline, "method": self.method}
        if self.uneven_noise is not None:
            out["uneven_noise"] = list(self.uneven_noise)
        out.update(p_adjusted=self.beyond.p_adjusted, claim=self.beyond.claim, question=QUESTIONS["beyond"],
                   sentence=self.beyond.sentence, these_settings=self.these_settings.as_dict(),
                   drop=self.drop.as_dict())
        return _views(_headline(out, self.primary_agreement, self.primary), self.logit, self.conservative)


@dataclass(frozen=True)
class AcrossEntry(_Entry):
    """One factor pooled over the studies that ran it, each study a block (both questions)."""

    factor: str
    studies: tuple[str, ...]
    n_settings: int
    beyond: BeyondAnswer
    these_settings: TheseAnswer
    pair: Pair

    @property
    def method(self) -> str:
        return self.pair.method

    def as_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "studies": list(self.studies), "n_settings": self.n_settings,
                **self.beyond.result.as_dict(), "p_adjusted": self.beyond.p_adjusted, "claim": self.beyond.claim,
                "question": QUESTIONS["beyond"], "sentence": self.beyond.sentence,
                "these_settings": self.these_settings.as_dict(), "baseline": self.baseline, "method": self.method}


@dataclass(frozen=True)
class PooledEntry(_Entry):
    """A pooled answer over a group of entries (``factors``: their ``study/factor`` names): each compared
    method against its baseline, or one method alone (``pair`` ``None``); ``by_factor`` on the report's
    headline entry of several studies."""

    factors: tuple[str, ...]
    n_settings: int
    beyond: BeyondAnswer
    these_settings: TheseAnswer
    drop: DropAnswer
    pair: Pair | None
    method: str | None
    by_factor: tuple[AcrossEntry, ...] | None = None
    primary: str | None = None
    primary_agreement: Agreement | None = None
    logit: ViewAnswer | None = None
    conservative: ViewAnswer | None = None

    def as_dict(self, factors: bool = True, by_factor: bool = True) -> dict[str, Any]:
        out = {"factors": list(self.factors)} if factors else {}
        out.update({"n_settings": self.n_settings, **self.beyond.result.as_dict(), "p_adjusted": self.beyond.p_adjusted,
                    "claim": self.beyond.claim, "question": QUESTIONS["beyond"], "sentence": self.beyond.sentence,
                    "these_settings": self.these_settings.as_dict(), "drop": self.drop.as_dict(),
                    "baseline": self.baseline, "method": self.method})
        if by_factor and self.by_factor is not None:
            out["by_factor"] = _plain(self.by_factor)
        return _views(_headline(out, self.primary_agreement, self.primary), self.logit, self.conservative)


@dataclass(frozen=True)
class StudyAnalysis:
    """A study's analysis settings: its primary measure and equivalence margin as recorded on its first run
    (``declared``), the baseline it compares with, and any later edit of them in the study file."""

    primary: str
    equivalence_ratio: float
    declared: bool
    baseline: str | None = None
    edits: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"primary": self.primary, "equivalence_ratio": self.equivalence_ratio}
        if self.baseline:
            out["baseline"] = self.baseline
        return {**out, "declared": self.declared}


@dataclass(frozen=True)
class ReportNumbers:
    """Every number of the report. ``overall`` is the headline pooled entry; ``overall_by_method`` every
    compared method's pooled entry; ``overall_per_study`` each study's own pooled entry (several studies).
    ``bases``, ``nuisance`` and ``flags`` are present for study folders (not for a bare table)."""

    metric: str
    studies: tuple[str, ...]
    factors: tuple[FactorEntry, ...]
    overall: PooledEntry
    overall_by_method: Mapping[str, PooledEntry]
    overall_per_study: Mapping[str, PooledEntry]
    divergence: Mapping[str, Any]
    divergence_all_trials: Mapping[str, Any]
    chance: float | None
    expected_max: Mapping[str, Any]
    importance: Mapping[str, Any]
    notes: tuple[str, ...]
    analysis: Mapping[str, StudyAnalysis]
    bases: Mapping[str, Mapping[str, Any]] | None = None
    nuisance: Mapping[str, list[Mapping[str, Any]]] | None = None
    flags: tuple[str, ...] | None = None
    #: each study's cost (study folders only; :mod:`supcon_ray.results.cost`)
    cost: Mapping[str, StudyCost] | None = None
    #: whether ``overall_by_method`` holds several groups (else its one entry is ``overall`` without its lists)
    several_methods: bool = field(default=False, repr=False)

    def pooled_rows(self) -> list[PooledEntry]:
        """The pooled answers a table shows: ``overall``, or each compared method's where there are several."""
        return list(self.overall_by_method.values()) if len(self.overall_by_method) > 1 else [self.overall]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` contract, NaN kept (see :meth:`to_json`)."""
        out = {
            "overall_per_study": {s: o.as_dict(by_factor=False) for s, o in self.overall_per_study.items()},
            "metric": self.metric,
            "studies": list(self.studies),
            "factors": [f.as_dict() for f in self.factors],
            "overall": self.overall.as_dict(),
            "overall_by_method": {k: o.as_dict(factors=self.several_methods, by_factor=False)
                                  for k, o in self.overall_by_method.items()},
            "divergence": _plain(self.divergence),
            "divergence_all_trials": _plain(self.divergence_all_trials),
            "chance": self.chance,
            "expected_max": _plain(self.expected_max),
            "importance": _plain(self.importance),
            "notes": list(self.notes),
            "analysis": {s: a.as_dict() for s, a in self.analysis.items()},
        }
        if self.bases is not None:
            out["bases"] = _plain(self.bases)
        if self.nuisance is not None:
            out["nuisance"] = _plain(self.nuisance)
        if self.flags is not None:
            out["flags"] = list(self.flags)
        if self.cost is not None:
            out["cost"] = {s: c.as_dict() for s, c in self.cost.items()}
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` contract of ``python -m supcon_ray.report`` (NaN and infinity as ``null``)."""
        return clean_json(self.as_dict())
