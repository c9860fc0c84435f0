"""SupConLoss against a brute-force loop written straight from Eq. 2 and Eq. 3 of the paper."""

import math

import pytest
import torch

from supcon_ray.networks.losses import SupConLoss, cross_entropy_loss


def brute_force(features, labels, temperature, base_temperature, variant, contrast_mode):
    """Per-anchor loop over the paper's definitions, float64, no vectorisation tricks.

    I: every view of every sample. Anchors: all of I ("all") or view 0 of each sample ("one").
    A(i) = I minus the anchor; P(i) = members of A(i) with the anchor's label (SimCLR: same sample).
    The loss is the mean over anchors with |P(i)| > 0.
    """
    batch, n_views, _ = features.shape
    z = features / features.norm(dim=-1, keepdim=True)
    ids = labels if labels is not None else torch.arange(batch)
    samples = [(b, v) for v in range(n_views) for b in range(batch)]
    anchors = [(b, v) for (b, v) in samples if contrast_mode == "all" or v == 0]
    terms = []
    for (ib, iv) in anchors:
        zi = z[ib, iv]
        others = [(b, v) for (b, v) in samples if (b, v) != (ib, iv)]
        positives = [(b, v) for (b, v) in others if ids[b] == ids[ib]]
        if not positives:
            continue
        denom = sum(torch.exp(zi @ z[b, v] / temperature) for (b, v) in others)
        if variant == "out":
            s = sum(torch.log(torch.exp(zi @ z[b, v] / temperature) / denom) for (b, v) in positives)
            terms.append(-(temperature / base_temperature) * s / len(positives))
        else:
            s = sum(torch.exp(zi @ z[b, v] / temperature) / denom for (b, v) in positives)
            terms.append(-(temperature / base_temperature) * torch.log(s / len(positives)))
    if not terms:
        return features.sum() * 0
    return torch.stack(terms).mean()


CASES = [
    # batch, n_views, labels ("rand" / "none" / "singletons"), variant, contrast_mode
    (8, 2, "rand", "out", "all"),
    (8, 2, "rand", "in", "all"),
    (7, 3, "rand", "out", "all"),
    (7, 3, "rand", "in", "one"),
    (6, 2, "none", "out", "all"),
    (6, 2, "none", "in", "one"),
    (5, 1, "rand", "out", "all"),
    (6, 2, "singletons", "out", "all"),
    (9, 2, "single_class", "in", "all"),
]


def _labels(kind, batch, gen):
    if kind == "none":
        return None
    if kind == "singletons":
        return torch.tensor([0, 0, 1, 2, 3, 4])  # classes 1-4 appear once
    if kind == "single_class":
        return torch.zeros(batch, dtype=torch.long)
    return torch.randint(0, 3, (batch,), generator=gen)


@pytest.mark.parametrize("method", ["dense", "blockwise"])
@pytest.mark.parametrize("batch,n_views,label_kind,variant,mode", CASES)
def test_matches_brute_force_values_and_gradients(method, batch, n_views, label_kind, variant, mode):
    gen = torch.Generator().manual_seed(batch * 10 + n_views)
    feats = torch.randn(batch, n_views, 5, generator=gen, dtype=torch.float64)
    labels = _labels(label_kind, batch, gen)
    loss_fn = SupConLoss(temperature=0.3, base_temperature=0.07, variant=variant, contrast_mode=mode,
                         method=method, block_rows=3)  # 3 does not divide the anchor count
    a = feats.clone().requires_grad_(True)
    b = feats.clone().requires_grad_(True)
    got = loss_fn(a, labels)
    want = brute_force(b, labels, 0.3, 0.07, variant, mode)
    got.backward()
    want.backward()
    assert torch.allclose(got, want, rtol=0, atol=1e-10), (got.item(), want.item())
    assert torch.allclose(a.grad, b.grad, rtol=0, atol=1e-10)


def test_float32_blockwise_matches_dense():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(64, 2, 32, generator=gen)
    labels = torch.randint(0, 5, (64,), generator=gen)
    for variant in ("out", "in"):
        a = feats.clone().requires_grad_(True)
        b = feats.clone().requires_grad_(True)
        la = SupConLoss(0.1, variant=variant, method="blockwise", block_rows=17)(a, labels)
        lb = SupConLoss(0.1, variant=variant, method="dense")(b, labels)
        la.backward()
        lb.backward()
        assert abs(la.item() - lb.item()) < 1e-5
        assert torch.allclose(a.grad, b.grad, atol=1e-5)


@pytest.mark.parametrize("method", ["dense", "blockwise"])
def test_gradcheck(method):
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(5, 2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1, 2])
    for variant in ("out", "in"):
        fn = SupConLoss(0.5, variant=variant, method=method, block_rows=2)
        assert torch.autograd.gradcheck(lambda f: fn(f, labels), (feats,))


