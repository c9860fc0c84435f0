"""Whole ``parquet:DIR`` datasets hold labels in memory and read image bytes per row group on access."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from supcon_ray.data.datasets import ParquetImages, load_dataset

ROWS, ROW_GROUP = 40, 8  # five row groups per file
CLASSES, SIZE = 4, 6


def _decode(blob: bytes, mode: str) -> torch.Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        return torch.from_numpy(np.array(im.convert(mode))).reshape(SIZE, SIZE, -1).permute(2, 0, 1)


def _write(directory: Path, grayscale: bool = False, seed: int = 0) -> Path:
    """``train.parquet`` and ``test.parquet`` of random PNGs, ``ROW_GROUP`` rows per row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        blobs, labels = [], []
        for i in range(ROWS):
            shape = (SIZE, SIZE) if grayscale else (SIZE, SIZE, 3)
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buf, format="PNG")
            blobs.append(buf.getvalue())
            labels.append(i % CLASSES)
        table = pa.table({"image": pa.array(blobs, pa.binary()), "label": pa.array(labels, pa.int8())})
        pq.write_table(table, directory / f"{split}.parquet", row_group_size=ROW_GROUP)
    return directory


def _eager(path: Path, mode: str) -> tuple[list[torch.Tensor], np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["image", "label"])
    return [_decode(b, mode) for b in table.column("image").to_pylist()], table.column("label").to_numpy()


@pytest.mark.parametrize("grayscale", [False, True])
def test_random_access_matches_eager_decoding(tmp_path, grayscale):
    path = _write(tmp_path, grayscale) / "train.parquet"
    ds = ParquetImages(path)
    assert ds.mode == ("L" if grayscale else "RGB")
    assert pq_row_groups(path) == ROWS // ROW_GROUP and ds.starts == list(range(0, ROWS + 1, ROW_GROUP))
    images, labels = _eager(path, ds.mode)
    np.testing.assert_array_equal(ds.labels, labels)
    for i in np.random.default_rng(1).permutation(ROWS):
        image, label = ds[int(i)]
        assert image.dtype == torch.uint8 and image.shape == (1 if grayscale else 3, SIZE, SIZE)
        assert torch.equal(image, images[i]) and label == labels[i]
    assert torch.equal(ds[-1][0], images[-1])
    with pytest.raises(IndexError):
        ds[ROWS]


def pq_row_groups(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_row_groups


def test_cache_holds_at_most_cache_size_row_groups(tmp_path):
    ds = ParquetImages(_write(tmp_path) / "train.parquet", cache_size=2)
    for i in (0, ROW_GROUP + 1, 3 * ROW_GROUP + 2):  # rows of row groups 0, 1 and 3
        ds[i]
    assert ds.cached_row_groups() == [1, 3]  # least recently used (0) evicted
    # the image bytes held are those two row groups' rows, and nothing outside the cache holds any
    assert sum(len(ds._cache[g]) for g in ds.cached_row_groups()) == 2 * ROW_GROUP
    image_bytes = (tmp_path / "train.parquet").stat().st_size
    assert len(pickle.dumps(ds)) < image_bytes / 4
    ds[ROW_GROUP + 2]  # a hit refreshes row group 1
    assert ds.cached_row_groups() == [3, 1]


def test_sequential_reads_read_each_row_group_once(tmp_path, monkeypatch):
    ds = ParquetImages(_write(tmp_path) / "train.parquet", cache_size=1)
    reads = []
    real = ds._row_group.__func__

    def counting(self, group):
        if group not in self._cache:
            reads.append(group)
        return real(self, group)

    monkeypatch.setattr(ParquetImages, "_row_group", counting)
    ds._cache.clear()
    for i in range(len(ds)):
        ds[i]
    assert reads == list(range(ROWS // ROW_GROUP))


def test_pickle_drops_file_and_cache(tmp_path):
    ds = ParquetImages(_write(tmp_path) / "train.parquet")
    ds[ROWS - 1]
    assert ds.cached_row_groups()
    state = ds.__getstate__()
    assert state["_file"] is None and not state["_cache"]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.cached_row_groups() == []
    assert torch.equal(copy[5][0], ds[5][0]) and copy[5][1] == ds[5][1]


def test_dataloader_with_two_workers(tmp_path):
    path = _write(tmp_path) / "train.parquet"
    ds = ParquetImages(path)
    images, labels = _eager(path, "RGB")
    loader = DataLoader(ds, batch_size=5, shuffle=False, num_workers=2)
    got_images, got_labels = zip(*[(x, y) for x, y in loader])
    assert torch.equal(torch.cat(got_images), torch.stack(images))
    np.testing.assert_array_equal(torch.cat(got_labels).numpy(), labels)


def test_uniform_size_flag(tmp_path):
    name = f"parquet:{_write(tmp_path)}"
    whole = load_dataset(name, val_fraction=0.25)
    assert whole.uniform_size is False
    assert isinstance(whole.train.dataset, ParquetImages)  # whole dataset stays lazy
    assert load_dataset(name, val_fraction=0.25, image_size=8).uniform_size is True
    subset = load_dataset(name, val_fraction=0.25, train_size=20)
    assert subset.uniform_size is True and subset.image_size == SIZE
    assert load_dataset("digits").uniform_size is True


def test_shared_cifar10_matches_direct_decoding(cifar_parquet):
    import pyarrow.parquet as pq
    from PIL import Image

    splits = load_dataset(f"parquet:{cifar_parquet}")
    assert splits.uniform_size is False and (splits.in_channels, splits.image_size) == (3, 32)
    base, indices = splits.train.dataset, splits.train.indices
    f = pq.ParquetFile(cifar_parquet / "train.parquet")
    assert isinstance(base, ParquetImages) and len(base) == f.metadata.num_rows and f.num_row_groups > 1
    for k in (0, len(indices) // 2, len(indices) - 1):
        row = indices[k]
        group = int(np.searchsorted(base.starts, row, side="right")) - 1
        table = f.read_row_group(group, columns=["image", "label"])
        blob = table.column("image")[row - base.starts[group]].as_py()
        with Image.open(io.BytesIO(blob)) as im:
            expected = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
        image, label = splits.train[k]
        assert torch.equal(image, expected)
        assert label == table.column("label")[row - base.starts[group]].as_py()
    assert len(base.cached_row_groups()) <= base.cache_size
