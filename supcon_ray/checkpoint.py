"""Checkpoint files: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"


def save_state(state: dict[str, Any], directory: str | os.PathLike) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` via a temporary file and a rename."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, directory / CHECKPOINT_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return directory / CHECKPOINT_FILE


def load_state(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The state saved in ``directory``, or None when there is none. Never unpickles code."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
