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
