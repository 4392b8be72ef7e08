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
