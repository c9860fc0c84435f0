"""Named augmentation policies (the paper's Sec. 4 / Fig. 4a), as data with two interpreters.

A policy is a list of :class:`Step` s (:func:`policy_steps`); :func:`build_transform` turns it into
a torchvision pipeline applied to one uint8 image ``[C, H, W]`` at a time (the per-image path), and
:class:`supcon_ray.data.batch_augment.BatchAugment` applies the same steps to a whole batch on its device,
every sample and view drawing its own parameters (the batched path). Both return normalised floats.

Where the paper is silent the authors' TensorFlow code decides (google-research ``supcon``:
``preprocessing.py``, ``scripts/configs.sh``); every departure from it is a field of
:class:`PolicyOptions`:

* ``none``: normalisation only (evaluation).
* ``basic``: random crop with reflect padding + horizontal flip (the usual CE crop; no paper policy).
* ``simaugment``: crop + flip, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale with p 0.2,
  Gaussian blur (kernel about 10% of the side, sigma 0.1-2) with p 0.5 above 64 px and never at
  CIFAR scale (the code's per-dataset presets), no rotation and no warp (its ``warp_probability``
  is 0).
* ``autoaugment``: crop + flip + AutoAugment's learned policy for the dataset (CIFAR-10's for a
  CIFAR dataset, SVHN's for SVHN, ImageNet's otherwise: :func:`autoaugment_policy`).
* ``randaugment``: crop + flip + RandAugment, 2 ops at magnitude 9 on the paper's 0-10 scale.
* ``stacked_randaugment``: crop + flip, colour jitter (p 0.8), RandAugment (2 ops, magnitude 10 of
  10), grayscale (p 0.2), then blur as SimAugment has it (their ``_stacked_simclr_randaugment``).

"Crop" is the code's random resized crop for every policy (area 0.2-1 at CIFAR scale, 0.08-1
above 64 px; aspect ratio 3/4-4/3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torchvision.transforms import v2

from supcon_ray import registry

Transform = Callable[[torch.Tensor], torch.Tensor]
#: images at most this side are treated as CIFAR scale by the per-dataset defaults
SMALL_IMAGE = 64
#: the policy names (:func:`policy_steps` gives each one's steps), registered in :mod:`supcon_ray.registry`
#: (readable without torch); each is built here.
POLICIES = registry.POLICIES.names()


@dataclass(frozen=True)
class PolicyOptions:
    """Named departures from the authors' code (the defaults follow it).

    ``crop``: ``resized`` (the code) or ``padded`` (a CIFAR-style crop with reflect padding, this
    project's former choice for AutoAugment / RandAugment). ``blur``: blur probability of SimAugment
    and Stacked RandAugment (None: 0.5 above 64 px, 0 at CIFAR scale). ``warp``: probability of a
    final smooth random warp (torchvision's elastic transform; the code's is 0). ``rotation``:
    SimAugment's former +-15 degree rotation with p 0.5. ``randaugment_scale``: ``paper`` (magnitude
    out of 10) or ``torchvision`` (magnitude out of 30, about a third of the strength).
    """

    crop: Literal["resized", "padded"] = "resized"
    blur: float | None = None
    warp: float = 0.0
    rotation: bool = False
    randaugment_scale: Literal["paper", "torchvision"] = "paper"


@dataclass(frozen=True)
class Step:
    """One random operation of a policy: its ``kind`` and parameters."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


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


