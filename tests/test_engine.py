"""Tests of the inference engine: tiling equality, bit depths, alpha, grey, outscale, memory."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from superres.core.resize import imresize
from superres.inference import device, engine, loop, pixels, plan
from superres.models import SRModel, create_model, get_model_spec, list_models

REPO = Path(__file__).resolve().parents[1]

# Reduced depth for the architectures whose default configuration is too slow for a CPU
# test on an image large enough to exercise the context around tiles; the real defaults
# of the cheaper ones are tested in `test_tiled_matches_untiled_default_config`.
SMALL = {
    "edsr": {"n_feats": 32, "n_blocks": 2},
    "edsr_baseline": {"n_blocks": 2},
    "lafn": {"n_blocks": 1},
    "burst_lafn": {"n_blocks": 1},
    "rcan": {"n_groups": 2, "n_blocks": 2},
    "rcan_small": {"n_groups": 2, "n_blocks": 2},
    "vdsr": {"depth": 6},
}
# Default configurations too slow on CI CPUs (EDSR: 43 M parameters; RCAN: 400 convolutions
# with a 414-pixel receptive field), covered at reduced depth above.
TOO_SLOW_AT_DEFAULT = {"edsr", "rcan"}
MIN_PSNR_APPROXIMATE = 40.0


def build(name: str, scale: int, **overrides) -> SRModel:
    torch.manual_seed(0)
    return SRModel.from_module(create_model(name, scale=scale, **overrides)).eval()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def supported_scale(name: str, wanted: int) -> int:
    spec = get_model_spec(name)
    return wanted if spec.supports(wanted) else min(spec.scales)


def assert_tiles_exercised(model: SRModel, size: tuple[int, int], tile: int) -> None:
    """Several tiles along each axis, and some tile inputs smaller than the image."""
    overlap = plan.resolve_overlap(model, tile, None)
    for length in size:
        axis = plan.Axis.plan(length, tile, overlap, plan.model_context(model), model.scale)
        assert axis.count > 1
        assert any(axis.input_span(i) != (0, length) for i in range(axis.count))


# --------------------------------------------------------------------------- tiling


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("name", list_models())
def test_tiled_matches_untiled(name: str, scale: int, record_property) -> None:
    scale = supported_scale(name, scale)
    model = build(name, scale, **SMALL.get(name, {}))
    lr = torch.rand(1, 3, 61, 47, generator=torch.Generator().manual_seed(1))
    assert_tiles_exercised(model, (61, 47), 24)
    whole = engine.upscale_tensor(lr, model, tile=0)
    assert torch.equal(whole, model(lr))
    tiled = engine.upscale_tensor(lr, model, tile=24)
    assert tiled.shape == (1, 3, 61 * scale, 47 * scale)
    err = float((tiled - whole).abs().max())
    record_property("max_abs", err)
    record_property("psnr", psnr(tiled, whole))
    if model.tiling == "exact":
        assert err < 1e-4
    else:
        assert psnr(tiled, whole) > MIN_PSNR_APPROXIMATE


@pytest.mark.parametrize("name", [n for n in list_models() if n not in TOO_SLOW_AT_DEFAULT])
def test_tiled_matches_untiled_default_config(name: str, record_property) -> None:
    """Real default configurations, on an image just large enough for bounded tile inputs."""
    scale = supported_scale(name, 2)
    model = build(name, scale)
    tile = 24
    margin = plan.resolve_overlap(model, tile, None) + 2 * plan.model_context(model)
    size = (tile + margin + 13, tile + margin + 3)
    lr = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(2))
    assert_tiles_exercised(model, size, tile)
    whole = engine.upscale_tensor(lr, model, tile=0)
    tiled = engine.upscale_tensor(lr, model, tile=tile)
    err = float((tiled - whole).abs().max())
    record_property("max_abs", err)
    record_property("psnr", psnr(tiled, whole))
    if model.tiling == "exact":
        assert err < 1e-4
    else:
        assert psnr(tiled, whole) > MIN_PSNR_APPROXIMATE


@pytest.mark.parametrize("overlap", [0, 1, 5, 12])
def test_any_overlap_is_exact_for_exact_models(overlap: int) -> None:
    model = build("fsrcnn_s", 3)
    lr = torch.rand(2, 3, 50, 37, generator=torch.Generator().manual_seed(3))
    whole = model(lr)
    tiled = engine.upscale_tensor(lr, model, tile=24, overlap=overlap)
    assert float((tiled - whole).abs().max()) < 1e-5


def test_blend_weights_sum_to_one_and_are_smooth() -> None:
    axis = plan.Axis.plan(100, 30, 8, 4, 3)
    assert axis.count == 4 and axis.bounds == (0, 25, 50, 75, 100)
    total = torch.zeros(300)
    for i, w in enumerate(axis.weights()):
        r0, r1 = axis.region(i)
        assert w.shape == ((r1 - r0) * 3,) and bool((w > 0).all())
        total[r0 * 3 : r1 * 3] += w
    torch.testing.assert_close(total, torch.ones(300))
    ramp = axis.weights()[1][: 8 * 3]
    assert bool((ramp.diff() > 0).all()) and float(ramp.diff().max()) < 0.1


def test_unbatched_tensor_and_progress() -> None:
    model = build("espcn", 2)
    calls = []
    lr = torch.rand(3, 40, 30)
    sr = engine.upscale_tensor(lr, model, tile=16, progress=lambda d, t: calls.append((d, t)))
    assert sr.shape == (3, 80, 60)
    assert calls[0] == (0, 6) and calls[-1] == (6, 6) and len(calls) == 7
    torch.testing.assert_close(sr, model(lr), atol=1e-5, rtol=0)


def test_model_left_in_its_mode() -> None:
    model = build("espcn", 2)
    model.module.train()
    engine.upscale_tensor(torch.rand(1, 3, 8, 8), model)
    assert model.module.training


def test_plain_module_accepted() -> None:
    module = create_model("espcn", scale=2)
    assert engine.upscale_tensor(torch.rand(1, 3, 9, 7), module).shape == (1, 3, 18, 14)


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("name", list_models())
def test_defaults(name: str) -> None:
    model = build(name, supported_scale(name, 4), **SMALL.get(name, {}))
    overlap = engine.default_overlap(model)
    if model.tiling == "exact":
        assert overlap == min(max(model.receptive_field // 2, 2), 16)
    else:
        assert overlap == plan.APPROX_OVERLAP
    tile = engine.default_tile(model, "cpu")
    assert tile % 8 == 0 and plan.MIN_TILE <= tile <= plan.MAX_TILE


def test_automatic_tile_is_whole_small_image_and_bounded_for_large() -> None:
    model = build("espcn", 4)
    calls = []
    engine.upscale_tensor(torch.rand(1, 3, 20, 30), model, progress=lambda d, t: calls.append(t))
    assert calls[-1] == 1
    # A wide image: the float band accumulator bounds the tile height.
    tile = plan.resolve_tile(model, None, torch.device("cpu"), 16000, 1)
    assert (tile + engine.default_overlap(model)) * 4 * 16000 * 3 * 4 <= plan.BAND_BYTES
    assert tile < engine.default_tile(model, "cpu")


def test_tiles_much_smaller_than_the_context_warn() -> None:
    from superres.errors import SlowTileWarning

    model = build("lafn", 4)  # receptive field 63: 8-pixel tiles compute mostly context
    x = torch.rand(1, 3, 40, 40)
    with pytest.warns(SlowTileWarning, match=r"tile 8 is small .* 63 pixels of context") as got:
        small = engine.upscale_tensor(x, model, tile=8)
    work = float(str(got[0].message).split("computes ")[1].split("x")[0])
    rows = plan.Axis.plan(40, 8, engine.default_overlap(model), 63, 4)
    assert work == pytest.approx((loop.input_pixels(rows) / 40) ** 2, abs=0.5) and work > 8
    assert torch.allclose(small, engine.upscale_tensor(x, model, tile=0), atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowTileWarning)  # cheap tilings stay silent
        engine.upscale_tensor(x, model, tile=24)  # 40 wide: two tiles, each mostly the image
        engine.upscale_tensor(torch.rand(1, 3, 64, 64), build("espcn", 4), tile=8)  # context 4


def test_bad_arguments() -> None:
    model = build("espcn", 2)
    px = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="overlap"):
        engine.upscale_array(px, model, tile=8, overlap=5)
    with pytest.raises(ValueError, match="tile"):
        engine.upscale_array(px, model, tile=-1)
    with pytest.raises(TypeError, match="uint8 or uint16"):
        engine.upscale_array(px.astype(np.float32), model)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        engine.upscale_array(np.zeros((8, 8, 2), np.uint8), model)
    with pytest.raises(ValueError, match="outscale"):
        engine.upscale_array(px, model, outscale=0)
    with pytest.raises(ValueError, match="alpha shape"):
        engine.upscale_array(px, model, alpha=np.zeros((4, 4), np.uint8))


# --------------------------------------------------------------------------- arrays


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    peak = float(np.iinfo(pixels.dtype).max)
    return torch.from_numpy(pixels.astype(np.float32) / peak).permute(2, 0, 1)[None]


def _quantised(x: torch.Tensor, dtype) -> np.ndarray:
    peak = float(np.iinfo(dtype).max)
    q = torch.floor(x.clamp(0, 1) * peak + 0.5)[0].permute(1, 2, 0)
    return q.numpy().astype(dtype)


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_array_path_matches_float_model(dtype) -> None:
    model = build("fsrcnn_s", 3)
    rng = np.random.default_rng(0)
    peak = np.iinfo(dtype).max
    pixels = rng.integers(0, peak + 1, (37, 29, 3), dtype=dtype)
    expected = _quantised(model(_to_tensor(pixels)), dtype)
    for tile in (0, 16):
        out, alpha = engine.upscale_array(pixels, model, tile=tile)
        assert alpha is None
        assert out.dtype == dtype and out.shape == (111, 87, 3)
        assert _max_diff(out, expected) <= 1  # float rounding at exact .5 ties only


def test_sixteen_bit_precision_is_kept() -> None:
    model = build("bicubic", 2)
    ramp = np.linspace(0, 65535, 40)
    pixels = np.stack([ramp[None, :] * np.ones((30, 1))] * 3, axis=2).round().astype(np.uint16)
    pixels[:, :, 1] = pixels[:, :, 1][::-1, ::-1]
    out, _ = engine.upscale_array(pixels, model, tile=16)
    assert out.dtype == np.uint16 and out.shape == (60, 80, 3)
    assert np.count_nonzero(out % 257) > 0.9 * out.size  # not an 8-bit image scaled up
    expected = _quantised(imresize(_to_tensor(pixels), 2), np.uint16)
    assert _max_diff(out, expected) <= 1


def test_grey_input() -> None:
    model = build("bicubic", 2)
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (21, 17, 1), dtype=np.uint8)
    out, _ = engine.upscale_array(grey, model, tile=8)
    assert out.shape == (42, 34, 1) and out.dtype == np.uint8
    expected = _quantised(imresize(_to_tensor(grey), 2), np.uint8)
    assert _max_diff(out, expected) <= 1
    flat, _ = engine.upscale_array(grey[:, :, 0], model)  # H x W in, H x W out
    assert flat.shape == (42, 34) and np.array_equal(flat, out[:, :, 0])
    # A learned model: the output is the mean of the three channels of the RGB result.
    espcn = build("espcn", 2)
    out, _ = engine.upscale_array(grey, espcn)
    rgb = espcn(_to_tensor(grey).expand(1, 3, -1, -1)).mean(dim=1, keepdim=True)
    assert _max_diff(out, _quantised(rgb, np.uint8)) <= 1


@pytest.mark.parametrize(("name", "scale", "outscale"), [("espcn", 4, 3), ("espcn", 2, 1.5)])
def test_outscale(name: str, scale: int, outscale: float) -> None:
    model = build(name, scale)
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 65536, (33, 25, 3), dtype=np.uint16)
    size = (round(33 * outscale), round(25 * outscale))
    sr = model(_to_tensor(pixels))
    expected = _quantised(imresize(sr, size=size), np.uint16)
    for tile in (0, 12):
        out, _ = engine.upscale_array(pixels, model, tile=tile, outscale=outscale)
        assert out.shape == (*size, 3) and out.dtype == np.uint16
        assert _max_diff(out, expected) <= 1


@pytest.mark.parametrize("outscale", [0.5, 4.7])
def test_outscale_streaming_resize_matches_whole_resize(outscale: float) -> None:
    model = build("bicubic", 3)
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (41, 23, 1), dtype=np.uint8)
    alpha = rng.integers(0, 256, (41, 23), dtype=np.uint8)
    size = (round(41 * outscale), round(23 * outscale))
    out, alpha_out = engine.upscale_array(pixels, model, alpha=alpha, tile=10, outscale=outscale)
    assert out.shape == (*size, 1) and alpha_out.shape == size
    a = _to_tensor(alpha[:, :, None])
    expected_alpha = _quantised(imresize(imresize(a, 3), size=size), np.uint8)[:, :, 0]
    assert _max_diff(alpha_out, expected_alpha) <= 1


# --------------------------------------------------------------------------- alpha


def _disc(size: int, radius: float, dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """An opaque white disc on fully transparent black (0, 0, 0, 0)."""
    peak = np.iinfo(dtype).max
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= radius**2
    pixels = np.zeros((size, size, 3), dtype)
    pixels[inside] = peak
    return pixels, (inside * peak).astype(dtype)


class Sharpen(nn.Module):
    """Bicubic followed by an unsharp mask: a model that sharpens more than bicubic."""

    arch, scale, hparams, tiling, receptive_field = "sharpen", 4, {"scale": 4}, "exact", 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = imresize(x, self.scale)
        blur = nn.functional.avg_pool2d(y, 5, stride=1, padding=2, count_include_pad=False)
        return y + 1.5 * (y - blur)


@pytest.mark.parametrize("name", ["bicubic", "sharpen"])
def test_transparent_edges_do_not_darken(name: str) -> None:
    model = build(name, 4) if name == "bicubic" else SRModel.from_module(Sharpen())
    pixels, alpha = _disc(32, 10)
    out, alpha_out = engine.upscale_array(pixels, model, alpha=alpha, tile=12)
    assert out.shape == (128, 128, 3) and alpha_out.shape == (128, 128)
    soft = (alpha_out > 0) & (alpha_out < 255)
    assert soft.sum() > 50  # there is a soft edge to look at
    assert out[soft].min() >= 254  # un-premultiplied colour stays white
    assert alpha_out.dtype == np.uint8
    if name == "bicubic":
        # Without premultiplication the black under transparent pixels bleeds in.
        naive = _quantised(imresize(_to_tensor(pixels), 4), np.uint8)
        assert naive[soft].min() < 128
        expected_alpha = _quantised(imresize(_to_tensor(alpha[:, :, None]), 4), np.uint8)
        assert _max_diff(alpha_out, expected_alpha[:, :, 0]) <= 1


def test_alpha_sixteen_bit_and_grey() -> None:
    model = build("bicubic", 2)
    pixels, alpha = _disc(24, 7, np.uint16)
    out, alpha_out = engine.upscale_array(pixels[:, :, :1], model, alpha=alpha, tile=8)
    assert out.shape == (48, 48, 1) and out.dtype == np.uint16 and alpha_out.dtype == np.uint16
    soft = (alpha_out > 0) & (alpha_out < 65535)
    assert soft.any() and out[:, :, 0][soft].min() >= 65535 - 2


def test_opaque_alpha_is_kept_without_running_it() -> None:
    model = build("espcn", 2)
    pixels = np.full((10, 12, 3), 100, np.uint8)
    calls = []
    out, alpha_out = engine.upscale_array(
        pixels, model, alpha=np.full((10, 12), 255, np.uint8), progress=lambda *a: calls.append(a)
    )
    plain, _ = engine.upscale_array(pixels, model)
    assert np.array_equal(out, plain)
    assert alpha_out.shape == (20, 24) and bool((alpha_out == 255).all())


# --------------------------------------------------------------------------- devices


def test_select_device() -> None:
    assert engine.select_device("cpu") == torch.device("cpu")
    auto = engine.select_device(None)
    assert auto == engine.select_device("auto")
    if not torch.cuda.is_available():
        assert auto.type != "cuda"
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            engine.select_device("cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            engine.upscale_array(np.zeros((4, 4, 3), np.uint8), build("espcn", 2), device="cuda")
    if not device.mps_available():
        with pytest.raises(RuntimeError, match="MPS"):
            engine.select_device("mps")
    with pytest.raises(ValueError, match="unknown device"):
        engine.select_device("gpu0")
    with pytest.raises(ValueError, match="unsupported device"):
        engine.select_device("meta")


def test_set_threads() -> None:
    before = torch.get_num_threads()
    try:
        engine.set_threads(1)
        assert torch.get_num_threads() == 1
        engine.set_threads(None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="threads"):
            engine.set_threads(bad)


# --------------------------------------------------------------------------- io.Image


def test_upscale_image_keeps_metadata() -> None:
    io = pytest.importorskip("superres.core.io")
    pixels, alpha = _disc(16, 5)
    image = io.Image(pixels=pixels, alpha=alpha, icc_profile=b"icc-bytes", exif=b"Exif\x00\x00")
    out = engine.upscale_image(image, build("bicubic", 2), tile=8)
    assert out.pixels.shape == (32, 32, 3) and out.alpha.shape == (32, 32)
    assert out.icc_profile == b"icc-bytes" and out.exif == b"Exif\x00\x00"


# --------------------------------------------------------------------------- memory


def test_memory_bound_4000x3000_x4(tmp_path: Path) -> None:
    """A 16000 x 12000 output is produced and written with peak RSS under 2 GB."""
    pytest.importorskip("superres.core.io")
    out = tmp_path / "big.png"
    cmd = [sys.executable, str(REPO / "benchmarks" / "memory_upscale.py"), "--width", "4000",
           "--height", "3000", "--scale", "4", "--model", "espcn", "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["output"] == [12000, 16000, 3]
    assert out.stat().st_size > 0
    assert report["peak_rss_bytes"] < 2 * 1000**3, report


def _oom_above(model: SRModel, limit: int, calls: list[tuple[int, int]]) -> SRModel:
    """``model`` whose forward raises torch.OutOfMemoryError on inputs over ``limit`` pixels."""
    forward = model.module.forward

    def limited(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape[-2:]))
        if x.shape[-2] * x.shape[-1] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(x)

    model.module.forward = limited
    return model


@pytest.mark.parametrize("name", ["plainsr", "lafn"])
def test_out_of_memory_tiles_are_split_and_stay_exact(name: str) -> None:
    model = build(name, 2, **SMALL.get(name, {}))
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = model.module(x)
    calls: list[tuple[int, int]] = []
    _oom_above(model, 1500, calls)
    got = engine.upscale_tensor(x, model, tile=0)  # one tile of 6300 pixels: must be split
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert calls[0] == (70, 90)
    # Each failure halves the size tried next; once a size failed, later pieces are split up
    # front instead of failing again: a handful of failures, not one per piece.
    failures = [c for c in calls if c[0] * c[1] > 1500]
    assert 1 <= len(failures) <= 3 and len(calls) - len(failures) >= 4


def test_out_of_memory_everywhere_is_a_memory_error() -> None:
    model = _oom_above(build("plainsr", 2), 10, [])
    with pytest.raises(MemoryError, match="out of memory even for a .* tile of plainsr"):
        engine.upscale_tensor(torch.rand(1, 3, 40, 40), model, tile=0)
    other = build("plainsr", 2)

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("some other failure")

    other.module.forward = broken
    with pytest.raises(RuntimeError, match="some other failure"):  # not retried
        engine.upscale_tensor(torch.rand(1, 3, 40, 40), other, tile=0)


def test_cpu_tile_budget_follows_available_memory(monkeypatch) -> None:
    cpu = torch.device("cpu")
    assert engine.available_memory() > 100 << 20  # this machine's /proc/meminfo
    monkeypatch.setattr(plan, "available_memory", lambda: 64 << 30)
    assert plan.tile_budget(cpu) == plan.CPU_TILE_BYTES
    model = build("plainsr", 2)
    roomy = engine.default_tile(model, "cpu")
    monkeypatch.setattr(plan, "available_memory", lambda: 200 << 20)
    assert plan.tile_budget(cpu) == 50 << 20
    assert engine.default_tile(model, "cpu") < roomy
    monkeypatch.setattr(plan, "available_memory", lambda: None)
    assert plan.tile_budget(cpu) == plan.CPU_TILE_BYTES


# --------------------------------------------------------------------------- CPU fast path


def test_cpu_path_runs_channels_last_and_leaves_weights_trainable() -> None:
    model = build("plainsr", 4)
    x = torch.rand(1, 3, 23, 31)
    with torch.no_grad():
        expected = model.module(x)
    out = engine.upscale_tensor(x, model, tile=0)
    conv = model.module.body[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert float((out - expected).abs().max()) < 1e-5
    # The conversion happened outside inference mode: the weights still train.
    model.module.train()
    loss = model.module(x).abs().mean()
    loss.backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_parameter_free_and_non_conv_models_are_left_alone() -> None:
    model = build("bicubic", 2)
    assert not loop.use_channels_last(model, torch.device("cpu"))
    assert not loop.use_channels_last(build("plainsr", 2), torch.device("meta"))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_quantise_rounds_half_up_and_clips(dtype) -> None:
    peak = float(np.iinfo(dtype).max)
    values = torch.tensor([-1.0, -1e-3, 0.0, 0.49 / peak, 0.5 / peak, 1.5 / peak, 0.5, 1.0, 1.2])
    values = torch.cat([values, torch.rand(1000)])
    reference = torch.floor(values.clamp(0, 1) * peak + 0.5).numpy().astype(dtype)
    got = pixels.quantise(values.clone(), peak, np.dtype(dtype))
    assert got.dtype == dtype
    assert np.array_equal(got, reference)
    # written in place into a view of a larger array (the engine's output rows)
    target = np.full((3, values.numel()), 7, dtype=dtype)
    row = target[1]
    assert pixels.quantise(values.clone(), peak, np.dtype(dtype), out=row) is row
    assert np.array_equal(target[1], reference)
    assert (target[0] == 7).all() and (target[2] == 7).all()


def test_allocator_tuning_can_be_turned_off() -> None:
    code = "from superres.inference import engine; print(engine.tune_cpu_allocator())"
    runs = {}
    for value in ("0", "1"):
        env = {**os.environ, "SUPERRES_TUNE_MALLOC": value}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        runs[value] = result.stdout.strip()
    assert runs["0"] == "False"
    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert runs["1"] == expected


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc tuning is glibc-only")
def test_memory_kept_for_reuse_is_given_back_on_request() -> None:
    code = """
