"""The batched augmentation path draws, per sample, what the per-image path draws per image.

Each test builds both paths from the same policy steps and compares, within one batch, the
distribution of outputs: exactly (a chi-square over the distinct output images) where the draws are
discrete, by two-sample Kolmogorov-Smirnov tests of image statistics where they are continuous. A
batch sharing one draw, a wrong magnitude, a wrong probability or a missing operation each shifts
these distributions far beyond the thresholds.
"""

import collections

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import v2

from supcon_ray.data.augment import PolicyOptions, Step, build_transform, policy_steps, torchvision_transform
from supcon_ray.data.batch_augment import BatchAugment

MEAN, STD = [0.0] * 3, [1.0] * 3  # identity normalisation: outputs are images in [0, 1]


def _image(size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A structured uint8 image: a colour gradient (crops, flips and colour changes all move its statistics)."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                        (1 - ramp)[None, :].expand(size, size)])[:channels]
    noise = torch.rand(channels, size, size, generator=g) * 0.2
    return ((base * 0.8 + noise) * 255).round().to(torch.uint8)


def _both(steps: list[Step], image: torch.Tensor, n: int, seed: int = 0):
    size = image.shape[-1]
    per_image = v2.Compose([torchvision_transform(s, size) for s in steps]
                           + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN[:image.shape[0]], STD[:image.shape[0]])])
    torch.manual_seed(seed)
    a = torch.stack([per_image(image) for _ in range(n)])
    batched = BatchAugment("none", size, MEAN[:image.shape[0]], STD[:image.shape[0]], steps=steps)
    b = batched(image.expand(n, *image.shape).contiguous(), torch.Generator().manual_seed(seed + 1))
    return a, b


def _chi_square_same(a: torch.Tensor, b: torch.Tensor) -> float:
    """p-value that two samples of images come from one discrete distribution (cells under 10 pooled)."""
    key = lambda t: (t * 255).round().to(torch.uint8).numpy().tobytes()  # noqa: E731
    ca, cb = collections.Counter(map(key, a)), collections.Counter(map(key, b))
    cells, rare = [], [0, 0]
    for k in set(ca) | set(cb):
        if ca[k] + cb[k] >= 10:
            cells.append([ca[k], cb[k]])
        else:
            rare[0] += ca[k]
            rare[1] += cb[k]
    if sum(rare) >= 10:
        cells.append(rare)
    assert len(cells) >= 2, "too few distinct outputs to compare"
    return stats.chi2_contingency(np.array(cells).T)[1]


def _ks_same(a: torch.Tensor, b: torch.Tensor) -> float:
    """Smallest KS p-value over image statistics sensitive to crops, flips and colour (Bonferroni over them)."""
    def features(x):
        half = x.shape[-1] // 2
        return [x.mean((1, 2, 3)), x.std((1, 2, 3)), x[..., :half].mean((1, 2, 3)) - x[..., half:].mean((1, 2, 3)),
                x[..., :half, :].mean((1, 2, 3)) - x[..., half:, :].mean((1, 2, 3)),
                x.max(1).values.mean((1, 2)) - x.min(1).values.mean((1, 2)), x[:, 0].mean((1, 2))]
    ps = [stats.ks_2samp(fa.numpy(), fb.numpy()).pvalue for fa, fb in zip(features(a), features(b))]
    return min(ps) * len(ps)


@pytest.mark.parametrize("step", [
    Step("randaugment", {"num_ops": 2, "magnitude": 9, "bins": 11}),
    Step("randaugment", {"num_ops": 2, "magnitude": 9, "bins": 31}),
    Step("autoaugment", {"policy": v2.AutoAugmentPolicy.CIFAR10}),
    Step("autoaugment", {"policy": v2.AutoAugmentPolicy.IMAGENET}),
])
def test_auto_and_randaugment_draw_each_sample_like_the_per_image_path(step):
    a, b = _both([step], _image(6), 6000)
    assert _chi_square_same(a, b) > 1e-3
    # independent draws within the batch (one draw per batch would give one output): many distinct
    # outputs, the commonest (often the unchanged image) as common as per image
    count = lambda x: collections.Counter((t * 255).round().to(torch.uint8).numpy().tobytes() for t in x)  # noqa: E731
    assert len(count(b)) >= 20
    assert abs(max(count(b).values()) - max(count(a).values())) < 0.05 * len(b)


