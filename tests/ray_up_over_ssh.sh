#!/usr/bin/env bash
# `ray up` / `ray exec` / `ray down` with the local provider, over SSH to an sshd on
# 127.0.0.1:22, all inside private PID, network and mount namespaces, so Ray's default
# ports and `ray stop` (which `ray down` runs on the head) touch nothing outside them.
# /tmp is private too: Ray's session files, the launcher's cluster state and SSH control
# sockets vanish with the namespace. Run by tests/cluster/test_ray_up_ssh.py as:
#   unshare --pid --net --mount --fork --mount-proc --kill-child=SIGKILL \
#       bash ray_up_over_ssh.sh WORK SPACE DATA FOLDER...
# WORK: an empty folder for keys, configs, results and logs; SPACE and DATA: the space file
# and CIFAR-10 folder of the smoke sweep; FOLDERs: what else the run reads (the virtual
# environment with raycifar, the repository); any of them may lie under /tmp.
set -euo pipefail
work=$1 space=$2 data=$3
venv=$(dirname "$(dirname "$(command -v raycifar)")")

ip link set lo up
mount -t tmpfs tmpfs /run                    # private: sshd's privilege-separation folder
mkdir -p /run/sshd /run/host-tmp
mount --bind /tmp /run/host-tmp
mount -t tmpfs tmpfs /tmp
for folder in "$work" "$data" "${@:4}"; do   # bring back what the run needs, at the same paths
    case $folder in /tmp/*) mkdir -p "$folder" && mount --bind "/run/host-tmp/${folder#/tmp/}" "$folder" ;; esac
done
mkdir -p "$work/home"

ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
cp "$work/id.pub" "$work/authorized_keys"
cat > "$work/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port 22
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv HOME=$work/home
CONF
/usr/sbin/sshd -f "$work/sshd_config" -E "$work/sshd.log"

# The "remote" login shell finds this venv's ray and raycifar, as a node's image would.
export HOME=$work/home
echo "export PATH=$venv/bin:\$PATH" > "$HOME/.bashrc"
cp "$HOME/.bashrc" "$HOME/.profile"

cat > "$work/cluster.yaml" <<CONF
cluster_name: rc-$(basename "$work")
provider: {type: local, head_ip: 127.0.0.1, worker_ips: []}
auth: {ssh_user: root, ssh_private_key: $work/id}
file_mounts: {}
initialization_commands: []
setup_commands: []
head_setup_commands: []
worker_setup_commands: []
head_start_ray_commands:
  - ray stop
  - >-
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head --node-ip-address=127.0.0.1 --port=6379
    --num-cpus=1 --dashboard-host=127.0.0.1 --autoscaling-config=~/ray_bootstrap_config.yaml
worker_start_ray_commands: []
CONF

ray=$venv/bin/ray
echo "== ray up"
"$ray" up -y --no-config-cache "$work/cluster.yaml"
echo "== ray exec: a smoke sweep on the head"
"$ray" exec --no-config-cache "$work/cluster.yaml" \
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 raycifar sweep $space --address auto --data-dir $data --results-dir $work/results --num-samples 1 --max-epochs 1 --wandb off"
echo "== ray down"
"$ray" down -y "$work/cluster.yaml"
if pgrep -x raylet >/dev/null || pgrep -x gcs_server >/dev/null; then
    echo "Ray is still running after ray down"; exit 1
fi
echo "== done"
