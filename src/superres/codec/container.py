"""The ``.srz`` container: a fixed header, a table of typed sections (version 3), their
bodies, and a CRC-32 of the whole file.

``parse`` (and ``unpack``, its base-layer view) trusts nothing: every field is checked, every
length is checked against the bytes actually present before anything is sliced, the
checksums are verified before any byte reaches a decoder, and every failure is one
:class:`ContainerError` with a one-line message.

Versions: 3 (written since the section table) stores the codec payload, ICC profile, EXIF
and any later addition (a region-of-interest mask, an enhancement layer, ...) as typed
sections, so that a new section type needs no new version: a reader skips the optional
sections it does not know and refuses a file with a required one. 2 (the whole-file
checksum) and 1 (header CRC only) had a fixed layout and are still read. Versions 2 and 3
end in a CRC-32 of every byte before it, so any damage is refused (every single-bit flip
and every burst of up to 32 bits, by the CRC's construction; other damage with probability
1 - 2^-32).
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Iterable

from superres.codec import models
from superres.codec.base import ContainerError, get_codec
from superres.core import io

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "SECTION_BASE",
    "SECTION_ENHANCEMENT",
    "SECTION_EXIF",
    "SECTION_FLAG_REQUIRED",
    "SECTION_ICC",
    "SECTION_NAMES",
    "SECTION_ROI_MASK",
    "TRAILER_SIZE",
    "V3_HEADER_SIZE",
    "VERSION",
    "VERSIONS",
    "Contents",
    "ContainerError",
    "Header",
    "Section",
    "pack",
    "parse",
    "unpack",
]

MAGIC = b"SRZ"
#: The version :func:`pack` writes.
VERSION = 3
#: The versions :func:`parse` reads (1: header CRC only; 2: plus a whole-file CRC-32;
#: 3: plus the section table).
VERSIONS = (1, 2, 3)
SCALES = (1, 2, 3, 4)

#: Section types of version 3 (part of the format: never renumber, only append).
SECTION_BASE = 1  #: the codec payload of the (downscaled) image; required, exactly one
SECTION_ICC = 2  #: ICC profile
SECTION_EXIF = 3  #: EXIF
SECTION_ROI_MASK = 4  #: region-of-interest mask (superres.codec.roi)
SECTION_ENHANCEMENT = 5  #: residual over the region of interest (superres.codec.roi)
SECTION_NAMES = {
    SECTION_BASE: "base layer",
    SECTION_ICC: "ICC",
    SECTION_EXIF: "EXIF",
    SECTION_ROI_MASK: "ROI mask",
    SECTION_ENHANCEMENT: "enhancement layer",
}
#: Section flag bit 0: a reader that does not know the section's type must refuse the file
#: (clear: it may skip the section). Bits 1 to 7 are reserved (0).
SECTION_FLAG_REQUIRED = 0x01

# Versions 1 and 2: a 29-byte header, optional ICC and EXIF, the payload.
FLAG_ICC = 0x01
FLAG_EXIF = 0x02
_FIELDS = struct.Struct(">3sBIIBBBB4sBI")  # everything the CRC covers
_CRC = struct.Struct(">I")
_LENGTH = struct.Struct(">I")
HEADER_SIZE = _FIELDS.size + _CRC.size  # 29 (versions 1 and 2)
#: Bytes after the payload in a version 2 or 3 file: the CRC-32 of everything before them.
TRAILER_SIZE = _CRC.size
# Version 3: the fixed header, the section table, the CRC-32 of both.
_V3_FIELDS = struct.Struct(">3sBIIBBBB4sH")
_ENTRY = struct.Struct(">HBI")  # section type, flags, body length
#: Bytes of a version 3 file before its section table (the table's CRC-32 follows it).
V3_HEADER_SIZE = _V3_FIELDS.size  # 22
_U32 = 0xFFFFFFFF
_MAX_SECTIONS = 0xFFFF


@dataclasses.dataclass(frozen=True)
class Header:
    """What the ``.srz`` header says about the image.

    Version 3 byte layout (big-endian; ``pack`` writes it, ``parse`` checks it)::

        offset size field
             0    3 magic b"SRZ"
             3    1 format version (3; 1 and 2 are still read)
             4    4 original width  (u32)
             8    4 original height (u32)
            12    1 channels: 1 grey, 3 RGB
            13    1 scale: 1 (plain codec), 2, 3 or 4
            14    1 codec id: 1 jpeg, 2 webp, 3 avif
            15    1 model id (see superres.codec.models; 0 = none / Lanczos)
            16    4 model hash: first 4 bytes of the SHA-256 of the weights (0 for id 0)
            20    2 section count n (u16, at least 1)
            22   7n section table, one entry per section:
                    u16 type (SECTION_*), u8 flags (bit 0: required), u32 body length
        22 + 7n   4 CRC-32 of bytes 0 .. 21 + 7n
                    the section bodies, in table order
                  4 CRC-32 of every byte before it

    Section types: 1 base layer (the image downscaled to ``lr_size`` and encoded by the
    codec; required, exactly once), 2 ICC profile, 3 EXIF, 4 ROI mask and 5 enhancement
    layer (:mod:`superres.codec.roi`; both or neither). A known type appears at most once
    and is never empty. A reader skips a section of an unknown type unless its required
    bit is set, and refuses the file if it is.

    Versions 1 and 2: the same first 20 bytes, then u8 flags (bit 0 ICC present, bit 1 EXIF
    present), u32 payload length, a CRC-32 of bytes 0..24, [u32 length + ICC], [u32 length +
    EXIF], the payload and (version 2 only) the CRC-32 of every byte before it.

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


