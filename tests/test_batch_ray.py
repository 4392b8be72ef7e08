"""The Ray engine (``--engine ray``, :mod:`superres.apps.batch`) against the local one.

One local Ray (2 CPUs, no dashboard, usage statistics off) serves the whole test session;
the engine uses a Ray that is already initialised instead of starting its own. Images are
tiny and the model is the shipped ``fast`` tier at x2, so the file runs in about a minute
on two cores (most of it Ray starting its actors, a few seconds per run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before Ray is imported
ray = pytest.importorskip("ray")
# Ray Data's context warns about its own deprecated settings when it is first created.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

from superres.apps.cli import main  # noqa: E402
from superres.core import io  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = ["-m", "fast", "-s", "2"]


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray of 2 CPUs for the session (no dashboard): started on first use, shut down
    at the end, with the environment and SIGTERM handler that ``ray.init`` changed put back
    (:func:`superres.apps.batch.session`)."""
    from superres.apps.batch import session

    with session(num_cpus=2) as started:
        yield started


def _noise(shape: tuple[int, ...], seed: int, dtype=np.uint8) -> np.ndarray:
    peak = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, peak + 1, shape, dtype=dtype)


def make_tree(root: Path, count: int = 6, grow: int = 1) -> list[Path]:
    """A nested tree of small images (``grow`` times larger on each side): 8-bit RGB, RGBA,
    16-bit RGB PNG and a JPEG with an ICC profile and EXIF, over three folder levels."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    paths = []
    for i in range(count):
        folder = root / ["", "a", "a/b"][i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        kind = i % 4
        if kind == 0:
            path = folder / f"rgb{i}.png"
            Image.fromarray(_noise((14 * grow, 18 * grow, 3), i)).save(path)
        elif kind == 1:
            path = folder / f"alpha{i}.png"
            Image.fromarray(_noise((12 * grow, 16 * grow, 4), i), "RGBA").save(path)
        elif kind == 2:
            path = folder / f"deep{i}.png"
            io.write_image(path, io.Image(_noise((10 * grow, 12 * grow, 3), i, np.uint16)))
        else:
            path = folder / f"photo{i}.jpg"
            exif = Image.Exif()
            exif[0x010F] = "superres test camera"
            pixels = _noise((16 * grow, 16 * grow, 3), i)
            Image.fromarray(pixels).save(path, quality=90, icc_profile=icc, exif=exif)
        paths.append(path)
    return paths


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def upscale(src: Path, out: Path, *extra: str, model: str | None = "fast") -> int:
    """``superres upscale SRC -o OUT -r -s 2 -q`` with ``-m model`` (None: the default, which
    picks the tier per input)."""
    chosen = [] if model is None else ["-m", model]
    return main(["upscale", str(src), "-o", str(out), "-r", *chosen, "-s", "2", "-q", *extra])


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """An input tree and the local engine's outputs of it."""
    root = tmp_path_factory.mktemp("ray_tree")
    make_tree(root / "in")
    assert upscale(root / "in", root / "local") == 0
    return root / "in", files(root / "local")


def test_ray_outputs_are_the_local_engines_bytes_and_a_rerun_skips_all(
    ray_session, tree, tmp_path, capsys
):
    src, expected = tree
    out = tmp_path / "ray"
    assert upscale(src, out, "--engine", "ray", "--workers", "2") == 0
    assert files(out) == expected  # same tree, same bytes, no temporary files left
    with Image.open(next(out.rglob("*.jpg"))) as im:  # what the bytes carry, spelled out
        assert im.info.get("icc_profile") and im.getexif()[0x010F] == "superres test camera"
    with Image.open(next(out.rglob("alpha*.png"))) as im:
        assert im.mode == "RGBA"
    assert io.read_image(next(out.rglob("deep*.png"))).bits == 16
    capsys.readouterr()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert upscale(src, out, "--engine", "ray") == 0  # Ray is not even started
    err = capsys.readouterr().err
    assert err.count("skipped") == len(expected) and "error" not in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps


