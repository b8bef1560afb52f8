"""``raycifar k8s`` and ``raycifar slurm``: write what runs a sweep on a lab's Kubernetes (KubeRay
manifests) or an HPC cluster (a Slurm batch script). Nothing is sent anywhere, except with
``slurm --submit`` (plain ``sbatch`` of the written script)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Optional

import typer
import yaml

from raycifar.cli.common import console, exit_codes, fail

# Options of `raycifar sweep` that the written job sets itself.
_SET_BY_THE_JOB = ("--name", "--address", "--results-dir", "--resume", "--submit", "--download")
SweepArgs = Annotated[
    Optional[list[str]],
    typer.Argument(help="Options for `raycifar sweep`, after `--` (e.g. -- --num-samples 32 --gpus-per-trial 1).", show_default=False),
]


class _Literal(yaml.SafeDumper):
    """Multi-line strings (the entrypoint) as YAML literal blocks, readable as written; no anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


_Literal.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
)


def check_sweep_args(ctx: typer.Context, space: str | None, args: list[str], command: str = "sweep") -> tuple[str, ...]:
    """The ``raycifar sweep`` (or ``train``) options to pass on, checked by that command's own
    parser (one-line error, exit 2)."""
    for word in args:
        if word.split("=", 1)[0] in _SET_BY_THE_JOB:
            fail(f"{word.split('=', 1)[0]}: set by the written job itself; give it to this command instead")
    parser = ctx.find_root().command.commands[command]  # type: ignore[attr-defined]
    try:
        parser.make_context(command, [space or "smoke_space", *args])
    except Exception as error:  # noqa: BLE001 - Click's usage errors (Typer may bring its own click)
        if not hasattr(error, "format_message"):
            raise
        fail(f"raycifar {command} {' '.join(args)}: {' '.join(error.format_message().split())}")
    return tuple(args)


def k8s(
    ctx: typer.Context,
    space: Annotated[Optional[str], typer.Argument(help="A shipped space name or a space file that the image has (not with --resume).", show_default=False)] = None,
    sweep_args: SweepArgs = None,
    name: Annotated[str, typer.Option(help="Sweep name; the RayJob is raycifar-NAME (lowercase letters, digits, '-').")] = ...,
    image: Annotated[str, typer.Option(help="The image built from docker/Dockerfile, e.g. ghcr.io/your-org/raycifar:0.1.0.")] = ...,
    resume: Annotated[bool, typer.Option("--resume", help="Only resume sweep NAME from the claim (no SPACE).")] = False,
    results_dir: Annotated[str, typer.Option(help="Results folder on the claim (under /shared).")] = "/shared/rc",
    workers: Annotated[int, typer.Option(min=1, help="GPU worker pods.")] = 1,
    gpus_per_worker: Annotated[int, typer.Option(min=0, help="GPUs per worker pod (nvidia.com/gpu); 0: CPU workers.")] = 1,
    cpus_per_worker: Annotated[str, typer.Option(help="CPUs per worker pod (a Kubernetes quantity).")] = "4",
    memory_per_worker: Annotated[str, typer.Option(help="Memory per worker pod (e.g. 16Gi).")] = "16Gi",
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace.")] = "default",
    claim: Annotated[str, typer.Option(help="The ReadWriteMany PersistentVolumeClaim mounted at /shared.")] = "raycifar-results",
    storage: Annotated[str, typer.Option(help="The claim's size.")] = "100Gi",
    storage_class: Annotated[Optional[str], typer.Option(help="A storage class that offers ReadWriteMany (NFS, CephFS, EFS, Filestore). Default: the cluster's.")] = None,
    deadline: Annotated[str, typer.Option(help="The RayJob's activeDeadlineSeconds, as a duration (24h, 90m).")] = "24h",
    ttl: Annotated[str, typer.Option(help="Delete the finished RayJob's cluster this long after it ends (ttlSecondsAfterFinished).")] = "1h",
    backoff_limit: Annotated[int, typer.Option(min=1, help="Retries of the job, each on a new RayCluster, resuming the sweep.")] = 2,
    out: Annotated[Optional[Path], typer.Option(help="The manifest file to write. Default: raycifar-NAME.k8s.yaml.")] = None,
) -> None:
    """Write KubeRay manifests (a ReadWriteMany claim and a RayJob) that run a sweep and resume it on every retry."""
    from raycifar.cluster.kuberay import K8sSweep, manifests
    from raycifar.search.plan import parse_duration

    if resume == (space is not None):
        fail("give a SPACE, or --resume to only resume sweep --name from the claim")
    args = check_sweep_args(ctx, space, sweep_args or []) if space is not None else ()
    if resume and sweep_args:
        fail("--resume: the sweep keeps its own options; give no sweep options after --")
    with exit_codes():
        sweep = K8sSweep(
            name=name, space=space, image=image, results_dir=PurePosixPath(results_dir), workers=workers,
            gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, memory_per_worker=memory_per_worker,
            namespace=namespace, claim=claim, storage=storage, storage_class=storage_class,
            deadline_s=int(parse_duration(deadline, "--deadline")), ttl_s=int(parse_duration(ttl, "--ttl")), backoff_limit=backoff_limit,
            sweep_args=args,
        )  # fmt: skip
        documents = manifests(sweep)
    path = out or Path(f"{sweep.job_name}.k8s.yaml")
    path.write_text(yaml.dump_all(documents, Dumper=_Literal, sort_keys=False, width=1000))
    console.print(f"wrote {path}: PersistentVolumeClaim {sweep.claim_name}, RayJob {sweep.job_name}", highlight=False)
    console.print(f"  apply   kubectl apply -f {path}", highlight=False)
    console.print(f"  watch   kubectl get rayjob {sweep.job_name} -n {namespace} -w", highlight=False)
    console.print(
        f"  status  kubectl port-forward -n {namespace} svc/$(kubectl get rayjob {sweep.job_name} -n {namespace} "
        "-o jsonpath='{.status.rayClusterName}')-head-svc 8265 & raycifar status --address http://127.0.0.1:8265",
        highlight=False, soft_wrap=True,
    )  # fmt: skip


