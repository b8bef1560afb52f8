"""A private one-node Slurm for the tests (../shared/SLURM-NOTES.md): Debian's slurmctld,
slurmd and munged, started as children of the test process in a temp folder, with their own
``slurm.conf`` (``SLURM_CONF``), munge socket and free ports; never ``/etc``, the default
ports or the system's daemons. Stopped in the order that leaves nothing: cancel every job,
wait for the job steps, then the daemons by the PIDs started here."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "sacct")
CONF = """\
ClusterName=rctest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/sock/munge.sock
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobRequeue=1
MpiDefault=none
JobCompType=jobcomp/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def missing() -> str | None:
    """Why a private Slurm cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "the Slurm tests start slurmd, which needs root"
    absent = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if absent:
        return f"Slurm is not installed ({', '.join(absent)} missing: apt-get install slurmctld slurmd slurm-client munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (apt-get install munge)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mib() -> int:
    total_kib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")).split()[1])
    return total_kib // 1024 - 2048


class PrivateSlurm:
    """The cluster; :meth:`run` runs a Slurm command against it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
        self.daemons: dict[str, subprocess.Popen] = {}
        self.job_ids: set[str] = set()  # the tests' jobs, whose processes must all be gone at the end

    def start(self) -> None:
        munge = pwd.getpwnam("munge")
        for sub in ("state", "spool", "munge", "sock"):
            (self.folder / sub).mkdir(parents=True)
        self.folder.chmod(0o755)
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        for path in (key, self.folder / "munge", self.folder / "sock"):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
        (self.folder / "sock").chmod(0o755)
        (self.folder / "munge").chmod(0o700)
        conf = CONF.format(
            host=socket.gethostname().split(".")[0], ctld_port=_free_port(), slurmd_port=_free_port(),
            folder=self.folder, cpus=os.cpu_count(), memory=_memory_mib(),
        )  # fmt: skip
        (self.folder / "slurm.conf").write_text(conf)
        m = self.folder / "munge"
        self._daemon("munged", ["munged", "-F", f"--socket={self.folder}/sock/munge.sock", f"--key-file={key}",
                                f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"],
                     user="munge")  # fmt: skip
        self._wait(lambda: (self.folder / "sock" / "munge.sock").exists(), "munged's socket")
        self._daemon("slurmctld", ["/usr/sbin/slurmctld", "-D"])
        self._wait(lambda: self.run("sinfo", check=False).returncode == 0, "slurmctld to answer")
        self._daemon("slurmd", ["/usr/sbin/slurmd", "-D"])
        self._wait(lambda: "idle" in self.run("sinfo", "-h", "-o", "%T").stdout, "the node to be idle")

    def _daemon(self, name: str, command: list[str], user: str | None = None) -> None:
        log = open(self.folder / f"{name}.stdout", "w")  # noqa: SIM115 - kept open while it runs
        self.daemons[name] = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, user=user)

    def _wait(self, ready, what: str, timeout_s: float = 30.0) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        while not ready():
            dead = [name for name, p in self.daemons.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "".join(p.read_text()[-1500:] for p in self.folder.glob("*.log"))
                raise RuntimeError(f"private Slurm: no {what} (dead: {dead}):\n{logs}")
            time.sleep(0.3)

    def run(self, *command: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False, cwd=cwd, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
        return done

    def stop(self) -> list[str]:
        """Cancel every job, wait until no job or step is left, stop the daemons by their PIDs;
        returns what is left of them (processes still alive), which should be nothing."""
        if "slurmctld" in self.daemons:
            self.run("scancel", "--user=root", check=False)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and (self.run("squeue", "-h", check=False).stdout.strip() or _steps()):
                time.sleep(0.5)
        for name in DAEMONS:
            daemon = self.daemons.get(name)
            if daemon is None or daemon.poll() is not None:
                continue
            daemon.terminate()
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)
        alive = [f"{name} {p.pid}" for name, p in self.daemons.items() if p.poll() is None]
        return alive + [f"slurmstepd {pid}" for pid in _steps()]


def _steps() -> list[str]:
    done = subprocess.run(["pgrep", "-x", "slurmstepd"], capture_output=True, text=True, check=False)
    return done.stdout.split()
