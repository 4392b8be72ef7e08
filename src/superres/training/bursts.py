"""Synthetic training bursts for multi-frame models, deterministic from (seed, iteration, k).

Data flow (the benchmark protocol of :mod:`superres.core.burst`, widened)::

    (seed, iteration) --rng--> N, the burst length of the whole batch
    (seed, iteration, k) --rng--> image, crop, dihedral transform, downscaler, noise sigma,
        for every frame j >= 1 an integer HR shift in [-m s, (m + 1) s)^2 (m = ``motion``)
        and, with probability ``subpixel``, a fractional HR shift in [0, 1)^2
    HR region (uint8, transformed) --translate by the fraction (cubic)--> crop at the integer
        shift --downscale (area: s x s box; bicubic: MATLAB imresize, with 2 LR pixels of
        context) --> + noise --> round to 8 bits --> frame j      (frame 0: no shift)
    --> frames (N, 3, p, p) uint8, shifts (N, 2) LR pixels + registration-like jitter,
        PSF code (1 area, 0 bicubic), HR (3, p s, p s) uint8 on frame 0's grid

The shifts the model is given carry a Gaussian error of ``jitter`` LR pixels (frame 0 none),
about what :func:`superres.core.registration.register` leaves on real images, so the model
learns to tolerate it. A batch shares N so that it stacks; N varies between iterations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from superres.core.burst import downscale
from superres.core.degrade import dihedral
from superres.core.fusion import translate
from superres.core.resize import quantize
from superres.training.data import TrainPair

__all__ = ["BurstDataset"]

#: LR pixels of context around a bicubic frame (the kernel's support at scale s is 2 s HR).
_CONTEXT = 2


class BurstDataset(Dataset):
    """Random synthetic bursts; item ``g`` is sample ``divmod(g, batch)`` = (iteration, k).

    Args:
        pairs: Training images (only their HR arrays are used).
        scale: Upscaling factor.
        patch: LR side of each frame.
        batch: Global batch size (the item index is ``iteration * batch + k``).
        seed: Seeds every draw.
        frames: Burst lengths to draw N from (uniformly, once per iteration).
        downscalers: ``area`` and/or ``bicubic``, drawn uniformly per sample.
        motion: Whole LR pixels of motion allowed beyond the protocol's [0, 1).
        subpixel: Probability that a frame's shift has a random fractional HR part.
        jitter: Standard deviation (LR pixels) of the error added to the given shifts.
        noise: Largest Gaussian noise sigma (on [0, 1]); each sample draws one in [0, noise].
        augment: Apply one of the 8 dihedral transforms.

    Raises:
        ValueError: no image is large enough for the crop, or a bad argument.
    """

    def __init__(
        self,
        pairs: Sequence[TrainPair],
        scale: int,
        patch: int,
        batch: int,
        seed: int,
        *,
        frames: Sequence[int],
        downscalers: Sequence[str] = ("area", "bicubic"),
        motion: int = 1,
        subpixel: float = 0.5,
        jitter: float = 0.02,
        noise: float = 0.0,
        augment: bool = True,
    ) -> None:
        if not frames or min(frames) < 1:
            raise ValueError(f"burst lengths must be >= 1, got {tuple(frames)}")
        self.scale, self.patch, self.batch, self.seed = scale, patch, batch, seed
        self.frames, self.downscalers = tuple(frames), tuple(downscalers)
        self.motion, self.subpixel, self.jitter = motion, subpixel, jitter
        self.noise, self.augment = noise, augment
        # HR margin around the target crop: motion, one more LR pixel of shift, the bicubic
        # context and the cubic translation's taps.
        self.margin = (motion + 1 + _CONTEXT) * scale + 2
        self.region = patch * scale + 2 * self.margin
        self.pairs = [p for p in pairs if min(p.hr.shape[:2]) >= self.region]
        self.skipped = [p.name for p in pairs if min(p.hr.shape[:2]) < self.region]
        if not self.pairs:
            raise ValueError(
                f"no training image is large enough for {self.region}x{self.region} HR burst "
                f"crops ({patch}x{patch} LR frames at x{scale}); lower data.patch"
            )

    def __len__(self) -> int:
        return len(self.pairs)  # nominal: indices are (iteration * batch + k), unbounded

    def burst_length(self, iteration: int) -> int:
        """N of every sample of ``iteration``."""
        rng = np.random.default_rng([self.seed, iteration, 1 << 20])
        return self.frames[int(rng.integers(len(self.frames)))]

    def sample(self, iteration: int, k: int) -> tuple[torch.Tensor, ...]:
        """``(frames uint8 (N, 3, p, p), shifts float32 (N, 2), psf code float32 (),
        hr uint8 (3, p s, p s))`` of sample ``k`` of ``iteration``."""
        n, s, p, m = self.burst_length(iteration), self.scale, self.patch, self.margin
        rng = np.random.default_rng([self.seed, iteration, k])
        pair = self.pairs[int(rng.integers(len(self.pairs)))]
        h, w = pair.hr.shape[:2]
        top = int(rng.integers(h - self.region + 1))
        left = int(rng.integers(w - self.region + 1))
        transform = int(rng.integers(8)) if self.augment else 0
        downscaler = self.downscalers[int(rng.integers(len(self.downscalers)))]
        sigma = float(rng.uniform(0, self.noise)) if self.noise > 0 else 0.0
        whole = rng.integers(-self.motion * s, (self.motion + 1) * s, size=(n, 2))
        fraction = rng.random((n, 2)) * (rng.random((n, 1)) < self.subpixel)
        whole[0], fraction[0] = 0, 0.0
        region_u8 = dihedral(pair.hr[top : top + self.region, left : left + self.region],
                             transform)  # fmt: skip
        region = torch.from_numpy(np.ascontiguousarray(region_u8.transpose(2, 0, 1)))
        region = region.float() / 255
        context = _CONTEXT * s if downscaler == "bicubic" else 0
        frames = []
        for j in range(n):
            moved = region if not fraction[j].any() else translate(region, tuple(fraction[j]))
            y0, x0 = m + int(whole[j, 0]) - context, m + int(whole[j, 1]) - context
            size = p * s + 2 * context
            lr = downscale(moved[:, y0 : y0 + size, x0 : x0 + size], s, downscaler)
            if context:
                lr = lr[:, _CONTEXT : _CONTEXT + p, _CONTEXT : _CONTEXT + p]
            frames.append(lr)
        lr = torch.stack(frames)
        if sigma > 0:
            lr = lr + torch.from_numpy(rng.normal(0, sigma, size=lr.shape).astype(np.float32))
        lr_u8 = (quantize(lr) * 255).round().to(torch.uint8)
        shifts = (whole + fraction) / s
        shifts[1:] += rng.normal(0, self.jitter, size=(n - 1, 2)) if self.jitter > 0 else 0
        hr = region_u8[m : m + p * s, m : m + p * s]
        return (
            lr_u8,
            torch.from_numpy(shifts.astype(np.float32)),
            torch.tensor(1.0 if downscaler == "area" else 0.0),
            torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))),
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        iteration, k = divmod(int(index), self.batch)
        return self.sample(iteration, k)
