"""Joining or starting Ray, keeping its log noise down, and checking that resources can fit.

Security defaults for a local instance: token authentication on (``RAY_AUTH_MODE=token``), no
dashboard, and nothing bound beyond what Ray needs on this host.

Joining a cluster adopts its authentication mode (:func:`adopt_cluster_auth`). Ray reads
``RAY_AUTH_MODE`` per process, and a driver in token mode refuses every call *into* it that
carries no token: a cluster started without token auth then cancels the Tune trial actors the
driver owns before they run ("The actor never ran"), while the driver's own calls to the cluster
go through. So the mode is probed from the cluster and set for the driver before ``ray.init``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass

from supcon_ray.config import ConfigError

#: What a Tune trial's own driver process reserves: tiny, so the workers it launches fit.
TRIAL_DRIVER_CPUS = 0.01
#: Ray's per-process authentication mode: "token" or "disabled".
AUTH_MODE_ENV = "RAY_AUTH_MODE"
#: How long to wait for a TCP answer from a cluster's address before giving up on it.
CONNECT_TIMEOUT_S = 3.0


def quiet_ray_environment() -> None:
    """Environment that keeps Ray's own output readable; set before Ray starts."""
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
    # Tune keeps one checkpoint per trial (supcon_ray.execution.disk), so it snapshots the experiment state
    # whenever a trial checkpoints (the state must never name a deleted checkpoint), and warns of it each time
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def quiet_worker_logs() -> None:
    """Runs in every Ray worker process at start-up (``worker_process_setup_hook``).

    Ray Train 2.60 logs every ``ray.train.report`` at INFO from a logger named after its file
    (so ``LoggingConfig`` does not reach it), and its placement-group cleaner warns every few
    seconds when the state API (part of the dashboard, which we do not start) is absent.
    """
    import ray

    # By name, without importing those modules: importing Ray Train's internals here cost ~1-2 s in
    # every worker process (Tune trials, Train controllers and workers alike), on each trial's start-up path.
    context_file = os.path.join(os.path.dirname(ray.__file__), "train", "v2", "_internal", "execution", "context.py")
    logging.getLogger(context_file).setLevel(logging.WARNING)
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)
    if os.environ.get("SUPCON_RAY_VERBOSE") != "1":
        # "Checkpoint successfully created at: ..." for every epoch of every trial (INFO)
        from supcon_ray.execution.progress import quiet_ray_loggers

        quiet_ray_loggers(verbose=False)
    sys.unraisablehook = quiet_exit_unraisable


def quiet_exit_unraisable(unraisable) -> None:
    """``sys.unraisablehook`` of worker processes: say nothing of a ``SystemExit`` that could not propagate.

    When a worker process is stopped (SIGTERM at the end of a study, or when a driver leaves a cluster),
    Ray's signal handler raises ``SystemExit``; if the signal lands inside a weakref callback, Python
    cannot propagate it and prints it as a traceback that reads like a crash in the user's console.
    Every other unraisable exception is printed as usual.
    """
    if isinstance(unraisable.exc_value, SystemExit):
        return
    sys.__unraisablehook__(unraisable)


def _set_auth_mode(mode: str | None) -> None:
    """Set (``None``: unset) this process's auth mode and make Ray's cached config see it."""
    if mode is None:
        os.environ.pop(AUTH_MODE_ENV, None)
    else:
        os.environ[AUTH_MODE_ENV] = mode
    from ray._raylet import Config

    Config.initialize("")  # Ray caches RAY_AUTH_MODE when imported; re-read it as Ray itself does


def _gcs_address(address: str) -> str | None:
    """``host:port`` of the cluster's GCS, or None for a Ray Client address (``ray://``)."""
    if address.startswith("ray://"):
        return None
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        found = canonicalize_bootstrap_address("auto")
        if not found:
            raise ConfigError("--address auto: no Ray cluster is running on this machine. Start one "
                              "(ray start --head) or leave --address and RAY_ADDRESS unset to start a local instance.")
        return found
    return address


def _gcs_answers(gcs_address: str) -> None:
    """Open a GCS client to ``gcs_address`` in this process's current auth mode (raises on refusal)."""
    from ray._raylet import GcsClient

    client = GcsClient(address=gcs_address)
    del client


