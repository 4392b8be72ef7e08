"""Structural re-parameterisation: multi-branch convolutions for training, one 3x3 for inference.

RepVGG (Ding et al., CVPR 2021) and ECBSR (Zhang et al., ACM MM 2021) train each 3x3
convolution as a sum of linear branches and fuse them into a single 3x3 convolution after
training, so the network trains like a wider, deeper one and runs like a plain one. Here::

    RepConv3(x) = conv3x3(x) + conv1x1(x) + gamma * x + conv3x3'(pad_b(conv1x1'(x)))

(the identity only when in and out channels agree; ``pad_b`` pads the expanded features with
their bias, ECBSR's trick that makes the 1x1 -> 3x3 chain exactly a 3x3 convolution at the
borders too). Every branch is linear, so :meth:`RepConv3.fused` gives one ``nn.Conv2d`` with
the same output up to float rounding. The extra branches start at zero (``gamma = 0``, the
1x1 and the chain's last convolution zero), so a network initialised from plain weights
(``init_from`` a ``plainsr`` checkpoint: the main branch has the plain layer's tensor names)
starts at exactly that network.

``plainsr_rep`` is :class:`~superres.models.plainsr.PlainSR` built from these blocks; its
:meth:`PlainSRRep.deploy` returns the equivalent ``plainsr`` module, which is what training
exports and what ships: inference cost and speed are those of the fast tier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from superres.models.plainsr import check_tail_kernel
from superres.models.registry import create_model, register_model

__all__ = ["PlainSRRep", "RepConv3"]


class RepConv3(nn.Conv2d):
    """A 3x3 convolution trained as four linear branches (the main 3x3 is ``self``).

    Args:
        in_channels, out_channels: As for ``nn.Conv2d``.
        expand: Width of the 1x1 -> 3x3 chain, as a multiple of ``out_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, expand: int = 2) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1)
        width = expand * out_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        self.expand = nn.Conv2d(in_channels, width, 1)
        self.squeeze = nn.Conv2d(width, out_channels, 3)
        self.gamma = (
            nn.Parameter(torch.zeros(out_channels)) if in_channels == out_channels else None
        )
        for conv in (self.conv1, self.squeeze):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x) + self.conv1(x)
        if self.gamma is not None:
            y = y + self.gamma[:, None, None] * x
        e = self.expand(x)
        b = self.expand.bias[:, None, None]
        e = F.pad(e - b, (1, 1, 1, 1)) + b  # borders hold the bias, as conv1x1 of zeros would
        return y + self.squeeze(e)

    @torch.no_grad()
    def fused_weights(self) -> tuple[Tensor, Tensor]:
        """``(weight, bias)`` of the one 3x3 convolution equal to the four branches."""
        weight = self.weight.clone()
        bias = self.bias.clone()
        weight[:, :, 1, 1] += self.conv1.weight[:, :, 0, 0]
        bias += self.conv1.bias
        if self.gamma is not None:
            idx = torch.arange(self.out_channels)
            weight[idx, idx, 1, 1] += self.gamma
        # squeeze(expand(x)): W[o, i, u, v] = sum_e S[o, e, u, v] E[e, i]
        expand = self.expand.weight[:, :, 0, 0]  # (E, in)
        weight += torch.einsum("oeuv,ei->oiuv", self.squeeze.weight, expand)
        bias += self.squeeze.bias + torch.einsum("oeuv,e->o", self.squeeze.weight, self.expand.bias)
        return weight, bias

    def fused(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d(in, out, 3, padding=1)`` with :meth:`fused_weights`."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, padding=1)
        weight, bias = self.fused_weights()
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        return conv.to(self.weight.device, self.weight.dtype)


@register_model(
    "plainsr_rep",
    description="PlainSR trained with re-parameterisable 3x3 blocks (deploys as plainsr)",
)
class PlainSRRep(nn.Module):
    """The fast tier's training form: PlainSR whose 3x3 convolutions are :class:`RepConv3`.

    Args:
        scale: 2, 3 or 4.
        channels: Feature channels C.
        n_convs: Hidden 3x3 convolutions M between the first and the last one.
        expand: Width of each block's 1x1 -> 3x3 chain, in multiples of its output channels.
        in_channels: Image channels.
        tail_kernel: 3 (a re-parameterisable block) or 1 (a plain 1x1 convolution, which has
            no branches to fuse) for the last convolution, as in ``plainsr``.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 32,
        n_convs: int = 4,
        expand: int = 2,
        in_channels: int = 3,
        tail_kernel: int = 3,
    ) -> None:
        super().__init__()
        check_tail_kernel(tail_kernel)
        layers: list[nn.Module] = [RepConv3(in_channels, channels, expand), nn.PReLU(channels)]
        for _ in range(n_convs):
            layers += [RepConv3(channels, channels, expand), nn.PReLU(channels)]
        out = in_channels * scale * scale
        tail = RepConv3(channels, out, expand) if tail_kernel == 3 else nn.Conv2d(channels, out, 1)
        layers.append(tail)
        self.body = nn.Sequential(*layers)
        self.scale = scale
        self.receptive_field = n_convs + 1 + tail_kernel // 2
        self.plain_hparams = {"channels": channels, "n_convs": n_convs, "in_channels": in_channels}
        if tail_kernel != 3:  # the default stays out of the deployed file's hyperparameters
            self.plain_hparams["tail_kernel"] = tail_kernel

    def forward(self, x: Tensor) -> Tensor:
        f = self.body(x) + torch.repeat_interleave(x, self.scale * self.scale, dim=1)
        return F.pixel_shuffle(f, self.scale)

    def deploy(self) -> nn.Module:
        """The equivalent ``plainsr`` module (one 3x3 convolution per block), for inference."""
        plain = create_model("plainsr", scale=self.scale, **self.plain_hparams)
        plain = plain.to(next(self.parameters()).device)
        for target, source in zip(plain.body, self.body, strict=True):
            if isinstance(source, RepConv3):
                weight, bias = source.fused_weights()
                with torch.no_grad():
                    target.weight.copy_(weight)
                    target.bias.copy_(bias)
            else:
                target.load_state_dict(source.state_dict())
        return plain.train(self.training)
