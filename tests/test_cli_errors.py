"""Every CLI failure is one line on stderr with the right exit status, and leaves no output."""

from __future__ import annotations

import argparse

import pytest
import torch
from PIL import Image

from superres import api
from superres.apps.cli import build_parser, main
from superres.apps.cli import models as models_cmd
from superres.models import create_model
from superres.weights.checkpoint import save_checkpoint
from tests.test_cli import make_image


def errors(capsys) -> list[str]:
    """The non-empty stderr lines, each checked to be free of traceback text."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert not any("Traceback" in line for line in lines), lines
    return lines


def one_error(capsys) -> str:
    lines = errors(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("superres: error: ")
    return lines[0]


def files(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture
def x2_checkpoint(tmp_path):
    torch.manual_seed(0)
    (tmp_path / "ckpt").mkdir()
    return save_checkpoint(tmp_path / "ckpt" / "x2.safetensors", create_model("espcn", scale=2))


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail if a command loads a model (cheap checks must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the cheap checks")

    monkeypatch.setattr(api, "resolve_model", refuse)
    monkeypatch.setattr(api, "load_model", refuse)


# --------------------------------------------------------------------------- argument types


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threads", "abc"], "--threads: expected a positive integer, got 'abc'"),
        (["--threads", "0"], "--threads: expected a positive integer, got '0'"),
        (["--tile", "-3"], "--tile: expected a non-negative integer, got '-3'"),
        (["--overlap", "x"], "--overlap: expected a non-negative integer, got 'x'"),
        (["--outscale", "0"], "--outscale: expected a positive number, got '0'"),
        (["--scale", "5"], "--scale/-s: expected 2, 3 or 4, got '5'"),
        (["--quality", "101"], "--quality: expected an integer from 1 to 100, got '101'"),
        (["--tile", "32", "--overlap", "20"], "--overlap 20 is more than half of --tile 32"),
        (["--scale", "2", "--outscale", "3"], "give --scale or --outscale, not both"),
    ],
)
def test_bad_upscale_options_are_one_line_usage_errors(
    tmp_path, capsys, no_model_loading, extra, message
):
    src = make_image(tmp_path / "a.png")
    assert main(["upscale", str(src), "-o", str(tmp_path / "o.png"), *extra]) == 2
    line = one_error(capsys)
    assert message in line and "invalid" not in line and "_positive" not in line
    assert files(tmp_path) == ["a.png"]


def test_eval_threads_zero_is_a_usage_error(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads: expected a positive integer, got '0'" in one_error(capsys)


def test_cuda_without_a_gpu_is_one_line_exit_1(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    src = make_image(tmp_path / "a.png")
    out = tmp_path / "o.png"
    assert main(["upscale", str(src), "-o", str(out), "-m", "bicubic", "--device", "cuda"]) == 1
    assert "cuda" in one_error(capsys).lower()
    hr = tmp_path / "hr"
    make_image(hr / "b.png", size=(24, 24))
    assert main(["eval", "--data", str(hr), "-m", "bicubic", "--device", "cuda"]) == 1
    assert "cuda" in one_error(capsys).lower()
    srz = tmp_path / "a.srz"
    assert main(["compress", str(src), "-o", str(srz), "--quality", "50", "-s", "2",
                 "-m", "bicubic", "-q"]) == 0  # fmt: skip
    assert main(["decompress", str(srz), "-o", str(out), "--device", "cuda"]) == 1
    assert "cuda" in one_error(capsys).lower()
    assert files(tmp_path) == ["a.png", "a.srz", "hr", "hr/b.png"]


def test_a_library_error_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    from superres.errors import CheckpointError

    def broken(*args, **kwargs):
        raise CheckpointError(tmp_path / "x.safetensors", "weights do not match")

    monkeypatch.setattr(models_cmd, "count_parameters", broken)
    assert main(["models"]) == 1
    assert one_error(capsys).endswith("x.safetensors: weights do not match")


# --------------------------------------------------------------------------- outputs


def test_unsupported_output_extension_is_refused_before_loading(tmp_path, capsys, no_model_loading):
    src = make_image(tmp_path / "a.png")
    assert main(["upscale", str(src), "-o", str(tmp_path / "out.bmp")]) == 2
    assert "unsupported output extension '.bmp'" in one_error(capsys)
    assert files(tmp_path) == ["a.png"]  # no folder named out.bmp/


def test_an_output_file_for_two_inputs_is_refused(tmp_path, capsys, no_model_loading):
    a, b = make_image(tmp_path / "a.png"), make_image(tmp_path / "b.png")
    assert main(["upscale", str(a), str(b), "-o", str(tmp_path / "one.png")]) == 2
    assert "one.png" in one_error(capsys)
    assert files(tmp_path) == ["a.png", "b.png"]  # no folder named one.png/


def test_a_dotted_folder_name_with_a_slash_is_a_folder(tmp_path, capsys):
    a, b = make_image(tmp_path / "a.png"), make_image(tmp_path / "b.png")
    code = main(["upscale", str(a), str(b), "-o", f"{tmp_path}/v1.0/", "-m", "bicubic",
                 "-s", "2", "-q"])  # fmt: skip
    assert code == 0
    assert files(tmp_path / "v1.0") == ["a.png", "b.png"]


def test_an_output_folder_that_cannot_be_created_is_a_per_file_error(tmp_path, capsys):
    src = tmp_path / "in"
    make_image(src / "top.png")
    make_image(src / "sub" / "deep.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where the folder sub/ should be")
    code = main(["upscale", str(src), "-o", str(out), "-m", "bicubic", "-s", "2", "-r"])
    assert code == 1
    lines = errors(capsys)
    failed = [line for line in lines if line.startswith("superres: error:")]
    assert len(failed) == 1 and "cannot create folder" in failed[0] and "sub" in failed[0]
    assert lines[-1].startswith("1 upscaled, 0 skipped, 1 failed")
    assert files(out) == ["sub", "top.png"]


def test_an_unwritable_output_folder_is_a_per_file_error(tmp_path, capsys, monkeypatch):
    """Permission denied (simulated: the tests run as root) is reported and the batch goes on."""
    from pathlib import Path

    src = tmp_path / "in"
    make_image(src / "a.png")
    make_image(src / "locked" / "b.png")
    out = tmp_path / "out"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    code = main(["upscale", str(src), "-o", str(out), "-m", "bicubic", "-s", "2", "-r"])
    assert code == 1
    lines = errors(capsys)
    assert any("cannot create folder" in line and "Permission denied" in line for line in lines)
    assert lines[-1].startswith("1 upscaled, 0 skipped, 1 failed")
    assert files(out) == ["a.png"]


def test_no_progress_bars_when_stderr_is_not_a_terminal(tmp_path, capsys):
    src = tmp_path / "in"
    make_image(src / "a.png")
    make_image(src / "b.png")
    assert main(["upscale", str(src), "-o", str(tmp_path / "out"), "-m", "bicubic", "-s", "2"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "img/s" not in err and "it/s" not in err
    assert err.splitlines() == [
        "2 upscaled, 0 skipped, 0 failed (model bicubic x2)"
    ]  # fmt: skip


# --------------------------------------------------------------------------- scales


def test_eval_takes_a_checkpoints_own_scale(tmp_path, capsys, x2_checkpoint):
    hr = tmp_path / "hr"
    for i in range(2):
        make_image(hr / f"{i}.png", size=(24, 20))
    assert main(["eval", "--data", str(hr), "-m", str(x2_checkpoint), "-q"]) == 0
    assert "x2" in capsys.readouterr().out
    assert main(["eval", "--data", str(hr), "-m", str(x2_checkpoint), "--scale", "4"]) == 2
    line = one_error(capsys)
    assert "the model is x2" in line and "--scale 4 is refused" in line


def test_upscale_refuses_another_scale_of_a_checkpoint_like_eval(tmp_path, capsys, x2_checkpoint):
    src = make_image(tmp_path / "a.png")
    out = tmp_path / "o.png"
    assert main(["upscale", str(src), "-o", str(out), "-m", str(x2_checkpoint), "-s", "4"]) == 2
    line = one_error(capsys)
    assert "the model is x2" in line and "--outscale 4" in line
    assert not out.exists()
    # Its own scale by default; --outscale runs it at x2 and resizes.
    assert main(["upscale", str(src), "-o", str(out), "-m", str(x2_checkpoint), "-q"]) == 0
    with Image.open(out) as im:
        assert im.size == (40, 28)
    out4 = tmp_path / "o4.png"
    assert main(["upscale", str(src), "-o", str(out4), "-m", str(x2_checkpoint),
                 "--outscale", "4"]) == 0  # fmt: skip
    with Image.open(out4) as im:
        assert im.size == (80, 56)
    assert "resized to x4" in capsys.readouterr().err


def test_export_takes_a_checkpoints_own_scale(tmp_path, capsys, x2_checkpoint, monkeypatch):
    from superres.inference import onnx_backend

    exported = []

    def export_onnx(model, path, opset, overwrite):
        exported.append(model.scale)

    monkeypatch.setattr(onnx_backend, "export_onnx", export_onnx)
    out = tmp_path / "m.onnx"
    assert main(["export", str(x2_checkpoint), "-o", str(out), "-q"]) == 0
    assert exported == [2]
    assert main(["export", str(x2_checkpoint), "-o", str(out), "--scale", "4"]) == 2
    assert "x2" in one_error(capsys)


# --------------------------------------------------------------------------- compress -q


def test_q_is_quiet_everywhere(tmp_path, capsys):
    src = make_image(tmp_path / "a.png", size=(32, 32))
    srz = tmp_path / "a.srz"
    assert main(["compress", str(src), "-o", str(srz), "--quality", "50", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert srz.exists()
    assert main(["compress", str(src), "-o", str(tmp_path / "b.srz"), "-q", "50"]) == 2
    assert "unrecognized arguments: 50" in one_error(capsys)
    assert not (tmp_path / "b.srz").exists()
    for command in ("upscale", "eval", "compress", "decompress", "rd", "export", "bench", "train"):
        parser = _subparser(command)
        quiet = [a for a in parser._actions if "-q" in a.option_strings]
        assert [a.dest for a in quiet] == ["quiet"], command


# --------------------------------------------------------------------------- models, help


def test_models_prints_bicubic_as_any_scale_and_counts_without_allocating(capsys, monkeypatch):
    from superres import models

    devices = []
    real = models.create_model

    def spy(name, scale=4, **kw):
        devices.append(torch.get_default_device().type)
        return real(name, scale=scale, **kw)

    monkeypatch.setattr(models, "create_model", spy)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "x2,x3,x4 (parameter-free" not in out
    bicubic = [line for line in out.splitlines() if line.strip().startswith("bicubic")]
    assert bicubic and all("any" in line for line in bicubic)
    assert devices and set(devices) == {"meta"}
    assert models_cmd.count_parameters("edsr", 4) == 43_089_923
    assert models_cmd.count_parameters("espcn", 3) == sum(
        p.numel() for p in real("espcn", scale=3).parameters()
    )


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize(
    "command",
    ["upscale", "eval", "compress", "decompress", "rd", "export", "bench", "models", "train"],
)
def test_every_subcommand_help_has_an_example(command):
    text = _subparser(command).format_help()
    assert "example" in text and f"superres {command} " in text.split("example", 1)[1]
    assert "until it ships" not in text


def test_model_and_scale_help_say_what_happens():
    up = _subparser("upscale").format_help()
    assert "quality, the best shipped tier" in up and "refused" in up and "resized" in up
    ev = {a.dest: a for a in _subparser("eval")._actions}
    assert ev["scale"].help and "checkpoint's own scale" in ev["scale"].help


def test_eval_reports_a_corrupt_image_and_a_bad_json_path_in_one_line(tmp_path, capsys):
    hr = tmp_path / "hr"
    make_image(hr / "a.png", size=(24, 24))
    (hr / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert main(["eval", "--data", str(hr), "-m", "bicubic", "-s", "2", "-q"]) == 1
    assert "b.png" in one_error(capsys)
    (hr / "b.png").unlink()
    json_file = tmp_path / "missing" / "r.json"
    assert main(["eval", "--data", str(hr), "-m", "bicubic", "--json", str(json_file)]) == 2
    assert "does not exist" in one_error(capsys)
    assert main(["bench", "--json", str(json_file)]) == 2
    assert "does not exist" in one_error(capsys)
    assert files(tmp_path) == ["hr", "hr/a.png"]