import torch
from superres.inference import engine
from superres.models import SRModel, create_model
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
model = SRModel.from_module(create_model("plainsr", scale=4)).eval()
engine.upscale_tensor(torch.rand(1, 3, 240, 320), model, tile=0)
kept = rss()
engine.release_cpu_memory()
print(kept - rss())
"""
    given_back = {}
    for value in ("0", "1"):
        env = {**os.environ, "SUPERRES_TUNE_MALLOC": value}
        cmd = [sys.executable, "-c", code]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        given_back[value] = float(result.stdout)  # MiB
    assert given_back["1"] > 20  # freed activations were kept for reuse, now returned
    assert abs(given_back["0"]) < 5  # untuned: glibc had unmapped them already


def test_concurrent_calls_on_one_model_match_a_serial_call() -> None:
    """Four threads upscaling with one fresh model (its first call converts the weights to
    channels-last) give exactly the serial result, and leave the model where it was."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (40 + 7 * i, 52, 3), dtype=np.uint8) for i in range(8)]
    serial_model = build("lafn", 2)
    serial = [engine.upscale_array(im, serial_model, tile=24)[0] for im in images]
    shared = build("lafn", 2)
    shared.module.load_state_dict(serial_model.module.state_dict())
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda im: engine.upscale_array(im, shared, tile=24)[0], images))
    for got, want in zip(results, serial, strict=True):
        np.testing.assert_array_equal(got, want)
    assert shared.module.training is False


