"""Shared fixtures: one Ray instance per test session, and the optional shared CIFAR-10 copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CIFAR_PARQUET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


@pytest.fixture(scope="session")
def cifar_parquet() -> Path:
    if not (CIFAR_PARQUET / "test.parquet").is_file():
        pytest.skip(f"shared CIFAR-10 parquet not found at {CIFAR_PARQUET}; parquet loader test skipped")
    return CIFAR_PARQUET


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

    registry.forget_plugins()
