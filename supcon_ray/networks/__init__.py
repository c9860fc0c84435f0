"""Networks, losses and optimizers, each built by its registered name (:mod:`supcon_ray.registry`).
"""

from supcon_ray.exports import exports

__all__ = [
    "ENCODERS",
    "Network",
    "SupConLoss",
    "build_network",
    "build_optimizer",
    "build_scheduler",
    "cross_entropy_loss",
    "plugin_objective",
]
__getattr__, __dir__ = exports(__name__, {
    "SupConLoss": "losses",
    "cross_entropy_loss": "losses",
    "plugin_objective": "losses",
    "Network": "models",
    "build_network": "models",
    "ENCODERS": "models",
    "build_optimizer": "optim",
    "build_scheduler": "optim",
})
