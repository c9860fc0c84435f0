"""Checkpoint files: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"


def _rank_file(rank: int) -> str:
    return CHECKPOINT_FILE if rank == 0 else f"rng-rank{rank}.pt"


def save_state(state: dict[str, Any], directory: str | os.PathLike, rank: int = 0) -> Path:
    """Write ``state`` atomically (temporary file, then rename).

    Rank 0 writes the whole state to ``checkpoint.pt``; another rank writes only what differs
    per rank (its RNG state) to ``rng-rank<r>.pt``; Ray Train merges the ranks' folders.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, directory / _rank_file(rank))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return directory / _rank_file(rank)


def load_state(directory: str | os.PathLike, rank: int = 0) -> dict[str, Any] | None:
    """The state saved in ``directory`` as seen by ``rank``, or None. Never unpickles code."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = Path(directory) / _rank_file(rank)
    if rank != 0 and own.is_file():
        state["rng"] = torch.load(own, map_location="cpu", weights_only=True)["rng"]
    return state
