"""A converged linear probe: multinomial logistic regression on frozen features, solved by L-BFGS.

The SGD probe (``linear_stage: cached``) has its own learning rate, epochs and batch size, which no
study tunes; on normalised features it learns slowly, so a contrastive loss's measured accuracy
(and its measured sensitivity) would include an under-trained probe. ``linear_stage: lbfgs`` solves
the probe's convex problem to convergence instead, as SimCLR's transfer evaluation does, for each
L2 penalty of :data:`PENALTIES`, and keeps the one with the best validation top-1 (never test):

    minimise over (W, b):  mean_i CE(W x_i + b, y_i) + penalty / 2 * ||W||^2      (b is not penalised)

which is scikit-learn's ``LogisticRegression(C=1 / (n * penalty))``. Ties go to the first penalty in
:data:`PENALTIES`, the strongest (the simplest model). Full batch and deterministic.

Data-parallel: each rank may hold only its shard of the features; ``reduce`` sums a tensor over the
ranks (``torch.distributed.all_reduce``). The objective's value and gradient are reduced before
L-BFGS sees them, so every rank takes the same steps and ends with the same classifier. Features
may be stored in bf16: they are read in chunks of :data:`CHUNK` rows and promoted to float64 one
chunk at a time, so no float64 copy of the features is ever made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: L2 penalties tried, strongest first (the tie rule's order).
PENALTIES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
MAX_ITER = 500
CHUNK = 65536
#: sums a tensor over the ranks in place (identity in one process)
Reduce = Callable[[torch.Tensor], None]


def _no_reduce(t: torch.Tensor) -> None:
    return None


@dataclass
class ProbeFit:
    weight: torch.Tensor  # [classes, features]
    bias: torch.Tensor  # [classes]
    penalty: float
    train_loss: float  # the penalised objective at the solution
    val_top1: float
    val_by_penalty: dict[float, float]


def _chunks(x: torch.Tensor, y: torch.Tensor):
    for start in range(0, len(y), CHUNK):
        yield x[start:start + CHUNK].double(), y[start:start + CHUNK]


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, penalty: float,
                 max_iter: int = MAX_ITER, reduce: Reduce = _no_reduce) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The penalised multinomial logistic regression above on this rank's rows ``x``, ``y`` (all ranks'
    rows together when ``reduce`` sums over ranks), solved by L-BFGS (strong Wolfe line search) in
    float64; returns (weight, bias, objective)."""
    device = x.device
    n = torch.tensor(float(len(y)), dtype=torch.float64, device=device)
    reduce(n)
    w = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, device=device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, device=device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        opt.zero_grad()
        data = torch.zeros((), dtype=torch.float64, device=device)
        for xc, yc in _chunks(x, y):
            part = F.cross_entropy(xc @ w.T + b, yc, reduction="sum") / n
            part.backward()
            data += part.detach()
        for t in (data, w.grad, b.grad):
            reduce(t)
        regulariser = 0.5 * penalty * (w * w).sum()
        regulariser.backward()
        return data + regulariser.detach()

    with torch.enable_grad():
        opt.step(objective)
        final = float(objective().detach())
    return w.detach(), b.detach(), final


def top1(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, reduce: Reduce = _no_reduce) -> float:
    """Top-1 accuracy over every rank's rows."""
    counts = torch.zeros(2, dtype=torch.float64, device=x.device)
    for xc, yc in _chunks(x, y):
        counts[0] += ((xc @ weight.T + bias).argmax(1) == yc).sum()
    counts[1] = len(y)
    reduce(counts)
    return float(counts[0] / counts[1].clamp(min=1))


def fit_probe(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], num_classes: int,
              penalties: tuple[float, ...] = PENALTIES, reduce: Reduce = _no_reduce) -> ProbeFit:
    """Fit the probe for every penalty on ``train`` and keep the best on ``val`` (first of equals); with
    ``reduce``, each rank holds a shard of both and every rank returns the same fit."""
    fits, scores = [], {}
    for penalty in penalties:
        w, b, loss = fit_logistic(*train, num_classes, penalty, reduce=reduce)
        scores[penalty] = top1(w, b, *val, reduce=reduce)
        fits.append((scores[penalty], penalty, w, b, loss))
    best = max(range(len(fits)), key=lambda i: (fits[i][0], -i))
    score, penalty, w, b, loss = fits[best]
    return ProbeFit(w, b, penalty, loss, score, scores)
