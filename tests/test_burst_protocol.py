"""The synthetic-burst benchmark protocol (superres.core.burst) on real images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from superres.core.burst import Burst, burst_psnr_border, downscale, make_burst, score_burst
from superres.core.degrade import load_hr
from superres.core.resize import imresize, quantize
from superres.errors import ConfigError
from tests.conftest import dataset


def _hr(name: str = "bird", size: tuple[int, int] = (101, 122)) -> torch.Tensor:
    """A crop of a Set5 image with odd, non-multiple sizes, float in [0, 1]."""
    pixels = load_hr(dataset("Set5") / f"{name}.png")
    hr = torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float() / 255
    return hr[:, 40 : 40 + size[0], 30 : 30 + size[1]]


@pytest.mark.parametrize("downscaler", ["area", "bicubic"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_frames_are_quantized_downscales_of_shifted_crops(scale: int, downscaler: str) -> None:
    hr = _hr()
    burst = make_burst(hr, scale, 6, downscaler=downscaler, seed=3)
    h, w = hr.shape[-2:]
    hc, wc = (h - scale) // scale * scale, (w - scale) // scale * scale
    assert burst.reference_hr.shape == (3, hc, wc)
    assert torch.equal(burst.reference_hr, hr[:, :hc, :wc])
    assert burst.frames.shape == (6, 3, hc // scale, wc // scale)

    def expected(crop: torch.Tensor) -> torch.Tensor:
        if downscaler == "area":
            return quantize(torch.nn.functional.avg_pool2d(crop[None], scale)[0])
        return quantize(imresize(crop, 1.0 / scale))

    assert torch.equal(burst.frames[0], expected(burst.reference_hr))
    for k, (dy, dx) in enumerate(burst.hr_shifts.tolist()):
        crop = hr[:, dy : dy + hc, dx : dx + wc]
        assert torch.equal(burst.frames[k], expected(crop)), f"frame {k} shift {(dy, dx)}"


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_shifts_are_lr_fractions_in_unit_interval(scale: int) -> None:
    burst = make_burst(_hr(), scale, 16, seed=11)
    assert burst.hr_shifts.dtype == torch.int64
    assert burst.hr_shifts[0].tolist() == [0, 0]
    assert burst.shifts[0].tolist() == [0.0, 0.0]
    assert int(burst.hr_shifts.min()) >= 0 and int(burst.hr_shifts.max()) < scale
    assert torch.equal(burst.shifts, burst.hr_shifts.double() / scale)
    assert float(burst.shifts.min()) >= 0 and float(burst.shifts.max()) < 1
    multiples = burst.shifts * scale
    assert torch.equal(multiples, multiples.round())
    if scale > 1:  # 15 random draws from s^2 cells do not all land on (0, 0)
        assert burst.hr_shifts[1:].abs().sum() > 0


@pytest.mark.parametrize("noise", [0.0, 0.02])
def test_frames_are_on_the_8bit_grid(noise: float) -> None:
    burst = make_burst(_hr(), 3, 4, downscaler="bicubic", noise=noise, seed=5)
    levels = burst.frames * 255
    assert float((levels - levels.round()).abs().max()) < 1e-4
    assert float(burst.frames.min()) >= 0 and float(burst.frames.max()) <= 1


def test_noise_is_added_before_rounding_and_seeded() -> None:
    hr = _hr()
    clean = make_burst(hr, 2, 3, seed=9)
    noisy = make_burst(hr, 2, 3, noise=0.01, seed=9)
    assert torch.equal(clean.hr_shifts, noisy.hr_shifts)  # noise is drawn after the shifts
    residual = (noisy.frames - clean.frames) * 255
    assert 1.5 < float(residual.std()) < 3.5  # sigma 0.01 is 2.55 levels
    assert torch.equal(noisy.frames, make_burst(hr, 2, 3, noise=0.01, seed=9).frames)


def test_same_seed_same_burst() -> None:
    hr = _hr("butterfly")
    a = make_burst(hr, 4, 8, seed=42, noise=0.005)
    b = make_burst(hr, 4, 8, seed=42, noise=0.005)
    c = make_burst(hr, 4, 8, seed=43, noise=0.005)
    assert isinstance(a, Burst)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.hr_shifts, b.hr_shifts)
    assert not torch.equal(a.frames, c.frames)
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    assert torch.equal(make_burst(hr, 4, 8, seed=g1).frames, make_burst(hr, 4, 8, seed=g2).frames)
    with pytest.raises(AttributeError):
        a.scale = 2  # type: ignore[misc]  # frozen


def test_area_downscale_of_constant_is_the_constant() -> None:
    value = 100 / 255
    hr = torch.full((3, 37, 45), value)
    assert float((downscale(hr[:, :36, :44], 4, "area") - value).abs().max()) < 1e-7
    burst = make_burst(hr, 4, 5, seed=1)
    assert torch.equal(burst.frames, torch.full_like(burst.frames, value))


def test_one_frame_is_the_plain_lr() -> None:
    hr = _hr()
    burst = make_burst(hr, 2, 1, downscaler="bicubic")
    assert burst.frames.shape[0] == 1 and burst.shifts.tolist() == [[0.0, 0.0]]


def test_score_burst_crops_a_16_pixel_border() -> None:
    burst = make_burst(_hr("baby", (90, 90)), 2, 2)
    ref = burst.reference_hr
    assert burst_psnr_border == 16
    assert score_burst(ref.clone(), ref) == math.inf
    border_only = ref.clone()
    border_only[:, :16] = 1 - border_only[:, :16]
    border_only[:, :, -16:] = 0
    assert score_burst(border_only, ref) == math.inf
    inside = ref.clone()
    inside[:, 16, 16] = 1 - inside[:, 16, 16]
    assert 30 < score_burst(inside, ref) < math.inf


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames": 0}, "frames: expected an integer >= 1, got 0"),
        ({"scale": 0}, "scale: expected an integer >= 1, got 0"),
        ({"scale": 2.0}, "scale: expected an integer >= 1, got 2.0"),
        (
            {"downscaler": "nearest"},
            "downscaler: unknown value 'nearest' (expected one of area, bicubic)",
        ),
        ({"noise": -0.1}, "noise: expected a finite sigma >= 0, got -0.1"),
        (
            {"hr": torch.zeros(3, 7, 30), "scale": 4},
            "hr: image 7x30 too small for a burst at scale 4 (needs at least 8x8)",
        ),
        (
            {"hr": torch.zeros(30, 30)},
            "hr: expected a float tensor (C, H, W) in [0, 1], got (30, 30)",
        ),
    ],
)
def test_bad_arguments_raise_one_line_messages(kwargs: dict, message: str) -> None:
    args = {"hr": torch.zeros(3, 40, 40), "scale": 2, "frames": 4} | kwargs
    hr, scale, frames = args.pop("hr"), args.pop("scale"), args.pop("frames")
    with pytest.raises(ConfigError) as info:
        make_burst(hr, scale, frames, **args)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_downscale_refuses_unknown_method() -> None:
    with pytest.raises(ConfigError, match="downscaler: unknown value 'box'"):
        downscale(torch.zeros(1, 8, 8), 2, "box")  # type: ignore[arg-type]
