"""PSNR / SSIM conventions: Y channel of BT.601, border crop, grey images, MS-SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from superres.core.degrade import modcrop
from superres.core.metrics import ms_ssim, psnr, psnr_rgb, rgb_to_y, ssim


def test_y_channel_formula():
    rgb = torch.tensor([[[[0.0]], [[0.0]], [[0.0]]], [[[1.0]], [[1.0]], [[1.0]]]]).double()
    assert rgb_to_y(rgb).flatten().tolist() == pytest.approx([16.0, 235.0])
    pure = torch.eye(3, dtype=torch.float64).view(3, 3, 1, 1)
    assert rgb_to_y(pure).flatten().tolist() == pytest.approx(
        [16 + 65.481, 16 + 128.553, 16 + 24.966]
    )


def test_psnr_known_value_on_y():
    hr = torch.zeros(3, 20, 20, dtype=torch.float64)
    sr = hr.clone()
    sr[1] += 10 / 255  # green +10 levels -> Y +10 * 128.553 / 255
    dy = 10 * 128.553 / 255
    expected = 10 * math.log10(255**2 / dy**2)
    assert psnr(sr, hr) == pytest.approx(expected, abs=1e-9)
    assert psnr(hr, hr) == math.inf


def test_crop_ignores_the_border():
    hr = torch.rand(3, 30, 30)
    sr = hr.clone()
    sr[:, :4, :] = 0
    sr[:, :, -4:] = 1
    assert psnr(sr, hr, crop=4) == math.inf
    assert psnr(sr, hr, crop=3) < 40
    assert ssim(sr, hr, crop=4) == pytest.approx(1.0)


def test_grey_images_are_scored_on_their_grey_level():
    hr = np.zeros((16, 16), np.uint8)
    sr = hr.copy()
    sr[:] = 5
    assert psnr(sr, hr) == pytest.approx(10 * math.log10(255**2 / 25))
    # the same grey replicated to RGB scores through Y: 219/255 of the difference
    rgb = np.repeat(sr[:, :, None], 3, axis=2)
    assert psnr(rgb, np.zeros_like(rgb)) == pytest.approx(
        10 * math.log10(255**2 / (5 * 219 / 255) ** 2)
    )


def test_numpy_and_tensor_inputs_agree():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (24, 31, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (24, 31, 3), dtype=np.uint8)
    ta = torch.from_numpy(a.transpose(2, 0, 1).copy()).float() / 255
    tb = torch.from_numpy(b.transpose(2, 0, 1).copy()).float() / 255
    assert psnr(a, b, crop=2) == pytest.approx(psnr(ta, tb, crop=2), abs=1e-5)
    assert ssim(a, b, crop=2) == pytest.approx(ssim(ta, tb, crop=2), abs=1e-6)


def test_ssim_properties():
    torch.manual_seed(0)
    a = torch.rand(3, 40, 40)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) == pytest.approx(ssim(b, a))
    assert 0 < ssim(a, b) < 1
    worse = (a + 0.3 * torch.randn_like(a)).clamp(0, 1)
    assert ssim(a, worse) < ssim(a, b)


def test_ssim_matches_a_direct_gaussian_window_computation():
    """Separable implementation == textbook 2-D window formula on one 11x11 patch."""
    torch.manual_seed(3)
    a = torch.rand(1, 1, 11, 11, dtype=torch.float64) * 255
    b = torch.rand(1, 1, 11, 11, dtype=torch.float64) * 255
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * 1.5**2))
    w = g / g.sum()
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    va = (w * (a - mu_a) ** 2).sum()
    vb = (w * (b - mu_b) ** 2).sum()
    cov = (w * (a - mu_a) * (b - mu_b)).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (va + vb + c2)
    )
    assert ssim(a[0] / 255, b[0] / 255) == pytest.approx(float(expected), abs=1e-10)


def test_psnr_rgb_and_ms_ssim():
    torch.manual_seed(0)
    a = torch.rand(3, 170, 180)
    b = a.clone()
    b[0] += 0.01
    assert psnr_rgb(b, a) == pytest.approx(-10 * math.log10(0.01**2 / 3), abs=1e-4)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    noisy = (a + 0.05 * torch.randn_like(a)).clamp(0, 1)
    assert 0 < ms_ssim(noisy, a) < 1
    with pytest.raises(ValueError, match="161"):
        ms_ssim(a[:, :100, :100], a[:, :100, :100])


def test_modcrop_and_errors():
    x = torch.zeros(3, 31, 29)
    assert modcrop(x, 4).shape == (3, 28, 28)
    assert modcrop(np.zeros((31, 29, 3)), 3).shape == (30, 27, 3)
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))
    with pytest.raises(ValueError, match="too small"):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), crop=4)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.int16, bool])
def test_integer_arrays_other_than_uint8_uint16_are_refused(dtype):
    """An int32 image (0..255) used to be scored as if it were in [0, 1]: now refused."""
    a = np.full((16, 16, 3), 200).astype(dtype)
    with pytest.raises(TypeError, match=f"unsupported array dtype {np.dtype(dtype)}"):
        psnr(a, a)


def test_uint16_tensors_and_arrays_are_scaled_alike():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, (20, 20, 3), dtype=np.uint16)
    b = np.clip(a.astype(np.int64) + 300, 0, 65535).astype(np.uint16)
    as_tensor = psnr(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1))
    assert as_tensor == pytest.approx(psnr(a, b), abs=1e-9)
    assert 40 < psnr(a, b) < 60  # 300/65535 of error, not 300 on a [0, 1] scale
