"""Counting floating-point operations of a model's forward pass with forward hooks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_flops", "flops_per_output_pixel"]


def _layer_flops(layer: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    """2 x multiply-adds of one Conv2d / ConvTranspose2d / Linear call (bias ignored)."""
    if isinstance(layer, nn.Conv2d):
        kernel = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        return 2 * kernel * out.numel()
    if isinstance(layer, nn.ConvTranspose2d):  # every input value is spread over a kernel
        kernel = layer.out_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        return 2 * kernel * inputs[0].numel()
    if isinstance(layer, nn.Linear):
        return 2 * layer.in_features * out.numel()
    return 0


def count_flops(module, lr_hw: tuple[int, int] = (64, 64)) -> int:
    """FLOPs of one forward pass on a single ``lr_hw`` image.

    Multiply-adds count two; convolutions, transposed convolutions and linear layers are
    counted, elementwise operations, pooling and resampling are not.

    Args:
        module: An ``nn.Module`` built by ``create_model`` or an ``SRModel``.
        lr_hw: Input height and width.
    """
    module = getattr(module, "module", module)
    in_channels = getattr(module, "hparams", {}).get("in_channels", 3)
    total = 0

    def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += _layer_flops(layer, inputs, out)

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        param = next(module.parameters(), None)
        x = torch.zeros(1, in_channels, *lr_hw, device=None if param is None else param.device)
        with torch.inference_mode():
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    return total


def flops_per_output_pixel(model, lr_hw: tuple[int, int] = (32, 32)) -> float:
    """FLOPs per HR output pixel, measured on an ``lr_hw`` input."""
    scale = getattr(model, "scale", None) or model.module.scale
    return count_flops(model, lr_hw) / (lr_hw[0] * lr_hw[1] * scale * scale)
