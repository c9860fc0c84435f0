"""Dataset names, readable without torch: which names a study file may use and how a relative
``parquet:DIR`` / ``imagefolder:DIR`` resolves. :mod:`supcon_ray.data.datasets` loads them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from supcon_ray import registry

#: The dataset forms beside the registered names (:data:`supcon_ray.registry.DATASETS`).
FORMS = ("parquet:DIR", "imagefolder:DIR")
DATASETS = (*registry.DATASETS.names(), *FORMS)


def validate_dataset_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset name (a registered one, plugins' included, or a
    ``parquet:DIR`` / ``imagefolder:DIR`` form), else raise ``ValueError`` listing them."""
    if name in registry.DATASETS:
        return name
    for prefix in ("parquet:", "imagefolder:"):
        if name.startswith(prefix) and len(name) > len(prefix):
            return name
    raise ValueError(f"unknown dataset {name!r}; must be one of: {', '.join((*registry.DATASETS.names(), *FORMS))}")


def absolute_dataset_name(name: str, folder: str | None = None) -> str:
    """``name`` with a relative ``parquet:DIR`` / ``imagefolder:DIR`` made absolute against ``folder``
    (default: the current directory), so a trial that runs in another working directory finds the
    same files. A study resolves against its study file's folder, where files are opened."""
    for prefix in ("parquet:", "imagefolder:"):
        if name.startswith(prefix):
            directory = name[len(prefix):]
            if "://" not in directory and not os.path.isabs(directory):
                return prefix + os.path.abspath(os.path.join(folder or os.getcwd(), directory))
    return name


def missing_files(name: str) -> str | None:
    """What is missing for the (absolute) dataset ``name`` to be read on this machine, or ``None``:
    ``parquet:DIR`` needs ``DIR/train.parquet`` and ``DIR/test.parquet``; ``imagefolder:DIR`` needs
    ``DIR/train/<class>/`` and ``DIR/test/<class>/`` with at least one file each. Built-in names and
    remote locations (``s3://...``) are not checked here (their loaders say what is missing)."""
    for prefix in ("parquet:", "imagefolder:"):
        if not name.startswith(prefix):
            continue
        directory = name[len(prefix):]
        if "://" in directory:
            return None
        if not os.path.isdir(directory):
            return f"{directory} does not exist"
        for split in ("train", "test"):
            if prefix == "parquet:":
                path = os.path.join(directory, f"{split}.parquet")
                if not os.path.isfile(path):
                    return f"{path} does not exist (a parquet dataset needs train.parquet and test.parquet)"
                continue
            path = os.path.join(directory, split)
            classes = [d for d in sorted(os.listdir(path)) if os.path.isdir(os.path.join(path, d))] \
                if os.path.isdir(path) else []
            if not classes:
                return f"{path} has no class folders (an image folder needs {split}/<class>/<image files>)"
            if not any(os.listdir(os.path.join(path, c)) for c in classes):
                return f"{path} holds no images (an image folder needs {split}/<class>/<image files>)"
    return None


@dataclass(frozen=True)
class ImageSizes:
    """What a header scan found: the distinct ``(width, height)`` sizes seen (at most two: the scan stops
    at the second), how many images were read, and whether every image was read."""

    sizes: tuple[tuple[int, int], ...]
    read: int
    complete: bool

    @property
    def uniform(self) -> tuple[int, int] | None:
        """The one size every image has, when the scan read them all and found one."""
        return self.sizes[0] if self.complete and len(self.sizes) == 1 else None


def image_sizes(name: str) -> ImageSizes | None:
    """Every image's size of a local ``parquet:DIR`` / ``imagefolder:DIR`` dataset (train and test), from
    the image headers only (PIL reads no pixels); ``None`` for other names. Stops at the second size
    found, so a dataset of mixed sizes (ImageNet) costs a few files."""
    from PIL import Image

    if not name.startswith(("parquet:", "imagefolder:")) or "://" in name:
        return None
    directory = name.split(":", 1)[1]
    seen: list[tuple[int, int]] = []
    read = 0

    def add(size: tuple[int, int]) -> bool:
        nonlocal read
        read += 1
        if size not in seen:
            seen.append(size)
        return len(seen) > 1

    if name.startswith("imagefolder:"):
        for split in ("train", "test"):
            for root, _, files in sorted(os.walk(os.path.join(directory, split))):
                for f in sorted(files):
                    try:
                        with Image.open(os.path.join(root, f)) as im:
                            if add(im.size):
                                return ImageSizes(tuple(seen), read, False)
                    except OSError:  # not an image: the loader decides what to do with it
                        continue
        return ImageSizes(tuple(seen), read, True)
    import io

    import pyarrow.parquet as pq

    for split in ("train", "test"):
        path = os.path.join(directory, f"{split}.parquet")
        try:
            file = pq.ParquetFile(path)
            for batch in file.iter_batches(columns=["image"], batch_size=1024):
                for blob in batch.column(0).to_pylist():
                    with Image.open(io.BytesIO(blob)) as im:
                        if add(im.size):
                            return ImageSizes(tuple(seen), read, False)
        except (OSError, ValueError, KeyError, TypeError) as err:  # pyarrow's and PIL's errors for unreadable data
            raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); a parquet dataset needs an "
                             "encoded 'image' column and an integer 'label'") from None
    return ImageSizes(tuple(seen), read, True)


#: The training crop of a whole image folder whose images have several sizes (ImageNet's).
MIXED_SIZE_CROP = 224
#: Configuration keys that already say at what size a run sees its images.
SIZE_KEYS = ("crop_size", "image_size", "train_size", "test_size")


def own_size(name: str) -> tuple[int | None, str]:
    """The ``image_size`` a run of the (absolute) dataset ``name`` should use so that it trains at its
    images' own size, and a sentence saying which and why: the side of a ``parquet:`` /
    ``imagefolder:`` dataset whose images all have one size (the shorter side, centre-cropped, when
    they are not square), or ``None`` where the images have several sizes (then training takes the
    :data:`MIXED_SIZE_CROP` crop, as for ImageNet) or the name is not a local folder."""
    found = image_sizes(name)
    if found is None:
        return None, ""
    if found.uniform:
        w, h = found.uniform
        side = min(w, h)
        shape = "" if w == h else f" (not square: the centre {side} x {side})"
        return side, (f"dataset: all {found.read} images are {w} x {h} (read from their headers), so trials train at "
                      f"{side} px{shape}: image_size {side}.")
    if not found.sizes:
        return None, "dataset: no readable image found to size."
    sizes = " and ".join(f"{w} x {h}" for w, h in found.sizes)
    return None, (f"dataset: images have several sizes ({sizes} among the first {found.read}), so trials take the "
                  f"{MIXED_SIZE_CROP} px crop (random resized crops of each image; set base.common.crop_size or "
                  "image_size to choose another).")
