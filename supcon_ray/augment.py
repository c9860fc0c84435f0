"""Named augmentation policies (the paper's Sec. 4 / Fig. 4a) built from torchvision transforms.

Every policy takes uint8 image tensors ``[C, H, W]`` and returns normalised float tensors.
``AUGMENTATIONS`` maps a name to a builder; :func:`build_transform` is the one way to get one.

* ``none``: normalisation only (evaluation).
* ``basic``: random crop with padding + horizontal flip.
* ``simaugment``: SimCLR's augmentation: random resized crop, flip, colour jitter, grayscale.
* ``autoaugment``: crop + flip + AutoAugment's learned CIFAR-10 policy.
* ``randaugment``: crop + flip + RandAugment (2 ops, magnitude 9).
* ``stacked_randaugment``: SimAugment followed by RandAugment (Tian et al. 2020, as in the paper).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

Transform = Callable[[torch.Tensor], torch.Tensor]


def _finish(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def _crop_flip(size: int) -> list:
    return [v2.RandomCrop(size, padding=max(1, size // 8), padding_mode="reflect"), v2.RandomHorizontalFlip()]


def _sim(size: int) -> list:
    return [
        v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]


AUGMENTATIONS: dict[str, Callable[[int], list]] = {
    "none": lambda size: [],
    "basic": _crop_flip,
    "simaugment": _sim,
    "autoaugment": lambda size: _crop_flip(size) + [v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)],
    "randaugment": lambda size: _crop_flip(size) + [v2.RandAugment(num_ops=2, magnitude=9)],
    "stacked_randaugment": lambda size: _sim(size) + [v2.RandAugment(num_ops=2, magnitude=9)],
}


def build_transform(name: str, size: int, mean: Sequence[float], std: Sequence[float]) -> Transform:
    """The policy ``name`` for ``size`` x ``size`` images normalised with ``mean`` / ``std``."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")
    return v2.Compose(AUGMENTATIONS[name](size) + _finish(mean, std))


class MultiView:
    """Apply ``transform`` ``n_views`` times independently: returns ``[n_views, C, H, W]``."""

    def __init__(self, transform: Transform, n_views: int = 2) -> None:
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.transform, self.n_views = transform, n_views

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(image) for _ in range(self.n_views)])