def test_a_device_argument_does_not_move_the_callers_model() -> None:
    model = build("espcn", 2)
    weights = next(model.module.parameters())
    engine.upscale_array(np.zeros((8, 8, 3), np.uint8), model, device="cpu")
    assert next(model.module.parameters()) is weights and model.device.type == "cpu"


@pytest.mark.parametrize("arch", ["lafn", "plainsr"])
def test_self_ensemble_tiles_exactly_and_is_symmetric(arch) -> None:
    """The self-ensemble tiles as exactly as one pass, equals the hand-made average of the 8
    transformed passes, and makes the output equivariant to flips and rotations."""
    model = build(arch, 2)
    x = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(3))
    whole = engine.upscale_tensor(x, model, tile=0, ensemble=True)
    tiled = engine.upscale_tensor(x, model, tile=16, ensemble=True)
    assert (whole - tiled).abs().max() < 1e-4
    manual = (
        sum(
            loop.undo_dihedral(engine.upscale_tensor(loop.dihedral(x, t), model, tile=0), t)
            for t in range(8)
        )
        / 8
    )
    assert (whole - manual).abs().max() < 1e-5
    for t in range(8):
        turned = engine.upscale_tensor(loop.dihedral(x, t), model, tile=0, ensemble=True)
        assert (loop.undo_dihedral(turned, t) - whole).abs().max() < 1e-5
        assert torch.equal(loop.undo_dihedral(loop.dihedral(x, t), t), x)
    plain = engine.upscale_tensor(x, model, tile=0)
    assert (plain - whole).abs().max() > 1e-4  # random weights are not symmetric


def test_self_ensemble_through_pixels_keeps_alpha_and_grey() -> None:
    model = build("plainsr", 2)
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (21, 17), dtype=np.uint8)
    out, _ = engine.upscale_array(grey, model, ensemble=True, tile=8)
    assert out.shape == (42, 34) and out.dtype == np.uint8
    rgb = rng.integers(0, 65536, (12, 14, 3), dtype=np.uint16)
    alpha = rng.integers(0, 65536, (12, 14), dtype=np.uint16)
    out, a = engine.upscale_array(rgb, model, alpha=alpha, ensemble=True)
    assert out.shape == (24, 28, 3) and a.shape == (24, 28) and out.dtype == np.uint16
