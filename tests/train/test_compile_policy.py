"""``compile: auto`` compiles only when it pays: the rule and the node's record with fake
timings (no torch), then the training loop deciding by them on the CPU (no Ray). Timings are
never asserted: the record is written with the seconds a test wants the loop to see."""

from __future__ import annotations

import functools
import json
import multiprocessing
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import DeviceLoader, ImageSet
from raycifar.results.schema import COMPILE_SECONDS, COMPILED
from raycifar.train import compile_policy
from raycifar.train.compile_policy import (
    HIT_SECONDS,
    MISS_SECONDS,
    PAYBACK,
    NodeRecord,
    decide,
    first_step_extra_seconds,
    node_cache_dir,
    read_record,
    record_path,
    should_compile,
    update_record,
    use_node_cache,
)
from raycifar.train.loop import Training, rank_zero_verdict
from raycifar.train.runtime import global_settings, resolve_runtime

CPU = torch.device("cpu")
MODEL = ModelConfig(depths=(1, 1), widths=(8, 16))
REPO = Path(__file__).resolve().parents[2]

# --- the rule ----------------------------------------------------------------------------


def test_compiling_pays_from_ten_times_the_compile_cost() -> None:
    assert PAYBACK == 10.0
    assert should_compile(expected_train_s=600.0, expected_compile_s=60.0)
    assert should_compile(expected_train_s=1000.0, expected_compile_s=2.0)
    assert not should_compile(expected_train_s=599.0, expected_compile_s=60.0)
    assert not should_compile(expected_train_s=19.0, expected_compile_s=2.0)


def test_a_cache_hit_costs_less_than_a_miss() -> None:
    empty = NodeRecord()
    assert empty.expected_compile_seconds("new") == MISS_SECONDS, "nothing measured on the node yet"
    measured = empty.with_compile("a", 30.0, hit=False).with_compile("b", 50.0, hit=False)
    measured = measured.with_compile("c", 90.0, hit=False)
    assert measured.expected_compile_seconds("new") == 50.0, "the median miss of the node"
    assert measured.compiled_before("a") and not measured.compiled_before("new")
    assert measured.expected_compile_seconds("a") == HIT_SECONDS, "compiled before: its kernels are cached"
    assert measured.with_compile("a", 3.5, hit=True).expected_compile_seconds("a") == 3.5, "its measured hit"


def test_the_same_training_pays_for_a_hit_but_not_for_a_miss() -> None:
    record = NodeRecord().with_step("arch", 0.01).with_compile("other", 40.0, hit=False)
    steps = 3000  # 30 s of eager training
    assert decide(record, "arch", steps) is False, "a miss (40 s) needs 400 s of training"
    assert decide(record.with_compile("arch", 40.0, hit=False), "arch", steps) is True, "a hit (2 s) needs 20 s"


def test_no_step_time_known_means_undecided_and_a_measured_one_wins() -> None:
    record = NodeRecord().with_step("arch", 1.0)
    assert decide(NodeRecord(), "arch", 10**6) is None, "train an epoch eagerly and time it first"
    assert decide(record, "arch", 600) is True, "600 steps of 1 s pay for a 60 s miss"
    assert decide(record, "arch", 600, measured_step_s=0.01) is False, "this trial's own epoch is what counts"


def test_the_compile_cost_is_the_first_steps_extra_time() -> None:
    assert first_step_extra_seconds(first_step_s=10.5, epoch_s=12.5, steps=5) == 10.0  # the others: 0.5 s each
    assert first_step_extra_seconds(first_step_s=3.0, epoch_s=3.0, steps=1) == 3.0
    assert first_step_extra_seconds(first_step_s=0.1, epoch_s=10.0, steps=10) == 0.0, "never negative"


# --- the node's record -----------------------------------------------------------------------


def test_the_record_is_read_back_by_another_reader(tmp_path: Path) -> None:
    path = tmp_path / "node" / compile_policy.RECORD_FILE
    assert read_record(path) == NodeRecord(), "no file yet: empty"
    update_record(path, lambda record: record.with_step("a", 0.25))
    update_record(path, lambda record: record.with_compile("a", 41.0, hit=False))
    update_record(path, lambda record: record.with_compile("a", 2.5, hit=True).with_step("b", 1.5))
    again = read_record(path)
    assert again == NodeRecord(step_seconds={"a": 0.25, "b": 1.5}, miss_seconds={"a": 41.0}, hit_seconds={"a": 2.5})
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == [], "replaced whole"


