"""Every training option changes what the loop does (CPU, toy scale, no Ray)."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from loader_refs import normalized
from safetensors.torch import load_file

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import DeviceLoader, ImageSet, train_val_split
from raycifar.errors import UserError
from raycifar.search.sample import sample_configs
from raycifar.space.find import load_space
from raycifar.train.loop import Training
from raycifar.train.optim import WeightAverage, make_optimizer, make_schedule
from raycifar.train.runtime import global_settings, resolve_runtime
from raycifar.train.scoring import score, tta_views

CPU = torch.device("cpu")
MODEL = ModelConfig(depths=(1, 1), widths=(8, 16))


def random_images(n: int, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))


def trial(train: TrainConfig, model: ModelConfig = MODEL, seed: int = 0, data_dir: str = "unused") -> TrialConfig:
    return TrialConfig(space="test", data_dir=data_dir, params=1, seed=seed, model=model, train=train)


def training(train: TrainConfig, n: int = 64, batch_size: int = 16, model: ModelConfig = MODEL) -> Training:
    images = random_images(n)
    loader = DeviceLoader(images, batch_size, CPU, train=True, seed=0)
    return Training(trial(train, model), loader, DeviceLoader(images, 32, CPU, train=False), CPU)


def trained(train: TrainConfig, epochs: int = 1, **kwargs) -> Training:
    """A Training built and run under the run's global settings (seeded)."""
    with global_settings(train, seed=0):
        run = training(train, **kwargs)
        for epoch in range(epochs):
            run.run_epoch(epoch)
    return run


def flat_weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# --- optimizer ---------------------------------------------------------------------------


def test_nesterov_changes_the_sgd_update() -> None:
    with_nesterov = trained(TrainConfig(nesterov=True))
    without = trained(TrainConfig(nesterov=False))
    assert with_nesterov.optimizer.param_groups[0]["nesterov"] is True
    assert without.optimizer.param_groups[0]["nesterov"] is False
    assert not torch.equal(flat_weights(with_nesterov.net), flat_weights(without.net))


def test_norms_and_biases_can_be_left_out_of_weight_decay() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    model(torch.zeros(1, 3, 8, 8))
    for decay_norm_and_bias, expected in ((True, 0.5), (False, 1.0)):
        torch.nn.init.ones_(model[1].weight)
        torch.nn.init.ones_(model[0].weight)
        optimizer = make_optimizer(
            model, TrainConfig(lr=1.0, momentum=0.0, weight_decay=0.5, decay_norm_and_bias=decay_norm_and_bias)
        )
        for p in model.parameters():
            p.grad = torch.zeros_like(p)  # only weight decay moves the weights
        optimizer.step()
        assert model[1].weight.detach().unique().tolist() == [expected], "the norm weight"
        assert model[0].weight.detach().unique().tolist() == [0.5], "conv weights always decay"
    groups = make_optimizer(model, TrainConfig(decay_norm_and_bias=False)).param_groups
    assert [len(g["params"]) for g in groups] == [2, 4] and groups[1]["weight_decay"] == 0.0


def test_adamw_uses_the_same_groups() -> None:
    optimizer = make_optimizer(torch.nn.Linear(3, 2), TrainConfig(optimizer="adamw", decay_norm_and_bias=False))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]


def gradient_norm(model: torch.nn.Module) -> float:
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()


def test_gradient_clipping_bounds_the_gradient_norm() -> None:
    free = trained(TrainConfig(lr=0.01), n=16)
    clipped = trained(TrainConfig(lr=0.01, grad_clip_norm=0.05), n=16)
    assert gradient_norm(free.net) > 0.5
    assert gradient_norm(clipped.net) == pytest.approx(0.05, rel=1e-4)


# --- schedules ---------------------------------------------------------------------------


