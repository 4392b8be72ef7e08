"""Property tests: damaged .srz files raise ContainerError (one line), quickly, and never decode.

Since version 2 the container ends in a CRC-32 of the whole file, so any change to a file
(header, section table, ICC/EXIF, ROI mask and enhancement sections, or payload) is refused
before a byte reaches a decoder; the codec decoders and the mask parser are fuzzed
separately, behind a container whose checksums are made to agree, and so are version 3
section tables.
"""

from __future__ import annotations

import random
import re
import struct
import zlib
from functools import cache

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from superres.codec import (
    ContainerError,
    Header,
    Section,
    compress,
    decompress,
    pack,
    parse,
    unpack,
)
from superres.codec import container as ct
from superres.core import io

SHAPE = (24, 32, 3)
#: (codec, scale, model, with a region of interest); the ROI files hold a mask and an
#: enhancement section besides the base layer, ICC and EXIF.
FILES = [("jpeg", 1, None, False), ("webp", 2, "lanczos", False), ("avif", 2, "bicubic", False),
         ("jpeg", 2, "bicubic", True), ("webp", 1, None, True)]  # fmt: skip

edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete"]),
        st.integers(0, 1 << 20),  # position, modulo the length
        st.integers(0, 255),  # inserted byte, or XOR mask (0 means 1) of a flip
    ),
    min_size=1,
    max_size=4,
)


@cache
def _file(codec: str, scale: int, model: str | None, roi: bool = False) -> bytes:
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    rgb = np.stack([x * 8, y * 10, (x + y) * 4], -1).clip(0, 255).astype(np.uint8)
    image = io.Image(rgb, icc_profile=b"icc " * 5, exif=b"Exif\x00\x00" + bytes(10))
    if not roi:
        return compress(image, codec=codec, quality=60, scale=scale, model=model)
    mask = np.zeros(SHAPE[:2], bool)
    mask[4:20, 8:24] = True
    data = compress(image, codec=codec, target_bpp=12.0, scale=scale, model=model, roi=mask)
    assert [s.kind for s in parse(data).sections] == [ct.SECTION_ROI_MASK, ct.SECTION_ENHANCEMENT]
    return data


def _edit(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, position, value in ops:
        if op == "insert":
            out.insert(position % (len(out) + 1), value)
        elif out:
            i = position % len(out)
            if op == "flip":
                out[i] ^= value or 1
            else:
                del out[i]
    return bytes(out)


def _check(data: bytes) -> None:
    try:
        image = decompress(data, device="cpu")
    except ContainerError as err:
        assert "\n" not in str(err)
    else:
        assert image.pixels.shape == SHAPE and image.pixels.dtype == np.uint8


def _refused(data: bytes) -> str:
    """The one-line message ``data`` is refused with (it must be)."""
    with pytest.raises(ContainerError) as info:
        decompress(data, device="cpu")
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(("codec", "scale", "model", "roi"), FILES)
@settings(max_examples=200, deadline=None)
@given(ops=edits)
def test_edited_files(codec, scale, model, roi, ops):
    original = _file(codec, scale, model, roi)
    edited = _edit(original, ops)
    _check(edited)
    if edited != original:  # (edits can cancel out)
        _refused(edited)


@pytest.mark.parametrize(("codec", "scale", "model", "roi"), FILES)
def test_every_single_bit_flip_is_refused(codec, scale, model, roi):
    """All 8 x len(file) one-bit flips: header, section table, ICC, EXIF, payload, mask,
    enhancement and the checksum itself."""
    data = _file(codec, scale, model, roi)
    reasons: dict[str, int] = {}
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        reason = re.sub(r"[0-9a-fx]*[0-9][0-9a-fx]*", "N", _refused(bytes(flipped)))
        reasons[reason] = reasons.get(reason, 0) + 1
    assert sum(reasons.values()) == len(data) * 8
    # Damage behind the header is the whole-file checksum's to catch.
    assert reasons.get("file checksum mismatch (corrupt file: CRC-N N, stored N)", 0) > len(data)


@pytest.mark.parametrize(("codec", "scale", "model", "roi"), FILES)
def test_random_damage_is_refused(codec, scale, model, roi):
    """64 seeded bursts of 1 to 16 random bytes overwritten anywhere in the file."""
    data = _file(codec, scale, model, roi)
    rng = random.Random(f"{codec}{scale}{model}" + ("roi" if roi else ""))
    for _ in range(64):
        damaged = bytearray(data)
        start = rng.randrange(len(data))
        for i in range(start, min(len(data), start + rng.randint(1, 16))):
            damaged[i] = rng.randrange(256)
        if bytes(damaged) != data:
            _refused(bytes(damaged))


@pytest.mark.parametrize(("codec", "scale", "model", "roi"), FILES)
@settings(max_examples=200, deadline=None)
@given(ops=edits, cut=st.integers(0, 64))
def test_edited_payloads_in_a_valid_container(codec, scale, model, roi, ops, cut):
    """Damage reaches the codec's decoder (the container's lengths are made to agree); in
    an ROI file, the same damage to the mask and to the enhancement layer too."""
    contents = parse(_file(codec, scale, model, roi))
    header, payload, icc, exif = unpack(_file(codec, scale, model, roi))
    damaged = _edit(payload, ops)
    damaged = damaged[: max(1, len(damaged) - cut)]
    _check(pack(header, damaged, icc, exif, sections=contents.sections))
    for i, section in enumerate(contents.sections):
        body = _edit(section.data, ops)[: max(1, len(section.data) - cut)]
        sections = list(contents.sections)
        sections[i] = Section(section.kind, body, section.required)
        _check(pack(header, payload, icc, exif, sections=sections))


@pytest.mark.parametrize(("codec", "scale", "model", "roi"), [f for f in FILES if f[3]])
def test_every_truncation_of_an_roi_file_is_refused(codec, scale, model, roi):
    data = _file(codec, scale, model, roi)
    for n in range(len(data)):
        _refused(data[:n])


#: Field values of a valid header, and values to swap in (valid or not) for each field.
FIELDS = {
    "magic": (b"SRZ", [b"SRY"]),
    "version": (2, [0, 1, ct.VERSION + 1]),  # the fixed layout of versions 1 and 2
    "width": (32, [0, 1, 65535, 1 << 31, (1 << 32) - 1]),
    "height": (24, [0, 1, 65535, 1 << 31, (1 << 32) - 1]),
    "channels": (3, [0, 1, 2, 4]),
    "scale": (2, [0, 1, 3, 4, 5]),
    "codec_id": (2, [0, 1, 3, 4]),
    "model_id": (1, [0, 2, 5, 6, 255]),
    "model_hash": (b"\x00\xc0\xff\xee", [bytes(4)]),
    "flags": (0, [1, 2, 3, 4, 128]),
    "length": (None, [0, 1, 63, 65, (1 << 32) - 1]),  # None: the rest of the data
}
overrides = st.lists(st.sampled_from(list(FIELDS)), max_size=3, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.sampled_from(FIELDS[k][1]) for k in keys})
)


