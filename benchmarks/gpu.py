"""GPU throughput of the engine's own training step, and the SupCon loss at a large batch.

Without a CUDA GPU it prints "no GPU" and exits 0 (``--device cpu`` runs the same code on the CPU, with
gloo for ``--gpus 2``, as a check that the path works; its numbers mean nothing for a GPU). With one:

* **Training steps**: :meth:`supcon_ray.engine.loop.Loop.step`, the step every run takes (batched per-sample
  augmentation on the device, autocast, the fp16 scaler, the optimizer, device-side sums), on
  synthetic uint8 images already on the device, so the loader is not measured (``benchmarks.dataloader``
  measures it). Stems: CIFAR (``resnet50``, 32 px) and ImageNet (``resnet50-imagenet``, 224 px crops
  of 256 px images); SupCon and CE; precision off and ``auto`` (bf16, or fp16 with a scaler where bf16
  is not native); augmentation ``none`` and the study files' ``autoaugment`` and ``simaugment``.
  Throughput is views/s over all GPUs (a SupCon sample is two views), the median of ``--repeats``
  blocks of ``--steps`` steps after warm-up, with peak memory per GPU.
* **2-GPU mode** (``--gpus 2``): one process per GPU (NCCL), DistributedDataParallel and the
  contrastive loss over the global batch, as a 2-worker trial runs; ``--batch`` is per GPU.
* **The loss** at batch 6144 x 2 views x 128-d (blockwise and dense), forward + backward: median time
  and peak memory above the inputs.

Kernel selection follows the project default (deterministic cuDNN); ``--no-deterministic`` lets cuDNN
autotune. Results go to ``benchmarks/out/gpu.json`` and a table on stdout.

    python -m benchmarks.gpu
    python -m benchmarks.gpu --stems cifar --batch 256 --gpus 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from .common import print_table, write_json

STEMS = {"cifar": ("resnet50", 32, 32), "imagenet": ("resnet50-imagenet", 224, 256)}  # model, crop, stored side
LOSS_BATCH, LOSS_VIEWS, LOSS_DIM = 6144, 2, 128


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _splits(stored: int, n: int):
    from supcon_ray.data.datasets import Splits, TensorImages

    images = torch.randint(0, 256, (n, 3, stored, stored), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = np.arange(n) % 10
    small = TensorImages(images[:10], labels[:10])
    return Splits("synthetic", TensorImages(images, labels), small, small, 10, 3, stored, (0.5,) * 3, (0.25,) * 3)


def step_rate(stem: str, model: str | None, loss: str, batch: int, amp: str, augment: str, steps: int, repeats: int,
              warmup: int, device: torch.device, rank: int = 0, world: int = 1) -> dict:
    """Views/second (all ranks) of the engine's step for one setting, and this rank's peak memory."""
    from supcon_ray.config import TrainConfig
    from supcon_ray.engine.trainer import Session, Trainer
    from supcon_ray.engine.precision import amp_dtype

    default_model, crop, stored = STEMS[stem]
    if augment == "none":  # no policy, so no random crop: the loader's centre crop has already made them crop-sized
        stored = crop
    cfg = TrainConfig(loss=loss, model=model or default_model, batch_size=batch * world, amp=amp, augment=augment,
                      augment_path="batched", crop_size=crop, linear_stage="cached")
    splits = _splits(stored, batch * world)
    trainer = Trainer(cfg, Session(lambda m, s: None, rank, world, device), splits)
    loop = trainer.stage("pretrain" if loss == "supcon" else "ce")
    x = splits.train.images[rank * batch:(rank + 1) * batch].to(device)
    y = torch.as_tensor(splits.train.labels[rank * batch:(rank + 1) * batch]).to(device)
    loop.start_epoch()
    for i in range(warmup):
        loop.step(x, y, 0, i)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            loop.step(x, y, 1 + r, i)
        _sync(device)
        rates.append(steps * batch * world * loop.stage.views / (time.perf_counter() - t0))
    dtype = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype(amp, device)]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"stem": stem, "model": cfg.model, "loss": loss, "batch_per_gpu": batch, "gpus": world, "views": loop.stage.views,
            "amp": dtype, "augment": augment, "views_per_s": statistics.median(rates), "rates": rates, "peak_mb": peak}


def _cases(args) -> list[tuple]:
    return [(stem, loss, amp, augment) for stem in args.stems for loss in args.losses for amp in args.amp
            for augment in args.augment]


def _rank_main(rank: int, args, init_file: str, out_dir: str) -> None:
    """One process of the multi-GPU mode: every case, the same order on every rank."""
    import torch.distributed as dist

    cuda = args.device == "cuda"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=args.gpus)
    rows = [step_rate(stem, args.model, loss, args.batch, amp, augment, args.steps, args.repeats, args.warmup, device,
                      rank, args.gpus) for stem, loss, amp, augment in _cases(args)]
    torch.save(rows, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def train_steps(args) -> list[dict]:
    if args.gpus == 1:
        device = torch.device(args.device)
        rows = []
        for stem, loss, amp, augment in _cases(args):
            rows.append(step_rate(stem, args.model, loss, args.batch, amp, augment, args.steps, args.repeats,
                                  args.warmup, device))
            print(f"  {stem} {loss} amp={rows[-1]['amp']} augment={augment}: {rows[-1]['views_per_s']:.0f} views/s", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        return rows
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_rank_main, args=(args, os.path.join(d, "init"), d), nprocs=args.gpus, join=True)
        per_rank = [torch.load(os.path.join(d, f"rank{r}.pt"), weights_only=False) for r in range(args.gpus)]
    rows = per_rank[0]
    for i, row in enumerate(rows):  # every rank timed the same blocks; memory is the largest rank's
        peaks = [p[i]["peak_mb"] for p in per_rank if p[i]["peak_mb"] is not None]
        row["peak_mb"] = max(peaks) if peaks else None
    return rows


def loss_case(method: str, repeats: int) -> dict:
    """Forward + backward of the SupCon loss at batch 6144 x 2 views: median seconds and peak memory."""
    from supcon_ray.networks.losses import SupConLoss

    device = torch.device("cuda")
    gen = torch.Generator(device=device).manual_seed(0)
    feats = torch.randn(LOSS_BATCH, LOSS_VIEWS, LOSS_DIM, device=device, generator=gen)
    labels = torch.randint(0, 10, (LOSS_BATCH,), device=device, generator=gen)
    fn = SupConLoss(0.1, method=method)

    def step() -> None:
        x = feats.clone().requires_grad_(True)
        fn(x, labels).backward()

    step()  # warm-up
    _sync(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"method": method, "batch": LOSS_BATCH, "views": LOSS_VIEWS, "dim": LOSS_DIM,
            "median_s": statistics.median(times), "times_s": times,
            "peak_mb": (torch.cuda.max_memory_allocated() - base) / 2**20}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stems", nargs="+", default=["cifar", "imagenet"], choices=list(STEMS))
    p.add_argument("--model", default=None, help="override the stem's model (e.g. resnet-mini for a CPU check)")
    p.add_argument("--losses", nargs="+", default=["supcon", "ce"], choices=["supcon", "ce"])
    p.add_argument("--amp", nargs="+", default=["off", "auto"], choices=["off", "auto", "bf16", "fp16"])
    p.add_argument("--augment", nargs="+", default=["none", "autoaugment", "simaugment"])
    p.add_argument("--batch", type=int, default=256, help="samples per step per GPU (SupCon steps see twice as many views)")
    p.add_argument("--gpus", type=int, default=1, choices=[1, 2])
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks (the median is reported)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu: run the same code on the CPU as a check (numbers not comparable)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", help="output file (default benchmarks/out/gpu.json)")
    args = p.parse_args(argv)
    if args.device == "cuda" and torch.cuda.device_count() < args.gpus:
        print("no GPU" if not torch.cuda.is_available() else f"only {torch.cuda.device_count()} GPU(s)")
        return 0
    if args.device == "cuda":
        from supcon_ray.engine.precision import cuda_determinism

        cuda_determinism(args.deterministic)
    steps = train_steps(args)
    print()
    print_table(["stem", "loss", "precision", "augment", "GPUs", "views/s", "peak MB/GPU"],
                [[r["stem"], r["loss"], r["amp"], r["augment"], r["gpus"], r["views_per_s"], r["peak_mb"] or "-"]
                 for r in steps])
    losses = [loss_case(m, args.repeats) for m in ("blockwise", "dense")] if args.device == "cuda" else []
    if losses:
        print()
        print_table(["loss method", "batch x views", "median s", "peak MB"],
                    [[r["method"], f"{r['batch']} x {r['views']}", r["median_s"], r["peak_mb"]] for r in losses])
    out = args.json or (None if args.device == "cuda" else os.path.join(tempfile.gettempdir(), "gpu-cpu-check.json"))
    write_json("gpu", {"device": args.device, "gpus": args.gpus, "batch_per_gpu": args.batch, "steps": args.steps,
                       "repeats": args.repeats, "deterministic": args.deterministic, "train_steps": steps, "loss": losses},
               out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
