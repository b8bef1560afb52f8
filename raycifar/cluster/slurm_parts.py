"""The bash parts of ``raycifar slurm``'s batch script (:mod:`raycifar.cluster.slurm` puts them
together): the job's space, its ports, Ray across the allocation, the driver with the
time-limit warning, and the cleanup. Each part is commented in the script itself, which is
what the user reads and what runs."""

from __future__ import annotations

JOB_SPACE = r"""
# --- this job's own space: Ray's temp, spill and log files. Short: Ray's socket paths must stay
# under 107 bytes. A fresh auth token per job: token authentication is on.
job_space="${TMPDIR:-/tmp}"; [ "${#job_space}" -gt 40 ] && job_space=/tmp
job_space="$job_space/rc$SLURM_JOB_ID"
mkdir -p "$job_space/ray" "$results/slurm" && chmod 700 "$job_space" || exit 1
export TMPDIR="$job_space" RAY_TMPDIR="$job_space/ray" RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$(python -c "import secrets; print(secrets.token_hex(32))") || exit 1
export RAY_AUTH_TOKEN
echo "$SLURM_JOB_ID ${SLURM_RESTART_COUNT:-0} $(hostname) $(date -u +%FT%TZ)" >> "$results/slurm/$name.jobs"
echo "raycifar: Slurm job $SLURM_JOB_ID, run ${SLURM_RESTART_COUNT:-0}, on $(hostname), space $job_space"
"""


def ports(window: int, first: int, last: int) -> str:
    """Every port Ray opens comes from one window of ``window`` ports in ``first``..``last``,
    chosen from the job id and moved on until all of its ports are free on this node."""
    return rf"""
# --- ports: a window of {window} derived from the job id, moved on until every port is free here
port_base=$(python - "$SLURM_JOB_ID" <<'PY'
import socket, sys
job, window, first, last = int(sys.argv[1]), {window}, {first}, {last}
slots = (last - first + 1) // window
def free(port):
    with socket.socket() as probe:  # as Ray's servers bind: a port held only in TIME_WAIT is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True
for step in range(slots):
    base = first + (job + step) % slots * window
    if all(free(port) for port in range(base, base + window)):
        sys.exit(print(base))
sys.exit("no window of {window} free ports")
PY
) || exit 1
ray_ports="--node-manager-port=$((port_base + 3)) --object-manager-port=$((port_base + 4))
 --dashboard-agent-grpc-port=$((port_base + 5)) --dashboard-agent-listen-port=$((port_base + 6))
 --metrics-export-port=$((port_base + 7)) --runtime-env-agent-port=$((port_base + 8))
 --min-worker-port=$((port_base + 12)) --max-worker-port=$((port_base + {window - 1}))"
# the autoscaler's and the dashboard's metrics ports are fixed by Ray (44217, 44227) unless set here
export AUTOSCALER_METRIC_PORT=$((port_base + 9)) DASHBOARD_METRIC_PORT=$((port_base + 10))
echo "raycifar: ports $port_base-$((port_base + {window - 1}))"
"""


CLEANUP = r"""
# --- cleanup: every process of this job (SLURM_JOB_ID in its environment: never another job's or
# another user's), SIGTERM for 10 s, then SIGKILL; then the job's space
job_processes() {
    grep -lzx "SLURM_JOB_ID=$SLURM_JOB_ID" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | grep -vx "$$"
}
stop_job_processes() {
    local round pids
    for round in 1 2 3 4 5 6 7 8 9 10 11; do
        pids=$(job_processes)
        [ -z "$pids" ] && break
        # shellcheck disable=SC2086
        if [ "$round" -lt 11 ]; then kill -TERM $pids 2>/dev/null; sleep 1; else kill -KILL $pids 2>/dev/null; fi
    done
    rm -rf "$job_space"
}
trap stop_job_processes EXIT
"""


