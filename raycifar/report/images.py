"""The report's image grids: misclassified test images of the most confused class pairs,
each with a Grad-CAM heat map of the predicted class (``pytorch_grad_cam.GradCAM`` on the
last block of the model's last stage), as base64 PNGs ready for an ``<img src>``."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from raycifar.errors import UserError

PER_PAIR = 6  # images shown per confused pair
SCALE = 3  # 32 x 32 images are shown at 96 x 96 pixels


def png_data_url(rgb: np.ndarray) -> str:
    """An H x W x 3 uint8 image as a ``data:image/png;base64,...`` URL, enlarged ``SCALE`` times."""
    from PIL import Image

    image = Image.fromarray(rgb).resize((rgb.shape[1] * SCALE, rgb.shape[0] * SCALE), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def grad_cams(model_folder: Path, images: np.ndarray, classes: list[int], dataset: str) -> np.ndarray:
    """N x 32 x 32 x 3 uint8 overlays of the Grad-CAM heat map of class ``classes[i]`` on
    ``images[i]`` (N x 32 x 32 x 3 uint8), for the model exported in ``model_folder``."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from raycifar.data import CATALOG
    from raycifar.models.files import rebuild

    model, _ = rebuild(model_folder)
    stats = CATALOG[dataset]
    # contiguous: this torch's CPU backward crashed (SIGSEGV) on the permuted, channels-last strides
    scaled = torch.from_numpy(images).float().div(255).permute(0, 3, 1, 2).contiguous()
    normalised = (scaled - torch.tensor(stats.mean).view(1, 3, 1, 1)) / torch.tensor(stats.std).view(1, 3, 1, 1)
    with GradCAM(model=model, target_layers=[model.stages[-1][-1]]) as cam:
        maps = cam(input_tensor=normalised, targets=[ClassifierOutputTarget(c) for c in classes])
    return np.stack([show_cam_on_image(img / 255.0, m, use_rgb=True) for img, m in zip(images, maps, strict=True)])


def misclassified_grids(model_folder: Path, data_dir: Path, entry: dict) -> dict:
    """``{"pairs": [{"true", "predicted", "rate", "images": [{"image", "cam", "confidence",
    "index"}]}]}`` for the entry's most confused pairs (most confident mistakes first), or
    ``{"note": why not}`` when the test images cannot be read or do not match the predictions."""
    from raycifar.data import read_part

    row, names = entry["row"], entry["class_names"]
    try:
        test = read_part(data_dir, "test", row["dataset"] or "cifar10", row.get("label_mode") or "fine")
    except UserError as err:
        return {"note": f"the test images are not available ({err}); pass --data-dir to show them"}
    predictions = entry["predictions"]
    labels, predicted, probs = predictions["labels"], predictions["predicted"], predictions["probs"]
    if len(test) != len(labels) or not np.array_equal(test.labels.astype(np.int64), labels):
        return {"note": f"the test images in {data_dir} are not the ones the entry was evaluated on "
                        f"({len(test)} images and labels there, {len(labels)} predictions)"}  # fmt: skip
    pairs = []
    for pair in entry["confused"]:
        t, p = names.index(pair["true"]), names.index(pair["predicted"])
        chosen = np.flatnonzero((labels == t) & (predicted == p))
        chosen = chosen[np.argsort(-probs[chosen, p], kind="stable")][:PER_PAIR]
        cams = grad_cams(model_folder, test.images[chosen], [p] * len(chosen), row["dataset"] or "cifar10")
        images = [
            {"index": int(i), "confidence": float(probs[i, p]), "image": png_data_url(test.images[i]), "cam": png_data_url(c)}
            for i, c in zip(chosen, cams, strict=True)
        ]  # fmt: skip
        pairs.append({**pair, "images": images})
    return {"pairs": pairs, "data_dir": str(data_dir)}
