"""Training data loaders whose randomness is a function of (seed, epoch, sample), and their defaults.

Every item's augmentation is drawn from a generator seeded with (run seed, epoch, dataset index):
the sampler hands the worker ``(epoch, index)`` pairs, and :class:`SeededItems` seeds torch's RNG
from them (inside ``torch.random.fork_rng``, so the caller's RNG is untouched). An item therefore
gets the same views whichever worker, how many workers, and in which process it is produced, so
workers can persist across epochs and a resumed run repeats the continuous run's data exactly.

:func:`loader_options` picks what uses the machine: on CUDA, one loader worker per CPU the trial
worker holds beyond the one that runs the training loop (at least one), persistent, with pinned
memory and a prefetch of 4 batches per worker; on CPU, what ``num_workers`` says (default 0: the
training loop's own process, which on a small CPU machine is the fastest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant (golden ratio) for mixing the seed's parts


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of ``epoch`` of a run with ``seed``."""
    h = 0
    for part in (seed, epoch, index):
        h = ((h ^ (part & 0xFFFFFFFFFFFFFFFF)) * _MIX + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


class EpochIndices(Sampler):
    """``(epoch, index)`` pairs in the order of ``sampler`` (a :class:`DistributedSampler`) for the set epoch."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class SeededItems(Dataset):
    """``(transform(image), label)`` of ``base``, indexed by ``(epoch, index)``; the transform's draws
    are seeded by :func:`item_seed` (``transform=None``: the image as stored)."""

    def __init__(self, base: Dataset, transform: Callable[[torch.Tensor], torch.Tensor] | None, seed: int) -> None:
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key
        image, label = self.base[index]
        if self.transform is None:
            return image, label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, epoch, index))
            return self.transform(image), label


def loader_options(num_workers: int | None, cpus_per_worker: float, device: torch.device) -> dict[str, Any]:
    """DataLoader keyword arguments for a training loop on ``device`` holding ``cpus_per_worker`` CPUs."""
    if num_workers is None:
        num_workers = max(1, int(cpus_per_worker) - 1) if device.type == "cuda" else 0
    options: dict[str, Any] = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        options.update(persistent_workers=True, prefetch_factor=4)
    return options


def epoch_loader(dataset: SeededItems, sampler: EpochIndices, batch_size: int, options: dict[str, Any]) -> DataLoader:
    """One loader for every epoch of a stage: call ``sampler.set_epoch`` before iterating it."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **options)
