"""``superres bench``: fields and arithmetic of its JSON, peers, argument errors.

Tiny inputs and few repeats: these check the tool, not the machine's speed.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

from superres.apps.cli import main
from superres.evaluation import bench
from superres.weights import zoo

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers" / "opencv-dnn-superres"
SHIPPED = zoo.shipped_weights()
MODEL = SHIPPED[0].name if SHIPPED else "bicubic"
SCALE = SHIPPED[0].scale if SHIPPED else 2
TINY = ["--size", "64x48", "--repeats", "2", "--threads", "1", "--matmul-size", "128", "-q"]


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _has_dnn_superres() -> bool:
    if importlib.util.find_spec("cv2") is None:
        return False
    import cv2

    return hasattr(cv2, "dnn_superres")


def test_json_fields_and_ratios_are_consistent(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--models", MODEL, "--scales", str(SCALE), *TINY, "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "pillow-lanczos" in table and "GFLOP/s" in table and MODEL in table
    report = json.loads(out.read_text())
    for key in ("superres_version", "created", "machine", "settings", "matmul", "results"):
        assert key in report
    assert report["settings"]["input_size"] == [64, 48] and report["settings"]["threads"] == 1
    matmul = report["matmul"]
    assert matmul["size"] == 128 and len(matmul["latencies_s"]) == 2
    assert matmul["gflops"] == pytest.approx(2 * 128**3 / matmul["median_s"] / 1e9)
    methods = [r["method"] for r in report["results"]]
    assert methods == [MODEL, "pillow-bicubic", "pillow-lanczos"]
    for row in report["results"]:
        assert row["scale"] == SCALE and row["input_size"] == [64, 48]
        assert row["output_size"] == [64 * SCALE, 48 * SCALE]
        assert len(row["latencies_s"]) == 2
        assert row["median_s"] == pytest.approx(statistics.median(row["latencies_s"]))
        out_px = 64 * SCALE * 48 * SCALE
        assert row["output_mpix_per_s"] == pytest.approx(out_px / 1e6 / row["median_s"])
        assert row["peak_rss_mb"] > 0 and row["peak_rss_mb"] >= row["rss_before_mb"] - 1
        if row["kind"] == "pillow":
            assert row["gflops"] is None and row["matmul_fraction"] is None
    model_row = report["results"][0]
    assert model_row["kind"] == "model" and model_row["backend"] == "torch"
    if SHIPPED:
        flops = model_row["flops_per_output_pixel"]
        assert flops == SHIPPED[0].metadata()["flops_per_output_pixel"]
        expected = flops * 64 * SCALE * 48 * SCALE / model_row["median_s"] / 1e9
        assert model_row["gflops"] == pytest.approx(expected)
        assert model_row["matmul_fraction"] == pytest.approx(expected / matmul["gflops"])


def test_run_bench_default_models_and_threads_restored():
    import torch

    before = torch.get_num_threads()
    report = bench.run_bench(None, [SCALE], (24, 16), threads=1, repeats=1, warmup=0,
                             matmul_size=64)  # fmt: skip
    assert torch.get_num_threads() == before
    models = [r.method for r in report.results if r.kind == "model"]
    expected = list(dict.fromkeys(w.name for w in SHIPPED if w.scale == SCALE)) or ["bicubic"]
    assert models == expected
    assert "pillow-bicubic" in report.table()


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_onnx_backend(tmp_path):
    if not SHIPPED:
        pytest.skip("no shipped weights")
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", MODEL, "--scales", str(SCALE), "--backend", "onnx",
                 *TINY, "--json", str(out)]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert report["results"][0]["backend"] == "onnx" and report["results"][0]["gflops"] > 0
    assert "onnxruntime" in report["machine"]


def test_peers_are_skipped_cleanly_without_cv2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` fails
    out = tmp_path / "bench.json"
    code = main(["bench", "--models", MODEL, "--scales", str(SCALE), "--peers", str(tmp_path),
                 *TINY, "--json", str(out)])  # fmt: skip
    assert code == 0
    assert "skipped opencv" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert not [r for r in report["results"] if r["kind"] == "opencv"]
    assert [s["method"] for s in report["skipped"]] == ["opencv"]
    assert "cv2" in report["skipped"][0]["reason"]


@pytest.mark.skipif(not _has_dnn_superres(), reason="needs cv2 with dnn_superres")
def test_opencv_peers_are_measured(tmp_path):
    source = PEERS / f"ESPCN_x{SCALE}.pb"  # at the scale MODEL is shipped at
    if not source.is_file():
        pytest.skip(f"{source} not found")
    peers = tmp_path / "peers"
    peers.mkdir()
    (peers / source.name).symlink_to(source)  # FSRCNN is missing on purpose
    report = bench.run_bench([MODEL], [SCALE], (32, 24), threads=1, repeats=1, matmul_size=64,
                             peers=peers)  # fmt: skip
    opencv = [r for r in report.results if r.kind == "opencv"]
    assert [r.method for r in opencv] == ["opencv-espcn"]
    assert opencv[0].output_size == (32 * SCALE, 24 * SCALE) and opencv[0].gflops is None
    assert [(s["method"], s["scale"]) for s in report.skipped] == [("opencv-fsrcnn", SCALE)]


@pytest.mark.skipif(not _has_dnn_superres(), reason="needs cv2 with dnn_superres")
def test_a_peer_file_opencv_cannot_read_is_a_skipped_peer(tmp_path):
    peers = tmp_path / "peers"
    peers.mkdir()
    (peers / f"ESPCN_x{SCALE}.pb").write_bytes(b"not a graph")
    report = bench.run_bench([MODEL], [SCALE], (32, 24), threads=1, repeats=1, matmul_size=64,
                             peers=peers)  # fmt: skip
    assert not [r for r in report.results if r.kind == "opencv"]
    (espcn,) = [s for s in report.skipped if s["method"] == "opencv-espcn"]
    assert f"cannot read {peers / f'ESPCN_x{SCALE}.pb'}: " in espcn["reason"]
    assert "\n" not in espcn["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "64by48"], "WIDTHxHEIGHT"),
        (["--size", "0x48"], "size"),
        (["--scales", "5"], "scales"),
        (["--scales", ","], "scales"),
        (["--models", "nosuchmodel"], "nosuchmodel"),
        (["--models", ","], "--models"),
        (["--repeats", "0"], "--repeats"),
        (["--threads", "two"], "--threads"),
        (["--warmup", "x"], "--warmup"),
        (["--backend", "tensorflow"], "backend"),
        (["--tile", "-1"], "tile"),
        (["--peers", "/nonexistent/peers"], "not a folder"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, message, capsys):
    assert main(["bench", "--size", "8x8", "--matmul-size", "16", *args]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and errors[0].startswith("superres: error:") and message in errors[0]
