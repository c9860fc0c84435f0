"""Lazy public names of a package (the Ray Tune pattern): listing or importing a package never imports
the heavy libraries (torch, Ray) its modules need; each name is imported from its module on first use.

Usage in a package's ``__init__``::

    __all__ = ["load_dataset", ...]
    __getattr__, __dir__ = exports(__name__, {"load_dataset": "datasets", ...})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose public ``names`` live in the given submodules."""

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def dir_() -> list[str]:
        return sorted(names)

    return getattr_, dir_
