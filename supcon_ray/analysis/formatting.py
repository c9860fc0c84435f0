"""Numbers, intervals and p-values as text: the one formatter of the report, with its styles.

A *style* names how a missing value (``None`` or NaN) and an unbounded end are written: sentences and the
HTML page write ``–`` and ``∞`` (:data:`TEXT`), the Markdown tables ``n/a`` and ``inf`` (:data:`TABLE`).
An interval's upper end is unbounded when it is infinite, or ``None`` beside a known lower end (the JSON
form of an unbounded end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from supcon_ray.stats.settings import ALPHA

__all__ = ["PLAIN", "Style", "TABLE", "TEXT", "interval", "missing", "number", "p_value"]


@dataclass(frozen=True)
class Style:
    """How one kind of output writes what a number cannot say."""

    missing: str
    #: an infinite number on its own
    infinite: str
    #: an interval's unbounded upper end
    unbounded: str
    #: whether ``-0.000`` is written ``0.000`` (a rounded tiny negative is no sign)
    unsigned_zero: bool = False
    #: whether integers are written as they are (else with the float's digits)
    integers: bool = False
    #: what a missing p-value says
    missing_p: str = ""


TEXT = Style(missing="–", infinite="∞", unbounded="∞", integers=True, missing_p="–")
TABLE = Style(missing="n/a", infinite="n/a", unbounded="inf", unsigned_zero=True, missing_p=f"n/a (cannot reach {ALPHA})")
#: The drop sentences: Python's own text for what is missing.
PLAIN = Style(missing="nan", infinite="inf", unbounded="inf", missing_p="nan")


def missing(x: Any) -> bool:
    """``None`` or NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def number(x: Any, digits: int = 3, style: Style = TABLE) -> str:
    """``x`` to ``digits`` decimals in ``style``."""
    if missing(x):
        return style.missing
    if isinstance(x, float) and math.isinf(x):
        return style.infinite
    if style.integers and not isinstance(x, float):
        return str(x)
    text = f"{x:.{digits}f}"
    return text.replace(f"-{0:.{digits}f}", f"{0:.{digits}f}") if style.unsigned_zero else text


def interval(ci: Any, digits: int = 3, style: Style = TABLE) -> str:
    """``[low, high]`` in ``style``; an unbounded upper end is written as the style says."""
    low, high = ci
    known_low = not missing(low)
    unbounded = high == math.inf or (high is None and known_low)
    return f"[{number(low, digits, style)}, {style.unbounded if unbounded else number(high, digits, style)}]"


def p_value(x: Any, style: Style = TABLE) -> str:
    """A p-value to 3 significant digits; a missing one says so in ``style``."""
    return style.missing_p if missing(x) else f"{x:.3g}"
