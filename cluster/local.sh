#!/usr/bin/env bash
# A multi-node Ray cluster on this one machine, for trying the cluster flow: a head node and
# worker nodes, each its own raylet, all on loopback (127.0.0.1), with token authentication.
#
#   bash cluster/local.sh up [WORKERS]   # default 1 worker node; prints the address to use
#   bash cluster/local.sh status
#   bash cluster/local.sh down
#
# Environment: HEAD_CPUS (default 1), WORKER_CPUS (default 1), RAY_PORT (default 6390),
# DASHBOARD_PORT (default 8265; the dashboard and job server need `pip install -e ".[cluster]"`).
set -euo pipefail
export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0
PORT=${RAY_PORT:-6390}
DASH=${DASHBOARD_PORT:-8265}
TMP=${RAY_TMPDIR:-/tmp/supcon-ray-local}

case "${1:-}" in
  up)
    workers=${2:-1}
    test -s ~/.ray/auth_token || ray get-auth-token --generate >/dev/null
    ray start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus="${HEAD_CPUS:-1}" \
      --dashboard-host=127.0.0.1 --dashboard-port="$DASH" --temp-dir="$TMP" --disable-usage-stats >/dev/null
    for i in $(seq 1 "$workers"); do
      # Each node gets its own temp dir, as separate machines would: nodes sharing one would also share
      # (and garbage-collect) each other's runtime-env files, such as a job's working directory.
      ray start --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 --num-cpus="${WORKER_CPUS:-1}" \
        --temp-dir="$TMP-worker$i" --disable-usage-stats >/dev/null
    done
    echo "head 127.0.0.1:$PORT + $workers worker node(s) up."
    echo "  export RAY_ADDRESS=127.0.0.1:$PORT           # python -m supcon_ray.tune joins it"
    echo "  ray job submit --address http://127.0.0.1:$DASH --working-dir . -- python -m supcon_ray.tune ..."
    ;;
  status)
    ray status --address="127.0.0.1:$PORT"
    ;;
  down)
    ray stop --force >/dev/null && echo "stopped"
    ;;
  *)
    echo "usage: bash cluster/local.sh up [WORKERS] | status | down" >&2
    exit 2
    ;;
esac