def test_l_in_is_at_most_l_out():
    # Jensen: log of a mean >= mean of logs, so L_in <= L_out for every anchor and on average.
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        feats = torch.randn(16, 2, 8, generator=gen)
        labels = torch.randint(0, 4, (16,), generator=gen)
        l_in = SupConLoss(0.2, variant="in")(feats, labels)
        l_out = SupConLoss(0.2, variant="out")(feats, labels)
        assert l_in <= l_out + 1e-6


def test_no_positive_anywhere_gives_zero_not_nan():
    feats = torch.randn(4, 1, 3, requires_grad=True)
    loss = SupConLoss()(feats, torch.arange(4))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(feats.grad).all()


def test_simclr_without_labels_is_nt_xent():
    """No labels: SimCLR's NT-Xent, written out by hand. Each of the 2B views is an anchor whose positive
    is its partner view, contrasted with the other 2B - 1 views."""
    torch.manual_seed(3)
    feats = torch.randn(6, 2, 8, dtype=torch.float64)
    z = torch.nn.functional.normalize(feats, dim=-1)
    views = [z[i, v] for v in range(2) for i in range(6)]  # view-major, like the anchors
    total = 0.0
    for a, anchor in enumerate(views):
        partner = (a + 6) % 12
        logits = {j: float(anchor @ views[j]) / 0.1 for j in range(12) if j != a}
        total += -(logits[partner] - math.log(sum(math.exp(v) for v in logits.values())))
    assert math.isclose(SupConLoss(0.1)(feats).item(), total / 12, rel_tol=1e-9)


