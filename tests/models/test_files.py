"""Model files written before raycifar's SE layers came from timm still load, to the same logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from timm.layers import SEModule

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import DeviceLoader, ImageSet
from raycifar.models.files import MODEL_FILE, load_model_files, rename_legacy_keys, save_model_files
from raycifar.models.resnet import build_model
from raycifar.train.loop import STATE_FILE, Training

CPU = torch.device("cpu")


def test_an_entry_written_before_timm_se_loads_and_gives_its_logits(tmp_path: Path) -> None:
    """An entry in the pre-timm layout (SE convs named ``se.reduce``/``se.expand``, as the old
    raycifar wrote them; the SE math itself is checked against plain torch in test_models)."""
    model = ModelConfig(depths=(1, 1), widths=(4, 8), se_width=2, drop_path=0.1)
    config = TrialConfig(space="test", data_dir="unused", params=1, model=model, train=TrainConfig())
    torch.manual_seed(0)
    today = build_model(model).eval()
    with torch.no_grad():  # random batch-norm statistics too, so that every layer matters
        for module in today.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    inputs = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = today(inputs)
    save_model_files(tmp_path, today, config)
    save_file(_old_names(load_file(str(tmp_path / MODEL_FILE))), str(tmp_path / MODEL_FILE))
    old_weights = load_file(str(tmp_path / MODEL_FILE))
    assert "stages.1.0.se.reduce.weight" in old_weights and not any(".se.fc1." in k for k in old_weights)

    loaded, _ = load_model_files(tmp_path)
    se = loaded.stages[1][0].se
    assert isinstance(se, SEModule)
    assert torch.equal(se.fc1.weight, old_weights["stages.1.0.se.reduce.weight"])
    assert torch.equal(se.fc2.bias, old_weights["stages.1.0.se.expand.bias"])
    with torch.no_grad():
        assert torch.allclose(loaded(inputs), expected, rtol=1e-5, atol=1e-5)


def test_only_se_reduce_and_expand_keys_are_renamed() -> None:
    state = {
        "stages.0.1.se.reduce.weight": 1, "stages.0.1.se.expand.bias": 2, "head.reduce.weight": 3,
        "stages.0.2.se.fc1.weight": 4, "stages.0.1.conv1.weight": 5,
    }  # fmt: skip
    assert rename_legacy_keys(state) == {
        "stages.0.1.se.fc1.weight": 1, "stages.0.1.se.fc2.bias": 2, "head.reduce.weight": 3,
        "stages.0.2.se.fc1.weight": 4, "stages.0.1.conv1.weight": 5,
    }  # fmt: skip


def _old_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Today's SE keys back to the pre-timm names (``se.fc1`` -> ``se.reduce``, ``se.fc2`` -> ``se.expand``)."""
    return {k.replace(".se.fc1.", ".se.reduce.").replace(".se.fc2.", ".se.expand."): v for k, v in state.items()}


def _training(seed: int) -> Training:
    rng = np.random.default_rng(0)
    images = ImageSet(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 16))
    model = ModelConfig(depths=(1, 1), widths=(8, 16), se_width=3)
    config = TrialConfig(
        space="test", data_dir="unused", params=1, seed=seed, model=model, train=TrainConfig(ema_decay=0.9)
    )
    torch.manual_seed(seed)
    loader = DeviceLoader(images, 8, CPU, train=True, seed=0)
    return Training(config, loader, DeviceLoader(images, 8, CPU, train=False), CPU)


def test_a_checkpoint_written_before_timm_se_resumes(tmp_path: Path) -> None:
    """Both the exported (EMA) weights and the live weights in the resume state are renamed."""
    first = _training(seed=0)
    with torch.no_grad():
        first.net.stages[1][0].se.fc1.weight.add_(1.0)  # live and averaged weights differ
    first.save(tmp_path, epoch=1)
    save_file(_old_names(load_file(str(tmp_path / MODEL_FILE))), str(tmp_path / MODEL_FILE))
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    state["live_model"] = _old_names(state["live_model"])
    torch.save(state, tmp_path / STATE_FILE)
    assert "stages.1.0.se.reduce.weight" in load_file(str(tmp_path / MODEL_FILE))
    resumed = _training(seed=1)
    assert resumed.load(tmp_path) == 1
    for mine, theirs in ((resumed.net, first.net), (resumed.average.model, first.average.model)):
        assert all(
            torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values(), strict=True)
        )
    assert not torch.equal(resumed.net.stages[1][0].se.fc1.weight, resumed.average.model.stages[1][0].se.fc1.weight)


def test_an_airbench_entry_round_trips_through_load_model(tmp_path: Path) -> None:
    """convgroup blocks (max-pool, GELU, max-pooling head) export and load like every model."""
    import raycifar
    from raycifar.models.registry import variant_config

    model = variant_config("airbench", base_width=8, se_ratio=4)
    config = TrialConfig(space="test", data_dir="unused", params=1, model=model, train=TrainConfig())
    torch.manual_seed(0)
    trained = build_model(model).eval()
    with torch.no_grad():
        for module in trained.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
        inputs = torch.randn(3, 3, 32, 32)
        expected = trained(inputs)
    save_model_files(tmp_path, trained, config)
    loaded = raycifar.load_model(tmp_path)
    assert read_block(tmp_path) == "convgroup"
    with torch.no_grad():
        assert torch.equal(loaded(inputs), expected)


def read_block(folder: Path) -> str:
    """The block kind recorded in an entry's config.json."""
    import json

    return json.loads((folder / "config.json").read_text())["model"]["block"]
