"""Exact parameter and MAC counts, and solving widths so a model fills a parameter budget.

Counts build the model's real parts (stem, each block, tail, head; see
:mod:`raycifar.models`) on PyTorch's ``meta`` device, which allocates nothing, and cache
each part by what defines it: a network is mostly repeated blocks, so after the first
models a count is a sum of cached numbers. The total is exactly the full model's
``sum(p.numel())`` (tested for every registered variant).

Fitting (``base_width: fit``): stage widths follow ``base * 2**stage``, each rounded to a
multiple of ``width_multiple``, and the solver finds the widest such network within the
budget. It scales the *last* stage in steps of ``width_multiple`` (earlier stages are
rounded from it), because stepping the first stage by 8 would step the last by 64 and
leave up to 40% of the budget unused on deep networks.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

import torch
from torch import nn

from raycifar.config import ModelConfig
from raycifar.models.resnet import BlockSpec, Head, block_plan, make_block, make_stem, make_tail

IMAGE_SIZE = 32
MIN_SE_WIDTH = 1


def _on_meta(make, argument) -> nn.Module:
    with torch.device("meta"):
        return make(argument).eval()


def _on_cpu(make, argument) -> nn.Module:
    """The part on the CPU, for one forward pass that measures it. A forward on the meta
    device (or ``to_empty`` from it) would import torch's symbolic machinery (~0.4-0.7 s);
    initialising one part's weights takes milliseconds."""
    with torch.device("cpu"):
        return make(argument).eval()


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _macs_and_output(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """Multiply-accumulates of the convolutions and linear layers of a CPU ``module`` for one
    input of ``input_shape`` (C, H, W), and the output shape."""
    macs = 0

    def count(layer: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(layer, nn.Conv2d):
            kernel = layer.kernel_size[0] * layer.kernel_size[1]
            macs += output.numel() * kernel * layer.in_channels // layer.groups
        else:
            macs += output.numel() * layer.in_features

    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [layer.register_forward_hook(count) for layer in layers]
    with torch.no_grad():
        output = module(torch.zeros((1, *input_shape)))
    for handle in handles:
        handle.remove()
    return macs, tuple(output.shape[1:])


# --- the parts of a model, keyed by only what defines them ---------------------------------


def _stem_key(config: ModelConfig) -> ModelConfig:
    return ModelConfig(
        block=config.block, stem=config.stem, preact=config.preact, depths=(1,), widths=config.widths[:1]
    )


def _head_key(config: ModelConfig) -> ModelConfig:
    return ModelConfig(
        block=config.block, preact=config.preact, depths=(1,), widths=config.widths[-1:],
        head_hidden=config.head_hidden, num_classes=config.num_classes,
    )  # fmt: skip


def _block_key(spec: BlockSpec) -> BlockSpec:
    """Dropout and stochastic depth change neither parameters nor MACs."""
    return replace(spec, dropout=0.0, drop_path=0.0)


@lru_cache(maxsize=8192)
def _block_params(spec: BlockSpec) -> int:
    return _numel(_on_meta(make_block, spec))


@lru_cache(maxsize=1024)
def _stem_params(key: ModelConfig) -> int:
    return _numel(_on_meta(make_stem, key))


@lru_cache(maxsize=1024)
def _head_params(key: ModelConfig) -> int:
    return _numel(_on_meta(make_tail, key)) + _numel(_on_meta(Head, key))


@lru_cache(maxsize=8192)
def _block_macs(spec: BlockSpec, shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    return _macs_and_output(_on_cpu(make_block, spec), shape)


@lru_cache(maxsize=1024)
def _stem_macs(key: ModelConfig) -> tuple[int, tuple[int, ...]]:
    return _macs_and_output(_on_cpu(make_stem, key), (3, IMAGE_SIZE, IMAGE_SIZE))


@lru_cache(maxsize=1024)
def _head_macs(key: ModelConfig, shape: tuple[int, ...]) -> int:
    return _macs_and_output(_on_cpu(Head, key), shape)[0]


def count_params(config: ModelConfig) -> int:
    """Exact number of parameters of the model ``config`` describes."""
    blocks = sum(_block_params(_block_key(spec)) for stage in block_plan(config) for spec in stage)
    return _stem_params(_stem_key(config)) + blocks + _head_params(_head_key(config))


def count_macs(config: ModelConfig) -> int:
    """Multiply-accumulates of one forward pass on a 32x32 image (convolutions and linear layers)."""
    macs, shape = _stem_macs(_stem_key(config))
    for stage in block_plan(config):
        for spec in stage:
            block_macs, shape = _block_macs(_block_key(spec), shape)
            macs += block_macs
        if config.pool_after_stage:  # 2x2 stride-1 max-pool: one pixel smaller
            shape = (shape[0], shape[1] - 1, shape[2] - 1)
    return macs + _head_macs(_head_key(config), shape)


# --- fitting to a budget --------------------------------------------------------------------


def scaled_widths(last_width: int, stages: int, multiple: int) -> tuple[int, ...]:
    """Widths halving from ``last_width`` backwards, each rounded to a multiple of ``multiple``."""
    return tuple(
        max(multiple, math.floor(last_width / 2 ** (stages - 1 - stage) / multiple + 0.5) * multiple)
        for stage in range(stages)
    )


def _largest_within(size, budget: int, guess: int) -> int:
    """The largest step ``k >= 1`` with ``size(k) <= budget``, for a non-decreasing ``size``
    that grows about quadratically; 1 when even ``k = 1`` is over budget.

    Starts from a quadratic-growth estimate made at ``guess`` and then walks one step at a
    time, so a typical fit costs three or four counts.
    """
    step = max(1, math.floor(guess * math.sqrt(budget / size(guess))))
    while step > 1 and size(step) > budget:  # over: re-estimate downwards
        step = max(1, min(step - 1, math.floor(step * math.sqrt(budget / size(step)))))
    while size(step + 1) <= budget:  # under: walk up to the last step that fits
        step += 1
    return step


def fit_widths(config: ModelConfig, budget: int, multiple: int = 8) -> ModelConfig:
    """``config`` with the widest stage widths (multiples of ``multiple``) within ``budget``
    parameters; the narrowest when none fits (check with :func:`count_params`)."""
    stages = len(config.depths)

    def with_widths(step: int) -> ModelConfig:
        return config.model_copy(update={"widths": scaled_widths(step * multiple, stages, multiple)})

    guess = max(1, round(config.widths[-1] / multiple))
    return with_widths(_largest_within(lambda k: count_params(with_widths(k)), budget, guess))


def fit_se_width(config: ModelConfig, budget: int) -> ModelConfig:
    """``config`` with the largest squeeze-and-excitation hidden width within ``budget``
    parameters; width 1 when none fits (check with :func:`count_params`).

    Parameters grow linearly with the SE width, so two counts give the answer and a
    third confirms it.
    """

    def with_se(width: int) -> ModelConfig:
        return config.model_copy(update={"se_width": width, "se_ratio": 0})

    first = count_params(with_se(MIN_SE_WIDTH))
    if first > budget:
        return with_se(MIN_SE_WIDTH)
    per_unit = count_params(with_se(MIN_SE_WIDTH + 1)) - first
    width = MIN_SE_WIDTH + (budget - first) // per_unit
    while count_params(with_se(width)) > budget:  # guards the linearity assumption
        width -= 1
    return with_se(width)
