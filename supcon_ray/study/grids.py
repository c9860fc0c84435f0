"""Grid generators for a factor's settings, so that a 9- or 12-setting factor is one line.

In a study file, a factor under ``vary`` is a list of settings, or one of these mappings of
``[start, stop, count]`` (both ends included):

* ``linspace`` / ``logspace``: absolute values, evenly spaced on a linear / log scale
  (``temperature: {linspace: [0.05, 0.5, 10]}``);
* ``x_linspace`` / ``x_logspace``: multiples of the (tuned) base, written ``x0.1`` ...
  (``lr: {x_logspace: [1/30, 30, 9]}`` gives x0.03333, x0.0783, ..., x1, ..., x30).

``start`` and ``stop`` are numbers or fractions written ``p/q`` (so a grid symmetric on a log scale
has its middle exactly at 1).

Values keep 4 significant digits (so a label reads ``x0.1``, not ``x0.10000000000000002``); a key
whose hyperparameter is an integer gets whole numbers. A grid whose rounded values repeat is
refused, as is a generator for a factor that is not one numeric hyperparameter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

GENERATORS = ("linspace", "logspace", "x_linspace", "x_logspace")
MAX_COUNT = 1000


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _number(x: Any) -> float | None:
    """A number, or a fraction written ``p/q``; None for anything else."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str) and x.count("/") == 1:
        p, q = x.split("/")
        try:
            return float(p) / float(q) if float(q) != 0 else None
        except ValueError:
            return None
    return None


def expand(factor: str, spec: Any, numeric: dict[str, type]) -> Any:
    """The list of settings a generator mapping stands for; any other value is returned as is.

    ``numeric`` maps each numeric hyperparameter to its type (``int`` or ``float``). Raises
    ``ValueError`` naming the generator and what is allowed.
    """
    if not isinstance(spec, dict) or not set(spec) & set(GENERATORS):
        return spec
    if len(spec) != 1:
        raise ValueError(f"a grid is one of {', '.join(GENERATORS)} alone; got {', '.join(map(str, spec))}")
    (kind, args), = spec.items()
    if factor not in numeric:
        raise ValueError(f"{kind}: {factor!r} is not a numeric hyperparameter; grids are for keys such as lr, "
                         "temperature, batch_size (a list of settings works for anything)")
    if (not isinstance(args, list) or len(args) != 3 or isinstance(args[2], bool) or not isinstance(args[2], int)
            or any(_number(a) is None for a in args[:2])):
        raise ValueError(f"{kind} takes [start, stop, count] (start and stop numbers or fractions such as 1/30), "
                         f"e.g. {{{kind}: [0.1, 10, 5]}}; got {args!r}")
    start, stop, count = _number(args[0]), _number(args[1]), args[2]
    if not 2 <= count <= MAX_COUNT:
        raise ValueError(f"{kind}: count must be 2 to {MAX_COUNT}; got {count}")
    if not start < stop:
        raise ValueError(f"{kind}: start must be below stop; got {start:g} and {stop:g}")
    log = kind.endswith("logspace")
    if (log or kind.startswith("x_")) and start <= 0:
        raise ValueError(f"{kind}: start must be > 0 (a {'log scale' if log else 'multiple of the base'}); got {start:g}")
    points = np.geomspace(start, stop, count) if log else np.linspace(start, stop, count)
    if kind.startswith("x_"):
        values: list[Any] = [f"x{_round(p):g}" for p in points]
    elif numeric[factor] is int:
        values = [int(round(p)) for p in points]
    else:
        values = [_round(p) for p in points]
    if len(set(values)) != len(values):
        raise ValueError(f"{kind}: {count} points from {start:g} to {stop:g} repeat once rounded "
                         f"({', '.join(map(str, values))}); use fewer points or a wider range")
    return values
