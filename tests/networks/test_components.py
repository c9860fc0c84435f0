"""Every model, augmentation, optimizer, schedule and dataset name builds and runs one step."""

import math
import numpy as np
import pytest
import torch

from torchvision.transforms import v2

from supcon_ray.data.augment import POLICIES, MultiView, PolicyOptions, autoaugment_policy, build_transform
from supcon_ray.data.datasets import DataError, load_dataset
from supcon_ray.data.names import validate_dataset_name
from supcon_ray.networks.losses import SupConLoss
from supcon_ray.networks.models import MODELS, build_network
from supcon_ray.networks.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_scheduler


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_model_forward_backward(name, channels):
    net = build_network(name, channels, num_classes=10)
    x = torch.randn(2, channels, 32, 32)
    z = net.contrastive()(x)
    assert z.shape == (2, 128)
    assert torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-5)
    logits = net.end_to_end()(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert net.encoder.stem[0].weight.grad is not None
    if name.endswith("-imagenet"):  # 7x7 stride 2, then a stride-2 max-pool: 224 px / 4 before layer 1
        assert net.encoder.stem[0].kernel_size == (7, 7) and net.encoder.stem[0].stride == (2, 2)
        assert isinstance(net.encoder.stem[-1], torch.nn.MaxPool2d)
        assert net.encoder.stem(torch.randn(1, channels, 224, 224)).shape[-1] == 56
    else:  # the CIFAR stem keeps 32x32 into layer 1
        assert net.encoder.stem[0].kernel_size == (3, 3) and net.encoder.stem[0].stride == (1, 1)


def test_resnet_mini_widths():
    net = build_network("resnet-mini", 3, 10)
    assert net.encoder.out_dim == 128
    assert build_network("resnet50", 3, 10).encoder.out_dim == 2048


def test_unknown_model():
    with pytest.raises(ValueError, match="must be one of: resnet-mini, resnet-micro, resnet18"):
        build_network("vgg", 3, 10)


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("channels,size", [(1, 16), (3, 32)])
def test_augmentation_runs(name, channels, size):
    torch.manual_seed(0)
    tf = build_transform(name, size, [0.5] * channels, [0.25] * channels)
    image = torch.randint(0, 256, (channels, size, size), dtype=torch.uint8)
    out = tf(image)
    assert out.shape == (channels, size, size) and out.dtype == torch.float32
    views = MultiView(tf, 2)(image)
    assert views.shape == (2, channels, size, size)
    if name == "none":
        assert torch.equal(views[0], views[1])
    else:
        assert not torch.equal(views[0], views[1]), "two random views should differ"


def test_unknown_augmentation():
    with pytest.raises(ValueError, match="must be one of: none, basic, simaugment"):
        build_transform("mixup", 32, [0.5], [0.5])


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_optimizer_step_reduces_loss(name, schedule):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    opt = build_optimizer(name, model.parameters(), lr=0.01 if name != "lars" else 1.0, weight_decay=1e-4)
    sched = build_scheduler(opt, schedule, total_steps=50, warmup_steps=5)
    first = None
    for _ in range(50):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    assert loss.item() < first


def test_lars_excludes_bn_and_bias():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))
    opt = build_optimizer("lars", model.parameters(), lr=0.1, weight_decay=1e-4)
    excluded = [g for g in opt.param_groups if g["lars_exclude"]]
    assert len(excluded) == 1 and all(p.ndim == 1 for p in excluded[0]["params"])
    assert excluded[0]["weight_decay"] == 0.0


def test_warmup_cosine_shape():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, "cosine", total_steps=100, warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] < 0.01 and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    # after warm-up, half a cosine over the remaining 90 steps, from 1 towards 0
    want = [0.5 * (1 + math.cos(math.pi * (s - 10) / 90)) for s in range(10, 100)]
    assert lrs[10:] == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("bad", [("adam", "must be one of: sgd, lars"), ])
