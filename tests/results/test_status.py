"""``raycifar status`` without Ray: sweep folders holding a sweep record and the per-trial
files Ray Tune writes (``params.json``, ``result.json``, ``progress.csv``, ``error.txt``;
the end-to-end test in test_cluster_local.py reads a real sweep), a leaderboard, and a
stand-in dashboard on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.results.leaderboard import table_path
from raycifar.results.leaderboard_schema import SCHEMA
from raycifar.results.sweep_record import RECORD_FILE, SweepRecorder

MODEL = {"depths": [1, 1], "widths": [8, 16], "se_ratio": 0, "dropout": 0.0, "num_classes": 10}


def trial_config(epochs: int) -> dict:
    return {"space": "tiny", "data_dir": "/d", "params": 12_345, "model": MODEL, "train": {"epochs": epochs}}


def write_trial(
    sweep_dir: Path, trial_id: str, epochs: int, val_accs: list[float], error: bool = False, csv_only: bool = False
) -> Path:
    """A trial folder as Tune writes it: params.json, one result.json line per epoch (or
    progress.csv only), error.txt for an errored trial."""
    folder = sweep_dir / f"trial_{trial_id}"
    folder.mkdir(parents=True)
    config = trial_config(epochs)
    (folder / "params.json").write_text(json.dumps(config))
    rows = [{"epoch": i, "val_acc": acc, "trial_id": trial_id, "config": config} for i, acc in enumerate(val_accs, 1)]
    if csv_only:
        lines = ["epoch,val_acc,trial_id"] + [f"{r['epoch']},{r['val_acc']},{trial_id}" for r in rows]
        (folder / "progress.csv").write_text("\n".join(lines) + "\n")
    else:
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if error:
        (folder / "error.txt").write_text("Traceback ...\nRuntimeError: boom\n")
    return folder


def start_record(results: Path, name: str, planned: int, age_s: float = 0.0, pid: int | None = None) -> SweepRecorder:
    """A sweep record whose driver last wrote ``age_s`` seconds ago (``pid``: the driver's)."""
    moment = datetime.now(timezone.utc) - timedelta(seconds=age_s)
    recorder = SweepRecorder.start(results / "sweeps" / name, name, "tiny", planned, now=lambda: moment)
    if pid is not None:
        recorder.record.driver_pid = pid
        recorder.heartbeat(force=True)
    return recorder


def promote_row(results: Path, sweep: str, entry_id: str) -> None:
    row = {name: None for name in SCHEMA.names} | {"sweep": sweep, "entry_id": entry_id, "test_acc": 0.5}
    pq.write_table(pa.Table.from_pylist([row], schema=SCHEMA), table_path(results))


def status(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["status", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def status_json(results: Path, *args: str) -> dict:
    code, output = status("--results-dir", str(results), "--format", "json", *args)
    assert code == 0, output
    return json.loads(output)


def running_sweep(results: Path, age_s: float = 0.0) -> Path:
    """Five planned trials: finished, stopped early, running, errored, and one not started."""
    recorder = start_record(results, "running-sweep", planned=5, age_s=age_s)
    folder = recorder.sweep_dir
    for trial_id, epochs, accs in (("t1", 4, [0.3, 0.5, 0.6, 0.55]), ("t2", 4, [0.2]), ("t3", 4, [0.4, 0.62])):
        write_trial(folder, trial_id, epochs, accs)
        recorder.trial_started(trial_id, trial_config(epochs), model="recorded-w8")
    write_trial(folder, "t4", 4, [], error=True)
    recorder.trial_started("t4", trial_config(4), model="recorded-w8")
    recorder.trial_ended("t1", "finished")
    recorder.trial_ended("t2", "stopped_early")
    recorder.trial_ended("t4", "error", error_file=str(folder / "trial_t4" / "error.txt"))
    return folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    running_sweep(results)
    done = start_record(results, "done-sweep", planned=1)
    write_trial(done.sweep_dir, "a1", 2, [0.7, 0.8])
    done.trial_started("a1", trial_config(2), model="recorded-w8")
    done.trial_ended("a1", "finished")
    done.ended("completed")
    promote_row(results, "done-sweep", "done-sweep-ab12")
    return results


def test_trial_states_come_from_the_record_and_progress_from_the_trial_files(results: Path) -> None:
    (sweep,) = status_json(results, "--sweep", "running-sweep")["sweeps"]
    states = {t["trial_id"]: t["state"] for t in sweep["trials"]}
    assert states == {"t1": "finished", "t2": "stopped early", "t3": "running", "t4": "error"}
    assert sweep["state"] == "running" and sweep["promoted_entry"] is None and sweep["planned_trials"] == 5
    assert sweep["counts"] == {"finished": 1, "stopped early": 1, "running": 1, "error": 1, "pending": 1}
    assert sweep["best_val_acc"] == 0.62, "the best epoch of any trial, not the last one"
    t1 = next(t for t in sweep["trials"] if t["trial_id"] == "t1")
    assert (t1["epoch"], t1["epochs"], t1["val_acc"], t1["best_val_acc"]) == (4, 4, 0.55, 0.6)
    assert t1["model"] == "recorded-w8" and t1["params"] == 12_345
    t4 = next(t for t in sweep["trials"] if t["trial_id"] == "t4")
    assert t4["error_file"].endswith("trial_t4/error.txt") and t4["epoch"] == 0


def test_the_json_shape(results: Path) -> None:
    report = status_json(results)
    assert set(report) == {"sweeps", "slurm_jobs"}
    sweep = report["sweeps"][0]
    assert set(sweep) == {
        "name", "state", "updated", "promoted_entry", "trials", "planned_trials", "interrupted_at", "problem",
        "counts", "best_val_acc", "resumable", "cost", "metric", "best_score",
    }  # fmt: skip
    assert (sweep["metric"], sweep["best_score"]) == ("val_acc", sweep["best_val_acc"])
    assert set(sweep["trials"][0]) == {
        "trial_id", "state", "model", "params", "epoch", "epochs", "val_acc", "best_val_acc", "error_file", "reason",
        "cost", "metric", "best_score",
    }  # fmt: skip


def costed_sweep(results: Path) -> Path:
    """Sweep ``costly``: c1 (2 epochs, 2 workers of 3 CPUs), c2 (diverged in its first epoch,
    1 worker of 2 CPUs), c3 (progress.csv only, 1 worker of 1 CPU)."""
    recorder = start_record(results, "costly", planned=3)
    folder = recorder.sweep_dir
    hardware = {"device": "cpu", "worker_gpus": 0.0}
    epochs = {
        "c1": [{"epoch": 1, "val_acc": 0.4, "train_seconds": 100.0, "eval_seconds": 20.0},
               {"epoch": 2, "val_acc": 0.5, "train_seconds": 110.0, "eval_seconds": 10.0}],
        "c2": [{"epoch": 1, "val_acc": float("nan"), "diverged": True, "train_seconds": 60.0, "eval_seconds": 0.0}],
    }  # fmt: skip
    for trial_id, workers, cpus in (("c1", 2, 3.0), ("c2", 1, 2.0)):
        trial = write_trial(folder, trial_id, 2, [])
        rows = [{**row, **hardware, "world_size": workers, "worker_cpus": cpus} for row in epochs[trial_id]]
        (trial / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    trial = write_trial(folder, "c3", 2, [], csv_only=True)
    (trial / "progress.csv").write_text(
        "epoch,val_acc,train_seconds,eval_seconds,world_size,worker_cpus,worker_gpus,device\n1,0.3,30.0,6.0,1,1.0,0.0,cpu\n"
    )
    for trial_id in ("c1", "c2", "c3"):
        recorder.trial_started(trial_id, trial_config(2), model="recorded-w8")
    return folder


# c1: (100 + 20 + 110 + 10) s × 2 workers × 3 CPUs = 1440; c2: 60 s × 1 × 2 = 120; c3: 36 s × 1 × 1 = 36
COSTLY_CORE_SECONDS = 1440 + 120 + 36  # = 1596 CPU core-seconds = 0.4433 CPU core-hours


def test_the_sweeps_cost_sums_every_reported_epoch_of_every_trial(tmp_path: Path) -> None:
    costed_sweep(tmp_path)
    (sweep,) = status_json(tmp_path, "--sweep", "costly")["sweeps"]
    assert sweep["cost"] == {
        "hours": {"CPU": pytest.approx(COSTLY_CORE_SECONDS / 3600)}, "train_seconds": 300.0, "eval_seconds": 36.0,
        "device": "CPU", "device_hours": pytest.approx(COSTLY_CORE_SECONDS / 3600),
    }  # fmt: skip
    c2 = next(t for t in sweep["trials"] if t["trial_id"] == "c2")
    assert c2["cost"]["hours"] == {"CPU": pytest.approx(120 / 3600)}, "a diverged epoch's time is counted"
    code, output = status("--results-dir", str(tmp_path))
    (line,) = [line for line in output.splitlines() if line.strip().startswith("costly")]
    assert code == 0 and "0.4433 CPU core-hours" in line


def test_a_sweep_of_an_older_raycifar_shows_no_cost(results: Path) -> None:
    sweeps = {s["name"]: s for s in status_json(results)["sweeps"]}
    assert sweeps["done-sweep"]["cost"] is None, "its results lack the epoch times and resources"
    code, output = status("--results-dir", str(results))
    assert "CPU core-hours" not in output and "GPU-hours" not in output


def test_a_promoted_sweep_names_its_leaderboard_entry(results: Path) -> None:
    sweeps = {s["name"]: s for s in status_json(results)["sweeps"]}
    assert set(sweeps) == {"running-sweep", "done-sweep"}
    assert sweeps["done-sweep"]["state"] == "promoted"
    assert sweeps["done-sweep"]["promoted_entry"] == "done-sweep-ab12"


def test_a_promotion_in_the_record_needs_no_leaderboard(tmp_path: Path) -> None:
    recorder = start_record(tmp_path, "s", planned=1)
    recorder.ended("completed")
    recorder.promoted("s-cd34")
    (sweep,) = status_json(tmp_path)["sweeps"]
    assert (sweep["state"], sweep["promoted_entry"]) == ("promoted", "s-cd34")


@pytest.mark.parametrize(("outcome", "state"), [("completed", "ended"), ("failed", "failed"), ("interrupted", "interrupted")])
def test_the_drivers_outcome_is_the_sweeps_state(tmp_path: Path, outcome: str, state: str) -> None:
    start_record(tmp_path, "s", planned=1).ended(outcome)
    (sweep,) = status_json(tmp_path)["sweeps"]
    assert sweep["state"] == state


def test_a_fresh_record_without_trials_is_starting(tmp_path: Path) -> None:
    start_record(tmp_path, "s", planned=3)
    (sweep,) = status_json(tmp_path)["sweeps"]
    assert (sweep["state"], sweep["counts"]) == ("starting", {"pending": 3})


def test_a_sweep_with_a_stale_heartbeat_was_interrupted(tmp_path: Path) -> None:
    folder = running_sweep(tmp_path, age_s=600)
    (sweep,) = status_json(tmp_path)["sweeps"]
    assert sweep["state"] == "interrupted" and sweep["interrupted_at"] == sweep["updated"]
    states = {t["trial_id"]: t["state"] for t in sweep["trials"]}
    assert states["t3"] == "interrupted", "a trial running when the driver died is not running"
    at = datetime.fromisoformat(sweep["interrupted_at"]).strftime("%H:%M")
    code, output = status("--results-dir", str(tmp_path))
    assert code == 0 and f"interrupted at {at}, 3 of 5 trials finished" in output
    assert (folder / RECORD_FILE).is_file()


def test_a_sweep_whose_driver_process_is_gone_was_interrupted(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    start_record(tmp_path, "s", planned=2, pid=int(gone.stdout))
    (sweep,) = status_json(tmp_path)["sweeps"]
    assert sweep["state"] == "interrupted", "same host, fresh heartbeat, but the driver's pid is gone"


def test_a_sweep_without_a_record_is_read_from_its_trial_files(tmp_path: Path) -> None:
    folder = tmp_path / "sweeps" / "old-sweep"
    write_trial(folder, "f", 2, [0.5, 0.7])
    write_trial(folder, "e", 2, [0.4], error=True)
    write_trial(folder, "c", 3, [0.3, 0.45], csv_only=True)
    (sweep,) = status_json(tmp_path)["sweeps"]
    trials = {t["trial_id"]: t for t in sweep["trials"]}
    assert {i: t["state"] for i, t in trials.items()} == {"c": "unknown", "e": "error", "f": "finished"}
    assert (trials["c"]["epoch"], trials["c"]["best_val_acc"]) == (2, 0.45), "progress.csv when result.json is missing"
    assert trials["f"]["model"] == "resnet6-w8", "named from params.json"
    assert sweep["state"] == "unknown" and sweep["planned_trials"] is None


def test_a_result_line_still_being_written_is_left_out(tmp_path: Path) -> None:
    recorder = start_record(tmp_path, "s", planned=1)
    trial = write_trial(recorder.sweep_dir, "t", 4, [0.3, 0.5])
    recorder.trial_started("t", trial_config(4), model="m")
    with (trial / "result.json").open("a") as stream:
        stream.write('{"epoch": 3, "val_a')
    (sweep,) = status_json(tmp_path)["sweeps"]
    assert (sweep["trials"][0]["epoch"], sweep["trials"][0]["val_acc"]) == (2, 0.5)


def _damage_record(folder: Path) -> str:
    (folder / RECORD_FILE).write_text('{"format": 1, "name": "bro')
    return f"{folder / RECORD_FILE}: not a readable sweep record"


def _damage_results(folder: Path) -> str:
    result = folder / "trial_t" / "result.json"
    result.write_text('{"epoch": 1, "val_acc": 0.2}\n{"epoch": 2, "val_\n{"epoch": 3, "val_acc": 0.4}\n')
    return f"{result}: line 2 is not a JSON result"


@pytest.mark.parametrize("damage", [_damage_record, _damage_results])
def test_a_damaged_sweep_folder_is_flagged_and_the_others_still_listed(results: Path, damage) -> None:
    broken = start_record(results, "broken", planned=1)
    write_trial(broken.sweep_dir, "t", 2, [0.2])
    broken.trial_started("t", trial_config(2), model="m")
    reason = damage(broken.sweep_dir)
    sweeps = {s["name"]: s for s in status_json(results)["sweeps"]}
    assert set(sweeps) == {"broken", "running-sweep", "done-sweep"}
    assert sweeps["broken"]["state"] == "unreadable" and sweeps["broken"]["problem"].startswith(reason)
    assert sweeps["running-sweep"]["state"] == "running"
    code, output = status("--results-dir", str(results))
    assert code == 0 and "running-sweep" in output and "done-sweep" in output
    (flagged,) = [line for line in output.splitlines() if "broken" in line]
    assert flagged.startswith("unreadable sweep broken: ") and reason in flagged
    code, output = status("--results-dir", str(results), "--sweep", "broken")
    assert code == 2 and reason in output, "asked for by name: it is an error"


def test_table_output_lists_sweeps_and_trials(results: Path) -> None:
    code, output = status("--results-dir", str(results), "--sweep", "running-sweep")
    assert code == 0, output
    assert "running-sweep" in output and "stopped early" in output and "2/4" in output
    assert "0.6200" in output and "done-sweep" not in output
    assert "trial t4 error: " in output and "trial_t4/error.txt" in output


def test_plain_status_imports_neither_ray_nor_torch(results: Path) -> None:
    probe = (
        "import sys; from typer.testing import CliRunner; from raycifar.cli import app; "
        f"r = CliRunner().invoke(app, ['status', '--results-dir', {str(results)!r}, '--sweep', 'running-sweep']); "
        "assert r.exit_code == 0, r.output; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def test_no_sweeps_yet_is_not_an_error(tmp_path: Path) -> None:
    code, output = status("--results-dir", str(tmp_path / "nothing"))
    assert code == 0 and "no sweeps yet" in output


def test_an_unknown_sweep_is_exit_2_and_lists_the_known_ones(results: Path) -> None:
    code, output = status("--results-dir", str(results), "--sweep", "nope")
    assert code == 2
    assert "--sweep nope: no such sweep" in output and "done-sweep, running-sweep" in output


# ---------------------------------------------------------------------- cluster


def _node(node_id: str, ip: str, head: bool, resources: dict) -> dict:
    """A node as the dashboard's state API lists it."""
    return {
        "node_id": node_id, "node_ip": ip, "is_head_node": head, "state": "ALIVE", "state_message": None,
        "node_name": ip, "resources_total": resources, "labels": {}, "start_time_ms": 1, "end_time_ms": 0,
    }  # fmt: skip


def _job(kind: str, submission_id: str | None, status: str, entrypoint: str, start_ms: int) -> dict:
    """A job as the dashboard's job API lists it."""
    return {
        "type": kind, "job_id": "01000000", "submission_id": submission_id, "status": status,
        "entrypoint": entrypoint, "start_time": start_ms, "end_time": None,
    }  # fmt: skip


class _Dashboard(BaseHTTPRequestHandler):
    """Answers like a Ray dashboard with token auth: 401 without a token, 403 for a wrong one."""

    token = "s3cret"

    def _answer(self, code: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        sent = self.headers.get("Authorization")
        if sent is None:
            return self._answer(401, "Unauthorized: Missing authentication token")
        if sent != f"Bearer {self.token}":
            return self._answer(403, "Forbidden: Invalid authentication token")
        if self.path.startswith("/api/version"):
            return self._answer(200, {"version": "4", "ray_version": "2.60.0", "ray_commit": "x"})
        if self.path.startswith("/api/v0/nodes"):
            assert "filter_values=ALIVE" in self.path
            nodes = [_node("w1", "10.0.0.2", False, {"CPU": 4.0, "GPU": 1.0}), _node("h", "10.0.0.1", True, {})]
            result = {"result": nodes, "total": 2, "num_after_truncation": 2, "num_filtered": 2,
                      "partial_failure_warning": "", "warnings": None}  # fmt: skip
            return self._answer(200, {"result": True, "msg": "", "data": {"result": result}})
        jobs = [
            _job("SUBMISSION", "old", "FAILED", "raycifar sweep a", 1_000),
            _job("SUBMISSION", "new", "RUNNING", "raycifar sweep b", 9_000),
            _job("DRIVER", None, "RUNNING", "python x.py", 5_000),
        ]
        return self._answer(200, jobs)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def dashboard() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_ray_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token, no address and no auth mode from the environment of whoever runs the tests."""
    for name in ("RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no-token"))


def test_cluster_nodes_and_jobs_come_from_the_dashboard(
    results: Path, dashboard: str, no_ray_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", _Dashboard.token)
    cluster = status_json(results, "--dashboard-url", dashboard)["cluster"]
    assert [(n["node_id"], n["is_head"], n["gpus"]) for n in cluster["nodes"]] == [("h", True, 0.0), ("w1", False, 1.0)]
    assert [j["submission_id"] for j in cluster["jobs"]] == ["new", "old"], "submitted jobs only, newest first"
    assert (cluster["jobs"][0]["status"], cluster["jobs"][0]["start_time"]) == ("RUNNING", "1970-01-01T00:00:09+00:00")
    code, output = status("--results-dir", str(results), "--dashboard-url", dashboard)
    assert code == 0 and "raycifar sweep b" in output and "10.0.0.2" in output


def test_the_token_is_read_from_the_token_file(
    results: Path, dashboard: str, no_ray_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(_Dashboard.token + "\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert len(status_json(results, "--dashboard-url", dashboard)["cluster"]["nodes"]) == 2


def test_the_dashboard_url_wins_over_ray_address(
    results: Path, dashboard: str, no_ray_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", _Dashboard.token)
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")
    assert len(status_json(results, "--dashboard-url", dashboard)["cluster"]["nodes"]) == 2


def test_a_refused_or_unreachable_dashboard_is_one_line_and_exit_2(
    results: Path, dashboard: str, no_ray_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = status("--results-dir", str(results), "--dashboard-url", dashboard)
    assert code == 2 and "the dashboard refused the request (no token was sent" in output and "RAY_AUTH_TOKEN" in output
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    code, output = status("--results-dir", str(results), "--dashboard-url", dashboard)
    assert code == 2 and "refused the request (the token from $RAY_AUTH_TOKEN is not this cluster's" in output
    code, output = status("--results-dir", str(results), "--dashboard-url", "http://127.0.0.1:9")
    assert code == 2 and "cannot reach the Ray dashboard" in output
    assert len([line for line in output.splitlines() if line.strip()]) == 1


def test_a_diverged_trial_shows_its_last_good_epoch_and_why_it_ended(tmp_path: Path) -> None:
    results = tmp_path / "results"
    recorder = start_record(results, "nan-sweep", planned=2)
    for trial_id in ("d1", "d2"):
        folder = write_trial(recorder.sweep_dir, trial_id, 4, [0.3, 0.45, float("nan")])
        with (folder / "result.json").open("a") as stream:  # the diverged epoch says so
            stream.write(json.dumps({"epoch": 4, "val_acc": 0.9, "diverged": True}) + "\n")
    recorder.trial_started("d1", trial_config(4), model="recorded-w8")
    recorder.trial_ended("d1", "diverged", reason="diverged at epoch 3 (training loss nan)")
    (sweep,) = status_json(results)["sweeps"]
    by_id = {t["trial_id"]: t for t in sweep["trials"]}
    # d1 from the record, d2 (no record entry) from its files alone
    assert [by_id[t]["state"] for t in ("d1", "d2")] == ["diverged", "diverged"]
    assert [(by_id[t]["epoch"], by_id[t]["val_acc"], by_id[t]["best_val_acc"]) for t in ("d1", "d2")] == [(2, 0.45, 0.45)] * 2
    assert sweep["best_val_acc"] == 0.45
    code, output = status("--results-dir", str(results), "--sweep", "nan-sweep")
    assert code == 0 and "trial d1 diverged at epoch 3 (training loss nan)" in output


def test_a_trial_tune_restarted_and_that_then_finished_is_finished_everywhere(tmp_path: Path) -> None:
    """Tune leaves the error.txt of a trial it restarted (the in-trial path's retries): the sweep
    record, not that file, says how the trial ended, for status, the report and promotion."""
    from raycifar.report.gather import gather_sweep
    from raycifar.results.trial_files import read_trials

    results = tmp_path / "results"
    recorder = start_record(results, "retried", planned=2)
    folder = recorder.sweep_dir
    write_trial(folder, "r1", 2, [0.4, 0.6], error=True)  # crashed once, restarted, finished
    write_trial(folder, "r2", 2, [0.3], error=True)  # failed for good
    for trial_id in ("r1", "r2"):
        recorder.trial_started(trial_id, trial_config(2), model="recorded-w8")
    recorder.trial_ended("r1", "finished")
    recorder.trial_ended("r2", "error", error_file=str(folder / "trial_r2" / "error.txt"))
    recorder.ended("completed")

    (sweep,) = status_json(results, "--sweep", "retried")["sweeps"]
    shown = {t["trial_id"]: (t["state"], t["error_file"]) for t in sweep["trials"]}
    assert shown["r1"] == ("finished", None) and shown["r2"][0] == "error" and shown["r2"][1].endswith("error.txt")
    failed = {h.trial_id: h.failed for h in read_trials(folder).histories}
    assert failed == {"r1": False, "r2": True}  # promotion's view
    report = {t["trial_id"]: t["state"] for t in gather_sweep(folder)["trials"]}
    assert report == {"r1": "finished", "r2": "error"}  # the report's

    (folder / "sweep_record.json").unlink()  # a sweep of an older raycifar: only the files can say
    assert {h.trial_id: h.failed for h in read_trials(folder).histories} == {"r1": True, "r2": True}