WRITER = """
import sys
from pathlib import Path
from raycifar.train.compile_policy import update_record
path, prefix = Path(sys.argv[1]), sys.argv[2]
for i in range(20):
    update_record(path, lambda record: record.with_step(f"{prefix}{i}", float(i)))
"""


def test_processes_that_update_the_record_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / compile_policy.RECORD_FILE
    writers = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path), prefix], cwd=REPO)
        for prefix in ("x", "y")
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    steps = read_record(path).step_seconds
    assert set(steps) == {f"{prefix}{i}" for prefix in "xy" for i in range(20)} and steps["y7"] == 7.0


@pytest.mark.parametrize(
    "text",
    [
        "{ not json",
        "\x00\x01\x02",
        "[1, 2]",
        '{"version": 99, "step_seconds": {"a": 1.0}}',
        '{"version": 1, "step_seconds": [1.0], "miss_seconds": "x"}',
    ],
    ids=["truncated", "binary", "a list", "another version", "wrong types"],
)  # fmt: skip
def test_a_corrupt_record_reads_as_empty_and_is_rewritten(tmp_path: Path, text: str) -> None:
    path = tmp_path / compile_policy.RECORD_FILE
    path.write_text(text)
    assert read_record(path) == NodeRecord()
    assert update_record(path, lambda record: record.with_step("a", 0.5)) is not None
    assert read_record(path).step_seconds == {"a": 0.5}


def test_entries_that_are_not_seconds_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / compile_policy.RECORD_FILE
    steps = {"ok": 0.5, "nan": "NaN", "negative": -1.0, "flag": True, "text": "1.0"}
    path.write_text(json.dumps({"version": 1, "step_seconds": steps}).replace('"NaN"', "NaN"))
    assert read_record(path).step_seconds == {"ok": 0.5}


