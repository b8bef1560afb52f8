"""Writes ``tests/data/pre_timm_se_entry/``: a model entry as raycifar wrote it before its
squeeze-and-excitation layers came from timm (SE convs named ``se.reduce``/``se.expand``).

The committed files were made by this script at commit f069e12, the last commit with
raycifar's own ``SqueezeExcite``; running it on later code writes timm's key names
(``se.fc1``/``se.fc2``) instead, so do not regenerate the fixture.

    PYTHONPATH=. python tests/data/make_pre_timm_se_entry.py

Files: ``model.safetensors`` and ``config.json`` (written by ``save_model_files``, as every
entry is) and ``expected.safetensors`` with ``inputs`` (2, 3, 8, 8) and the eval-mode
``logits`` (2, 10) that model gave them. Every float weight and buffer is drawn at random
(running variances kept positive) so that the batch norms and SE biases all matter.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.export import save_model_files
from raycifar.models import build_model

FOLDER = Path(__file__).parent / "pre_timm_se_entry"
MODEL = ModelConfig(depths=(1, 1), widths=(4, 8), se_width=2, drop_path=0.1)


def main() -> None:
    torch.manual_seed(0)
    model = build_model(MODEL).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(
                    torch.rand_like(tensor) + 0.5 if name.endswith("running_var") else torch.randn_like(tensor) * 0.5
                )
    config = TrialConfig(
        space="pre_timm_fixture", data_dir="unused", params=sum(p.numel() for p in model.parameters()),
        model=MODEL, train=TrainConfig(),
    )  # fmt: skip
    FOLDER.mkdir(exist_ok=True)
    save_model_files(FOLDER, model, config)
    inputs = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        logits = model(inputs)
    save_file({"inputs": inputs, "logits": logits}, str(FOLDER / "expected.safetensors"))


if __name__ == "__main__":
    main()
