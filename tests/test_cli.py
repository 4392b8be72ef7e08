"""The CLI, run in-process (and once as the installed console script)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from superres.apps.cli import main

REPO = Path(__file__).resolve().parents[1]
PATTERN = REPO / "examples" / "pattern.png"


def make_image(path: Path, size=(20, 14), colour=(200, 30, 90)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    arr[:4, :4] = colour
    Image.fromarray(arr).save(path)
    return path


def test_upscale_single_file(tmp_path):
    out = tmp_path / "x4.png"
    assert main(["upscale", str(PATTERN), "-o", str(out), "--model", "bicubic", "-q"]) == 0
    with Image.open(out) as im:
        assert im.size == (512, 512) and im.format == "PNG"


def test_upscale_scale_and_outscale(tmp_path):
    src = make_image(tmp_path / "a.png")
    assert main(["upscale", str(src), "-o", str(tmp_path / "x2.jpg"), "-m", "bicubic",
                 "--scale", "2", "-q"]) == 0  # fmt: skip
    with Image.open(tmp_path / "x2.jpg") as im:
        assert im.size == (40, 28) and im.format == "JPEG"
    assert main(["upscale", str(src), "-o", str(tmp_path / "x15.png"), "-m", "bicubic",
                 "--outscale", "1.5", "-q"]) == 0  # fmt: skip
    with Image.open(tmp_path / "x15.png") as im:
        assert im.size == (30, 21)


def test_folder_is_mirrored_and_recursive_is_opt_in(tmp_path):
    src = tmp_path / "in"
    make_image(src / "top.png")
    make_image(src / "sub" / "deep.jpg")
    (src / "notes.txt").write_text("not an image")
    flat = tmp_path / "flat"
    assert main(["upscale", str(src), "-o", str(flat), "-m", "bicubic", "-s", "2", "-q"]) == 0
    assert sorted(p.relative_to(flat).as_posix() for p in flat.rglob("*.*")) == ["top.png"]
    deep = tmp_path / "deep"
    assert main(["upscale", str(src), "-o", str(deep), "-m", "bicubic", "-s", "2", "-r", "-q"]) == 0
    assert sorted(p.relative_to(deep).as_posix() for p in deep.rglob("*.*")) == [
        "sub/deep.jpg",
        "top.png",
    ]


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, capsys):
    src = make_image(tmp_path / "a.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert main(["upscale", str(src), "-o", str(out), "-m", "bicubic", "-s", "2"]) == 0
    assert out.read_bytes() == b"precious"
    assert "skipped" in capsys.readouterr().err
    assert main(["upscale", str(src), "-o", str(out), "-m", "bicubic", "-s", "2",
                 "--overwrite", "-q"]) == 0  # fmt: skip
    with Image.open(out) as im:
        assert im.size == (40, 28)


def test_bad_input_fails_alone_with_one_line(tmp_path, capsys):
    src = tmp_path / "in"
    make_image(src / "good.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    out = tmp_path / "out"
    code = main(["upscale", str(src), "-o", str(out), "-m", "bicubic", "-s", "2", "-q"])
    assert code == 1
    assert (out / "good.png").exists()
    assert not (out / "broken.png").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.png" in errors[0]


def test_missing_input_is_reported(tmp_path, capsys):
    code = main(["upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png"),
                 "-m", "bicubic", "-q"])  # fmt: skip
    assert code == 1
    assert "missing.png" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_unknown_model_is_a_usage_error(tmp_path, capsys):
    src = make_image(tmp_path / "a.png")
    code = main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", "nosuchmodel"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosuchmodel" in err[0]
    assert not (tmp_path / "o.png").exists()


def test_architecture_without_weights_is_explained(tmp_path, capsys):
    src = make_image(tmp_path / "a.png")
    code = main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", "edsr_baseline"])
    assert code == 2
    assert "without shipped weights" in capsys.readouterr().err


def test_a_package_warning_is_one_line(tmp_path, capsys):
    src = make_image(tmp_path / "in.png", size=(40, 32))
    argv = ["upscale", str(src), "-o", str(tmp_path / "out.png"), "-m", "quality", "-s", "2"]
    assert main([*argv, "--tile", "8", "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("superres: warning: tile 8 is small"), err
    assert main([*argv, "--tile", "8", "-q", "--overwrite"]) == 0  # again in this process
    assert capsys.readouterr().err == err
    assert main([*argv, "-q", "--overwrite"]) == 0
    assert capsys.readouterr().err == ""


def test_upscale_with_a_checkpoint_path(tmp_path):
    import torch

    from superres.models import create_model
    from superres.weights.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "espcn.safetensors", create_model("espcn", scale=3))
    src = make_image(tmp_path / "a.png")
    out = tmp_path / "o.png"
    assert main(["upscale", str(src), "-o", str(out), "-m", str(ckpt), "-q"]) == 0
    with Image.open(out) as im:
        assert im.size == (60, 42)


def test_models_lists_architectures(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("srcnn", "fsrcnn", "espcn", "vdsr", "edsr_baseline", "rcan", "bicubic"):
        assert name in out
    assert "Default model" in out


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).with_name("superres")
    assert exe.exists(), "pip install should have created the superres console script"
    out = tmp_path / "p.png"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([str(exe), "upscale", str(PATTERN), "-o", str(out), "-s", "2", "-q"],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert im.size == (256, 256)
