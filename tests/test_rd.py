"""Rate-distortion evaluation: BD-rate arithmetic, bpp accounting, the rd/compress CLIs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image as PILImage

from superres.apps import cli
from superres.codec import compress, decompress, rd
from superres.core.metrics import ms_ssim, psnr_rgb


def _curve(rates, offset=0.0):
    """A smooth concave RD curve: PSNR = 30 + 4 ln(bpp) + offset."""
    return [(r, 30 + 4 * math.log(r) + offset) for r in rates]


RATES = [0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7]


def test_bd_rate_of_a_curve_needing_30_percent_fewer_bits_is_minus_30():
    reference = _curve(RATES)
    test = [(r * 0.7, d) for r, d in reference]
    value, (low, high) = rd.bd_rate(reference, test, (0.1, 0.4))
    assert value == pytest.approx(-30.0, abs=1e-6)
    # The PSNR interval is where both curves lie in 0.1..0.4 bpp: from the test curve's
    # PSNR at 0.1 bpp (the higher one) to the reference's PSNR at 0.4 bpp (the lower one).
    assert low == pytest.approx(30 + 4 * math.log(0.1 / 0.7), abs=1e-9)
    assert high == pytest.approx(30 + 4 * math.log(0.4), abs=1e-9)


def test_bd_rate_identity_and_sign():
    reference = _curve(RATES)
    assert rd.bd_rate(reference, reference)[0] == pytest.approx(0.0, abs=1e-9)
    better = _curve(RATES, offset=1.0)  # +1 dB everywhere = exp(-1/4) of the rate
    assert rd.bd_rate(reference, better)[0] == pytest.approx((math.exp(-0.25) - 1) * 100, abs=1e-6)
    assert rd.bd_rate(better, reference)[0] == pytest.approx((math.exp(0.25) - 1) * 100)


def test_bd_rate_errors():
    reference = _curve(RATES)
    with pytest.raises(ValueError, match="nothing in the window"):
        rd.bd_rate(reference, _curve([1.0, 2.0, 3.0, 4.0]), (0.1, 0.4))
    with pytest.raises(ValueError, match="fewer than 2"):
        rd.bd_rate(reference, [(0.2, 30.0)])
    with pytest.raises(ValueError, match="do not overlap"):
        rd.bd_rate(reference, _curve(RATES, offset=40.0))
    with pytest.raises(ValueError, match="invalid bpp window"):
        rd.bd_rate(reference, reference, (0.4, 0.1))


def test_pareto_front_is_the_upper_envelope_of_the_curves():
    def curve(scale, pairs):
        points = tuple(rd.RDPoint(q, b, p, 0.9, 0.0, 0.0) for q, (b, p) in enumerate(pairs))
        return rd.Curve("jpeg", scale, "lanczos" if scale == 1 else "fast", points)

    full = curve(1, [(0.2, 25.0), (0.4, 29.0), (0.8, 33.0)])
    half = curve(2, [(0.05, 22.0), (0.1, 25.5), (0.3, 27.0), (0.5, 28.5)])
    front = rd.pareto_front([full, half])
    # (0.2, 25.0) has a cheaper better point; (0.3, 27.0) lies under the full-resolution
    # curve, which reaches 25 + 4 ln(1.5) / ln(2) = 27.34 dB at 0.3 bpp (log-rate interpolation).
    assert [(p.bpp, p.psnr) for p in front.points] == [
        (0.05, 22.0), (0.1, 25.5), (0.4, 29.0), (0.8, 33.0)
    ]  # fmt: skip
    assert front.name == "jpeg best of x1/x2 (fast)"


def _photo(h=176, w=200):
    """A deterministic textured RGB image big enough for MS-SSIM (>= 161 a side)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 90 * np.sin(x / 7.0), 128 + 90 * np.cos(y / 5.0),
                     (x * 3 + y * 2) % 256], -1)  # fmt: skip
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("codec", "scale", "model"), [("jpeg", 1, None), ("webp", 2, "lanczos"),
                                                       ("jpeg", 2, "fast")])  # fmt: skip
def test_rd_points_are_what_compress_and_decompress_give(codec, scale, model):
    image = _photo()
    curve = rd.rd_curve([("photo", image)], codec, scale, [20, 60], model=model)
    assert curve.scale == scale and [p.quality for p in curve.points] == [20, 60]
    for point in curve.points:
        data = compress(image, codec=codec, quality=point.quality, scale=scale, model=model)
        assert point.bpp == len(data) * 8 / (176 * 200)  # every byte of the file counts
        restored = decompress(data).pixels
        assert point.psnr == pytest.approx(psnr_rgb(restored, image), abs=1e-9)
        assert point.ms_ssim == pytest.approx(ms_ssim(restored, image), abs=1e-9)
    assert curve.points[0].bpp < curve.points[1].bpp
    assert curve.points[0].psnr < curve.points[1].psnr


def test_rd_refuses_images_too_small_for_ms_ssim():
    with pytest.raises(ValueError, match="tiny is 100x120: MS-SSIM needs at least 161"):
        rd.rd_curve([("tiny", _photo(120, 100))], "jpeg", 1, [50])


