"""SR-assisted compression: a standard codec stores a downscaled image, SR restores it.

>>> from superres import codec
>>> data = codec.compress(image, codec="webp", target_bpp=0.5, scale=2)   # doctest: +SKIP
>>> restored = codec.decompress(data)                                    # doctest: +SKIP

Modules: :mod:`~superres.codec.base` (the :class:`Codec` interface and registry),
:mod:`~superres.codec.pillow_codecs` (JPEG, WebP, AVIF), :mod:`~superres.codec.container`
(the ``.srz`` format and its sections), :mod:`~superres.codec.roi` (the region-of-interest
mask and enhancement layer), :mod:`~superres.codec.models` (restoration-model ids and hashes),
:mod:`~superres.codec.api` (compress/decompress in memory), :mod:`~superres.codec.pipeline`
(the steps they and rd share), :mod:`~superres.codec.files` (``.srz`` and image files),
:mod:`~superres.codec.rd` (rate-distortion curves and BD-rate).

Layering: this package uses core, models, weights and inference, never training,
evaluation, the top-level API or the apps.
"""

from __future__ import annotations

from superres.codec.api import (
    ADAPT_STEPS,
    AUTO_SCALES,
    ROI_WEIGHT,
    Compressed,
    TargetBitrateError,
    TargetBitrateWarning,
    compress,
    compress_detailed,
    decompress,
    prepare,
)
from superres.codec.base import Codec, ContainerError, get_codec, list_codecs, register_codec
from superres.codec.container import Contents, Header, Section, pack, parse, unpack
from superres.codec.files import check_output, compress_file, decompress_file
from superres.codec.models import MODELS, model_hash
from superres.codec.pipeline import (
    Restorer,
    adapt_lr,
    choose_restorer,
    decode_contents,
    decode_pixels,
    downscale,
    restore,
)

__all__ = [
    "AUTO_SCALES",
    "ADAPT_STEPS",
    "ROI_WEIGHT",
    "MODELS",
    "Codec",
    "Compressed",
    "ContainerError",
    "Contents",
    "Header",
    "Restorer",
    "Section",
    "TargetBitrateError",
    "TargetBitrateWarning",
    "adapt_lr",
    "check_output",
    "choose_restorer",
    "compress",
    "compress_detailed",
    "compress_file",
    "decode_contents",
    "decode_pixels",
    "decompress",
    "decompress_file",
    "downscale",
    "get_codec",
    "list_codecs",
    "model_hash",
    "pack",
    "parse",
    "prepare",
    "register_codec",
    "restore",
    "unpack",
]
