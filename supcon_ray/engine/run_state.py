"""The checkpointable state of a run: one record from which a resumed run continues exactly.

A checkpoint is a plain dict of tensors and numbers (``torch.load(weights_only=True)`` reads it):
the network, the stage and epochs done in it, that stage's optimizer / scheduler / gradient-scaler
state, the CPU RNG state and the history of epoch metrics. Rank 0 saves all of it; other ranks only
their RNG state. Loader draws need no state: they are seeded by (seed, epoch, sample).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class RunState:
    """Where a run is: the network's weights, ``epoch`` epochs done in ``stage``, and what the stage's
    optimizer, scheduler and scaler hold (None where the stage has none, as the L-BFGS probe)."""

    network: dict[str, torch.Tensor]
    stage: str
    epoch: int
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: torch.Tensor = field(default_factory=torch.get_rng_state)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_checkpoint(self) -> dict[str, Any]:
        return {"network": self.network, "stage": self.stage, "epoch": self.epoch, "optimizer": self.optimizer,
                "scheduler": self.scheduler, "scaler": self.scaler, "rng": self.rng, "history": list(self.history)}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> RunState:
        return cls(state["network"], state["stage"], state["epoch"], state.get("optimizer"), state.get("scheduler"),
                   state.get("scaler"), state["rng"], list(state["history"]))

    def resumed_from(self) -> str:
        return f"{self.stage}:{self.epoch}"


def weights_digest(net: nn.Module) -> str:
    """SHA-256 of a network's weights (first 16 hex digits): equal digests mean bit-identical networks."""
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
