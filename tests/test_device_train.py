"""tools/device_train.sh, the device-machine training step, run here on a copy of a tree.

The copy holds the script, a link to the package and a tiny config reading
../shared/data/*, like the shipped configs; the data come only from .device/data (as made by
tools/device_pack.sh: JPEG copies of the BSD sets), so the script must stage them beside the
tree, decoded back to the PNGs, then resume the run from checkpoints/, stop it at the
deadline and leave a resumable run folder in $OUT.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

CONFIG = """
model: {{arch: espcn, scale: 2}}
data:
  train: [../shared/data/T91, ../shared/data/BSD200, ../shared/data/BSD200test]
  val: ../shared/data/Set5
  patch: 12
  batch: 4
  workers: 0
  cache_dir: .cache/data
optim: {{lr: 1.0e-3}}
schedule: {{warmup: 0}}
iterations: {iterations}
seed: 5
output: runs/{name}
log_every: 5
val_every: 10
checkpoint_every: 5
threads: 1
tensorboard: false
"""


def images(folder: Path, count: int, fmt: str, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.random((10, 12, 3)) * 255
        pixels = np.kron(coarse, np.ones((4, 4, 1))).astype(np.uint8)
        path = folder / f"{i:03d}.{fmt}"
        options = {"jpg": {"quality": 90}, "webp": {"lossless": True}}.get(fmt, {})
        Image.fromarray(pixels).save(path, **options)
        paths.append(path)
    return paths


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "work" / "repo"
    (root / "tools").mkdir(parents=True)
    shutil.copy(REPO / "tools" / "device_train.sh", root / "tools")
    (root / "src").symlink_to(REPO / "src")
    (root / "configs").mkdir()
    for name, iterations in (("tiny", 20), ("tiny_long", 100_000), ("tiny_next", 10)):
        (root / "configs" / f"{name}.yaml").write_text(
            CONFIG.format(name=name, iterations=iterations)
        )
    data = root / ".device" / "data"
    images(data / "T91", 2, "webp", 0)
    images(data / "Set5", 1, "png", 1)
    images(data / "BSD200", 3, "jpg", 2)
    images(data / "BSD200test", 2, "jpg", 3)
    return root


def run(tree: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tree.parent / "out"), "PYTHON": sys.executable}
    env.update(WORKERS="0", MIN_SECONDS="5")
    return subprocess.run(
        ["bash", str(tree / "tools" / "device_train.sh"), *args],
        cwd=tree.parent, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def iteration(path: Path) -> int:
    with safe_open(str(path), "pt") as file:
        return int(file.metadata()["iteration"])


def test_stages_the_data_trains_in_turn_and_returns_the_run_folders(tree):
    out = tree.parent / "out"
    result = run(tree, "120", "tiny", "tiny_next")
    assert result.returncode == 0, result.stderr
    staged = tree.parent / "shared" / "data"
    assert sorted(p.name for p in (staged / "BSD200").iterdir()) == [
        "000.png",
        "001.png",
        "002.png",
    ]
    with Image.open(tree / ".device" / "data" / "BSD200" / "001.jpg") as jpeg:
        decoded = np.asarray(jpeg.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(staged / "BSD200" / "001.png")), decoded)
    with Image.open(tree / ".device" / "data" / "T91" / "001.webp") as webp:
        decoded = np.asarray(webp.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(staged / "T91" / "001.png")), decoded)
    for name, its in (("tiny", 20), ("tiny_next", 10)):
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == ["config.yaml", "last.safetensors", "log.jsonl", "state.safetensors"]
        assert iteration(out / name / "state.safetensors") == its
        assert f"== {name}: stopped with status 0" in result.stdout


def test_the_deadline_stops_a_run_that_resumes_from_checkpoints(tree):
    out = tree.parent / "out"
    first = run(tree, "25", "tiny_long", "tiny")
    assert first.returncode == 0, first.stderr
    assert "== tiny_long: stopped with status 137" in first.stdout  # killed at the deadline
    assert "== tiny: no time left" in first.stdout and not (out / "tiny").exists()
    reached = iteration(out / "tiny_long" / "state.safetensors")
    assert 0 < reached < 100_000
    # carried back as checkpoints/RUN (runs/ gone, as on a fresh machine), it resumes; a
    # stopped run carried without its state is restored too (another run's init_from)
    shutil.rmtree(tree / "runs")
    shutil.copytree(out / "tiny_long", tree / "checkpoints" / "tiny_long")
    (tree / "checkpoints" / "stopped").mkdir()
    (tree / "checkpoints" / "stopped" / "last.safetensors").write_bytes(b"weights")
    second = run(tree, "25", "tiny_long")
    assert second.returncode == 0, second.stderr
    assert iteration(out / "tiny_long" / "state.safetensors") > reached
    assert (tree / "runs" / "stopped" / "last.safetensors").read_bytes() == b"weights"


def test_refuses_without_runs_or_data(tree):
    assert run(tree, "10").returncode == 2
    shutil.rmtree(tree / ".device")
    result = run(tree, "10", "tiny")
    assert result.returncode == 2 and "no .device/data (tools/device_pack.sh)" in result.stderr


def sprint(tree: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    shutil.copy(REPO / "tools" / "device_sprint.py", tree / "tools")
    env = {**os.environ, "OUT": str(tree.parent / "out"), "PYTHON": sys.executable}
    return subprocess.run(
        [sys.executable, str(tree / "tools" / "device_sprint.py"), *args],
        cwd=tree.parent, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_sprint_sizes_each_schedule_to_the_deadline_and_returns_one_tar_a_run(tree):
    """tools/device_sprint.py: a probe measures each run's step rate, the run then trains
    afresh on the schedule that rate fits before the deadline; a run whose config fails is
    reported with its error and the others go on."""
    (tree / "configs" / "broken.yaml").write_text(
        CONFIG.format(name="broken", iterations=10).replace("seed: 5", "seeds: 5")
    )
    result = sprint(
        tree, "--seconds", "50", "--probe", "60", "--probe-seconds", "25", "--margin", "8",
        "--set", "val_every=100000", "--set", "checkpoint_every=200", "--set", "log_every=20",
        "tiny_long", "broken",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== broken: probe None it/s" in result.stdout
    assert "seeds" in result.stdout  # the config error, from the probe's output
    planned = re.search(r"== tiny_long: (\d+) iterations in at most", result.stdout)
    assert planned, result.stdout
    planned = int(planned.group(1))
    assert planned >= 500 and planned % 100 == 0
    out = tree.parent / "out"
    assert sorted(p.name for p in out.iterdir()) == ["tiny_long.out", "tiny_long.tar"]
    with tarfile.open(out / "tiny_long.tar") as tar:
        names = sorted(tar.getnames())
        config = yaml.safe_load(tar.extractfile("tiny_long/config.yaml"))
        tar.extractall(tree.parent / "back", filter="data")
    kept = ("config.yaml", "last.safetensors", "log.jsonl", "state.safetensors")
    assert names == [f"tiny_long/{n}" for n in kept]
    assert config["iterations"] == planned  # the schedule the run trained on
    assert 0 < iteration(tree.parent / "back" / "tiny_long" / "state.safetensors") <= planned
    # again on the same (warm) machine: the earlier run folder is moved aside, not lost
    again = sprint(tree, "--seconds", "30", "--probe", "40", "--probe-seconds", "15",
                   "--set", "val_every=100000", "--set", "log_every=20", "tiny_long")  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    (aside,) = (tree / "runs").glob("tiny_long.before-*")
    assert f"an earlier runs/tiny_long moved to runs/{aside.name}" in again.stdout
    assert iteration(aside / "state.safetensors") == iteration(
        tree.parent / "back" / "tiny_long" / "state.safetensors"
    )


def test_sprint_with_no_run_that_starts_fails(tree):
    result = sprint(tree, "--seconds", "30", "--probe-seconds", "15", "missing")
    assert result.returncode == 1
    assert "== missing: probe None it/s" in result.stdout
