"""CIFAR-10 regime: test top-1 against wall time for candidate CPU recipes, CE and SupCon side by side.

A study on this 2-core machine runs two one-core trials at once; so does this benchmark. Each recipe
(training images, resolution, epochs, encoder) is one ``python -m supcon_ray.train`` run per loss with
AutoAugment, a fixed learning rate per loss (CE 0.1; SupCon 1.5, the loss scaled by tau) and the
default converged probe, on a fixed stratified 2,000-image test subset. The table says what a
recipe reaches and what it costs per trial; pick the one a study can afford (docs/results.md).

Needs the shared CIFAR-10 parquet (``../shared/data/cifar10`` next to the checkout, or ``--data``).

    python -m benchmarks.regime
    python -m benchmarks.regime --recipes 10000:16:6 5000:32:6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import print_table, write_json

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
LR = {"ce": 0.1, "supcon": 1.5}
#: train_size:image_size:epochs[:model]
RECIPES = ["3000:16:4", "10000:16:6", "5000:32:6", "20000:16:6", "10000:16:12",
           "20000:16:6:resnet-micro", "10000:16:12:resnet-micro"]


def _command(recipe: str, loss: str, data: Path, test_size: int) -> list[str]:
    train_size, image_size, epochs, *model = recipe.split(":")
    return [sys.executable, "-m", "supcon_ray.train", "--loss", loss, "--dataset", f"parquet:{data}",
            "--model", model[0] if model else "resnet-mini", "--augment", "autoaugment", "--lr", str(LR[loss]),
            "--epochs", epochs, "--train-size", train_size, "--image-size", image_size, "--test-size", str(test_size),
            "--val-fraction", "0.15", "--batch-size", "128", "--json", "--no-progress"]


def run_all(recipes: list[str], data: Path, test_size: int, parallel: int) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    jobs = [(r, loss) for r in recipes for loss in ("ce", "supcon")]
    rows, running = [], []
    while jobs or running:
        while jobs and len(running) < parallel:
            recipe, loss = jobs.pop(0)
            proc = subprocess.Popen(_command(recipe, loss, data, test_size), stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, env=env)
            running.append((recipe, loss, proc, time.perf_counter()))
        time.sleep(0.5)
        for item in list(running):
            recipe, loss, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            out = proc.stdout.read().strip().splitlines()
            result = json.loads(out[-1]) if proc.returncode == 0 and out else {}
            train_size, image_size, epochs, *model = recipe.split(":")
            rows.append({"recipe": recipe, "train_size": int(train_size), "image_size": int(image_size),
                         "epochs": int(epochs), "model": model[0] if model else "resnet-mini", "loss": loss,
                         "lr": LR[loss], "test_top1": result.get("test_top1"), "val_top1": result.get("val_top1"),
                         "status": result.get("status", f"exit {proc.returncode}"),
                         "wall_seconds": time.perf_counter() - t0})
            print(f"  {recipe} {loss}: test_top1 {rows[-1]['test_top1']}  {rows[-1]['wall_seconds']:.0f} s", flush=True)
    return sorted(rows, key=lambda r: (recipes.index(r["recipe"]), r["loss"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", default=RECIPES, help="train_size:image_size:epochs[:model]")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--parallel", type=int, default=2, help="one-core runs at once (a study on 2 cores runs 2)")
    p.add_argument("--json", help="output file (default benchmarks/out/regime.json)")
    args = p.parse_args(argv)
    if not (args.data / "train.parquet").is_file():
        print(f"no CIFAR-10 parquet at {args.data} (train.parquet and test.parquet); pass --data")
        return 2
    rows = run_all(args.recipes, args.data.resolve(), args.test_size, args.parallel)
    print()
    print_table(["train images", "px", "epochs", "model", "loss", "test top-1", "wall s (1 core, 2 at once)"],
                [[r["train_size"], r["image_size"], r["epochs"], r["model"], r["loss"], r["test_top1"], r["wall_seconds"]]
                 for r in rows])
    write_json("regime", {"test_size": args.test_size, "parallel": args.parallel, "lr": LR, "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
