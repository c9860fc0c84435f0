"""Named augmentation policies (the paper's Sec. 4 / Fig. 4a) built from torchvision transforms.

Every policy takes uint8 image tensors ``[C, H, W]`` and returns normalised float tensors.
``AUGMENTATIONS`` maps a name to a builder; :func:`build_transform` is the one way to get one.

* ``none``: normalisation only (evaluation).
* ``basic``: random crop with padding + horizontal flip.
* ``simaugment``: the paper's SimAugment (supplement): SimCLR's random resized crop, flip, colour
  jitter and grayscale, plus a random rotation, Gaussian blur and, last, a random warp.
* ``autoaugment``: crop + flip + AutoAugment's learned policy for the dataset: CIFAR-10's for a
  CIFAR dataset, SVHN's for SVHN, ImageNet's for anything else (:func:`autoaugment_policy`).
* ``randaugment``: crop + flip + RandAugment (2 ops, magnitude 9).
* ``stacked_randaugment``: crop + flip, RandAugment, then colour jitter and grayscale (Tian et al.
  2020, as the paper applies it: RandAugment before the colour distortion).

Where the paper gives no number (rotation range, blur and warp strength), the values are this
module's choices and are stated next to each transform.
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


def _resized_crop_flip(size: int) -> list:
    return [v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True), v2.RandomHorizontalFlip()]


def _colour() -> list:
    return [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]


def _blur(size: int) -> v2.Transform:
    kernel = max(3, (size // 10) | 1)  # odd, about 10% of the side (as in SimCLR)
    return v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5)


def _sim(size: int, dataset: str = "") -> list:
    return (_resized_crop_flip(size)
            + [v2.RandomApply([v2.RandomRotation(15)], p=0.5)]  # +-15 degrees, half the time
            + _colour()
            + [_blur(size),
               # the "sparse image warp" at the end, half the time: a smooth random displacement field
               # (torchvision's elastic transform; alpha 50 moves pixels by about one to two pixels at
               # these smoothness scales; the smoothing kernel must stay smaller than the image)
               v2.RandomApply([v2.ElasticTransform(alpha=50.0, sigma=min(5.0, size / 8))], p=0.5)])


def autoaugment_policy(dataset: str) -> v2.AutoAugmentPolicy:
    """AutoAugment's policy for ``dataset``: CIFAR-10's for CIFAR, SVHN's for SVHN, else ImageNet's.

    For ``parquet:DIR`` and ``imagefolder:DIR`` the folder's name decides (``.../cifar10`` is CIFAR).
    """
    name = dataset.split(":", 1)[-1].rstrip("/").rsplit("/", 1)[-1].lower()
    if "cifar" in name:
        return v2.AutoAugmentPolicy.CIFAR10
    if "svhn" in name:
        return v2.AutoAugmentPolicy.SVHN
    return v2.AutoAugmentPolicy.IMAGENET


#: name -> builder(size, dataset) of the random part of the policy
AUGMENTATIONS: dict[str, Callable[[int, str], list]] = {
    "none": lambda size, dataset: [],
    "basic": lambda size, dataset: _crop_flip(size),
    "simaugment": _sim,
    "autoaugment": lambda size, dataset: _crop_flip(size) + [v2.AutoAugment(autoaugment_policy(dataset))],
    "randaugment": lambda size, dataset: _crop_flip(size) + [v2.RandAugment(num_ops=2, magnitude=9)],
    "stacked_randaugment": lambda size, dataset: (_resized_crop_flip(size) + [v2.RandAugment(num_ops=2, magnitude=9)]
                                                  + _colour()),
}


def build_transform(name: str, size: int, mean: Sequence[float], std: Sequence[float], dataset: str = "") -> v2.Compose:
    """The policy ``name`` for ``size`` x ``size`` images of ``dataset``, normalised with ``mean`` / ``std``."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")
    return v2.Compose(AUGMENTATIONS[name](size, dataset) + _finish(mean, std))


class MultiView:
    """Apply ``transform`` ``n_views`` times independently: returns ``[n_views, C, H, W]``."""

    def __init__(self, transform: Transform, n_views: int = 2) -> None:
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.transform, self.n_views = transform, n_views

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(image) for _ in range(self.n_views)])