def start_ray(gpus_per_node: int) -> str:
    """The head on this node and a worker on each other node, sized by the allocation
    (Ray's own memory detection sees the whole node without cgroups)."""
    gpus = f" --num-gpus={gpus_per_node}" if gpus_per_node else " --num-gpus=0"
    return rf"""
# --- Ray: the head on this node, a worker on each other node (srun); RAY_ADDRESS = this job's head
mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
head_ip=127.0.0.1; [ "${{#nodes[@]}}" -gt 1 ] && head_ip=$(hostname -I | cut -d' ' -f1)
# one node: Ray keeps 127.0.0.1 instead of the node's address (a single-machine cluster)
[ "$head_ip" = 127.0.0.1 ] && export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_ADDRESS="$head_ip:$port_base" RAY_TRAIN_ENABLE_STATE_TRACKING=1
mem_bytes=$(( ${{SLURM_MEM_PER_NODE:-4096}} * 1024 * 1024 ))
ray_sizes="--num-cpus=${{SLURM_CPUS_PER_TASK:-1}}{gpus} --memory=$((mem_bytes * 6 / 10)) --object-store-memory=$((mem_bytes / 5))"
# shellcheck disable=SC2086
ray start --head --block --node-ip-address="$head_ip" --port="$port_base" --dashboard-host=127.0.0.1 \
    --dashboard-port=$((port_base + 1)) --ray-client-server-port=$((port_base + 2)) \
    --temp-dir="$RAY_TMPDIR" $ray_ports $ray_sizes > "$job_space/ray-head.log" 2>&1 &
if [ "${{#nodes[@]}}" -gt 1 ]; then
    srun --nodes=$(( ${{#nodes[@]}} - 1 )) --ntasks-per-node=1 --exclude="${{nodes[0]}}" bash -c \
        "mkdir -p -m 700 '$RAY_TMPDIR' && exec ray start --block --address='$RAY_ADDRESS' --temp-dir='$RAY_TMPDIR' $ray_ports $ray_sizes" \
        > "$job_space/ray-workers.log" 2>&1 &
fi
for _ in $(seq 120); do  # until every node of the job has joined
    [ "$(ray status --address "$RAY_ADDRESS" 2>/dev/null | grep -c ' node_')" -ge "${{#nodes[@]}}" ] && break
    sleep 1
done
ray status --address "$RAY_ADDRESS" > /dev/null 2>&1 || {{ echo "Ray did not start:" >&2; tail -20 "$job_space/ray-head.log" >&2; exit 1; }}
"""


def run_driver(driver: str) -> str:
    """The driver in the background; USR1 (the time-limit warning) or TERM (preemption) stop it
    with SIGINT, as Ctrl+C would: the sweep stays resumable. After a warning, the job requeues."""
    indented = "\n".join(f"    {line}" for line in driver.splitlines())
    return rf"""
# --- the driver: the sweep is started, or resumed when this folder already holds it (a requeue)
requeue=0
stop_driver() {{ echo "raycifar: $1: stopping the sweep (it can be resumed)"; kill -INT "$driver" 2>/dev/null; }}
trap 'requeue=1; stop_driver "time limit near (USR1)"' USR1
trap 'stop_driver "terminated (preempted or cancelled)"' TERM
(
{indented}
) &
driver=$!
while :; do wait "$driver"; code=$?; kill -0 "$driver" 2>/dev/null || break; done
echo "raycifar: the driver exited with code $code"
stop_job_processes
trap - EXIT
if [ "$requeue" = 1 ] && [ "$code" != 0 ]; then  # a sweep that ended anyway needs no next run
    echo "raycifar: requeueing job $SLURM_JOB_ID; its next run resumes the sweep"
    trap - TERM USR1
    # Slurm ends this run itself as it requeues the job: a run that exited first would end the job FAILED
    scontrol requeue "$SLURM_JOB_ID" && sleep 300
fi
exit "$code"
"""
