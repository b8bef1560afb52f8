"""``raycifar status``: how the sweeps in a results folder are doing, and what a Ray
cluster is running.

Sweeps are read from the files Ray Tune keeps in each sweep folder: it rewrites
``experiment_state-*.json`` (every trial's status, config and last result) every few
seconds while a sweep runs. So the command works on any machine that sees the results
folder, without joining Ray, and also after the cluster is gone. The cluster part asks
the Ray dashboard's HTTP API (``/api/v0/nodes`` and ``/api/jobs/``), sending Ray's auth
token when one is at hand.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from raycifar.config import ModelConfig
from raycifar.errors import UserError
from raycifar.leaderboard import read_table
from raycifar.variants import model_name

STATE_GLOB = "experiment_state-*.json"
HTTP_TIMEOUT_S = 10


@dataclass(frozen=True)
class TrialStatus:
    """One trial as Tune last saved it."""

    trial_id: str
    state: str  # pending, running, paused, finished, stopped early, error
    model: str
    params: int | None
    epoch: int  # epochs reported so far
    epochs: int  # epochs planned
    val_acc: float | None  # at the last reported epoch
    best_val_acc: float | None  # over all reported epochs


@dataclass(frozen=True)
class SweepStatus:
    """One sweep folder: its trials and whether it reached the leaderboard."""

    name: str
    state: str  # starting, running, ended, promoted
    updated: str | None  # when Tune last saved the sweep's state (UTC, ISO 8601)
    promoted_entry: str | None
    trials: list[TrialStatus] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Number of trials in each state."""
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.state] = counts.get(trial.state, 0) + 1
        return counts

    @property
    def best_val_acc(self) -> float | None:
        scores = [t.best_val_acc for t in self.trials if t.best_val_acc is not None]
        return max(scores, default=None)


@dataclass(frozen=True)
class ClusterStatus:
    """What the Ray dashboard at ``url`` reports: live nodes and submitted jobs."""

    url: str
    nodes: list[dict]
    jobs: list[dict]


# ---------------------------------------------------------------------- sweeps


def _trial_state(tune_status: str, epoch: int, epochs: int) -> str:
    if tune_status == "TERMINATED":
        return "finished" if epoch >= epochs else "stopped early"
    return {"ERROR": "error", "RUNNING": "running", "PAUSED": "paused"}.get(
        tune_status, "pending"
    )


def _model(config: dict) -> str:
    try:
        return model_name(ModelConfig.model_validate(config.get("model", {})))
    except ValidationError:
        return "?"


def _trial(entry: list, source: Path) -> TrialStatus:
    """One ``trial_data`` entry of Tune's state file: [trial JSON, runtime JSON]."""
    try:
        trial, runtime = json.loads(entry[0]), json.loads(entry[1])
        config, last = trial["config"], runtime.get("last_result") or {}
        val_acc_seen = runtime.get("metric_analysis", {}).get("val_acc", {})
        epochs = int(config["train"]["epochs"])
        epoch = int(last.get("epoch", 0))
        return TrialStatus(
            trial_id=trial["trial_id"],
            state=_trial_state(trial["status"], epoch, epochs),
            model=_model(config),
            params=config.get("params"),
            epoch=epoch,
            epochs=epochs,
            val_acc=last.get("val_acc"),
            best_val_acc=val_acc_seen.get("max"),
        )
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise UserError(
            f"{source}: not a Ray Tune state file this raycifar can read ({err!r})"
        ) from None


def _sweep_state(trials: list[TrialStatus], promoted: str | None) -> str:
    if promoted:
        return "promoted"
    if not trials:
        return "starting"
    if any(t.state in ("pending", "running", "paused") for t in trials):
        return "running"
    return "ended"


