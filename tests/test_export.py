"""ONNX export (``superres export``) and the onnxruntime backend of the tiling engine."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import superres
from superres.apps.cli import main
from superres.inference import engine
from superres.inference.onnx_backend import (
    MIN_OPSET,
    ONNX_MISSING,
    ONNXRUNTIME_MISSING,
    OnnxModel,
    export_onnx,
    onnx_bytes,
)
from superres.models import SRModel
from superres.weights import zoo

REPO = Path(__file__).resolve().parents[1]
PATTERN = REPO / "examples" / "pattern.png"
SHIPPED = zoo.shipped_weights()
ODD_SIZES = [(17, 23), (31, 12), (40, 41)]

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX, reason="needs onnx and onnxruntime (pip install 'superres[onnx]')"
)


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@needs_onnx
@pytest.mark.parametrize("weights", SHIPPED, ids=[f"{w.name}_x{w.scale}" for w in SHIPPED])
def test_onnx_matches_pytorch_for_every_shipped_model(weights, tmp_path):
    import onnx

    model = superres.load_model(weights.name, scale=weights.scale)
    path = export_onnx(model, tmp_path / f"{weights.name}_x{weights.scale}.onnx")
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["arch"] == model.arch and meta["scale"] == str(weights.scale)
    assert meta["name"] == weights.name and meta["superres_version"] == superres.__version__
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3]  # batch, height and width are symbolic

    runtime = OnnxModel.load(path, threads=1)
    assert (runtime.arch, runtime.scale, runtime.num_params) == (
        model.arch,
        model.scale,
        model.num_params,
    )
    generator = torch.Generator().manual_seed(weights.scale)
    for h, w in ODD_SIZES:
        lr = torch.rand(1, 3, h, w, generator=generator)
        expected, got = model(lr), runtime(lr)
        assert got.shape == (1, 3, h * weights.scale, w * weights.scale)
        assert float((got - expected).abs().max()) <= 1e-4, (h, w)
    batch = torch.rand(2, 3, 9, 14, generator=generator)  # the batch axis is dynamic too
    assert float((runtime(batch) - model(batch)).abs().max()) <= 1e-4


@needs_onnx
def test_onnx_model_runs_through_the_tiling_engine():
    if not SHIPPED:
        pytest.skip("no shipped weights")
    model = superres.load_model(SHIPPED[0].name, scale=SHIPPED[0].scale)
    runtime = OnnxModel.from_model(model, threads=1)
    assert engine.default_tile(runtime) == engine.default_tile(model)  # same memory estimate
    lr = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(0))
    tiled = engine.upscale_tensor(lr, runtime, tile=12)
    assert float((tiled - model(lr)).abs().max()) <= 1e-4


def test_bicubic_cannot_be_exported(tmp_path, capsys):
    with pytest.raises(ValueError, match="parameter-free"):
        onnx_bytes(superres.load_model("bicubic", scale=2))
    out = tmp_path / "bicubic.onnx"
    assert main(["export", "bicubic", "--scale", "2", "-o", str(out)]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "parameter-free" in errors[0]
    assert not out.exists()


@needs_onnx
def test_existing_output_needs_overwrite(tmp_path, capsys):
    if not SHIPPED:
        pytest.skip("no shipped weights")
    name, scale = SHIPPED[0].name, str(SHIPPED[0].scale)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"precious")
    assert main(["export", name, "--scale", scale, "-o", str(out)]) == 1
    errors = _errors(capsys)
    assert len(errors) == 1 and "exists" in errors[0] and "--overwrite" in errors[0]
    assert out.read_bytes() == b"precious"
    with pytest.raises(FileExistsError):
        export_onnx(superres.load_model(name, scale=int(scale)), out)
    assert main(["export", name, "--scale", scale, "-o", str(out), "--overwrite", "-q"]) == 0
    assert OnnxModel.load(out).scale == int(scale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary files


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--opset", "16"], "opset"),
        (["--opset", "seventeen"], "--opset must be an integer"),
        (["--format", "tflite"], "--format must be onnx"),
    ],
)
def test_bad_export_options_are_one_line_usage_errors(tmp_path, capsys, extra, message):
    out = tmp_path / "m.onnx"
    name = SHIPPED[0].name if SHIPPED else "fast"
    assert main(["export", name, "-o", str(out), *extra]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and message in errors[0]
    assert not out.exists()


def test_unknown_model_is_a_usage_error(tmp_path, capsys):
    assert main(["export", "nosuchmodel", "-o", str(tmp_path / "m.onnx")]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "nosuchmodel" in errors[0]


def test_missing_onnxruntime_is_explained(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    with pytest.raises(ImportError) as info:
        OnnxModel.load(tmp_path / "missing.onnx")
    assert str(info.value) == "ONNX needs onnxruntime: pip install 'superres[onnx]'"
    assert str(info.value) == ONNXRUNTIME_MISSING
    out = tmp_path / "o.png"
    code = main(["upscale", str(PATTERN), "-o", str(out), "--backend", "onnx", "-q"])
    assert code == 2
    errors = _errors(capsys)
    assert errors == [f"superres: error: {ONNXRUNTIME_MISSING}"]
    assert not out.exists()


def test_missing_onnx_is_explained(tmp_path, monkeypatch):
    if not SHIPPED:
        pytest.skip("no shipped weights")
    monkeypatch.setitem(sys.modules, "onnx", None)
    model = superres.load_model(SHIPPED[0].name, scale=SHIPPED[0].scale)
    with pytest.raises(ImportError, match=r"pip install 'superres\[onnx\]'") as info:
        export_onnx(model, tmp_path / "m.onnx")
    assert str(info.value) == ONNX_MISSING
    assert not (tmp_path / "m.onnx").exists()


class _FrozenShape(nn.Module):
    """Computes its output size with Python ints: tracing freezes them into constants."""

    arch, scale, hparams, tiling, receptive_field = "frozen", 2, {}, "exact", 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[2]), int(x.shape[3])
        return nn.functional.interpolate(self.conv(x), size=(2 * h, 2 * w), mode="nearest")


@needs_onnx
def test_export_is_verified_at_another_size(tmp_path):
    model = SRModel.from_module(_FrozenShape())
    with pytest.raises(RuntimeError, match="frozen"):
        export_onnx(model, tmp_path / "frozen.onnx", MIN_OPSET)
    assert not (tmp_path / "frozen.onnx").exists()


@needs_onnx
def test_upscale_backend_onnx_matches_torch_with_tiles(tmp_path):
    if not SHIPPED:
        pytest.skip("no shipped weights")
    name, scale = SHIPPED[0].name, str(SHIPPED[0].scale)
    common = [str(PATTERN), "-m", name, "--scale", scale, "--tile", "32", "--threads", "1", "-q"]
    assert main(["upscale", *common, "-o", str(tmp_path / "torch.png")]) == 0
    assert main(["upscale", *common, "-o", str(tmp_path / "onnx.png"), "--backend", "onnx"]) == 0
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", name, "--scale", scale, "-o", str(onnx_file), "-q"]) == 0
    from_file = [str(PATTERN), "-m", str(onnx_file), "--tile", "32", "--threads", "1", "-q"]
    assert main(["upscale", *from_file, "-o", str(tmp_path / "file.png")]) == 0

    def pixels(file: str) -> np.ndarray:
        with Image.open(tmp_path / file) as im:
            return np.asarray(im).astype(np.int16)

    reference = pixels("torch.png")
    assert reference.shape[:2] == (128 * int(scale), 128 * int(scale))
    for file in ("onnx.png", "file.png"):
        assert np.abs(pixels(file) - reference).max() <= 1, file


def test_onnx_file_with_torch_backend_is_a_usage_error(tmp_path, capsys):
    model_file = tmp_path / "m.onnx"
    model_file.write_bytes(b"not used")
    code = main(["upscale", str(PATTERN), "-o", str(tmp_path / "o.png"), "-m", str(model_file),
                 "--backend", "torch"])  # fmt: skip
    assert code == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "--backend onnx" in errors[0]
