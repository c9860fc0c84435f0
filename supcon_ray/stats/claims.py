"""The claims a statistic can make, named once (string values: they are the report's JSON contract).

Two-method comparisons claim a direction (``<loss>_less_sensitive``: :func:`less_sensitive`, so
``supcon_less_sensitive`` and ``ce_less_sensitive`` keep their meaning for any pair), no
detectable difference, or ``insufficient`` (cannot tell); one-method tests claim that the loss's
accuracy ``moves`` across the settings beyond seed noise, or ``no_detectable_effect``.
"""

from __future__ import annotations

from enum import StrEnum

from supcon_ray.display import display  # noqa: F401 - the writers' one name for a loss, re-exported


class Claim(StrEnum):
    """What an answer claims; the values are the JSON's ``claim`` strings."""

    SUPCON_LESS = "supcon_less_sensitive"
    CE_LESS = "ce_less_sensitive"
    NO_DIFFERENCE = "no_difference"
    INSUFFICIENT = "insufficient"
    MOVES = "moves"
    NO_EFFECT = "no_detectable_effect"


#: The claims that name a direction between CE and SupCon (the paper's pair).
DIRECTIONS = (Claim.SUPCON_LESS, Claim.CE_LESS)
SUFFIX = "_less_sensitive"
def less_sensitive(loss: str) -> str:
    """The claim that ``loss`` is the less sensitive of a compared pair: ``<loss>_less_sensitive``."""
    return f"{loss}{SUFFIX}"


def less_sensitive_loss(claim: str) -> str | None:
    """The loss a directional claim names (``supcon_less_sensitive`` -> ``supcon``), else ``None``."""
    return claim[: -len(SUFFIX)] if isinstance(claim, str) and claim.endswith(SUFFIX) else None
