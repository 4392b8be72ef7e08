"""Training configuration: frozen, validated dataclasses read from YAML plus ``--set`` overrides.

A config file is a YAML mapping with the sections of :class:`TrainConfig`; every key is
optional except ``data.train``. Unknown keys are errors that name the key and the valid ones,
values are type-checked, and ``--set a.b.c=value`` overrides are parsed with YAML's scalar rules
(``--set optim.lr=5e-4``, ``--set model.hparams.n_feats=32``, ``--set data.train=[a,b]``)::

    cfg = load_config("configs/example_espcn_x2.yaml", ["optim.lr=5e-4"])
    print(dump_config(cfg))      # the resolved config, as written into the run folder

Relative paths (data folders, ``output``, ``init_from``, ``cache_dir``) are taken relative to
the current working directory, not to the config file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from superres.errors import ConfigError

__all__ = [
    "BurstConfig",
    "ConfigError",
    "DataConfig",
    "DegradeConfig",
    "EmaConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
]


@dataclass(frozen=True)
class ModelConfig:
    """The network: ``create_model(arch, scale=scale, **hparams)``.

    Attributes:
        arch: A registered architecture (``superres models`` lists them).
        scale: Upscaling factor.
        hparams: Hyperparameter overrides of the architecture (unknown names are errors).
    """

    arch: str = "espcn"
    scale: int = 2
    hparams: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DegradeConfig:
    """Codec in the loop (:class:`superres.training.data.CodecDegradation`): each LR patch is
    encoded and decoded by one of ``codecs`` at a random quality, for codec-aware restoration
    models.

    Attributes:
        codecs: Codecs to draw from (``jpeg``, ``webp``, ``avif``); empty: no degradation.
        jpeg, webp, avif: Inclusive quality range drawn for each codec.
        clean: Probability that a patch is left uncompressed.
        align: LR crops start on multiples of this (the codec's block grid).
    """

    codecs: tuple[str, ...] = ()
    jpeg: tuple[int, int] = (10, 85)
    webp: tuple[int, int] = (5, 85)
    avif: tuple[int, int] = (20, 85)
    clean: float = 0.0
    align: int = 16

    def degradation(self) -> Any:
        """The :class:`~superres.training.data.CodecDegradation` of this section, or None."""
        if not self.codecs:
            return None
        from superres.training.data import CodecDegradation

        return CodecDegradation(
            tuple((c, *getattr(self, c)) for c in self.codecs), self.clean, self.align
        )


@dataclass(frozen=True)
class BurstConfig:
    """Synthetic bursts for a multi-frame model (:class:`superres.training.bursts.BurstDataset`):
    every sample is N shifted LR frames of one HR crop instead of one (LR, HR) pair.

    Attributes:
        frames: Burst lengths N drawn from (uniformly, once per iteration); empty: the usual
            single-image pairs.
        downscalers: ``area`` and/or ``bicubic``, drawn per sample.
        motion: Whole LR pixels of motion beyond the protocol's [0, 1).
        subpixel: Probability that a frame's shift has a random fractional HR part (the
            protocol's shifts are whole HR pixels; real motion is not).
        jitter: Standard deviation (LR pixels) of the error added to the shifts the model is
            given, as registration leaves.
        noise: Largest Gaussian noise sigma on [0, 1] (each sample draws one up to it).
        val_frames: Burst length of the validation bursts (the protocol's, on ``data.val``).
    """

    frames: tuple[int, ...] = ()
    downscalers: tuple[str, ...] = ("area", "bicubic")
    motion: int = 1
    subpixel: float = 0.5
    jitter: float = 0.02
    noise: float = 0.0
    val_frames: int = 8


@dataclass(frozen=True)
class DataConfig:
    """Training and validation images (see :mod:`superres.training.data`).

    Attributes:
        train: Folders of HR training images (required).
        val: Folder of HR validation images scored every ``val_every`` iterations (None: none).
        patch: Side of the LR training crops in LR pixels (HR crops are ``scale`` times larger).
            Images whose LR version is smaller than this are skipped.
        batch: Global batch size: the sum over all processes of a distributed run.
        workers: DataLoader worker processes per training process (0: load in the loop).
        prefetch: Batches prefetched by each worker.
        augment: Apply the 8 dihedral transforms (flips and 90-degree rotations) at random.
        cache_dir: Folder for cached decoded HR/LR arrays (.npy); None: keep them in memory only.
        rescale: Extra HR scale factors in (0, 1): every training image is also used shrunk
            by each factor (MATLAB bicubic), as more images (scale augmentation, as VDSR
            trained on 291 images); ``[]``: none.
        degrade: Codec-in-the-loop degradation of the LR patches (off unless ``codecs``).
        burst: Synthetic bursts for multi-frame models (off unless ``frames``).
    """

    train: tuple[str, ...] = ()
    val: str | None = None
    patch: int = 48
    batch: int = 16
    workers: int = 2
    prefetch: int = 4
    augment: bool = True
    cache_dir: str | None = None
    rescale: tuple[float, ...] = ()
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    burst: BurstConfig = field(default_factory=BurstConfig)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser.

    Attributes:
        name: ``adam`` or ``adamw``.
        lr: Peak learning rate (reached after the warm-up).
        betas: Adam's moment decay rates.
        eps: Adam's epsilon.
        weight_decay: L2 penalty (adam) or decoupled weight decay (adamw).
        grad_clip: Clip the global gradient L2 norm to this value (None: no clipping).
    """

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule: linear warm-up, then cosine, multi-step or constant.

    Attributes:
        name: ``cosine`` (from ``optim.lr`` down to ``min_lr`` at the last iteration),
            ``multistep`` (multiply by ``gamma`` at each milestone) or ``constant``.
        warmup: Iterations of linear warm-up from ``optim.lr / warmup`` to ``optim.lr``.
        min_lr: Final learning rate of the cosine schedule.
        milestones: Iterations at which ``multistep`` multiplies the learning rate by ``gamma``.
        gamma: Multi-step decay factor.
    """

    name: Literal["cosine", "multistep", "constant"] = "cosine"
    warmup: int = 0
    min_lr: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5


@dataclass(frozen=True)
class LossConfig:
    """Pixel loss between SR and HR patches.

    Attributes:
        name: ``l1``, ``mse`` or ``charbonnier`` (``sqrt((sr - hr)^2 + eps^2)``).
        eps: Charbonnier's epsilon.
        luma_weight: share of the loss taken on the BT.601 luma (the channel the evaluator
            scores) instead of RGB, in [0, 1]; 0: RGB only.
    """

    name: Literal["l1", "mse", "charbonnier"] = "l1"
    eps: float = 1e-3
    luma_weight: float = 0.0


@dataclass(frozen=True)
class EmaConfig:
    """Exponential moving average of the weights (validated and exported instead of the raw ones).

    Attributes:
        decay: ``ema = decay * ema + (1 - decay) * weights`` after every step; 0 disables EMA.
    """

    decay: float = 0.999


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run.

    Attributes:
        model, data, optim, schedule, loss, ema: The sections above.
        iterations: Total optimiser steps.
        seed: Seeds the initialisation and every sample (image, crop, augmentation).
        output: The run folder (config.yaml, log.jsonl, state.safetensors, last/best).
        log_every: Iterations between log.jsonl entries.
        val_every: Iterations between validations (and best/last exports); 0: only at the end.
        checkpoint_every: Iterations between training-state checkpoints (``--resume``).
        bf16: Run forward/backward under bfloat16 autocast (weights stay float32).
        channels_last: Keep weights and batches in channels-last (NHWC) memory layout; on
            this project's 2-core CPU a LAFN x4 step runs 1.26x faster (0.61 -> 0.48 s).
            Saved weights are in the usual layout either way.
        init_from: A checkpoint to initialise from: every tensor whose name and shape match is
            loaded, the others are reported and left at their initialisation.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``. Distributed runs use
            ``cuda:LOCAL_RANK`` when CUDA is available.
        threads: CPU threads of the training process (None: torch's default).
        tensorboard: Also log to ``output/tensorboard`` when the ``tensorboard`` package is
            installed (silently skipped otherwise).
        debug_nan_at: Testing aid: make the loss NaN at this iteration (None: never).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    iterations: int = 100_000
    seed: int = 0
    output: str = "runs/train"
    log_every: int = 100
    val_every: int = 5000
    checkpoint_every: int = 1000
    bf16: bool = False
    channels_last: bool = False
    init_from: str | None = None
    device: str = "auto"
    threads: int | None = None
    tensorboard: bool = True
    debug_nan_at: int | None = None

    def __post_init__(self) -> None:
        _check_semantics(self)


# --------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return f"list of {len(args)} {_type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against / converted to the annotation ``tp``; ConfigError otherwise."""

    def fail() -> typing.NoReturn:
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            fail()
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        fail()
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        fail()
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and len(args) == 2 and args[1] is Ellipsis:
            value = [value]  # a single folder / milestone
        if not isinstance(value, (list, tuple)):
            fail()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            fail()
        return tuple(
            _convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            fail()
        try:  # JSON-serialisable, normalised (what checkpoints store)
            return json.loads(json.dumps(dict(value), allow_nan=False))
        except (TypeError, ValueError):
            fail()
    if tp is bool:
        if isinstance(value, bool):
            return value
        fail()
    if tp is int:
        if isinstance(value, str):  # PyYAML reads 1e5 as a string
            try:
                value = float(value)
            except ValueError:
                fail()
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        fail()
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                fail()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                fail()
            return float(value)
        fail()
    if tp is str:
        if isinstance(value, str):
            return value
        fail()
    raise TypeError(f"{key}: unsupported annotation {tp!r}")  # pragma: no cover


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    where = prefix or "config"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ConfigError(f"unknown key '{key}'; valid keys in {where}: {', '.join(names)}")
    values = {}
    for name in names:
        if name in raw:
            key = f"{prefix}.{name}" if prefix else name
            values[name] = _convert(raw[name], hints[name], key)
    try:
        return cls(**values)
    except TypeError as exc:  # pragma: no cover - all fields have defaults
        raise ConfigError(f"{where}: {exc}") from None


def _check_semantics(cfg: TrainConfig) -> None:
    from superres.models import get_model_spec

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    try:
        spec = get_model_spec(cfg.model.arch)
    except ValueError as exc:
        raise ConfigError(f"model.arch: {exc}") from None
    need(
        spec.supports(cfg.model.scale),
        f"model.scale: {cfg.model.arch} does not support "
        f"x{cfg.model.scale} (supported: {spec.scales})",
    )
    unknown = sorted(set(cfg.model.hparams) - set(spec.defaults) - {"scale"})
    need(
        not unknown,
        f"unknown key 'model.hparams.{unknown[0] if unknown else ''}'; valid "
        f"hyperparameters of {cfg.model.arch}: "
        f"{', '.join(k for k in spec.defaults if k != 'scale')}",
    )
    need("scale" not in cfg.model.hparams, "model.hparams.scale: set model.scale instead")
    for key in ("in_channels", "out_channels"):
        value = cfg.model.hparams.get(key, 3)
        need(
            value == 3,
            f"model.hparams.{key}: training data and inference are RGB, so it must be 3, "
            f"got {value!r}",
        )
    d = cfg.data
    need(len(d.train) > 0, "data.train: give at least one folder of HR training images")
    need(d.patch >= 1, f"data.patch: must be >= 1, got {d.patch}")
    need(d.batch >= 1, f"data.batch: must be >= 1, got {d.batch}")
    need(d.workers >= 0, f"data.workers: must be >= 0, got {d.workers}")
    need(
        all(0 < f < 1 for f in d.rescale) and len(set(d.rescale)) == len(d.rescale),
        f"data.rescale: factors must be distinct and in (0, 1), got {list(d.rescale)}",
    )
    need(d.prefetch >= 1, f"data.prefetch: must be >= 1, got {d.prefetch}")
    from superres.codec import list_codecs

    # every registered codec that has a quality range in DegradeConfig
    codecs = [c for c in list_codecs() if hasattr(d.degrade, c)]
    for name in d.degrade.codecs:
        need(name in codecs,
             f"data.degrade.codecs: unknown codec {name!r} (use {', '.join(codecs)})")  # fmt: skip
    try:
        d.degrade.degradation()
    except ValueError as exc:
        raise ConfigError(f"data.degrade: {exc}") from None
    b = d.burst
    is_burst = bool(getattr(spec.builder, "burst", False))
    if b.frames:
        need(is_burst, f"data.burst.frames: {cfg.model.arch} is not a multi-frame model")
        need(min(b.frames) >= 1, f"data.burst.frames: must be >= 1, got {b.frames}")
        need(not d.degrade.codecs, "data.burst: does not combine with data.degrade.codecs")
    else:
        need(not is_burst, f"data.burst.frames: {cfg.model.arch} trains on bursts; give them")
    need(
        len(b.downscalers) > 0 and set(b.downscalers) <= {"area", "bicubic"},
        f"data.burst.downscalers: use area and/or bicubic, got {b.downscalers}",
    )
    need(b.motion >= 0, f"data.burst.motion: must be >= 0, got {b.motion}")
    need(0 <= b.subpixel <= 1, f"data.burst.subpixel: must be in [0, 1], got {b.subpixel}")
    need(b.jitter >= 0, f"data.burst.jitter: must be >= 0, got {b.jitter}")
    need(b.noise >= 0, f"data.burst.noise: must be >= 0, got {b.noise}")
    need(b.val_frames >= 1, f"data.burst.val_frames: must be >= 1, got {b.val_frames}")
    need(
        0 <= cfg.loss.luma_weight <= 1,
        f"loss.luma_weight: must be in [0, 1], got {cfg.loss.luma_weight}",
    )
    o = cfg.optim
    need(o.lr > 0, f"optim.lr: must be > 0, got {o.lr}")
    need(all(0 <= b < 1 for b in o.betas), f"optim.betas: must be in [0, 1), got {o.betas}")
    need(o.eps > 0, f"optim.eps: must be > 0, got {o.eps}")
    need(o.weight_decay >= 0, f"optim.weight_decay: must be >= 0, got {o.weight_decay}")
    need(
        o.grad_clip is None or o.grad_clip > 0,
        f"optim.grad_clip: must be > 0 or null, got {o.grad_clip}",
    )
    s = cfg.schedule
    need(
        0 <= s.warmup < cfg.iterations,
        f"schedule.warmup: must be in [0, iterations), got {s.warmup}",
    )
    need(0 <= s.min_lr <= o.lr, f"schedule.min_lr: must be in [0, optim.lr], got {s.min_lr}")
    need(
        list(s.milestones) == sorted(set(s.milestones)) and all(m > 0 for m in s.milestones),
        f"schedule.milestones: must be increasing positive iterations, got {s.milestones}",
    )
    need(0 < s.gamma <= 1, f"schedule.gamma: must be in (0, 1], got {s.gamma}")
    need(cfg.loss.eps > 0, f"loss.eps: must be > 0, got {cfg.loss.eps}")
    need(0 <= cfg.ema.decay < 1, f"ema.decay: must be in [0, 1), got {cfg.ema.decay}")
    need(cfg.iterations >= 1, f"iterations: must be >= 1, got {cfg.iterations}")
    need(cfg.seed >= 0, f"seed: must be >= 0, got {cfg.seed}")
    for key in ("log_every", "checkpoint_every"):
        need(getattr(cfg, key) >= 1, f"{key}: must be >= 1, got {getattr(cfg, key)}")
    need(cfg.val_every >= 0, f"val_every: must be >= 0, got {cfg.val_every}")
    need(cfg.threads is None or cfg.threads >= 1, f"threads: must be >= 1, got {cfg.threads}")
    need(bool(cfg.output), "output: give the run folder")


# --------------------------------------------------------------------------- public API


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """Validate a nested mapping (as read from YAML) into a :class:`TrainConfig`.

    Raises:
        ConfigError: unknown key, wrong type or invalid value (one line naming the key).
    """
    return _build(TrainConfig, raw, "")


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON/YAML types (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def dump_config(cfg: TrainConfig) -> str:
    """The resolved config as YAML text (sections in declaration order)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> ``(["a", "b", "c"], value)`` with ``value`` parsed as YAML.

    Raises:
        ConfigError: no ``=``, an empty key, or a value that is not valid YAML.
    """
    key, sep, value = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise ConfigError(
            f"override {text!r}: expected KEY=VALUE with a dotted KEY, e.g. optim.lr=1e-4"
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise ConfigError(f"override {text!r}: value is not valid YAML ({problem})") from None
    return path, parsed


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each ``key.path=value`` override applied."""
    out = json.loads(json.dumps(raw or {}, default=str))
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {text!r}: '{'.'.join(path[: i + 1])}' is not a section"
                )
            node = child
        node[path[-1]] = value
    return out


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML config file (None: defaults only), apply overrides and validate.

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key, wrong type or value.
    """
    raw: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = " ".join(str(exc).split())
            raise ConfigError(f"{path}: invalid YAML ({problem})") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a YAML mapping of sections")
    return config_from_dict(apply_overrides(raw, overrides))
