"""The claims a statistic can make, named once (string values: they are the report's JSON contract).

Two-method comparisons claim a direction (``supcon_less_sensitive`` / ``ce_less_sensitive``), no
detectable difference, or ``insufficient`` (cannot tell); one-method tests claim that the loss's
accuracy ``moves`` across the settings beyond seed noise, or ``no_detectable_effect``.
"""

from __future__ import annotations

from enum import StrEnum


class Claim(StrEnum):
    """What an answer claims; the values are the JSON's ``claim`` strings."""

    SUPCON_LESS = "supcon_less_sensitive"
    CE_LESS = "ce_less_sensitive"
    NO_DIFFERENCE = "no_difference"
    INSUFFICIENT = "insufficient"
    MOVES = "moves"
    NO_EFFECT = "no_detectable_effect"


#: The claims that name a direction between two methods.
DIRECTIONS = (Claim.SUPCON_LESS, Claim.CE_LESS)