def learning_rates(train: TrainConfig, steps_per_epoch: int = 10) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=train.lr)
    schedule = make_schedule(optimizer, train, steps_per_epoch)
    rates = []
    for _ in range(steps_per_epoch * train.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_cosine_with_linear_warmup() -> None:
    rates = learning_rates(TrainConfig(lr=1.0, epochs=4, schedule="cosine", warmup_epochs=1))
    assert rates[:10] == pytest.approx([(i + 1) / 10 for i in range(10)]), "linear warmup over one epoch"
    assert rates[10] == pytest.approx(1.0) and rates[25] == pytest.approx(0.5, abs=0.03)
    assert all(a >= b for a, b in itertools.pairwise(rates[10:])) and rates[-1] < 0.01


def test_cosine_without_warmup_starts_at_the_peak() -> None:
    rates = learning_rates(TrainConfig(lr=1.0, epochs=2, schedule="cosine"))
    assert rates[0] == 1.0 and rates[10] == pytest.approx(0.5)


def test_linear_decays_to_zero() -> None:
    rates = learning_rates(TrainConfig(lr=2.0, epochs=2, schedule="linear"))
    assert rates[0] == 2.0 and rates[10] == pytest.approx(1.0) and rates[-1] == pytest.approx(0.1)


def test_step_schedule_multiplies_by_gamma_every_step_epochs() -> None:
    rates = learning_rates(TrainConfig(lr=1.0, epochs=6, schedule="step", step_epochs=2, lr_gamma=0.5))
    assert rates[::10] == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25])


def test_multistep_schedule_decays_at_its_milestones() -> None:
    rates = learning_rates(TrainConfig(lr=1.0, epochs=10, schedule="multistep", milestones=(0.3, 0.8), lr_gamma=0.1))
    assert rates[29] == 1.0 and rates[30] == pytest.approx(0.1) and rates[79] == pytest.approx(0.1)
    assert rates[80] == pytest.approx(0.01)


def test_onecycle_warmup_follows_warmup_epochs() -> None:
    default = learning_rates(TrainConfig(lr=1.0, epochs=10, schedule="onecycle"))
    short = learning_rates(TrainConfig(lr=1.0, epochs=10, schedule="onecycle", warmup_epochs=1))
    assert int(np.argmax(default)) == 30 - 1 and int(np.argmax(short)) == 10 - 1


def test_the_schedule_steps_once_per_batch_in_training() -> None:
    run = trained(TrainConfig(lr=1.0, epochs=2, schedule="linear"), n=64, batch_size=16)
    assert run.schedule.last_epoch == 4 and run.optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


# --- weight averaging ---------------------------------------------------------------------


def test_ema_weights_differ_from_the_live_weights_and_are_evaluated() -> None:
    run = trained(TrainConfig(ema_decay=0.9), epochs=2)
    assert run.average is not None and run.evaluated is run.average.model
    assert not torch.allclose(flat_weights(run.net), flat_weights(run.average.model))
    assert run.average.updates == 8
    plain = trained(TrainConfig(ema_decay=0.0), epochs=2)
    assert plain.average is None and plain.evaluated is plain.model
    assert torch.equal(flat_weights(plain.net), flat_weights(run.net)), "EMA never touches the live weights"
    ema_scores = score(run.evaluated, run.eval_loader)
    live_scores = score(run.net, run.eval_loader)
    assert ema_scores.loss != live_scores.loss
    assert run.run_epoch(2)["val_loss"] == pytest.approx(score(run.average.model, run.eval_loader).loss)


def test_ema_update_rule_with_warmup_and_integer_buffers() -> None:
    live = torch.nn.BatchNorm1d(2)
    average = WeightAverage(live, decay=0.99)
    with torch.no_grad():
        live.weight.fill_(3.0)
    live.num_batches_tracked += 5
    average.step()  # first update: decay min(0.99, 1/10)
    assert average.model.weight.tolist() == pytest.approx([0.1 * 1.0 + 0.9 * 3.0] * 2)
    assert average.model.num_batches_tracked.item() == 5
    for _ in range(200):
        average.step()
    assert average.model.weight.tolist() == pytest.approx([3.0, 3.0], abs=1e-3)


def test_ema_every_updates_every_k_steps_with_the_compounded_decay() -> None:
    live = torch.nn.Linear(1, 1, bias=False)
    average = WeightAverage(live, decay=0.9, every=3)
    with torch.no_grad():
        live.weight.fill_(1.0)
        average.model.weight.fill_(0.0)
    average.updates = 1000  # past the warmup
    for _ in range(2):
        average.step()
    assert average.model.weight.item() == 0.0 and average.updates == 1000
    average.step()
    assert average.model.weight.item() == pytest.approx(1 - 0.9**3)


