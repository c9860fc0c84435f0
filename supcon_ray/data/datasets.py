"""Datasets by name, each with fixed train / validation / test splits.

Names: ``digits`` (scikit-learn's bundled 8x8 digits, upsampled; fully offline), ``cifar10`` and
``cifar100`` (torchvision; downloaded only when asked), ``parquet:DIR`` (``DIR/train.parquet`` and
``DIR/test.parquet`` with an encoded ``image`` column and an integer ``label``) and
``imagefolder:DIR`` (``DIR/train/<class>/*`` and ``DIR/test/<class>/*``).

Every dataset yields a validation split carved from its training set, stratified and fixed by
``split_seed`` (independent of the run seed, so every run of a study sees the same split).
Anything that selects looks at validation only; the test split is for the one final measurement.
Items are ``(uint8 image tensor [C, H, W], int label)`` before the transform.

Scaled-down studies: ``train_size`` keeps a class-stratified subset of the training pool (before
the validation split is carved from it), ``test_size`` a stratified subset of the test split, and
``image_size`` resizes every image (shorter side to ``image_size``, then a centre square crop).
Subsets are fixed by ``split_seed``, so every run of a study sees the same images, and are decoded
(and resized) once and held in memory, which is what makes CPU studies on JPEG-encoded data
affordable; without a subset, images stay on disk and are decoded (and resized) on access.

Memory contract for a whole ``parquet:DIR`` dataset (ImageNet-sized data, one copy per rank and
per DataLoader worker): only the labels (one int64 per image) are held in memory. Image bytes are
read from disk on access, one row group of the ``image`` column at a time, and each process caches
at most :data:`ROW_GROUP_CACHE` row groups of encoded bytes (so memory is bounded by the row group
size, not the dataset size). Reading in index order hits the cache; reading in a random order reads
about one row group per item, so shuffled training on large row groups wants a sampler that keeps
row groups together (or the dataset written with small row groups). ``Splits.uniform_size`` says
whether every image is known to have the same size (False for whole ``parquet:`` / ``imagefolder:``
datasets without ``image_size``, which must not be stacked into a batch untransformed).
"""

from __future__ import annotations

import bisect
import io
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from supcon_ray.data.names import validate_dataset_name

DIGITS_SIZE = 16  # 8x8 upsampled 2x: enough room for crops, cheap enough for CPU studies
ROW_GROUP_CACHE = 2  # parquet row groups of encoded image bytes cached per process (see ParquetImages)


class DataError(ValueError):
    """A dataset that cannot be found or read; the message says where to put the files."""


@dataclass
class Splits:
    """Train / validation / test datasets of untransformed ``(uint8 [C,H,W], label)`` items."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    uniform_size: bool = True  # every image known to be ``image_size`` square; False: sizes may differ


class TensorImages(Dataset):
    """Images held in memory as one uint8 tensor ``[N, C, H, W]``."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray) -> None:
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


class ParquetImages(Dataset):
    """Images of one parquet file's ``image`` column (JPEG/PNG bytes), read lazily, decoded with PIL.

    Contract: ``labels`` (int64, from the ``label`` column) is the only per-image data held in
    memory. ``self[i]`` reads the row group that holds row ``i`` (column ``image`` only) unless it is
    one of the ``cache_size`` most recently read row groups of this process, then decodes row ``i``
    to a uint8 tensor ``[C, H, W]`` in ``mode`` (``"L"`` or ``"RGB"``). The file is opened lazily, once
    per process; pickling (DataLoader workers, Ray) drops the open file and the cache.
    """

    def __init__(self, path: str | os.PathLike, cache_size: int = ROW_GROUP_CACHE) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.path, self.cache_size = str(path), cache_size
        self._file, self._pid = None, None
        self._cache: OrderedDict[int, object] = OrderedDict()
        try:
            file = self._open()
        except (OSError, ValueError) as err:  # pyarrow: an empty or corrupt file
            raise DataError(f"parquet dataset: {self.path} cannot be read: {err}") from None
        sizes = [file.metadata.row_group(g).num_rows for g in range(file.metadata.num_row_groups)]
        self.starts = [0, *np.cumsum(sizes, dtype=np.int64).tolist()]  # row group g: rows starts[g]..starts[g+1]-1
        self.labels = file.read(columns=["label"]).column("label").to_numpy().astype(np.int64)
        if len(self.labels) != self.starts[-1]:
            raise DataError(f"{self.path}: {len(self.labels)} labels but {self.starts[-1]} rows")
        self.mode = "L" if len(self.labels) and _is_grayscale(self.blob(0)) else "RGB"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image
        from torchvision.transforms.v2.functional import pil_to_tensor

        with Image.open(io.BytesIO(self.blob(i))) as im:
            return pil_to_tensor(im.convert(self.mode)), int(self.labels[i])

    def blob(self, i: int) -> bytes:
        """The encoded bytes of row ``i`` (negative ``i`` counts from the end, as for a list)."""
        n = len(self.labels)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        i = int(i) % n
        group = bisect.bisect_right(self.starts, i) - 1
        return self._row_group(group)[i - self.starts[group]].as_py()

    def cached_row_groups(self) -> list[int]:
        """Row groups whose bytes this process holds, least recently used first."""
        return list(self._cache)

    def _row_group(self, group: int):
        if group in self._cache:
            self._cache.move_to_end(group)
            return self._cache[group]
        column = self._open().read_row_group(group, columns=["image"]).column("image").combine_chunks()
        self._cache[group] = column
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return column

    def _open(self):
        """This process's open file (a forked worker opens its own instead of sharing the parent's)."""
        import pyarrow.parquet as pq

        if self._file is None or self._pid != os.getpid():
            self._file, self._pid, self._cache = pq.ParquetFile(self.path), os.getpid(), OrderedDict()
        return self._file

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_file=None, _pid=None, _cache=OrderedDict())
        return state


