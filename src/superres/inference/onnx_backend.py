"""ONNX export of trained models, and an ONNX Runtime backend for the tiling engine.

Data flow::

    SRModel --export_onnx--> .onnx (dynamic batch/height/width, opset >= 17, descriptor in
                                     metadata_props, written atomically)
    .onnx or SRModel --OnnxModel.load / OnnxModel.from_model--> SRModel whose module runs an
        onnxruntime session --engine.upscale_*--> the same tiles, blending and rounding as torch

The export uses torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``):
the ``torch.export``-based one needs ``onnxscript``, which is not a dependency, and these
convolutional networks trace to plain ``Conv``/``PRelu``/``DepthToSpace`` graphs. Tracing can
freeze shape-dependent Python code into constants, so every export is checked by running the
ONNX graph on a batch of another, odd size and comparing it with PyTorch.

``onnx`` (graph and metadata) and ``onnxruntime`` (verification and inference) are the optional
extra ``superres[onnx]``; without them the functions here raise an ImportError saying so.
"""

from __future__ import annotations

import copy
import io as _io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from superres.errors import DeviceError
from superres.inference.loop import has_tensors
from superres.inference.plan import as_srmodel, bytes_per_lr_pixel
from superres.models import SRModel, flops_per_output_pixel

__all__ = [
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MIN_OPSET",
    "OnnxModel",
    "OnnxModule",
    "export_onnx",
    "onnx_bytes",
    "onnx_providers",
]

#: Oldest opset written (``DepthToSpace`` CRD mode, ``PRelu`` broadcasting, ``LayerNormalization``).
MIN_OPSET = 17
DEFAULT_OPSET = 17
#: Newest opset torch's TorchScript-based exporter writes (20 in torch 2.13).
MAX_OPSET = int(getattr(torch.onnx._constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))
#: Value of the ``format`` metadata entry of every file written here.
FORMAT = "superres-onnx"
FORMAT_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
#: Largest |ONNX - PyTorch| accepted by the check after export.
VERIFY_ATOL = 1e-3

ONNXRUNTIME_MISSING = "ONNX needs onnxruntime: pip install 'superres[onnx]'"
ONNX_MISSING = "ONNX export needs onnx: pip install 'superres[onnx]'"


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(ONNXRUNTIME_MISSING) from err
    return onnxruntime


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as err:
        raise ImportError(ONNX_MISSING) from err
    return onnx


# --------------------------------------------------------------------------- export


def _model_name(model: SRModel) -> str:
    name = model.metadata.get("name")
    if name:
        return str(name)
    if model.metadata.get("path"):
        return Path(str(model.metadata["path"])).stem
    return model.arch


def _check_exportable(model: SRModel) -> None:
    if isinstance(model, OnnxModel):
        raise ValueError(f"{_model_name(model)} is already an ONNX model")
    if not has_tensors(model):
        raise ValueError(
            f"'{_model_name(model)}' ({model.arch}) is a parameter-free interpolation, not a "
            "trained network: there is nothing to export to ONNX (export a shipped model such "
            "as 'fast' or a .safetensors checkpoint)"
        )


def _probe(model: SRModel, h: int, w: int, batch: int = 1, seed: int = 0) -> Tensor:
    mult = max(1, model.size_multiple)
    h, w = -(-h // mult) * mult, -(-w // mult) * mult
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, model.in_channels, h, w, generator=generator)


