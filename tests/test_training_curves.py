"""Training curves: reading log.jsonl (cut lines, offsets, errors) and the plot it draws."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from superres.errors import ConfigError
from superres.training.curves import plot_training, read_log
from tests.conftest import load_script

pytest.importorskip("matplotlib")


def write_log(path, entries, tail=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries) + tail, encoding="utf-8")
    return path


def entries(n=6, val_every=2, start=31.0):
    out = []
    for i in range(1, n + 1):  # as superres train logs: the validation on the step's line
        out.append({"iteration": i * 100, "loss": 0.03, "lr": 2e-4 * (1 - i / (n + 1))})
        if i % val_every == 0:
            out[-1]["val"] = {"Set5": {"psnr": start + i / 100, "ssim": 0.88}}
    return out


def test_read_log_skips_cut_lines_and_shifts(tmp_path):
    path = write_log(tmp_path / "run" / "log.jsonl", entries(), tail='{"iteration": 70')
    log = read_log(tmp_path / "run", offset=1000)  # a folder reads its log.jsonl
    assert log.name == "run"
    assert [e["iteration"] for e in log.steps] == [1100, 1200, 1300, 1400, 1500, 1600]
    assert log.val_series("Set5") == ([1200, 1400, 1600], [31.02, 31.04, 31.06])
    assert log.val_series("Set14") == ([], [])
    assert log.datasets() == ["Set5"]
    assert read_log(path).steps[0]["iteration"] == 100


def test_read_log_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"nothing\.jsonl: no such training log"):
        read_log(tmp_path / "nothing.jsonl")
    bad = write_log(tmp_path / "bad.jsonl", [], tail="not json\n[1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl: no log entries"):
        read_log(bad)


def test_plot_training_writes_a_png(tmp_path):
    first = read_log(write_log(tmp_path / "a" / "log.jsonl", entries()), name="stage 1")
    second = read_log(write_log(tmp_path / "b" / "log.jsonl", entries(start=31.1)), offset=600)
    out = plot_training(
        [first, second], tmp_path / "curve.png", refs=[("floor", 31.85)], iterations=2000
    )
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (840, 660)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["curve.png"]  # no temp left


def test_plot_training_refusals(tmp_path):
    log = read_log(write_log(tmp_path / "log.jsonl", entries()))
    with pytest.raises(ConfigError, match=r"curve\.jpg: the plot must be \.png, \.svg or \.pdf"):
        plot_training([log], tmp_path / "curve.jpg")
    with pytest.raises(ConfigError, match="no validation points on Set14"):
        plot_training([log], tmp_path / "curve.png", dataset="Set14")
    steps_only = read_log(write_log(tmp_path / "s.jsonl", entries(val_every=99)))
    with pytest.raises(ConfigError, match="no validation points in the logs"):
        plot_training([steps_only], tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()


def test_tool_command_line(tmp_path, capsys):
    tool = load_script("tools/plot_training.py")
    log = write_log(tmp_path / "run" / "log.jsonl", entries())
    out = tmp_path / "c.svg"
    assert tool.main([f"{log}@500", str(tmp_path / "run"), "-o", str(out), "--ref", "x=31.5"]) == 0
    assert out.read_text().lstrip().startswith("<?xml")
    assert tool.main([str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "missing: no such training log" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([str(log), "-o", str(out), "--ref", "31.5"])
    assert "expected LABEL=DB" in capsys.readouterr().err
