"""Selection at a fraction of its cost: synchronous successive halving with budgeted rungs.

A selection search (step 1's ``tune_base``, a factor's ``nuisance`` search) with a ``fidelity`` block
(:class:`supcon_ray.study.schema.Fidelity`) does not run every configuration at full length. Rung ``k``
trains the configurations still in the search for ``min_epochs * R**k`` epochs (``R`` the
``reduction_factor``; the full length at most), each run a run of its own whose schedule decays within
its epochs (budgeted training, Li et al. 2020: a mid-schedule score of a run under the full schedule ranks
by the undecayed learning rate, the short-horizon bias of Wu et al. 2018). The best ``ceil(n / R)`` by the
search's ``select`` (the mean over its selection seeds; ties to the first in the design's order, the
protocol's one tie rule) go on. The search ends when one configuration is left (it is the pick: its
full-length runs are the analysed ones that follow) or when the survivors have run at full length (the best
of them is the pick).

Why this method (issue 41; ``docs/results.md``, "What each study cost, and selection at a fraction of it"):
replayed on recorded curves, budgeted rungs keep the full-length pick where continuing runs do not (digits'
5-epoch cosine schedule), and a contrastive loss is then scored at every rung by its own linear probe, the
pick's own measure. A rung waits for all of its runs, so its decisions do not depend on which run finished
first (Ray Tune's ASHA promotes on arrival order: ray-project/ray#13616), and each rung is an ordinary trial,
so a re-run of the same study file makes the same decisions and a resume re-runs nothing recorded.

Everything here is pure: :func:`halve` takes the scores recorded so far (and the rung decisions the manifest
already holds, which it never re-decides) and says which rungs are decided, which runs the next rung needs,
and the pick once there is one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Halving", "full_length_epochs", "halve", "planned_epochs", "rung_epochs", "rung_sizes"]


def rung_epochs(epochs: int, min_epochs: int, factor: int) -> list[int]:
    """The epochs of every possible rung: ``m, m R, m R^2, ...`` below ``epochs``, then ``epochs``."""
    out, r = [], min_epochs
    while r < epochs:
        out.append(r)
        r *= factor
    return out + [epochs]


def rung_sizes(configurations: int, epochs: int, min_epochs: int, factor: int) -> list[tuple[int, int]]:
    """``[(epochs, configurations run), ...]`` of the rungs a search of ``configurations`` runs: the same for
    every loss and whatever the scores (only which configurations go on depends on them)."""
    out, alive = [], configurations
    for r in rung_epochs(epochs, min_epochs, factor):
        out.append((r, alive))
        alive = math.ceil(alive / factor)
        if alive <= 1:
            break
    return out


def planned_epochs(configurations: int, seeds: int, epochs: int, min_epochs: int, factor: int) -> int:
    """Trial-epochs a search with fidelity trains (at most: a run that diverges stops early)."""
    return seeds * sum(r * n for r, n in rung_sizes(configurations, epochs, min_epochs, factor))


def full_length_epochs(configurations: int, seeds: int, epochs: int) -> int:
    """Trial-epochs the same search trains without fidelity: every configuration at full length."""
    return configurations * seeds * epochs


@dataclass
class Halving:
    """Where one search's successive halving stands.

    ``rungs``: each decided rung as the manifest records it (``epochs``, ``alive``: the configurations' indices
    in the design's order, ``scores``: their means, ``promoted``: those that go on, best first); ``running``:
    ``(epochs, indices)`` of the rung whose runs are not all scored yet (None once there is a pick);
    ``pick``: the chosen configuration's index, with ``pick_epochs``, the rung it won at, and ``pick_score``."""

    rungs: list[dict[str, Any]] = field(default_factory=list)
    running: tuple[int, list[int]] | None = None
    pick: int | None = None
    pick_epochs: int | None = None
    pick_score: float | None = None

    def runs(self) -> list[tuple[int, int]]:
        """``(index, epochs)`` of every run the search needs so far: each decided rung's and the running rung's."""
        out = [(i, rung["epochs"]) for rung in self.rungs for i in rung["alive"]]
        if self.running is not None:
            out += [(i, self.running[0]) for i in self.running[1]]
        return out


def _ranked(alive: list[int], scores: list[float]) -> list[int]:
    key = {i: (s if s is not None and math.isfinite(s) else -math.inf) for i, s in zip(alive, scores)}
    return sorted(alive, key=lambda i: (-key[i], i))


def halve(configurations: int, epochs: int, min_epochs: int, factor: int,
          score: Callable[[int, int], float | None], recorded: list[dict[str, Any]] | None = None) -> Halving:
    """Successive halving over configurations ``0 .. configurations - 1`` of a search at full length ``epochs``.

    ``score(index, rung_epochs)``: the mean selection score of the configuration's runs at that rung when every
    one of them is scored (completed or diverged; a diverged run's recorded score), else None (not run yet, or
    failed: the rung then waits, so nothing is chosen on an unequal budget). ``recorded``: the rungs the
    manifest holds; they are taken as decided and never decided again."""
    recorded = list(recorded or [])
    out = Halving()
    alive = list(range(configurations))
    for k, r in enumerate(rung_epochs(epochs, min_epochs, factor)):
        if k < len(recorded):
            rung = recorded[k]
        else:
            scores = [score(i, r) for i in alive]
            if any(s is None for s in scores):
                out.running = (r, alive)
                return out
            ranked = _ranked(alive, scores)
            keep = 1 if r == epochs else max(1, math.ceil(len(alive) / factor))
            finite = [s if math.isfinite(s) else None for s in scores]  # the manifest is JSON
            rung = {"epochs": r, "alive": alive, "scores": finite, "promoted": ranked[:keep]}
        out.rungs.append(rung)
        promoted = list(rung["promoted"])
        if len(promoted) == 1:
            out.pick, out.pick_epochs = promoted[0], rung["epochs"]
            out.pick_score = rung["scores"][rung["alive"].index(promoted[0])]
            return out
        alive = sorted(promoted)
    return out  # unreachable: the full-length rung keeps one