def _metadata(model: SRModel, module: nn.Module, opset: int) -> dict[str, str]:
    """The ``metadata_props`` of an exported file: the descriptor the engine needs, and more."""
    from superres import __version__

    cpu_model = SRModel.from_module(module, metadata=model.metadata)
    flops = model.metadata.get("flops_per_output_pixel")
    if flops is None:
        flops = flops_per_output_pixel(cpu_model)
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "name": _model_name(model),
        "arch": model.arch,
        "scale": str(model.scale),
        "superres_version": str(__version__),
        "hparams": json.dumps(model.hparams, sort_keys=True),
        "in_channels": str(model.in_channels),
        "out_channels": str(model.out_channels),
        "tiling": model.tiling,
        "receptive_field": str(model.receptive_field),
        "size_multiple": str(model.size_multiple),
        "num_params": str(model.num_params),
        "flops_per_output_pixel": repr(float(flops)),
        "bytes_per_lr_pixel": repr(float(bytes_per_lr_pixel(cpu_model))),
        "opset": str(opset),
    }
    if model.metadata.get("metrics"):
        meta["metrics"] = json.dumps(model.metadata["metrics"], sort_keys=True, default=str)
    if model.metadata.get("path"):
        meta["source"] = Path(str(model.metadata["path"])).name
    return meta


def onnx_bytes(
    model: SRModel | nn.Module, *, opset: int = DEFAULT_OPSET, verify: bool = True
) -> bytes:
    """Serialise a model to an ONNX graph in memory.

    The graph takes ``lr`` (N x C x H x W float32, nominal range [0, 1]) and returns ``sr``
    (N x C x sH x sW), with N, H and W dynamic. Its ``metadata_props`` hold ``name``,
    ``arch``, ``scale``, ``superres_version``, ``hparams`` (JSON), ``tiling``,
    ``receptive_field``, ``size_multiple``, ``num_params``, ``flops_per_output_pixel``,
    ``bytes_per_lr_pixel`` (the engine's tile-size estimate) and, when known, ``metrics``
    (JSON) and ``source`` (checkpoint file name). The model itself is not changed (a CPU
    float32 copy is traced).

    Args:
        model: A trained model (``SRModel`` or a module built by ``create_model``).
        opset: ONNX opset, :data:`MIN_OPSET` (17) to :data:`MAX_OPSET`.
        verify: Run the graph with onnxruntime on a batch of two images of an odd size
            different from the traced one and compare it with PyTorch.

    Raises:
        ValueError: a parameter-free model (``bicubic``), or an opset outside
            [:data:`MIN_OPSET`, :data:`MAX_OPSET`].
        RuntimeError: the ONNX graph does not reproduce the model (shape-dependent code was
            frozen by tracing, or an operator has no faithful ONNX equivalent).
        ImportError: ``onnx`` (or, with ``verify``, ``onnxruntime``) is not installed.
    """
    model = as_srmodel(model)
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET} (the newest torch's "
            f"TorchScript exporter writes), got {opset!r}"
        )
    _check_exportable(model)
    onnx = _import_onnx()
    if verify:
        _import_onnxruntime()
    module = copy.deepcopy(model.module).to(device="cpu", dtype=torch.float32).eval()
    example = _probe(model, 16, 24)
    buffer = _io.BytesIO()
    axes = {
        INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
        OUTPUT_NAME: {0: "batch", 2: "sr_height", 3: "sr_width"},
    }
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation, and tracer warnings about
        # shape-dependent code are checked by `verify` instead of being printed.
        warnings.simplefilter("ignore")
        try:
            with torch.no_grad():
                torch.onnx.export(
                    module, (example,), buffer, dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
                    do_constant_folding=True,
                )  # fmt: skip
        except Exception as err:  # many types: TypeError, SymbolicValueError, ...
            problem = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
            raise RuntimeError(
                f"{model.arch}: ONNX export failed (opset {opset}): {problem}"
            ) from err
    proto = onnx.load_from_string(buffer.getvalue())
    del proto.metadata_props[:]
    for key, value in _metadata(model, module, opset).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    from superres import __version__

    proto.producer_name, proto.producer_version = "superres", str(__version__)
    proto.doc_string = f"superres {_model_name(model)} ({model.arch}) x{model.scale}"
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    if verify:
        _verify(module, model, data)
    return data


