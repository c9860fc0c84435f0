"""Training throughput: this project's loop versus a minimal hand-written PyTorch loop.

Both train the same network on the same in-memory synthetic 32x32 RGB images (normalisation
only, so augmentation cost does not hide loop overhead), with the same optimizer, batch size and
threads, for ``--batches`` steps per epoch. Each run trains 1 warm-up epoch and ``--epochs`` timed
ones; the two loops alternate for ``--rounds`` rounds (this machine's timings are noisy) and the
median epoch is reported. SupCon steps process two views per sample; throughput is in samples/s
(the training loop's own ``images_per_second`` counts views, so it is divided by 2 for SupCon).

    python -m benchmarks.train_step
    python -m benchmarks.train_step --models resnet-mini --batches 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from .common import print_table, write_json

BATCH = {"resnet-mini": 64, "resnet18": 32}


def _splits(n: int):
    from supcon_ray.data.datasets import Splits, TensorImages

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = np.arange(n) % 10
    ds = TensorImages(images, labels)
    return Splits("synthetic", ds, TensorImages(images[:20], labels[:20]), TensorImages(images[:20], labels[:20]),
                  10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def project_loop(model: str, loss: str, batches: int, epochs: int) -> list[float]:
    from supcon_ray.config import TrainConfig
    from supcon_ray.engine.trainer import Session, Trainer

    bs = BATCH[model]
    splits = _splits(bs * batches)
    seen = []
    cfg = TrainConfig(loss=loss, model=model, dataset="digits", epochs=1 + epochs, batch_size=bs, augment="none",
                      optimizer="sgd", lr=0.01)
    trainer = Trainer(cfg, Session(lambda m, s: None), splits)
    loop = trainer.stage("pretrain" if loss == "supcon" else "ce")
    loop.stage.evaluate = None  # time training only
    loop.fit(0, seen.append)
    # the loop reports images (views) per second; this benchmark compares samples per second
    return [m["images_per_second"] / loop.stage.views for m in seen[1:]]


def hand_loop(model: str, loss: str, batches: int, epochs: int) -> list[float]:
    from supcon_ray.data.augment import MultiView, build_transform
    from supcon_ray.data.datasets import Transformed
    from supcon_ray.networks.losses import SupConLoss
    from supcon_ray.networks.models import build_network

    bs = BATCH[model]
    splits = _splits(bs * batches)
    tf = build_transform("none", 32, splits.mean, splits.std)
    torch.manual_seed(0)
    net = build_network(model, 3, 10)
    if loss == "supcon":
        module, data, crit = net.contrastive(), Transformed(splits.train, MultiView(tf, 2)), SupConLoss(0.1)
    else:
        module, data, crit = net.end_to_end(), Transformed(splits.train, tf), torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loader = DataLoader(data, batch_size=bs, shuffle=True, drop_last=True)
    rates = []
    for _ in range(1 + epochs):
        t0, n = time.perf_counter(), 0
        for x, y in loader:
            if loss == "supcon":
                b = x.shape[0]
                out = crit(module(x.view(b * 2, *x.shape[2:])).view(b, 2, -1), y)
            else:
                out = crit(module(x), y)
            opt.zero_grad(set_to_none=True)
            out.backward()
            opt.step()
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - t0))
    return rates[1:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet-mini", "resnet18"], choices=list(BATCH))
    p.add_argument("--losses", nargs="+", default=["supcon", "ce"], choices=["supcon", "ce"])
    p.add_argument("--batches", type=int, default=None, help="steps per epoch (default 10 for resnet-mini, 4 for resnet18)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per run")
    p.add_argument("--rounds", type=int, default=2, help="alternating runs of each loop")
    p.add_argument("--json", help="output file (default benchmarks/out/train_step.json)")
    args = p.parse_args(argv)
    results, rows = [], []
    for model in args.models:
        n = args.batches or (10 if model == "resnet-mini" else 4)
        for loss in args.losses:
            hand_rates, our_rates = [], []
            for _ in range(args.rounds):
                hand_rates += hand_loop(model, loss, n, args.epochs)
                our_rates += project_loop(model, loss, n, args.epochs)
            hand, ours = statistics.median(hand_rates), statistics.median(our_rates)
            results.append({"model": model, "loss": loss, "batch": BATCH[model], "steps": n,
                            "project_epochs": our_rates, "hand_epochs": hand_rates,
                            "project_samples_per_s": ours, "hand_samples_per_s": hand, "ratio": ours / hand})
            rows.append([model, loss, BATCH[model], ours, hand, ours / hand])
            print(f"  {model} {loss}: project {ours:.1f}/s, hand-written {hand:.1f}/s", flush=True)
    print()
    print_table(["model", "loss", "batch", "project samples/s", "hand-written samples/s", "ratio"], rows)
    write_json("train_step", {"results": results, "threads": torch.get_num_threads()}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
