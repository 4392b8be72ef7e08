"""Sub-pixel registration (superres.core.registration) of synthetic bursts of real images."""

from __future__ import annotations

import functools
import time

import pytest
import torch

from superres.core.burst import make_burst
from superres.core.degrade import list_images, load_hr
from superres.core.registration import confidence, luma, phase_correlation, register, warp
from superres.errors import ConfigError
from tests.conftest import dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small FFTs on a shared machine: one intra-op thread avoids oversubscription stalls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _load(folder: str) -> tuple[tuple[str, torch.Tensor], ...]:
    return tuple(
        (path.stem, torch.from_numpy(load_hr(path).transpose(2, 0, 1).copy()).float() / 255)
        for path in list_images(folder)
    )


def _images() -> list[tuple[str, torch.Tensor]]:
    """Every image of Set5 and Set14 as (name, float (3, H, W) in [0, 1])."""
    return [item for name in ("Set5", "Set14") for item in _load(str(dataset(name)))]


def _image(name: str) -> torch.Tensor:
    return dict(_images())[name]


def _worst_error(scale: int, downscaler: str, noise: float) -> tuple[float, str]:
    worst = (0.0, "")
    for index, (name, hr) in enumerate(_images()):
        burst = make_burst(hr, scale, 8, downscaler=downscaler, noise=noise, seed=index)
        estimate = register(burst.frames)
        assert estimate.shape == (8, 2) and estimate[0].tolist() == [0.0, 0.0]
        error = float((estimate - burst.shifts).abs().max())
        worst = max(worst, (error, name))
    return worst


@pytest.mark.parametrize("downscaler", ["area", "bicubic"])
@pytest.mark.parametrize("scale", [2, 4])
def test_translations_are_recovered_within_005_lr_pixels(scale: int, downscaler: str) -> None:
    error, name = _worst_error(scale, downscaler, noise=0.0)
    assert error < 0.05, f"max |error| {error:.4f} LR px ({name}, x{scale} {downscaler})"


@pytest.mark.parametrize("downscaler", ["area", "bicubic"])
@pytest.mark.parametrize("scale", [2, 4])
def test_noisy_translations_are_recovered_within_01_lr_pixels(scale: int, downscaler: str) -> None:
    error, name = _worst_error(scale, downscaler, noise=0.01)
    assert error < 0.1, f"max |error| {error:.4f} LR px ({name}, x{scale} {downscaler}, 0.01)"


@pytest.mark.parametrize(
    ("shift", "tolerance"),
    # A large shift brings mirrored content in at two borders: less overlap, looser bound.
    [((0.3, -0.45), 0.02), ((-0.3, 0.45), 0.02), ((-6.3, 11.45), 0.05)],
)
@pytest.mark.parametrize("name", ["butterfly", "zebra"])
def test_known_fourier_shift_is_recovered(
    name: str, shift: tuple[float, float], tolerance: float
) -> None:
    reference = _image(name)
    moving = warp(reference, shift)  # moving(y, x) = reference(y + dy, x + dx)
    dy, dx = phase_correlation(reference, moving)
    error = max(abs(dy - shift[0]), abs(dx - shift[1]))
    assert error < tolerance, f"{name}: found {(dy, dx)} for {shift} (error {error:.4f})"


def test_large_shifts_wrap_to_negative() -> None:
    reference = _image("bird")[:, :200, :200]
    moving = reference.roll(shifts=(7, -9), dims=(-2, -1))  # moving(y, x) = ref(y - 7, x + 9)
    dy, dx = phase_correlation(reference, moving)
    assert abs(dy + 7) < 0.02 and abs(dx - 9) < 0.02, (dy, dx)