def test_unknown_optimizer(bad):
    with pytest.raises(ValueError, match=bad[1]):
        build_optimizer(bad[0], [torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def test_digits_splits_are_fixed_disjoint_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert (len(a.train), len(a.val), len(a.test)) == (1293, 144, 360)
    assert a.num_classes == 10 and a.in_channels == 1
    assert list(a.val.indices) == list(b.val.indices)
    assert not set(a.val.indices) & set(a.train.indices)
    val_labels = np.array([a.val[i][1] for i in range(len(a.val))])
    assert np.bincount(val_labels).min() >= 12  # every class present in validation
    image, _ = a.train[0]
    assert image.dtype == torch.uint8 and image.shape == (1, 16, 16)


def test_parquet_dataset(cifar_parquet, tmp_path):
    # the shared CIFAR-10 test split stands in for both splits, to keep the test small
    (tmp_path / "train.parquet").symlink_to(cifar_parquet / "test.parquet")
    (tmp_path / "test.parquet").symlink_to(cifar_parquet / "test.parquet")
    splits = load_dataset(f"parquet:{tmp_path}")
    assert splits.num_classes == 10 and splits.in_channels == 3 and splits.image_size == 32
    image, label = splits.train[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10
    tf = MultiView(build_transform("simaugment", 32, splits.mean, splits.std), 2)
    net = build_network("resnet-mini", 3, 10)
    views = torch.stack([tf(splits.train[i][0]) for i in range(4)])
    z = net.contrastive()(views.view(8, 3, 32, 32)).view(4, 2, -1)
    labels = torch.tensor([splits.train[i][1] for i in range(4)])
    assert labels.tolist() == [label] + [splits.train[i][1] for i in range(1, 4)]
    assert not torch.equal(views[0, 0], views[0, 1])  # two different random views of one image
    loss = SupConLoss()(z, labels)
    loss.backward()
    assert torch.isfinite(loss) and net.encoder.stem[0].weight.grad.abs().sum() > 0  # the images' loss trains the stem


def _tiny_parquet(tmp_path, per_class: int = 12, size: int = 12):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    for split in ("train", "test"):
        blobs, labels = [], []
        for label in range(4):
            for i in range(per_class):
                buf = io.BytesIO()
                Image.fromarray(np.full((size, size, 3), label * 60 + i, dtype=np.uint8)).save(buf, format="PNG")
                blobs.append(buf.getvalue())
                labels.append(label)
        pq.write_table(pa.table({"image": blobs, "label": labels}), tmp_path / f"{split}.parquet")
    return f"parquet:{tmp_path}"


def test_subset_and_resize_are_stratified_fixed_and_in_memory(tmp_path):
    name = _tiny_parquet(tmp_path)
    a = load_dataset(name, val_fraction=0.25, train_size=24, test_size=8, image_size=6)
    b = load_dataset(name, val_fraction=0.25, train_size=24, test_size=8, image_size=6)
    assert (len(a.train), len(a.val), len(a.test)) == (18, 6, 8) and a.image_size == 6
    assert np.bincount([a.test[i][1] for i in range(8)]).tolist() == [2, 2, 2, 2]
    assert np.bincount([a.train[i][1] for i in range(18)] + [a.val[i][1] for i in range(6)]).tolist() == [6] * 4
    assert a.train[0][0].shape == (3, 6, 6) and a.train[0][0].dtype == torch.uint8
    same = all(torch.equal(a.train[i][0], b.train[i][0]) for i in range(18))
    assert same and [a.val[i][1] for i in range(6)] == [b.val[i][1] for i in range(6)]
    other = load_dataset(name, val_fraction=0.25, train_size=24, test_size=8, split_seed=1)
    assert [int(other.test[i][0][0, 0, 0]) for i in range(8)] != [int(a.test[i][0][0, 0, 0]) for i in range(8)]
    assert other.image_size == 12  # no image_size: images keep their size


@pytest.mark.parametrize("kwargs, message", [
    ({"train_size": 49}, "train_size=49 is larger than the 48 images"),
    ({"test_size": 3}, "test_size=3 is smaller than the number of classes"),
])
def test_subset_sizes_that_cannot_be_met(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_dataset(_tiny_parquet(tmp_path), **kwargs)


def test_relative_dataset_paths_are_made_absolute(tmp_path, monkeypatch):
    from supcon_ray.config import TrainConfig
    from supcon_ray.data.names import absolute_dataset_name

    monkeypatch.chdir(tmp_path)
    assert TrainConfig(dataset="parquet:data/c10").dataset == f"parquet:{tmp_path}/data/c10"
    assert absolute_dataset_name("imagefolder:/abs/x") == "imagefolder:/abs/x"
    assert absolute_dataset_name("parquet:s3://bucket/x") == "parquet:s3://bucket/x"
    assert absolute_dataset_name("digits") == "digits"


def _image_folder(root, make_image) -> str:
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(10):
                Image.fromarray(make_image(i)).save(d / f"{i}.png")
    return f"imagefolder:{root}"


def test_imagefolder_dataset(tmp_path):
    splits = load_dataset(_image_folder(tmp_path, lambda i: np.full((8, 8, 3), i * 20, dtype=np.uint8)))
    assert splits.num_classes == 2 and splits.image_size == 8 and len(splits.test) == 20


def test_whole_dataset_resized_on_access_keeps_aspect(tmp_path):
    def wide(i):
        image = np.zeros((8, 16, 3), dtype=np.uint8)
        image[:, 4:12] = 200  # the centre square is bright, the sides dark
        return image

    splits = load_dataset(_image_folder(tmp_path, wide), image_size=4)
    image, _ = splits.train[0]
    assert splits.image_size == 4 and image.shape == (3, 4, 4)
    assert image.float().mean() > 150  # a centre crop, not a squeeze of the whole 8x16 image
    assert len(splits.train) + len(splits.val) == 20 and len(splits.test) == 20


def test_cifar_offline_error_says_where(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", data_dir=str(tmp_path))


def test_missing_parquet_dir(tmp_path):
    with pytest.raises(DataError, match="train.parquet"):
        load_dataset(f"parquet:{tmp_path}")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="must be one of: digits, cifar10"):
        validate_dataset_name("mnist")


def _steps(compose) -> list[type]:
    """Transform classes in application order, looking inside RandomApply."""
    out = []
    for t in compose.transforms:
        out += [type(inner) for inner in t.transforms] if isinstance(t, v2.RandomApply) else [type(t)]
    return out


def test_simaugment_follows_the_authors_code():
    # their SIMCLR type: crop, flip, jitter (p 0.8), grayscale (p 0.2); blur at ImageNet scale only; no rotation, no warp
    small = build_transform("simaugment", 32, [0.5] * 3, [0.25] * 3)
    assert _steps(small)[:5] == [v2.RandomResizedCrop, v2.RandomHorizontalFlip, v2.ColorJitter, v2.RandomGrayscale,
                                 v2.ToDtype]
    assert small.transforms[0].scale == (0.2, 1.0)  # their CIFAR preset
    large = build_transform("simaugment", 224, [0.5] * 3, [0.25] * 3)
    assert _steps(large).index(v2.GaussianBlur) > _steps(large).index(v2.RandomGrayscale)
    assert large.transforms[0].scale == (0.08, 1.0) and large.transforms[-3].p == 0.5  # blur with p 0.5
    jitter = small.transforms[2]
    assert jitter.p == 0.8 and jitter.transforms[0].hue == (-0.1, 0.1) and small.transforms[3].p == 0.2
    # the former choices stay reachable as named options
    old = build_transform("simaugment", 32, [0.5] * 3, [0.25] * 3, options=PolicyOptions(rotation=True, warp=0.5))
    assert v2.RandomRotation in _steps(old) and _steps(old).index(v2.ElasticTransform) == len(_steps(old)) - 3


def test_stacked_randaugment_follows_the_authors_order():
    steps = _steps(build_transform("stacked_randaugment", 32, [0.5] * 3, [0.25] * 3))
    assert steps.index(v2.RandomResizedCrop) < steps.index(v2.ColorJitter) < steps.index(v2.RandAugment)
    assert steps.index(v2.RandAugment) < steps.index(v2.RandomGrayscale)


def test_randaugment_magnitude_is_on_the_papers_scale():
    ra = [t for t in build_transform("randaugment", 32, [0.5] * 3, [0.25] * 3).transforms if isinstance(t, v2.RandAugment)][0]
    assert ra.magnitude / (ra.num_magnitude_bins - 1) == 0.9  # 9 of 10
    tv = [t for t in build_transform("randaugment", 32, [0.5] * 3, [0.25] * 3, options=PolicyOptions(randaugment_scale="torchvision")).transforms
          if isinstance(t, v2.RandAugment)][0]
    assert tv.magnitude / (tv.num_magnitude_bins - 1) == 0.3


@pytest.mark.parametrize("dataset,policy", [
    ("cifar10", v2.AutoAugmentPolicy.CIFAR10), ("cifar100", v2.AutoAugmentPolicy.CIFAR10),
    ("parquet:../shared/data/cifar10", v2.AutoAugmentPolicy.CIFAR10), ("parquet:/data/svhn/", v2.AutoAugmentPolicy.SVHN),
    ("digits", v2.AutoAugmentPolicy.IMAGENET), ("imagefolder:/data/imagenet", v2.AutoAugmentPolicy.IMAGENET),
])
def test_autoaugment_policy_follows_the_dataset(dataset, policy):
    assert autoaugment_policy(dataset) == policy
    tf = build_transform("autoaugment", 32, [0.5] * 3, [0.25] * 3, dataset=dataset)
    assert [t.policy for t in tf.transforms if isinstance(t, v2.AutoAugment)] == [policy]


def test_exponential_schedule_and_rmsprop_settings():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer("rmsprop", [param], lr=1.0, momentum=0.9)
    assert opt.param_groups[0]["alpha"] == 0.9 and opt.param_groups[0]["eps"] == 1.0
    sched = build_scheduler(opt, "exponential", total_steps=100, warmup_steps=4, steps_per_epoch=10,
                            decay_rate=0.5, decay_epochs=2.0)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.25) and lrs[3] == pytest.approx(1.0)  # warm-up
    # x0.5 every 2 epochs (20 steps) after warm-up, continuously
    assert lrs[24] == pytest.approx(0.5) and lrs[44] == pytest.approx(0.25) and lrs[14] == pytest.approx(0.5 ** 0.5)


@pytest.mark.parametrize("normalize", [True, False])
def test_representation_normalisation(normalize):
    torch.manual_seed(0)
    net = build_network("resnet-mini", 3, 10, normalize_representation=normalize)
    x = torch.randn(4, 3, 16, 16)
    r = net.representation()(x)
    assert torch.allclose(r.norm(dim=1), torch.ones(4), atol=1e-5) == normalize
    assert torch.allclose(net.linear_probe()(x), net.classifier(r))
    # the projection head sees r; cross-entropy end to end keeps the raw encoder output
    assert torch.allclose(net.contrastive()(x), net.head(r))
    assert torch.allclose(net.end_to_end()(x), net.classifier(net.encoder(x)))
