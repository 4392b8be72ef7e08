"""Attention pictures (superres.inference.explain) and the ``superres explain`` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from superres import api
from superres.core.io import read_image
from superres.errors import ConfigError
from superres.inference import explain
from superres.models import create_model
from superres.models.descriptor import SRModel
from tests.conftest import dataset


@pytest.fixture(scope="module")
def quality() -> SRModel:
    return api.load_model("quality", 4, cache=False)


@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    """A 40x48 crop of a Set5 image (real texture, a fast forward pass)."""
    return np.ascontiguousarray(
        read_image(dataset("Set5") / "butterfly.png").pixels[80:120, 80:128]
    )


def _tiny(arch: str, **hparams) -> SRModel:
    torch.manual_seed(0)
    return SRModel.from_module(create_model(arch, scale=2, **hparams).eval())


def test_lafn_gives_one_spatial_gate_per_block(quality: SRModel, lr: np.ndarray) -> None:
    gates = explain.capture_gates(quality, lr)
    blocks = quality.hparams["n_blocks"]
    assert [g.name for g in gates] == [f"block {i + 1}" for i in range(blocks)]
    assert [g.layer for g in gates] == [f"blocks.{i}.attention" for i in range(blocks)]
    for gate in gates:
        assert gate.kind == "spatial" and gate.values.shape == (40, 48)
        assert gate.values.dtype == np.float32
        assert gate.values.min() >= 0.0 and gate.values.max() <= 1.0


def test_lafn_gate_is_the_sigmoid_the_block_multiplies_by(quality: SRModel, lr: np.ndarray):
    """The captured gate equals sigmoid(expand(m)) computed by hand, and hooks leave the
    model's output unchanged and are removed afterwards."""
    x = torch.from_numpy(lr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    before = quality(x)
    gates = explain.capture_gates(quality, lr)
    after = quality(x)
    assert torch.equal(before, after)
    assert not any(m._forward_hooks for m in quality.module.modules())
    net = quality.module
    with torch.inference_mode():
        h = net.blocks[0](net.head(x))  # block 1's output: its input times the gate
        block = net.blocks[0]
        inner = torch.nn.functional.leaky_relu(block.conv1(net.head(x)), 0.05)
        inner = torch.nn.functional.leaky_relu(block.conv2(inner), 0.05)
        fused = block.fuse(block.conv3(inner) + net.head(x))
        attention = block.attention
        a = attention.squeeze(fused)
        m = attention.conv3(torch.relu(attention.conv2(torch.relu(attention.conv1(a))))) + a
        gate = torch.sigmoid(attention.expand(m))
    torch.testing.assert_close(fused * gate, h)
    np.testing.assert_allclose(gates[0].values, gate[0].mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_picture_has_the_input_and_one_panel_per_block(quality: SRModel, lr: np.ndarray):
    picture, gates = explain.explain(lr, quality, panel=96, columns=4)
    assert len(gates) == 6 and picture.dtype == np.uint8 and picture.shape[2] == 3
    # 7 panels of 96x80 in 4 columns: 2 rows
    assert picture.shape[1] == 4 * 96 + 5 * 6
    single_row, _ = explain.explain(lr, quality, panel=96, columns=7)
    assert single_row.shape[1] == 7 * 96 + 8 * 6 and single_row.shape[0] < picture.shape[0]
    background = np.asarray(explain.BACKGROUND, np.uint8)
    panel_pixels = ~(single_row == background).all(axis=2)
    filled = [panel_pixels[-86:-6, 6 + k * 102 : 6 + k * 102 + 96].mean() for k in range(7)]
    assert min(filled) > 0.95  # every panel is drawn


def test_explain_reduces_a_large_input(quality: SRModel) -> None:
    image = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    _, gates = explain.explain(image, quality, max_side=32, panel=64)
    assert gates[0].values.shape == (20, 32)


def test_channel_attention_is_one_strip_per_block() -> None:
    model = _tiny("rcan", n_groups=2, n_blocks=3, n_feats=16, reduction=4)
    image = np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    gates = explain.capture_gates(model, image)
    assert len(gates) == 6 and {g.kind for g in gates} == {"channel"}
    assert all(g.values.shape == (16,) for g in gates)
    assert gates[0].layer == "body.0.body.0.body.3"  # conv, ReLU, conv, attention
    picture, _ = explain.explain(image, model, panel=64)
    assert picture.shape[1] == 2 * 64 + 3 * 6  # the input and the strips


def test_cbam_spatial_attention_is_shown() -> None:
    model = _tiny("edsr_baseline", n_feats=8, n_blocks=2, attention="spatial")
    gates = explain.capture_gates(model, np.zeros((12, 10, 3), np.uint8))
    assert [g.kind for g in gates] == ["spatial", "spatial"] and gates[0].values.shape == (12, 10)


def test_a_model_without_attention_is_refused_in_one_line(lr: np.ndarray) -> None:
    fast = api.load_model("fast", 4)
    with pytest.raises(ConfigError) as info:
        explain.capture_gates(fast, lr)
    assert str(info.value) == "fast: the model (plainsr) has no attention layers to show"
    with pytest.raises(ConfigError, match="no attention layers"):
        explain.explain(lr, api.load_model("bicubic", 2))


def test_bad_images_are_refused(quality: SRModel) -> None:
    with pytest.raises(ConfigError, match="shape"):
        explain.capture_gates(quality, np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ConfigError, match="int32"):
        explain.capture_gates(quality, np.zeros((4, 4, 3), np.int32))
    assert len(explain.capture_gates(quality, np.zeros((8, 8), np.uint8))) == 6  # grey -> RGB


def test_colourise_runs_dark_to_bright() -> None:
    rgb = explain.colourise(np.array([0.0, 0.5, 1.0, 2.0]), 0.0, 1.0)
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 3)
    assert tuple(rgb[0]) == explain.COLOUR_MAP[0] and tuple(rgb[-1]) == explain.COLOUR_MAP[-1]
    assert rgb[0].sum() < rgb[1].sum() < rgb[2].sum()


# --------------------------------------------------------------------------- superres explain


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from superres.apps.cli.main import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_explain_writes_the_picture(tmp_path, capsys, lr: np.ndarray) -> None:
    source = tmp_path / "in.png"
    PILImage.fromarray(lr).save(source)
    out = tmp_path / "attn.png"
    code, stdout, err = _cli(["explain", str(source), "-o", str(out), "--panel", "64"], capsys)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith(f"{out}: ") and "6 attention layers of quality x4" in lines[0]
    assert lines[1].startswith("  block 1 (spatial, blocks.0.attention): mean ")
    assert read_image(out).width == 4 * 64 + 5 * 6
    code, _, err = _cli(["explain", str(source), "-o", str(out)], capsys)
    assert code == 1 and "output exists (use --overwrite to replace it)" in err


def test_cli_explain_reads_a_checkpoint_with_channel_attention(tmp_path, capsys) -> None:
    from superres.weights.checkpoint import save_checkpoint

    ckpt = tmp_path / "rcan.safetensors"
    save_checkpoint(ckpt, _tiny("rcan", n_groups=1, n_blocks=2, n_feats=8, reduction=4))
    source = tmp_path / "in.png"
    PILImage.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(source)
    out = tmp_path / "attn.png"
    code, stdout, err = _cli(["explain", str(source), "-o", str(out), "-m", str(ckpt)], capsys)
    assert code == 0, err
    assert "2 attention layers" in stdout and "(channel, " in stdout and out.is_file()


@pytest.mark.parametrize(
    "argv, problem, status",
    [
        (["-m", "fast"], "fast: the model (plainsr) has no attention layers to show", 1),
        (["-m", "bicubic"], "bicubic: the model (bicubic) has no attention layers to show", 1),
        (["-m", "nosuch"], "unknown model 'nosuch'", 2),
        (["--panel", "8"], "--panel must be 32 to 2048, got 8", 2),
        (["--input-is", "{text}"], "{text}: not an image file", 1),
    ],
)
def test_cli_explain_refuses_bad_input_in_one_line(tmp_path, capsys, argv, problem, status):
    source = tmp_path / "in.png"
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(source)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    if argv[0] == "--input-is":
        source, argv = text, []
    out = tmp_path / "attn.png"
    code, _, err = _cli(["explain", str(source), "-o", str(out), *argv], capsys)
    assert code == status
    assert err.count("\n") == 1 and problem.format(text=text) in err
    assert not out.exists()


def test_cli_explain_help_has_examples(capsys) -> None:
    from superres.apps.cli.main import main

    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = capsys.readouterr().out
    assert "superres explain photo.png -o" in text.split("examples:", 1)[1]