def test_a_record_that_cannot_be_written_is_left_alone(tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    assert update_record(blocker / compile_policy.RECORD_FILE, lambda record: record.with_step("a", 1.0)) is None


def test_the_cache_folder_is_the_users_else_one_per_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert node_cache_dir() == tmp_path / "mine" and use_node_cache() == tmp_path / "mine"
    assert record_path() == tmp_path / "mine" / compile_policy.RECORD_FILE
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(compile_policy.socket, "gethostname", lambda: "node-7")
    folder = tmp_path / ".cache" / "raycifar" / "inductor" / "node-7"
    assert use_node_cache() == folder
    assert node_cache_dir() == folder, "inductor is pointed at it"


# --- the training loop --------------------------------------------------------------------


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A fresh node: its own inductor cache folder; returns its record's path."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    yield record_path()
    torch._dynamo.reset()


@pytest.fixture
def eager_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile's graph capture without the default backend's minute-long C++ build."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))


def training(train: TrainConfig, n: int = 32, batch_size: int = 16) -> Training:
    rng = np.random.default_rng(0)
    images = ImageSet(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
    config = TrialConfig(space="test", data_dir="unused", params=1, model=MODEL, train=train)
    loader = DeviceLoader(images, batch_size, CPU, train=True, seed=0)
    with global_settings(train, seed=0):
        return Training(config, loader, DeviceLoader(images, 32, CPU, train=False), CPU)


def is_compiled(run: Training) -> bool:
    return isinstance(run.model, torch._dynamo.eval_frame.OptimizedModule) and run.model._orig_mod is run.net


def auto_on_this_cpu() -> None:
    if resolve_runtime(TrainConfig(), CPU).compile != "auto":
        pytest.skip("no C++ compiler: compile: auto is off on this CPU")


def test_auto_is_off_without_a_compiler_and_in_deterministic_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_runtime(TrainConfig(deterministic=True), CPU).compile is False, "timings must not steer it"
    assert resolve_runtime(TrainConfig(compile=True, deterministic=True), CPU).compile is True
    monkeypatch.setenv("CXX", "no-such-compiler++")
    assert resolve_runtime(TrainConfig(), CPU).compile is False
    assert resolve_runtime(TrainConfig(), torch.device("meta")).compile is False


def test_a_short_trial_does_not_compile_and_says_so(node: Path) -> None:
    auto_on_this_cpu()
    run = training(TrainConfig(epochs=2))
    metrics = [run.run_epoch(epoch) for epoch in range(2)]
    assert [(m[COMPILED], m[COMPILE_SECONDS]) for m in metrics] == [(False, 0.0), (False, 0.0)]
    assert not is_compiled(run)
    record = read_record(node)
    assert set(record.step_seconds) == {run.compile_key} and not record.compiled_before(run.compile_key)


def test_a_known_long_trial_compiles_before_its_first_epoch(node: Path, eager_backend: None) -> None:
    auto_on_this_cpu()
    run = training(TrainConfig(epochs=2, ema_decay=0.9))  # the EMA is evaluated: only training compiles
    update_record(node, lambda record: record.with_step(run.compile_key, 1000.0))  # an earlier trial's step time
    metrics = [run.run_epoch(epoch) for epoch in range(2)]
    assert is_compiled(run) and [m[COMPILED] for m in metrics] == [True, True]
    assert metrics[0][COMPILE_SECONDS] >= 0.0 and metrics[1][COMPILE_SECONDS] == metrics[0][COMPILE_SECONDS]
    assert read_record(node).miss_seconds.keys() == {run.compile_key}, "its compile is the node's first: a miss"


def test_a_trial_that_pays_only_once_timed_compiles_after_its_first_epoch(
    node: Path, eager_backend: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    auto_on_this_cpu()
    monkeypatch.setattr(compile_policy, "MISS_SECONDS", 0.0)  # any training pays for a free compile
    run = training(TrainConfig(epochs=2, ema_decay=0.9))  # the EMA is evaluated: only training compiles
    first = run.run_epoch(0)
    assert not first[COMPILED] and not is_compiled(run), "nothing known of the architecture: eager, timed"
    assert run.compile_key in read_record(node).step_seconds
    assert run.run_epoch(1)[COMPILED] and is_compiled(run)
    assert read_record(node).compiled_before(run.compile_key)


def test_a_decision_not_to_compile_is_kept(node: Path, eager_backend: None, monkeypatch: pytest.MonkeyPatch) -> None:
    auto_on_this_cpu()
    run = training(TrainConfig(epochs=3))
    update_record(node, lambda record: record.with_step(run.compile_key, 1e-6))
    run.run_epoch(0)
    monkeypatch.setattr(compile_policy, "MISS_SECONDS", 0.0)  # would pay now: too late, decided
    assert [run.run_epoch(epoch)[COMPILED] for epoch in (1, 2)] == [False, False] and not is_compiled(run)


def test_true_and_false_keep_meaning_always_and_never(node: Path, eager_backend: None) -> None:
    update_record(node, lambda record: record.with_step("anything", 1000.0))
    always, never = training(TrainConfig(compile=True)), training(TrainConfig(compile=False))
    assert is_compiled(always) and always.run_epoch(0)[COMPILED]
    assert not is_compiled(never) and not never.run_epoch(0)[COMPILED]
    assert read_record(node).step_seconds.keys() == {"anything"}, "only auto trials write the record"


def _verdicts_of_rank(rank: int, ports: multiprocessing.Queue, out: multiprocessing.Queue, mine: list) -> None:
    import torch.distributed as dist

    from raycifar.train.process_group import join_process_group, listen_on_loopback

    if rank == 0:
        port = listen_on_loopback()
        ports.put(port)
        ports.put(port)
    join_process_group(rank, "gloo", world_size=2, port=ports.get(), timeout_s=60)
    out.put((rank, [rank_zero_verdict(verdict, CPU) for verdict in mine]))
    dist.barrier()
    dist.destroy_process_group()


def test_every_worker_follows_rank_zeros_verdict() -> None:
    from test_process_group import run_two_ranks

    mine = {0: [True, None, False], 1: [None, True, True]}  # what each rank's own timings said
    reports = run_two_ranks(_verdicts_of_rank, lambda rank: (mine[rank],))
    assert reports == [(0, [True, None, False]), (1, [True, None, False])]
    assert rank_zero_verdict(None, CPU) is None and rank_zero_verdict(True, CPU) is True, "one worker: its own"


@pytest.mark.slow
def test_auto_compiles_with_inductor_once_per_node(node: Path) -> None:
    # The real backend: about a minute of C++ build on a CPU for the first trial, a cache hit
    # (seconds) for the second trial of the same architecture. The EMA is what is evaluated,
    # so that only the training step compiles.
    auto_on_this_cpu()
    train = TrainConfig(epochs=1, ema_decay=0.9)
    first = training(train)
    update_record(node, lambda record: record.with_step(first.compile_key, 1e6))  # a long trial
    metrics = first.run_epoch(0)
    assert metrics[COMPILED] is True and metrics[COMPILE_SECONDS] > 0.0 and is_compiled(first)
    torch._dynamo.reset()  # as in a new process: only inductor's caches on disk remain
    second = training(train)
    assert second.compile_key == first.compile_key and second.run_epoch(0)[COMPILED] is True
    record = read_record(node)
    assert first.compile_key in record.miss_seconds and first.compile_key in record.hit_seconds
    assert any(node.parent.iterdir()), "inductor wrote its caches beside the record"
