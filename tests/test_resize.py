"""resize.imresize against MATLAB's definition of bicubic imresize."""

from __future__ import annotations

import math

import pytest
import torch

from superres.core import resize
from superres.core.resize import cubic, imresize, quantize


def matlab_reference_1d(signal: list[float], scale: float, antialias: bool = True) -> list[float]:
    """Direct transcription of MATLAB's imresize 'contributions' for a 1-D signal (slow)."""
    n = len(signal)
    out_len = math.ceil(n * scale)
    shrink = scale < 1 and antialias
    width = 4 / scale if shrink else 4.0
    out = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = math.ceil(width) + 2
        total, acc = 0.0, 0.0
        for j in range(taps):
            idx = left + j
            d = u - idx
            arg = torch.tensor(scale * d if shrink else d, dtype=torch.float64)
            w = float(cubic(arg)) * (scale if shrink else 1.0)
            # symmetric padding: ... 2 1 | 1 2 ... n | n n-1 ...
            k = idx - 1
            k = k % (2 * n)
            if k >= n:
                k = 2 * n - 1 - k
            acc += w * signal[k]
            total += w
        out.append(acc / total)
    return out


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 0.7, 1.5, 2, 3, 4])
def test_matches_matlab_definition_1d(scale):
    torch.manual_seed(0)
    signal = torch.rand(23, dtype=torch.float64)
    expected = torch.tensor(matlab_reference_1d(signal.tolist(), scale), dtype=torch.float64)
    got = imresize(signal[None, :], (1.0, scale))[0]
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_kernel_values():
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    torch.testing.assert_close(cubic(x), torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0]))


@pytest.mark.parametrize("scale", [0.25, 0.5, 2 / 3, 2, 3, 4])
def test_constant_image_is_preserved(scale):
    x = torch.full((2, 3, 12, 18), 0.37)
    y = imresize(x, scale)
    assert y.shape == (2, 3, math.ceil(12 * scale), math.ceil(18 * scale))
    torch.testing.assert_close(y, torch.full_like(y, 0.37))


def test_upscaling_reproduces_linear_ramps_in_the_interior():
    ramp = torch.arange(20, dtype=torch.float64)[None, :].repeat(10, 1)
    up = imresize(ramp, 2)
    # sample positions of output column j (0-based) are (j + 0.5) / 2 - 0.5 in input pixels
    positions = (torch.arange(40, dtype=torch.float64) + 0.5) / 2 - 0.5
    torch.testing.assert_close(up[:, 4:-4], positions[4:-4].expand(20, -1), rtol=0, atol=1e-12)


def test_size_argument_and_rectangular_scale():
    x = torch.rand(1, 3, 10, 16)
    assert imresize(x, size=(25, 7)).shape == (1, 3, 25, 7)
    assert imresize(x, (2, 0.5)).shape == (1, 3, 20, 8)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(x)
    with pytest.raises(ValueError, match="positive"):
        imresize(x, -2)


def test_dense_and_gather_paths_agree(monkeypatch):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 33, 47, dtype=torch.float64)
    dense = imresize(x, 0.5), imresize(x, 3)
    monkeypatch.setattr(resize, "_DENSE_LIMIT", 0)
    gathered = imresize(x, 0.5), imresize(x, 3)
    for a, b in zip(dense, gathered, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_batch_equals_single_images():
    torch.manual_seed(2)
    x = torch.rand(3, 3, 21, 17)
    batch = imresize(x, 1 / 3)
    for i in range(3):
        torch.testing.assert_close(batch[i], imresize(x[i], 1 / 3))


def test_antialias_only_matters_when_shrinking():
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(imresize(x, 2, antialias=True), imresize(x, 2, antialias=False))
    assert not torch.allclose(imresize(x, 0.5, antialias=True), imresize(x, 0.5, antialias=False))


def test_quantize_rounds_half_away_from_zero_like_matlab():
    x = torch.tensor([0.5 / 255, 1.5 / 255, 2.5 / 255, -0.1, 1.2])
    assert (quantize(x) * 255).round().tolist() == [1.0, 2.0, 3.0, 0.0, 255.0]


def test_weights_built_in_inference_mode_still_support_autograd(monkeypatch):
    monkeypatch.setattr(resize, "_DENSE_LIMIT", 0)  # force the gather path
    resize._resize_weights.cache_clear()
    with torch.inference_mode():
        imresize(torch.rand(1, 1, 5, 7), 2)
    x = torch.rand(1, 1, 5, 7, requires_grad=True)
    imresize(x, 2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
