"""Cluster configs pass Ray's validation and open nothing to the world; a multi-node study on one
machine spreads trials over nodes and survives losing a worker node mid-trial.

The multi-node cases run in a child process (``python tests/test_cluster.py ...``) that starts its
own head and worker raylets with ``ray.cluster_utils.Cluster`` on loopback, so they neither touch
nor depend on the test session's shared Ray instance, and every process they start is stopped.
"""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
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


def _child(mode: str, workdir: str) -> None:
    """Run in a fresh process: start a 2-node cluster, run the study (killing the worker node mid-trial
    in ``fault`` mode), print a JSON summary, and stop every node."""
    import threading

    from supcon_ray.ray_runtime import quiet_ray_environment

    quiet_ray_environment()
    from ray.cluster_utils import Cluster

    from supcon_ray.study import load_study, plan_trials
    from supcon_ray.tune import run_study

    work = Path(workdir)
    space = work / "study.yaml"
    space.write_text(STUDY.replace("EPOCHS", "4" if mode == "fault" else "1"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    killed = {}
    try:
        if mode == "fault":
            def kill_worker_mid_trial():
                # wait until both running trials (one per node) have a checkpoint, then kill the worker raylet
                deadline = time.time() + 300
                while time.time() < deadline:
                    dirs = {p.parent for p in (work / "results" / "multinode" / "tune").glob("*/checkpoint_*")}
                    if len(dirs) >= 2:
                        killed["at"] = time.time()
                        killed["node_id"] = worker.node_id
                        cluster.remove_node(worker, allow_graceful=False)
                        return
                    time.sleep(0.2)

            threading.Thread(target=kill_worker_mid_trial, daemon=True).start()
        study = load_study(space)
        folder = run_study(study, plan_trials(study), str(work / "results"), False, cluster.address, None)
        print(json.dumps({"folder": folder, "killed": killed, "head": cluster.head_node.node_id}))
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


def _run_child(mode: str, tmp_path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, mode, str(tmp_path)], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.ray
def test_study_spreads_over_two_nodes(tmp_path):
    import pandas as pd

    out = _run_child("spread", tmp_path)
    trials = pd.read_parquet(Path(out["folder"]) / "trials")
    assert len(trials) == 4 and trials["trial_id"].is_unique and (trials["status"] == "completed").all()
    assert trials["node_id"].nunique() == 2, trials[["trial_id", "node_id"]]


@pytest.mark.ray
def test_lost_worker_node_trial_is_retried_from_checkpoint(tmp_path):
    import pandas as pd

    out = _run_child("fault", tmp_path)
    assert out["killed"], "the worker node was never killed"
    trials = pd.read_parquet(Path(out["folder"]) / "trials")
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert (trials["status"] == "completed").all()
    assert set(trials["node_id"]) <= {out["head"], out["killed"]["node_id"]}
    # the trial that lost its node was retried from its checkpoint, not from scratch
    assert trials["resumed_from"].notna().sum() >= 1, trials[["trial_id", "node_id", "resumed_from"]]
    epochs = pd.read_parquet(Path(out["folder"]) / "epochs")
    assert (epochs.groupby("trial_id")["epoch"].apply(sorted).apply(lambda e: e == [1, 2, 3, 4])).all()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _child(sys.argv[1], sys.argv[2])
