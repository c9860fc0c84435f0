"""How each loss is named to a reader: the one home of display names.

Rows, trial ids and the report's JSON keep a loss's registered name (``supcon``, ``poly1``); every sentence,
table, console line and figure names it by :func:`display`: the built-in ``CE``, ``SupCon`` and ``SimCLR``,
a plugin loss by the ``display`` it registered (:func:`supcon_ray.plugins.register_loss`, through
:func:`register_display`) where it is loaded, or as a study folder's manifest recorded it
(:func:`record_display_names`), since the report never loads plugins. A base module: it imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["BUILT_IN", "display", "display_names", "forget_display_names", "record_display_names",
           "register_display"]

#: How each built-in loss is named in sentences and tables.
BUILT_IN = {"ce": "CE", "supcon": "SupCon", "simclr": "SimCLR"}
#: Display names of plugin losses registered in this process.
_REGISTERED: dict[str, str] = {}
#: Display names of plugin losses as the study folders read in this process recorded them.
_RECORDED: dict[str, str] = {}


def display(loss: str) -> str:
    """``loss`` as a reader sees it (see the module); any other name as it is."""
    return _RECORDED.get(loss) or _REGISTERED.get(loss) or BUILT_IN.get(loss, loss)


def register_display(loss: str, text: str) -> None:
    """Name a plugin loss registered in this process."""
    _REGISTERED[loss] = text


def display_names(losses: Iterable[str]) -> dict[str, str] | None:
    """``{loss: display}`` of those ``losses`` registered with a display name here (None: none was), as a
    study's manifest records them."""
    names = {loss: _REGISTERED[loss] for loss in losses if loss in _REGISTERED}
    return names or None


def record_display_names(names: Mapping[str, str] | None) -> None:
    """Name plugin losses as a study folder recorded them (its manifest's ``display_names``)."""
    _RECORDED.update(names or {})


def forget_display_names() -> None:
    """Drop every registered and recorded display name (a test, or a notebook starting afresh)."""
    _REGISTERED.clear()
    _RECORDED.clear()