@dataclasses.dataclass(frozen=True)
class Section:
    """One section of a version 3 file.

    Attributes:
        kind: Its type (``SECTION_*``; other values are types this reader does not know).
        data: Its body (not empty).
        required: Whether a reader that does not know ``kind`` must refuse the file.
    """

    kind: int
    data: bytes
    required: bool = False


@dataclasses.dataclass(frozen=True)
class Contents:
    """A parsed ``.srz`` file (:func:`parse`).

    Attributes:
        header: The header.
        payload: The base layer's codec payload.
        icc, exif: The metadata sections (None when absent).
        sections: The other sections of known types (the ROI mask and enhancement layer),
            in file order; empty for versions 1 and 2.
        skipped: Types of the unknown optional sections that were skipped, in file order.
        version: The file's format version.
    """

    header: Header
    payload: bytes
    icc: bytes | None = None
    exif: bytes | None = None
    sections: tuple[Section, ...] = ()
    skipped: tuple[int, ...] = ()
    version: int = VERSION

    def section(self, kind: int) -> bytes | None:
        """The body of the known section of type ``kind`` (None when absent)."""
        return next((s.data for s in self.sections if s.kind == kind), None)


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


def _section_name(kind: int) -> str:
    return SECTION_NAMES.get(kind, f"type {kind}")


def pack(
    header: Header,
    payload: bytes,
    icc: bytes | None = None,
    exif: bytes | None = None,
    *,
    sections: Iterable[Section] = (),
    version: int = VERSION,
) -> bytes:
    """The ``.srz`` bytes of ``header``, ``payload``, optional ICC profile and EXIF, and
    (version 3) further ``sections``.

    Empty ``icc``/``exif`` are left out like None. In version 3 the sections are written in
    the order ICC, EXIF, base layer, then ``sections`` as given.

    Args:
        sections: Extra sections (version 3 only): any type but the base layer, ICC and
            EXIF, each type at most once; the ROI mask and the enhancement layer together.
        version: Format version to write: :data:`VERSION`, or 2 or 1 for readers that
            predate the section table (or the whole-file checksum: no protection of metadata
            and payload in version 1).

    Raises:
        ContainerError: the header is invalid, the payload or a section is empty or over
            4 GiB, the sections break the rules above, or the version is not one of
            :data:`VERSIONS`.
    """
    if version not in VERSIONS or isinstance(version, bool):
        raise ContainerError(f"cannot write .srz version {version!r} (known: {VERSIONS})")
    _check(header, max_pixels=_U32 * _U32)  # the reader's pixel limit is its own business
    if not payload or len(payload) > _U32:
        raise ContainerError(f"payload of {len(payload)} bytes (expected 1 to {_U32})")
    extra = tuple(sections)
    if version < 3:
        if extra:
            raise ContainerError(f".srz version {version} has no sections beyond ICC and EXIF")
        return _pack_fixed(header, payload, icc, exif, version)
    table = [
        Section(kind, bytes(body))
        for kind, body in ((SECTION_ICC, icc), (SECTION_EXIF, exif))
        if body
    ]
    table.append(Section(SECTION_BASE, bytes(payload), required=True))
    for section in extra:
        if section.kind in (SECTION_BASE, SECTION_ICC, SECTION_EXIF):
            raise ContainerError(f"the {_section_name(section.kind)} section is not an extra one")
        table.append(Section(int(section.kind), bytes(section.data), bool(section.required)))
    _check_sections([(s.kind, len(s.data)) for s in table])
    entries = b"".join(
        _ENTRY.pack(s.kind, SECTION_FLAG_REQUIRED if s.required else 0, len(s.data)) for s in table
    )
    fields = _V3_FIELDS.pack(
        MAGIC, version, header.width, header.height, header.channels, header.scale,
        header.codec_id, header.model_id, header.model_hash, len(table),
    )  # fmt: skip
    head = fields + entries
    data = head + _CRC.pack(zlib.crc32(head)) + b"".join(s.data for s in table)
    return data + _CRC.pack(zlib.crc32(data))


