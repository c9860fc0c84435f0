"""The claims a statistic can make, named once (string values: they are the report's JSON contract).

Two-method comparisons claim a direction (``<loss>_less_sensitive``: :func:`less_sensitive`, so
``supcon_less_sensitive`` and ``ce_less_sensitive`` keep their meaning for any pair), no
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


#: The claims that name a direction between CE and SupCon (the paper's pair).
DIRECTIONS = (Claim.SUPCON_LESS, Claim.CE_LESS)
SUFFIX = "_less_sensitive"
#: How each built-in loss is named in sentences and tables (any other loss by its registered name).
DISPLAY = {"ce": "CE", "supcon": "SupCon", "simclr": "SimCLR"}


def less_sensitive(loss: str) -> str:
    """The claim that ``loss`` is the less sensitive of a compared pair: ``<loss>_less_sensitive``."""
    return f"{loss}{SUFFIX}"


def less_sensitive_loss(claim: str) -> str | None:
    """The loss a directional claim names (``supcon_less_sensitive`` -> ``supcon``), else ``None``."""
    return claim[: -len(SUFFIX)] if isinstance(claim, str) and claim.endswith(SUFFIX) else None


#: Display names of plugin losses as a study folder recorded them (:func:`record_display_names`).
_RECORDED: dict[str, str] = {}


def record_display_names(names: dict[str, str] | None) -> None:
    """Name plugin losses as a study folder's manifest recorded them (``display_names``), for every writer
    of this process; the recorded loss names in rows, ids and JSON keys are unchanged."""
    _RECORDED.update(names or {})


def forget_display_names() -> None:
    """Drop the recorded display names (a test, or a notebook reading other folders)."""
    _RECORDED.clear()


def display(loss: str) -> str:
    """A loss as sentences, tables and figures name it: ``CE``, ``SupCon``, ``SimCLR``; a plugin loss by the
    ``display`` it registered (where it is loaded, or as a folder recorded it), else its registered name."""
    if loss in _RECORDED:
        return _RECORDED[loss]
    if loss not in DISPLAY:
        from supcon_ray import registry

        if loss in registry.LOSSES:
            shown = registry.LOSSES.meta(loss, "display")
            if shown:
                return str(shown)
    return DISPLAY.get(loss, loss)
