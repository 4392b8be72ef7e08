"""Property tests: damaged .srz files raise ContainerError (one line), quickly, and never decode.

Since version 2 the container ends in a CRC-32 of the whole file, so any change to a file
(header, ICC/EXIF sections or payload) is refused before a byte reaches a decoder; the codec
decoders are fuzzed separately, behind a container whose checksums are made to agree.
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

from superres.codec import ContainerError, Header, compress, decompress, pack, unpack
from superres.codec.container import VERSION
from superres.core import io

SHAPE = (24, 32, 3)
FILES = [("jpeg", 1, None), ("webp", 2, "lanczos"), ("avif", 2, "bicubic")]

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
def _file(codec: str, scale: int, model: str | None) -> bytes:
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    rgb = np.stack([x * 8, y * 10, (x + y) * 4], -1).clip(0, 255).astype(np.uint8)
    image = io.Image(rgb, icc_profile=b"icc " * 5, exif=b"Exif\x00\x00" + bytes(10))
    return compress(image, codec=codec, quality=60, scale=scale, model=model)


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


@pytest.mark.parametrize(("codec", "scale", "model"), FILES)
@settings(max_examples=200, deadline=None)
@given(ops=edits)
def test_edited_files(codec, scale, model, ops):
    original = _file(codec, scale, model)
    edited = _edit(original, ops)
    _check(edited)
    if edited != original:  # (edits can cancel out)
        _refused(edited)


@pytest.mark.parametrize(("codec", "scale", "model"), FILES)
def test_every_single_bit_flip_is_refused(codec, scale, model):
    """All 8 x len(file) one-bit flips: header, ICC, EXIF, payload and the checksum itself."""
    data = _file(codec, scale, model)
    reasons: dict[str, int] = {}
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        reason = re.sub(r"[0-9a-fx]*[0-9][0-9a-fx]*", "N", _refused(bytes(flipped)))
        reasons[reason] = reasons.get(reason, 0) + 1
    assert sum(reasons.values()) == len(data) * 8
    # Damage behind the header is the whole-file checksum's to catch.
    assert reasons.get("file checksum mismatch (corrupt file: CRC-N N, stored N)", 0) > len(data)


@pytest.mark.parametrize(("codec", "scale", "model"), FILES)
def test_random_damage_is_refused(codec, scale, model):
    """64 seeded bursts of 1 to 16 random bytes overwritten anywhere in the file."""
    data = _file(codec, scale, model)
    rng = random.Random(f"{codec}{scale}{model}")
    for _ in range(64):
        damaged = bytearray(data)
        start = rng.randrange(len(data))
        for i in range(start, min(len(data), start + rng.randint(1, 16))):
            damaged[i] = rng.randrange(256)
        if bytes(damaged) != data:
            _refused(bytes(damaged))


@pytest.mark.parametrize(("codec", "scale", "model"), FILES)
@settings(max_examples=200, deadline=None)
@given(ops=edits, cut=st.integers(0, 64))
def test_edited_payloads_in_a_valid_container(codec, scale, model, ops, cut):
    """Damage reaches the codec's decoder (the container's lengths are made to agree)."""
    header, payload, icc, exif = unpack(_file(codec, scale, model))
    payload = _edit(payload, ops)
    payload = payload[: max(1, len(payload) - cut)]
    _check(pack(header, payload, icc, exif))


#: Field values of a valid header, and values to swap in (valid or not) for each field.
FIELDS = {
    "magic": (b"SRZ", [b"SRY"]),
    "version": (VERSION, [0, 1, VERSION + 1]),
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
