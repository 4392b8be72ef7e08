"""The region-adaptive model: tiles routed by difficulty, batched per class, blended."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from superres.inference import engine
from superres.models import SRModel, create_model
from superres.models.adaptive import AdaptiveSR


def members(scale: int = 2):
    torch.manual_seed(0)
    cheap = create_model("plainsr", scale=scale, channels=8, n_convs=1).eval()
    costly = create_model("lafn", scale=scale, channels=8, n_blocks=1, reduced=4).eval()
    return cheap, costly


def half_flat_image(h: int = 96, w: int = 128) -> torch.Tensor:
    """Left half a smooth ramp (easy), right half noise (hard)."""
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(0.2, 0.3, w)[None, None, :].expand(3, h, w).clone()
    x[:, :, w // 2 :] = torch.rand(3, h, w - w // 2, generator=g)
    return x[None]


def test_one_class_everywhere_equals_that_members_whole_image_output():
    """Every tile carries its member's receptive field, so routing everything to one member
    reproduces that member's untiled output."""
    cheap, costly = members()
    x = half_flat_image()
    with torch.no_grad():
        for threshold, member in ((1e9, cheap), (-1.0, costly)):
            adaptive = AdaptiveSR([cheap, costly], [threshold], tile=16, overlap=4)
            assert (adaptive(x) - member(x)).abs().max() < 1e-5


def test_class_borders_blend_the_two_members_without_a_seam():
    """With the flat half routed to the cheap member and the noisy half to the costly one,
    each region equals its member's output, and across the class border the output is a
    convex combination of the two (so never further from the costly output than the cheap
    one is): no seam."""
    cheap, costly = members()
    x = half_flat_image()
    adaptive = AdaptiveSR([cheap, costly], [0.05], tile=16, overlap=4)
    grid = adaptive.classes(x[0])
    assert (grid[:, :3] == 0).all() and (grid[:, 5:] == 1).all()  # 8 tiles across: 4 | 4
    with torch.no_grad():
        out, a, b = adaptive(x), cheap(x), costly(x)
    s = 2
    left, right = slice(0, (64 - 8) * s), slice((64 + 8) * s, None)
    assert (out[..., left] - a[..., left]).abs().max() < 1e-5
    assert (out[..., right] - b[..., right]).abs().max() < 1e-5
    border = slice((64 - 4) * s, (64 + 4) * s)
    lo, hi = torch.minimum(a, b)[..., border], torch.maximum(a, b)[..., border]
    assert ((out[..., border] >= lo - 1e-5) & (out[..., border] <= hi + 1e-5)).all()
    assert (out[..., border] - b[..., border]).abs().max() <= (a - b)[..., border].abs().max()
    assert adaptive.histogram(x[0]) == pytest.approx([0.5, 0.5])


def test_tiles_of_a_class_run_as_one_batch():
    """The members see one forward per (class, input shape), not one per tile."""
    cheap, costly = members()
    calls = {"cheap": 0, "costly": 0}
    cheap.register_forward_hook(lambda *_: calls.__setitem__("cheap", calls["cheap"] + 1))
    costly.register_forward_hook(lambda *_: calls.__setitem__("costly", calls["costly"] + 1))
    adaptive = AdaptiveSR([cheap, costly], [0.05], tile=16, overlap=4)
    with torch.no_grad():
        adaptive(half_flat_image(96, 128))  # 6 x 8 = 48 tiles
    assert calls["cheap"] + calls["costly"] <= 2 * 9  # at most 3 x 3 input shapes per class


def test_through_the_engine_with_alpha_and_16_bits():
    cheap, costly = members()
    model = SRModel.from_module(cheap)
    adaptive = AdaptiveSR([cheap, costly], [0.05], tile=16, overlap=4)
    wrapped = SRModel(adaptive, "adaptive", 2, tiling="approximate",
                      receptive_field=adaptive.receptive_field)  # fmt: skip
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (40, 52, 3), dtype=np.uint16)
    alpha = rng.integers(0, 65536, (40, 52), dtype=np.uint16)
    out, a = engine.upscale_array(pixels, wrapped, alpha=alpha, tile=24)
    assert out.shape == (80, 104, 3) and a.shape == (80, 104) and out.dtype == np.uint16
    assert model.scale == wrapped.scale


def test_bad_settings_are_refused():
    cheap, costly = members()
    with pytest.raises(ValueError, match="2 members need 1 thresholds"):
        AdaptiveSR([cheap, costly], [0.1, 0.2])
    with pytest.raises(ValueError, match="one scale"):
        AdaptiveSR([cheap, create_model("plainsr", scale=3)], [0.1])


def test_an_unshipped_adaptive_model_is_one_clear_error(monkeypatch):
    """Without calibrated settings the pseudo-model says it is not shipped (not "available:
    none"); with settings for other scales it names them."""
    from superres.weights import zoo

    monkeypatch.setattr(zoo, "adaptive_config", lambda: {})
    with pytest.raises(ValueError, match="^model 'adaptive' is not shipped yet: ") as caught:
        zoo.resolve("adaptive", 4)
    assert "\n" not in str(caught.value)
    monkeypatch.setattr(zoo, "adaptive_config", lambda: {"2": {}})
    with pytest.raises(ValueError, match=r"has no x4 settings \(available: x2\)"):
        zoo.resolve("adaptive", 4)