def read_sweep(sweep_dir: Path, promoted: dict[str, str]) -> SweepStatus:
    """The status of the sweep in ``sweep_dir``; ``promoted`` maps sweep names to entry ids."""
    states = sorted(sweep_dir.glob(STATE_GLOB), key=lambda p: p.stat().st_mtime)
    trials: list[TrialStatus] = []
    updated = None
    if states:
        latest = states[-1]
        try:
            saved = json.loads(latest.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(
                f"{latest}: cannot read the sweep's state ({err})"
            ) from None
        if not isinstance(saved, dict):
            raise UserError(
                f"{latest}: not a Ray Tune state file this raycifar can read"
            )
        trials = [_trial(entry, latest) for entry in saved.get("trial_data", [])]
        updated = datetime.fromtimestamp(
            latest.stat().st_mtime, timezone.utc
        ).isoformat(timespec="seconds")
    entry = promoted.get(sweep_dir.name)
    return SweepStatus(
        sweep_dir.name, _sweep_state(trials, entry), updated, entry, trials
    )


def read_sweeps(results_dir: Path, sweep: str | None = None) -> list[SweepStatus]:
    """Every sweep in ``results_dir`` (newest first), or only the one named ``sweep``."""
    sweeps_dir = results_dir / "sweeps"
    folders = (
        [p for p in sweeps_dir.iterdir() if p.is_dir()] if sweeps_dir.is_dir() else []
    )
    if sweep is not None:
        known = ", ".join(sorted(p.name for p in folders)) or "none"
        folders = [p for p in folders if p.name == sweep]
        if not folders:
            raise UserError(
                f"--sweep {sweep}: no such sweep in {sweeps_dir} (known: {known})"
            )
    promoted = {row["sweep"]: row["entry_id"] for row in read_table(results_dir)}
    folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [read_sweep(folder, promoted) for folder in folders]


# ---------------------------------------------------------------------- cluster


def auth_token() -> str | None:
    """Ray's auth token, looked up as Ray does: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    return path.read_text().strip() if path.is_file() else None


def dashboard_get(url: str, route: str) -> object:
    """GET ``route`` from the dashboard at ``url`` and decode its JSON answer."""
    request = urllib.request.Request(url.rstrip("/") + route)
    token = auth_token()
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise UserError(
                f"--dashboard-url {url}: the dashboard refused the request ({err.code}); "
                "set RAY_AUTH_TOKEN or put the cluster's token in ~/.ray/auth_token"
            ) from None
        raise UserError(
            f"--dashboard-url {url}: {route} answered {err.code} {err.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(
            f"--dashboard-url {url}: cannot reach the Ray dashboard ({reason})"
        ) from None
    except json.JSONDecodeError:
        raise UserError(
            f"--dashboard-url {url}: {route} did not answer JSON; is this a Ray dashboard?"
        ) from None


def _node(node: dict) -> dict:
    resources = node.get("resources_total") or {}
    return {
        "node_id": node.get("node_id"),
        "node_ip": node.get("node_ip"),
        "is_head": bool(node.get("is_head_node")),
        "state": node.get("state"),
        "cpus": resources.get("CPU", 0.0),
        "gpus": resources.get("GPU", 0.0),
    }


def _job(job: dict) -> dict:
    def when(ms: int | None) -> str | None:
        return (
            datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(
                timespec="seconds"
            )
            if ms
            else None
        )

    return {
        "submission_id": job.get("submission_id"),
        "job_id": job.get("job_id"),
        "status": job.get("status"),
        "entrypoint": job.get("entrypoint"),
        "start_time": when(job.get("start_time")),
        "end_time": when(job.get("end_time")),
    }


def read_cluster(url: str) -> ClusterStatus:
    """Alive nodes and all submitted jobs (newest first) from the dashboard at ``url``."""
    answer = dashboard_get(
        url,
        "/api/v0/nodes?limit=1000&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE",
    )
    try:
        nodes = [_node(n) for n in answer["data"]["result"]["result"]]
    except (KeyError, TypeError):
        raise UserError(
            f"--dashboard-url {url}: unexpected answer from /api/v0/nodes"
        ) from None
    jobs = dashboard_get(url, "/api/jobs/")
    if not isinstance(jobs, list):
        raise UserError(f"--dashboard-url {url}: unexpected answer from /api/jobs/")
    submitted = [_job(j) for j in jobs if j.get("type") == "SUBMISSION"]
    submitted.sort(key=lambda j: j["start_time"] or "", reverse=True)
    nodes.sort(key=lambda n: (not n["is_head"], n["node_id"] or ""))
    return ClusterStatus(url, nodes, submitted)


# ---------------------------------------------------------------------- output


def as_json(sweeps: list[SweepStatus], cluster: ClusterStatus | None) -> dict:
    """Everything ``raycifar status --format json`` prints."""
    report: dict = {
        "sweeps": [
            {
                **asdict(s),
                "counts": s.counts,
                "best_val_acc": s.best_val_acc,
                "trials": [asdict(t) for t in s.trials],
            }
            for s in sweeps
        ]
    }
    if cluster is not None:
        report["cluster"] = asdict(cluster)
    return report


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD, pad_edge=False, title=title, title_justify="left"
    )
    for column in columns:
        table.add_column(column, no_wrap=column in ("sweep", "node"))
    return table


def print_sweeps(
    console: Console, sweeps: list[SweepStatus], results_dir: Path
) -> None:
    """One line per sweep."""
    if not sweeps:
        console.print(f"no sweeps yet in {results_dir / 'sweeps'}")
        return
    columns = (
        "sweep",
        "state",
        "trials",
        "best val_acc",
        "updated (UTC)",
        "leaderboard entry",
    )
    table = _table(f"sweeps in {results_dir}", columns)
    for sweep in sweeps:
        counts = (
            ", ".join(f"{n} {state}" for state, n in sorted(sweep.counts.items()))
            or "-"
        )
        updated = sweep.updated.replace("+00:00", "") if sweep.updated else "-"
        table.add_row(
            sweep.name, sweep.state, counts, _score(sweep.best_val_acc), updated, sweep.promoted_entry or "-"
        )  # fmt: skip
    console.print(table)


def print_trials(console: Console, sweep: SweepStatus) -> None:
    """One line per trial of ``sweep``."""
    columns = ("trial", "state", "model", "params", "epoch", "val_acc", "best val_acc")
    table = _table(f"trials of {sweep.name}", columns)
    for t in sweep.trials:
        params = f"{t.params:,}" if t.params is not None else "-"
        epochs = f"{t.epoch}/{t.epochs}"
        table.add_row(t.trial_id, t.state, t.model, params, epochs, _score(t.val_acc), _score(t.best_val_acc))  # fmt: skip
    console.print(table)


def print_cluster(console: Console, cluster: ClusterStatus) -> None:
    """Nodes with their CPUs and GPUs, then the submitted jobs."""
    nodes = _table(
        f"Ray nodes at {cluster.url}", ("node", "ip", "role", "CPUs", "GPUs")
    )
    for n in cluster.nodes:
        role = "head" if n["is_head"] else "worker"
        nodes.add_row(
            n["node_id"], n["node_ip"], role, f"{n['cpus']:g}", f"{n['gpus']:g}"
        )
    console.print(nodes)
    if not cluster.jobs:
        console.print("no jobs submitted")
        return
    jobs = _table(
        "Ray jobs", ("submission id", "status", "started (UTC)", "entrypoint")
    )
    for j in cluster.jobs:
        started = (j["start_time"] or "-").replace("+00:00", "")
        jobs.add_row(j["submission_id"], j["status"], started, j["entrypoint"])
    console.print(jobs)