def test_padded_crop_and_flip_are_exact_per_sample():
    a, b = _both(policy_steps("basic", 8), _image(8), 4000)  # 3 x 3 offsets x 2 flips
    assert _chi_square_same(a, b) > 1e-3
    assert len({x.numpy().tobytes() for x in b}) == 18


@pytest.mark.parametrize("name,size,channels", [("simaugment", 32, 3), ("stacked_randaugment", 32, 3),
                                                ("simaugment", 32, 1), ("simaugment", 96, 3)])
def test_continuous_policies_match_the_per_image_distribution(name, size, channels):
    # 96 px: blur on (p 0.5); one channel: jitter's hue and saturation do nothing, grayscale is a no-op
    a, b = _both(policy_steps(name, size, "cifar10"), _image(size, channels), 1500)
    assert _ks_same(a, b) > 1e-3


@pytest.mark.parametrize("options", [PolicyOptions(rotation=True), PolicyOptions(warp=1.0), PolicyOptions(blur=1.0)])
def test_optional_steps_match_the_per_image_distribution(options):
    a, b = _both(policy_steps("simaugment", 32, "cifar10", options), _image(32), 1500)
    assert _ks_same(a, b) > 1e-3


def test_a_wrong_draw_is_detected():
    """The comparisons have power: colour jitter at twice the strength, or a flip that never happens, fails them."""
    steps = policy_steps("simaugment", 32, "cifar10")
    a, _ = _both(steps, _image(32), 1500)
    stronger = [Step(s.kind, {**s.params, "brightness": 0.8, "contrast": 0.8}) if s.kind == "jitter" else s for s in steps]
    _, b = _both(stronger, _image(32), 1500)
    assert _ks_same(a, b) < 1e-3
    a, _ = _both(policy_steps("basic", 8), _image(8), 4000)
    _, b = _both([s if s.kind != "flip" else Step("flip", {"p": 0.0}) for s in policy_steps("basic", 8)], _image(8), 4000)
    assert _chi_square_same(a, b) < 1e-3


def test_batched_draws_repeat_with_the_generator_seed_and_differ_per_sample():
    aug = BatchAugment("simaugment", 32, MEAN, STD, "cifar10")
    x = _image(32).expand(64, 3, 32, 32).contiguous()
    one = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(one, aug(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(one, aug(x, torch.Generator().manual_seed(6)))
    assert len({t.numpy().tobytes() for t in one}) == 64


def test_loader_crop_then_device_rest_for_images_of_other_sizes():
    aug = BatchAugment("simaugment", 16, MEAN, STD, "cifar10", crop=False)
    crop = aug.loader_crop()
    crops = torch.stack([crop(_image(size)) for size in (20, 24, 40, 16)])  # differing sizes, one crop size
    out = aug(crops, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 16, 16)
    with pytest.raises(ValueError, match="crop=False"):
        BatchAugment("simaugment", 16, MEAN, STD, crop=False)(_image(20)[None], torch.Generator())


def test_batched_and_per_image_policies_share_their_steps():
    for name in ("basic", "simaugment", "autoaugment", "randaugment", "stacked_randaugment"):
        per_image = build_transform(name, 32, MEAN, STD, "cifar10")
        assert [type(t) for t in per_image.transforms[:-2]] == [type(torchvision_transform(s, 32)) for s in
                                                                BatchAugment(name, 32, MEAN, STD, "cifar10").steps]
