"""Setting labels: the one home of how a factor's setting is named, read back, ordered and recognised
as the base.

A trial's ``setting`` is a label such as ``optimizer=rmsprop`` or ``lr=x0.1,momentum=0.9``: each key of
the setting's values with its value (floats to a few significant digits). The study layer writes them
(:func:`format_label`, :func:`distinct_labels`); the statistics and the report read them
(:class:`SettingLabel`). A value written ``x<m>`` is a multiple of each loss's tuned base, so
``<factor>=x1`` is the base itself (:func:`base_label`).

Plain strings in and out: a label stays the ``str`` recorded in Parquet; :class:`SettingLabel` is a
frozen view of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SEPARATOR", "SettingLabel", "base_label", "distinct_labels", "format_label", "label_positions",
           "value_text"]

#: Between a key and its value in a label (``lr=x0.1``); keys of one setting are joined by ``,``.
SEPARATOR = "="
JOIN = ","
#: The relative value that is each loss's tuned base itself.
BASE_MULTIPLE = "x1"


def _value(value: Any, digits: int | None) -> str:
    if not isinstance(value, float):
        return str(value)
    return repr(value) if digits is None else f"{value:.{digits}g}"


def format_label(values: dict[str, Any], digits: int | None = 4) -> str:
    """A readable label such as ``optimizer=rmsprop,lr=0.01`` (floats to ``digits`` significant digits; None: exact)."""
    return JOIN.join(f"{k}{SEPARATOR}{_value(v, digits)}" for k, v in values.items())


def distinct_labels(designs: list[dict[str, Any]]) -> list[str]:
    """Labels for distinct configurations, with as few digits as keep them distinct (exact at worst)."""
    for digits in (4, 6, 8, 10, 12, None):
        labels = [format_label(d, digits) for d in designs]
        if len(set(labels)) == len(labels):
            return labels
    return labels  # only reached for duplicate configurations, which callers drop first


def value_text(setting: str) -> str:
    """``optimizer=sgd`` -> ``sgd``: the value part of a label (the whole text where it has no key)."""
    return setting.split(SEPARATOR, 1)[-1]


def base_label(factor: str) -> str:
    """The label of a relative factor's base setting, ``<factor>=x1``."""
    return f"{factor}{SEPARATOR}{BASE_MULTIPLE}"


@dataclass(frozen=True)
class SettingLabel:
    """One recorded setting label, read: its ``text`` as recorded, its ``value`` part, and how it sorts."""

    text: str

    @property
    def value(self) -> str:
        return value_text(self.text)

    @property
    def multiple(self) -> float | None:
        """The multiple of the tuned base of a relative value (``lr=x0.1`` -> 0.1), else ``None``."""
        if not self.value.startswith("x"):
            return None
        try:
            return float(self.value[1:])
        except ValueError:
            return None

    @property
    def number(self) -> float | None:
        """The value as a number: a relative value's multiple or a plain number, else ``None`` (a name)."""
        try:
            return float(self.value[1:] if self.value.startswith("x") else self.value)
        except ValueError:
            return None

    def order(self) -> tuple[int, float, str]:
        """Sort key in reading order: numeric values (``x0.1`` multiples included) by size, before names in
        alphabetical order."""
        number = self.number
        return (0, number, self.value) if number is not None else (1, 0.0, self.value)

    def is_base_of(self, factor: str) -> bool:
        """Whether this is ``<factor>=x1``, the base of a relative factor."""
        return self.text == base_label(factor)


def label_positions(settings: list[str]) -> dict[str, float] | None:
    """Numeric positions of a factor's settings (``x0.1`` multiples or values), or ``None`` if any is a name."""
    numbers = {s: SettingLabel(s).number for s in settings}
    return None if any(n is None for n in numbers.values()) else numbers