def _check_sections(table: list[tuple[int, int]]) -> None:
    """The rules a version 3 section table follows (``(type, length)`` per entry)."""
    if not 1 <= len(table) <= _MAX_SECTIONS:
        raise ContainerError(f"{len(table)} sections (expected 1 to {_MAX_SECTIONS})")
    seen: set[int] = set()
    for kind, length in table:
        if not 0 <= kind <= 0xFFFF:
            raise ContainerError(f"section type {kind} (expected 0 to 65535)")
        if length > _U32:
            raise ContainerError(f"{_section_name(kind)} section of {length} bytes is too large")
        if kind in SECTION_NAMES:
            if kind in seen:
                raise ContainerError(f"more than one {_section_name(kind)} section")
            if length == 0:
                raise ContainerError(f"empty {_section_name(kind)} section")
            seen.add(kind)
    if SECTION_BASE not in seen:
        raise ContainerError("no base layer section")
    if (SECTION_ROI_MASK in seen) != (SECTION_ENHANCEMENT in seen):
        have, lack = (
            (SECTION_ROI_MASK, SECTION_ENHANCEMENT)
            if SECTION_ROI_MASK in seen
            else (SECTION_ENHANCEMENT, SECTION_ROI_MASK)
        )
        raise ContainerError(
            f"a {_section_name(have)} section without a {_section_name(lack)} section"
        )


def _pack_fixed(
    header: Header, payload: bytes, icc: bytes | None, exif: bytes | None, version: int
) -> bytes:
    """Versions 1 and 2."""
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
    """``(header, payload, icc, exif)`` of ``.srz`` bytes: :func:`parse` without the other
    sections (the base layer alone; an ROI file's enhancement is in ``parse(data).sections``).

    ``icc``/``exif`` are None when absent. Raises what :func:`parse` raises.
    """
    contents = parse(data, max_pixels=max_pixels)
    return contents.header, contents.payload, contents.icc, contents.exif


def parse(data: bytes, *, max_pixels: int | None = None) -> Contents:
    """Parse and validate ``.srz`` bytes (any of :data:`VERSIONS`).

    The checks run from the cheapest and most specific to the whole-file checksum: magic,
    version, header CRC (in version 3 it covers the section table too), fields, section
    table and lengths, then (versions 2 and 3) the CRC-32 of the whole file, so that a
    truncated file says so and damage anywhere else is a checksum mismatch. Nothing is
    returned, so nothing is decoded, unless all of them pass.

    Args:
        data: The whole file.
        max_pixels: Largest accepted width x height (None: :func:`superres.core.io.max_pixels`).

    Raises:
        ContainerError: truncated data, bad magic, version or checksum, an invalid or
            unknown field, reserved flag bits, a section table that breaks the format's
            rules or a required section of an unknown type, or lengths that do not add up to
            the file size.
    """
    data = bytes(data)
    if len(data) < 4 or data[:3] != MAGIC:
        if not MAGIC.startswith(data[:3]):
            raise ContainerError("not an .srz file (bad magic)")
        raise ContainerError(f"truncated header ({len(data)} of {V3_HEADER_SIZE} bytes)")
    version = data[3]
    if version not in VERSIONS:
        known = ", ".join(map(str, VERSIONS))
        raise ContainerError(f"unsupported .srz version {version} (this reader knows {known})")
    if version < 3:
        return _parse_fixed(data, max_pixels)
    return _parse_v3(data, max_pixels)


