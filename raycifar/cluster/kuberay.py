"""``raycifar k8s``: the KubeRay manifests of a sweep, as plain dicts (written as YAML by the CLI).

- a ``PersistentVolumeClaim`` (``ReadWriteMany``) for the data and the results, mounted at
  :data:`MOUNT` in every pod; it outlives the RayJob and every retry;
- a ``RayJob`` (``ray.io/v1``, KubeRay 1.x) whose ``rayClusterSpec`` has a CPU head (no CPUs
  for trials: the sweep's driver and the dashboard) and one GPU worker group of fixed size.
  ``backoffLimit`` retries each start a new RayCluster; the entrypoint
  (:func:`raycifar.cluster.entrypoint.resume_or_start`) then resumes the sweep from the
  claim instead of starting it over. ``activeDeadlineSeconds`` bounds the whole job,
  ``shutdownAfterJobFinishes`` + ``ttlSecondsAfterFinished`` delete the RayCluster after it.
  Ray's token authentication is on (``authOptions.mode: token``).

Imports neither Ray nor Kubernetes' client: nothing here talks to a cluster.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from raycifar.cluster.entrypoint import SweepCommand, resume_or_start
from raycifar.errors import UserError

RAY_VERSION = "2.60.0"
MOUNT = PurePosixPath("/shared")
VOLUME = "shared"
TRAIN_ENV = [{"name": "RAY_TRAIN_ENABLE_STATE_TRACKING", "value": "1"}]  # the dashboard's Train page
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # a DNS-1123 label
HEAD_PORTS = [
    {"containerPort": 6379, "name": "gcs-server"},
    {"containerPort": 8265, "name": "dashboard"},
    {"containerPort": 10001, "name": "client"},
]


@dataclass(frozen=True)
class K8sSweep:
    """What ``raycifar k8s`` was asked for. Sizes are Kubernetes quantities (``16Gi``, ``4``);
    ``deadline_s``, ``ttl_s`` in seconds; ``sweep_args`` are passed to ``raycifar sweep`` after
    ``SPACE`` (``space`` None: the job only resumes sweep ``name``)."""

    name: str
    space: str | None
    image: str
    results_dir: PurePosixPath
    workers: int = 1
    gpus_per_worker: int = 1
    cpus_per_worker: str = "4"
    memory_per_worker: str = "16Gi"
    head_cpus: str = "2"
    head_memory: str = "8Gi"
    namespace: str = "default"
    claim: str | None = None  # default: raycifar-results
    storage: str = "100Gi"
    storage_class: str | None = None
    deadline_s: int = 24 * 3600
    ttl_s: int = 3600
    backoff_limit: int = 2
    sweep_args: tuple[str, ...] = ()

    @property
    def claim_name(self) -> str:
        return self.claim or "raycifar-results"

    @property
    def job_name(self) -> str:
        return f"raycifar-{self.name}"


def check(sweep: K8sSweep) -> None:
    """UserError (one line naming the option) for names Kubernetes refuses and folders off the claim."""
    for option, value in (("--name", sweep.job_name), ("--namespace", sweep.namespace), ("--claim", sweep.claim_name)):
        if not NAME_RE.fullmatch(value) or len(value) > 63:
            raise UserError(
                f"{option} {value!r}: Kubernetes names are lowercase letters, digits and '-', "
                "starting and ending alphanumeric, at most 63 characters"
            )
    if not sweep.results_dir.is_relative_to(MOUNT):
        raise UserError(f"--results-dir {sweep.results_dir}: must be under {MOUNT}, where the claim is mounted in every pod")
    if sweep.backoff_limit < 1:
        raise UserError(f"--backoff-limit {sweep.backoff_limit}: at least 1, so that a lost cluster is retried")


def manifests(sweep: K8sSweep) -> list[dict]:
    """``[PersistentVolumeClaim, RayJob]``, in the order to apply them (``check`` first)."""
    check(sweep)
    return [claim(sweep), ray_job(sweep)]


def claim(sweep: K8sSweep) -> dict:
    """The ``ReadWriteMany`` claim that holds ``/shared`` (data and results)."""
    spec: dict = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": sweep.storage}}}
    if sweep.storage_class:
        spec["storageClassName"] = sweep.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _metadata(sweep, sweep.claim_name), "spec": spec}


def entrypoint(sweep: K8sSweep) -> str:
    """``bash -c '…'``: start the sweep, or resume it on a retry (``--address auto``: the
    RayCluster the submitter pod was made for)."""
    command = SweepCommand(sweep.name, sweep.results_dir, "auto", sweep.space, sweep.sweep_args)
    return "bash -c " + shlex.quote("set -u\n" + resume_or_start(command))


def ray_job(sweep: K8sSweep) -> dict:
    """The RayJob with its RayCluster spec."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _metadata(sweep, sweep.job_name),
        "spec": {
            "entrypoint": entrypoint(sweep),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": sweep.ttl_s,
            "activeDeadlineSeconds": sweep.deadline_s,
            "backoffLimit": sweep.backoff_limit,
            "rayClusterSpec": {
                "rayVersion": RAY_VERSION,
                "authOptions": {"mode": "token"},
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}, "template": _pod(sweep, head=True)},
                "workerGroupSpecs": [_workers(sweep)],
            },
        },
    }


def _workers(sweep: K8sSweep) -> dict:
    n = sweep.workers
    return {
        "groupName": "gpu" if sweep.gpus_per_worker else "cpu",
        "replicas": n,
        "minReplicas": n,
        "maxReplicas": n,
        "rayStartParams": {},
        "template": _pod(sweep, head=False),
    }


def _pod(sweep: K8sSweep, head: bool) -> dict:
    """A head or worker pod template: the image, its resources, the claim at /shared and a
    memory-backed /dev/shm (PyTorch's data loader workers share tensors there)."""
    if head:
        amounts = {"cpu": sweep.head_cpus, "memory": sweep.head_memory}
    else:
        amounts = {"cpu": sweep.cpus_per_worker, "memory": sweep.memory_per_worker}
        if sweep.gpus_per_worker:
            amounts["nvidia.com/gpu"] = str(sweep.gpus_per_worker)
    container = {
        "name": "ray-head" if head else "ray-worker",
        "image": sweep.image,
        "env": TRAIN_ENV,
        "resources": {"limits": dict(amounts), "requests": dict(amounts)},
        "volumeMounts": [{"name": VOLUME, "mountPath": str(MOUNT)}, {"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if head:
        container["ports"] = HEAD_PORTS
    volumes = [
        {"name": VOLUME, "persistentVolumeClaim": {"claimName": sweep.claim_name}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    return {"metadata": {"labels": {"raycifar.io/sweep": sweep.name}}, "spec": {"containers": [container], "volumes": volumes}}


def _metadata(sweep: K8sSweep, name: str) -> dict:
    labels = {"app.kubernetes.io/name": "raycifar", "raycifar.io/sweep": sweep.name}
    return {"name": name, "namespace": sweep.namespace, "labels": labels}
