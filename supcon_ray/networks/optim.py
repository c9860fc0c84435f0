"""Optimizers and learning-rate schedules by name.

Optimizers (:data:`OPTIMIZERS`): ``sgd`` (momentum, optional Nesterov), ``lars`` (layer-wise
adaptive rate scaling, You et al. 2017; BatchNorm and bias parameters get neither weight decay
nor adaptation, as is usual), ``rmsprop`` (the paper's settings: decay 0.9, epsilon 1.0) and
``adamw``. Schedules (:data:`SCHEDULES`), each after an optional linear warm-up: cosine decay to
zero, step decay (x0.1 at 50% and 75% of training), or exponential decay (x ``decay_rate`` every
``decay_epochs`` epochs, continuously, as the paper uses with RMSProp). Schedules step once per
iteration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from supcon_ray import registry

#: The names are registered in :mod:`supcon_ray.registry` (readable without torch); each is built here.
OPTIMIZERS = registry.OPTIMIZERS.names()
SCHEDULES = registry.SCHEDULES.names()


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio ``eta * ||w|| / (||g|| + wd * ||w||)``.

    Parameter groups with ``lars_exclude=True`` are plain momentum SGD without weight decay.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, eps=eps, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["lars_exclude"]:
                    w_norm, g_norm = torch.norm(p), torch.norm(grad)
                    grad = grad.add(p, alpha=group["weight_decay"])
                    trust = group["trust_coefficient"] * w_norm / (g_norm + group["weight_decay"] * w_norm + group["eps"])
                    trust = torch.where((w_norm > 0) & (g_norm > 0), trust, torch.ones_like(trust))
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def _split_decay(params: Iterable[nn.Parameter]) -> tuple[list, list]:
    """(weights, BatchNorm/bias parameters): the second get no decay and no LARS adaptation."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def build_optimizer(
    name: str,
    params: Iterable[nn.Parameter],
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    rmsprop_eps: float = 1.0,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (one of :data:`OPTIMIZERS`) over ``params``.

    RMSProp uses the paper's decay 0.9 and, by default, its epsilon 1.0. (TensorFlow adds epsilon
    under the square root, PyTorch outside it; with epsilon 1 the two denominators,
    ``sqrt(v + 1)`` and ``sqrt(v) + 1``, differ by at most a factor sqrt(2).)
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; must be one of: {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    params = list(params)
    if name == "lars":
        decay, no_decay = _split_decay(params)
        groups = [{"params": decay}, {"params": no_decay, "lars_exclude": True, "weight_decay": 0.0}]
        return LARS([g for g in groups if g["params"]], lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, momentum=momentum, weight_decay=weight_decay,
                                   eps=rmsprop_eps)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_steps: int = 0,
                    steps_per_epoch: int = 1, decay_rate: float = 0.97, decay_epochs: float = 2.4) -> LambdaLR:
    """Per-iteration schedule ``name`` (one of :data:`SCHEDULES`) over ``total_steps`` iterations.

    ``exponential`` multiplies the learning rate by ``decay_rate`` every ``decay_epochs`` epochs of
    ``steps_per_epoch`` iterations (counted from the end of warm-up).
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; must be one of: {', '.join(SCHEDULES)}")
    total_steps, warmup_steps = max(1, total_steps), max(0, min(warmup_steps, total_steps - 1))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "exponential":
            epochs_done = (step - warmup_steps) / max(1, steps_per_epoch)
            return decay_rate ** (epochs_done / decay_epochs)
        if name == "step":
            progress = step / total_steps
            return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return LambdaLR(optimizer, factor)
