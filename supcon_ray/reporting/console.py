"""The console verdict: the report's conclusions as plain lines, from a
:class:`~supcon_ray.analysis.ReportNumbers` (``python -m supcon_ray.report`` prints them)."""

from __future__ import annotations

from supcon_ray.analysis import FactorEntry, PooledEntry, ReportNumbers

__all__ = ["headline", "primary_first"]


def primary_first(entry: FactorEntry | PooledEntry, primary: str) -> list[str]:
    """An entry's "for these settings" sentences, the primary measure's first, the other labelled secondary."""
    spread, drop = entry.these_settings.sentence, entry.drop.sentence
    return [drop, f"(secondary) {spread}"] if primary == "drop" else [spread, f"(secondary) {drop}"]


def headline(numbers: ReportNumbers) -> list[str]:
    """The report's conclusions as plain lines: the pooled verdicts (the primary measure's first, then the
    secondary measure's, then "beyond these settings"), then the same per factor. Folders with different
    primaries get each folder's own pooled answer instead of one pooled verdict."""
    primary = {s: a.primary for s, a in numbers.analysis.items()}
    kinds = set(primary.values()) or {"spread"}
    lines: list[str] = []
    if len(kinds) == 1:
        kind = kinds.pop()
        for pooled in numbers.pooled_rows():  # every compared method's pooled answer
            lines += [*primary_first(pooled, kind), pooled.beyond.sentence]
    else:
        for study, own in numbers.overall_per_study.items():
            lines += [f"{study} (primary: {primary.get(study, 'spread')}): {line}"
                      for line in primary_first(own, primary.get(study, "spread"))]
    for f in numbers.factors:
        lines += [*primary_first(f, primary.get(f.study, "spread")), f.beyond.sentence]
    return lines
