"""Where a run trains and where its reports go: the one thing that differs between one process and a
Ray Train worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

#: ``reporter(metrics, state)``: ``state`` is the checkpoint dict on rank 0, ``{"rng": ...}`` elsewhere,
#: None in an epoch that does not checkpoint (``TrainConfig.checkpoint_every``).
Reporter = Callable[[dict[str, Any], dict[str, Any] | None], None]


@dataclass
class Session:
    """Which rank this is, on which device, where metrics and checkpoints go, and the state to resume."""

    reporter: Reporter
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resume_state: dict[str, Any] | None = None
    show_progress: bool = False
