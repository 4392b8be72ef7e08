"""The learned burst network: BurstLAFN, its synthetic training bursts, `superres train` on
them, and the learned burst method running it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import superres
from superres.core.burst import make_burst, score_burst
from superres.core.fusion import shift_and_add, splat
from superres.core.resize import quantize
from superres.inference.burst import fuse_burst
from superres.models import create_model
from superres.training import loop as tr
from superres.training.bursts import BurstDataset
from superres.training.config import ConfigError, config_from_dict
from superres.training.data import load_pairs
from superres.weights.checkpoint import save_checkpoint

from .test_data import make_folder


def small_net(scale: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = create_model("burst_lafn", scale=scale, channels=8, n_blocks=1, reduced=4)
    for p in net.burst_head.parameters():  # a trained-looking burst input
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, h // 6 + 2, w // 6 + 2))).float()
    big = torch.nn.functional.interpolate(coarse, scale_factor=6, mode="bicubic")[0]
    return big[:, :h, :w].clamp(0, 1)


def test_it_starts_as_the_quality_network_and_stays_under_half_a_million_parameters():
    torch.manual_seed(1)
    lafn = create_model("lafn", scale=4).eval()
    net = create_model("burst_lafn", scale=4).eval()
    missing, unexpected = net.load_state_dict(lafn.state_dict(), strict=False)
    assert sorted(missing) == ["burst_head.bias", "burst_head.weight"] and not unexpected
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        assert torch.equal(net(x), lafn(x))
        burst = torch.rand(1, 5, 3, 20, 24)
        assert torch.equal(net(burst, torch.rand(1, 5, 2)), lafn(burst[:, 0]))
    assert sum(p.numel() for p in net.parameters()) <= 500_000


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_single_image_path_is_the_burst_path_with_one_still_frame(scale):
    """A 4-D batch takes constant kernels (so it traces for ONNX); same numbers as a burst of
    one frame without motion."""
    net = small_net(scale=scale)
    x = torch.rand(2, 3, 13, 17)
    assert torch.equal(net.accumulate_one(x), net.accumulate(x[:, None], torch.zeros(2, 1, 2)))
    with torch.no_grad():
        assert torch.equal(net(x), net(x[:, None], torch.zeros(2, 1, 2), degradation="bicubic"))


def test_the_output_does_not_depend_on_the_order_of_the_other_frames():
    net = small_net()
    frames = torch.rand(1, 4, 3, 18, 20)
    shifts = torch.tensor([[[0.0, 0.0], [0.5, 0.25], [-0.75, 1.5], [0.3, -0.2]]])
    order = [0, 3, 1, 2]
    with torch.no_grad():
        a = net(frames, shifts, degradation="area")
        b = net(frames[:, order], shifts[:, order], degradation="area")
        c = net(frames, shifts, degradation="bicubic")
    assert torch.allclose(a, b, atol=1e-5)
    assert (a - c).abs().max() > 1e-4  # the PSF code reaches the network


def test_splat_sums_the_frames_of_each_burst():
    frames, shifts = torch.rand(6, 3, 9, 11), torch.rand(6, 2) * 2 - 0.5
    both = splat(frames, shifts, 3, sigma=0.5, bursts=2)
    for b in range(2):
        est, density = shift_and_add(frames[3 * b : 3 * b + 3], shifts[3 * b : 3 * b + 3], 3,
                                     sigma=0.5)  # fmt: skip
        assert torch.allclose(both[b, -1], density, atol=1e-5)
        assert torch.allclose(both[b, :3] / both[b, -1:].clamp(min=1e-6), est, atol=1e-5)
    with pytest.raises(superres.SuperresError, match="do not split into 4 bursts"):
        splat(frames, shifts, 3, sigma=0.5, bursts=4)


def test_tiles_join_exactly():
    net = small_net(scale=2)
    hr = smooth_image(100, 84)
    burst = make_burst(hr, 2, 4, downscaler="area", seed=3)
    whole = fuse_burst(burst.frames, 2, method="learned", network=net, shifts=burst.shifts,
                       degradation="area", tile=0, refine=0).image  # fmt: skip
    tiled = fuse_burst(burst.frames, 2, method="learned", network=net, shifts=burst.shifts,
                       degradation="area", tile=16, refine=0).image  # fmt: skip
    assert tiled.shape == whole.shape == hr[:, : whole.shape[1], : whole.shape[2]].shape
    assert (tiled - whole).abs().max() < 1e-5


def test_any_frame_can_be_the_reference():
    """The network runs on the frames in reference-first order with shifts relative to it: on
    a burst whose frame 2 is the reference, the output lies on frame 2's grid."""
    net = small_net(scale=2)
    hr = smooth_image(80, 80, seed=5)
    burst = make_burst(hr, 2, 4, downscaler="area", seed=1)
    order = [2, 0, 1, 3]
    straight = fuse_burst(burst.frames, 2, method="learned", network=net, shifts=burst.shifts,
                          degradation="area", robust=False).image  # fmt: skip
    moved = fuse_burst(burst.frames[order], 2, method="learned", network=net,
                       shifts=burst.shifts[order], reference=1, degradation="area",
                       robust=False).image  # fmt: skip
    assert torch.allclose(straight, moved, atol=1e-5)
    with pytest.raises(superres.SuperresError, match="not a burst network"):
        fuse_burst(burst.frames, 2, method="learned", network=create_model("espcn", scale=2))


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("bursts") / "train", [(96, 100), (90, 90)], seed=4)


