"""benchmarks/gallery.py: the README gallery script writes its PNG and orders the methods."""

from __future__ import annotations

from PIL import Image

from tests.conftest import data_root, dataset, load_script


def test_gallery_one_image(tmp_path, capsys):
    dataset("Set5")
    gallery = load_script("benchmarks/gallery.py")
    results = gallery.main(["--data", str(data_root()), "--out", str(tmp_path), "--only",
                            "butterfly"])  # fmt: skip
    assert len(results) == 1
    result = results[0]
    assert result.path == tmp_path / "butterfly_x4.png"
    assert [p.name for p in tmp_path.iterdir()] == ["butterfly_x4.png"]  # no temporary left
    panel = gallery.CROP * gallery.ZOOM
    width, height = gallery.figure_size()
    assert width == 4 * panel + 5 * gallery.GAP
    assert height == gallery.TITLE_H + panel + gallery.LABEL_H + gallery.GAP
    with Image.open(result.path) as image:
        assert image.size == (width, height)
        assert image.mode == "RGB"
        pixels = image.load()
        # the ground-truth panel holds the HR crop, enlarged with nearest-neighbour
        x0 = gallery.GAP + 3 * (panel + gallery.GAP)
        assert pixels[x0, gallery.TITLE_H] == pixels[x0 + gallery.ZOOM - 1, gallery.TITLE_H]
    scores = result.psnr
    assert list(scores) == ["bicubic", "fast", "quality"]
    assert scores["quality"] > scores["fast"] > scores["bicubic"] > 15
    out = capsys.readouterr().out
    assert "butterfly_x4.png" in out and f"quality {scores['quality']:.2f}" in out
