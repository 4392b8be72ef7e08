"""Training: config, schedules, the loop, checkpoints that survive SIGKILL, NaN stop, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml

from superres.apps.cli import main as cli_main
from superres.models import create_model
from superres.training import loop as tr
from superres.training import losses, schedule
from superres.training import state as train_state
from superres.training.config import ConfigError, config_from_dict, dump_config, load_config
from superres.weights.checkpoint import load_checkpoint, save_checkpoint

from .test_data import make_folder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    train = make_folder(root / "train", [(40, 48), (56, 44), (36, 36), (20, 64)], seed=1)
    val = make_folder(root / "val", [(24, 32), (28, 20)], seed=2)
    return train, val


def base_config(folders, output: Path, **top) -> dict:
    train, val = folders
    cfg = {
        "model": {"arch": "espcn", "scale": 2, "hparams": {"n1": 16, "n2": 8}},
        "data": {"train": [str(train)], "val": None, "patch": 12, "batch": 4, "workers": 0},
        "optim": {"lr": 2e-3},
        "schedule": {"name": "cosine", "warmup": 3},
        "ema": {"decay": 0.9},
        "iterations": 20,
        "log_every": 5,
        "val_every": 0,
        "checkpoint_every": 10,
        "output": str(output),
        "threads": 1,
        "tensorboard": False,
    }
    for key, value in top.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section] = {**cfg.get(section, {}), name: value}
        else:
            cfg[key] = value
    return cfg


def run(cfg: dict, resume: bool = False) -> Path:
    return tr.train(config_from_dict(cfg), resume=resume, progress=False)


def state_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(run_dir / train_state.STATE_FILE))


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


# --------------------------------------------------------------------------- config


def test_config_validation_and_overrides(tmp_path, folders):
    path = write_yaml(tmp_path / "c.yaml", base_config(folders, tmp_path / "run"))
    cfg = load_config(path, ["model.hparams.n1=32", "optim.lr=5e-4", "data.train=[a, b]",
                             "optim.grad_clip=1", "schedule.milestones=[10, 20]"])  # fmt: skip
    assert cfg.model.hparams == {"n1": 32, "n2": 8}
    assert cfg.optim.lr == 5e-4 and isinstance(cfg.optim.grad_clip, float)
    assert cfg.data.train == ("a", "b") and cfg.schedule.milestones == (10, 20)
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg  # resolved YAML round-trips
    bad = {
        "optim.lrr=1": r"unknown key 'optim.lrr'; valid keys in optim: name, lr, betas",
        "modell.arch=x": r"unknown key 'modell'; valid keys in config: model, data",
        "model.hparams.n_feats=32": r"unknown key 'model.hparams.n_feats'; valid .* n1, n2",
        "optim.lr=fast": r"optim.lr: expected float, got 'fast'",
        "iterations=2.5": r"iterations: expected int",
        "data.augment=1": r"data.augment: expected bool",
        "optim.name=sgd": r"optim.name: expected 'adam' \| 'adamw'",
        "optim.betas=[0.9]": r"optim.betas: expected list of 2 float",
        "model.arch=nope": r"model.arch: unknown model 'nope'",
        "ema.decay=1": r"ema.decay: must be in \[0, 1\)",
        "loss.luma_weight=1.5": r"loss.luma_weight: must be in \[0, 1\], got 1.5",
        "data.train=[]": r"data.train: give at least one folder",
        "data.rescale=[0.5,0.5]": r"data.rescale: factors must be distinct and in \(0, 1\)",
        "data.rescale=[1.2]": r"data.rescale: factors must be distinct and in \(0, 1\)",
        "schedule.warmup=20": r"schedule.warmup: must be in \[0, iterations\)",
        "noequals": r"expected KEY=VALUE",
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_config(path, [override])
    # the shipped example is valid and shows every section
    example = load_config(REPO / "configs" / "example_espcn_x2.yaml")
    raw = yaml.safe_load((REPO / "configs" / "example_espcn_x2.yaml").read_text())
    assert set(raw) == set(yaml.safe_load(dump_config(example)))
    assert example.data.val is not None and len(example.data.train) == 2


BENCHMARK_FOLDERS = {"Set5", "Set14", "BSD100", "Kodak24", "Urban100", "Manga109"}


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_config_is_valid_and_trains_on_training_folders_only(config):
    cfg = load_config(REPO / "configs" / config)
    folders = {Path(p).name for p in cfg.data.train}
    assert folders and not folders & BENCHMARK_FOLDERS, f"{config} trains on {folders}"
    assert cfg.data.val is None or Path(cfg.data.val).name in BENCHMARK_FOLDERS | folders
    if not config.startswith("example"):  # tools/ship_model.py finds a stage's config by it
        assert Path(cfg.output) == Path("runs") / Path(config).stem
    if cfg.init_from is not None:  # a shipped file, or another config's run folder
        init = Path(cfg.init_from)
        assert (REPO / init).is_file() or (
            init.parts[0] == "runs" and (REPO / "configs" / f"{init.parts[1]}.yaml").is_file()
        ), f"{config}: init_from {init} is neither shipped nor a configured run"


def test_schedules_and_losses(tmp_path, folders):
    cfg = config_from_dict(base_config(folders, tmp_path, iterations=101, optim__lr=1.0,
                                       schedule={"warmup": 4, "min_lr": 0.1}))  # fmt: skip
    lrs = [schedule.learning_rate(cfg, i) for i in range(101)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0] and lrs[4] == 1.0
    assert lrs[-1] == pytest.approx(0.1) and all(
        a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False)
    )
    step = config_from_dict(base_config(folders, tmp_path, iterations=100, optim__lr=1.0,
                                        schedule={"name": "multistep", "milestones": [10, 50],
                                                  "gamma": 0.5}))  # fmt: skip
    assert [schedule.learning_rate(step, i) for i in (0, 9, 10, 49, 50, 99)] == [
        1,
        1,
        0.5,
        0.5,
        0.25,
        0.25,
    ]
    sr, hr = torch.zeros(10), torch.full((10,), 0.5)
    assert losses.make_loss(cfg.loss)(sr, hr).item() == pytest.approx(0.5)  # l1
    charbonnier = config_from_dict(base_config(folders, tmp_path, loss={"name": "charbonnier"}))
    assert losses.make_loss(charbonnier.loss)(sr, hr).item() == pytest.approx(0.5, abs=1e-5)
    assert losses.make_loss(charbonnier.loss)(hr, hr).item() == pytest.approx(1e-3)
    # luma_weight: that share of the loss is taken on BT.601 luma (the evaluated channel)
    rgb_hr = torch.full((2, 3, 4, 4), 0.5)
    grey = torch.zeros_like(rgb_hr)  # luma differs by 0.5 * 219 / 255, every channel by 0.5
    # same luma, other colour: R and B up, G down so that 65.481 dR + 24.966 dB = -128.553 dG
    tint = rgb_hr + torch.tensor([0.1, -0.1 * (65.481 + 24.966) / 128.553, 0.1]).view(1, 3, 1, 1)
    for w in (0.0, 0.5, 1.0):
        luma = config_from_dict(base_config(folders, tmp_path, loss={"luma_weight": w})).loss
        loss = losses.make_loss(luma)
        assert loss(grey, rgb_hr).item() == pytest.approx((1 - w) * 0.5 + w * 0.5 * 219 / 255)
        expected = (1 - w) * tint.sub(rgb_hr).abs().mean().item()
        assert loss(tint, rgb_hr).item() == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------- the loop


def test_train_validate_export_and_log(tmp_path, folders):
    out = tmp_path / "run"
    cfg = base_config(folders, out, val_every=10, data__val=str(folders[1]), data__workers=1)
    config_file = write_yaml(tmp_path / "c.yaml", cfg)
    assert cli_main(["train", "--config", str(config_file), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "best.safetensors", "config.yaml", "last.safetensors", "log.jsonl", "state.safetensors"
    ]  # fmt: skip
    assert load_config(out / "config.yaml") == load_config(config_file)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log] == [5, 10, 15, 20]
    for key in ("loss", "lr", "grad_norm", "data_wait", "step_time"):
        assert all(key in e for e in log)
    assert "val" in log[1] and "val" in log[3] and "val" not in log[0]
    assert set(log[3]["val"]["val"]) == {"psnr", "ssim"}
    best = load_checkpoint(out / "best.safetensors")
    last = load_checkpoint(out / "last.safetensors")
    assert best.arch == "espcn" and best.scale == 2 and best.hparams["n1"] == 16
    prov = last.metadata["provenance"]
    assert prov["iterations"] == 20 and prov["weights"] == "ema"
    assert prov["train_data"] == [str(folders[0].resolve())] and "hardware" in prov
    assert prov["config"]["optim"]["lr"] == 2e-3 and prov["wall_time_s"] >= 0
    assert last.metadata["metrics"]["val"]["iteration"] == 20
    best_psnr = max(e["val"]["val"]["psnr"] for e in log if "val" in e)
    assert best.metadata["metrics"]["val"]["psnr"] == best_psnr
    # the exported weights are the EMA weights of the training state
    state = state_tensors(out)
    for name, tensor in last.module.state_dict().items():
        assert torch.equal(tensor, state[f"ema.{name}"])
    assert not torch.equal(state["ema.body.0.weight"], state["model.body.0.weight"])
    # an existing run is not overwritten without --resume; --resume of a finished run is a no-op
    assert cli_main(["train", "--config", str(config_file), "-q"]) == 2
    assert cli_main(["train", "--config", str(config_file), "-q", "--resume"]) == 0
    assert torch.equal(state_tensors(out)["model.body.0.weight"], state["model.body.0.weight"])


def test_options_bf16_adamw_clip_multistep_no_ema(tmp_path, folders):
    cfg = base_config(
        folders, tmp_path / "run", iterations=6, bf16=True, ema={"decay": 0.0},
        optim={"name": "adamw", "lr": 1e-3, "weight_decay": 0.01, "grad_clip": 0.05},
        schedule={"name": "multistep", "milestones": [3]}, loss={"name": "charbonnier"},
        model={"arch": "fsrcnn", "scale": 3, "hparams": {"d": 8, "s": 4, "m": 1}},
    )  # fmt: skip
    out = run(cfg)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["lr"] == pytest.approx(5e-4)
    assert load_checkpoint(out / "last.safetensors").metadata["provenance"]["weights"] == "raw"
    assert not any(k.startswith("ema.") for k in state_tensors(out))


def test_init_from_skips_mismatched_tensors(tmp_path, folders, capsys):
    x2 = create_model("espcn", scale=2, n1=16, n2=8)
    path = save_checkpoint(tmp_path / "x2.safetensors", x2)
    x4 = create_model("espcn", scale=4, n1=16, n2=8)
    loaded, skipped = train_state.init_from_checkpoint(x4, path)
    assert loaded == ["body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"]
    assert skipped == ["body.4.weight (shape (12, 8, 3, 3) in file, (48, 8, 3, 3) in model)",
                       "body.4.bias (shape (12,) in file, (48,) in model)"]  # fmt: skip
    assert torch.equal(x4.body[0].weight, x2.body[0].weight)
    cfg = base_config(folders, tmp_path / "run", iterations=1, init_from=str(path), schedule={},
                      model={"arch": "espcn", "scale": 4, "hparams": {"n1": 16, "n2": 8}},
                      data__patch=8)  # fmt: skip
    tr.train(config_from_dict(cfg), progress=True)
    assert "loaded 4 of 6 tensors; skipped body.4.weight" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no such file"):
        train_state.init_from_checkpoint(x4, tmp_path / "missing.safetensors")


def test_init_from_grows_lafn_with_near_identity_blocks(tmp_path):
    """An 8-block LAFN started from 6-block weights computes (almost) what they did: the two
    blocks the file lacks start as near-identity maps, and they still learn (their last
    convolution gets a gradient)."""
    torch.manual_seed(0)
    small = create_model("lafn", scale=2, channels=16, n_blocks=2, reduced=8)
    for p in small.parameters():  # away from the fresh init: a trained-looking network
        p.data.add_(0.05 * torch.randn_like(p))
    path = save_checkpoint(tmp_path / "small.safetensors", small)
    deep = create_model("lafn", scale=2, channels=16, n_blocks=4, reduced=8)
    loaded, skipped = train_state.init_from_checkpoint(deep, path)
    assert len(loaded) == len(small.state_dict())
    assert len(skipped) == 2 * len(deep.blocks[0].state_dict())
    assert all(s.endswith("(not in file: its block starts near-identity)") for s in skipped)
    assert {s.split(".")[1] for s in skipped} == {"2", "3"}
    # tensors of another shape are not the model's to start: they keep their own init
    wide = create_model("lafn", scale=2, channels=24, n_blocks=2, reduced=8)
    fresh = {k: v.clone() for k, v in wide.state_dict().items()}
    loaded_wide, skipped_wide = train_state.init_from_checkpoint(wide, path)
    assert not any("near-identity" in s for s in skipped_wide)
    assert torch.equal(wide.blocks[1].conv3.weight, fresh["blocks.1.conv3.weight"])
    x = torch.rand(1, 3, 24, 24)
    ref, out = small(x), deep(x)
    assert (out - ref).abs().max() < 0.01 * ref.abs().max()
    assert not torch.equal(out, ref)  # the open gate is 0.9997, not 1
    out.sum().backward()
    assert deep.blocks[3].conv3.weight.grad.abs().sum() > 0
    # a network the file fully covers is loaded as it is
    again = create_model("lafn", scale=2, channels=16, n_blocks=2, reduced=8)
    assert train_state.init_from_checkpoint(again, path) == (loaded, [])
    assert torch.equal(again(x), ref)


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, folders, capsys):
    out = tmp_path / "run"
    cfg = base_config(folders, out, iterations=30, checkpoint_every=5, debug_nan_at=12)
    config_file = write_yaml(tmp_path / "c.yaml", cfg)
    assert cli_main(["train", "--config", str(config_file), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"superres: error: loss is nan at iteration 13; training stopped (last good training "
        f"state: {out / 'state.safetensors'} (iteration 10); try a lower optim.lr or set "
        "optim.grad_clip)"
    ]
    assert train_state.read_state_metadata(out / train_state.STATE_FILE)["iteration"] == 10
    state = state_tensors(out)
    assert all(torch.isfinite(t).all() for k, t in state.items() if t.is_floating_point())
    assert load_checkpoint(out / "last.safetensors").metadata["provenance"]["iterations"] == 10


def test_resume_rejects_a_different_config(tmp_path, folders):
    out = tmp_path / "run"
    run(base_config(folders, out, iterations=5))
    with pytest.raises(ConfigError, match=r"differs from the saved one in optim.lr"):
        run(base_config(folders, out, iterations=10, optim__lr=1e-4), resume=True)
    run(base_config(folders, out, iterations=10, data__workers=1), resume=True)
    assert train_state.read_state_metadata(out / train_state.STATE_FILE)["iteration"] == 10


def test_sigkill_then_resume_is_bit_exact(tmp_path, folders):
    iterations = 150
    common = dict(iterations=iterations, checkpoint_every=15, log_every=15,
                  model={"arch": "espcn", "scale": 2, "hparams": {"n1": 32, "n2": 16}},
                  data__patch=16)  # fmt: skip
    reference = run(base_config(folders, tmp_path / "ref", **common))
    out = tmp_path / "killed"
    cfg = base_config(folders, out, **common, data__workers=1)
    config_file = write_yaml(tmp_path / "c.yaml", cfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "superres", "train", "--config", str(config_file), "-q"],
        env=env, start_new_session=True, stderr=subprocess.PIPE,
    )  # fmt: skip
    state = out / train_state.STATE_FILE
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    running = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its DataLoader worker
    proc.wait()
    assert running, proc.stderr.read().decode()
    killed_at = train_state.read_state_metadata(state)["iteration"]
    assert 0 < killed_at < iterations
    run(cfg, resume=True)
    expected, resumed = state_tensors(reference), state_tensors(out)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log] == list(range(15, iterations + 1, 15))


def test_stop_at_saves_there_and_resume_goes_on_bit_exact(tmp_path, folders, capsys):
    """``superres train --stop-at N``: the run stops after iteration N of an unchanged
    schedule with its state, weights and log there ("of M" in the weights), and ``--resume``
    ends where an uninterrupted run does."""
    common = dict(iterations=20, checkpoint_every=10, log_every=5,
                  model={"arch": "espcn", "scale": 2, "hparams": {"n1": 16, "n2": 8}},
                  data__patch=16)  # fmt: skip
    reference = run(base_config(folders, tmp_path / "ref", **common))
    out = tmp_path / "stopped"
    config_file = write_yaml(tmp_path / "c.yaml", base_config(folders, out, **common))
    assert cli_main(["train", "--config", str(config_file), "--stop-at", "7"]) == 0
    assert "stopped at iteration 7 of 20 (--resume goes on)" in capsys.readouterr().err
    assert train_state.read_state_metadata(out / train_state.STATE_FILE)["iteration"] == 7
    prov = load_checkpoint(out / "last.safetensors").metadata["provenance"]
    assert (prov["iterations"], prov["config"]["iterations"]) == (7, 20)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log] == [5, 7]
    # already there: nothing to do
    assert cli_main(["train", "--config", str(config_file), "--resume", "--stop-at", "7"]) == 0
    assert train_state.read_state_metadata(out / train_state.STATE_FILE)["iteration"] == 7
    assert cli_main(["train", "--config", str(config_file), "--resume"]) == 0
    expected, resumed = state_tensors(reference), state_tensors(out)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log] == [5, 7, 10, 15, 20]
    assert cli_main(["train", "--config", str(config_file), "--resume", "--stop-at", "0"]) == 2
    assert "stop_at: must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_ddp_two_processes_match_one_and_resume(tmp_path, folders):
    """2 gloo processes x per-rank batch 2 == 1 process x batch 4 (and DDP --resume works)."""
    common = dict(iterations=8, checkpoint_every=4, schedule={"name": "constant"})
    single = run(base_config(folders, tmp_path / "single", **common))
    out = tmp_path / "ddp"
    config_file = write_yaml(tmp_path / "c.yaml", base_config(folders, out, **common))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "-m", "superres", "train", "--config", str(config_file),
                "-q"]  # fmt: skip
    first = subprocess.run([*base_cmd, "--set", "iterations=4"], env=env, capture_output=True)
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    assert train_state.read_state_metadata(out / train_state.STATE_FILE)["world_size"] == 2
    second = subprocess.run([*base_cmd, "--resume"], env=env, capture_output=True)
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    expected, got = state_tensors(single), state_tensors(out)
    for name in expected:
        if name.startswith(("model.", "ema.")):
            torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=0)
    assert train_state.read_state_metadata(out / train_state.STATE_FILE)["iteration"] == 8


def test_global_batch_must_split_over_processes(tmp_path, folders, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="global batch 3 is not divisible by the 2 processes"):
        run(base_config(folders, tmp_path / "run", data__batch=3))


def test_channels_last_trains_the_same_model_and_resumes_exactly(tmp_path, folders):
    model = {"arch": "lafn", "scale": 2, "hparams": {"channels": 8, "n_blocks": 1}}
    common = dict(iterations=8, checkpoint_every=4, log_every=4, model=model)
    plain = state_tensors(run(base_config(folders, tmp_path / "nchw", **common)))
    whole = state_tensors(
        run(base_config(folders, tmp_path / "nhwc", **common, channels_last=True))
    )
    assert plain.keys() == whole.keys()
    for name in plain:  # the same arithmetic in another order: float rounding only
        assert torch.allclose(plain[name], whole[name], rtol=1e-3, atol=1e-5), name
    out = tmp_path / "split"
    # Warm-up 3: the first 4 steps have the same learning rates for 4 and 8 iterations.
    run(base_config(folders, out, **{**common, "iterations": 4}, channels_last=True))
    resumed = state_tensors(run(base_config(folders, out, **common, channels_last=True), True))
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name
    weights = load_checkpoint(tmp_path / "nhwc" / "last.safetensors")
    assert weights.metadata["provenance"]["config"]["channels_last"] is True


@pytest.mark.parametrize("problem", ["missing", "empty", "corrupt"])
def test_a_bad_validation_folder_fails_before_the_first_step(tmp_path, folders, capsys, problem):
    """A validation folder that is missing, empty or holds a broken image is refused up front:
    one line naming it, exit status 2, and no training state written."""
    val = tmp_path / "val"
    if problem != "missing":
        val.mkdir()
    if problem == "corrupt":
        (val / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    out = tmp_path / "run"
    cfg = base_config(folders, out, data__val=str(val), val_every=1000, iterations=1000)
    code = cli_main(["train", "--config", str(write_yaml(tmp_path / "cfg.yaml", cfg)), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("superres: error: data.val:") and "\n" not in err, err
    assert ("broken.png" if problem == "corrupt" else str(val)) in err
    assert not out.exists()  # checked before the run folder is written


def test_a_corrupt_training_image_is_one_line(tmp_path, capsys):
    train = make_folder(tmp_path / "train", [(40, 48), (56, 44)], seed=3)
    (train / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    cfg = base_config((train, None), tmp_path / "run")
    code = cli_main(["train", "--config", str(write_yaml(tmp_path / "cfg.yaml", cfg)), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "zz_broken.png" in err, err
    assert err.startswith("superres: error: data.train:")
    assert not (tmp_path / "run").exists()


def test_channels_other_than_rgb_are_refused_in_the_config(tmp_path, folders):
    cfg = base_config(folders, tmp_path / "run")
    cfg["model"]["hparams"]["in_channels"] = 1
    with pytest.raises(ConfigError, match="model.hparams.in_channels: .* must be 3, got 1"):
        config_from_dict(cfg)


def test_a_reparameterised_model_trains_and_exports_its_deployed_form(tmp_path, folders):
    """plainsr_rep trains with its extra branches; last.safetensors is the fused plainsr with
    the same output as the trained (EMA) network, and validation scored that fused form."""
    out = tmp_path / "rep"
    cfg = base_config(folders, out, iterations=6, checkpoint_every=3, val_every=3)
    cfg["model"] = {"arch": "plainsr_rep", "scale": 2, "hparams": {"channels": 8, "n_convs": 1}}
    cfg["data"]["val"] = str(folders[1])
    run(cfg)
    exported = load_checkpoint(out / "last.safetensors")
    assert exported.arch == "plainsr" and exported.hparams["channels"] == 8
    tensors = state_tensors(out)
    rep = create_model("plainsr_rep", scale=2, channels=8, n_convs=1).eval()
    rep.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    x = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (exported.module.eval()(x) - rep(x)).abs().max() < 1e-5
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("val" in entry for entry in logged)