def test_training_bursts_follow_the_protocol(train_folder):
    pairs, _ = load_pairs([train_folder], 2, 8)
    data = BurstDataset(pairs, 2, 16, batch=4, seed=7, frames=(1, 4, 8), downscalers=("area",),
                        subpixel=0.0, jitter=0.0)  # fmt: skip
    lengths = {data.burst_length(i) for i in range(30)}
    assert lengths == {1, 4, 8}
    it = next(i for i in range(30) if data.burst_length(i) == 8)
    frames, shifts, code, hr = data.sample(it, 2)
    again = data.sample(it, 2)
    assert all(torch.equal(a, b) for a, b in zip((frames, shifts, code, hr), again, strict=True))
    assert frames.shape == (8, 3, 16, 16) and frames.dtype == torch.uint8
    assert hr.shape == (3, 32, 32) and shifts.shape == (8, 2) and float(code) == 1.0
    assert torch.equal(shifts[0], torch.zeros(2))
    assert torch.equal(shifts * 2, (shifts * 2).round())  # whole HR pixels without subpixel
    assert shifts.min() >= -1 and shifts.max() < 2
    # frame 0 is the box-filtered HR crop, rounded to 8 bits
    box = torch.nn.functional.avg_pool2d(hr.float()[None] / 255, 2)[0]
    assert torch.equal(frames[0], (quantize(box) * 255).round().to(torch.uint8))
    # the shifts are the frames' true motion: shift-and-add with them rebuilds the HR crop
    # better from all frames than from frame 0 alone
    lr = frames.float() / 255
    target = hr.float() / 255
    one, _ = shift_and_add(lr[:1], shifts[:1].double(), 2, sigma=0.5)
    all_, _ = shift_and_add(lr, shifts.double(), 2, sigma=0.5)
    err = [float(((x - target)[:, 4:-4, 4:-4] ** 2).mean()) for x in (one, all_)]
    assert err[1] < 0.7 * err[0]
    with pytest.raises(ValueError, match="no training image is large enough"):
        BurstDataset(pairs, 2, 60, batch=4, seed=0, frames=(2,))


def burst_config(train_folder, val_folder, output, **data) -> dict:
    return {
        "model": {"arch": "burst_lafn", "scale": 2,
                  "hparams": {"channels": 8, "n_blocks": 1, "reduced": 4}},
        "data": {"train": [str(train_folder)], "val": str(val_folder), "patch": 12, "batch": 2,
                 "workers": 0, "burst": {"frames": [1, 3], "val_frames": 4, **data}},
        "optim": {"lr": 1e-3},
        "schedule": {"name": "constant"},
        "iterations": 4, "log_every": 2, "val_every": 4, "checkpoint_every": 2,
        "output": str(output), "threads": 1, "tensorboard": False,
    }  # fmt: skip


def test_superres_train_fits_a_burst_network(tmp_path, train_folder):
    val = make_folder(tmp_path / "val", [(60, 64)], seed=9)
    out = tmp_path / "run"
    cfg = burst_config(train_folder, val, out)
    tr.train(config_from_dict(cfg), progress=False)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log] == [2, 4]
    scores = log[-1]["val"]
    assert set(scores) == {"val (4 frames, area)", "val (4 frames, bicubic)"}
    assert all(np.isfinite(v["psnr"]) and 0 < v["ssim"] <= 1 for v in scores.values())
    net = superres.load_model(out / "last.safetensors")
    assert net.arch == "burst_lafn" and getattr(net.module, "burst", False)
    # the burst network is also a single-image model
    assert superres.upscale(np.zeros((6, 7, 3), np.uint8), model=net).shape == (12, 14, 3)


def test_burst_configs_are_checked(tmp_path, train_folder):
    cfg = burst_config(train_folder, train_folder, tmp_path / "r")
    cfg["model"] = {"arch": "lafn", "scale": 2}
    with pytest.raises(ConfigError, match="lafn is not a multi-frame model"):
        config_from_dict(cfg)
    cfg = burst_config(train_folder, train_folder, tmp_path / "r")
    cfg["data"]["burst"]["frames"] = []
    with pytest.raises(ConfigError, match="burst_lafn trains on bursts"):
        config_from_dict(cfg)
    cfg = burst_config(train_folder, train_folder, tmp_path / "r", downscalers=["box"])
    with pytest.raises(ConfigError, match="data.burst.downscalers"):
        config_from_dict(cfg)


def test_the_learned_method_runs_a_burst_checkpoint(tmp_path):
    net = small_net(scale=2)
    path = tmp_path / "burst.safetensors"
    save_checkpoint(path, net)
    hr = smooth_image(64, 60, seed=2)
    burst = make_burst(hr, 2, 4, downscaler="area", seed=0)
    frames = [(f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in burst.frames]
    out = superres.upscale_burst(frames, 2, method="learned", model=path)
    direct = fuse_burst(burst.frames, 2, method="learned", network=net, degradation="area")
    expected = (direct.image.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert out.shape == expected.shape and np.abs(out.astype(int) - expected).max() <= 1
    assert score_burst(torch.from_numpy(out).permute(2, 0, 1).float() / 255, burst.reference_hr)
