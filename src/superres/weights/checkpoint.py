"""Checkpoints: one safetensors file holding the weights and everything needed to rebuild them.

The file's string metadata::

    format_version    "1"
    arch              registered name, e.g. "edsr_baseline"
    scale             "4"
    hparams           JSON: create_model(arch, **hparams) rebuilds the network
    provenance        JSON: where the weights come from (training config, data, commit...)
    metrics           JSON: measured results, e.g. {"Set5": {"psnr": 32.1, "ssim": 0.89}}
    superres_version  the version that wrote the file

plus any extra entries given to ``save_checkpoint(metadata=...)`` (JSON-encoded). Loading
never unpickles anything: safetensors holds raw tensors only.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from superres.core.io import atomic_write_bytes
from superres.errors import CheckpointError, read_problem
from superres.models import SRModel, create_model, get_model_spec, list_models

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "save_checkpoint",
]

FORMAT_VERSION = 1
_JSON_FIELDS = ("hparams", "provenance", "metrics")
_RESERVED = ("format_version", "arch", "scale", "hparams", "superres_version")
_MAX_HEADER = 100_000_000  # safetensors' own limit


def _superres_version() -> str:
    try:
        import superres

        return str(superres.__version__)
    except (ImportError, AttributeError):  # pragma: no cover - partial installs
        return "unknown"


def _describe(model: nn.Module | SRModel) -> tuple[nn.Module, str, int, dict[str, Any], dict]:
    """(module, arch, scale, hparams, existing metadata) of a module or SRModel."""
    if isinstance(model, SRModel):
        return model.module, model.arch, model.scale, dict(model.hparams), model.metadata
    missing = [a for a in ("arch", "scale", "hparams") if not hasattr(model, a)]
    if missing:
        raise ValueError(
            f"{type(model).__name__} has no {', '.join(missing)}: build it with create_model"
        )
    return model, model.arch, int(model.scale), dict(model.hparams), {}


def _state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors, each with its own storage.

    safetensors refuses tensors that share memory (tied weights, views), so every tensor whose
    storage was already seen is cloned; loading then assigns the same values to each name.
    """
    tensors, seen = {}, set()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu")
        pointer = tensor.untyped_storage().data_ptr()
        if tensor.numel() and pointer in seen:
            tensor = tensor.clone()
        seen.add(pointer)
        tensors[name] = tensor.contiguous()
    return tensors


