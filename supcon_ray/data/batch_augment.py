"""A policy applied to a whole batch on its device, every sample drawing its own parameters.

:class:`BatchAugment` interprets the same :class:`~supcon_ray.data.augment.Step` list as the per-image
path (:func:`~supcon_ray.data.augment.build_transform`) and draws, for every sample, exactly what the
per-image torchvision transform would draw for that image: its own crop box, flip, jitter factors
and their order, grayscale, blur sigma, warp field; for AutoAugment its own sub-policy and for
RandAugment its own operations, signs and application coin flips. Continuous operations run as
per-sample tensor arithmetic (affine sampling grids, grouped convolutions, per-sample blends);
AutoAugment / RandAugment group the batch by the drawn (operation, magnitude) and apply
torchvision's own operation to each group, so a sample's output is the per-image path's output
for the same draw.

Randomness comes from the ``torch.Generator`` passed in, on the batch's device: seeded from
(seed, epoch, step), a resumed run repeats its batches exactly.

Input: uint8 ``[N, C, H, W]`` with every image the same size (``crop=True``; the crop is done here)
or already cropped to ``size`` by the loader (``crop=False``: :meth:`loader_crop` gives that per-image
crop). Output: normalised float32 ``[N, C, size, size]``.

Known differences from the per-image path: the resized crop samples bilinearly without
antialiasing (the same result when it enlarges, as it does at CIFAR scale); operations that the
per-image path runs on uint8 images (crop, jitter, blur, warp) run in float here, so values differ
by rounding (at most 1/255 per step) except inside AutoAugment / RandAugment, which get uint8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from supcon_ray.data.augment import PolicyOptions, Step, policy_steps, torchvision_transform

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's (ITU-R 601-2) luma weights


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device) * (high - low) + low


def _coin(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device) < p


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``[N, 1, H, W]`` of RGB (or the one channel of grayscale) images."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor.view(-1, 1, 1, 1) * x + (1 - factor.view(-1, 1, 1, 1)) * other).clamp(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    v, delta = maxc, maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    d = delta.clamp(min=1e-12)
    h = torch.where(maxc == r, ((g - b) / d) % 6, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    return torch.stack((h, s, v), 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    k = lambda n: (n + h * 6) % 6  # noqa: E731
    f = lambda n: v - v * s * (torch.minimum(k(n), 4 - k(n)).clamp(0, 1))  # noqa: E731
    return torch.stack((f(5), f(3), f(1)), 1)


def _masked(x: torch.Tensor, mask: torch.Tensor, fn, *per_sample: torch.Tensor) -> torch.Tensor:
    """``fn(x, *per_sample)`` where ``mask`` holds, ``x`` elsewhere. On CPU only the masked samples are
    computed; on a GPU every sample is and ``torch.where`` picks (no device-to-host sync)."""
    if x.device.type == "cpu":
        idx = mask.nonzero()[:, 0]
        if len(idx) == 0:
            return x
        return x.index_put((idx,), fn(x[idx], *[t[idx] for t in per_sample]))
    return torch.where(mask.view(-1, 1, 1, 1), fn(x, *per_sample), x)


def _brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * f.view(-1, 1, 1, 1)).clamp(0, 1)


def _contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x).mean((1, 2, 3), keepdim=True), f)


def _saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x), f) if x.shape[1] == 3 else x


def _hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    hsv = _rgb_to_hsv(x)
    hsv = torch.stack(((hsv[:, 0] + f.view(-1, 1, 1)) % 1.0, hsv[:, 1], hsv[:, 2]), 1)
    return _hsv_to_rgb(hsv).clamp(0, 1)


def _sample_grid(x: torch.Tensor, grid: torch.Tensor, mode: str, padding: str) -> torch.Tensor:
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)


class BatchAugment:
    """Policy ``name`` for ``size`` x ``size`` crops, normalised with ``mean`` / ``std``, on whole batches."""

    def __init__(self, name: str, size: int, mean: Sequence[float], std: Sequence[float], dataset: str = "",
                 options: PolicyOptions = PolicyOptions(), crop: bool = True, steps: list[Step] | None = None) -> None:
        self.size, self.crop = size, crop
        self.steps = policy_steps(name, size, dataset, options) if steps is None else list(steps)  # steps: a custom policy
        self._crop_steps = [s for s in self.steps if s.kind in ("resized_crop", "padded_crop")]
        self.mean, self.std = tuple(mean), tuple(std)
        # AutoAugment / RandAugment: torchvision's objects hold the tables (sub-policies, op ranges)
        self._tables = {i: torchvision_transform(s, size) for i, s in enumerate(self.steps)
                        if s.kind in ("autoaugment", "randaugment")}

    def loader_crop(self) -> v2.Compose:
        """The per-image crop a loader worker applies when images differ in size (``crop=False``)."""
        return v2.Compose([torchvision_transform(s, self.size) for s in self._crop_steps])

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"BatchAugment takes uint8 [N, C, H, W] batches, got {images.dtype} {tuple(images.shape)}")
        x = images.float().div_(255)
        for i, step in enumerate(self.steps):
            if step.kind in ("resized_crop", "padded_crop") and not self.crop:
                continue
            x = getattr(self, "_" + step.kind)(x, generator, i, **step.params)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"images are {tuple(x.shape[-2:])} after the policy, expected {self.size} x {self.size}: "
                             f"pass crop=False and crop in the loader for images of other sizes")
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    # -- geometry -----------------------------------------------------------------------------
    def _resized_crop(self, x, g, _, scale, ratio):
        n, _, height, width = x.shape
        area = height * width
        tries = 10  # torchvision: up to 10 draws, then a centre crop
        target = area * (torch.rand(n, tries, generator=g, device=g.device) * (scale[1] - scale[0]) + scale[0])
        log_r = torch.rand(n, tries, generator=g, device=g.device) * (math.log(ratio[1]) - math.log(ratio[0])) + math.log(ratio[0])
        w = torch.sqrt(target * log_r.exp()).round()
        h = torch.sqrt(target / log_r.exp()).round()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1, device=x.device))
        in_ratio = width / height
        fw, fh = float(width), float(height)
        if in_ratio < min(ratio):
            fh = float(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            fw = float(round(height * max(ratio)))
        pick = first.clamp(min=0)
        cw = torch.where(first >= 0, w.gather(1, pick[:, None])[:, 0], torch.full((n,), fw, device=x.device))
        ch = torch.where(first >= 0, h.gather(1, pick[:, None])[:, 0], torch.full((n,), fh, device=x.device))
        top = torch.floor(torch.rand(n, generator=g, device=g.device) * (height - ch + 1))
        left = torch.floor(torch.rand(n, generator=g, device=g.device) * (width - cw + 1))
        top = torch.where(first >= 0, top, torch.div(height - ch, 2, rounding_mode="floor"))
        left = torch.where(first >= 0, left, torch.div(width - cw, 2, rounding_mode="floor"))
        frac = (torch.arange(self.size, device=x.device, dtype=x.dtype) + 0.5) / self.size
        gx = (left[:, None] + frac[None] * cw[:, None]) * 2 / width - 1  # [N, S] in grid_sample's units
        gy = (top[:, None] + frac[None] * ch[:, None]) * 2 / height - 1
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)
        return _sample_grid(x, grid, "bilinear", "border")

    def _padded_crop(self, x, g, _, padding):
        n, _, height, width = x.shape
        padded = F.pad(x, (padding,) * 4, mode="reflect")
        oy = torch.randint(0, padded.shape[-2] - self.size + 1, (n,), generator=g, device=g.device)
        ox = torch.randint(0, padded.shape[-1] - self.size + 1, (n,), generator=g, device=g.device)
        rows = (oy[:, None] + torch.arange(self.size, device=x.device))[:, :, None]
        cols = (ox[:, None] + torch.arange(self.size, device=x.device))[:, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)

    def _flip(self, x, g, _, p):
        return torch.where(_coin(len(x), p, g).view(-1, 1, 1, 1), x.flip(-1), x)

    def _rotate(self, x, g, _, p, degrees):
        n = len(x)
        angle = torch.deg2rad(_uniform(n, -degrees, degrees, g)) * _coin(n, p, g)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                             torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return _sample_grid(x, grid, "nearest", "zeros")

    def _warp(self, x, g, _, p, alpha, sigma):
        n, _, height, width = x.shape
        noise = torch.rand(n, 2, height, width, generator=g, device=g.device) * 2 - 1
        k = int(8 * sigma + 1) | 1
        noise = self._gauss(noise, torch.full((n,), sigma, device=x.device), k)
        disp = noise * alpha / torch.tensor([width, height], device=x.device, dtype=x.dtype).view(1, 2, 1, 1)
        base = F.affine_grid(torch.eye(2, 3, device=x.device).expand(n, 2, 3), list(x.shape), align_corners=False)
        grid = base + disp.permute(0, 2, 3, 1)
        return _masked(x, _coin(n, p, g), lambda sub, grd: _sample_grid(sub, grd, "bilinear", "zeros"), grid)

    # -- colour -------------------------------------------------------------------------------
    def _jitter(self, x, g, _, p, brightness, contrast, saturation, hue):
        n = len(x)
        apply = _coin(n, p, g)
        factors = [_uniform(n, max(0.0, 1 - brightness), 1 + brightness, g),
                   _uniform(n, max(0.0, 1 - contrast), 1 + contrast, g),
                   _uniform(n, max(0.0, 1 - saturation), 1 + saturation, g),
                   _uniform(n, -hue, hue, g)]
        order = torch.rand(n, 4, generator=g, device=g.device).argsort(1)  # each sample's own order
        for position in range(4):
            for op, fn in enumerate((_brightness, _contrast, _saturation, _hue)):
                x = _masked(x, apply & (order[:, position] == op), fn, factors[op])
        return x

    def _grayscale(self, x, g, _, p):
        if x.shape[1] == 1:
            return x
        return torch.where(_coin(len(x), p, g).view(-1, 1, 1, 1), _gray(x).expand_as(x), x)

    @staticmethod
    def _gauss(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
        """Separable Gaussian blur, sample n with ``sigma[n]``, reflect padding (as torchvision)."""
        n, c, height, width = x.shape
        half = (kernel - 1) / 2
        t = torch.linspace(-half, half, kernel, device=x.device, dtype=x.dtype)
        k1 = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
        k1 = (k1 / k1.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [N*C, K]
        pad = kernel // 2
        y = F.pad(x.reshape(1, n * c, height, width), (pad, pad, pad, pad), mode="reflect")
        y = F.conv2d(y, k1[:, None, None, :], groups=n * c)
        y = F.conv2d(y, k1[:, None, :, None], groups=n * c)
        return y.reshape(n, c, height, width)

    def _blur(self, x, g, _, p, kernel, sigma):
        n = len(x)
        apply = _coin(n, p, g)
        s = _uniform(n, sigma[0], sigma[1], g)
        return _masked(x, apply, lambda sub, sig: self._gauss(sub, sig, kernel), s)

    # -- AutoAugment / RandAugment: torchvision's operations on groups of equal draws --------------
    def _grouped(self, x: torch.Tensor, table, op: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        """Apply operation ``op[n]`` with ``magnitude[n]`` (op -1: none) to sample n, in uint8."""
        u8 = (x * 255).round().to(torch.uint8)
        names = list(table._AUGMENTATION_SPACE)
        keys = torch.stack((op.double(), magnitude.double()), 1)
        for key in torch.unique(keys[op >= 0], dim=0).tolist():
            mask = (keys[:, 0] == key[0]) & (keys[:, 1] == key[1])
            idx = mask.nonzero()[:, 0]
            out = table._apply_image_or_video_transform(u8[idx], names[int(key[0])], float(key[1]),
                                                        interpolation=table.interpolation, fill=table._fill)
            u8 = u8.index_put((idx,), out)
        return u8.float() / 255

    def _magnitudes(self, table, op: torch.Tensor, level: torch.Tensor, bins: int, height: int, width: int,
                    g: torch.Generator) -> torch.Tensor:
        """The magnitude of each sample's op at magnitude bin ``level``, with a random sign where the op has one."""
        n = len(op)
        out = torch.zeros(n, dtype=torch.float64, device=op.device)
        flip = torch.rand(n, generator=g, device=g.device) <= 0.5
        for j, (fn, signed) in enumerate(table._AUGMENTATION_SPACE.values()):
            values = fn(bins, height, width)
            if values is None:
                continue
            mask = op == j
            m = values.to(op.device, torch.float64)[level.clamp(min=0)]
            if signed:
                m = torch.where(flip, -m, m)
            out = torch.where(mask, m, out)
        return out

    def _randaugment(self, x, g, i, num_ops, magnitude, bins):
        table, n = self._tables[i], len(x)
        ops = len(table._AUGMENTATION_SPACE)
        for _ in range(num_ops):
            op = torch.randint(0, ops, (n,), generator=g, device=g.device)
            level = torch.full((n,), magnitude, device=x.device)
            x = self._grouped(x, table, op, self._magnitudes(table, op, level, bins, x.shape[-2], x.shape[-1], g))
        return x

    def _autoaugment(self, x, g, i, policy):
        table, n = self._tables[i], len(x)
        names = list(table._AUGMENTATION_SPACE)
        subs = table._policies
        chosen = torch.randint(0, len(subs), (n,), generator=g, device=g.device)
        for slot in range(2):
            op = torch.tensor([names.index(s[slot][0]) for s in subs], device=x.device)[chosen]
            prob = torch.tensor([s[slot][1] for s in subs], device=x.device)[chosen]
            level = torch.tensor([s[slot][2] if s[slot][2] is not None else 0 for s in subs], device=x.device)[chosen]
            applied = torch.rand(n, generator=g, device=g.device) <= prob
            op = torch.where(applied, op, torch.full_like(op, -1))
            x = self._grouped(x, table, op, self._magnitudes(table, op, level, 10, x.shape[-2], x.shape[-1], g))
        return x
