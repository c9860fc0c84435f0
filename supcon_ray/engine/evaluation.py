"""Measuring a network: top-1 accuracy, and the frozen-encoder features the linear stage trains on.

Features are sharded: rank ``r`` of ``w`` encodes items ``r, r + w, ...`` of a split, under the run's
autocast, into one preallocated tensor on its device (bf16 when the run trains in bf16), so no rank
ever holds all of ImageNet's features. :func:`gather` reassembles every rank's shard in dataset
order where a stage needs all of them (the SGD probe); accuracy on features sums counts over ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

#: Features and labels held in memory on the training device (the cached linear stage).
Cached = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def top1(module: nn.Module, data: Dataset | Cached, batch_size: int, rank: int, world_size: int,
         device: torch.device, shard: bool) -> float:
    """Top-1 accuracy of ``module`` on ``data``: images (split over the ranks when ``shard``) or this
    rank's shard of cached features; with ``shard`` the counts are summed over the ranks."""
    was_training = module.training
    module.eval()
    correct, total = torch.zeros((), dtype=torch.int64, device=device), 0  # counted on the device
    if isinstance(data, tuple):
        features, labels = data
        for start in range(0, len(labels), batch_size):
            chunk = features[start:start + batch_size].float()
            correct += (module(chunk).argmax(1) == labels[start:start + batch_size]).sum()
        total = len(labels)
    else:
        indices = range(rank, len(data), world_size) if shard else range(len(data))
        for x, y in DataLoader(Subset(data, list(indices)), batch_size=batch_size):
            x, y = x.to(device), y.to(device)
            correct += (module(x).argmax(1) == y).sum()
            total += y.numel()
    module.train(was_training)
    counts = torch.stack([correct.double(), torch.tensor(float(total), dtype=torch.float64, device=device)])
    if shard and world_size > 1:
        dist.all_reduce(counts)
    correct, total = counts.tolist()
    return correct / max(total, 1)


@torch.no_grad()
def encode(encoder: nn.Module, dataset: Dataset, rank: int, world_size: int, device: torch.device, autocast,
           dtype: torch.dtype, num_workers: int, batch_size: int = 512) -> Cached:
    """This rank's shard (items ``rank``, ``rank + world_size``, ...) of the frozen-encoder features of
    ``dataset``, encoded under ``autocast`` into one preallocated ``dtype`` tensor on ``device``."""
    encoder.eval()
    indices = list(range(rank, len(dataset), world_size))
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    labels = torch.empty(len(indices), dtype=torch.int64, device=device)
    feats, pos = None, 0
    for x, y in loader:
        with autocast:
            f = encoder(x.to(device, non_blocking=True))
        if feats is None:
            feats = torch.empty(len(indices), f.shape[1], dtype=dtype, device=device)
        feats[pos:pos + len(y)] = f
        labels[pos:pos + len(y)] = y.to(device, non_blocking=True)
        pos += len(y)
    return (feats if feats is not None else torch.empty(0, 0, dtype=dtype, device=device)), labels


def gather(shard: Cached, size: int, world_size: int) -> Cached:
    """Every rank's feature shard of a ``size``-item split, in dataset order (rank r holds items r, r + w, ...)."""
    if world_size == 1:
        return shard
    features, labels = shard
    rows = -(-size // world_size)
    pad = lambda t: torch.cat([t, t.new_zeros(rows - len(t), *t.shape[1:])])  # noqa: E731
    parts_f = [torch.empty(rows, features.shape[1], dtype=features.dtype, device=features.device) for _ in range(world_size)]
    parts_l = [torch.empty(rows, dtype=labels.dtype, device=labels.device) for _ in range(world_size)]
    dist.all_gather(parts_f, pad(features))
    dist.all_gather(parts_l, pad(labels))
    full_f = torch.empty(size, features.shape[1], dtype=features.dtype, device=features.device)
    full_l = torch.empty(size, dtype=labels.dtype, device=labels.device)
    for r in range(world_size):
        count = len(range(r, size, world_size))
        full_f[r::world_size], full_l[r::world_size] = parts_f[r][:count], parts_l[r][:count]
    return full_f, full_l
