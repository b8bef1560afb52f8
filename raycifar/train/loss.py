"""The batch loss: the training loss of one batch with its batch regularizers, the same for
every loader.

- Mixup and CutMix through timm's ``Mixup`` (batch mode: each image is paired with its
  mirror in the batch; with both on, ``mix_switch_prob`` is the chance of CutMix).
- Label smoothing (by timm on mixed targets, by ``cross_entropy`` otherwise: the same formula).
- AugMix's Jensen–Shannon consistency loss (``augment.augmix_jsd`` > 0): the batch holds
  each image and two AugMix views of it (:mod:`raycifar.data.augmix`).
- Per-class loss weights: each image's loss is scaled by its class's weight (soft targets
  weigh each class's share), then averaged over the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from raycifar.data.augmix import jensen_shannon
from raycifar.data.catalog import class_names
from raycifar.errors import UserError

if TYPE_CHECKING:
    from timm.data import Mixup

    from raycifar.config import TrainConfig, TrialConfig


def class_weight_vector(weights: dict[str, float], names: tuple[str, ...]) -> tuple[float, ...]:
    """One weight per class, in label order: ``weights[name]``, else 1.0."""
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise UserError(f"class_weights: {unknown[0]!r} is not a class name ({', '.join(names[:10])}, …)")
    return tuple(float(weights.get(name, 1.0)) for name in names)


class BatchLoss:
    """Callable ``(model, images, labels) -> loss`` applying the trial's batch regularizers.

    timm's ``Mixup`` draws from NumPy's global generator: :meth:`set_epoch` seeds it so an
    epoch mixes the same way after a resume. Mixing pairs images by flipping the batch, so
    an odd batch leaves its last image out of a mixed step.
    """

    def __init__(
        self,
        train: TrainConfig,
        num_classes: int,
        class_weights: torch.Tensor | None = None,
        seed: int = 0,
        consistency: float = 0.0,
    ) -> None:
        self.smoothing = train.label_smoothing
        self.consistency = consistency
        self.weight = class_weights
        self.seed = seed
        self.mixup: Mixup | None = None
        if train.mixup_alpha > 0 or train.cutmix_alpha > 0:
            from timm.data import Mixup  # timm (and torchvision, wandb under it) only when mixing

            self.mixup = Mixup(
                mixup_alpha=train.mixup_alpha,
                cutmix_alpha=train.cutmix_alpha,
                switch_prob=train.mix_switch_prob,
                mode="batch",
                label_smoothing=train.label_smoothing,
                num_classes=num_classes,
            )

    @classmethod
    def for_trial(cls, config: TrialConfig, device: torch.device) -> BatchLoss:
        """The batch loss of a trial config, with its class weights on ``device``."""
        weights = None
        if config.class_weights:
            names = class_names(config.dataset, config.label_mode)
            weights = torch.tensor(class_weight_vector(config.class_weights, names), device=device)
        return cls(config.train, config.model.num_classes, weights, config.seed, config.augment.augmix_jsd)

    def set_epoch(self, epoch: int) -> None:
        """Seed the mixing draws of epoch ``epoch``."""
        np.random.seed((self.seed * 100_003 + epoch) % 2**32)

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.consistency > 0:
            return self._with_consistency(model(images), labels)
        if self.mixup is None:
            return self._cross_entropy(model(images), labels)
        if len(labels) % 2:
            images, labels = images[:-1], labels[:-1]
        mixed, targets = self.mixup(images, labels)
        return nn.functional.cross_entropy(model(mixed), targets, weight=self.weight, reduction="none").mean()

    def _cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        losses = nn.functional.cross_entropy(
            logits, labels, weight=self.weight, label_smoothing=self.smoothing, reduction="none"
        )
        return losses.mean()

    def _with_consistency(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss on the clean third of a (3N, classes) batch plus ``consistency`` times the
        Jensen–Shannon divergence of the clean and the two AugMix views (AugMix's loss)."""
        if len(logits) != 3 * len(labels):
            raise ValueError(f"augmix_jsd needs 3 views per image: {len(logits)} outputs for {len(labels)} labels")
        return self._cross_entropy(logits[: len(labels)], labels) + self.consistency * jensen_shannon(logits)
