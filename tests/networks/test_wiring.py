"""From a TrainConfig to what trains: the loss a stage builds and the step each optimizer takes, each
checked against an independent reference written here from its definition.

Bugs these tests catch (the existing tests check SupConLoss and the optimizers only when built by hand,
or only that a loss fell):

* a knob of the contrastive loss lost between :class:`TrainConfig` and the loss a stage trains with
  (``variant: in`` silently trained as ``out``; ``temperature``, ``base_temperature``,
  ``temperature_scaling``, ``loss_method`` or the simclr / supcon use of labels dropped or swapped), and
  ``label_smoothing`` lost on the way to the ``ce`` stage: the stage's objective is compared, value and
  gradient, with ``SupConLoss`` built directly with the intended arguments and with a double loop over
  anchors and positives from Eq. 2 / Eq. 3 of Khosla et al. (2020), on inputs where L_in and L_out differ;
* an optimizer whose update departs from its definition (LARS weight decay with its sign flipped, its
  trust ratio, its exclusion of bias / BatchNorm parameters, momentum buffers, Nesterov, RMSProp's
  square average and its epsilon outside the root, AdamW's decoupled decay): one and two steps of every
  registered optimizer against a hand computation in float64, to 1e-6 relative on the update itself.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from supcon_ray.config import AUTHORS_BASE_TEMPERATURE, TrainConfig
from supcon_ray.data.datasets import Splits, TensorImages
from supcon_ray.engine.stages import RunContext, build_stage, contrastive_loss
from supcon_ray.networks.losses import SupConLoss
from supcon_ray.networks.models import Network
from supcon_ray.networks.optim import OPTIMIZERS, build_optimizer

TOL = 1e-6


# ---------------------------------------------------------------------------------------------------------
# the loss a stage builds from its TrainConfig
# ---------------------------------------------------------------------------------------------------------

def paper_loss(features: torch.Tensor, labels: torch.Tensor | None, tau: float, scale: float,
               variant: str) -> torch.Tensor:
    """Eq. 2 (``out``) / Eq. 3 (``in``) of the paper as written: a loop over anchors i in I, positives
    p in P(i) and the contrast set A(i) = I minus i, every view an anchor, times ``scale`` (tau / tau_b or 1),
    averaged over anchors with a positive. ``labels=None``: each sample its own class (SimCLR)."""
    batch, n_views, _ = features.shape
    z = [[features[b, v] / torch.sqrt((features[b, v] ** 2).sum()) for v in range(n_views)] for b in range(batch)]
    cls = [int(labels[b]) if labels is not None else b for b in range(batch)]
    index = [(b, v) for b in range(batch) for v in range(n_views)]
    per_anchor = []
    for (ib, iv) in index:
        zi = z[ib][iv]
        a_set = [(b, v) for (b, v) in index if (b, v) != (ib, iv)]
        p_set = [(b, v) for (b, v) in a_set if cls[b] == cls[ib]]
        if not p_set:
            continue
        denominator = 0.0
        for (b, v) in a_set:
            denominator = denominator + torch.exp(torch.dot(zi, z[b][v]) / tau)
        if variant == "out":
            total = 0.0
            for (b, v) in p_set:
                total = total + torch.log(torch.exp(torch.dot(zi, z[b][v]) / tau) / denominator)
            per_anchor.append(-scale * total / len(p_set))
        else:
            total = 0.0
            for (b, v) in p_set:
                total = total + torch.exp(torch.dot(zi, z[b][v]) / tau) / denominator
            per_anchor.append(-scale * torch.log(total / len(p_set)))
    return sum(per_anchor) / len(per_anchor)


def _value_and_grad(fn, features: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = features.clone().requires_grad_(True)
    out = fn(x)
    (grad,) = torch.autograd.grad(out, x)
    return float(out.detach()), grad


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(b))


def _grads_close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=TOL, atol=TOL * max(1.0, float(b.abs().max())))


@pytest.fixture(scope="module")
def context() -> RunContext:
    """A real RunContext on a tiny in-memory split (the stage's objective receives its module as an argument,
    so the tests pass ``nn.Identity`` and feed features / logits straight into the objective)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8, generator=gen)
    data = TensorImages(images, np.arange(12) % 3)
    splits = Splits("digits", data, data, data, num_classes=3, in_channels=1, image_size=8, mean=(0.5,), std=(0.5,))
    cfg = TrainConfig(augment="none", augment_path="per_image")
    return RunContext(cfg=cfg, net=Network("resnet-mini", 1, 3), splits=splits, device=torch.device("cpu"), rank=0,
                      world_size=1, crop_size=8, eval_transform=lambda x: x.float(), channels_last=False)