@settings(max_examples=200, deadline=None)
@given(changes=overrides, body=st.binary(max_size=64))
def test_any_header_with_a_valid_crc(changes, body):
    """Any combination of field values is either accepted (and packs back) or refused.

    Both checksums are made to agree (a version 2 file gets its whole-file CRC-32), so the
    field checks behind them are what is tested."""
    fields = {name: value for name, (value, _) in FIELDS.items()} | changes
    if fields["length"] is None:
        fields["length"] = max(0, len(body) - 4 * bin(fields["flags"] & 3).count("1"))
    raw = struct.pack(">3sBIIBBBB4sBI", *fields.values())
    data = raw + struct.pack(">I", zlib.crc32(raw)) + body
    if fields["version"] >= 2:
        data += struct.pack(">I", zlib.crc32(data))
    try:
        header, payload, icc, exif = unpack(data)
    except ContainerError as err:
        event("refused: " + re.sub(r"[0-9a-fx]*[0-9][0-9a-fx]*", "N", str(err))[:36])
        return
    event(f"accepted (version {fields['version']})")
    assert isinstance(header, Header) and payload
    assert pack(header, payload, icc, exif, version=fields["version"]) == data


#: Section types (known, unknown) and flag values (required bit, reserved bits) to draw.
section_entries = st.lists(
    st.tuples(
        st.sampled_from([1, 1, 1, 2, 3, 4, 5, 0, 6, 999]),
        st.sampled_from([0, 0, 1, 1, 2, 0x80]),
        st.integers(0, 12),  # body length
        st.integers(-2, 2),  # how far the stored length is off
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(entries=section_entries, seed=st.integers(0, 255))
def test_any_section_table_with_valid_crcs(entries, seed):
    """Version 3 tables of any types, flags and (possibly lying) lengths, with both
    checksums made to agree: accepted only when they follow the rules, refused with one
    line otherwise, never an exception of another kind."""
    rng = random.Random(seed)
    bodies = b"".join(bytes(rng.randrange(256) for _ in range(n)) for _, _, n, _ in entries)
    table = [(kind, flags, max(0, n + off)) for kind, flags, n, off in entries]
    head = struct.pack(">3sBIIBBBB4sH", b"SRZ", 3, 32, 24, 3, 1, 1, 0, bytes(4), len(table))
    head += b"".join(struct.pack(">HBI", *entry) for entry in table)
    data = head + struct.pack(">I", zlib.crc32(head)) + bodies
    data += struct.pack(">I", zlib.crc32(data))
    try:
        contents = parse(data)
    except ContainerError as err:
        assert "\n" not in str(err)
        event("refused: " + re.sub(r"[0-9a-fx]*[0-9][0-9a-fx]*", "N", str(err))[:40])
        return
    event("accepted")
    kinds = [k for k, _, _ in table]
    assert kinds.count(1) == 1 and all(f & ~1 == 0 for _, f, _ in table)
    assert all(k in ct.SECTION_NAMES or not f & 1 for k, f, _ in table)
    assert sum(n for _, _, n in table) == len(bodies)
    assert contents.skipped == tuple(k for k in kinds if k not in ct.SECTION_NAMES)
    _check(data)  # and whatever it holds decodes or is refused with one line