def _parse_v3(data: bytes, max_pixels: int | None) -> Contents:
    if len(data) < V3_HEADER_SIZE:
        raise ContainerError(f"truncated header ({len(data)} of {V3_HEADER_SIZE} bytes)")
    _, version, w, h, channels, scale, codec_id, model_id, model_hash, count = (
        _V3_FIELDS.unpack_from(data)
    )
    head_size = V3_HEADER_SIZE + count * _ENTRY.size
    if len(data) < head_size + _CRC.size:
        raise ContainerError(
            f"truncated section table ({len(data)} of {head_size + _CRC.size} bytes for "
            f"{count} sections)"
        )
    (crc,) = _CRC.unpack_from(data, head_size)
    if crc != zlib.crc32(memoryview(data)[:head_size]):
        raise ContainerError("header checksum mismatch (corrupt file)")
    header = Header(w, h, channels, scale, codec_id, model_id, model_hash)
    _check(header, max_pixels)
    table = [_ENTRY.unpack_from(data, V3_HEADER_SIZE + i * _ENTRY.size) for i in range(count)]
    for kind, flags, _ in table:
        if flags & ~SECTION_FLAG_REQUIRED:
            raise ContainerError(
                f"unknown flag bits 0x{flags:02x} of the {_section_name(kind)} section"
            )
        if kind not in SECTION_NAMES and flags & SECTION_FLAG_REQUIRED:
            raise ContainerError(
                f"the file needs a section of type {kind}, which this reader does not know "
                "(made by a newer superres?)"
            )
    _check_sections([(kind, length) for kind, _, length in table])
    offset, end = head_size + _CRC.size, len(data) - TRAILER_SIZE
    position = offset
    for i, (kind, _, length) in enumerate(table):
        left = max(0, end - position)
        if length > left:
            what = "payload" if kind == SECTION_BASE else f"{_section_name(kind)} section"
            if i == len(table) - 1:
                raise ContainerError(f"truncated {what} ({left} of {length} bytes)")
            raise ContainerError(
                f"{what} of {length} bytes runs past the end of the file ({left} bytes left)"
            )
        position += length
    if position < end:
        raise ContainerError(f"{end - position} trailing bytes after the sections")
    (stored,) = _CRC.unpack_from(data, end)
    actual = zlib.crc32(memoryview(data)[:end])
    if stored != actual:
        raise ContainerError(
            f"file checksum mismatch (corrupt file: CRC-32 {actual:08x}, stored {stored:08x})"
        )
    known: dict[int, bytes] = {}
    extra: list[Section] = []
    skipped: list[int] = []
    for kind, flags, length in table:
        body = data[offset : offset + length]
        offset += length
        if kind not in SECTION_NAMES:
            skipped.append(kind)
            continue
        known[kind] = body
        if kind not in (SECTION_BASE, SECTION_ICC, SECTION_EXIF):
            extra.append(Section(kind, body, bool(flags & SECTION_FLAG_REQUIRED)))
    return Contents(
        header, known[SECTION_BASE], known.get(SECTION_ICC), known.get(SECTION_EXIF),
        tuple(extra), tuple(skipped), version,
    )  # fmt: skip


def _parse_fixed(data: bytes, max_pixels: int | None) -> Contents:
    """Versions 1 and 2."""
    if len(data) < HEADER_SIZE:
        raise ContainerError(f"truncated header ({len(data)} of {HEADER_SIZE} bytes)")
    fields = data[: _FIELDS.size]
    _, version, w, h, channels, scale, codec_id, model_id, model_hash, flags, length = (
        _FIELDS.unpack(fields)
    )
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
    return Contents(header, data[offset:end], sections[0], sections[1], version=version)