def _stage_objective(ctx: RunContext, cfg: TrainConfig, stage: str):
    built = build_stage(stage, dataclasses.replace(ctx, cfg=cfg), {})
    assert (built.optimizer, built.lr, built.weight_decay, built.epochs) == (
        cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.epochs)
    return built.objective


def _inputs(loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [batch, views, dim] in float64 and labels; classes of 2-3 samples, so |P(i)| >= 3 and the
    two variants differ (simclr uses 3 views, so that |P(i)| = 2 there too: with 2 views they coincide)."""
    gen = torch.Generator().manual_seed(7)
    n_views = 2 if loss == "supcon" else 3
    features = torch.randn(7, n_views, 5, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    return features, labels


#: (temperature, temperature_scaling, base_temperature) -> the factor tau / tau_b the loss carries
SCALINGS = [
    (0.1, True, AUTHORS_BASE_TEMPERATURE),  # the defaults: tau_b = 1, the loss x tau
    (0.5, True, 0.07),  # the PyTorch re-implementation's base
    (0.3, False, 0.07),  # scaling off: factor 1, whatever base_temperature says
]


@pytest.mark.parametrize("method", ["auto", "dense", "blockwise"])
@pytest.mark.parametrize("tau, scaling, base", SCALINGS)
@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("loss", ["supcon", "simclr"])
def test_the_pretrain_stage_trains_the_loss_its_config_names(context, loss, variant, tau, scaling, base, method):
    cfg = TrainConfig(loss=loss, variant=variant, temperature=tau, temperature_scaling=scaling,
                      base_temperature=base, loss_method=method, augment="none", augment_path="per_image")
    features, labels = _inputs(loss)
    target = labels if loss == "supcon" else None  # simclr never sees the labels
    scale = tau / base if scaling else 1.0

    objective = _stage_objective(context, cfg, "pretrain")
    staged = _value_and_grad(lambda x: objective(nn.Identity(), x, labels), features)
    helper = _value_and_grad(lambda x: contrastive_loss(cfg)(x, target), features)
    direct = _value_and_grad(lambda x: SupConLoss(temperature=tau, base_temperature=base if scaling else None,
                                                  variant=variant, method=method)(x, target), features)
    paper = _value_and_grad(lambda x: paper_loss(x, target, tau, scale, variant), features)
    other = "in" if variant == "out" else "out"
    other_paper = float(paper_loss(features, target, tau, scale, other))

    assert abs(paper[0] - other_paper) > 1e3 * TOL, "inputs must tell L_in from L_out"
    for name, (value, grad) in {"stage objective": staged, "contrastive_loss(cfg)": helper,
                                "SupConLoss(...)": direct}.items():
        assert _close(value, paper[0]), (name, value, paper[0], f"{other} would give {other_paper}")
        assert _grads_close(grad, paper[1]), name
    assert _close(staged[0], direct[0]) and _grads_close(staged[1], direct[1])
    built = contrastive_loss(cfg)
    assert (built.variant, built.method, built.temperature) == (variant, method, tau)


def test_l_in_is_at_most_l_out_and_they_differ_on_these_inputs():
    """Jensen: -log(mean of p) <= mean of -log p, equality only when every positive has the same probability."""
    features, labels = _inputs("supcon")
    for target in (labels, None):
        f = features if target is not None else _inputs("simclr")[0]
        out, inn = float(paper_loss(f, target, 0.1, 1.0, "out")), float(paper_loss(f, target, 0.1, 1.0, "in"))
        assert inn < out - 1e-3


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_the_ce_stage_trains_cross_entropy_with_the_configured_label_smoothing(context, smoothing):
    cfg = TrainConfig(loss="ce", label_smoothing=smoothing, augment="none", augment_path="per_image")
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1, 1, 2, 0])

    def by_hand(z):  # (1 - eps) * -log p_y + eps * mean over the K classes of -log p_k, averaged over the batch
        total = 0.0
        for row, y in zip(z, labels):
            log_norm = torch.log(sum(torch.exp(v) for v in row))
            nll = [log_norm - v for v in row]
            total = total + (1 - smoothing) * nll[int(y)] + smoothing * sum(nll) / len(nll)
        return total / len(labels)

    objective = _stage_objective(context, cfg, "ce")
    staged = _value_and_grad(lambda x: objective(nn.Identity(), x, labels), logits)
    want = _value_and_grad(by_hand, logits)
    assert _close(staged[0], want[0]) and _grads_close(staged[1], want[1]), (staged[0], want[0])


# ---------------------------------------------------------------------------------------------------------
# one and two steps of every optimizer against its update rule
# ---------------------------------------------------------------------------------------------------------

def _parameters() -> list[torch.Tensor]:
    """A weight matrix, a bias and a BatchNorm-like scale (float64), as a tiny layer would have."""
    gen = torch.Generator().manual_seed(11)
    return [torch.randn(3, 4, generator=gen, dtype=torch.float64),
            torch.randn(3, generator=gen, dtype=torch.float64),
            1.0 + 0.1 * torch.randn(3, generator=gen, dtype=torch.float64)]


def _grads(step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(3, 4, generator=gen, dtype=torch.float64),
            torch.randn(3, generator=gen, dtype=torch.float64),
            torch.randn(3, generator=gen, dtype=torch.float64)]


def sgd_reference(params, grads_per_step, lr, momentum, weight_decay, nesterov, **_):
    """SGD: d = g + wd * w; buffer b = d on the first step, then mu * b + d; the step is b
    (Nesterov: d + mu * b); w -= lr * step. Decay applies to every parameter."""
    params = [p.clone() for p in params]
    buffers = [None] * len(params)
    for grads in grads_per_step:
        for k, (w, g) in enumerate(zip(params, grads)):
            d = g + weight_decay * w
            if momentum:
                buffers[k] = d.clone() if buffers[k] is None else momentum * buffers[k] + d
                d = d + momentum * buffers[k] if nesterov else buffers[k]
            params[k] = w - lr * d
    return params


def lars_reference(params, grads_per_step, lr, momentum, weight_decay, **_):
    """LARS (You et al. 2017) as documented: for a weight (ndim > 1), d = (g + wd * w) scaled by the trust
    ratio eta * ||w|| / (||g|| + wd * ||w|| + eps) with eta = 0.001, eps = 1e-8 (1 when ||w|| or ||g|| is 0);
    bias and BatchNorm parameters (ndim <= 1) take d = g: no decay, no trust ratio. Then momentum SGD:
    b = d first, then mu * b + d; w -= lr * b."""
    eta, eps = 0.001, 1e-8
    params = [p.clone() for p in params]
    buffers = [None] * len(params)
    for grads in grads_per_step:
        for k, (w, g) in enumerate(zip(params, grads)):
            if w.dim() > 1:
                w_norm, g_norm = math.sqrt(float((w * w).sum())), math.sqrt(float((g * g).sum()))
                trust = eta * w_norm / (g_norm + weight_decay * w_norm + eps) if w_norm > 0 and g_norm > 0 else 1.0
                d = (g + weight_decay * w) * trust
            else:
                d = g.clone()
            buffers[k] = d if buffers[k] is None else momentum * buffers[k] + d
            params[k] = w - lr * buffers[k]
    return params


def rmsprop_reference(params, grads_per_step, lr, momentum, weight_decay, rmsprop_eps, **_):
    """RMSProp with the paper's decay rho = 0.9: g += wd * w; v = rho * v + (1 - rho) * g^2 (v starts at 0);
    d = g / (sqrt(v) + eps) (epsilon outside the root, as PyTorch puts it; not centred); with momentum
    b = mu * b + d (b starts at 0) and w -= lr * b, else w -= lr * d."""
    rho = 0.9
    params = [p.clone() for p in params]
    square = [torch.zeros_like(p) for p in params]
    buffers = [torch.zeros_like(p) for p in params]
    for grads in grads_per_step:
        for k, (w, g) in enumerate(zip(params, grads)):
            g = g + weight_decay * w
            square[k] = rho * square[k] + (1 - rho) * g * g
            d = g / (torch.sqrt(square[k]) + rmsprop_eps)
            if momentum:
                buffers[k] = momentum * buffers[k] + d
                d = buffers[k]
            params[k] = w - lr * d
    return params


def adamw_reference(params, grads_per_step, lr, weight_decay, **_):
    """AdamW (Loshchilov and Hutter) with PyTorch's defaults beta = (0.9, 0.999), eps = 1e-8: w *= 1 - lr * wd
    (decoupled decay); m, v moving averages of g and g^2; w -= lr * m_hat / (sqrt(v_hat) + eps)."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    params = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        for k, (w, g) in enumerate(zip(params, grads)):
            w = w * (1 - lr * weight_decay)
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g * g
            m_hat, v_hat = m[k] / (1 - beta1 ** t), v[k] / (1 - beta2 ** t)
            params[k] = w - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return params


REFERENCES = {"sgd": sgd_reference, "lars": lars_reference, "rmsprop": rmsprop_reference, "adamw": adamw_reference}

# (optimizer, build_optimizer keyword arguments); weight decay large enough to move the update well past 1e-6
CASES = [
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=False)),
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=True)),
    ("sgd", dict(lr=0.1, momentum=0.0, weight_decay=0.05, nesterov=True)),  # no momentum: Nesterov is off
    ("lars", dict(lr=2.0, momentum=0.9, weight_decay=0.05)),
    ("lars", dict(lr=2.0, momentum=0.5, weight_decay=0.0)),
    ("rmsprop", dict(lr=0.05, momentum=0.9, weight_decay=0.05)),  # the paper's epsilon 1.0 (the default)
    ("rmsprop", dict(lr=0.05, momentum=0.0, weight_decay=0.05, rmsprop_eps=1e-3)),
    ("adamw", dict(lr=0.01, weight_decay=0.05)),
]


