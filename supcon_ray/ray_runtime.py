"""Joining or starting Ray, keeping its log noise down, and checking that resources can fit.

Security defaults for a local instance: token authentication on (``RAY_AUTH_MODE=token``), no
dashboard, and nothing bound beyond what Ray needs on this host.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from .config import ConfigError

#: What a Tune trial's own driver process reserves: tiny, so the workers it launches fit.
TRIAL_DRIVER_CPUS = 0.01


def quiet_ray_environment() -> None:
    """Environment that keeps Ray's own output readable; set before Ray starts."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table lets us choose its columns
    os.environ.setdefault("RAY_TQDM", "0")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Train's controller polls workers every 2 s by default: that much idle time ends every run.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    # Ray copies the driver's environment into workers; torch threads follow the CPU reservation.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def quiet_worker_logs() -> None:
    """Runs in every Ray worker process at start-up (``worker_process_setup_hook``).

    Ray Train 2.60 logs every ``ray.train.report`` at INFO from a logger named after its file
    (so ``LoggingConfig`` does not reach it), and its placement-group cleaner warns every few
    seconds when the state API (part of the dashboard, which we do not start) is absent.
    """
    from ray.train.v2._internal.execution import context
    from ray.train.v2._internal.execution.controller import placement_group_cleaner

    logging.getLogger(context.__file__).setLevel(logging.WARNING)
    logging.getLogger(placement_group_cleaner.__name__).setLevel(logging.ERROR)


def init_ray(address: str | None = None, num_cpus: float | None = None, num_gpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a local instance."""
    already_imported = "ray" in sys.modules
    quiet_ray_environment()
    import ray

    if ray.is_initialized():
        return
    if already_imported:
        # Ray reads RAY_AUTH_MODE when it is imported; refresh it as Ray itself does for token auth.
        from ray._raylet import Config

        Config.initialize("")
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=True, configure_logging=True,
                  runtime_env={"worker_process_setup_hook": "supcon_ray.ray_runtime.quiet_worker_logs"})
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, **kwargs)
    for name in ("ray.train", "ray.tune", "ray.data", "ray._common", "ray.util"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class Capacity:
    """Total CPUs and GPUs of each alive node."""

    nodes: tuple[tuple[float, float], ...]

    @property
    def cpus(self) -> float:
        return sum(c for c, _ in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(g for _, g in self.nodes)

    def describe(self) -> str:
        return f"{self.cpus:g} CPU and {self.gpus:g} GPU over {len(self.nodes)} node(s)"


def cluster_capacity() -> Capacity:
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    return Capacity(tuple((float(r.get("CPU", 0)), float(r.get("GPU", 0))) for r in nodes))


def workers_that_fit(capacity: Capacity, cpus: float, gpus: float, reserved_cpus: float = 0.0) -> int:
    """How many workers of ``cpus``/``gpus`` each fit at once, after ``reserved_cpus`` on one node."""
    total, reserve = 0, reserved_cpus
    for node_cpus, node_gpus in sorted(capacity.nodes, reverse=True):
        node_cpus -= reserve
        reserve = 0.0
        by_cpu = int((node_cpus + 1e-9) // cpus) if cpus > 0 else 10**9
        by_gpu = int((node_gpus + 1e-9) // gpus) if gpus > 0 else 10**9
        total += min(by_cpu, by_gpu)
    return total


def check_fits(workers: int, cpus: float, gpus: float, reserved_cpus: float = 0.0,
               capacity: Capacity | None = None) -> None:
    """Raise :class:`ConfigError` if ``workers`` x (``cpus``, ``gpus``) can never be placed."""
    capacity = capacity or cluster_capacity()
    fit = workers_that_fit(capacity, cpus, gpus, reserved_cpus)
    if fit < workers:
        extra = f" plus {reserved_cpus:g} CPU reserved by the trial that launches them" if reserved_cpus else ""
        raise ConfigError(
            f"resources: asked for {workers} worker(s) x ({cpus:g} CPU, {gpus:g} GPU){extra}, "
            f"but the Ray cluster has {capacity.describe()}, so at most {fit} such worker(s) fit. "
            f"Lower workers or cpus_per_worker/gpus_per_worker (fractions are allowed), or add nodes."
        )