def test_lookahead_resets_the_live_weights_to_the_average() -> None:
    run = trained(TrainConfig(ema_decay=0.9, ema_every=2, lookahead=True), n=48, batch_size=16)
    assert run.average.steps == 3 and run.average.updates == 1
    assert not torch.equal(flat_weights(run.net), flat_weights(run.average.model)), "one step since the reset"
    run = trained(TrainConfig(ema_decay=0.9, ema_every=2, lookahead=True), n=64, batch_size=16)
    assert torch.equal(flat_weights(run.net), flat_weights(run.average.model))


def test_lookahead_without_ema_is_refused() -> None:
    with pytest.raises(ValueError, match="lookahead: true .* needs ema_decay > 0"):
        TrainConfig(lookahead=True)


def test_lookahead_without_ema_in_a_space_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("arch: {depths: [1], base_width: 8}\ntrain: {lookahead: true, ema_decay: {choice: [0.0, 0.9]}}\n")
    with pytest.raises(UserError, match=r"space.yaml: train: lookahead: true .* every draw needs ema_decay > 0"):
        load_space(str(path))


def test_checkpoints_export_the_ema_weights_and_resume_exactly(tmp_path: Path) -> None:
    train = TrainConfig(ema_decay=0.9, epochs=2)
    straight = trained(train, epochs=2)
    first = trained(train, epochs=1)
    first.save(tmp_path, epoch=1)
    exported = load_file(str(tmp_path / "model.safetensors"))
    assert torch.equal(exported["stem.0.weight"], first.average.model.stem[0].weight)
    assert not torch.equal(exported["stem.0.weight"], first.net.stem[0].weight)
    with global_settings(train, seed=1):  # another seed: everything must come from the checkpoint
        resumed = training(train)
        assert resumed.load(tmp_path) == 1
        torch.manual_seed(0)  # the global generator is not part of a checkpoint
        resumed.run_epoch(1)
    assert torch.equal(flat_weights(resumed.net), flat_weights(straight.net))
    assert torch.equal(flat_weights(resumed.average.model), flat_weights(straight.average.model))


# --- test-time augmentation ----------------------------------------------------------------


def test_tta_views_are_flips_and_one_pixel_shifts() -> None:
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    assert len(tta_views(images, "none")) == 1
    _, flipped = tta_views(images, "flip")
    assert torch.equal(flipped[..., 0], images[..., -1])
    views = tta_views(images, "flip_translate")
    assert len(views) == 6
    up_left, down_right = views[2], views[4]
    assert torch.equal(up_left[..., 1:, 1:], images[..., :-1, :-1])
    assert torch.equal(down_right[..., :-1, :-1], images[..., 1:, 1:])
    assert torch.equal(views[3], up_left.flip(-1))


