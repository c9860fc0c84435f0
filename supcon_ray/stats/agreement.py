"""Agreement with the paper, in a form that can disagree.

The paper (Khosla et al. 2020, Fig. 4a: ImageNet, ResNet-50) states a direction for the factors it
varied one at a time: SupCon is less sensitive than CE (:data:`PAPER_FIG4A`). A claim can agree with
it only by being significant in that direction; a claim "no detectable difference" is not evidence
against it, because an interval that rules out nothing is not a result. So a disagreement has two
forms, each a test of its own:

* ``disagree: opposite``: significant in the other direction (the question's own test);
* ``disagree: no meaningful difference``: the ratio CE/SupCon lies inside ``[1/m, m]``, ``m`` the study
  file's ``equivalence_ratio`` (default :data:`DEFAULT_EQUIVALENCE_RATIO`): two one-sided tests
  (Schuirmann's TOST) reject both "ratio <= 1/m" and "ratio >= m" at alpha, Holm-adjusted over the
  question's family. The matching interval is the 90% one: for the spread it lies inside ``[1/m, m]``
  exactly when both one-sided 5% tests reject, before the adjustment; for the drop too, since its
  Fieller interval inverts the test at each ratio with that ratio's own degrees of freedom, as the
  one-sided tests do (until this round it took them at ratio 1, and the two disagreed in rare draws).

Everything else is ``inconclusive``. The calibration measures how often "no meaningful difference" is
said when the truth is a ratio of ``m`` (``python -m benchmarks.calibration --question agreement``).
"""

from __future__ import annotations

import math
from enum import StrEnum
from collections.abc import Iterable

from .claims import DIRECTIONS, Claim, less_sensitive_loss
from .settings import ALPHA

#: Fig. 4a's direction of effect by factor name (the keys this project's study files vary).
PAPER_FIG4A = {
    "optimizer": Claim.SUPCON_LESS,
    "augment": Claim.SUPCON_LESS,
    "lr": Claim.SUPCON_LESS,
}
#: The paper's text ("more stable to hyperparameter settings such as optimizers and data augmentations")
#: for the factors pooled, where they include one of Fig. 4a's (:func:`pooled_direction`).
PAPER_POOLED = Claim.SUPCON_LESS
#: The pair the paper compares: ``(baseline, method)``.
PAPER_PAIR = ("ce", "supcon")
#: A ratio within [1/m, m] counts as no meaningful difference.
DEFAULT_EQUIVALENCE_RATIO = 1.25


def pooled_direction(factors: Iterable[str], pair: tuple[str, str] | None) -> str | None:
    """The paper's direction for a pooled answer over ``factors``: :data:`PAPER_POOLED` for SupCon against
    CE where at least one factor is one the paper states a direction for (:data:`PAPER_FIG4A`), else
    ``None``. The paper's stability claims name optimizers, augmentations and learning rates; its batch
    size, epoch and temperature panels (Fig. 4b-d) state accuracy levels, not which loss moves less, so
    a study of those alone has no direction to agree with."""
    if tuple(pair or ()) != PAPER_PAIR:
        return None
    return PAPER_POOLED if any(f in PAPER_FIG4A for f in factors) else None


class Outcome(StrEnum):
    """How a claim stands against the paper's direction."""

    AGREE = "agree"
    OPPOSITE = "disagree: opposite"
    EQUIVALENT = "disagree: no meaningful difference"
    INCONCLUSIVE = "inconclusive"




def outcome(claim: str, paper: str | None, tost_p_adjusted: float | None, alpha: float = ALPHA) -> Outcome | None:
    """The outcome of one claim (``None`` where the paper states no direction)."""
    if paper is None:
        return None
    if claim in DIRECTIONS:
        return Outcome.AGREE if claim == paper else Outcome.OPPOSITE
    if tost_p_adjusted is not None and not math.isnan(tost_p_adjusted) and tost_p_adjusted < alpha:
        return Outcome.EQUIVALENT
    return Outcome.INCONCLUSIVE


def direction_agreement(claim: str, paper: str | None) -> str:
    """A directional claim set against the paper's direction, with no equivalence test (the "beyond"
    answers): ``agree`` / ``disagree`` when the claim names a direction, ``cannot tell`` when it names
    none, ``n/a`` where the paper states no direction."""
    if paper is None:
        return "n/a"
    if less_sensitive_loss(claim) is not None:
        return "agree" if claim == paper else "disagree"
    return "cannot tell"
