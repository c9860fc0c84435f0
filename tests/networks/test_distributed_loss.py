"""The all-gathered SupCon loss on 2 gloo workers equals one process on the concatenated batch."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from supcon_ray.networks.losses import SupConLoss

SETTINGS = [
    dict(variant="out", method="dense", labels=True, mode="all"),
    dict(variant="out", method="blockwise", labels=True, mode="all"),
    dict(variant="in", method="blockwise", labels=True, mode="one"),
    dict(variant="in", method="dense", labels=False, mode="all"),
    dict(variant="out", method="blockwise", labels=False, mode="all"),
    # bf16 network outputs inside autocast: the loss casts to float32 before the all-gather
    dict(variant="out", method="blockwise", labels=True, mode="all", bf16=True),
    dict(variant="in", method="dense", labels=True, mode="all", bf16=True),
]
WORLD, LOCAL_BATCH, VIEWS, DIM = 2, 6, 2, 5


def _data():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(WORLD * LOCAL_BATCH, VIEWS, DIM, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (WORLD * LOCAL_BATCH,), generator=gen)
    return feats, labels


def _inputs(feats, setting):
    """float64 features, or (bf16 settings) their bf16 rounding."""
    return feats.to(torch.bfloat16) if setting.get("bf16") else feats.clone()


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    feats, labels = _data()
    sl = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    results = []
    for s in SETTINGS:
        local = _inputs(feats[sl], s).requires_grad_(True)
        fn = SupConLoss(0.2, variant=s["variant"], contrast_mode=s["mode"], method=s["method"], block_rows=4)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.get("bf16", False)):
            loss = fn(local, labels[sl] if s["labels"] else None)
        loss.backward()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        results.append((mean_loss / WORLD, local.grad / WORLD))
    # gather=False: each worker contrasts its own batch only
    results.append(SupConLoss(0.2, gather=False)(feats[sl], labels[sl]).detach())
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_gathered_loss_and_gradients_match_single_process(tmp_path):
    mp.start_processes(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    feats, labels = _data()
    for i, s in enumerate(SETTINGS):
        # reference: one process, no autocast, float32 for the bf16 settings (what the loss computes in)
        full = (_inputs(feats, s).float() if s.get("bf16") else feats.clone()).requires_grad_(True)
        fn = SupConLoss(0.2, variant=s["variant"], contrast_mode=s["mode"], method=s["method"])
        loss = fn(full, labels if s["labels"] else None)
        loss.backward()
        atol = 1e-5 if s.get("bf16") else 1e-10
        for rank in range(WORLD):
            got_loss, got_grad = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)[i]
            assert got_loss.dtype == loss.dtype
            assert torch.allclose(got_loss, loss.detach(), atol=atol), (s, got_loss, loss)
            # each worker's value is world_size x its share, so its feature gradient is world_size x
            # the single-process one (DDP's averaging divides by world_size again)
            want = full.grad[rank * LOCAL_BATCH:(rank + 1) * LOCAL_BATCH]
            if s.get("bf16"):  # the gradient reaching bf16 features is rounded to bf16
                want, got_grad = want.to(torch.bfloat16).float(), got_grad.float()
                atol = 1e-2 * want.abs().max().item()
            assert torch.allclose(got_grad, want, atol=atol), s


def test_gather_false_contrasts_each_workers_own_batch_only(tmp_path):
    """The flag is honoured under torch.distributed: without the gather, each worker's loss is the
    single-process loss of its own slice, which differs from the global-batch loss."""
    mp.start_processes(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    feats, labels = _data()
    full = SupConLoss(0.2)(feats, labels)
    for rank in range(WORLD):
        local = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)[-1]
        sl = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        assert torch.allclose(local, SupConLoss(0.2)(feats[sl], labels[sl]), atol=1e-12)
        assert not torch.allclose(local, full)


# ------------------------------------------------------------------- a plugin's contrastive loss, not SupCon

def _pull_push(features, labels):
    """A contrastive loss of the whole batch that is not SupCon: pull same-class views together (mean squared
    distance over same-class pairs), push every pair apart (log-mean-exp of -2 x squared distance)."""
    z = features.reshape(-1, features.shape[-1])
    y = labels.repeat_interleave(features.shape[1])
    d2 = (z[:, None, :] - z[None, :, :]).pow(2).sum(-1)
    same = (y[:, None] == y[None, :]).to(z.dtype)
    return (d2 * same).sum() / same.sum() + torch.logsumexp(-2 * d2.flatten(), 0) - torch.log(torch.tensor(
        float(d2.numel()), dtype=z.dtype))


def _register_pull_push():
    from supcon_ray.plugins import register_loss

    for name, batch in (("pull-push", "global"), ("pull-push-local", "local")):
        register_loss(name, kind="contrastive", batch=batch)(lambda cfg: _pull_push)


def _plugin_model():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3).double()


def _plugin_inputs():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(WORLD * LOCAL_BATCH, VIEWS, 4, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 3, (WORLD * LOCAL_BATCH,), generator=gen)


def _plugin_step(model, objective, x, labels):
    b = x.shape[0]
    z = torch.nn.functional.normalize(model(x.reshape(b * VIEWS, 4)), dim=-1).view(b, VIEWS, -1)
    loss = objective(z, labels)
    loss.backward()
    return loss.detach()


def _plugin_worker(rank, init_file, out_dir):
    from supcon_ray.networks.losses import plugin_objective

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    _register_pull_push()
    x, labels = _plugin_inputs()
    sl = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    out = {}
    for name in ("pull-push", "pull-push-local"):
        model = torch.nn.parallel.DistributedDataParallel(_plugin_model())  # averages gradients, as the loop's
        loss = _plugin_step(model, plugin_objective(name, None), x[sl], labels[sl])
        out[name] = (loss, model.module.weight.grad.clone(), model.module.bias.grad.clone())
    torch.save(out, os.path.join(out_dir, f"plugin{rank}.pt"))
    dist.destroy_process_group()


def test_a_plugin_contrastive_loss_trains_on_the_global_batch_as_one_process_would(tmp_path):
    """2 gloo workers with DDP against one process on the concatenated batch: the loss every worker computes and
    the averaged parameter gradients equal the single-process ones (to 1e-6; float64, so far closer); a plugin
    registered with batch="local" sees its worker's batch only."""
    from supcon_ray.networks.losses import plugin_objective

    mp.start_processes(_plugin_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD,
                       start_method="spawn")
    _register_pull_push()
    x, labels = _plugin_inputs()
    model = _plugin_model()
    loss = _plugin_step(model, plugin_objective("pull-push", None), x, labels)
    worst = 0.0
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"plugin{rank}.pt", weights_only=True)
        got_loss, got_weight, got_bias = got["pull-push"]
        assert torch.allclose(got_loss, loss, rtol=0, atol=1e-6), (got_loss, loss)
        assert torch.allclose(got_weight, model.weight.grad, rtol=0, atol=1e-6)
        assert torch.allclose(got_bias, model.bias.grad, rtol=0, atol=1e-6)
        worst = max(worst, float((got_loss - loss).abs()), float((got_weight - model.weight.grad).abs().max()),
                    float((got_bias - model.bias.grad).abs().max()))
        # batch="local": the worker's own slice, a different loss
        sl = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        own = _plugin_step(_plugin_model(), plugin_objective("pull-push-local", None), x[sl], labels[sl])
        assert torch.allclose(got["pull-push-local"][0], own, atol=1e-12)
        assert not torch.allclose(got["pull-push-local"][0], loss, atol=1e-3)
    print(f"largest difference from one process (loss, weight and bias gradients): {worst:.2e}")


def test_a_plugin_batch_must_be_global_or_local():
    import pytest

    from supcon_ray.plugins import PluginError, register_loss

    with pytest.raises(PluginError, match="batch must be one of: global, local"):
        register_loss("pull-push-odd", kind="contrastive", batch="all")
