"""PlainSR: the fast tier. A plain stack of 3x3 convolutions at LR resolution, one sub-pixel
convolution and a nearest-neighbour image residual (the inference form of ECBSR, Zhang et al.,
ACM MM 2021, and of ABPN).

x -> conv3 (C) -> PReLU -> [conv3 (C) -> PReLU] x M -> conv3 (3 s^2) -> + repeat(x, s^2)
  -> PixelShuffle(s) -> y

Adding the input repeated ``s^2`` times before the shuffle adds its nearest-neighbour
upsampling to the output, so the network only learns the residual detail. Every operation is
a plain convolution or elementwise, which is what CPUs, ONNX runtimes and mobile NPUs run
fastest.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from superres.models.registry import register_model


def check_tail_kernel(tail_kernel: int) -> None:
    """PlainSR's last convolution is 3x3 or 1x1."""
    if tail_kernel not in (1, 3):
        raise ValueError(f"tail_kernel must be 1 or 3, got {tail_kernel!r}")


@register_model(
    "plainsr",
    description="PlainSR: M 3x3 convs at LR, sub-pixel output, nearest residual (fast tier)",
)
class PlainSR(nn.Module):
    """A plain convolutional SR network (the fast tier).

    Args:
        scale: 2, 3 or 4.
        channels: Feature channels C.
        n_convs: Hidden 3x3 convolutions M between the first and the last one.
        in_channels: Image channels.
        tail_kernel: Kernel size of the last convolution (to the sub-pixel channels), 3 or
            1; a 1x1 tail does 8 x C x 3 s^2 fewer multiply-adds per LR pixel than a 3x3
            (a quarter of a 16-channel x4 network's) and sees one pixel less each side.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 32,
        n_convs: int = 4,
        in_channels: int = 3,
        tail_kernel: int = 3,
    ) -> None:
        super().__init__()
        check_tail_kernel(tail_kernel)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.PReLU(channels),
        ]
        for _ in range(n_convs):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.PReLU(channels)]
        out = in_channels * scale * scale
        layers.append(nn.Conv2d(channels, out, tail_kernel, padding=tail_kernel // 2))
        self.body = nn.Sequential(*layers)
        self.scale = scale
        self.receptive_field = n_convs + 1 + tail_kernel // 2

    def forward(self, x: Tensor) -> Tensor:
        # Same result as shuffle(body(x) + repeat_interleave(x, s*s, dim=1)) without the
        # repeated copy of x: channel c*s*s + i*s + j of the body output at LR pixel (y, x)
        # is output pixel (c, y*s + i, x*s + j) (PixelShuffle's order), so the residual
        # broadcasts over (i, j); then one permuted copy moves the pixels. A channels-last
        # input gives a channels-last output (a row-major H x W x C image in memory, which
        # the engine turns into bytes without another transpose). ATen's pixel_shuffle
        # writes NCHW and is slower: the slim fast x4's module took 158 ms with it against
        # 115 ms with this copy (640x480, 2 cores, benchmarks/cpu_fast_path.py).
        n, c, h, w = x.shape
        s = self.scale
        res = x[:, :, None, None]  # (n, c, 1, 1, h, w)
        y = self.body(x).unflatten(1, (c, s, s))  # (n, c, s, s, h, w)
        # in place without autograd; the sum is used (not the body's output), so that a
        # traced graph (ONNX export) carries the addition
        y = y + res if torch.is_grad_enabled() else y.add_(res)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return y.permute(0, 4, 2, 5, 3, 1).reshape(n, h * s, w * s, c).permute(0, 3, 1, 2)
        return y.permute(0, 1, 4, 2, 5, 3).reshape(n, c, h * s, w * s)
