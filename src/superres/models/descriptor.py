"""``SRModel``: a module together with what callers need to know about it (spandrel-style)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["SRModel"]


@dataclass(eq=False, repr=False)
class SRModel:
    """A super-resolution network and its descriptor; callable on image tensors.

    Attributes:
        module: The network: ``(N, in_channels, h, w) -> (N, out_channels, h*scale, w*scale)``.
        arch: Registered architecture name.
        scale: Integer upscaling factor.
        in_channels: Image channels taken (3: RGB).
        out_channels: Image channels produced.
        hparams: Complete hyperparameters, ``create_model(arch, **hparams)`` rebuilds it.
        metadata: Free-form facts: checkpoint fields (provenance, metrics, path), name...
        tiling: ``"exact"`` (tiled inference equals whole-image inference given enough
            overlap) or ``"approximate"`` (global operations: tiles only approximate it).
        receptive_field: LR pixels around an output pixel's LR position that influence it.
        size_multiple: Input sides must be multiples of this (1: any size).
    """

    module: nn.Module
    arch: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    hparams: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    tiling: str = "exact"
    receptive_field: int = 0
    size_multiple: int = 1

    @classmethod
    def from_module(cls, module: nn.Module, metadata: dict[str, Any] | None = None) -> SRModel:
        """Wrap a module built by :func:`~superres.models.create_model`.

        Raises:
            ValueError: the module lacks the registry's attributes (``arch``, ``hparams``...).
        """
        missing = [
            a
            for a in ("arch", "scale", "hparams", "tiling", "receptive_field")
            if not hasattr(module, a)
        ]
        if missing:
            raise ValueError(
                f"{type(module).__name__} has no {', '.join(missing)}: build it with create_model"
            )
        in_channels = int(module.hparams.get("in_channels", 3))
        return cls(
            module=module,
            arch=module.arch,
            scale=int(module.scale),
            in_channels=in_channels,
            out_channels=int(module.hparams.get("out_channels", in_channels)),
            hparams=dict(module.hparams),
            metadata=dict(metadata or {}),
            tiling=module.tiling,
            receptive_field=int(module.receptive_field),
            size_multiple=int(getattr(module, "size_multiple", 1)),
        )

    @property
    def num_params(self) -> int:
        """Number of parameters (weights and biases)."""
        return sum(p.numel() for p in self.module.parameters())

    @property
    def device(self) -> torch.device:
        """Device of the weights (CPU for a parameter-free model)."""
        tensor = next(self._tensors(), None)
        return torch.device("cpu") if tensor is None else tensor.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point dtype of the weights (float32 for a parameter-free model)."""
        tensor = next((t for t in self._tensors() if t.is_floating_point()), None)
        return torch.float32 if tensor is None else tensor.dtype

    def _tensors(self):
        yield from self.module.parameters()
        yield from self.module.buffers()

    def __call__(self, x: Tensor) -> Tensor:
        """Super-resolve ``(N, C, h, w)`` or ``(C, h, w)`` under ``torch.inference_mode``.

        The input is moved to the model's device and dtype; the output stays there.
        """
        batched = x.ndim == 4
        if not batched and x.ndim != 3:
            raise ValueError(f"expected (N, C, h, w) or (C, h, w), got {tuple(x.shape)}")
        if x.shape[-3] != self.in_channels:
            raise ValueError(f"{self.arch} takes {self.in_channels} channels, got {x.shape[-3]}")
        with torch.inference_mode():
            x = x.to(device=self.device, dtype=self.dtype)
            y = self.module(x if batched else x[None])
        return y if batched else y[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Move the weights (in place) and return ``self``."""
        self.module.to(device=device, dtype=dtype)
        return self

    def eval(self) -> SRModel:
        """Put the module in evaluation mode and return ``self``."""
        self.module.eval()
        return self

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary (metadata values that are not JSON become strings)."""
        return {
            "arch": self.arch,
            "scale": self.scale,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "num_params": self.num_params,
            "tiling": self.tiling,
            "receptive_field": self.receptive_field,
            "size_multiple": self.size_multiple,
            "hparams": dict(self.hparams),
            "metadata": json.loads(json.dumps(self.metadata, default=str)),
        }

    def __repr__(self) -> str:
        extra = {k: v for k, v in self.hparams.items() if k != "scale"}
        args = ", ".join(f"{k}={v!r}" for k, v in extra.items())
        return (
            f"SRModel({self.arch} x{self.scale}: {self.num_params:,} params, "
            f"tiling={self.tiling}, receptive_field={self.receptive_field}"
            + (f", {args})" if args else ")")
        )