def save_checkpoint(
    path: str | Path,
    model: nn.Module | SRModel,
    *,
    provenance: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Save ``model`` (built by ``create_model``, or an ``SRModel``) as a safetensors file.

    Args:
        path: Destination, conventionally ``*.safetensors``.
        model: The network; its ``arch``, ``scale`` and ``hparams`` go into the file.
        provenance: Where the weights come from. Default: the SRModel's own (if loaded from a
            checkpoint), else ``{}``.
        metrics: Measured results. Default: as for ``provenance``.
        metadata: Extra JSON-serialisable entries stored under their own keys. The keys
            ``provenance`` and ``metrics`` may be given here instead of as arguments.
        overwrite: Replace an existing file (atomically). If False, an existing file is an
            error.

    Returns:
        The path written.

    Raises:
        ValueError: the model was not built by ``create_model``, unknown architecture,
            reserved or non-JSON metadata.
        FileExistsError: ``overwrite`` is False and the file exists.
    """
    path = Path(path)
    module, arch, scale, hparams, existing = _describe(model)
    get_model_spec(arch)  # fail now rather than at load time
    if hparams.get("scale", scale) != scale:
        raise ValueError(f"inconsistent model: scale {scale} but hparams say {hparams['scale']}")
    extra = dict(metadata or {})
    for key, value in (("provenance", provenance), ("metrics", metrics)):
        if key in extra and value is not None:
            raise ValueError(f"'{key}' given both as an argument and in metadata")
        if key not in extra:
            extra[key] = existing.get(key, {}) if value is None else value
    reserved = sorted(set(extra) & set(_RESERVED))
    if reserved:
        raise ValueError(f"metadata keys {reserved} are reserved")
    try:
        header = {key: json.dumps(value) for key, value in extra.items()}
        header.update(
            format_version=str(FORMAT_VERSION),
            arch=arch,
            scale=str(scale),
            hparams=json.dumps({**hparams, "scale": scale}),
            superres_version=_superres_version(),
        )
    except TypeError as exc:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {exc}") from None
    data = safetensors.torch.save(_state_tensors(module), metadata=header)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: file exists (pass overwrite=True to replace it)")
    atomic_write_bytes(path, data, overwrite=overwrite)
    return path


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors JSON header and the size of the data section that follows it."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise CheckpointError(path, "not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER or length + 8 > size:
                raise CheckpointError(path, "not a safetensors file (or truncated)")
            raw = file.read(length)
    except OSError as exc:
        raise CheckpointError(path, read_problem(exc, "a checkpoint file")) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(path, "not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "not a safetensors file (bad header)")
    return header, size - 8 - length


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """Decoded metadata of a checkpoint, without reading the weights.

    Returns:
        ``format_version`` and ``scale`` as ints, ``hparams``/``provenance``/``metrics`` as
        dicts, ``arch`` and ``superres_version`` as strings, and extra entries JSON-decoded
        (left as strings when they are not JSON).

    Raises:
        CheckpointError: missing file, not safetensors, truncated, not a superres checkpoint,
            invalid metadata or a format newer than this version reads.
    """
    path = Path(path)
    header, data_size = _read_header(path)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    ends = [v.get("data_offsets", [0, 0])[1] for v in entries.values() if isinstance(v, dict)]
    if max(ends, default=0) > data_size:
        raise CheckpointError(path, "truncated (tensor data ends before the header says)")
    raw = header.get("__metadata__") or {}
    if not isinstance(raw, dict) or "format_version" not in raw:
        raise CheckpointError(path, "not a superres checkpoint (no 'format_version' metadata)")
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value) if key not in ("arch", "superres_version") else value
        except (TypeError, json.JSONDecodeError):
            if key in ("format_version", "scale", *_JSON_FIELDS):
                raise CheckpointError(path, f"invalid '{key}' metadata: {value!r:.80}") from None
            meta[key] = value
    version = meta["format_version"]
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(path, f"invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"checkpoint format {version} is newer than this superres reads "
            f"({FORMAT_VERSION}); upgrade superres",
        )
    for key, kind in (("arch", str), ("scale", int), ("hparams", dict)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(path, f"missing or invalid '{key}' metadata")
    if meta["hparams"].get("scale", meta["scale"]) != meta["scale"]:
        raise CheckpointError(path, "inconsistent metadata: 'scale' differs from hparams")
    meta.setdefault("provenance", {})
    meta.setdefault("metrics", {})
    return meta


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> SRModel:
    """Rebuild the model saved in ``path`` and load its weights (strictly), in eval mode.

    Args:
        path: A file written by :func:`save_checkpoint`.
        device: Where to put the weights.

    Returns:
        The model; ``metadata`` holds the file's decoded metadata and ``path``.

    Raises:
        CheckpointError: any problem with the file (one line naming it): see
            :func:`read_checkpoint_metadata`, plus unknown architecture, hyperparameters this
            version cannot build, and weights that do not match the architecture.
    """
    path = Path(path)
    meta = read_checkpoint_metadata(path)
    arch, hparams = meta["arch"], {**meta["hparams"], "scale": meta["scale"]}
    if arch not in list_models():
        raise CheckpointError(
            path, f"unknown architecture '{arch}' (available: {', '.join(list_models())})"
        )
    try:
        module = create_model(arch, **hparams)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"cannot build {arch}: {exc}") from None
    try:
        tensors = safetensors.torch.load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error type
        raise CheckpointError(path, f"corrupt tensor data ({exc})") from None
    _check_state(path, arch, module.state_dict(), tensors)
    module.load_state_dict(tensors, strict=True)
    module.eval().to(device)
    return SRModel.from_module(module, metadata={**meta, "path": str(path)})


def _check_state(
    path: Path, arch: str, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]
) -> None:
    """Raise a one-line CheckpointError if the weights do not fit the built module."""

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k].shape != found[k].shape)
    if missing:
        problems.append(f"missing {names(missing)}")
    if unexpected:
        problems.append(f"unexpected {names(unexpected)}")
    if shapes:
        k = shapes[0]
        problems.append(
            f"shape mismatch for {names(shapes)} "
            f"({k}: file {tuple(found[k].shape)}, model {tuple(expected[k].shape)})"
        )
    if problems:
        raise CheckpointError(path, f"weights do not match {arch}: {'; '.join(problems)}")
