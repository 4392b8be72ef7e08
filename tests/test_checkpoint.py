"""Checkpoints: round trip of every registered model, metadata, atomic writes, clear errors."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from superres.models import SRModel, create_model, get_model_spec, list_models
from superres.weights import checkpoint
from superres.weights.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)

SHRINK = {"n_feats": 16, "n_blocks": 2, "n_groups": 2, "reduction": 4, "depth": 6}
CASES = [
    pytest.param(n, s, id=f"{n}-x{s}")
    for n in list_models()
    for s in (get_model_spec(n).scales or (2, 3, 4))
]


def build(name: str, scale: int, **overrides) -> nn.Module:
    defaults = get_model_spec(name).defaults
    small = {k: v for k, v in SHRINK.items() if k in defaults and v < defaults[k]}
    return create_model(name, scale=scale, **{**small, **overrides})


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "edsr.safetensors", build("edsr_baseline", 2))


def write_raw(path: Path, metadata: dict[str, str], tensors=None) -> Path:
    tensors = {"w": torch.zeros(2)} if tensors is None else tensors
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    return path


def assert_one_line_error(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(info.value, ValueError)


# --- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_round_trip(tmp_path: Path, name: str, scale: int) -> None:
    torch.manual_seed(0)
    net = build(name, scale).eval()
    path = save_checkpoint(tmp_path / f"{name}.safetensors", net)
    model = load_checkpoint(path)
    assert isinstance(model, SRModel)
    assert (model.arch, model.scale, model.hparams) == (name, scale, net.hparams)
    assert (model.tiling, model.receptive_field) == (net.tiling, net.receptive_field)
    assert not model.module.training
    x = torch.rand(1, 3, 5, 7)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))


def test_metadata_round_trip(tmp_path: Path) -> None:
    net = build("rcan", 3, reduction=8)
    provenance = {"config": {"lr": 2e-4, "iters": 1000}, "data": "DIV2K"}
    metrics = {"Set5": {"psnr": 30.5, "ssim": 0.87}}
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        net,
        provenance=provenance,
        metrics=metrics,
        metadata={"name": "quality", "license": "CC-BY-4.0", "tags": ["x3"]},
    )
    meta = read_checkpoint_metadata(path)
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert (meta["arch"], meta["scale"], meta["hparams"]) == ("rcan", 3, net.hparams)
    assert meta["provenance"] == provenance and meta["metrics"] == metrics
    assert meta["name"] == "quality" and meta["tags"] == ["x3"]
    assert meta["superres_version"]
    model = load_checkpoint(path)
    assert model.metadata["metrics"] == metrics and model.metadata["path"] == str(path)
    # raw strings in the file: every field is a string, JSON fields parse
    with safetensors.safe_open(str(path), "pt") as file:
        raw = file.metadata()
    assert raw["scale"] == "3" and json.loads(raw["hparams"])["reduction"] == 8


def test_resaving_a_loaded_model_keeps_provenance(tmp_path: Path) -> None:
    first = save_checkpoint(
        tmp_path / "a.safetensors", build("espcn", 2), provenance={"run": 7}, metrics={"p": 1}
    )
    model = load_checkpoint(first)
    second = save_checkpoint(tmp_path / "b.safetensors", model, metrics={"p": 2})
    meta = read_checkpoint_metadata(second)
    assert meta["provenance"] == {"run": 7} and meta["metrics"] == {"p": 2}


def test_metadata_validation(tmp_path: Path) -> None:
    net = build("espcn", 2)
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "x.safetensors", net, metadata={"arch": "other"})
    with pytest.raises(ValueError, match="both"):
        save_checkpoint(tmp_path / "x.safetensors", net, metrics={}, metadata={"metrics": {}})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", net, provenance={"f": object()})
    with pytest.raises(ValueError, match="create_model"):
        save_checkpoint(tmp_path / "x.safetensors", nn.Conv2d(3, 3, 3))
    assert list(tmp_path.iterdir()) == []


def test_shared_and_non_contiguous_tensors() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight
            self.t = nn.Parameter(torch.rand(3, 5).t())

    module = Tied()
    assert not module.t.is_contiguous()
    tensors = checkpoint._state_tensors(module)
    loaded = safetensors.torch.load(safetensors.torch.save(tensors))
    fresh = Tied()
    fresh.load_state_dict(loaded, strict=True)
    assert torch.equal(fresh.b.weight, module.a.weight) and fresh.b.weight is fresh.a.weight
    assert torch.equal(fresh.t, module.t)


def test_load_to_device(saved: Path) -> None:
    model = load_checkpoint(saved, device="cpu")
    assert model.device.type == "cpu"


# --- atomic writes ---------------------------------------------------------------------------


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path / "m.safetensors", build("espcn", 2))
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_file(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = saved.read_bytes()

    def broken_replace(src, dst) -> None:
        raise OSError("disk unplugged")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="unplugged"):
        save_checkpoint(saved, build("espcn", 2))
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_overwrite_flag(saved: Path) -> None:
    with pytest.raises(FileExistsError):
        save_checkpoint(saved, build("espcn", 2), overwrite=False)
    assert read_checkpoint_metadata(saved)["arch"] == "edsr_baseline"
    save_checkpoint(saved, build("espcn", 2))
    assert read_checkpoint_metadata(saved)["arch"] == "espcn"
    fresh = save_checkpoint(saved.with_name("new.safetensors"), build("espcn", 2), overwrite=False)
    assert sorted(p.name for p in saved.parent.iterdir()) == sorted([saved.name, fresh.name])


# --- errors ----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path / "nope.safetensors", "no such file")
    assert_one_line_error(tmp_path, "is a folder, not a checkpoint file")


def test_read_problems_are_worded_alike() -> None:
    """One wording for the file readers (checkpoints, .srz files): superres.errors."""
    from superres.errors import read_problem

    assert read_problem(FileNotFoundError(2, "x"), "a thing") == "no such file"
    assert read_problem(IsADirectoryError(21, "x"), "a thing") == "is a folder, not a thing"
    assert read_problem(PermissionError(13, "x"), "a thing") == "permission denied"
    assert read_problem(OSError(5, "Input/output error"), "a thing") == (
        "cannot read the file (Input/output error)"
    )


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("these are not weights\nsecond line\n")
    assert_one_line_error(path, "not a safetensors file")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    assert_one_line_error(tmp_path / "empty.safetensors", "not a safetensors file")


def test_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(3)}, path)
    assert_one_line_error(path, "not a safetensors file")


def test_truncated_file(saved: Path) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[:-100])
    assert_one_line_error(saved, "truncated")
    saved.write_bytes(data[:20])  # cut inside the header
    assert_one_line_error(saved, "not a safetensors file")


def test_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"[1,2")
    assert_one_line_error(path, "bad header")


def test_safetensors_without_our_metadata(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "foreign.safetensors", {"format": "pt"})
    assert_one_line_error(path, "not a superres checkpoint")
    path = write_raw(tmp_path / "bare.safetensors", None)
    assert_one_line_error(path, "not a superres checkpoint")


def test_unknown_architecture(tmp_path: Path) -> None:
    meta = {"format_version": "1", "arch": "srgan9000", "scale": "4", "hparams": '{"scale": 4}'}
    path = write_raw(tmp_path / "unknown.safetensors", meta)
    assert_one_line_error(path, "unknown architecture 'srgan9000'.*edsr_baseline")


def test_newer_format_version(tmp_path: Path) -> None:
    meta = {"format_version": "2", "arch": "espcn", "scale": "2", "hparams": "{}"}
    path = write_raw(tmp_path / "future.safetensors", meta)
    assert_one_line_error(path, "format 2 is newer.*upgrade")


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"format_version": "one"}, "format_version"),
        ({"format_version": "1", "arch": "espcn", "scale": "2"}, "'hparams'"),
        ({"format_version": "1", "arch": "espcn", "scale": "2", "hparams": "{"}, "'hparams'"),
        ({"format_version": "1", "arch": "espcn", "scale": "x2", "hparams": "{}"}, "'scale'"),
        ({"format_version": "1", "arch": "espcn", "scale": "2", "hparams": '{"scale": 3}'},
         "inconsistent"),
        ({"format_version": "1", "arch": "espcn", "scale": "2", "hparams": '{"n3": 1}'},
         "cannot build espcn.*'n3'"),
    ],
)  # fmt: skip
def test_invalid_metadata(tmp_path: Path, meta: dict[str, str], match: str) -> None:
    assert_one_line_error(write_raw(tmp_path / "bad.safetensors", meta), match)


def test_state_dict_mismatch(tmp_path: Path, saved: Path) -> None:
    with safetensors.safe_open(str(saved), "pt") as file:
        meta = file.metadata()
        tensors = {k: file.get_tensor(k) for k in file.keys()}  # noqa: SIM118
    more_blocks = {**meta, "hparams": json.dumps({**json.loads(meta["hparams"]), "n_blocks": 3})}
    path = write_raw(tmp_path / "missing.safetensors", more_blocks, tensors)
    assert_one_line_error(path, "weights do not match edsr_baseline: missing body.2")
    wider = {**meta, "hparams": json.dumps({**json.loads(meta["hparams"]), "n_feats": 32})}
    path = write_raw(tmp_path / "shape.safetensors", wider, tensors)
    assert_one_line_error(path, r"shape mismatch for .*more\) \(.*: file \(16,\), model \(32,\)\)")
    extra = {**tensors, "bogus": torch.zeros(1)}
    path = write_raw(tmp_path / "extra.safetensors", meta, extra)
    assert_one_line_error(path, "unexpected bogus")
