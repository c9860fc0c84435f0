"""Forward+backward time and peak memory of the SupCon loss: blockwise versus dense.

Each case runs in a fresh process (so peak memory is that case's alone): median of ``--repeats``
timed runs after one warm-up, 2 views, 128-d features, labels from 10 classes. Implementations:

* ``blockwise``: this project's memory-linear loss (``SupConLoss(method="blockwise")``).
* ``dense``: this project's dense form (one logit matrix, ``method="dense"``).
* ``reference``: a dense implementation written the straightforward way, as widely used public
  code does: tiled masks, logits, exp-logits and log-probabilities, all ``2N x 2N`` and kept for
  backward. (Written here from the paper's Eq. 2, not copied.)

Peak memory on CPU is the growth of the process's peak RSS from just before the first call; on GPU,
``torch.cuda.max_memory_allocated`` minus what the inputs hold.

    python -m benchmarks.loss                      # 256 ... 8192
    python -m benchmarks.loss --batches 256 1024 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from .common import print_table, write_json

IMPLEMENTATIONS = ("blockwise", "dense", "reference")


def reference_supcon(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """L_out the straightforward way: every intermediate is a dense (V*B) x (V*B) tensor."""
    batch, views, _ = features.shape
    features = torch.nn.functional.normalize(features, dim=-1)
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    same = torch.eq(labels.view(-1, 1), labels.view(1, -1)).float().repeat(views, views)
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = torch.ones_like(same) - torch.eye(views * batch, device=features.device)
    positives = same * not_self
    exp_logits = torch.exp(logits) * not_self
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mean_log_prob_pos = (positives * log_prob).sum(1) / positives.sum(1).clamp(min=1)
    return -mean_log_prob_pos.mean()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_case(impl: str, batch: int, repeats: int, device: str) -> dict:
    from supcon_ray.networks.losses import SupConLoss

    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, 2, 128, generator=gen).to(dev)
    labels = torch.randint(0, 10, (batch,), generator=gen).to(dev)
    if impl == "reference":
        fn = reference_supcon
    else:
        fn = SupConLoss(0.1, method=impl)

    def step():
        x = feats.clone().requires_grad_(True)
        fn(x, labels).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    base_rss = _peak_rss_bytes()  # inputs and libraries loaded; the loss has not run yet
    step()  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base) if dev.type == "cuda" else max(0, _peak_rss_bytes() - base_rss)
    return {"impl": impl, "batch": batch, "device": device, "median_s": statistics.median(times),
            "times_s": times, "peak_mb": peak / 2**20}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 2048, 4096, 8192])
    p.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="output file (default benchmarks/out/loss.json)")
    p.add_argument("--case", nargs=2, metavar=("IMPL", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:  # child process: one case, result as JSON on stdout
        impl, batch = args.case[0], int(args.case[1])
        res = run_case(impl, batch, args.repeats, args.device)
        print(json.dumps(res))
        return 0
    results = []
    for batch in args.batches:
        for impl in args.impls:
            cmd = [sys.executable, "-m", "benchmarks.loss", "--case", impl, str(batch), "--repeats", str(args.repeats),
                   "--device", args.device]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                results.append({"impl": impl, "batch": batch, "device": args.device, "error": proc.stderr.strip()[-300:]})
            else:
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"  {impl:9} batch {batch:5}: " + (f"{r['median_s']:.3f} s, {r['peak_mb']:.0f} MB" if "error" not in r else "failed"),
                  flush=True)
    rows = []
    for batch in args.batches:
        by = {r["impl"]: r for r in results if r["batch"] == batch and "error" not in r}
        ref = by.get("reference")
        for impl in args.impls:
            r = by.get(impl)
            if r is None:
                rows.append([batch, impl, "failed", "-", "-", "-"])
                continue
            speedup = ref["median_s"] / r["median_s"] if ref else float("nan")
            mem = r["peak_mb"] / ref["peak_mb"] if ref and ref["peak_mb"] > 0 else float("nan")
            rows.append([batch, impl, r["median_s"], r["peak_mb"], speedup, mem])
    print()
    print_table(["batch", "impl", "median s", "peak MB", "speedup vs ref", "memory vs ref"], rows)
    write_json("loss", {"views": 2, "dim": 128, "repeats": args.repeats, "results": results}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
