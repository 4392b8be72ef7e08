"""What a network's attention gates do on an image, as numbers and as a picture.

Data flow::

    image --(one forward pass, forward hooks on the gate-producing layers)--> gates
          (spatial: the per-pixel gate averaged over channels, h x w at LR size;
           channel: the C weights of squeeze-and-excitation)
          --render--> input + one panel per block, labelled (Pillow)

The model's code is not touched: hooks read the layer that produces each gate (the
``expand`` 1x1 convolution before the sigmoid of LAFN's :class:`LocalSpatialAttention`,
the ``conv`` of CBAM's :class:`SpatialAttention`, the sigmoid that ends RCAN's
:class:`ChannelAttention`) and the sigmoid is applied to the copy. Gates are in [0, 1]:
1 lets a feature through, 0 suppresses it. A model without such layers is refused.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from torch import nn

from superres.core.resize import imresize
from superres.errors import ConfigError
from superres.models.descriptor import SRModel
from superres.models.lafn import LocalSpatialAttention
from superres.models.layers import ChannelAttention, SpatialAttention

__all__ = [
    "COLOUR_MAP",
    "Gate",
    "attention_layers",
    "capture_gates",
    "colourise",
    "explain",
    "render_gates",
    "require_attention",
]

#: For each attention class: (the submodule whose output is the gate, whether a sigmoid
#: still has to be applied to it, the kind of gate).
_GATE_SOURCES: dict[type[nn.Module], tuple[str, bool, str]] = {
    LocalSpatialAttention: ("expand", True, "spatial"),
    SpatialAttention: ("conv", True, "spatial"),
    ChannelAttention: ("excite", False, "channel"),
}

#: Anchors of the colour map (dark blue -> purple -> orange -> pale yellow, like magma),
#: interpolated linearly; matplotlib is not needed.
COLOUR_MAP: tuple[tuple[int, int, int], ...] = (
    (0, 0, 4),
    (40, 11, 84),
    (101, 21, 110),
    (159, 42, 99),
    (212, 72, 66),
    (245, 125, 21),
    (250, 193, 39),
    (252, 255, 164),
)

BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)


@dataclasses.dataclass(frozen=True, eq=False)
class Gate:
    """One attention layer's gate on one image.

    Attributes:
        name: ``"block 3"`` (forward order, from 1).
        kind: ``"spatial"`` (``values`` is ``h x w``: the gate averaged over channels, at
            the network input's size) or ``"channel"`` (``values`` is ``(C,)``).
        values: float32 in [0, 1].
        layer: Qualified name of the attention module in the network
            (``"blocks.2.attention"``).
    """

    name: str
    kind: str
    values: np.ndarray
    layer: str


def attention_layers(model: SRModel | nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every attention layer whose gate can be shown."""
    module = model.module if isinstance(model, SRModel) else model
    return [(name, m) for name, m in module.named_modules() if type(m) in _GATE_SOURCES]


def require_attention(model: SRModel) -> list[tuple[str, nn.Module]]:
    """:func:`attention_layers`, or a one-line :class:`ConfigError` when there are none."""
    layers = attention_layers(model)
    if not layers:
        raise ConfigError(
            f"{_model_name(model)}: the model ({model.arch}) has no attention layers to show"
        )
    return layers


def _model_name(model: SRModel) -> str:
    return str(model.metadata.get("name") or model.arch)


def _to_tensor(image: np.ndarray, channels: int) -> torch.Tensor:
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3) or 0 in a.shape:
        raise ConfigError(f"expected an image H x W x 1 or H x W x 3, got shape {a.shape}")
    if a.dtype == np.uint8:
        x = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        x = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        x = np.clip(a.astype(np.float32), 0.0, 1.0)
    else:
        raise ConfigError(f"expected a uint8, uint16 or float image, got {a.dtype}")
    if x.shape[2] != channels:
        if x.shape[2] == 1 and channels == 3:
            x = np.repeat(x, 3, axis=2)
        else:
            raise ConfigError(f"the model takes {channels} channels, the image has {x.shape[2]}")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def capture_gates(model: SRModel, image: np.ndarray) -> list[Gate]:
    """Run ``model`` once on ``image`` and return the gate of every attention layer.

    Args:
        model: A loaded model (its weights stay where they are; nothing is changed).
        image: The network input ``H x W x C`` (uint8, uint16, or float in [0, 1]; a grey
            image is repeated to RGB for an RGB model).

    Returns:
        The gates in the order the layers ran.

    Raises:
        ConfigError: a model without attention layers, or an image it cannot take.
    """
    layers = require_attention(model)
    x = _to_tensor(image, model.in_channels)
    found: list[Gate] = []
    handles = []

    def hook_for(layer: str, sigmoid: bool, kind: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            g = output.detach().float()
            if sigmoid:
                g = torch.sigmoid(g)
            values = g[0].mean(dim=0) if kind == "spatial" else g[0].reshape(-1)
            found.append(Gate(f"block {len(found) + 1}", kind, values.cpu().numpy(), layer))

        return hook

    try:
        for name, module in layers:
            part, sigmoid, kind = _GATE_SOURCES[type(module)]
            hook = hook_for(name, sigmoid, kind)
            handles.append(getattr(module, part).register_forward_hook(hook))
        with torch.inference_mode():
            model.module(x.to(device=model.device, dtype=model.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return found


# --------------------------------------------------------------------------- pictures


def colourise(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` mapped through :data:`COLOUR_MAP` (``lo`` dark, ``hi`` bright) as uint8
    RGB of shape ``values.shape + (3,)``."""
    span = hi - lo if hi > lo else 1.0
    t = np.clip((np.asarray(values, np.float32) - lo) / span, 0.0, 1.0)
    anchors = np.asarray(COLOUR_MAP, np.float32)
    pos = t * (len(anchors) - 1)
    i = np.minimum(pos.astype(np.int64), len(anchors) - 2)
    f = (pos - i)[..., None]
    rgb = (1.0 - f) * anchors[i] + f * anchors[i + 1]
    return (rgb + 0.5).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _rgb8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    a = a[:, :, None] if a.ndim == 2 else a
    if a.dtype == np.uint16:
        a = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.repeat(a[:, :, :1], 3, axis=2) if a.shape[2] < 3 else a[:, :, :3]


def _fit(array: np.ndarray, height: int, width: int, smooth: bool) -> PILImage.Image:
    im = PILImage.fromarray(array)
    method = PILImage.Resampling.LANCZOS if smooth else PILImage.Resampling.NEAREST
    return im.resize((width, height), method)


def _spatial_panel(gate: Gate, height: int, width: int) -> tuple[PILImage.Image, str]:
    v = gate.values
    lo, hi = (float(q) for q in np.quantile(v, (0.01, 0.99)))
    if hi - lo < 1e-6:
        lo, hi = float(v.min()), float(v.max()) + 1e-6
    label = f"{gate.name}: mean {float(v.mean()):.2f}, shown {lo:.2f}-{hi:.2f}"
    return _fit(colourise(v, lo, hi), height, width, smooth=True), label


def _channel_panel(gates: list[Gate], height: int, width: int) -> PILImage.Image:
    """One strip per block: a bar per channel, its height and colour the weight."""
    panel = np.zeros((height, width, 3), np.uint8)
    panel[:] = BACKGROUND
    rows = len(gates)
    strip = height / rows
    for r, gate in enumerate(gates):
        top, bottom = round(r * strip), round((r + 1) * strip)
        inner = max(1, bottom - top - (1 if strip >= 4 else 0))
        v = gate.values
        cols = np.minimum((np.arange(width) * len(v) / width).astype(np.int64), len(v) - 1)
        colours = colourise(v[cols], 0.0, 1.0)
        if strip >= 6:  # bars
            heights = np.round(v[cols] * inner).astype(np.int64)
            ys = np.arange(inner)[:, None]
            on = ys >= inner - heights[None, :]
            block = np.where(on[..., None], colours[None], np.asarray(BACKGROUND, np.uint8))
        else:  # too many blocks for bars: a heat-map row
            block = np.repeat(colours[None], inner, axis=0)
        panel[top : top + inner] = block
    return PILImage.fromarray(panel)


def render_gates(
    image: np.ndarray,
    gates: list[Gate],
    *,
    title: str = "",
    panel: int = 256,
    columns: int = 4,
) -> np.ndarray:
    """Compose the input and one panel per spatial gate (plus one panel of channel-weight
    strips, one strip per block) into one labelled picture.

    Args:
        image: The network input the gates were captured on.
        gates: From :func:`capture_gates`.
        title: Text at the top (the model, say); lines split at newlines.
        panel: Long side of each panel in pixels.
        columns: Panels per row.

    Returns:
        ``H x W x 3`` uint8.
    """
    rgb = _rgb8(image)
    h, w = rgb.shape[:2]
    f = panel / max(h, w)
    ph, pw = max(1, round(h * f)), max(1, round(w * f))
    tiles: list[tuple[PILImage.Image, str]] = [(_fit(rgb, ph, pw, smooth=True), "input")]
    for gate in gates:
        if gate.kind == "spatial":
            tiles.append(_spatial_panel(gate, ph, pw))
    channel = [g for g in gates if g.kind == "channel"]
    if channel:
        c = len(channel[0].values)
        label = f"channel weights: {len(channel)} blocks x {c} channels"
        tiles.append((_channel_panel(channel, ph, pw), label))
    font_size = max(10, round(panel / 18))
    font = _font(font_size)
    label_h = font_size + 8
    gap = 6
    cols = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    lines = title.split("\n") if title else []
    title_h = len(lines) * label_h + 4 if lines else 0
    width = cols * pw + (cols + 1) * gap
    height = title_h + rows * (ph + label_h) + (rows + 1) * gap
    canvas = PILImage.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((gap, gap + i * label_h), line, fill=TEXT, font=font)
    for k, (tile, label) in enumerate(tiles):
        r, c = divmod(k, cols)
        x = gap + c * (pw + gap)
        y = title_h + gap + r * (ph + label_h + gap)
        draw.text((x, y + 2), label, fill=TEXT, font=font)
        canvas.paste(tile, (x, y + label_h))
    return np.asarray(canvas)


def explain(
    image: np.ndarray,
    model: SRModel,
    *,
    max_side: int = 1024,
    title: str | None = None,
    panel: int = 256,
    columns: int = 4,
) -> tuple[np.ndarray, list[Gate]]:
    """The picture of ``model``'s attention on ``image`` and the gates behind it.

    An input longer than ``max_side`` is first reduced (the package's resampler) so that
    one forward pass stays small; the gates then belong to the reduced image. ``title``
    (default: the model and what the panels show), ``panel`` and ``columns`` are passed to
    :func:`render_gates`.

    Returns:
        ``(picture H x W x 3 uint8, gates)``.

    Raises:
        ConfigError: a model without attention layers, a bad image, a bad ``max_side``.
    """
    if max_side < 16:
        raise ConfigError(f"max_side must be at least 16, got {max_side}")
    require_attention(model)
    rgb = np.asarray(image)
    h, w = rgb.shape[:2]
    if max(h, w) > max_side:
        x = _to_tensor(rgb, model.in_channels)[0]
        f = max_side / max(h, w)
        size = (max(1, round(h * f)), max(1, round(w * f)))
        rgb = imresize(x, size=size).clamp(0, 1).permute(1, 2, 0).numpy()
    gates = capture_gates(model, rgb)
    if title is None:
        title = f"{_model_name(model)} x{model.scale} ({model.arch}): attention gates"
        if any(g.kind == "spatial" for g in gates):
            title += (
                "\nspatial gates: mean over channels, dark = suppressed, bright = passed, "
                "each panel stretched to its 1-99 % range"
            )
    return render_gates(rgb, gates, title=title, panel=panel, columns=columns), gates
