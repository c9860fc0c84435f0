"""Shared fixtures: one Ray instance per test session, and the optional shared CIFAR-10 copy."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

CIFAR_PARQUET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


@pytest.fixture(scope="session")
def cifar_parquet(tmp_path_factory) -> Path:
    """The shared CIFAR-10 copy, or where it is absent a stand-in written in its format (JPEG ``image``,
    ``label``, ``path``; 32x32 RGB, 10 classes, several row groups), so the loader's tests run anywhere."""
    if all((CIFAR_PARQUET / f"{split}.parquet").is_file() for split in ("train", "test")):
        return CIFAR_PARQUET
    warnings.warn(f"shared CIFAR-10 parquet not found at {CIFAR_PARQUET}: the parquet tests read a generated "
                  "stand-in in its format")
    return _cifar_stand_in(tmp_path_factory.mktemp("cifar10-stand-in"))


def _cifar_stand_in(folder: Path) -> Path:
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 1200), ("test", 400)):
        blobs, labels, paths = [], [], []
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
            blobs.append(buf.getvalue())
            labels.append(i % 10)
            paths.append(f"{split}/{i % 10}/{i:05d}.jpg")
        table = pa.table({"image": blobs, "label": pa.array(labels, pa.int8()), "path": paths},
                         metadata={"classes": ",".join(f"class{c}" for c in range(10)), "image_format": "jpeg"})
        pq.write_table(table, folder / f"{split}.parquet", row_group_size=max(1, n // 4))
    return folder


@pytest.fixture(scope="session")
def ray_session():
    """A local 2-CPU Ray instance shared by every test that needs one."""
    from supcon_ray.execution.ray_runtime import init_ray

    import ray

    os.environ.pop("RAY_ADDRESS", None)
    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def no_plugin_names_outlive_a_test():
    """Plugins a test loads register names in this process; each test starts with the built-in ones only."""
    yield
    from supcon_ray import registry
    from supcon_ray.display import forget_display_names

    registry.forget_plugins()
    forget_display_names()
