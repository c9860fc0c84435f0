"""GPU throughput: training-step views/second and the SupCon loss at a large batch, with peak memory.

Without a CUDA GPU it prints "no GPU" and exits 0. With one it measures:

* **Training steps**, SupCon and CE, for each model (default resnet18 and resnet50, CIFAR stem,
  32x32 RGB), with mixed precision off and on (``amp="auto"``: bf16, or fp16 with a gradient scaler
  where bf16 is unsupported) and channels-last off and on. A step is what the training loop does
  (``supcon_ray.engine``: the project's network, loss, autocast, optimizer and scaler) on synthetic
  images already on the GPU, so data loading and augmentation are not measured. Throughput is in
  views per second: a SupCon sample is two views.
* **The loss** at batch 6144 x 2 views x 128-d (blockwise and dense), forward + backward: median time
  and peak memory above the inputs (``torch.cuda.max_memory_allocated``).

Timings synchronise the device around each timed block and report the median over ``--repeats``
blocks of ``--steps`` steps, after warm-up steps. Kernel selection follows the project default
(``--deterministic``: deterministic cuDNN, no autotuning); ``--no-deterministic`` lets cuDNN
autotune. Results go to ``benchmarks/out/gpu.json`` and a table on stdout.

    python -m benchmarks.gpu
    python -m benchmarks.gpu --models resnet18 --batch 256 --steps 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from .common import print_table, write_json

LOSS_BATCH, LOSS_VIEWS, LOSS_DIM = 6144, 2, 128


def _sync() -> None:
    torch.cuda.synchronize()


def train_step_rate(model: str, loss: str, batch: int, amp: str, channels_last: bool, steps: int, repeats: int,
                    warmup: int) -> dict:
    """Views/second of the project's training step for one setting."""
    from supcon_ray.config import TrainConfig
    from supcon_ray.engine import _amp_context, amp_dtype, contrastive_loss
    from supcon_ray.losses import cross_entropy_loss
    from supcon_ray.models import build_network
    from supcon_ray.optim import build_optimizer

    device = torch.device("cuda")
    cfg = TrainConfig(loss=loss, model=model, batch_size=batch, amp=amp, channels_last=channels_last)
    torch.manual_seed(0)
    net = build_network(model, 3, 10, normalize_representation=cfg.normalize_representation).to(device)
    views = 2 if loss == "supcon" else 1
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    module = net.contrastive() if loss == "supcon" else net.end_to_end()
    objective = contrastive_loss(cfg) if loss == "supcon" else cross_entropy_loss()
    optimizer = build_optimizer("sgd", module.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    autocast, scaler = _amp_context(cfg, device)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch * views, 3, 32, 32, device=device, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device, generator=gen)

    def step() -> None:
        with autocast:
            out = module(x)
            value = objective(out.view(batch, views, -1), y) if loss == "supcon" else objective(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(value).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            value.backward()
            optimizer.step()

    module.train()
    for _ in range(warmup):
        step()
    _sync()
    torch.cuda.reset_peak_memory_stats()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync()
        rates.append(steps * batch * views / (time.perf_counter() - t0))
    dtype = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype(amp, device)]
    return {"model": model, "loss": loss, "batch": batch, "views": views, "amp": dtype, "channels_last": channels_last,
            "views_per_s": statistics.median(rates), "rates": rates,
            "peak_mb": torch.cuda.max_memory_allocated() / 2**20}


def loss_case(method: str, repeats: int) -> dict:
    """Forward + backward of the SupCon loss at batch 6144 x 2 views: median seconds and peak memory."""
    from supcon_ray.losses import SupConLoss

    device = torch.device("cuda")
    gen = torch.Generator(device=device).manual_seed(0)
    feats = torch.randn(LOSS_BATCH, LOSS_VIEWS, LOSS_DIM, device=device, generator=gen)
    labels = torch.randint(0, 10, (LOSS_BATCH,), device=device, generator=gen)
    fn = SupConLoss(0.1, method=method)

    def step() -> None:
        x = feats.clone().requires_grad_(True)
        fn(x, labels).backward()

    step()  # warm-up
    _sync()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        _sync()
        times.append(time.perf_counter() - t0)
    return {"method": method, "batch": LOSS_BATCH, "views": LOSS_VIEWS, "dim": LOSS_DIM,
            "median_s": statistics.median(times), "times_s": times,
            "peak_mb": (torch.cuda.max_memory_allocated() - base) / 2**20}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--losses", nargs="+", default=["supcon", "ce"], choices=["supcon", "ce"])
    p.add_argument("--batch", type=int, default=256, help="samples per step (SupCon steps see twice as many views)")
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks (the median is reported)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", help="output file (default benchmarks/out/gpu.json)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no GPU")
        return 0
    from supcon_ray.engine import _cuda_determinism

    _cuda_determinism(args.deterministic)
    steps, rows = [], []
    for model in args.models:
        for loss in args.losses:
            for amp in ("off", "auto"):
                for channels_last in (False, True):
                    r = train_step_rate(model, loss, args.batch, amp, channels_last, args.steps, args.repeats, args.warmup)
                    steps.append(r)
                    rows.append([model, loss, r["amp"], "yes" if channels_last else "no", r["views_per_s"], r["peak_mb"]])
                    print(f"  {model} {loss} amp={r['amp']} channels_last={channels_last}: "
                          f"{r['views_per_s']:.0f} views/s", flush=True)
                    torch.cuda.empty_cache()
    print()
    print_table(["model", "loss", "precision", "channels-last", "views/s", "peak MB"], rows)
    losses = [loss_case(method, args.repeats) for method in ("blockwise", "dense")]
    print()
    print_table(["loss method", "batch x views", "median s", "peak MB"],
                [[r["method"], f"{r['batch']} x {r['views']}", r["median_s"], r["peak_mb"]] for r in losses])
    write_json("gpu", {"batch": args.batch, "steps": args.steps, "repeats": args.repeats,
                       "deterministic": args.deterministic, "train_steps": steps, "loss": losses}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