class PilToTensor(Dataset):
    """Wrap a torchvision dataset that yields PIL images so it yields uint8 tensors."""

    def __init__(self, base: Dataset, mode: str = "RGB") -> None:
        self.base, self.mode = base, mode
        self.labels = np.asarray(getattr(base, "targets"), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.v2.functional import pil_to_tensor

        image, label = self.base[i]
        return pil_to_tensor(image.convert(self.mode)), int(label)


class Transformed(Dataset):
    """Apply ``transform`` to the image of every item."""

    def __init__(self, base: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[i]
        return self.transform(image), label


class _Labelled(Dataset):
    """``base`` with its labels known up front (stratified splits read them without decoding)."""

    def __init__(self, base: Dataset, labels: np.ndarray) -> None:
        self.base, self.labels = base, labels

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.base[i]


def _labels(ds: Dataset) -> np.ndarray:
    if isinstance(ds, Subset):
        return _labels(ds.dataset)[np.asarray(ds.indices)]
    return ds.labels


def _carve_validation(train: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(train))
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=_labels(train))
    return Subset(train, np.sort(tr).tolist()), Subset(train, np.sort(va).tolist())


def _channel_stats(ds: Dataset, limit: int = 2000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel pixel mean and std over up to ``limit`` images (any sizes: sums per image)."""
    step = max(1, len(ds) // limit)
    total = square = count = 0
    for i in range(0, len(ds), step):
        image = ds[i][0].double() / 255.0
        total = total + image.sum(dim=(1, 2))
        square = square + (image * image).sum(dim=(1, 2))
        count += image.shape[1] * image.shape[2]
    mean = total / count
    std = ((square / count - mean * mean) * count / max(count - 1, 1)).clamp(min=0).sqrt().clamp(min=1e-3)
    return tuple(mean.float().tolist()), tuple(std.float().tolist())


def _stratified_subset(ds: Dataset, size: int, seed: int, key: str) -> Dataset:
    from sklearn.model_selection import train_test_split

    labels = _labels(ds)
    if size > len(labels):
        raise DataError(f"{key}={size} is larger than the {len(labels)} images available")
    if size == len(labels):
        return ds
    classes = len(np.unique(labels))
    if size < classes:
        raise DataError(f"{key}={size} is smaller than the number of classes ({classes})")
    keep, _ = train_test_split(np.arange(len(labels)), train_size=size, random_state=seed, stratify=labels)
    return Subset(ds, np.sort(keep).tolist())


def _square(image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Resize the shorter side to ``image_size``, then centre-crop a square (aspect ratio kept)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])


def _materialize(ds: Dataset, image_size: int | None) -> TensorImages:
    """Decode (and resize) every image of ``ds`` once into one uint8 tensor."""
    resize = _square(image_size) if image_size is not None else None
    images, labels = [], []
    for i in range(len(ds)):
        image, label = ds[i]
        images.append(resize(image) if resize is not None else image)
        labels.append(label)
    return TensorImages(torch.stack(images), np.asarray(labels))


def _digits() -> tuple[Dataset, Dataset]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(images, size=DIGITS_SIZE, mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    idx = np.arange(len(bunch.target))
    tr, te = train_test_split(idx, test_size=0.2, random_state=0, stratify=bunch.target)
    return TensorImages(images[tr], bunch.target[tr]), TensorImages(images[te], bunch.target[te])


def _cifar(name: str, data_dir: str, download: bool) -> tuple[Dataset, Dataset]:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    root = os.path.join(data_dir, name)
    try:
        return (PilToTensor(cls(root, train=True, download=download)),
                PilToTensor(cls(root, train=False, download=download)))
    except RuntimeError as err:
        raise DataError(
            f"{name} not found under {root!r} ({err}). Put torchvision's extracted files there "
            f"(e.g. {root}/cifar-10-batches-py), run once with --download on a machine with internet, "
            f"or use parquet:DIR for a folder holding train.parquet and test.parquet."
        ) from None


def _parquet(directory: str) -> tuple[Dataset, Dataset]:
    """Train and test :class:`ParquetImages` (labels in memory, image bytes read on access)."""
    out = []
    for split in ("train", "test"):
        path = Path(directory) / f"{split}.parquet"
        if not path.is_file():
            raise DataError(f"parquet dataset: {path} does not exist (expected train.parquet and test.parquet in {directory})")
        out.append(ParquetImages(path))
    return out[0], out[1]


def _is_grayscale(blob: bytes) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        return im.mode in ("L", "1", "I;16")


def _imagefolder(directory: str) -> tuple[Dataset, Dataset]:
    from torchvision import datasets

    out = []
    for split in ("train", "test"):
        path = Path(directory) / split
        if not path.is_dir():
            raise DataError(f"imagefolder dataset: {path} does not exist (expected {directory}/train/<class>/* and {directory}/test/<class>/*)")
        out.append(PilToTensor(datasets.ImageFolder(str(path))))
    return out[0], out[1]


def _plugin_dataset(name: str, cfg) -> tuple[Dataset, Dataset]:
    """A plugin's dataset (:func:`supcon_ray.plugins.register_dataset`), held in memory and checked
    against its contract: two sequences of ``(uint8 image [C, H, W], int label)``, every image one size."""
    from supcon_ray import registry
    from supcon_ray.plugins import PluginError

    module, builder = registry.DATASETS.meta(name, "module"), registry.DATASETS.meta(name, "builder")
    if builder is None:
        raise DataError(f"dataset {name!r} has no loader in {__name__}")
    parts = builder(cfg)
    out = []
    for split, items in zip(("train", "test"), parts if isinstance(parts, (tuple, list)) and len(parts) == 2 else ()):
        images, labels = zip(*[(x, int(y)) for x, y in items]) if len(items) else ((), ())
        shapes = {tuple(x.shape) for x in images} if all(isinstance(x, torch.Tensor) for x in images) else set()
        if not images or len(shapes) != 1 or next(iter(shapes)).__len__() != 3 or images[0].dtype != torch.uint8:
            raise PluginError(f"plugin module {module!r}: dataset {name!r}: its {split} split must be a non-empty "
                              f"sequence of (uint8 tensor [channels, H, W], int label), every image one size; got "
                              f"shapes {sorted(shapes)[:3]}")
        out.append(TensorImages(torch.stack(images), np.asarray(labels)))
    if len(out) != 2:
        raise PluginError(f"plugin module {module!r}: dataset {name!r}: its builder must return (train, test)")
    return out[0], out[1]


_KNOWN_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def load_dataset(
    name: str,
    data_dir: str = "./data",
    download: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    train_size: int | None = None,
    test_size: int | None = None,
    image_size: int | None = None,
    cfg=None,
) -> Splits:
    """Load the dataset ``name`` (see :data:`supcon_ray.data.names.DATASETS`) with its fixed splits.

    ``train_size`` / ``test_size``: keep that many images of the training pool / test split,
    stratified by class; ``image_size``: resize every image to ``image_size`` x ``image_size``; ``cfg``:
    the run's TrainConfig, which a plugin's dataset is built from.
    """
    validate_dataset_name(name)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if name == "digits":
        train_full, test = _digits()
    elif name in ("cifar10", "cifar100"):
        train_full, test = _cifar(name, data_dir, download)
    elif name.startswith("parquet:"):
        train_full, test = _parquet(name.split(":", 1)[1])
    elif name.startswith("imagefolder:"):
        train_full, test = _imagefolder(name.split(":", 1)[1])
    else:
        train_full, test = _plugin_dataset(name, cfg)
    if train_size is not None:
        train_full = _stratified_subset(train_full, train_size, split_seed, "train_size")
    if test_size is not None:
        test = _stratified_subset(test, test_size, split_seed, "test_size")
    # whole parquet / imagefolder datasets may mix image sizes until resized or materialised
    uniform_size = not name.startswith(("parquet:", "imagefolder:")) or image_size is not None
    if train_size is not None or test_size is not None:
        train_full, test = _materialize(train_full, image_size), _materialize(test, image_size)
        uniform_size = True  # stacked into one tensor: one size by construction
    elif image_size is not None:  # whole datasets (ImageNet) stay on disk: resize on access
        train_full = _Labelled(Transformed(train_full, _square(image_size)), _labels(train_full))
        test = _Labelled(Transformed(test, _square(image_size)), _labels(test))
    train, val = _carve_validation(train_full, val_fraction, split_seed)
    first = train_full[0][0]
    known = _KNOWN_STATS.get(name) if image_size is None else None
    mean, std = known or _channel_stats(train)
    num_classes = int(max(_labels(train_full).max(), _labels(test).max())) + 1
    return Splits(name, train, val, test, num_classes, int(first.shape[0]), int(first.shape[-1]), mean, std,
                  uniform_size)