def test_interrupted_run_resumes_and_finishes_identically(ray_session, tree, tmp_path, capsys):
    src, expected = tree
    out = tmp_path / "ray"
    names = sorted(expected)
    done, missing = names[: len(names) // 2], names[len(names) // 2 :]
    for name in done:  # what the interrupted run had finished
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(expected[name])
    target = out / missing[0]  # and the temporary file of the write it was killed in
    target.parent.mkdir(parents=True, exist_ok=True)
    stale = target.parent / f".{target.name}.k1lled.part"
    stale.write_bytes(expected[missing[0]][:40])
    capsys.readouterr()
    assert upscale(src, out, "--engine", "ray", "--workers", "2") == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == len(done)
    assert not stale.exists()
    assert files(out) == expected


def test_a_killed_run_resumes(ray_session, tmp_path):
    """SIGKILL the whole process group of a running ``--engine ray`` command after its
    first output, then rerun: every complete output is kept, the rest is written, and the
    result is what the local engine writes."""
    make_tree(tmp_path / "in", count=8, grow=8)  # about 0.2 s each on one thread
    assert upscale(tmp_path / "in", tmp_path / "local", model="quality") == 0
    expected = files(tmp_path / "local")
    out = tmp_path / "ray"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    command = [sys.executable, "-m", "superres", "upscale", str(tmp_path / "in"), "-o",
               str(out), "-r", "-m", "quality", "-s", "2", "-q", "--engine", "ray",
               "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.is_file() and not p.name.startswith(".") for p in out.rglob("*")):
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    written = {k: v for k, v in files(out).items() if not Path(k).name.startswith(".")}
    assert written and all(expected[k] == v for k, v in written.items())  # never partial
    assert len(written) < len(expected)  # killed before the end: the rerun has work to do
    assert upscale(tmp_path / "in", out, "--engine", "ray", model="quality") == 0
    assert files(out) == expected


def test_a_corrupt_file_is_reported_and_the_rest_done(ray_session, tmp_path, capsys):
    """Also with no model given, where each input gets its tier (the JPEG the codec tier)."""
    src = tmp_path / "in"
    make_tree(src, count=4)
    (src / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    capsys.readouterr()
    assert upscale(src, tmp_path / "ray", "--engine", "ray", "--workers", "2", model=None) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert upscale(src, tmp_path / "local", model=None) == 1
    assert err.splitlines()[-1] == capsys.readouterr().err.splitlines()[-1]  # the summary
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert len(files(tmp_path / "local")) == 4


def test_overwrite_replaces_existing_outputs(ray_session, tree, tmp_path):
    src, expected = tree
    out = tmp_path / "ray"
    for name in expected:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"stale")
    assert upscale(src, out, "--engine", "ray", "--overwrite") == 0
    assert files(out) == expected


def test_eval_engine_ray_scores_as_local(ray_session, tmp_path):
    import json

    folders = []
    for name in ("first", "second", "third"):
        for i in range(2):
            folder = tmp_path / name
            folder.mkdir(exist_ok=True)
            Image.fromarray(_noise((24, 28, 3), hash(name) % 1000 + i)).save(folder / f"{i}.png")
        folders += ["--data", str(tmp_path / name)]
    local, distributed = tmp_path / "local.json", tmp_path / "ray.json"
    assert main(["eval", *folders, *MODEL, "-q", "--json", str(local)]) == 0
    assert main(["eval", *folders, *MODEL, "-q", "--json", str(distributed),
                 "--engine", "ray", "--workers", "2"]) == 0  # fmt: skip
    a, b = json.loads(local.read_text()), json.loads(distributed.read_text())
    assert (a["model"], a["scale"]) == (b["model"], b["scale"])
    assert list(a["datasets"]) == list(b["datasets"]) == ["first", "second", "third"]
    for name, scores in a["datasets"].items():
        for key in ("images", "psnr", "ssim"):
            assert scores[key] == b["datasets"][name][key]


def test_usage_errors_are_one_line(ray_session, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    make_tree(src, count=1)
    capsys.readouterr()
    assert upscale(src, tmp_path / "o", "--workers", "2") == 2
    assert capsys.readouterr().err.strip() == "superres: error: --workers needs --engine ray"
    assert upscale(src, tmp_path / "o", "--engine", "ray", "--workers", "3") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "3 workers" in err and "2 CPUs" in err
    import superres.apps.batch as batch

    monkeypatch.setattr(batch, "ray_installed", lambda: False)
    assert upscale(src, tmp_path / "o", "--engine", "ray") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'superres[ray]'" in err
    assert not (tmp_path / "o").exists()


def test_block_size_keeps_progress_fine_grained():
    from superres.apps.batch.upscale import MAX_BLOCK, block_size

    assert block_size(24, 2) == 1
    assert block_size(100_000, 40) == MAX_BLOCK


def test_cluster_settings_are_checked():
    from superres.apps.batch import Cluster
    from superres.errors import ConfigError

    with pytest.raises(ConfigError, match="workers must be a positive integer"):
        Cluster(workers=0)
    with pytest.raises(ConfigError, match="threads per worker"):
        Cluster(threads_per_worker=0)


def test_a_worker_that_cannot_start_is_one_error(ray_session, tmp_path):
    """A model the workers cannot load (a checkpoint missing on a node) ends the batch with
    one SuperresError line naming the cause, not Ray's multi-line report."""
    import functools

    from superres import api
    from superres.apps.batch import Cluster, upscale_jobs
    from superres.errors import SuperresError

    make_tree(tmp_path / "in", count=1)
    jobs = api.plan_jobs([tmp_path / "in"], tmp_path / "out")
    loader = functools.partial(api.load_model, str(tmp_path / "elsewhere.safetensors"))
    with pytest.raises(SuperresError, match="the Ray workers failed") as caught:
        list(upscale_jobs(jobs, loader, cluster=Cluster(workers=1)))
    assert "\n" not in str(caught.value) and "elsewhere.safetensors" in str(caught.value)


def test_an_address_where_no_cluster_listens_fails_fast():
    from superres.apps.batch.cluster import _check_reachable
    from superres.errors import ConfigError

    start = time.monotonic()
    with pytest.raises(ConfigError, match="no Ray cluster answers at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")
    assert time.monotonic() - start < 10
    with pytest.raises(ConfigError, match="expected auto or HOST:PORT"):
        _check_reachable("nonsense")
    _check_reachable("auto")  # Ray's own resolution


class _ArenaProbe:
    """A ``map_batches`` class that reports its process's ``MALLOC_ARENA_MAX``."""

    def __call__(self, batch: dict) -> dict:
        return {"arena": [os.environ.get("MALLOC_ARENA_MAX", "")] * len(batch["i"])}


def test_batch_actors_run_with_one_malloc_arena(ray_session, monkeypatch):
    """The job's workers get ``MALLOC_ARENA_MAX=1`` (Ray Data calls the class on a thread,
    whose own arena would hand every large feature map fresh pages), unless the user's
    environment says otherwise."""
    from superres.apps.batch.cluster import worker_env

    dataset = ray_session.data.from_items([{"i": 0}, {"i": 1}]).map_batches(
        _ArenaProbe, batch_size=1, compute=ray_session.data.ActorPoolStrategy(size=1)
    )
    assert [row["arena"] for row in dataset.iter_rows()] == ["1", "1"]
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert worker_env() == {"env_vars": {"MALLOC_ARENA_MAX": "1"}}
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert worker_env() == {"env_vars": {"MALLOC_ARENA_MAX": "4"}}


def _rd_folder(root: Path) -> Path:
    """Two 176 x 168 photos-like crops (MS-SSIM needs 161 pixels a side)."""
    folder = root / "rd"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for i in range(2):
        smooth = rng.integers(0, 256, (22, 21, 3), dtype=np.uint8)
        image = Image.fromarray(smooth).resize((176, 168), Image.Resampling.BICUBIC)
        image.save(folder / f"crop{i}.png")
    return folder


def test_rd_engine_ray_gives_the_local_curves(ray_session, tmp_path, capsys):
    """Bits per pixel equal the local measurement's and PSNR and MS-SSIM agree to float
    rounding (the workers' torch reductions run on another number of threads); only the
    timings are the workers' own."""
    from superres.apps.batch import Cluster, rd_curves
    from superres.codec import rd

    folder = _rd_folder(tmp_path)
    configs = [(1, None), (2, "fast")]
    remote = rd_curves(folder, "jpeg", configs, (30, 70), cluster=Cluster(workers=2))
    images = rd.load_images(folder)
    local = [rd.rd_curve(images, "jpeg", s, (30, 70), model=m) for s, m in configs]
    assert [c.name for c in remote] == [c.name for c in local]
    for mine, theirs in zip(remote, local, strict=True):
        assert mine.column("bpp") == theirs.column("bpp")
        for field in ("psnr", "ms_ssim"):
            assert mine.column(field) == pytest.approx(theirs.column(field), rel=1e-12)
    command = ["rd", "--data", str(folder), "--scales", "1,2", "--models", "fast",
               "--qualities", "30,70", "--engine", "ray", "--workers", "2", "-q"]  # fmt: skip
    assert main(command) == 0
    assert "jpeg x2 + fast" in capsys.readouterr().out
    assert main(["rd", "--data", str(folder), "--roi", "auto", "--engine", "ray"]) == 2
    assert "--roi runs with --engine local" in capsys.readouterr().err


def test_rd_engine_ray_measures_adaptive_curves_as_local(ray_session, tmp_path, capsys):
    """``--adapt`` on Ray: each worker refines its image's LR as ``compress --adapt`` does; at
    the local command's thread count (one, as a worker's) the refined pixels, hence every
    file's bits, are the local ones, and the curve is named as locally."""
    import torch

    from superres.apps.batch import Cluster, rd_curves
    from superres.codec import rd

    folder = _rd_folder(tmp_path)
    remote = rd_curves(folder, "jpeg", [(2, "fast", 3)], (30, 70), cluster=Cluster(workers=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = rd.rd_curve(rd.load_images(folder), "jpeg", 2, (30, 70), model="fast",
                            adapt_steps=3)  # fmt: skip
        plain = rd.rd_curve(rd.load_images(folder), "jpeg", 2, (30, 70), model="fast")
    finally:
        torch.set_num_threads(threads)
    (mine,) = remote
    assert mine.adapt == 3 and mine.name == local.name
    assert "adaptive downscaling (3 steps)" in mine.name
    assert mine.column("bpp") == local.column("bpp")
    assert mine.column("psnr") == pytest.approx(local.column("psnr"), rel=1e-12)
    assert mine.column("bpp") != plain.column("bpp")  # the LR was refined: other files
    with pytest.raises(ValueError, match="needs a network restorer"):
        rd_curves(folder, "jpeg", [(2, "lanczos", 3)], (30,), cluster=Cluster(workers=1))
    command = ["rd", "--data", str(folder), "--scales", "1,2", "--models", "fast",
               "--qualities", "30,70", "--adapt", "2", "--engine", "ray", "--workers", "2",
               "-q"]  # fmt: skip
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "jpeg x2 + fast, adaptive downscaling (2 steps)" in out
    assert "best of x1/x2 (fast, adaptive)" in out
