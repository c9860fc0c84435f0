"""Cluster configs pass Ray's validation and open nothing to the world; a multi-node study on one
machine spreads trials over nodes and survives losing a worker node mid-trial; a driver joins a
cluster started without token authentication in that cluster's mode, refuses with exit status 2
where it cannot work with it, and records trials that never start as failed.

The multi-node cases run in a child process (``python tests/execution/test_cluster.py ...``) that starts its
own head and worker raylets with ``ray.cluster_utils.Cluster`` on loopback, so they neither touch
nor depend on the test session's shared Ray instance, and every process they start is stopped.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [ROOT / "cluster" / "gpu.yaml", ROOT / "cluster" / "local.yaml"]
WORLD = "0.0.0.0/0"
SENSITIVE_PORTS = {8265, 10001, 6379}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_passes_ray_validation(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load(path.read_text()))
    validate_config(config)
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "--dashboard-host=0.0.0.0" not in starts and "--dashboard-host=127.0.0.1" in starts
    assert all("RAY_AUTH_MODE=token" in c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
               if " ray start" in f" {c}" or "/ray start" in c)
    assert "~/.ray/auth_token" in config["file_mounts"]  # the same token on every node


def _open_to_world(rule: dict) -> set[int]:
    ranges = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
    if not any(r in (WORLD, "::/0") for r in ranges):
        return set()
    if rule.get("IpProtocol") in ("-1", -1, "all"):
        return set(SENSITIVE_PORTS)
    lo, hi = int(rule.get("FromPort", 0)), int(rule.get("ToPort", 65535))
    return {p for p in SENSITIVE_PORTS if lo <= p <= hi}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_sensitive_port_open_to_the_world(path):
    config = yaml.safe_load(path.read_text())
    rules = (config.get("provider", {}).get("security_group") or {}).get("IpPermissions", [])
    for node in config.get("available_node_types", {}).values():
        for group in node.get("node_config", {}).get("SecurityGroups", []) or []:
            rules += group.get("IpPermissions", []) if isinstance(group, dict) else []
    opened = set().union(*(_open_to_world(r) for r in rules)) if rules else set()
    assert not opened, f"{path.name} opens {sorted(opened)} to {WORLD}"
    # and the check itself is able to fail
    assert _open_to_world({"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 9000, "IpRanges": [{"CidrIp": WORLD}]}) == {8265}


def test_aws_workers_are_on_demand_and_autoscaled():
    config = yaml.safe_load(CONFIGS[0].read_text())
    worker = config["available_node_types"]["gpu_worker"]
    assert "InstanceMarketOptions" not in worker["node_config"]
    assert worker["min_workers"] == 0 and worker["max_workers"] >= 1 and config["idle_timeout_minutes"] > 0


# -- multi-node on one machine ------------------------------------------------------------------
STUDY = """
study: multinode
losses: [ce]
seeds: [0, 1]
base: {common: {epochs: EPOCHS, batch_size: 256, augment: basic}}
vary: {optimizer: [sgd, rmsprop]}
resources: {workers_per_trial: 1, cpus_per_worker: 1, max_concurrent_trials: 2, max_failures: 3}
"""


def _driver(args: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env, **kw)


#: Where a child process writes its outcome (JSON).
SUMMARY = "summary.json"


def _child_no_token(work: Path) -> None:
    """A 2-node cluster started with plain Ray, without token authentication, joined as a user would
    (``RAY_ADDRESS``): the study completes; a driver that insists on token auth exits 2; a driver forced
    into token mode anyway (so the cluster cancels its trial actors before they run) records them failed."""
    import os

    os.environ["RAY_AUTH_MODE"] = "disabled"  # for the cluster's processes, which inherit it
    from ray.cluster_utils import Cluster

    (work / "study.yaml").write_text(STUDY.replace("EPOCHS", "1, train_size: 400, test_size: 200"))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    cli = [sys.executable, "-m", "supcon_ray.tune", "--space", str(work / "study.yaml"), "--no-report", "--storage"]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        joined = _driver(cli + [str(work / "results")], {**env, "RAY_ADDRESS": cluster.address})
        refused = _driver(cli + [str(work / "refused")], {**env, "RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "token"})
        forced = _driver([sys.executable, __file__, "forced-token-driver", cluster.address] + cli[3:] + [str(work / "forced")],
                         env)
        out = {"folder": str(work / "results" / "multinode"), "forced_folder": str(work / "forced" / "multinode")}
        for name, proc in (("joined", joined), ("refused", refused), ("forced", forced)):
            out[name] = {"rc": proc.returncode, "out": proc.stdout[-6000:], "err": proc.stderr[-6000:]}
        (work / SUMMARY).write_text(json.dumps(out))
    finally:
        cluster.shutdown()


def _forced_token_driver(address: str, argv: list[str]) -> int:
    """A driver in token mode on a cluster without it: Ray lets it connect, then the cluster cannot call
    back into it, so every trial actor is cancelled before it runs (the failure of issue 13)."""
    import os

    os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    ray.init(address=address, logging_level="WARNING")  # init_ray then finds Ray running and joins as is
    from supcon_ray.tune import main

    return main(argv)


def _child(mode: str, workdir: str) -> None:
    """Run in a fresh process: start a 2-node cluster, run the study (killing the worker node mid-trial
    in ``fault`` mode), write a JSON summary (:data:`SUMMARY`), and stop every node."""
    import os
    import secrets
    import threading

    if mode == "no-token":
        return _child_no_token(Path(workdir))
    os.environ["RAY_AUTH_MODE"] = "token"  # a cluster as cluster/*.yaml starts them
    # its own token, so the test needs no ~/.ray/auth_token (a fresh machine has none) and leaves none
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    from supcon_ray.execution.fault_injection import PAUSE_ENV, RELEASE, ready_name
    from supcon_ray.execution.ray_runtime import quiet_ray_environment

    work = Path(workdir)
    barrier = work / "barrier"
    if mode == "fault":
        # every trial's first attempt pauses after its first registered checkpoint (the cluster's
        # processes inherit this), so the kill lands at a known point of a known trial
        barrier.mkdir()
        os.environ[PAUSE_ENV] = str(barrier)
    quiet_ray_environment()
    from ray.cluster_utils import Cluster

    from supcon_ray.study import load_study
    from supcon_ray.execution import run_study

    space = work / "study.yaml"
    space.write_text(STUDY.replace("EPOCHS", "4" if mode == "fault" else "1"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    killed = {}
    try:
        if mode == "fault":
            def kill_worker_at_its_trials_first_checkpoint():
                # the worker node's first trial signals once its epoch-1 checkpoint is registered and waits;
                # the node goes, then every trial is released (the retry restores, so it never waits)
                try:
                    suffix = ready_name("", worker.node_id)
                    deadline = time.monotonic() + 600  # only bounds a broken run: the order is fixed by the barrier
                    while time.monotonic() < deadline:
                        ready = [p.name for p in barrier.iterdir() if p.name.endswith(suffix)]
                        if ready:
                            cluster.remove_node(worker, allow_graceful=False)
                            killed.update(trial_id=ready[0][: -len(suffix)], node_id=worker.node_id)
                            return
                        time.sleep(0.05)
                    killed["error"] = "no trial on the worker node reached its first checkpoint"
                except Exception as e:  # noqa: BLE001 - reported in the summary, not lost with the thread
                    killed["error"] = repr(e)
                finally:
                    (barrier / RELEASE).touch()

            threading.Thread(target=kill_worker_at_its_trials_first_checkpoint, daemon=True).start()
        study = load_study(space)
        folder = run_study(study, str(work / "results"), False, cluster.address, None).folder
        (work / SUMMARY).write_text(json.dumps({"folder": folder, "killed": killed, "head": cluster.head_node.node_id}))
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


def _run_child(mode: str, tmp_path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, mode, str(tmp_path)], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # a file, not stdout: Ray's processes may still print there while the cluster shuts down
    return json.loads((tmp_path / SUMMARY).read_text())


@pytest.mark.ray
def test_study_on_a_cluster_without_token_auth_spreads_over_two_nodes(tmp_path):
    import pandas as pd

    out = _run_child("no-token", tmp_path)
    joined = out["joined"]
    assert joined["rc"] == 0, joined["err"]
    assert "without token authentication" in joined["err"]  # said once, as a warning
    trials = pd.read_parquet(Path(out["folder"]) / "trials")
    assert len(trials) == 4 and trials["trial_id"].is_unique and (trials["status"] == "completed").all()
    assert trials["node_id"].nunique() == 2, trials[["trial_id", "node_id"]]
    assert "test_top1 mean" in joined["out"] and "Traceback" not in joined["out"] + joined["err"]
    # asking for token auth on a cluster without it: exit 2 before any trial, saying what to change
    refused = out["refused"]
    assert refused["rc"] == 2 and "unset RAY_AUTH_MODE" in refused["err"], refused
    assert not (tmp_path / "refused" / "multinode" / "trials").is_dir() or not list((tmp_path / "refused" / "multinode" / "trials").iterdir())
    # a driver forced into token mode: every trial is cancelled before it starts, and is recorded as failed
    forced = out["forced"]
    assert forced["rc"] == 1, forced["err"]
    failed = pd.read_parquet(Path(out["forced_folder"]) / "trials")
    assert len(failed) == 4 and (failed["status"] == "failed").all()
    assert failed["error"].str.contains("never ran").all(), failed["error"].tolist()
    assert sorted(failed["trial_id"]) == sorted(trials["trial_id"])  # the planned specs, not Tune's configs
    assert "test_top1 mean" in forced["out"] and "Traceback" not in forced["out"] + forced["err"]


@pytest.mark.ray
def test_lost_worker_node_trial_is_retried_from_checkpoint(tmp_path):
    import pandas as pd

    out = _run_child("fault", tmp_path)
    killed = out["killed"]
    assert "error" not in killed and killed.get("trial_id"), killed
    trials = pd.read_parquet(Path(out["folder"]) / "trials").set_index("trial_id")
    assert len(trials) == 4 and trials.index.is_unique
    assert (trials["status"] == "completed").all()
    # the trial that lost its node was retried on the head from its epoch-1 checkpoint, not from scratch
    lost = trials.loc[killed["trial_id"]]
    assert lost["resumed_from"] == "ce:1" and lost["node_id"] == out["head"], trials[["node_id", "resumed_from"]]
    assert trials.drop(index=killed["trial_id"])["resumed_from"].isna().all(), trials[["node_id", "resumed_from"]]
    epochs = pd.read_parquet(Path(out["folder"]) / "epochs")
    assert set(epochs["trial_id"]) == set(trials.index)
    assert (epochs.groupby("trial_id")["epoch"].apply(list).apply(sorted).apply(lambda e: e == [1, 2, 3, 4])).all()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1] == "forced-token-driver":
        sys.exit(_forced_token_driver(sys.argv[2], sys.argv[3:]))
    _child(sys.argv[1], sys.argv[2])