def _verify(module: nn.Module, model: SRModel, data: bytes) -> None:
    """Compare the ONNX graph with PyTorch on a batch of 2 at an odd size not traced."""
    runtime = OnnxModel.load(data, threads=1)
    x = _probe(model, 19, 13, batch=2, seed=1)
    with torch.no_grad():
        expected = module(x)
    try:
        got = runtime.module(x)
    except Exception as err:  # onnxruntime raises its own exception types
        problem = " ".join(str(err).split())[:300]
        raise RuntimeError(
            f"{model.arch}: the exported graph fails on input {tuple(x.shape)} (shape-dependent "
            f"code frozen by tracing?): {problem}"
        ) from err
    if got.shape != expected.shape:
        raise RuntimeError(
            f"{model.arch}: the exported graph returns {tuple(got.shape)} for input "
            f"{tuple(x.shape)}, PyTorch {tuple(expected.shape)} (shape frozen by tracing)"
        )
    diff = float((got - expected).abs().max())
    if not diff <= VERIFY_ATOL:
        raise RuntimeError(
            f"{model.arch}: the exported graph differs from PyTorch by up to {diff:.3g} "
            f"(tolerance {VERIFY_ATOL:g}) on input {tuple(x.shape)}"
        )


def export_onnx(
    model: SRModel | nn.Module,
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    *,
    overwrite: bool = False,
    verify: bool = True,
) -> Path:
    """Export a trained model to an ONNX file (see :func:`onnx_bytes` for its contents).

    The file is written atomically (temporary file, then rename): readers never see a
    partial file, and a failed export leaves nothing behind.

    Args:
        model: A trained model; ``superres.load_model(name, scale=s)`` returns one.
        path: Output file (``.onnx``).
        opset: ONNX opset, 17 to :data:`MAX_OPSET`.
        overwrite: Replace an existing file.
        verify: Check the graph against PyTorch with onnxruntime before writing.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (checked before exporting).
        ValueError, RuntimeError, ImportError: as :func:`onnx_bytes`.
    """
    from superres.core.io import atomic_write_bytes

    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: output exists")
    data = onnx_bytes(model, opset=opset, verify=verify)
    try:
        return atomic_write_bytes(path, data, overwrite=overwrite)
    except FileExistsError:
        raise FileExistsError(f"{path}: output exists") from None


# --------------------------------------------------------------------------- runtime


