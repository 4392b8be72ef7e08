"""BurstLAFN, the learned fusion network of multi-image SR: the quality tier's body fed with
every registered frame of a burst at once, as their shift-and-add accumulation on the HR grid.

frames (B, N, C, h, w), shifts (B, N, 2) [, degradation, weights (B, N, h, w)]
  -> core.fusion.splat, summed (Gaussian splats, sigma 0.5 HR px) -> est (C, hs, ws), density
  -> z = [unshuffle_s(m (est - nearest(ref))), unshuffle_s(min(density, 4) / 4), area?]
     (C s^2 + s^2 + 1 channels at LR resolution; m = 1 where density > 0.05)
  f = head(ref) + burst_head(z) (1x1) -> [LAFB] x n -> conv3 -> + f -> conv3 (C s^2)
  -> + repeat(ref, s^2) -> PixelShuffle(s) -> (B, C, hs, ws)

``head``, the blocks and the tail have LAFN's names and shapes, and ``burst_head`` starts at
zero, so a BurstLAFN initialised from the quality tier's weights *is* the quality tier until
training teaches it to read the other frames. The accumulation places each sample where the
frame's sub-pixel motion puts it on the reference's HR grid, so the network sees what no
single frame holds (aliasing folded at different phases) at LR resolution: its cost hardly
grows with N. The last input channel tells the PSF (1: ``area``, a sensor's box; 0:
``bicubic``). A plain 4-D batch is a burst of one frame with the bicubic PSF, so the network
is also a single-image model (exact tiling) wherever one is accepted.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from superres.core.fusion import splat
from superres.models.lafn import LAFN
from superres.models.registry import register_model

__all__ = ["BurstLAFN", "degradation_flag"]

#: The PSF codes of the last input channel.
DEGRADATION_CODES = {"bicubic": 0.0, "area": 1.0}


def degradation_flag(degradation: str | float | Tensor | None, batch: int) -> Tensor:
    """``(batch,)`` float codes of :data:`DEGRADATION_CODES` (None: ``bicubic``)."""
    if degradation is None:
        degradation = "bicubic"
    if isinstance(degradation, str):
        if degradation not in DEGRADATION_CODES:
            raise ValueError(
                f"degradation must be one of {', '.join(DEGRADATION_CODES)}, got {degradation!r}"
            )
        return torch.full((batch,), DEGRADATION_CODES[degradation])
    flag = torch.as_tensor(degradation, dtype=torch.float32).reshape(-1)
    return flag.expand(batch) if flag.numel() == 1 else flag


@register_model(
    "burst_lafn",
    description="BurstLAFN: multi-frame fusion on the LAFN body (learned burst SR; N=1 is SISR)",
)
class BurstLAFN(LAFN):
    """Learned fusion of a registered burst (any number of frames).

    Args:
        scale: 2, 3 or 4.
        channels: Feature channels.
        n_blocks: LAFN blocks.
        reduced: Channels inside the spatial attention.
        in_channels: Image channels.
        sigma: Width (HR pixels) of the Gaussian each sample is splatted with.
    """

    burst = True

    def __init__(
        self,
        scale: int = 4,
        channels: int = 48,
        n_blocks: int = 6,
        reduced: int = 16,
        in_channels: int = 3,
        sigma: float = 0.5,
    ) -> None:
        super().__init__(scale, channels, n_blocks, reduced, in_channels)
        s2 = scale * scale
        self.burst_head = nn.Conv2d(in_channels * s2 + s2 + 1, channels, 1)
        nn.init.zeros_(self.burst_head.weight)
        nn.init.zeros_(self.burst_head.bias)
        self.unshuffle = nn.PixelUnshuffle(scale)
        self.sigma = float(sigma)
        # The splat reaches ceil(3 sigma) HR pixels: under one LR pixel for sigma < s / 3.
        self.receptive_field += 1

    @torch.no_grad()
    def accumulate(
        self,
        frames: Tensor,
        shifts: Tensor,
        degradation: str | float | Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        """The burst input ``z`` ``(B, C s^2 + s^2 + 1, h, w)`` (see the module docstring)."""
        b, n, c, h, w = frames.shape
        flat_weights = None if weights is None else weights.reshape(b * n, h, w)
        total = splat(frames.reshape(b * n, c, h, w).float(), shifts.reshape(b * n, 2),
                      self.scale, sigma=self.sigma, weights=flat_weights, bursts=b)  # fmt: skip
        return self._planes(total, frames[:, 0].float(), degradation)

    @torch.no_grad()
    def accumulate_one(self, x: Tensor) -> Tensor:
        """:meth:`accumulate` of single frames without motion (bicubic PSF), with constant
        kernels and slices, so that it traces (ONNX export) and tiles like a convolution.

        The same splat as :func:`superres.core.fusion.splat`: sample ``i`` lands at HR
        position ``(i + 1/2) s - 1/2``, one separable strided transposed convolution."""
        s, sigma, c = self.scale, self.sigma, x.shape[1]
        radius = max(1, math.ceil(3 * sigma))
        size = 2 * radius + 1
        centre = 0.5 * s - 0.5
        phase = centre - math.floor(centre)
        taps = [math.exp(-((t - radius - phase) ** 2) / (2 * sigma**2)) for t in range(size)]
        # constants of static shape (traced as initialisers, as ONNX's ConvTranspose needs)
        kx = torch.tensor([[[taps]]] * (c + 1), dtype=torch.float32, device=x.device)
        ky = torch.tensor([[[[v] for v in taps]]] * (c + 1), dtype=torch.float32, device=x.device)
        values = torch.cat([x.float(), torch.ones_like(x[:, :1]).float()], 1)
        out = F.conv_transpose2d(values, kx, stride=(1, s), groups=c + 1)
        out = F.conv_transpose2d(out, ky, stride=(s, 1), groups=c + 1)
        # Transposed-convolution index T is HR position T + first, first = floor(centre) - r.
        before = radius - math.floor(centre)  # T entries before HR position 0
        after = size - s - before  # and after the last HR position
        pad = max(0, -before, -after)
        if pad:
            out = F.pad(out, (pad, pad, pad, pad))
        lo, hi = before + pad, after + pad
        total = out[..., lo : out.shape[-2] - hi, lo : out.shape[-1] - hi]
        return self._planes(total, x.float(), None)

    def _planes(self, total: Tensor, ref: Tensor, degradation: str | float | Tensor | None):
        """``z`` from the summed splats ``(B, C + 1, h s, w s)`` and the reference frame."""
        c = ref.shape[1]
        s = self.scale
        density = total[:, c:]
        est = total[:, :c] / density.clamp(min=1e-6)
        nearest = ref.repeat_interleave(s, -2).repeat_interleave(s, -1)
        seen = (density > 0.05).to(est.dtype)
        planes = torch.cat(
            [self.unshuffle((est - nearest) * seen), self.unshuffle(density.clamp(max=4) / 4)], 1
        )
        if degradation is None:  # bicubic: code 0, without a batch-sized tensor (tracing)
            return torch.cat([planes, torch.zeros_like(planes[:, :1])], 1)
        b, _, h, w = planes.shape
        flag = degradation_flag(degradation, b).to(planes)
        return torch.cat([planes, flag[:, None, None, None].expand(b, 1, h, w)], 1)

    def forward(
        self,
        x: Tensor,
        shifts: Tensor | None = None,
        degradation: str | float | Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        """``x``: ``(B, C, h, w)`` (one frame each) or a burst ``(B, N, C, h, w)`` whose frame
        0 is the reference, with ``shifts`` ``(B, N, 2)`` (LR pixels, ``(dy, dx)``, the sign
        of :func:`superres.core.registration.phase_correlation`; None: all zero), the PSF
        (``"area"``, ``"bicubic"`` or ``(B,)`` codes; None: bicubic) and optional robustness
        ``weights`` ``(B, N, h, w)``. Returns ``(B, C, h s, w s)`` on frame 0's
        HR grid."""
        if x.ndim == 4 and shifts is None and weights is None and degradation is None:
            ref = x
            z = self.accumulate_one(x).to(ref.dtype)
        else:
            frames = x[:, None] if x.ndim == 4 else x
            if shifts is None:
                shifts = torch.zeros(frames.shape[0], frames.shape[1], 2)
            ref = frames[:, 0]
            z = self.accumulate(frames, shifts, degradation, weights).to(ref.dtype)
        if self.head.weight.is_contiguous(memory_format=torch.channels_last):
            # a channels-last network (training, or inference on CPU): match its layout
            ref = ref.contiguous(memory_format=torch.channels_last)
            z = z.contiguous(memory_format=torch.channels_last)
        return self.reconstruct(self.head(ref) + self.burst_head(z), ref)
