"""Which model restores an ``.srz`` image: the model-id table and the weights hash.

======  ============  ==========================================================
id      name          restoration of the decoded LR image
======  ============  ==========================================================
0       ``lanczos``   Pillow Lanczos upscale; at scale 1, no restoration at all
1       ``bicubic``   the project's MATLAB-bicubic pseudo-model
2       ``fast``      shipped fast SR tier (``superres.load_model("fast", scale=s)``)
3       ``quality``   shipped quality SR tier
4       ``codec``     shipped codec-aware tier, trained on decoded LR (``codec_x2``...)
======  ============  ==========================================================

The header also stores 4 bytes of the model's weights hash (:func:`model_hash`), so that a
file is never restored by different weights than those it was encoded for. Id 0 needs no
weights and stores a zero hash; the parameter-free ``bicubic`` stores a fixed hash of its name.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from typing import TYPE_CHECKING

from superres.codec.base import ContainerError
from superres.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from superres.models import SRModel

__all__ = ["LANCZOS", "MODELS", "load_restorer", "model_hash", "model_id", "model_name"]

MODELS: dict[int, str] = {
    0: "lanczos",
    1: "bicubic",
    2: "fast",
    3: "quality",
    4: "codec",
}
LANCZOS = 0
_IDS = {name: i for i, name in MODELS.items()}


def model_id(name_or_id: str | int) -> int:
    """The id of a restoration model given by name or id.

    Raises:
        ConfigError: not in :data:`MODELS` (a ``ValueError``).
    """
    found = _IDS.get(name_or_id) if isinstance(name_or_id, str) else name_or_id
    if found not in MODELS or isinstance(found, bool):
        known = ", ".join(MODELS.values())
        raise ConfigError(f"unknown restoration model {name_or_id!r} (use one of {known})")
    return int(found)


def model_name(model_id: int) -> str:
    """The name of a model id read from a file.

    Raises:
        ContainerError: unknown id.
    """
    name = MODELS.get(model_id)
    if name is None:
        known = ", ".join(f"{i} {n}" for i, n in MODELS.items())
        raise ContainerError(
            f"file was compressed with model id {model_id}, which this installation does not "
            f"know (known: {known})"
        )
    return name


def model_hash(model: SRModel | nn.Module) -> bytes:
    """First 4 bytes of the SHA-256 of a model's weights.

    The hash runs over the ``state_dict`` tensors in sorted key order, each as its raw
    little-endian bytes (keys, shapes and dtypes are not hashed). A model without tensors
    (``bicubic``) hashes its architecture name instead.
    """
    import torch

    from superres.models import SRModel

    module = model.module if isinstance(model, SRModel) else model
    state = module.state_dict()
    if not state:
        name = model.arch if isinstance(model, SRModel) else getattr(module, "arch", "")
        return hashlib.sha256(str(name or type(module).__name__).encode()).digest()[:4]
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous().reshape(-1)
        raw = tensor.view(torch.uint8).numpy()
        if sys.byteorder == "big" and tensor.element_size() > 1:  # pragma: no cover
            raw = raw.reshape(-1, tensor.element_size())[:, ::-1]
        digest.update(raw.tobytes())
    return digest.digest()[:4]


_RESTORERS: dict[tuple, tuple[SRModel, bytes]] = {}
_RESTORERS_LOCK = threading.Lock()


def _cached(ident: int, scale: int, dev: torch.device | None) -> tuple[SRModel, bytes]:
    """``(model, hash)`` of a restorer, loaded once per (model, scale, device)."""
    from superres.weights import zoo

    key = (ident, scale, None if dev is None else str(dev))
    with _RESTORERS_LOCK:
        if key not in _RESTORERS:
            net = zoo.resolve(MODELS[ident], scale)
            digest = model_hash(net)
            _RESTORERS[key] = (net if dev is None else net.to(dev)), digest
        return _RESTORERS[key]


def load_restorer(
    model: str | int,
    scale: int,
    *,
    expected_hash: bytes | None = None,
    device: str | torch.device | None = None,
) -> tuple[SRModel | None, bytes]:
    """Load the restoration model of a file (or about to be written to one).

    Weights come from :func:`superres.weights.zoo.resolve` (the shipped models and the
    parameter-free ``bicubic``) and are loaded once per process, model and device: the model
    returned is shared by every call (inference never modifies it), so a long-lived process
    decoding many files does not reload weights. Do not train or move it.

    Args:
        model: Name or id from :data:`MODELS`.
        scale: The file's scale.
        expected_hash: The hash stored in a file being decoded: the installed model must
            match it. None when encoding.
        device: Torch device to move a network to (None: where it loads, the CPU).

    Returns:
        ``(model, hash)``: the loaded :class:`~superres.models.SRModel` (None for id 0,
        Lanczos or no restoration) and the 4-byte hash to store in the header.

    Raises:
        ConfigError: (encoding) an unknown name, or no weights for ``scale`` in this
            installation.
        ContainerError: (decoding) the model is missing or its hash differs.
        DeviceError: ``device`` is unknown or not available.
    """
    ident = model_id(model)
    name = MODELS[ident]
    if ident == LANCZOS:
        net, digest = None, bytes(4)
    else:
        from superres.inference import engine

        dev = None if device is None else engine.select_device(device)  # DeviceError
        try:
            net, digest = _cached(ident, scale, dev)
        except ValueError as err:
            if expected_hash is None:
                raise ConfigError(f"restoration model {name!r} x{scale}: {err}") from None
            raise ContainerError(
                f"file was compressed with model {name!r} x{scale} (hash "
                f"{expected_hash.hex()}), this installation has no such weights ({err})"
            ) from None
    if expected_hash is not None and digest != expected_hash:
        raise ContainerError(
            f"file was compressed with model {name!r} x{scale} (hash {expected_hash.hex()}), "
            f"this installation has {name!r} x{scale} with hash {digest.hex()}"
        )
    return net, digest
