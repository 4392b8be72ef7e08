"""The codec subcommands (compress, decompress, rd), in process: help, one-line errors, no
partial output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from superres.apps import cli
from superres.codec import api, list_codecs, pipeline
from superres.codec.container import TRAILER_SIZE

V1_FIXTURE = Path(__file__).resolve().parent / "data" / "v1_jpeg_x2_bicubic.srz"
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def _photo(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 4, y * 5, (x * 3 + y * 2) % 256], -1)
    return rgb.clip(0, 255).astype(np.uint8)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    PILImage.fromarray(_photo()).save(path)
    return path


def _error_line(capsys) -> str:
    """The one line on stderr, checked to be ``superres: error: ...``."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("superres: error: "), err
    return err


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- help


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_compress_help_says_what_is_required_and_the_defaults(capsys):
    text = _help(capsys, "compress")
    assert "Exactly one of --quality or --target-bpp is required" in text
    assert "--codec jpeg" in text and "--scale 1" in text and "--subsampling 4:2:0" in text
    assert "--device" in text and "--allow-over" in text and "--quiet, -q" in text
    assert "codec of the payload: " + ", ".join(list_codecs()) in text  # from the registry
    assert "examples: superres compress photo.png -o photo.srz --quality 40" in text


@pytest.mark.parametrize("command", ["decompress", "rd"])
def test_every_codec_subcommand_has_examples(capsys, command):
    text = _help(capsys, command)
    assert f"examples: superres {command} " in text
    if command == "rd":
        assert "codec: " + ", ".join(list_codecs()) in text


def test_unknown_codec_is_a_usage_error(photo, capsys):
    for argv in (
        ["compress", str(photo), "-o", "x.srz", "--quality", "5", "--codec", "png"],
        ["rd", "--data", str(photo.parent), "--codec", "png"],
    ):
        assert cli.main(argv) == 2
        err = _error_line(capsys)
        assert "invalid choice: 'png'" in err and ", ".join(map(repr, list_codecs())) in err
    assert not (photo.parent / "x.srz").exists()


# --------------------------------------------------------------------------- compress


def test_compress_quiet_and_a_new_output_folder(photo, capsys):
    out = photo.parent / "new" / "deeper" / "photo.srz"
    assert cli.main(["compress", str(photo), "-o", str(out), "--quality", "50", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert out.stat().st_size > 0
    assert cli.main(["compress", str(photo), "-o", str(out), "--quality", "50"]) == 1
    assert "photo.srz: output exists (use --overwrite to replace it)" in _error_line(capsys)


def test_compress_target_that_cannot_be_met(photo, capsys):
    out = photo.parent / "sub" / "a.srz"
    argv = ["compress", str(photo), "-o", str(out), "--target-bpp", "0.01"]
    assert cli.main(argv) == 1
    err = _error_line(capsys)
    assert "photo.png: jpeg x1: even quality 1 needs" in err and "above the target 0.01" in err
    assert "--allow-over" in err
    assert _files(photo.parent) == ["photo.png"]  # no file, no folder
    assert cli.main([*argv, "--allow-over"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("superres: warning: ")
    assert "a.srz: " in captured.out and out.stat().st_size > 0
    assert cli.main(["compress", str(photo), "-o", "x.srz", "--quality", "5", "--allow-over"]) == 2
    assert "--allow-over goes with --target-bpp" in _error_line(capsys)


@NO_CUDA
@pytest.mark.parametrize("scale", ["1", "auto"])
def test_compress_device_without_a_gpu(photo, capsys, scale):
    out = photo.parent / "a.srz"
    argv = ["compress", str(photo), "-o", str(out), "--target-bpp", "2", "--scale", scale]
    assert cli.main([*argv, "--device", "cuda"]) == 1
    assert "device 'cuda' requested but CUDA is not available" in _error_line(capsys)
    assert cli.main([*argv, "--device", "gpu0"]) == 1
    assert "unknown device 'gpu0'" in _error_line(capsys)
    assert _files(photo.parent) == ["photo.png"]


def test_compress_auto_scale_on_the_device_asked(photo, capsys, monkeypatch):
    seen = []
    real = pipeline.decode_pixels

    def spy(header, payload, net, **kw):
        seen.append(kw.get("device"))
        return real(header, payload, net, **kw)

    monkeypatch.setattr(pipeline, "decode_pixels", spy)
    out = photo.parent / "a.srz"
    argv = ["compress", str(photo), "-o", str(out), "--target-bpp", "2", "--scale", "auto",
            "--model", "bicubic", "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    assert seen == [torch.device("cpu")] * 4 and out.exists()
    capsys.readouterr()


# --------------------------------------------------------------------------- decompress


@pytest.fixture
def srz(photo, capsys):
    path = photo.parent / "photo.srz"
    assert cli.main(["compress", str(photo), "-o", str(path), "--quality", "60", "-q"]) == 0
    return path


def test_decompress_checks_the_output_before_decoding(srz, capsys, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the output was checked")

    monkeypatch.setattr(api, "decompress", no_decoding)
    folder = srz.parent
    (folder / "mine.png").write_bytes(b"mine")
    for output, message in [
        ("out.bmp", "out.bmp: unsupported output extension '.bmp'"),
        ("mine.png", "mine.png: output exists (use --overwrite to replace it)"),
        ("photo.srz/x.png", "photo.srz is a file, not a folder"),
    ]:
        assert cli.main(["decompress", str(srz), "-o", str(folder / output)]) == 1
        assert message in _error_line(capsys)
    assert (folder / "mine.png").read_bytes() == b"mine"
    assert _files(folder) == ["mine.png", "photo.png", "photo.srz"]


def test_decompress_into_a_new_folder_and_old_files(srz, capsys):
    out = srz.parent / "made" / "restored.png"
    assert cli.main(["decompress", str(srz), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}: 64x48\n"
    old = srz.parent / "old.png"
    assert cli.main(["decompress", str(V1_FIXTURE), "-o", str(old), "--device", "cpu"]) == 0
    assert np.asarray(PILImage.open(old)).shape == (32, 32, 3)


@pytest.mark.parametrize("where", ["payload", "checksum"])
def test_decompress_a_damaged_file(srz, capsys, where):
    data = bytearray(srz.read_bytes())
    data[len(data) - 1 if where == "checksum" else len(data) - TRAILER_SIZE - 20] ^= 0x04
    damaged = srz.parent / "damaged.srz"
    damaged.write_bytes(bytes(data))
    assert cli.main(["decompress", str(damaged), "-o", str(srz.parent / "d.png")]) == 1
    assert "damaged.srz: file checksum mismatch" in _error_line(capsys)
    assert _files(srz.parent) == ["damaged.srz", "photo.png", "photo.srz"]


@NO_CUDA
def test_decompress_device_without_a_gpu(srz, capsys):
    out = srz.parent / "d.png"
    assert cli.main(["decompress", str(srz), "-o", str(out), "--device", "cuda"]) == 1
    assert "device 'cuda' requested but CUDA is not available" in _error_line(capsys)
    assert not out.exists()


# --------------------------------------------------------------------------- rd


def test_rd_with_a_corrupt_image_is_one_line(tmp_path, capsys):
    data = tmp_path / "images"
    data.mkdir()
    PILImage.fromarray(_photo(176, 200)).save(data / "good.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    out = tmp_path / "rd.json"
    argv = ["rd", "--data", str(data), "--scales", "1", "--qualities", "50", "--json", str(out)]
    assert cli.main(argv) == 1
    assert "broken.png" in _error_line(capsys)
    assert not out.exists()
