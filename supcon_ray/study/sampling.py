"""Configurations drawn up front from a search space, with Optuna's samplers.

A grid, random or QMC search (``search`` with those samplers, step 1's ``tune_base`` and the
``nuisance`` searches) is a :class:`Design`: ``n`` distinct configurations drawn before anything
runs, so every loss gets the same ones (:func:`draw_design`). Identical draws are dropped and redrawn,
and the design says how many were. TPE adapts, so it is never drawn here: the runner gives its
space (:func:`optuna_space`) to Ray Tune's Optuna searcher.

Optuna is imported inside the functions that use it (deliberately): importing it more than doubles
the import time of the study layer (0.2 s more here, about 100 more modules), which the report, the
power planner and every reader of a study file would pay without drawing anything.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass
from typing import Any

from supcon_ray.config import ConfigError
from supcon_ray.study.schema import Distribution, Search


def optuna_space(search: Search | dict[str, Distribution]) -> dict[str, Any]:
    """The search space (a ``Search`` or a mapping of :class:`Distribution`) as Optuna distributions."""
    import optuna

    space = search.space if isinstance(search, Search) else search
    distributions = {}
    for key, d in space.items():
        if d.kind == "loguniform":
            distributions[key] = optuna.distributions.FloatDistribution(*d.loguniform, log=True)
        elif d.kind == "uniform":
            distributions[key] = optuna.distributions.FloatDistribution(*d.uniform)
        elif d.kind == "int":
            distributions[key] = optuna.distributions.IntDistribution(*d.int)
        else:
            distributions[key] = optuna.distributions.CategoricalDistribution(d.choice)
    return distributions


@dataclass
class Design:
    """Configurations drawn up front; ``duplicates``: identical draws that were dropped (and redrawn)."""

    configs: list[dict[str, Any]]
    duplicates: int = 0
    requested: int = 0

    @property
    def note(self) -> str:
        """What was dropped, in words (empty when no draw repeated)."""
        if not self.duplicates:
            return ""
        short = len(self.configs) < self.requested
        return (f"{self.duplicates} identical draw(s) dropped"
                + (f"; the space has only {len(self.configs)} distinct configuration(s)" if short else ", redrawn"))


def draw_design(sampler: str, space: dict[str, Distribution], n: int | None, seed: int,
                count_key: str = "budget") -> Design:
    """``n`` distinct configurations (grid: every point once). Identical draws are dropped and redrawn,
    up to ``20 n`` draws, so a small finite space yields fewer configurations rather than repeats."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "grid":
        not_listed = [k for k, d in space.items() if d.kind != "choice"]
        if not_listed:
            raise ConfigError(f"space.{not_listed[0]}: the grid sampler needs 'choice' lists, not ranges")
        grid = {k: d.choice for k, d in space.items()}
        points = [dict(zip(grid, point)) for point in itertools.product(*grid.values())]
        unique = [dict(t) for t in dict.fromkeys(tuple(p.items()) for p in points)]
        if n not in (None, len(unique)):
            raise ConfigError(f"{count_key}: the grid has {len(unique)} points; leave {count_key} out or set it "
                              f"to {len(unique)}")
        # every grid point once, in a fixed order (Optuna's GridSampler would repeat points past the grid size)
        return Design(unique, len(points) - len(unique), len(points))
    if n is None:
        raise ConfigError(f"{count_key}: required for the {sampler} sampler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        opt_sampler = (optuna.samplers.RandomSampler(seed=seed) if sampler == "random"
                       else optuna.samplers.QMCSampler(seed=seed, scramble=True))
    distributions = optuna_space(space)
    opt_study = optuna.create_study(sampler=opt_sampler)
    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    duplicates = 0
    for _ in range(20 * n):
        if len(configs) == n:
            break
        trial = opt_study.ask(distributions)
        opt_study.tell(trial, 0.0)  # value unused: these samplers do not adapt
        key = json.dumps(trial.params, sort_keys=True)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        configs.append(dict(trial.params))
    return Design(configs, duplicates, n)


def sample_design(search: Search) -> list[dict[str, Any]]:
    """Distinct configurations for a grid / random / QMC search, drawn up front (see :func:`draw_design`)."""
    try:
        return draw_design(search.sampler, search.space, search.num_samples, search.seed, "num_samples").configs
    except ConfigError as err:
        raise ConfigError(f"search.{err}") from None