def onnx_providers(device: str | None = None) -> list[str]:
    """onnxruntime execution providers for a ``--device`` value.

    ``None``/``"auto"``: CUDA when this onnxruntime build has it, else CPU; ``"cpu"``;
    ``"cuda"`` (or ``"cuda:N"``, device 0 is used by onnxruntime's default options).

    Raises:
        ValueError: a device this backend cannot use (``mps``, or CUDA without a CUDA build).
        ImportError: onnxruntime is not installed.
    """
    ort = _import_onnxruntime()
    available = ort.get_available_providers()
    name = "auto" if device is None else str(device).strip().lower() or "auto"
    if name == "auto":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name == "cuda" or name.startswith("cuda:"):
        if "CUDAExecutionProvider" not in available:
            raise DeviceError(
                f"device '{device}' requested but this onnxruntime has no CUDA provider "
                "(install onnxruntime-gpu, or use 'cpu')"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise DeviceError(f"the ONNX backend runs on cpu or cuda, not '{device}'")


class OnnxModule(nn.Module):
    """An onnxruntime session behind the ``nn.Module`` interface the engine calls.

    ``forward`` takes an ``(N, C, h, w)`` float tensor on any device and returns the
    ``(N, C, h * scale, w * scale)`` float32 result on the same device. The descriptor
    attributes (``arch``, ``scale``, ``hparams``, ``tiling``, ``receptive_field``,
    ``size_multiple``) and ``bytes_per_lr_pixel`` (the engine's tile-size estimate, measured
    on the torch model at export) come from the file's metadata. It has no parameters:
    the weights live in the session.
    """

    def __init__(self, session: Any, metadata: dict[str, str]) -> None:
        super().__init__()
        missing = [k for k in ("arch", "scale") if k not in metadata]
        if missing:
            raise ValueError(
                f"not a superres ONNX export (no {', '.join(missing)} in its metadata); "
                "write one with superres export"
            )
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.arch = metadata["arch"]
        self.scale = int(metadata["scale"])
        self.hparams = json.loads(metadata.get("hparams", "{}"))
        self.hparams.setdefault("in_channels", int(metadata.get("in_channels", 3)))
        self.tiling = metadata.get("tiling", "approximate")
        self.receptive_field = int(metadata.get("receptive_field", 0))
        self.size_multiple = int(metadata.get("size_multiple", 1))
        bpp = metadata.get("bytes_per_lr_pixel")
        self.bytes_per_lr_pixel = None if bpp is None else float(bpp)

    def forward(self, x: Tensor) -> Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(out).to(x.device)


_JSON_METADATA = ("hparams", "metrics")


@dataclass(eq=False, repr=False)
class OnnxModel(SRModel):
    """A model run by onnxruntime, usable wherever an :class:`SRModel` is (engine, API).

    Build one with :meth:`load` (an ``.onnx`` file written by :func:`export_onnx`, or its
    bytes) or :meth:`from_model` (export a loaded model in memory). ``module`` is an
    :class:`OnnxModule`; ``metadata`` holds the file's metadata (JSON entries decoded).

    >>> fast = OnnxModel.from_model(superres.load_model("fast", scale=2))  # doctest: +SKIP
    >>> big = superres.upscale(pil_image, fast)                            # doctest: +SKIP
    """

    @classmethod
    def load(
        cls,
        source: str | Path | bytes,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> OnnxModel:
        """Open an exported model in an onnxruntime session.

        Args:
            source: Path of an ``.onnx`` file written by :func:`export_onnx`, or its bytes.
            threads: onnxruntime intra-op threads (None: onnxruntime's default).
            providers: Execution providers (None: CPU); see :func:`onnx_providers`.

        Raises:
            ImportError: onnxruntime is not installed.
            FileNotFoundError: no such file.
            ValueError: not an ONNX file, or one without superres metadata.
        """
        ort = _import_onnxruntime()
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        label = "<memory>"
        if not isinstance(source, (bytes, bytearray)):
            label = str(source)
            if not Path(source).is_file():
                raise FileNotFoundError(f"{source}: no such file")
            source = str(source)
        try:
            session = ort.InferenceSession(
                source, options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as err:  # onnxruntime's own exception types
            problem = " ".join(str(err).split())[:200]
            raise ValueError(f"{label}: not a loadable ONNX model ({problem})") from err
        raw = dict(session.get_modelmeta().custom_metadata_map)
        try:
            module = OnnxModule(session, raw)
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from None
        metadata: dict[str, Any] = {
            k: json.loads(v) if k in _JSON_METADATA else v for k, v in raw.items()
        }
        metadata.pop("hparams", None)
        if label != "<memory>":
            metadata["path"] = label
        return cls.from_module(module, metadata=metadata)

    @classmethod
    def from_model(
        cls,
        model: SRModel | nn.Module,
        *,
        opset: int = DEFAULT_OPSET,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> OnnxModel:
        """Export ``model`` in memory (verified, see :func:`onnx_bytes`) and load it.

        Raises:
            ValueError, RuntimeError, ImportError: as :func:`onnx_bytes`.
        """
        data = onnx_bytes(model, opset=opset, verify=True)
        return cls.load(data, threads=threads, providers=providers)

    @property
    def providers(self) -> list[str]:
        """The execution providers of the session."""
        return list(self.module.session.get_providers())

    @property
    def num_params(self) -> int:
        """Number of parameters of the exported network (from the file's metadata)."""
        return int(self.metadata.get("num_params", 0))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Return ``self``: the session's providers decide where it runs (inputs and outputs
        follow the caller's tensors); only float32 is supported.

        Raises:
            ValueError: a dtype other than float32.
        """
        if dtype is not None and dtype != torch.float32:
            raise ValueError(f"ONNX models run in float32, not {dtype}")
        return self

    def __repr__(self) -> str:
        return (
            f"OnnxModel({self.metadata.get('name', self.arch)}: {self.arch} x{self.scale}, "
            f"{self.num_params:,} params, providers={self.providers})"
        )