def test_every_registered_optimizer_has_a_reference():
    assert set(OPTIMIZERS) == set(REFERENCES) == {name for name, _ in CASES}


def _run(name: str, kwargs: dict, steps: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    start = _parameters()
    params = [nn.Parameter(p.clone()) for p in start]
    opt = build_optimizer(name, params, **kwargs)
    for step in range(steps):
        for p, g in zip(params, _grads(step)):
            p.grad = g.clone()
        opt.step()
    return start, [p.detach() for p in params]


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_optimizer_steps_follow_the_update_rule(name, kwargs, steps):
    start, got = _run(name, kwargs, steps)
    defaults = dict(momentum=0.9, weight_decay=0.0, nesterov=False, rmsprop_eps=1.0)  # build_optimizer's
    want = REFERENCES[name](start, [_grads(s) for s in range(steps)], **{**defaults, **kwargs})
    for which, w0, g, h in zip(("weight", "bias", "bn scale"), start, got, want):
        moved, expected = g - w0, h - w0  # the update itself, not the parameter, to 1e-6 relative
        assert expected.abs().min() > 0
        assert torch.allclose(moved, expected, rtol=TOL, atol=0), (which, (moved - expected).abs().max().item(),
                                                                   expected.abs().max().item())


def test_lars_decay_and_trust_ratio_move_the_weight_but_not_the_bias():
    """What the LARS reference pins down: the decay (and its sign) changes the weight's step, the bias and
    BatchNorm scale take plain momentum SGD whatever the decay, and the trust ratio shrinks the weight's step."""
    grads = [_grads(0)]
    start = _parameters()
    with_decay = lars_reference(start, grads, lr=1.0, momentum=0.9, weight_decay=0.05)
    flipped = lars_reference(start, grads, lr=1.0, momentum=0.9, weight_decay=-0.05)
    no_decay = lars_reference(start, grads, lr=1.0, momentum=0.9, weight_decay=0.0)
    assert not torch.allclose(with_decay[0] - start[0], flipped[0] - start[0], rtol=1e-3)
    assert torch.equal(with_decay[1], no_decay[1]) and torch.equal(with_decay[2], no_decay[2])
    assert torch.allclose(with_decay[1], start[1] - grads[0][1])  # bias: w - lr * g, no trust ratio
    assert (with_decay[0] - start[0]).abs().max() < 0.01 * grads[0][0].abs().max()  # eta = 0.001 scales it down
    _, got = _run("lars", dict(lr=1.0, momentum=0.9, weight_decay=0.05), 1)
    assert torch.allclose(got[0] - start[0], with_decay[0] - start[0], rtol=TOL, atol=0)


def test_lars_trust_ratio_is_one_for_a_zero_weight():
    params = [nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))]
    opt = build_optimizer("lars", params, lr=0.5, weight_decay=0.05)
    grad = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    params[0].grad = grad.clone()
    opt.step()
    assert torch.allclose(params[0].detach(), -0.5 * grad, rtol=TOL, atol=0)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_training_loop_arguments_from_a_default_config_match_the_reference(name):
    """build_optimizer called as the training loop calls it, with a TrainConfig's defaults (momentum 0.9,
    Nesterov off, RMSProp epsilon 1.0) and weight decay raised so that it shows."""
    cfg = TrainConfig(optimizer=name, weight_decay=0.05, lr=0.05)
    start = _parameters()
    params = [nn.Parameter(p.clone()) for p in start]
    opt = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.nesterov,
                          rmsprop_eps=cfg.rmsprop_eps)
    for step in range(2):
        for p, g in zip(params, _grads(step)):
            p.grad = g.clone()
        opt.step()
    want = REFERENCES[name](start, [_grads(0), _grads(1)], lr=cfg.lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, rmsprop_eps=cfg.rmsprop_eps)
    for w0, p, h in zip(start, params, want):
        assert torch.allclose(p.detach() - w0, h - w0, rtol=TOL, atol=0)


def test_cases_cover_each_optimizer_with_and_without_its_buffers():
    combos = {(n, bool(k.get("momentum", 0.9))) for n, k in CASES}
    assert {("sgd", True), ("sgd", False), ("rmsprop", True), ("rmsprop", False)} <= combos
    assert any(n == "lars" and k["weight_decay"] > 0 for n, k in CASES)


@pytest.mark.parametrize("linear_stage,needed", [("augmented", ("val", "test")), ("cached", ("train", "val", "test")),
                                                 ("lbfgs", ("train", "val", "test"))])
def test_the_linear_stage_reads_precomputed_training_features_unless_it_augments(linear_stage, needed):
    """The augmented read-out encodes each augmented training batch itself; the others read frozen features of
    the training split encoded once (and every read-out evaluates on frozen val and test features)."""
    from supcon_ray.engine.stages import features_needed

    cfg = TrainConfig(linear_stage=linear_stage)
    assert features_needed("linear", cfg) == needed
    assert features_needed("pretrain", cfg) == () and features_needed("ce", cfg) == ()