def _crop(size: int, options: PolicyOptions) -> list[Step]:
    if options.crop == "padded":
        return [Step("padded_crop", {"padding": max(1, size // 8)}), Step("flip", {"p": 0.5})]
    scale = (0.2, 1.0) if size <= SMALL_IMAGE else (0.08, 1.0)
    return [Step("resized_crop", {"scale": scale, "ratio": (3 / 4, 4 / 3)}), Step("flip", {"p": 0.5})]


def _jitter() -> Step:
    return Step("jitter", {"p": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1})


def _blur(size: int, options: PolicyOptions) -> list[Step]:
    p = options.blur if options.blur is not None else (0.0 if size <= SMALL_IMAGE else 0.5)
    return [Step("blur", {"p": p, "kernel": max(3, (size // 10) | 1), "sigma": (0.1, 2.0)})] if p > 0 else []


def _warp(size: int, options: PolicyOptions) -> list[Step]:
    # alpha 50 moves pixels by about one to two pixels; the smoothing must stay smaller than the image
    return [Step("warp", {"p": options.warp, "alpha": 50.0, "sigma": min(5.0, size / 8)})] if options.warp > 0 else []


def _randaugment(magnitude: int, options: PolicyOptions) -> Step:
    if options.randaugment_scale == "paper":  # magnitude m of 10: bin m of 11 equal steps from 0 to the op's maximum
        return Step("randaugment", {"num_ops": 2, "magnitude": magnitude, "bins": 11})
    return Step("randaugment", {"num_ops": 2, "magnitude": magnitude, "bins": 31})


def policy_steps(name: str, size: int, dataset: str = "", options: PolicyOptions = PolicyOptions()) -> list[Step]:
    """The random steps of policy ``name`` for ``size`` x ``size`` crops of ``dataset``, in order."""
    if name not in POLICIES:
        raise ValueError(f"unknown augmentation {name!r}; must be one of: {', '.join(POLICIES)}")
    if name == "none":
        return []
    if name == "basic":
        return _crop(size, PolicyOptions(crop="padded"))
    rotation = [Step("rotate", {"p": 0.5, "degrees": 15.0})] if options.rotation else []
    if name == "simaugment":
        return (_crop(size, options) + rotation + [_jitter(), Step("grayscale", {"p": 0.2})]
                + _blur(size, options) + _warp(size, options))
    if name == "autoaugment":
        return _crop(size, options) + [Step("autoaugment", {"policy": autoaugment_policy(dataset)})]
    if name == "randaugment":
        return _crop(size, options) + [_randaugment(9, options)]
    return (_crop(size, options) + [_jitter(), _randaugment(10, options), Step("grayscale", {"p": 0.2})]
            + _blur(size, options) + _warp(size, options))


def torchvision_transform(step: Step, size: int) -> v2.Transform:
    """The per-image torchvision transform of ``step`` (the batched path reads AutoAugment's and
    RandAugment's tables from these same objects)."""
    p = step.params
    if step.kind == "resized_crop":
        return v2.RandomResizedCrop(size, scale=p["scale"], ratio=p["ratio"], antialias=True)
    if step.kind == "padded_crop":
        return v2.RandomCrop(size, padding=p["padding"], padding_mode="reflect")
    if step.kind == "flip":
        return v2.RandomHorizontalFlip(p["p"])
    if step.kind == "jitter":
        return v2.RandomApply([v2.ColorJitter(p["brightness"], p["contrast"], p["saturation"], p["hue"])], p=p["p"])
    if step.kind == "grayscale":
        return v2.RandomGrayscale(p["p"])
    if step.kind == "blur":
        return v2.RandomApply([v2.GaussianBlur(p["kernel"], sigma=p["sigma"])], p=p["p"])
    if step.kind == "rotate":
        return v2.RandomApply([v2.RandomRotation(p["degrees"])], p=p["p"])
    if step.kind == "warp":
        return v2.RandomApply([v2.ElasticTransform(alpha=p["alpha"], sigma=p["sigma"])], p=p["p"])
    if step.kind == "autoaugment":
        return v2.AutoAugment(p["policy"])
    if step.kind == "randaugment":
        return v2.RandAugment(num_ops=p["num_ops"], magnitude=p["magnitude"], num_magnitude_bins=p["bins"])
    raise ValueError(f"unknown augmentation step {step.kind!r}")


def build_transform(name: str, size: int, mean: Sequence[float], std: Sequence[float], dataset: str = "",
                    options: PolicyOptions = PolicyOptions()) -> v2.Compose:
    """The policy ``name`` for ``size`` x ``size`` images of ``dataset``, normalised with ``mean`` / ``std``,
    applied to one uint8 image at a time."""
    steps = [torchvision_transform(s, size) for s in policy_steps(name, size, dataset, options)]
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


#: the ImageNet evaluation crop: the shorter side resized to size / 0.875, then a centred size x size crop
EVAL_CROP_FRACTION = 0.875


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float], uniform: bool = True) -> v2.Compose:
    """Evaluation preprocessing: normalisation only when images are stored at the training size
    (``uniform``); otherwise the shorter side to ``size / 0.875`` and a centred ``size`` crop first."""
    resize = [] if uniform else [v2.Resize(round(size / EVAL_CROP_FRACTION), antialias=True), v2.CenterCrop(size)]
    return v2.Compose(resize + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


class MultiView:
    """Apply ``transform`` ``n_views`` times independently: returns ``[n_views, C, H, W]``."""

    def __init__(self, transform: Transform, n_views: int = 2) -> None:
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.transform, self.n_views = transform, n_views

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(image) for _ in range(self.n_views)])
