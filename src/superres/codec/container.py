"""The ``.srz`` container: a 29-byte header, optional ICC and EXIF, the codec payload, and
(version 2) a CRC-32 of the whole file.

``unpack`` trusts nothing: every field is checked, every length is checked against the bytes
actually present before anything is sliced, the checksums are verified before any byte
reaches a decoder, and every failure is one :class:`ContainerError` with a one-line message.

Versions: 2 (written since the whole-file checksum) ends in a CRC-32 of every byte before it,
so any damage to the header, the ICC/EXIF sections or the payload is refused (every single-bit
flip and every burst of up to 32 bits, by the CRC's construction; other damage with
probability 1 - 2^-32). Version 1 files (header CRC only) are still read.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib

from superres.codec import models
from superres.codec.base import ContainerError, get_codec
from superres.core import io

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "TRAILER_SIZE",
    "VERSION",
    "VERSIONS",
    "ContainerError",
    "Header",
    "pack",
    "unpack",
]

MAGIC = b"SRZ"
#: The version :func:`pack` writes.
VERSION = 2
#: The versions :func:`unpack` reads (1: header CRC only; 2: plus a whole-file CRC-32).
VERSIONS = (1, 2)
SCALES = (1, 2, 3, 4)
FLAG_ICC = 0x01
FLAG_EXIF = 0x02
_FIELDS = struct.Struct(">3sBIIBBBB4sBI")  # everything the CRC covers
_CRC = struct.Struct(">I")
_LENGTH = struct.Struct(">I")
HEADER_SIZE = _FIELDS.size + _CRC.size  # 29
#: Bytes after the payload in a version 2 file: the CRC-32 of everything before them.
TRAILER_SIZE = _CRC.size
_U32 = 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class Header:
    """What the ``.srz`` header says about the image (flags and lengths are derived).

    Byte layout (big-endian; ``pack`` writes it, ``unpack`` checks it)::

        offset size field
             0    3 magic b"SRZ"
             3    1 format version (2; 1 is still read)
             4    4 original width  (u32)
             8    4 original height (u32)
            12    1 channels: 1 grey, 3 RGB
            13    1 scale: 1 (plain codec), 2, 3 or 4
            14    1 codec id: 1 jpeg, 2 webp, 3 avif
            15    1 model id (see superres.codec.models; 0 = none / Lanczos)
            16    4 model hash: first 4 bytes of the SHA-256 of the weights (0 for id 0)
            20    1 flags: bit 0 ICC section present, bit 1 EXIF section present
            21    4 payload length (u32)
            25    4 CRC-32 of bytes 0..24
            29      [u32 length + ICC profile]  if flag bit 0
                    [u32 length + EXIF]         if flag bit 1
                    payload
                  4 CRC-32 of every byte before it (version 2 only; the file
                    ends here, so in version 1 the payload runs to the end)

    The payload is the image downscaled to ``lr_size`` and encoded by the codec.

    Attributes:
        width: Original width in pixels.
        height: Original height in pixels.
        channels: 1 (grey) or 3 (RGB).
        scale: Downscaling factor of the stored image.
        codec_id: Codec of the payload (:func:`superres.codec.get_codec`).
        model_id: Restoration model (:data:`superres.codec.models.MODELS`).
        model_hash: 4 bytes identifying the model's weights.
    """

    width: int
    height: int
    channels: int
    scale: int
    codec_id: int
    model_id: int = 0
    model_hash: bytes = bytes(4)

    @property
    def lr_size(self) -> tuple[int, int]:
        """``(height, width)`` of the stored image: ``ceil(H / scale) x ceil(W / scale)``."""
        return math.ceil(self.height / self.scale), math.ceil(self.width / self.scale)

    @property
    def codec(self) -> str:
        """Name of the payload's codec."""
        return get_codec(self.codec_id).name

    @property
    def model(self) -> str:
        """Name of the restoration model."""
        return models.model_name(self.model_id)


def _check(header: Header, max_pixels: int | None) -> None:
    """Raise ContainerError if ``header`` describes something this version cannot hold."""
    w, h = header.width, header.height
    if not (1 <= w <= _U32 and 1 <= h <= _U32):
        raise ContainerError(f"invalid image size {w}x{h}")
    limit = io.max_pixels() if max_pixels is None else max_pixels
    if w * h > limit:
        raise ContainerError(
            f"image is {w}x{h} = {w * h} pixels, over the limit of {limit} "
            "(set SUPERRES_MAX_PIXELS to raise it)"
        )
    if header.channels not in (1, 3):
        raise ContainerError(f"invalid channel count {header.channels} (expected 1 or 3)")
    if header.scale not in SCALES:
        raise ContainerError(f"invalid scale {header.scale} (expected one of 1, 2, 3, 4)")
    get_codec(header.codec_id)  # ContainerError for an unknown id
    models.model_name(header.model_id)  # ContainerError for an unknown id
    if not isinstance(header.model_hash, bytes) or len(header.model_hash) != 4:
        raise ContainerError("model hash must be 4 bytes")
    if header.model_id == 0 and header.model_hash != bytes(4):
        raise ContainerError("model id 0 (no model) with a non-zero model hash")
    if header.scale == 1 and header.model_id != 0:
        raise ContainerError(f"scale 1 with model id {header.model_id} (scale 1 has no model)")


