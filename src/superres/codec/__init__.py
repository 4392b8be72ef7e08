"""SR-assisted compression: a standard codec stores a downscaled image, SR restores it.

>>> from superres import codec
>>> data = codec.compress(image, codec="webp", target_bpp=0.5, scale=2)   # doctest: +SKIP
>>> restored = codec.decompress(data)                                    # doctest: +SKIP

Modules: :mod:`~superres.codec.base` (the :class:`Codec` interface and registry),
:mod:`~superres.codec.pillow_codecs` (JPEG, WebP, AVIF), :mod:`~superres.codec.container`
(the ``.srz`` format), :mod:`~superres.codec.models` (restoration-model ids and hashes),
:mod:`~superres.codec.api` (compress/decompress).
"""

from __future__ import annotations

from superres.codec.api import (
    AUTO_SCALES,
    Compressed,
    TargetBitrateWarning,
    compress,
    compress_detailed,
    compress_file,
    decompress,
    decompress_file,
)
from superres.codec.base import Codec, ContainerError, get_codec, list_codecs, register_codec
from superres.codec.container import Header, pack, unpack
from superres.codec.models import MODELS, model_hash

__all__ = [
    "AUTO_SCALES",
    "MODELS",
    "Codec",
    "Compressed",
    "ContainerError",
    "Header",
    "TargetBitrateWarning",
    "compress",
    "compress_detailed",
    "compress_file",
    "decompress",
    "decompress_file",
    "get_codec",
    "list_codecs",
    "model_hash",
    "pack",
    "register_codec",
    "unpack",
]
