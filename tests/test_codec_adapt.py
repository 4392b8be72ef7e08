"""Adaptive downscaling (``compress(adapt_steps=...)``, ``compress --adapt``, ``rd --adapt``):
the encoder refines the stored LR image for the file's restorer; decoders are unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

import superres
from superres.apps import cli
from superres.codec import (
    ADAPT_STEPS,
    adapt_lr,
    choose_restorer,
    compress_detailed,
    decompress,
    downscale,
    get_codec,
    parse,
    rd,
    restore,
    unpack,
)
from superres.core.degrade import list_images, load_hr
from superres.core.metrics import psnr_rgb
from superres.errors import ConfigError
from tests.conftest import dataset


def _kodak(index: int = 0, box: tuple[int, int, int, int] = (200, 150, 457, 342)) -> np.ndarray:
    """A crop of a Kodak24 photo with sides that are not multiples of 2, 3 or 4."""
    return np.ascontiguousarray(load_hr(list_images(dataset("Kodak24"))[index])[
        box[1] : box[3], box[0] : box[2]])  # fmt: skip


def test_the_refined_lr_restores_closer_and_its_gradient_does_not_depend_on_the_tiles():
    hr = _kodak()
    net = superres.load_model("codec", scale=2)
    lr = downscale(hr, 2)
    refined = adapt_lr(hr, lr, 2, net, 3)
    assert refined.shape == lr.shape and refined.dtype == np.uint8
    # Adam's steps are 0.5 of a level: 3 steps move no pixel by more than 2 levels
    moved = np.abs(refined.astype(int) - lr)
    assert 0 < moved.max() <= 2 and (moved > 0).mean() > 0.3
    # tiles widened by the receptive field: the same gradient up to float summation order,
    # so the same pixels but for a rare one on a half level (2 of 37,152 here)
    differ = np.abs(adapt_lr(hr, lr, 2, net, 3, tile=40).astype(int) - refined)
    assert differ.max() <= 1 and (differ > 0).mean() < 1e-3
    size = hr.shape[:2]
    before, after = (psnr_rgb(restore(x, 2, size, net), hr) for x in (lr, refined))
    assert after > before + 0.5, (before, after)  # measured +1.0 dB on this crop
    assert adapt_lr(hr, lr, 2, net, 0) is lr
    # the shared restorer is left as it was: no gradient kept on its weights
    assert all(p.grad is None for p in net.module.parameters())


def test_a_grey_image_is_refined_as_grey():
    hr = _kodak()[..., 1:2]
    net = superres.load_model("codec", scale=3)
    lr = downscale(hr, 3)
    refined = adapt_lr(hr, lr, 3, net, 3)
    assert refined.shape == lr.shape == (64, 86, 1)
    before, after = (psnr_rgb(restore(x, 3, hr.shape[:2], net), hr) for x in (lr, refined))
    assert after > before + 0.3, (before, after)


@pytest.mark.parametrize(("codec", "quality"), [("jpeg", 80), ("webp", 60)])
def test_an_adapted_file_decodes_as_any_other_and_restores_better(codec, quality):
    """Measured on this crop of kodim01: JPEG q80 +0.41 dB for 2.2 % more bytes, WebP q60
    +0.37 dB for 3.8 % more (on smooth images the gain is smaller: README, Rate-distortion)."""
    hr = _kodak()
    # the stored payload is the codec's coding of adapt_lr's output (computed first: the
    # engine later turns the cached restorer to channels-last, whose float rounding can move
    # a pixel on a half level)
    net = choose_restorer(None, 2, device="cpu").net  # the one compress loads (cached)
    lr = adapt_lr(hr, downscale(hr, 2), 2, net, ADAPT_STEPS)
    adapted = compress_detailed(hr, codec=codec, quality=quality, scale=2, adapt_steps=ADAPT_STEPS)
    assert unpack(adapted.data)[1] == get_codec(codec).encode(lr, quality)
    plain = compress_detailed(hr, codec=codec, quality=quality, scale=2)
    assert parse(adapted.data).header == parse(plain.data).header  # same model, hash, sizes
    assert adapted.model == "codec" and adapted.quality == quality
    gain = psnr_rgb(decompress(adapted.data).pixels, hr) - psnr_rgb(
        decompress(plain.data).pixels, hr
    )
    assert gain > 0.2, gain
    assert len(adapted.data) < 1.10 * len(plain.data)


def test_adapting_to_a_bitrate_target_and_over_the_scales():
    hr = _kodak(2)
    plain = compress_detailed(hr, codec="webp", target_bpp=0.5, scale="auto")
    adapted = compress_detailed(hr, codec="webp", target_bpp=0.5, scale="auto", adapt_steps=4)
    assert adapted.bpp <= 0.5 and adapted.psnr > plain.psnr, (plain, adapted)
    assert adapted.psnr == pytest.approx(psnr_rgb(decompress(adapted.data).pixels, hr), abs=1e-9)
    calls = []
    compress_detailed(hr, quality=50, scale=3, adapt_steps=4,
                      progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"adapt_steps": -1}, "adapt_steps must be an integer from 0 to 200, got -1"),
        ({"adapt_steps": 201}, "adapt_steps must be an integer from 0 to 200, got 201"),
        ({"adapt_steps": True}, "adapt_steps must be an integer from 0 to 200, got True"),
        ({"adapt_steps": 2.5}, "adapt_steps must be an integer from 0 to 200, got 2.5"),
        ({"adapt_steps": 3, "model": "lanczos"},
         "adaptive downscaling needs a network restorer, not lanczos"),
    ],
)  # fmt: skip
def test_bad_adaptive_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError) as err:
        compress_detailed(np.zeros((40, 40, 3), np.uint8), quality=50, scale=2, **kwargs)
    assert str(err.value) == message


def test_the_cli_adapts_on_request_and_refuses_what_it_cannot_do(tmp_path, capsys):
    src = tmp_path / "in.png"
    PILImage.fromarray(_kodak()).save(src)
    out = tmp_path / "a.srz"
    assert cli.main(["compress", str(src), "-o", str(out), "--quality", "60", "--scale", "2",
                     "--adapt", "3"]) == 0  # fmt: skip
    assert "restored by codec, adaptive downscaling 3 steps)" in capsys.readouterr().out
    assert cli.main(["decompress", str(out), "-o", str(tmp_path / "a.png"), "-q"]) == 0
    for argv, message in [
        (["--scale", "1", "--adapt"], "--adapt needs --scale 2, 3, 4 or auto"),
        (["--scale", "2", "--adapt", "201"], "--adapt takes at most 200 steps, got 201"),
        (["--scale", "2", "--adapt", "-3"], "--adapt: expected a non-negative integer"),
        (["--scale", "2", "--adapt", "2", "--model", "lanczos"],
         "adaptive downscaling needs a network restorer, not lanczos"),
    ]:  # fmt: skip
        code = cli.main(["compress", str(src), "-o", str(tmp_path / "b.srz"), "--quality", "60",
                         *argv])  # fmt: skip
        err = capsys.readouterr().err
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "b.srz").exists()


def test_rd_measures_adaptive_curves_beside_the_plain_ones(tmp_path, capsys):
    data = tmp_path / "images"
    data.mkdir()
    for i in range(2):
        PILImage.fromarray(_kodak(i)).save(data / f"k{i}.png")
    out = tmp_path / "rd.json"
    argv = ["rd", "--data", str(data), "--codec", "jpeg", "--scales", "2", "--adapt", "4",
            "--qualities", "30,60,90", "--bpp-window", "0.3,2", "--models", "codec,lanczos",
            "--json", str(out), "-q"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "jpeg x2 + codec, adaptive downscaling (4 steps)" in printed
    result = json.loads(out.read_text())
    names = [c["name"] for c in result["curves"]]
    assert names == ["jpeg (full resolution)", "jpeg x2 + codec", "jpeg x2 + lanczos",
                     "jpeg x2 + codec, adaptive downscaling (4 steps)"]  # one of each # fmt: skip
    curves = {c["name"]: c["results"] for c in result["curves"]}
    plain, adapted = (
        curves["jpeg x2 + codec"],
        curves["jpeg x2 + codec, adaptive downscaling (4 steps)"],
    )
    assert all(a > p for a, p in zip(adapted["psnr-rgb"], plain["psnr-rgb"], strict=True))
    assert result["best_adaptive"]["name"] == "jpeg best of x1/x2 (codec, adaptive)"
    assert set(result["bd_rate"]["percent"]) == {
        "jpeg x2 + codec", "jpeg x2 + lanczos", "jpeg x2 + codec, adaptive downscaling (4 steps)",
        "jpeg best of x1/x2 (codec)", "jpeg best of x1/x2 (codec, adaptive)",
    }  # fmt: skip
    # the API behind it: the curve records its steps; lanczos has nothing to adapt to
    images = rd.load_images(data)[:1]
    assert rd.rd_curve(images, "jpeg", 2, [50], adapt_steps=2).adapt == 2
    with pytest.raises(ConfigError, match="adaptive downscaling needs a network restorer"):
        rd.rd_curve(images, "jpeg", 2, [50], model="lanczos", adapt_steps=2)
    assert cli.main([*argv[:13], "--models", "lanczos,codec"]) == 2
    assert "--adapt needs a network restorer first in --models" in capsys.readouterr().err