def pack(
    header: Header,
    payload: bytes,
    icc: bytes | None = None,
    exif: bytes | None = None,
    *,
    version: int = VERSION,
) -> bytes:
    """The ``.srz`` bytes of ``header``, optional ICC profile and EXIF, and ``payload``.

    Empty ``icc``/``exif`` are left out like None.

    Args:
        version: Format version to write: :data:`VERSION` (with the whole-file CRC-32), or 1
            for readers that predate it (no protection of metadata and payload).

    Raises:
        ContainerError: the header is invalid, the payload is empty or over 4 GiB, or the
            version is not one of :data:`VERSIONS`.
    """
    if version not in VERSIONS or isinstance(version, bool):
        raise ContainerError(f"cannot write .srz version {version!r} (known: {VERSIONS})")
    _check(header, max_pixels=_U32 * _U32)  # the reader's pixel limit is its own business
    if not payload or len(payload) > _U32:
        raise ContainerError(f"payload of {len(payload)} bytes (expected 1 to {_U32})")
    flags, sections = 0, b""
    for flag, section in ((FLAG_ICC, icc), (FLAG_EXIF, exif)):
        if section:
            if len(section) > _U32:
                raise ContainerError(f"metadata section of {len(section)} bytes is too large")
            flags |= flag
            sections += _LENGTH.pack(len(section)) + section
    fields = _FIELDS.pack(
        MAGIC,
        version,
        header.width,
        header.height,
        header.channels,
        header.scale,
        header.codec_id,
        header.model_id,
        header.model_hash,
        flags,
        len(payload),
    )
    data = fields + _CRC.pack(zlib.crc32(fields)) + sections + bytes(payload)
    if version >= 2:
        data += _CRC.pack(zlib.crc32(data))
    return data


def unpack(
    data: bytes, *, max_pixels: int | None = None
) -> tuple[Header, bytes, bytes | None, bytes | None]:
    """Parse and validate ``.srz`` bytes (any of :data:`VERSIONS`).

    The checks run from the cheapest and most specific to the whole-file checksum: magic,
    version, header CRC, fields, section and payload lengths, then (version 2) the CRC-32
    of the whole file, so that a truncated file says so and damage anywhere else is a
    checksum mismatch. Nothing is returned, so nothing is decoded, unless all of them pass.

    Args:
        data: The whole file.
        max_pixels: Largest accepted width x height (None: :func:`superres.core.io.max_pixels`).

    Returns:
        ``(header, payload, icc, exif)``; ``icc``/``exif`` are None when absent.

    Raises:
        ContainerError: truncated data, bad magic, version or checksum, an invalid or
            unknown field, reserved flag bits, or lengths that do not add up to the file size.
    """
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        if not MAGIC.startswith(data[:3]):
            raise ContainerError("not an .srz file (bad magic)")
        raise ContainerError(f"truncated header ({len(data)} of {HEADER_SIZE} bytes)")
    fields = data[: _FIELDS.size]
    magic, version, w, h, channels, scale, codec_id, model_id, model_hash, flags, length = (
        _FIELDS.unpack(fields)
    )
    if magic != MAGIC:
        raise ContainerError("not an .srz file (bad magic)")
    if version not in VERSIONS:
        known = ", ".join(map(str, VERSIONS))
        raise ContainerError(f"unsupported .srz version {version} (this reader knows {known})")
    (crc,) = _CRC.unpack_from(data, _FIELDS.size)
    if crc != zlib.crc32(fields):
        raise ContainerError("header checksum mismatch (corrupt file)")
    if flags & ~(FLAG_ICC | FLAG_EXIF):
        raise ContainerError(f"unknown flag bits 0x{flags:02x}")
    header = Header(w, h, channels, scale, codec_id, model_id, model_hash)
    _check(header, max_pixels)
    trailer = TRAILER_SIZE if version >= 2 else 0
    end = len(data) - trailer  # where the payload must end
    offset = HEADER_SIZE
    sections: list[bytes | None] = []
    for flag, what in ((FLAG_ICC, "ICC"), (FLAG_EXIF, "EXIF")):
        if not flags & flag:
            sections.append(None)
            continue
        if end - offset < _LENGTH.size:
            raise ContainerError(f"truncated {what} section length")
        (size,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if size == 0:
            raise ContainerError(f"empty {what} section")
        if size > end - offset:
            raise ContainerError(
                f"{what} section of {size} bytes runs past the end of the file "
                f"({max(0, end - offset)} bytes left)"
            )
        sections.append(data[offset : offset + size])
        offset += size
    left = end - offset
    if length == 0:
        raise ContainerError("empty payload")
    if length > left:
        raise ContainerError(f"truncated payload ({max(0, left)} of {length} bytes)")
    if length < left:
        raise ContainerError(f"{left - length} trailing bytes after the payload")
    if trailer:
        (stored,) = _CRC.unpack_from(data, end)
        actual = zlib.crc32(memoryview(data)[:end])
        if stored != actual:
            raise ContainerError(
                f"file checksum mismatch (corrupt file: CRC-32 {actual:08x}, stored {stored:08x})"
            )
    return header, data[offset:end], sections[0], sections[1]