def test_warp_follows_the_burst_sign_convention() -> None:
    burst = make_burst(_image("lenna"), 2, 4, downscaler="bicubic", seed=2)
    interior = (slice(None), slice(8, -8), slice(8, -8))
    for k in range(1, 4):
        if not burst.hr_shifts[k].any():
            continue
        shift = burst.shifts[k]
        forward = (warp(burst.frames[0], shift) - burst.frames[k])[interior].abs().mean()
        backward = (warp(burst.frames[0], -shift) - burst.frames[k])[interior].abs().mean()
        assert forward < 0.5 * backward, (k, shift.tolist(), float(forward), float(backward))


def test_warp_integer_shift_moves_pixels() -> None:
    frame = _image("head")[:, :64, :80]
    out = warp(frame, (2, -3))
    assert out.shape == frame.shape and out.dtype == frame.dtype
    assert float((out[:, :60, 3:] - frame[:, 2:62, :77]).abs().max()) < 1e-5
    assert torch.allclose(warp(frame, (0.0, 0.0)), frame, atol=1e-6)


def test_register_against_another_reference() -> None:
    burst = make_burst(_image("monarch"), 4, 5, downscaler="bicubic", seed=4)
    estimate = register(burst.frames, reference=2)
    assert estimate[2].tolist() == [0.0, 0.0]
    error = float((estimate - (burst.shifts - burst.shifts[2])).abs().max())
    assert error < 0.05, error
    assert torch.equal(estimate, register(burst.frames, reference=-3))  # deterministic


def test_register_one_frame_is_zero() -> None:
    burst = make_burst(_image("baby"), 2, 1)
    assert register(burst.frames).tolist() == [[0.0, 0.0]]


def test_confidence_is_high_on_a_static_frame_and_low_on_a_pasted_patch() -> None:
    burst = make_burst(_image("lenna"), 2, 4, seed=2)
    reference = burst.frames[0]
    assert torch.equal(
        confidence(reference, reference, sigma=0.03), torch.ones(reference.shape[1:])
    )
    k = int(burst.hr_shifts.abs().sum(dim=1).argmax())
    aligned = warp(burst.frames[k], -register(burst.frames)[k])
    weight = confidence(reference, aligned, sigma=0.03)
    assert weight.shape == reference.shape[1:]
    assert float(weight.min()) >= 0 and float(weight.max()) <= 1
    assert float(weight[8:-8, 8:-8].mean()) > 0.9

    other = _image("baboon")[:, 100:124, 100:124]  # a patch of a different scene
    moved = aligned.clone()
    moved[:, 60:84, 60:84] = other
    weight = confidence(reference, moved, sigma=0.03)
    assert float(weight[64:80, 64:80].max()) < 0.1, float(weight[64:80, 64:80].max())
    assert float(weight[8:48, 8:48].mean()) > 0.9


def test_registration_is_fast() -> None:
    hr = _image("baboon")[:, :256, :256]
    moving = warp(hr, (0.3, -0.45))
    phase_correlation(hr, moving)
    start = time.perf_counter()
    for _ in range(5):
        phase_correlation(hr, moving)
    per_pair = (time.perf_counter() - start) / 5
    assert per_pair < 0.05, f"{per_pair * 1000:.1f} ms per 256x256 pair"


def test_luma_and_bad_inputs() -> None:
    rgb = torch.rand(3, 8, 8)
    expected = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert torch.allclose(luma(rgb), expected.double())
    with pytest.raises(ConfigError, match=r"moving: size \(8, 9\) differs"):
        phase_correlation(torch.zeros(8, 8), torch.zeros(8, 9))
    with pytest.raises(ConfigError, match="upsample: expected an integer >= 1, got 0"):
        phase_correlation(torch.zeros(8, 8), torch.zeros(8, 8), upsample=0)
    with pytest.raises(ConfigError, match="reference: index 3 out of range for 3 frames"):
        register(torch.zeros(3, 1, 8, 8), reference=3)
    with pytest.raises(ConfigError, match="frames: expected"):
        register(torch.zeros(3, 8, 8))
    with pytest.raises(ConfigError, match="sigma: expected a finite value > 0"):
        confidence(rgb, rgb, sigma=0)