def cluster_uses_token(gcs_address: str) -> bool:
    """Whether the Ray cluster at ``gcs_address`` requires token authentication.

    Asks its GCS for its cluster id without a token: a token cluster refuses, any other answers.
    Raises :class:`ConfigError` within :data:`CONNECT_TIMEOUT_S` if nothing listens there.
    """
    from ray.exceptions import AuthenticationError

    host, _, port = gcs_address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as err:
        raise ConfigError(f"--address / RAY_ADDRESS: nothing answers at {gcs_address!r} ({err}). Give the head node's "
                          "address as host:port (ray start --head prints it), or leave both unset to start a local "
                          "instance.") from None
    saved = os.environ.get(AUTH_MODE_ENV)
    _set_auth_mode("disabled")
    try:
        _gcs_answers(gcs_address)
        return False
    except AuthenticationError:
        return True
    except Exception as err:  # noqa: BLE001 - any other failure: not a Ray cluster we can use
        raise ConfigError(f"--address / RAY_ADDRESS: {gcs_address!r} does not answer as a Ray cluster: {err}") from None
    finally:
        _set_auth_mode(saved)


def adopt_cluster_auth(gcs_address: str) -> str:
    """Set this driver's auth mode to the cluster's (``"token"`` or ``"disabled"``) and return it.

    Raises :class:`ConfigError` (the message says what to change) where the two cannot work
    together: ``RAY_AUTH_MODE=token`` asked for against a cluster without token auth (the cluster
    could not call back into this driver, and silently dropping the requested auth would be a
    downgrade), or a token cluster for which this machine has no token, or the wrong one.
    """
    from ray._raylet import AuthenticationTokenLoader
    from ray.exceptions import AuthenticationError

    requested = (os.environ.get(AUTH_MODE_ENV) or "").lower() or None
    if not cluster_uses_token(gcs_address):
        if requested == "token":
            raise ConfigError(
                f"RAY_AUTH_MODE=token is set, but the Ray cluster at {gcs_address} runs without token "
                "authentication, so its nodes could not call back into this driver. Either unset RAY_AUTH_MODE "
                "to join it as it is, or restart the cluster with RAY_AUTH_MODE=token on every node (and the "
                "same token on each: ray get-auth-token --generate).")
        _set_auth_mode("disabled")
        print(f"warning: the Ray cluster at {gcs_address} runs without token authentication (anyone who can "
              "reach it can run code on it); joining it as it is.", file=sys.stderr, flush=True)
        return "disabled"
    _set_auth_mode("token")
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()
    if not loader.has_token(ignore_auth_mode=True):
        raise ConfigError(
            f"the Ray cluster at {gcs_address} requires token authentication, and this machine has no token. "
            "Copy the cluster's token (`ray get-auth-token` on its head node) into ~/.ray/auth_token, or set "
            "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH to a file holding it).")
    try:
        _gcs_answers(gcs_address)
    except AuthenticationError:
        raise ConfigError(
            f"the Ray cluster at {gcs_address} refused this machine's token (from RAY_AUTH_TOKEN, "
            "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token). Use the cluster's own token: `ray get-auth-token` "
            "on its head node.") from None
    return "token"


#: Ray Train's switch for its preemption watcher (a node-draining monitor for clusters).
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def init_ray(address: str | None = None, num_cpus: float | None = None, num_gpus: int | None = None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``) in its auth mode, or start a local instance
    with token authentication. Raises :class:`ConfigError` if the cluster cannot be joined."""
    quiet_ray_environment()
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address == "local":
        address = None
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=True, configure_logging=True,
                  runtime_env={"worker_process_setup_hook": "supcon_ray.execution.ray_runtime.quiet_worker_logs",
                               "env_vars": {"SUPCON_RAY_VERBOSE": os.environ.get("SUPCON_RAY_VERBOSE", "0")}})
    if address:
        gcs = _gcs_address(address)
        if gcs is not None:
            adopt_cluster_auth(gcs)
        try:
            ray.init(address=address, **kwargs)
        except (RuntimeError, ConnectionError, ValueError) as err:  # e.g. Ray or Python version mismatch
            raise ConfigError(f"--address / RAY_ADDRESS: cannot join the Ray cluster at {address}: {err}") from None
    else:
        # a cluster this project starts keeps token auth (workers inherit this environment)
        _set_auth_mode(os.environ.get(AUTH_MODE_ENV) or "token")
        # Ray Train's preemption watcher follows the draining of a cluster's nodes; one machine has none to
        # drain, and the watcher's start logs a red core_worker.cc line on every run (shown with --verbose)
        if os.environ.get("SUPCON_RAY_VERBOSE") != "1":
            os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
        # "local": always a new instance, never one found running on this machine
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, **kwargs)
    from supcon_ray.execution.progress import quiet_ray_loggers

    quiet_ray_loggers(verbose=os.environ.get("SUPCON_RAY_VERBOSE") == "1")


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
