"""Calibration of every claim the report prints, on whole simulated studies (``--question study`` of
:mod:`benchmarks.calibration`).

Each simulated study (:func:`supcon_ray.stats.simulate.simulate_study`: several factors sharing the base's
runs, one to three methods against a baseline, one to three studies) goes through
:func:`supcon_ray.analyze`, the entry point of the report, and every answer of its JSON is read back
(:func:`answers`): each factor's, each method's pooled, each study's pooled, and each factor's across
studies; for the questions "beyond these settings", "for these settings", the drop from the base, the
one-method spread and drop, and the equivalence (agreement) test. Per truth and per answer type it
measures:

* **false claims**: a directional claim (or "moves") when every loss has the same true means (nominal 0.05);
* **family-wise error**: a report with any false claim in a question's Holm family: every factor's answer
  and every pooled one (the report's family), and, apart, the factors pooled across studies (their own
  family); each study's own pooled answer, read from a report of several studies, is adjusted in that
  study's own families and counted per answer only;
* **coverage** of each ratio's 95% interval at the true ratio (nominal 0.95), and **power** (the right
  claim) where the truth is a ratio above 1;
* **disagreements**: an answer whose unadjusted p-value is below 0.05 while its 95% interval contains the
  null value, or the reverse (must be 0: the test and its interval are one inversion).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from supcon_ray.stats.simulate import StudyTruth, simulate_study

ALPHA = 0.05
#: Directional and "moves" claims: anything else (no difference, cannot tell, no effect) claims nothing.
NOTHING = {"no_difference", "insufficient", "no_detectable_effect", None}


@dataclass(frozen=True)
class Answer:
    """One printed answer: where (``level``: factor, pooled, study, across), which question, its claim,
    its unadjusted p-value, the interval that must agree with it and the value tested."""

    level: str
    question: str
    claim: str | None
    p_value: float | None
    ci95: tuple[float | None, float | None] | None
    null: float
    ratio_ci95: tuple[float | None, float | None] | None = None

    @property
    def claims(self) -> bool:
        return self.claim not in NOTHING

    def disagrees(self) -> bool:
        """The p-value below alpha while the interval contains the null value, or the reverse."""
        if self.p_value is None or self.ci95 is None or self.ci95[0] is None and self.ci95[1] is None:
            return False
        low = -math.inf if self.ci95[0] is None else self.ci95[0]
        high = math.inf if self.ci95[1] is None else self.ci95[1]
        if self.null == 1.0 and self.ci95[0] == 0 and self.ci95[1] is None:
            low = 0.0
        inside = low <= self.null <= high
        return (self.p_value < ALPHA) == inside


def _pair(entry: dict, level: str) -> Iterator[Answer]:
    """A two-method entry's answers: beyond (its own keys), these settings, the drop."""
    if entry.get("p_value") is not None or entry.get("claim") not in (None, "insufficient"):
        yield Answer(level, "beyond", entry.get("claim"), entry.get("p_value"), _ci(entry.get("ci95")), 1.0)
    t = entry.get("these_settings") or {}
    if t.get("ratio") is not None or t.get("p_value") is not None:
        yield Answer(level, "these", t.get("claim"), t.get("p_value"), _ci(t.get("ci95")), 1.0)
    agreement = t.get("agreement") or {}
    if agreement.get("tost_p") is not None:
        yield Answer(level, "equivalence", "equivalent" if (agreement.get("tost_p_adjusted") or 1) < ALPHA else None,
                     None, None, 1.0)
    d = entry.get("drop") or {}
    if d.get("p_value") is not None and d.get("difference"):
        yield Answer(level, "drop", d.get("claim"), d.get("p_value"), _ci(d["difference"].get("ci95")), 0.0,
                     _ci(d.get("ci95")))


def _one(entry: dict, level: str) -> Iterator[Answer]:
    """A one-method entry's answers: the spread against no effect, and the drop against 0."""
    t = entry.get("these_settings") or {}
    losses = t.get("losses") or {}
    if t.get("p_value") is not None and losses:
        (loss,) = losses.values()
        yield Answer(level, "one-method spread", t.get("claim"), t.get("p_value"), (loss["spread_ci95"][0] or 0.0,
                                                                                   loss["spread_ci95"][1]), 0.0)
    d = entry.get("drop") or {}
    if d.get("p_value") is not None and d.get("losses"):
        (loss,) = d["losses"].values()
        yield Answer(level, "one-method drop", d.get("claim"), loss.get("p_value"), _ci(loss.get("ci95")), 0.0)


def _ci(ci) -> tuple[float | None, float | None] | None:
    return None if ci is None else (ci[0], ci[1])


def answers(out: dict) -> list[Answer]:
    """Every answer of one report's JSON (:func:`supcon_ray.analyze`)."""
    found: list[Answer] = []
    for f in out["factors"]:
        found += list(_pair(f, "factor") if f.get("method") and f.get("baseline") else _one(f, "factor"))
    pooled = out["overall_by_method"] or {"": out["overall"]}
    for entry in pooled.values():
        found += list(_pair(entry, "pooled") if entry.get("baseline") else _one(entry, "pooled"))
    for entry in out["overall_per_study"].values():
        found += list(_pair(entry, "study") if entry.get("baseline") else _one(entry, "study"))
    for entry in out["overall"].get("by_factor") or []:
        found += list(_pair({**entry["beyond"], "these_settings": entry["these_settings"]}, "across")
                      if "beyond" in entry else _pair(entry, "across"))
    return found