def test_rd_cli_writes_compressai_json_and_plot(tmp_path, capsys):
    data = tmp_path / "images"
    data.mkdir()
    for i in range(2):
        PILImage.fromarray(np.roll(_photo(), 17 * i, axis=1)).save(data / f"img{i}.png")
    out = tmp_path / "rd.json"
    plot = tmp_path / "rd.png"
    argv = ["rd", "--data", str(data), "--codec", "jpeg", "--scales", "2",
            "--models", "lanczos", "--qualities", "5,10,20,30,50,80",
            "--bpp-window", "0.1,2", "--json", str(out), "--plot", str(plot), "-q"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "jpeg (full resolution)" in printed and "jpeg x2 + lanczos" in printed
    assert "BD-rate vs jpeg (full resolution)" in printed
    result = json.loads(out.read_text())
    assert set(result) >= {"name", "description", "results", "curves", "bd_rate"}
    assert set(result["results"]) >= {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time",
                                      "decoding_time"}  # fmt: skip
    names = [c["name"] for c in result["curves"]]
    assert names == ["jpeg (full resolution)", "jpeg x2 + lanczos"]  # scale 1 is always added
    assert len(result["curves"][0]["results"]["bpp"]) == 6
    assert result["bd_rate"]["reference"] == "jpeg (full resolution)"
    assert set(result["bd_rate"]["percent"]) == {"jpeg x2 + lanczos", result["name"]}
    assert PILImage.open(plot).size[0] > 300


def test_rd_cli_default_scales_are_full_size_and_every_shipped_codec_scale():
    from superres.weights import zoo

    args = cli.build_parser().parse_args(["rd", "--data", "Kodak24"])
    codec_scales = {w.scale for w in zoo.shipped_weights() if w.name == "codec"}
    assert codec_scales == {2, 3, 4}
    assert args.scales == [1, *sorted(codec_scales)]


def test_rd_cli_usage_errors(tmp_path, capsys):
    assert cli.main(["rd", "--data", str(tmp_path / "nope")]) == 2
    assert "nope: not a folder" in capsys.readouterr().err
    assert cli.main(["rd", "--data", str(tmp_path), "--scales", "5"]) == 2
    assert "--scales must be a subset of 1,2,3,4" in capsys.readouterr().err
    assert cli.main(["rd", "--data", str(tmp_path), "--plot", "x.gif"]) == 2
    assert "the plot must be .png, .svg or .pdf" in capsys.readouterr().err


def test_compress_and_decompress_cli(tmp_path, capsys):
    source = tmp_path / "photo.png"
    PILImage.fromarray(_photo()).save(source)
    srz, restored = tmp_path / "photo.srz", tmp_path / "restored.png"
    assert cli.main(["compress", str(source), "-o", str(srz), "--codec", "webp",
                     "--target-bpp", "0.8", "--scale", "2", "--model", "lanczos"]) == 0  # fmt: skip
    line = capsys.readouterr().out
    assert f"{srz}: " in line and "webp quality" in line and "x2, restored by lanczos" in line
    assert len(srz.read_bytes()) * 8 / (176 * 200) <= 0.8
    assert cli.main(["decompress", str(srz), "-o", str(restored)]) == 0
    assert np.asarray(PILImage.open(restored)).shape == (176, 200, 3)

    # Nothing the user owns is overwritten; a bad file writes nothing.
    before = restored.read_bytes()
    assert cli.main(["decompress", str(srz), "-o", str(restored)]) == 1
    assert "restored.png: output exists (use --overwrite" in capsys.readouterr().err
    assert restored.read_bytes() == before
    broken = tmp_path / "broken.srz"
    broken.write_bytes(srz.read_bytes()[:-10])
    assert cli.main(["decompress", str(broken), "-o", str(tmp_path / "b.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.srz: truncated payload" in err
    assert not (tmp_path / "b.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broken.srz", "photo.png", "photo.srz", "restored.png"
    ]  # fmt: skip


def test_compress_cli_errors(tmp_path, capsys):
    source = tmp_path / "a.png"
    rgba = np.dstack([_photo(), np.full((176, 200), 128, np.uint8)])
    PILImage.fromarray(rgba).save(source)
    assert (
        cli.main(["compress", str(source), "-o", str(tmp_path / "a.srz"), "--quality", "50"]) == 1
    )
    assert "a.png: .srz does not store transparency" in capsys.readouterr().err
    assert cli.main(["compress", str(source), "-o", str(tmp_path / "a.srz")]) == 2
    assert "exactly one of --quality Q or --target-bpp B" in capsys.readouterr().err
    assert (
        cli.main(["compress", str(source), "-o", "x.srz", "--quality", "5", "--scale", "auto"]) == 2
    )
    assert "--scale auto needs --target-bpp" in capsys.readouterr().err
    assert cli.main(["compress", str(tmp_path / "none.png"), "-o", "x.srz", "--quality", "5"]) == 1
    assert "none.png" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.srz"))