def slurm(
    ctx: typer.Context,
    target: Annotated[Optional[str], typer.Argument(help="SPACE to sweep (or CONFIG with --train); none with --resume.", show_default=False)] = None,
    command_args: SweepArgs = None,
    name: Annotated[str, typer.Option(help="Sweep (or run) name: a requeued job resumes it by this name.")] = ...,
    results_dir: Annotated[Path, typer.Option(help="Results folder that every node sees (absolute on the cluster).")] = ...,
    resume: Annotated[bool, typer.Option("--resume", help="Only resume sweep NAME (no SPACE).")] = False,
    train: Annotated[bool, typer.Option("--train", help="Run `raycifar train CONFIG` instead of a sweep.")] = False,
    nodes: Annotated[int, typer.Option(min=1, help="Nodes (one Ray node each).")] = 1,
    gpus_per_node: Annotated[int, typer.Option(min=0, help="GPUs per node (--gpus-per-node).")] = 0,
    cpus_per_node: Annotated[int, typer.Option(min=1, help="CPUs per node (--cpus-per-task).")] = 4,
    mem: Annotated[str, typer.Option(help="Memory per node (--mem), e.g. 16G: without it a job may hold a whole node.")] = "16G",
    time_limit: Annotated[str, typer.Option("--time", help="Time limit (--time), e.g. 2:00:00; a longer sweep goes on in the requeued job.")] = "1:00:00",
    partition: Annotated[Optional[str], typer.Option(help="--partition.")] = None,
    account: Annotated[Optional[str], typer.Option(help="--account.")] = None,
    qos: Annotated[Optional[str], typer.Option(help="--qos.")] = None,
    signal_lead: Annotated[int, typer.Option(min=30, help="Seconds before the time limit at which the sweep stops and the job requeues (--signal=B:USR1@N).")] = 300,
    venv: Annotated[Optional[str], typer.Option(help="A virtual environment with raycifar to activate on the nodes. Default: this one, if raycifar runs in one.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="The script to write. Default: raycifar-NAME.sbatch.")] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Submit the written script with plain sbatch and print the job id.")] = False,
) -> None:
    """Write a Slurm batch script that runs a sweep (or a resume, or train) on its own Ray, stops it before the time limit and requeues it to resume."""
    import sys

    from raycifar.cluster.slurm import SlurmJob, script

    mode = "resume" if resume else "train" if train else "sweep"
    if resume == (target is not None) or (resume and train):
        fail("give a SPACE (or CONFIG with --train), or --resume to only resume sweep --name")
    args = tuple(command_args or ())
    if mode in ("sweep", "train"):
        args = check_sweep_args(ctx, target, list(args), mode)
    elif mode == "resume" and args:
        fail("--resume: the sweep keeps its own options; give no sweep options after --")
    default_venv = sys.prefix if sys.prefix != sys.base_prefix else None
    job = SlurmJob(
        mode=mode, name=name, results_dir=PurePosixPath(results_dir), target=target, args=args, nodes=nodes,
        gpus_per_node=gpus_per_node, cpus_per_node=cpus_per_node, mem=mem, time=time_limit, partition=partition,
        account=account, qos=qos, signal_lead_s=signal_lead, venv=venv or default_venv,
    )  # fmt: skip
    with exit_codes():
        text = script(job)
    path = out or Path(f"raycifar-{name}.sbatch")
    path.write_text(text)
    path.chmod(0o755)
    if not submit:
        console.print(f"wrote {path}: submit with  sbatch {path}", highlight=False, soft_wrap=True)
        return
    print(_sbatch(path))


def _sbatch(path: Path) -> str:
    """``sbatch --parsable PATH``: the job id (a one-line error, exit 2, when sbatch is missing or refuses)."""
    import shutil
    import subprocess

    if shutil.which("sbatch") is None:
        fail(f"--submit: no sbatch on this machine; the script is written: copy {path} to the cluster and run sbatch {path}")
    done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = " ".join((done.stderr or done.stdout).split()) or f"exit code {done.returncode}"
        fail(f"--submit: sbatch refused {path}: {reason}")
    return done.stdout.strip().split(";")[0]
