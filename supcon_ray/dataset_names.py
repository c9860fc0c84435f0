"""Dataset names, readable without torch: which names a study file may use and how a relative
``parquet:DIR`` / ``imagefolder:DIR`` resolves. :mod:`supcon_ray.data` loads them."""

from __future__ import annotations

import os

DATASETS = ("digits", "cifar10", "cifar100", "parquet:DIR", "imagefolder:DIR")


def validate_dataset_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset name, else raise ``ValueError`` listing them."""
    if name in ("digits", "cifar10", "cifar100"):
        return name
    for prefix in ("parquet:", "imagefolder:"):
        if name.startswith(prefix) and len(name) > len(prefix):
            return name
    raise ValueError(f"unknown dataset {name!r}; must be one of: {', '.join(DATASETS)}")


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
