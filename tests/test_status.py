"""``raycifar status`` without Ray: sweep folders written in Ray Tune's state-file layout
(the end-to-end test in test_cluster_local.py reads a real one), a leaderboard, and a
stand-in dashboard on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.leaderboard import SCHEMA, table_path

MODEL = {
    "depths": [1, 1],
    "widths": [8, 16],
    "se_ratio": 0,
    "dropout": 0.0,
    "num_classes": 10,
}


def tune_trial(
    trial_id: str, status: str, epochs_done: int, epochs: int, val_accs: list[float]
) -> list[str]:
    """One ``trial_data`` entry as Tune writes it: the trial and its runtime state, each as JSON text."""
    config = {
        "space": "tiny",
        "data_dir": "/d",
        "params": 12_345,
        "model": MODEL,
        "train": {"epochs": epochs},
    }
    trial = {"trial_id": trial_id, "status": status, "config": config}
    last = {"epoch": epochs_done, "val_acc": val_accs[-1]} if val_accs else {}
    analysis = (
        {"val_acc": {"max": max(val_accs), "last": val_accs[-1]}} if val_accs else {}
    )
    return [
        json.dumps(trial),
        json.dumps({"last_result": last, "metric_analysis": analysis}),
    ]


def write_sweep(results: Path, name: str, trials: list[list[str]]) -> Path:
    folder = results / "sweeps" / name
    folder.mkdir(parents=True)
    state = {"trial_data": trials, "runner_data": {}, "stats": {}}
    (folder / "experiment_state-2026-11-23_10-00-00.json").write_text(json.dumps(state))
    return folder


def promote_row(results: Path, sweep: str, entry_id: str) -> None:
    row = {name: None for name in SCHEMA.names} | {
        "sweep": sweep,
        "entry_id": entry_id,
        "test_acc": 0.5,
    }
    pq.write_table(pa.Table.from_pylist([row], schema=SCHEMA), table_path(results))


def status(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["status", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def status_json(results: Path, *args: str) -> dict:
    code, output = status("--results-dir", str(results), "--format", "json", *args)
    assert code == 0, output
    return json.loads(output)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    write_sweep(
        results,
        "running-sweep",
        [
            tune_trial("t1", "TERMINATED", 4, 4, [0.3, 0.5, 0.6, 0.55]),
            tune_trial("t2", "TERMINATED", 1, 4, [0.2]),
            tune_trial("t3", "RUNNING", 2, 4, [0.4, 0.62]),
            tune_trial("t4", "ERROR", 0, 4, []),
            tune_trial("t5", "PENDING", 0, 4, []),
        ],
    )
    write_sweep(
        results, "done-sweep", [tune_trial("a1", "TERMINATED", 2, 2, [0.7, 0.8])]
    )
    promote_row(results, "done-sweep", "done-sweep-ab12")
    return results


def test_trial_states_come_from_tune_status_and_epochs(results: Path) -> None:
    (sweep,) = status_json(results, "--sweep", "running-sweep")["sweeps"]
    states = {t["trial_id"]: t["state"] for t in sweep["trials"]}
    assert states == {
        "t1": "finished",
        "t2": "stopped early",
        "t3": "running",
        "t4": "error",
        "t5": "pending",
    }
    assert sweep["state"] == "running" and sweep["promoted_entry"] is None
    assert sweep["best_val_acc"] == 0.62, (
        "the best epoch of any trial, not the last one"
    )
    t1 = next(t for t in sweep["trials"] if t["trial_id"] == "t1")
    assert (t1["epoch"], t1["epochs"], t1["val_acc"], t1["best_val_acc"]) == (
        4,
        4,
        0.55,
        0.6,
    )
    assert t1["model"] == "resnet6-w8" and t1["params"] == 12_345


def test_a_promoted_sweep_names_its_leaderboard_entry(results: Path) -> None:
    sweeps = {s["name"]: s for s in status_json(results)["sweeps"]}
    assert set(sweeps) == {"running-sweep", "done-sweep"}
    assert sweeps["done-sweep"]["state"] == "promoted"
    assert sweeps["done-sweep"]["promoted_entry"] == "done-sweep-ab12"
    assert sweeps["running-sweep"]["counts"] == {
        "finished": 1,
        "stopped early": 1,
        "running": 1,
        "error": 1,
        "pending": 1,
    }


def test_a_sweep_whose_trials_all_stopped_without_promotion_has_ended(
    tmp_path: Path,
) -> None:
    write_sweep(tmp_path, "interrupted", [tune_trial("x", "TERMINATED", 1, 3, [0.4])])
    (tmp_path / "sweeps" / "starting").mkdir()
    sweeps = {s["name"]: s["state"] for s in status_json(tmp_path)["sweeps"]}
    assert sweeps == {"interrupted": "ended", "starting": "starting"}


def test_table_output_lists_sweeps_and_trials(results: Path) -> None:
    code, output = status("--results-dir", str(results), "--sweep", "running-sweep")
    assert code == 0, output
    assert "running-sweep" in output and "stopped early" in output and "2/4" in output
    assert "0.6200" in output and "done-sweep" not in output


def test_no_sweeps_yet_is_not_an_error(tmp_path: Path) -> None:
    code, output = status("--results-dir", str(tmp_path / "nothing"))
    assert code == 0 and "no sweeps yet" in output


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("{not json", "cannot read the sweep's state"),
        (json.dumps({"trial_data": [["{}", "{}"]]}), "not a Ray Tune state file"),
    ],
)
def test_a_damaged_state_file_is_one_line_and_exit_2(
    tmp_path: Path, damage: str, message: str
) -> None:
    folder = write_sweep(tmp_path, "broken", [])
    next(folder.glob("experiment_state-*.json")).write_text(damage)
    code, output = status("--results-dir", str(tmp_path))
    assert code == 2 and message in output and "experiment_state-" in output


def test_an_unknown_sweep_is_exit_2_and_lists_the_known_ones(results: Path) -> None:
    code, output = status("--results-dir", str(results), "--sweep", "nope")
    assert code == 2
    assert (
        "--sweep nope: no such sweep" in output
        and "done-sweep, running-sweep" in output
    )


class _Dashboard(BaseHTTPRequestHandler):
    """Answers like a Ray dashboard with token auth: 401 without the token."""

    token = "s3cret"

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.end_headers()
            return
        if self.path.startswith("/api/v0/nodes"):
            nodes = [
                {"node_id": "w1", "node_ip": "10.0.0.2", "is_head_node": False, "state": "ALIVE", "resources_total": {"CPU": 4.0, "GPU": 1.0}},
                {"node_id": "h", "node_ip": "10.0.0.1", "is_head_node": True, "state": "ALIVE", "resources_total": {}},
            ]  # fmt: skip
            body = {"result": True, "data": {"result": {"result": nodes}}}
        else:
            body = [
                {"type": "SUBMISSION", "submission_id": "old", "status": "FAILED", "entrypoint": "raycifar sweep a", "start_time": 1_000},
                {"type": "SUBMISSION", "submission_id": "new", "status": "RUNNING", "entrypoint": "raycifar sweep b", "start_time": 9_000},
                {"type": "DRIVER", "submission_id": None, "status": "RUNNING", "entrypoint": "python x.py", "start_time": 5_000},
            ]  # fmt: skip
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

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


def test_cluster_nodes_and_jobs_come_from_the_dashboard(
    results: Path, dashboard: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN", _Dashboard.token)
    cluster = status_json(results, "--dashboard-url", dashboard)["cluster"]
    assert [(n["node_id"], n["is_head"], n["gpus"]) for n in cluster["nodes"]] == [
        ("h", True, 0.0),
        ("w1", False, 1.0),
    ]
    assert [j["submission_id"] for j in cluster["jobs"]] == ["new", "old"], (
        "submitted jobs only, newest first"
    )
    code, output = status("--results-dir", str(results), "--dashboard-url", dashboard)
    assert code == 0 and "raycifar sweep b" in output and "10.0.0.2" in output


def test_the_token_is_read_from_the_token_file(
    results: Path, dashboard: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(_Dashboard.token + "\n")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert (
        len(status_json(results, "--dashboard-url", dashboard)["cluster"]["nodes"]) == 2
    )


def test_a_refused_or_unreachable_dashboard_is_exit_2(
    results: Path, dashboard: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no-token"))
    code, output = status("--results-dir", str(results), "--dashboard-url", dashboard)
    assert (
        code == 2
        and "refused the request (401)" in output
        and "RAY_AUTH_TOKEN" in output
    )
    code, output = status(
        "--results-dir", str(results), "--dashboard-url", "http://127.0.0.1:9"
    )
    assert code == 2 and "cannot reach the Ray dashboard" in output