def test_features_are_normalised_inside():
    feats = torch.randn(6, 2, 8, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    assert torch.allclose(SupConLoss()(feats, labels), SupConLoss()(feats * 7.5, labels))


@pytest.mark.parametrize("shape", [(4, 8), (2, 3, 4, 5)])
def test_bad_feature_shape_names_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\[batch, n_views, dim\]"):
        SupConLoss()(torch.randn(*shape))


def test_label_count_mismatch():
    with pytest.raises(ValueError, match=r"labels must have shape \[batch\] = \[4\]"):
        SupConLoss()(torch.randn(4, 2, 3), torch.arange(5))


@pytest.mark.parametrize("kwargs", [{"temperature": 0}, {"variant": "mid"}, {"contrast_mode": "two"}, {"method": "x"}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SupConLoss(**kwargs)


def test_cross_entropy_baseline():
    """Against the definition, by hand in float64: the mean over samples of -log softmax(logits)[target],
    and with label smoothing eps, (1 - eps) times that plus eps times the mean over classes of -log p."""
    torch.manual_seed(0)
    logits, target = torch.randn(6, 5), torch.tensor([0, 4, 2, 2, 1, 3])
    for eps in (0.0, 0.1, 0.3):
        total = 0.0
        for row, t in zip(logits.double().tolist(), target.tolist()):
            z = max(row)
            log_norm = z + math.log(sum(math.exp(v - z) for v in row))
            nll = log_norm - row[t]
            uniform = sum(log_norm - v for v in row) / len(row)
            total += (1 - eps) * nll + eps * uniform
        assert math.isclose(cross_entropy_loss(eps)(logits, target).item(), total / len(target), rel_tol=1e-5), eps


def test_blockwise_scaled_loss_uses_the_same_gradients():
    # a scaled loss (as under a gradient scaler) takes the fused path with a common factor
    feats = torch.randn(20, 2, 6, dtype=torch.float64)
    labels = torch.randint(0, 4, (20,))
    for variant in ("out", "in"):
        a = feats.clone().requires_grad_(True)
        b = feats.clone().requires_grad_(True)
        (SupConLoss(0.2, variant=variant, method="blockwise", block_rows=7)(a, labels) * 3.0).backward()
        (brute_force(b, labels, 0.2, 0.2, variant, "all") * 3.0).backward()
        assert torch.allclose(a.grad, b.grad, atol=1e-10)


def test_blockwise_logsumexp_with_unexpected_upstream_gradient_recomputes():
    from supcon_ray.networks.losses import _BlockwiseLogSumExp

    gen = torch.Generator().manual_seed(5)
    anchors = torch.randn(9, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    contrast = torch.randn(11, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    self_index = torch.tensor([0, 1, 2, 3, -1, -1, 6, 7, 8])
    upstream = torch.randn(9, dtype=torch.float64, generator=gen)  # not what the caller said to expect
    out = _BlockwiseLogSumExp.apply(anchors, contrast, self_index, None, None, 2.0, 4, torch.ones(9, dtype=torch.float64))
    (out * upstream).sum().backward()
    a2, c2 = anchors.detach().clone().requires_grad_(True), contrast.detach().clone().requires_grad_(True)
    logits = a2 @ c2.T * 2.0
    logits = logits.masked_fill(torch.nn.functional.one_hot(self_index.clamp(min=0), 11).bool() & (self_index >= 0)[:, None], -math.inf)
    want = torch.logsumexp(logits, dim=1)
    (want * upstream).sum().backward()
    assert torch.allclose(out, want.detach(), atol=1e-12)
    assert torch.allclose(anchors.grad, a2.grad, atol=1e-10) and torch.allclose(contrast.grad, c2.grad, atol=1e-10)


@pytest.mark.parametrize("method", ["dense", "blockwise"])
def test_gradients_are_bit_identical_across_calls(method):
    # same-seed runs must be reproducible on CPU: no order-dependent accumulation in backward
    gen = torch.Generator().manual_seed(3)
    feats, labels = torch.randn(128, 2, 32, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    grads = []
    for _ in range(4):
        x = feats.clone().requires_grad_(True)
        SupConLoss(0.1, method=method)(x, labels).backward()
        grads.append(x.grad)
    assert all(torch.equal(grads[0], g) for g in grads[1:])


@pytest.mark.parametrize("method", ["dense", "blockwise"])
@pytest.mark.parametrize("variant", ["out", "in"])
def test_bf16_autocast_gives_the_fp32_loss_and_gradient(method, variant):
    # the same float32 features inside and outside CPU bf16 autocast: the loss computes in float32
    gen = torch.Generator().manual_seed(6)
    feats, labels = torch.randn(96, 2, 64, generator=gen), torch.randint(0, 6, (96,), generator=gen)
    fn = SupConLoss(0.1, variant=variant, method=method, block_rows=40)
    a, b = feats.clone().requires_grad_(True), feats.clone().requires_grad_(True)
    want = fn(a, labels)
    want.backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn(b, labels)
    got.backward()
    assert got.dtype == torch.float32
    assert abs(got.item() - want.item()) <= 1e-4
    assert (b.grad - a.grad).abs().max().item() <= 1e-4


def test_low_precision_features_are_computed_in_float32():
    # bf16 network outputs: same loss and gradient as their float32 values (the blockwise form once
    # failed with "mat1 and mat2 must have the same dtype")
    gen = torch.Generator().manual_seed(7)
    feats = torch.randn(64, 2, 32, generator=gen).to(torch.bfloat16)
    labels = torch.randint(0, 4, (64,), generator=gen)
    for method in ("dense", "blockwise"):
        a = feats.clone().requires_grad_(True)
        b = feats.float().requires_grad_(True)
        la, lb = SupConLoss(0.1, method=method)(a, labels), SupConLoss(0.1, method=method)(b, labels)
        la.backward()
        lb.backward()
        assert la.dtype == torch.float32 and la.item() == lb.item()
        assert a.grad.dtype == torch.bfloat16 and torch.equal(a.grad, b.grad.to(torch.bfloat16))


def test_blockwise_with_a_small_temperature_takes_the_shifted_path():
    # below tau ~ 0.013 exp(logit) could overflow: the row maximum is subtracted first
    from supcon_ray.networks.losses import _needs_shift

    gen = torch.Generator().manual_seed(8)
    feats, labels = torch.randn(48, 2, 16, generator=gen), torch.randint(0, 3, (48,), generator=gen)
    unit = torch.nn.functional.normalize(feats.view(96, 16), dim=1)
    assert _needs_shift(unit / 0.005, unit) and not _needs_shift(unit / 0.1, unit)
    for variant in ("out", "in"):
        a, b = feats.clone().requires_grad_(True), feats.clone().requires_grad_(True)
        la = SupConLoss(0.005, variant=variant, method="blockwise", block_rows=10)(a, labels)
        lb = SupConLoss(0.005, variant=variant, method="dense")(b, labels)
        la.backward()
        lb.backward()
        assert torch.isfinite(la) and abs(la.item() - lb.item()) <= 1e-4 * abs(lb.item())
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_temperature_scaling_takes_one_over_tau_out_of_the_gradient():
    from supcon_ray.config import TrainConfig
    from supcon_ray.engine.stages import contrastive_loss

    gen = torch.Generator().manual_seed(9)
    feats, labels = torch.randn(128, 2, 32, generator=gen, dtype=torch.float64), torch.randint(0, 10, (128,), generator=gen)

    def grad(fn):
        x = feats.clone().requires_grad_(True)
        fn(x, labels).backward()
        return x.grad

    norms = {True: [], False: []}
    for tau in (0.05, 0.1, 0.5):
        scaled = contrastive_loss(TrainConfig(temperature=tau))  # the default: scaled by tau (the authors' code)
        plain = contrastive_loss(TrainConfig(temperature=tau, temperature_scaling=False))
        reference = contrastive_loss(TrainConfig(temperature=tau, base_temperature=0.07))  # the re-implementation
        g_scaled, g_plain = grad(scaled), grad(plain)
        assert torch.allclose(g_scaled, g_plain * tau, rtol=1e-9, atol=1e-14)
        assert torch.allclose(grad(reference), g_plain * (tau / 0.07), rtol=1e-9, atol=1e-14)
        norms[True].append(g_scaled.norm().item())
        norms[False].append(g_plain.norm().item())
    # unscaled, the gradient's size moves by an order of magnitude over these temperatures; scaled, far less
    assert max(norms[False]) / min(norms[False]) > 8
    assert max(norms[True]) / min(norms[True]) < 0.25 * max(norms[False]) / min(norms[False])