class LeftRightModel(torch.nn.Module):
    """Says class 1 when the left half of the image is brighter, else class 0: not flip-invariant."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        left, right = images[..., :16].mean((1, 2, 3)), images[..., 16:].mean((1, 2, 3))
        logits = torch.zeros(len(images), 10)
        logits[:, 1] = (left - right) * 10
        logits[:, 0] = 0.5
        return logits


def test_tta_accuracy_averages_the_views() -> None:
    images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    images[:, :, :16] = 255  # bright left half
    loader = DeviceLoader(ImageSet(images, np.ones(4, dtype=np.int64)), 4, CPU, train=False)
    plain = score(LeftRightModel(), loader)
    assert plain.acc == 1.0 and plain.acc_tta is None
    assert score(LeftRightModel(), loader, "flip").acc_tta == 0.0, "the mirror view cancels the left-right cue"
    assert score(LeftRightModel(), loader, "flip").acc == 1.0, "val_acc itself stays un-augmented"


def _hand_tta_accuracy(model: torch.nn.Module, data: ImageSet) -> float:
    """flip_translate TTA counted by hand: logits averaged over the image, its one-pixel
    up-left and down-right shifts (reflect padding, with numpy) and their mirror images."""
    images = normalized(data.images).numpy()
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    shifts = [images, padded[..., :-2, :-2], padded[..., 2:, 2:]]
    views = [torch.from_numpy(np.ascontiguousarray(v)) for s in shifts for v in (s, s[..., ::-1])]
    with torch.no_grad():
        logits = [model.eval()(view) for view in views]
    averaged = sum(logits[1:], logits[0]) / len(logits)
    return int((averaged.argmax(1).numpy() == data.labels).sum()) / len(data)


def test_val_acc_tta_is_reported_only_when_tta_is_on() -> None:
    assert "val_acc_tta" not in trained(TrainConfig()).run_epoch(1)
    run = trained(TrainConfig(tta="flip_translate"), n=128)
    metrics = run.run_epoch(1)
    assert metrics["val_acc_tta"] == _hand_tta_accuracy(run.evaluated, random_images(128))
    assert metrics["val_acc_tta"] != metrics["val_acc"], "here the views change some predictions (seeded)"


# --- speed switches --------------------------------------------------------------------------


def test_precision_auto_is_float32_on_cpu_and_bf16_autocasts() -> None:
    assert resolve_runtime(TrainConfig(), CPU).autocast_dtype is None
    runtime = resolve_runtime(TrainConfig(precision="bf16"), CPU)
    assert runtime.autocast_dtype is torch.bfloat16
    layer, images = torch.nn.Linear(4, 2), torch.randn(3, 4)
    with runtime.autocast():
        assert layer(images).dtype is torch.bfloat16
    with resolve_runtime(TrainConfig(precision="fp32"), CPU).autocast():
        assert layer(images).dtype is torch.float32
    fp32 = trained(TrainConfig(precision="fp32")).run_epoch(1)
    bf16 = trained(TrainConfig(precision="bf16")).run_epoch(1)
    assert fp32["train_loss"] != bf16["train_loss"]
    assert fp32["train_loss"] == pytest.approx(bf16["train_loss"], rel=0.05)


def memory_formats_seen(run: Training) -> set[bool]:
    seen = set()
    run.net.register_forward_pre_hook(
        lambda module, args: seen.add(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    run.run_epoch(0)
    return seen


def test_channels_last_converts_the_model_and_every_batch() -> None:
    with global_settings(TrainConfig(), 0):
        default = training(TrainConfig())
        converted = training(TrainConfig(channels_last=True))
    weight = converted.net.stem[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert default.net.stem[0].weight.is_contiguous()
    assert memory_formats_seen(converted) == {True}
    assert memory_formats_seen(default) == {False}


def test_compile_wraps_the_model_and_checkpoints_stay_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The eager backend runs torch.compile's graph capture without the minute-long C++ build of
    # the default backend on a CPU; benchmarks/train_throughput.py times the real thing.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    assert resolve_runtime(TrainConfig(), CPU).compile in ("auto", False), "auto: per trial"
    assert resolve_runtime(TrainConfig(compile=True), CPU).compile is True
    run = trained(TrainConfig(compile=True), n=32)
    assert isinstance(run.model, torch._dynamo.eval_frame.OptimizedModule) and run.model._orig_mod is run.net
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    run.save(tmp_path, epoch=1)
    assert set(load_file(str(tmp_path / "model.safetensors"))) == set(run.net.state_dict())
    assert not isinstance(training(TrainConfig(compile=False)).model, torch._dynamo.eval_frame.OptimizedModule)
    torch._dynamo.reset()


def test_global_settings_set_and_restore_the_process_switches() -> None:
    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled())
    with global_settings(TrainConfig(cudnn_benchmark=True), 0):
        assert cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        assert not torch.empty(64).isnan().all()
    with global_settings(TrainConfig(cudnn_benchmark=False), 0):
        assert not cudnn.benchmark
    with global_settings(TrainConfig(deterministic=True), 0):
        assert torch.are_deterministic_algorithms_enabled() and cudnn.deterministic and not cudnn.benchmark
        assert torch.empty(64).isnan().all(), "uninitialised memory is filled, so it cannot leak into results"
    assert (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == before


# --- seeds, reproducibility, model regularizers ----------------------------------------------------


def full_run(cifar_dir: Path, train: TrainConfig, seed: int, model: ModelConfig = MODEL) -> tuple[list[dict], Training]:
    config = trial(train, model, seed, str(cifar_dir))
    train_set, val_set = train_val_split(cifar_dir, 0.1, 0)
    loader = DeviceLoader(train_set, train.batch_size, CPU, train=True, seed=seed)
    with global_settings(train, seed):
        run = Training(config, loader, DeviceLoader(val_set, 500, CPU, train=False), CPU)
        history = [run.run_epoch(epoch) for epoch in range(train.epochs)]
    return history, run


def test_a_config_and_seed_reproduce_val_acc_exactly(cifar_dir: Path) -> None:
    train = TrainConfig(epochs=2, batch_size=64, mixup_alpha=0.4, ema_decay=0.9, deterministic=True, tta="flip")
    first, first_run = full_run(cifar_dir, train, seed=3)
    second, second_run = full_run(cifar_dir, train, seed=3)
    assert [m["val_acc"] for m in first] == [m["val_acc"] for m in second]
    assert [m["val_acc_tta"] for m in first] == [m["val_acc_tta"] for m in second]
    assert torch.equal(flat_weights(first_run.net), flat_weights(second_run.net))
    _, other_run = full_run(cifar_dir, train, seed=4)
    assert not torch.equal(flat_weights(first_run.net), flat_weights(other_run.net))


# Model-side regularizers (the architecture's options) that the loop must switch on in training only.
# Explicit, and checked complete against ModelConfig below: a renamed or added field fails loudly.
MODEL_REGULARIZERS = ("dropout", "block_dropout", "drop_path")


def test_the_regularizer_cases_are_every_rate_of_the_model_config() -> None:
    rates = {name for name, field in ModelConfig.model_fields.items() if field.annotation is float}
    assert rates == set(MODEL_REGULARIZERS)


@pytest.mark.parametrize("option", MODEL_REGULARIZERS)
def test_model_regularizers_are_active_in_training_and_off_in_evaluation(option: str) -> None:
    regularized = trained(TrainConfig(lr=1e-9), model=MODEL.model_copy(update={option: 0.5}))
    plain = trained(TrainConfig(lr=1e-9))
    assert regularized.run_epoch(1)["train_loss"] != plain.run_epoch(1)["train_loss"]
    first, again = (score(regularized.evaluated, regularized.eval_loader) for _ in range(2))
    assert first == again, "evaluation is deterministic: the regularizer is off"


def test_every_training_key_is_reachable_from_a_space_file(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "arch: {depths: [1], base_width: 8}\n"
        "train:\n"
        "  nesterov: false\n  decay_norm_and_bias: false\n  grad_clip_norm: 2.0\n  schedule: multistep\n"
        "  warmup_epochs: 0.5\n  step_epochs: 3\n  milestones: {choice: [[0.3, 0.6], [0.5]]}\n  lr_gamma: 0.2\n"
        "  ema_decay: 0.99\n  ema_every: 5\n  lookahead: true\n  tta: flip_translate\n  precision: bf16\n"
        "  channels_last: true\n  compile: false\n  cudnn_benchmark: false\n  deterministic: true\n"
    )
    (config,) = sample_configs(load_space(str(path)), 1, seed=0, data_dir=tmp_path).configs
    assert config.train.model_dump() == {
        **TrainConfig().model_dump(),
        "nesterov": False, "decay_norm_and_bias": False, "grad_clip_norm": 2.0, "schedule": "multistep",
        "warmup_epochs": 0.5, "step_epochs": 3, "milestones": config.train.milestones, "lr_gamma": 0.2,
        "ema_decay": 0.99, "ema_every": 5, "lookahead": True, "tta": "flip_translate", "precision": "bf16",
        "channels_last": True, "compile": False, "cudnn_benchmark": False, "deterministic": True,
    }  # fmt: skip
    assert config.train.milestones in ((0.3, 0.6), (0.5,))
    assert TrialConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("compile: maybe", r"train.compile: 'maybe'"),
        ("milestones: [0.5, 1.5]", r"train.milestones: .*less than 1"),
        ("precision: fp16", r"train.precision: 'fp16': Input should be 'auto', 'fp32' or 'bf16'"),
        ("tta: {uniform: [0.0, 1.0]}", r"train.tta: uniform draws fractional numbers"),
        ("channels_last: 1", r"train.channels_last: 1: Input should be a valid boolean"),
        ("ema_decay: 1.0", r"train.ema_decay: 1.0: Input should be less than 1"),
    ],
)
def test_bad_training_values_name_the_key(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(f"arch: {{depths: [1], base_width: 8}}\ntrain:\n  {line}\n")
    with pytest.raises(UserError, match=message):
        load_space(str(path))