#: The truths of the study-level table: (name, truth, simulate_study keyword arguments).
STUDY_CELLS = [
    ("shared base, 3 x 3 x 3", StudyTruth("null"), {}),
    ("2 seeds", StudyTruth("null"), {"n_seeds": 2}),
    ("uneven noise (15x at one setting)", StudyTruth("null", uneven=15.0), {}),
    ("heavy-tailed seed noise (t3)", StudyTruth("null", noise="t3"), {}),
    ("collapse at chance", StudyTruth("null", collapse=True), {}),
    ("3 methods", StudyTruth("null"), {"methods": ("supcon", "m2", "m3")}),
    ("3 studies pooled", StudyTruth("null"), {"studies": 3}),
    ("6 settings x 3 seeds", StudyTruth("null"), {"n_settings": 6}),
    ("one method, no effect", StudyTruth("null", drops=(0.0, 0.0)), {"baseline": None}),
    ("ratio 2, 3 x 3 x 3", StudyTruth("ratio 2", ratio=2.0), {}),
    ("ratio 2, 6 settings", StudyTruth("ratio 2", ratio=2.0), {"n_settings": 6}),
]


def study_cell(rng: np.random.Generator, truth: StudyTruth, kwargs: dict, sims: int, margin: float = 1.25) -> dict:
    """Every answer type's false claims, power, coverage and disagreements over ``sims`` studies.

    A false claim: a direction or "moves" where every loss has the same true means, the wrong direction
    otherwise, or "equivalent" where the true ratio lies outside ``[1/margin, margin]``. Power: the right
    direction where the true ratio is not 1."""
    from supcon_ray import analyze  # waits: the benchmark's other questions never build a report

    count: dict[tuple[str, str], int] = defaultdict(int)
    false: dict[tuple[str, str], int] = defaultdict(int)
    right: dict[tuple[str, str], int] = defaultdict(int)
    covered: dict[tuple[str, str], int] = defaultdict(int)
    with_ci: dict[tuple[str, str], int] = defaultdict(int)
    family: dict[str, int] = defaultdict(int)
    disagreements = 0
    methods = tuple(kwargs.get("methods", ("supcon",)))
    for _ in range(sims):
        out = analyze(simulate_study(rng, truth, **kwargs))
        wrong_in: set[str] = set()
        for a in answers(out):
            key = (a.level, a.question)
            count[key] += 1
            if a.question == "equivalence":
                wrong = a.claims and not 1 / margin < truth.ratio < margin
            else:
                correct = a.claims and truth.ratio != 1.0 and str(a.claim).startswith(methods)
                right[key] += correct
                wrong = a.claims and not correct
            false[key] += wrong
            if wrong and a.level != "study":  # each study's own pooled answer sits in that study's own families
                wrong_in.add(a.question if a.level != "across" else f"{a.question} (across studies)")
            disagreements += a.disagrees()
            ci = a.ratio_ci95 if a.question == "drop" else a.ci95
            if a.question in ("beyond", "these", "drop") and ci is not None and ci[0] is not None:
                with_ci[key] += 1
                covered[key] += (ci[0] <= truth.ratio) and (ci[1] is None or truth.ratio <= ci[1])
        for q in wrong_in:
            family[q] += 1
    rows = {}
    for (level, question), n in sorted(count.items()):
        k = (level, question)
        rows[f"{level} {question}"] = {"answers": n, "false_claims": false[k] / n,
                                       "power": right[k] / n if truth.ratio != 1.0 and question != "equivalence" else None,
                                       "coverage": covered[k] / with_ci[k] if with_ci[k] else None}
    return {"answers": rows, "family_wise": {q: n / sims for q, n in sorted(family.items())},
            "disagreements": disagreements, "sims": sims}


def _run(args: tuple[int, int, int]) -> dict:
    index, sims, seed = args
    name, truth, kwargs = STUDY_CELLS[index]
    return {"truth": name, **study_cell(np.random.default_rng(seed + index), truth, kwargs, sims)}


def run_cells(sims: int, jobs: int = 1, seed: int = 2031, names: list[str] | None = None) -> list[dict]:
    """Every cell of :data:`STUDY_CELLS` (or those ``names``), ``sims`` studies each, on ``jobs`` processes."""
    chosen = [(i, sims, seed) for i, (name, _, _) in enumerate(STUDY_CELLS) if not names or name in names]
    if jobs <= 1:
        return [_run(c) for c in chosen]
    import multiprocessing  # waits: one process unless asked

    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        return pool.map(_run, chosen, chunksize=1)


def _f(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def markdown(cells: list[dict]) -> str:
    """The study-level table: one row per truth and answer type."""
    lines = ["| truth | answer | answers | false claims | power | coverage |", "|---|---|---:|---:|---:|---:|"]
    for c in cells:
        for kind, r in c["answers"].items():
            lines.append(f"| {c['truth']} | {kind} | {r['answers']} | {_f(r['false_claims'])} | {_f(r['power'])} | "
                         f"{_f(r['coverage'])} |")
    lines += ["", "| truth | family-wise error per question (any false claim in a study) | disagreements |",
              "|---|---|---:|"]
    for c in cells:
        fw = ", ".join(f"{q} {v:.3f}" for q, v in c["family_wise"].items()) or "none"
        lines.append(f"| {c['truth']} | {fw} | {c['disagreements']} |")
    return "\n".join(lines)
