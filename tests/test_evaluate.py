"""The evaluator reproduces the published bicubic figures (Y channel, crop = scale)."""

from __future__ import annotations

import json

import pytest
import torch

import superres
from superres.apps.cli import main
from superres.core.degrade import make_lr
from tests.conftest import dataset

# Published bicubic PSNR (dB), e.g. Lim et al. 2017 (EDSR), Zhang et al. 2018 (RCAN).
PUBLISHED = {
    "Set5": {2: 33.66, 3: 30.39, 4: 28.42},
    "Set14": {2: 30.24, 3: 27.55, 4: 26.00},
    "BSD100": {2: 29.56, 3: 27.21, 4: 25.96},
}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_reproduces_published_psnr(scale):
    folders = [dataset(name) for name in PUBLISHED]
    result = superres.evaluate("bicubic", folders, scale=scale)
    assert result.scale == scale
    for name, published in PUBLISHED.items():
        got = result.datasets[name]
        assert got.images == {"Set5": 5, "Set14": 14, "BSD100": 100}[name]
        assert got.psnr == pytest.approx(published[scale], abs=0.03), (name, scale, got.psnr)
    if scale == 4:
        assert result.datasets["Set5"].ssim == pytest.approx(0.8104, abs=0.002)


def test_eval_cli_prints_table_and_writes_json(tmp_path, capsys):
    set5 = dataset("Set5")
    out = tmp_path / "result.json"
    code = main(["eval", "--data", str(set5), "--scale", "4", "--model", "bicubic",
                 "--json", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Set5" in printed and "PSNR" in printed and "SSIM" in printed
    data = json.loads(out.read_text())
    assert data["model"] == "bicubic" and data["scale"] == 4
    entry = data["datasets"]["Set5"]
    assert set(entry) >= {"images", "psnr", "ssim", "seconds"}
    assert entry["images"] == 5
    assert entry["psnr"] == pytest.approx(28.42, abs=0.03)


def test_make_lr_is_quantised_and_sized():
    hr = torch.rand(3, 24, 36)
    lr = make_lr(hr, 4)
    assert lr.shape == (3, 6, 9)
    assert torch.equal(lr, torch.round(lr * 255) / 255)


def test_eval_rejects_a_missing_folder(tmp_path, capsys):
    code = main(["eval", "--data", str(tmp_path / "nope"), "--model", "bicubic"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "not a folder" in err[0]


def test_two_folders_of_the_same_name_keep_their_own_results(tmp_path):
    """``a/Set5`` and ``b/Set5`` used to overwrite each other's entry under ``Set5``."""
    from PIL import Image

    for sub, value in (("a", 40), ("b", 200)):
        folder = tmp_path / sub / "Set5"
        folder.mkdir(parents=True)
        Image.new("RGB", (32, 32), (value, value // 2, 10)).save(folder / "x.png")
    result = superres.evaluate("bicubic", [tmp_path / "a" / "Set5", tmp_path / "b" / "Set5"], 2)
    assert sorted(result.datasets) == ["a/Set5", "b/Set5"]
    assert all(r.images == 1 for r in result.datasets.values())
    twice = superres.evaluate("bicubic", [tmp_path / "a" / "Set5"] * 2, 2)
    assert sorted(twice.datasets) == ["Set5", "Set5 (2)"]


def test_a_corrupt_benchmark_image_is_one_line(tmp_path, capsys):
    folder = tmp_path / "bench"
    folder.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32), (90, 90, 90)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    code = main(["eval", "--data", str(folder), "-m", "bicubic", "--scale", "2", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "b.png" in err, err
