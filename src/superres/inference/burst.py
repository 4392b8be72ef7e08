"""Multi-image super-resolution: register a burst, weight it, fuse it onto the HR grid.

Data flow::

    frames (N, C, h, w) in [0, 1], reference index r
      --core.registration.register--> shifts (N, 2), LR pixels, relative to frame r
      --robustness: each frame warped onto frame r, core.registration.confidence, warped back
        onto the frame's own grid--> weights (N, h, w) (1 for frame r)
      --"classical": core.fusion.fuse_classical (shift-and-add + Wiener deconvolution)
      --"learned", a burst network (models.burst.BurstLAFN, trained on synthetic bursts):
        all frames, their shifts relative to frame r and the weights at once; its input is
        their shift-and-add accumulation on the HR grid
      --"learned", a single-image network: every frame super-resolved (the engine, tiled),
        warped onto frame r's HR grid by its shift x s, robust-weighted average
      --> (C, h s, w s) on frame r's HR grid

N = 1 is single-image SR: registration is skipped; the classical path is Gaussian
interpolation plus deconvolution, the learned one the network's own output. The output
always lies on the reference frame's grid.

With a single-image network the learned path spends N network runs: each frame's SR output
carries errors that depend on its sub-pixel phase (what aliasing folded where), so averaging
registered outputs cancels part of them. The burst network runs once and reads every
frame's samples where they fall, so it recovers what the average cannot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from superres.core.fusion import DEGRADATIONS, back_project, fuse_classical
from superres.core.registration import confidence, register, warp
from superres.errors import ConfigError

__all__ = ["METHODS", "TILE", "BurstResult", "fuse_burst", "robustness"]

METHODS = ("classical", "learned")

#: Difference (on the [0, 1] scale, local mean over 5x5 pixels) at which a sample's weight
#: falls to exp(-1/2). Aliasing makes a static frame differ from the reference by up to about
#: 0.03 locally at x4 (box downscaling, textures); moving objects differ by far more.
ROBUST_SIGMA = 0.08

#: LR side of the tiles a burst network runs on (bounds its memory on large frames).
TILE = 256

#: Back-projection passes after the fusion of N > 1 frames (README's burst table measures it).
REFINE = 20


@dataclass(frozen=True)
class BurstResult:
    """A fused burst and how it was made.

    Attributes:
        image: ``(C, h s, w s)`` float, not clamped, on the reference frame's HR grid.
        shifts: ``(N, 2)`` estimated motion ``(dy, dx)`` of each frame in LR pixels.
        weights: ``(N, h, w)`` robustness weight of each sample (None when not computed).
        reference: Index of the reference frame.
        method: ``"classical"`` or ``"learned"``.
    """

    image: Tensor
    shifts: Tensor
    weights: Tensor | None
    reference: int
    method: str


def robustness(
    frames: Tensor, shifts: Tensor, reference: int, sigma: float = ROBUST_SIGMA
) -> Tensor:
    """Per-sample weights ``(N, h, w)``: low where a frame disagrees with the reference after
    registration (moving objects, occlusions), 1 on the reference itself."""
    ref = frames[reference]
    weights = torch.ones(frames.shape[0], *frames.shape[-2:], dtype=torch.float32)
    for k in range(frames.shape[0]):
        if k == reference:
            continue
        on_reference = warp(frames[k], -shifts[k])
        weight = confidence(ref, on_reference, sigma=sigma)
        weights[k] = warp(weight, shifts[k]).clamp(0, 1)  # back onto frame k's own grid
    return weights


def _check(frames: Tensor, scale: int, method: str, reference: int, degradation: str) -> int:
    if frames.ndim != 4 or frames.shape[0] < 1:
        raise ConfigError(f"expected frames (N, C, h, w) with N >= 1, got {tuple(frames.shape)}")
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ConfigError(f"scale must be a positive integer, got {scale!r}")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if degradation not in DEGRADATIONS:
        raise ConfigError(
            f"degradation must be one of {', '.join(DEGRADATIONS)}, got {degradation!r}"
        )
    n = frames.shape[0]
    if isinstance(reference, bool) or int(reference) != reference or not -n <= reference < n:
        raise ConfigError(f"reference frame {reference!r} out of range for {n} frames")
    return int(reference) % n


def fuse_burst(
    frames: Tensor,
    scale: int,
    *,
    method: str = "classical",
    reference: int = 0,
    degradation: str = "area",
    robust: bool = True,
    shifts: Tensor | None = None,
    upscaled: Tensor | None = None,
    network: torch.nn.Module | None = None,
    tile: int | None = None,
    refine: int | None = None,
) -> BurstResult:
    """Super-resolve a burst of ``N >= 1`` frames of one scene onto frame ``reference``'s grid.

    Args:
        frames: ``(N, C, h, w)`` float frames in [0, 1], all of one size.
        scale: Integer upscaling factor.
        method: ``"classical"`` (shift-and-add + deconvolution).
        reference: The frame whose grid the output lies on.
        degradation: How the camera integrated the scene: ``"area"`` (pixel box, the sensor
            model) or ``"bicubic"`` (MATLAB's antialiased downscaling): sets the PSF.
        robust: Down-weight samples that disagree with the reference after registration.
        shifts: Known ``(N, 2)`` motion instead of estimating it.
        upscaled: For ``"learned"`` without ``network``: ``(N, C, h s, w s)``, every frame
            already super-resolved by a single-image network (``superres.upscale_burst``
            runs the engine).
        network: For ``"learned"``: a burst network (a module with ``burst = True``, such as
            :class:`~superres.models.burst.BurstLAFN`) that fuses the frames itself.
        tile: LR tile side of the burst network (None: :data:`TILE`).
        refine: Back-projection passes against all frames after the fusion
            (:func:`~superres.core.fusion.back_project` with ``degradation`` as the forward
            model); None: :data:`REFINE` for N > 1, none for one frame.
    """
    ref = _check(frames, scale, method, reference, degradation)
    n = frames.shape[0]
    frames = frames.float()
    if shifts is None:
        shifts = register(frames, ref) if n > 1 else torch.zeros(1, 2, dtype=torch.float64)
    elif tuple(shifts.shape) != (n, 2):
        raise ConfigError(f"shifts: expected ({n}, 2), got {tuple(shifts.shape)}")
    weights = robustness(frames, shifts, ref) if robust and n > 1 else None
    if method == "learned" and network is not None:
        if not getattr(network, "burst", False):
            raise ConfigError(f"{type(network).__name__} is not a burst network")
        image = _run_network(network, frames, shifts, ref, degradation, weights, tile or TILE)
    elif method == "learned":
        expected = (n, frames.shape[1], frames.shape[2] * scale, frames.shape[3] * scale)
        if upscaled is None or tuple(upscaled.shape) != expected:
            got = None if upscaled is None else tuple(upscaled.shape)
            raise ConfigError(f"the learned method needs the upscaled frames {expected}, got {got}")
        image = _fuse_upscaled(upscaled.float(), shifts, int(scale), weights)
    else:
        with torch.no_grad():
            image = fuse_classical(
                frames, shifts, int(scale), degradation=degradation, weights=weights
            )
    passes = (REFINE if n > 1 else 0) if refine is None else int(refine)
    if passes:
        with torch.no_grad():
            image = back_project(image, frames, shifts, int(scale), degradation=degradation,
                                 iterations=passes, weights=weights)  # fmt: skip
    return BurstResult(image=image, shifts=shifts, weights=weights, reference=ref, method=method)


def _run_network(
    network: torch.nn.Module,
    frames: Tensor,
    shifts: Tensor,
    reference: int,
    degradation: str,
    weights: Tensor | None,
    tile: int | None = TILE,
) -> Tensor:
    """The burst network on the frames, the reference first (its input convention), in tiles
    of ``tile`` LR pixels (None or 0: whole) with the receptive field plus the largest motion
    as context, so the tiles join exactly."""
    order = [reference] + [k for k in range(frames.shape[0]) if k != reference]
    param = next(network.parameters())
    burst = frames[order][None].to(param.device, param.dtype)
    relative = (shifts[order] - shifts[reference])[None].float()
    w = None if weights is None else weights[order][None].to(param.device)
    _, n, c, h, wd = burst.shape
    s = int(network.scale)
    tile = max(h, wd) if not tile else int(tile)
    context = int(network.receptive_field) + math.ceil(float(relative.abs().max())) + 1
    out = torch.zeros(c, h * s, wd * s)
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            for y in range(0, h, tile):
                for x in range(0, wd, tile):
                    y0, y1 = max(0, y - context), min(h, y + tile + context)
                    x0, x1 = max(0, x - context), min(wd, x + tile + context)
                    part = network(
                        burst[..., y0:y1, x0:x1], relative, degradation=degradation,
                        weights=None if w is None else w[..., y0:y1, x0:x1],
                    )[0].float().cpu()  # fmt: skip
                    th, tw = min(tile, h - y), min(tile, wd - x)
                    oy, ox = (y - y0) * s, (x - x0) * s
                    out[:, y * s : (y + th) * s, x * s : (x + tw) * s] = part[
                        :, oy : oy + th * s, ox : ox + tw * s
                    ]
    finally:
        network.train(was_training)
    return out


def _fuse_upscaled(upscaled: Tensor, shifts: Tensor, scale: int, weights: Tensor | None) -> Tensor:
    """Each frame's SR output warped onto the reference's HR grid; the weighted mean."""
    total = torch.zeros(upscaled.shape[1:])
    norm = torch.zeros(1, *upscaled.shape[-2:])
    for k in range(upscaled.shape[0]):
        shift = -shifts[k] * scale  # LR motion -> HR pixels; frame k's grid -> the reference's
        moved = float(shift.abs().max()) > 0
        sr = upscaled[k].cpu()
        if weights is None:
            weight = torch.ones(1, *upscaled.shape[-2:])
        else:  # the sample weights at HR resolution
            up = weights[k].repeat_interleave(scale, 0).repeat_interleave(scale, 1)[None]
            weight = warp(up, shift).clamp(0, 1) if moved else up
        total += (warp(sr, shift) if moved else sr) * weight
        norm += weight
    return total / norm.clamp(min=1e-6)
