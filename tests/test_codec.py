"""SR-assisted compression: codecs, the .srz container, compress/decompress, bpp, files."""

from __future__ import annotations

import hashlib
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from superres.codec import (
    AUTO_SCALES,
    MODELS,
    ContainerError,
    Header,
    TargetBitrateError,
    TargetBitrateWarning,
    api,
    compress,
    compress_detailed,
    compress_file,
    container,
    decompress,
    decompress_file,
    get_codec,
    list_codecs,
    model_hash,
    pack,
    pipeline,
    unpack,
)
from superres.codec.container import HEADER_SIZE, TRAILER_SIZE, V3_HEADER_SIZE, VERSION
from superres.core import io
from superres.core.metrics import psnr_rgb
from superres.errors import ConfigError, DeviceError, ImageError, SuperresError
from superres.weights import zoo
from tests.conftest import hide_shipped

CODECS = ("jpeg", "webp", "avif")
PATTERN = Path(__file__).resolve().parents[1] / "examples" / "pattern.png"
#: Written by the version 1 container (before the whole-file checksum): 32x32 RGB, jpeg q60,
#: x2, bicubic, with ICC and EXIF sections.
V1_FIXTURE = Path(__file__).resolve().parent / "data" / "v1_jpeg_x2_bicubic.srz"
V1_PIXELS_SHA256 = "f1eae312aa146b64b6ee288861b577bc1bbdcb03a9498baa4605da5a0f5b397c"
#: Written by the version 2 container (before the section table): the top-left 48x40 of
#: examples/pattern.png, webp q60, x2, bicubic, with ICC and EXIF sections.
V2_FIXTURE = Path(__file__).resolve().parent / "data" / "v2_webp_x2_bicubic.srz"
V2_PIXELS_SHA256 = "b2d3cbf5220bc5e634874782775a1d93c879eaf008f740bf757b58e67a7fb97f"
ICC = b"fake icc profile " * 3
EXIF = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"


def _gradient(h: int = 37, w: int = 45, channels: int = 3) -> np.ndarray:
    """A smooth gradient with odd sides (so that scale 2 needs padding)."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], -1)
    return rgb[:, :, :channels].astype(np.uint8)


def _bpp(data: bytes, image: np.ndarray) -> float:
    return len(data) * 8 / (image.shape[0] * image.shape[1])


def _raw_header(
    magic=b"SRZ", version=1, width=45, height=37, channels=3, scale=1, codec_id=1,
    model_id=0, model_hash=bytes(4), flags=0, length=10, crc=None,
) -> bytes:  # fmt: skip
    """A header with any field values and (unless given) a correct CRC."""
    fields = struct.pack(
        ">3sBIIBBBB4sBI", magic, version, width, height, channels, scale, codec_id, model_id,
        model_hash, flags, length,
    )  # fmt: skip
    return fields + struct.pack(">I", zlib.crc32(fields) if crc is None else crc)


@pytest.fixture(scope="module")
def valid() -> bytes:
    """A small valid file with ICC and EXIF sections (jpeg, scale 1)."""
    return compress(io.Image(_gradient(), icc_profile=ICC, exif=EXIF), quality=50)


@pytest.fixture(scope="module")
def valid_v2(valid) -> bytes:
    """The same file in version 2 (the fixed layout before the section table)."""
    return pack(*unpack(valid), version=2)


# --------------------------------------------------------------------------- codecs


def test_registry():
    assert list_codecs() == list(CODECS)
    for i, name in enumerate(CODECS, start=1):
        assert get_codec(name).codec_id == i and get_codec(i).name == name
    with pytest.raises(ValueError, match="unknown codec 'png'"):
        get_codec("png")
    with pytest.raises(ContainerError, match="unknown codec id 9"):
        get_codec(9)


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("channels", [1, 3])
def test_codec_round_trip_and_bare_payload(name, channels):
    codec = get_codec(name)
    pixels = _gradient(channels=channels)
    data = codec.encode(pixels, 90)
    for marker in (b"Exif", b"ICC_PROFILE", b"JFIF", b"XMP"):
        assert marker not in data
    if name == "webp":
        assert data[12:16] == b"VP8 "  # simple lossy format, no VP8X extension chunk
    out = codec.decode(data, pixels.shape[:2])
    assert out.dtype == np.uint8 and out.shape[:2] == pixels.shape[:2]
    assert psnr_rgb(codec.decode(data, pixels.shape[:2], channels=channels), pixels) > 30
    assert codec.decode(data, pixels.shape[:2], channels=3).shape[2] == 3


def test_jpeg_subsampling_444_is_larger():
    codec, pixels = get_codec("jpeg"), _gradient()
    assert len(codec.encode(pixels, 90, subsampling="4:4:4")) > len(codec.encode(pixels, 90))


@pytest.mark.parametrize("name", CODECS)
def test_codec_decode_refuses_other_size_or_format(name):
    codec = get_codec(name)
    data = codec.encode(_gradient(), 50)
    with pytest.raises(ContainerError, match="payload is 45x37, the header says 44x37"):
        codec.decode(data, (37, 44))
    other = get_codec("webp" if name == "jpeg" else "jpeg")
    with pytest.raises(ContainerError, match="is not a valid"):
        other.decode(data, (37, 45))
    with pytest.raises(ContainerError, match="payload is corrupt|is not a valid"):
        codec.decode(data[: len(data) // 2], (37, 45))


def test_codec_argument_errors():
    pixels = _gradient()
    with pytest.raises(ValueError, match="jpeg quality must be an integer 1..100, got 0"):
        get_codec("jpeg").encode(pixels, 0)
    with pytest.raises(ValueError, match="webp quality"):
        get_codec("webp").encode(pixels, 101)
    with pytest.raises(ValueError, match="always 4:2:0"):
        get_codec("webp").encode(pixels, 50, subsampling="4:4:4")
    with pytest.raises(ValueError, match="has no option speed"):
        get_codec("avif").encode(pixels, 50, speed=3)
    with pytest.raises(ValueError, match="subsampling must be"):
        get_codec("jpeg").encode(pixels, 50, subsampling="4:1:1")
    with pytest.raises(ValueError, match="uint8"):
        get_codec("jpeg").encode(pixels.astype(np.uint16), 50)


# --------------------------------------------------------------------------- container


@pytest.mark.parametrize(("icc", "exif"), [(None, None), (ICC, None), (None, EXIF), (ICC, EXIF)])
def test_container_round_trip(icc, exif):
    header = Header(45, 37, 3, 2, 2, model_id=1, model_hash=b"\x01\x02\x03\x04")
    payload = b"payload bytes"
    data = pack(header, payload, icc, exif, version=2)
    sections = sum(4 + len(s) for s in (icc, exif) if s)
    assert len(data) == HEADER_SIZE + sections + len(payload) + TRAILER_SIZE
    assert HEADER_SIZE == 29 and TRAILER_SIZE == 4 and data[3] == 2
    assert unpack(data) == (header, payload, icc, exif)
    # Version 3: a 22-byte fixed header, 7 bytes per section, the header CRC, the bodies.
    current = pack(header, payload, icc, exif)
    count = 1 + sum(1 for s in (icc, exif) if s)
    bodies = len(payload) + sum(len(s) for s in (icc, exif) if s)
    assert len(current) == V3_HEADER_SIZE + 7 * count + 4 + bodies + TRAILER_SIZE
    assert current[3] == VERSION == 3 and V3_HEADER_SIZE == 22
    assert unpack(current) == (header, payload, icc, exif)
    parsed = container.parse(current)
    assert (parsed.version, parsed.sections, parsed.skipped) == (3, (), ())
    old = pack(header, payload, icc, exif, version=1)  # no whole-file checksum
    assert len(old) == HEADER_SIZE + sections + len(payload) and old[3] == 1
    assert unpack(old) == (header, payload, icc, exif)
    assert header.lr_size == (19, 23) and header.codec == "webp" and header.model == "bicubic"


def test_pack_refuses_invalid_headers():
    with pytest.raises(ContainerError, match="empty payload|payload of 0 bytes"):
        pack(Header(4, 4, 3, 1, 1), b"")
    with pytest.raises(ContainerError, match="scale 1 with model id 1"):
        pack(Header(4, 4, 3, 1, 1, model_id=1), b"x")
    with pytest.raises(ContainerError, match="non-zero model hash"):
        pack(Header(4, 4, 3, 2, 1, model_hash=b"abcd"), b"x")


def test_every_truncation_is_an_error(valid):
    for n in range(len(valid)):
        with pytest.raises(ContainerError):
            unpack(valid[:n])


def _with(valid: bytes, **fields) -> bytes:
    """``valid`` with header fields replaced (and a recomputed CRC unless ``crc`` is given;
    the whole-file CRC of a version 2 or 3 file is recomputed too, so that the checks behind
    it are reached). Version 3 files also take ``table``, a list of ``(type, flags, length)``
    entries replacing the section table."""
    if valid[3] >= 3:
        return _with_v3(valid, **fields)
    magic, version, w, h, c, s, codec, model, digest, flags, length = struct.unpack(
        ">3sBIIBBBB4sBI", valid[:25]
    )
    current = dict(
        magic=magic, version=version, width=w, height=h, channels=c, scale=s, codec_id=codec,
        model_id=model, model_hash=digest, flags=flags, length=length,
    )  # fmt: skip
    body = valid[HEADER_SIZE : len(valid) - (TRAILER_SIZE if version >= 2 else 0)]
    data = _raw_header(**{**current, **fields}) + body
    if version >= 2:
        data += struct.pack(">I", zlib.crc32(data))
    return data


def _table(data: bytes) -> list[tuple[int, int, int]]:
    """The section table of a version 3 file: ``(type, flags, length)`` per entry."""
    (count,) = struct.unpack_from(">H", data, 20)
    return [struct.unpack_from(">HBI", data, 22 + 7 * i) for i in range(count)]


def _with_v3(valid: bytes, *, crc=None, table=None, body=None, **fields) -> bytes:
    names = ("magic", "version", "width", "height", "channels", "scale", "codec_id",
             "model_id", "model_hash", "count")  # fmt: skip
    current = dict(zip(names, struct.unpack(">3sBIIBBBB4sH", valid[:22]), strict=True))
    old_table = _table(valid)
    start = 22 + 7 * len(old_table) + 4
    body = valid[start:-TRAILER_SIZE] if body is None else body
    table = old_table if table is None else table
    current["count"] = len(table)
    head = struct.pack(">3sBIIBBBB4sH", *{**current, **fields}.values())
    head += b"".join(struct.pack(">HBI", *entry) for entry in table)
    data = head + struct.pack(">I", zlib.crc32(head) if crc is None else crc) + body
    return data + struct.pack(">I", zlib.crc32(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: b"PNG" + d[3:], "bad magic"),
        (lambda d: _with(d, version=VERSION + 1), f"unsupported .srz version {VERSION + 1}"),
        (lambda d: d[:25] + bytes([d[25] ^ 1]) + d[26:], "header checksum mismatch"),
        (lambda d: d[:5] + bytes([d[5] ^ 1]) + d[6:], "header checksum mismatch"),
        (lambda d: _with(d, codec_id=9), "unknown codec id 9"),
        (lambda d: _with(d, model_id=9), "model id 9, which this installation does not know"),
        (lambda d: _with(d, flags=0x07), "unknown flag bits 0x07"),
        (lambda d: _with(d, width=0), "invalid image size 0x37"),
        (lambda d: _with(d, width=100_000, height=100_000), "over the limit"),
        (lambda d: _with(d, channels=2), "invalid channel count 2"),
        (lambda d: _with(d, scale=5), "invalid scale 5"),
        (lambda d: _with(d, scale=2, model_id=0, model_hash=b"abcd"), "non-zero model hash"),
        (lambda d: _with(d, length=struct.unpack(">I", d[21:25])[0] + 1), "truncated payload"),
        (lambda d: _with(d, length=0), "empty payload"),
        (lambda d: d + b"\x00", "1 trailing bytes after the payload"),
        (lambda d: _with(d, flags=0), "trailing bytes"),  # sections read as payload
        (lambda d: d[:29] + b"\xff\xff\xff\xff" + d[33:], "ICC section of 4294967295 bytes runs"),
        (lambda d: d[:29] + b"\x00\x00\x00\x00" + d[33:], "empty ICC section"),
    ],
)
def test_corruptions_are_container_errors(valid_v2, change, message):
    data = change(valid_v2)
    with pytest.raises(ContainerError, match=message) as info:
        decompress(data)
    assert "\n" not in str(info.value)


def test_pixel_limit(valid, monkeypatch):
    assert unpack(valid, max_pixels=45 * 37)[0].width == 45
    with pytest.raises(ContainerError, match="over the limit of 100"):
        unpack(valid, max_pixels=100)
    monkeypatch.setenv("SUPERRES_MAX_PIXELS", "1000")
    with pytest.raises(ContainerError, match="SUPERRES_MAX_PIXELS"):
        decompress(valid)


def test_huge_claimed_size_in_a_tiny_file():
    data = _raw_header(width=100_000, height=100_000, length=1) + b"x"
    with pytest.raises(ContainerError, match="100000x100000 = 10000000000 pixels, over the limit"):
        decompress(data)
    # Under the limit, the lie is caught from the payload's own header, before decoding.
    small = compress(_gradient(), codec="webp", quality=50)
    with pytest.raises(ContainerError, match="the header says 9000x9000"):
        decompress(_with(small, width=9000, height=9000))


def test_model_hash_mismatch_and_unknown_model():
    data = compress(_gradient(), scale=2, model="bicubic", quality=80)
    assert unpack(data)[0].model_hash == model_hash(zoo.resolve("bicubic", 2))
    with pytest.raises(
        ContainerError, match=r"compressed with model 'bicubic' x2 \(hash 00c0ffee\)"
    ):
        decompress(_with(data, model_hash=bytes.fromhex("00c0ffee")))
    unknown = max(MODELS) + 1
    with pytest.raises(ContainerError, match=f"model id {unknown}, which this installation"):
        decompress(_with(data, model_id=unknown))


def test_missing_model_weights(monkeypatch):
    data = compress(_gradient(), scale=3, model="bicubic", quality=80)
    reserved = _with(data, model_id=4)  # a file made with the codec tier at x3
    hide_shipped(monkeypatch, "codec", 3)  # an installation without the codec x3
    with pytest.raises(ContainerError, match="model 'codec' x3 .* has no such weights"):
        decompress(reserved)


# --------------------------------------------------------------------------- compress


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("scale", "model"), [(1, None), (2, "lanczos"), (2, "bicubic")])
def test_round_trip(codec, scale, model):
    image = _gradient()
    result = compress_detailed(image, codec=codec, quality=90, scale=scale, model=model)
    header = unpack(result.data)[0]
    assert (header.scale, header.model, header.codec) == (scale, model or "lanczos", codec)
    out = decompress(result.data)
    assert out.pixels.shape == image.shape and out.pixels.dtype == np.uint8
    assert psnr_rgb(out.pixels, image) > 30
    assert result.bpp == _bpp(result.data, image)


@pytest.mark.parametrize("codec", CODECS)
def test_grey_stays_grey(codec):
    grey = _gradient(channels=1)
    data = compress(grey, codec=codec, quality=90, scale=2, model="lanczos")
    out = decompress(data)
    assert unpack(data)[0].channels == 1 and out.pixels.shape == grey.shape and out.mode == "L"
    assert psnr_rgb(out.pixels, grey) > 30


def test_shipped_network_round_trip():
    if not any(w.name == "fast" and w.scale == 2 for w in zoo.shipped_weights()):
        pytest.skip("fast x2 weights not shipped")
    image = _gradient()
    data = compress(image, scale=2, model="fast", quality=90)
    header = unpack(data)[0]
    assert header.model == "fast" and header.model_hash == model_hash(zoo.resolve("fast", 2))
    assert psnr_rgb(decompress(data, device="cpu").pixels, image) > 30


def test_default_model_is_the_best_shipped_tier():
    for scale in (2, 3, 4):
        shipped = {w.name for w in zoo.shipped_weights() if w.scale == scale}
        expected = next((n for n in ("codec", "quality", "fast") if n in shipped), "bicubic")
        data = compress(_gradient(), scale=scale, quality=50)
        assert unpack(data)[0].model == expected
    assert unpack(compress(_gradient(), quality=50))[0].model == "lanczos"  # scale 1


def test_scale_keeps_geometry():
    """Mirror padding + exact 1/s + crop: no shift, even with sides not divisible by s.

    (Shrinking 37 columns straight to ceil(37/s) and cropping the x s result would move this
    edge right by 0.8, 1.5 and 2.9 pixels at x2, x3, x4.)
    """
    image = np.zeros((41, 37, 3), np.uint8)
    image[:, 32:] = 255  # a vertical edge between columns 31 and 32, near the padded side
    for scale in (2, 3, 4):
        out = decompress(compress(image, codec="webp", quality=100, scale=scale, model="bicubic"))
        column = out.pixels[:, :, 1].mean(axis=0)
        i = int(np.argmax(column >= 127.5))
        edge = i - 1 + (127.5 - column[i - 1]) / (column[i] - column[i - 1])
        assert abs(edge - 31.5) < 0.4, (scale, edge)


def test_pattern_png_and_pil_input():
    pil = PILImage.open(PATTERN)
    image = io.read_image(PATTERN)
    for source in (pil, image):
        out = decompress(compress(source, codec="avif", quality=80))
        assert out.pixels.shape == image.pixels.shape


def test_metadata_alpha_and_16_bit():
    image = io.Image(_gradient(), icc_profile=ICC, exif=EXIF)
    out = decompress(compress(image, quality=90))
    assert out.icc_profile == ICC and out.exif == EXIF
    rgba = np.dstack([_gradient(), np.full((37, 45), 255, np.uint8)])
    assert decompress(compress(rgba)).pixels.shape == (37, 45, 3)  # opaque alpha is dropped
    rgba[0, 0, 3] = 0
    with pytest.raises(ValueError, match="does not store transparency"):
        compress(rgba)
    sixteen = _gradient().astype(np.uint16) * 257
    a, b = compress(sixteen, quality=90), compress(_gradient(), quality=90)
    assert a == b  # 16-bit input is rounded to exactly the 8-bit levels


def test_argument_errors():
    image = _gradient()
    with pytest.raises(ValueError, match="not both"):
        compress(image, quality=50, target_bpp=1.0)
    with pytest.raises(ValueError, match="needs target_bpp"):
        compress(image, scale="auto")
    with pytest.raises(ValueError, match="scale must be"):
        compress(image, scale=8)
    with pytest.raises(ValueError, match="unknown restoration model 'edsr'"):
        compress(image, scale=2, model="edsr")
    with pytest.raises(ValueError, match="nothing for 'bicubic' to do"):
        compress(image, scale=1, model="bicubic")
    with pytest.raises(ValueError, match="target_bpp must be a positive number"):
        compress(image, target_bpp=0)


# --------------------------------------------------------------------------- bitrate


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("scale", [1, 2])
def test_target_bpp_is_the_highest_quality_that_fits(codec, scale):
    image = io.read_image(PATTERN).pixels[:64, :64]
    target = 1.5
    result = compress_detailed(image, codec=codec, target_bpp=target, scale=scale, model="lanczos")
    assert result.met_target and result.bpp == _bpp(result.data, image) <= target
    again = compress(image, codec=codec, quality=result.quality, scale=scale, model="lanczos")
    assert again == result.data  # the encoders are deterministic
    if result.quality < get_codec(codec).quality_range[1]:
        up = compress(image, codec=codec, quality=result.quality + 1, scale=scale, model="lanczos")
        assert _bpp(up, image) > target


def test_target_bpp_below_the_lowest_quality_warns():
    image = _gradient()
    with pytest.warns(TargetBitrateWarning, match="even quality 1 needs"):
        result = compress_detailed(image, codec="jpeg", target_bpp=0.01, allow_over=True)
    assert not result.met_target and result.quality == 1 and result.bpp > 0.01


@pytest.mark.parametrize("scale", [1, "auto"])
def test_target_bpp_below_the_lowest_quality_is_an_error(scale):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            TargetBitrateError, match="even quality 1 needs .* above the target"
        ) as info:
            compress(
                _gradient(),
                codec="jpeg",
                target_bpp=0.01,
                scale=scale,
                model="bicubic" if scale != 1 else None,
            )
    assert isinstance(info.value, SuperresError) and "\n" not in str(info.value)


def test_auto_scale_keeps_the_best_psnr():
    image = io.read_image(PATTERN).pixels[:64, :64]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # per-scale misses are not warned about
        best = compress_detailed(image, codec="webp", target_bpp=0.5, scale="auto", model="bicubic")
    assert best.scale in AUTO_SCALES and best.met_target and best.bpp <= 0.5
    assert best.model == ("lanczos" if best.scale == 1 else "bicubic")
    assert best.psnr == pytest.approx(psnr_rgb(decompress(best.data).pixels, image))
    for scale in AUTO_SCALES:
        model = "lanczos" if scale == 1 else "bicubic"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TargetBitrateWarning)
            other = compress_detailed(
                image, codec="webp", target_bpp=0.5, scale=scale, model=model, allow_over=True
            )
        if other.met_target:
            assert psnr_rgb(decompress(other.data).pixels, image) <= best.psnr + 1e-9
    codec_scales = {w.scale for w in zoo.shipped_weights() if w.name == "codec"}
    if codec_scales:  # the codec tier competes at the scales it has weights for, and only them
        best = compress_detailed(image, codec="webp", target_bpp=0.5, scale="auto", model="codec")
        assert best.scale in {1, *codec_scales}


def test_auto_scale_with_a_model_that_has_no_weights_is_an_error(monkeypatch):
    from superres.codec import api

    def no_weights(model, scale, **kw):
        if api.models.MODELS[api.models.model_id(model)] == "codec":
            raise ValueError(f"restoration model 'codec' x{scale}: no x{scale} weights")
        return real(model, scale, **kw)

    real = api.models.load_restorer
    monkeypatch.setattr(api.models, "load_restorer", no_weights)
    image = io.read_image(PATTERN).pixels[:64, :64]
    with pytest.raises(ValueError, match="'codec' has no weights for any scale > 1"):
        compress(image, codec="webp", target_bpp=0.5, scale="auto", model="codec")


# --------------------------------------------------------------------------- files


def test_files(tmp_path):
    src = tmp_path / "in.png"
    io.write_image(src, io.Image(_gradient()))
    srz, png = tmp_path / "a.srz", tmp_path / "a.png"
    result = compress_file(src, srz, codec="webp", quality=90, scale=2, model="lanczos")
    assert srz.read_bytes() == result.data
    with pytest.raises(io.ImageError, match="output exists"):
        compress_file(src, srz, quality=10)
    assert srz.read_bytes() == result.data
    compress_file(src, srz, quality=10, overwrite=True)
    assert srz.read_bytes() != result.data
    image = decompress_file(srz, png)
    assert io.read_image(png).pixels.shape == image.pixels.shape == (37, 45, 3)
    with pytest.raises(io.ImageError, match="output exists"):
        decompress_file(srz, png)
    decompress_file(srz, png, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.srz", "in.png"]


def test_decompressing_a_bad_file_writes_nothing(tmp_path):
    bad = tmp_path / "bad.srz"
    bad.write_bytes(compress(_gradient(), quality=50)[:-10])
    with pytest.raises(ContainerError, match=r"bad\.srz: truncated payload"):
        decompress_file(bad, tmp_path / "out.png")
    with pytest.raises(io.ImageError, match="no such file"):
        decompress_file(tmp_path / "missing.srz", tmp_path / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["bad.srz"]  # no output, no temp file


# --------------------------------------------------------------------------- integrity


def test_version_1_fixture_still_decodes():
    """A file written before the whole-file checksum decodes to the same pixels as then."""
    data = V1_FIXTURE.read_bytes()
    assert data[3] == 1 and len(data) == 357
    header, payload, icc, exif = unpack(data)
    assert (header.width, header.height, header.scale, header.codec, header.model) == (
        32, 32, 2, "jpeg", "bicubic",
    )  # fmt: skip
    out = decompress(data, device="cpu")
    assert out.pixels.shape == (32, 32, 3) and out.mode == "RGB"
    assert hashlib.sha256(out.pixels.tobytes()).hexdigest() == V1_PIXELS_SHA256
    assert out.icc_profile == b"fixture icc" and exif.startswith(b"Exif")
    assert pack(header, payload, icc, exif, version=1) == data  # v1 is reproduced exactly
    # The same image in version 2: the same pixels, 4 bytes more; and in the current version.
    v2 = pack(header, payload, icc, exif, version=2)
    assert len(v2) == len(data) + TRAILER_SIZE and v2[3] == 2
    assert np.array_equal(decompress(v2, device="cpu").pixels, out.pixels)
    current = pack(header, payload, icc, exif)
    assert current[3] == VERSION
    assert np.array_equal(decompress(current, device="cpu").pixels, out.pixels)


def test_version_2_fixture_still_decodes():
    """A file written before the section table decodes to the same pixels as then."""
    data = V2_FIXTURE.read_bytes()
    assert data[3] == 2 and len(data) == 359
    header, payload, icc, exif = unpack(data)
    assert (header.width, header.height, header.scale, header.codec, header.model) == (
        48, 40, 2, "webp", "bicubic",
    )  # fmt: skip
    out = decompress(data, device="cpu")
    assert out.pixels.shape == (40, 48, 3) and out.mode == "RGB"
    assert hashlib.sha256(out.pixels.tobytes()).hexdigest() == V2_PIXELS_SHA256
    assert out.icc_profile == b"v2 fixture icc" and exif.startswith(b"Exif")
    assert pack(header, payload, icc, exif, version=2) == data  # v2 is reproduced exactly
    current = pack(header, payload, icc, exif)
    assert current[3] == VERSION
    assert np.array_equal(decompress(current, device="cpu").pixels, out.pixels)


@pytest.mark.parametrize("where", ["icc", "exif", "payload", "checksum"])
def test_whole_file_checksum(valid_v2, where, tmp_path):
    valid = valid_v2
    header, payload, icc, exif = unpack(valid)
    offset = {
        "icc": HEADER_SIZE + 4 + 3,
        "exif": HEADER_SIZE + 4 + len(icc) + 4 + 5,
        "payload": len(valid) - TRAILER_SIZE - len(payload) // 2,
        "checksum": len(valid) - 1,
    }[where]
    damaged = bytearray(valid)
    damaged[offset] ^= 0x10
    with pytest.raises(ContainerError, match="file checksum mismatch") as info:
        unpack(bytes(damaged))
    assert "\n" not in str(info.value)
    bad = tmp_path / "damaged.srz"
    bad.write_bytes(bytes(damaged))
    with pytest.raises(ContainerError, match=r"damaged\.srz: file checksum mismatch") as info:
        decompress_file(bad, tmp_path / "out.png")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.srz"]


def test_pack_refuses_unknown_versions():
    for version in (0, VERSION + 1, True):
        with pytest.raises(ContainerError, match="cannot write .srz version"):
            pack(Header(4, 4, 3, 1, 1), b"x", version=version)


def test_decoding_leaves_pillow_globals_alone(monkeypatch):
    """No thread can see Pillow's bomb limit switched off while another thread decodes."""
    from PIL import ImageFile

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 4)  # far below any payload here
    files = {name: compress(_gradient(), codec=name, quality=70) for name in ("jpeg", "avif")}
    expected = {name: decompress(data).pixels for name, data in files.items()}
    assert PILImage.MAX_IMAGE_PIXELS == 4 and ImageFile.LOAD_TRUNCATED_IMAGES is False
    seen, failures = set(), []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(PILImage.MAX_IMAGE_PIXELS)

    def work(name: str) -> None:
        for _ in range(10):
            if not np.array_equal(decompress(files[name]).pixels, expected[name]):
                failures.append(name)

    watcher = threading.Thread(target=watch)
    workers = [threading.Thread(target=work, args=(n,)) for n in ("jpeg", "avif") * 2]
    watcher.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    watcher.join()
    assert seen == {4} and not failures
    # WebP's plugin applies the limit itself: a one-line error, not a traceback.
    with pytest.raises(ContainerError, match="over Pillow's decompression-bomb limit") as info:
        decompress(compress(_gradient(), codec="webp", quality=70))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- devices


def test_device_is_checked_and_reaches_the_restorer(monkeypatch):
    import torch

    if not torch.cuda.is_available():
        for call in (
            lambda: compress(_gradient(), quality=50, device="cuda"),
            lambda: compress(_gradient(), target_bpp=2.0, scale="auto", device="cuda"),
            lambda: decompress(compress(_gradient(), quality=50), device="cuda"),
        ):
            with pytest.raises(DeviceError, match="CUDA is not available") as info:
                call()
            assert "\n" not in str(info.value)
    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        compress(_gradient(), quality=50, device="gpu0")
    loads, runs = [], []
    real_load, real_decode = api.models.load_restorer, pipeline.decode_pixels

    def load(model, scale, **kw):
        loads.append(kw.get("device"))
        return real_load(model, scale, **kw)

    def decode(header, payload, net, **kw):
        runs.append(kw.get("device"))
        return real_decode(header, payload, net, **kw)

    monkeypatch.setattr(api.models, "load_restorer", load)
    monkeypatch.setattr(pipeline, "decode_pixels", decode)
    image = io.read_image(PATTERN).pixels[:64, :64]
    compress(image, codec="webp", target_bpp=1.0, scale="auto", model="bicubic", device="cpu")
    assert loads == runs[1:] == [torch.device("cpu")] * 3  # x2, x3, x4 on the device asked
    assert runs[0] == torch.device("cpu")  # x1 (nothing to restore)


# --------------------------------------------------------------------------- files


def test_compress_file_creates_the_output_folder(tmp_path):
    src = tmp_path / "in.png"
    io.write_image(src, io.Image(_gradient()))
    dst = tmp_path / "new" / "deeper" / "a.srz"
    result = compress_file(src, dst, quality=50)
    assert dst.read_bytes() == result.data
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ImageError, match="is a file, not a folder") as info:
        compress_file(src, blocker / "a.srz", quality=50)
    assert "\n" not in str(info.value) and "a.srz" in str(info.value)
    with pytest.raises(ImageError, match="is a folder"):
        compress_file(src, tmp_path / "new", quality=50)


def test_compress_file_failures_leave_nothing(tmp_path):
    src = tmp_path / "in.png"
    io.write_image(src, io.Image(_gradient()))
    rgba = tmp_path / "alpha.png"
    PILImage.fromarray(np.dstack([_gradient(), np.full((37, 45), 9, np.uint8)])).save(rgba)
    cases = [
        (src, dict(target_bpp=0.01), TargetBitrateError, r"in\.png: jpeg x1: even quality 1"),
        (rgba, dict(quality=50), ImageError, r"alpha\.png: \.srz does not store transparency"),
        (src, dict(quality=500), ConfigError, "jpeg quality must be an integer 1..100"),
        (src, dict(codec="png", quality=5), ConfigError, "unknown codec 'png'"),
        (tmp_path / "none.png", dict(quality=50), ImageError, r"none\.png"),
    ]
    for source, kwargs, kind, message in cases:
        with pytest.raises(kind, match=message) as info:
            compress_file(source, tmp_path / "out" / "a.srz", **kwargs)
        assert isinstance(info.value, SuperresError) and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.png", "in.png"]
    with pytest.warns(TargetBitrateWarning):
        result = compress_file(src, tmp_path / "a.srz", target_bpp=0.01, allow_over=True)
    assert not result.met_target and (tmp_path / "a.srz").read_bytes() == result.data


def test_decompress_file_checks_the_output_before_decoding(tmp_path, monkeypatch):
    srz = tmp_path / "a.srz"
    srz.write_bytes(compress(_gradient(), quality=50))
    (tmp_path / "exists.png").write_bytes(b"mine")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the output was checked")

    monkeypatch.setattr(api, "decompress", no_decoding)
    for dst, message in [
        (tmp_path / "out.bmp", r"out\.bmp: unsupported output extension '\.bmp'"),
        (tmp_path / "out", r"out: unsupported output extension '\(none\)'"),
        (tmp_path / "exists.png", r"exists\.png: output exists"),
        (srz / "x.png", r"a\.srz is a file, not a folder"),
    ]:
        with pytest.raises(ImageError, match=message) as info:
            decompress_file(srz, dst)
        assert "\n" not in str(info.value)
    monkeypatch.undo()
    out = tmp_path / "made" / "b.png"
    decompress_file(srz, out)
    assert io.read_image(out).pixels.shape == (37, 45, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.srz", "exists.png", "made"]


def test_restorers_are_loaded_once_per_process():
    """A service decoding many files reuses the restorer instead of reloading its weights."""
    from superres.codec import models

    first, digest = models.load_restorer("codec", 2)
    again, digest_again = models.load_restorer("codec", 2)
    assert first is again and digest == digest_again
    assert models.load_restorer("fast", 2)[0] is not first


def test_decompress_tiles_and_reports_progress_without_changing_pixels() -> None:
    """``tile`` only bounds memory (the restorers tile exactly) and ``progress`` is called
    between tiles; an exception it raises stops the decoding."""
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    data = compress(pixels, codec="jpeg", quality=80, scale=2, model="fast")
    whole = decompress(data).pixels
    calls: list[tuple[int, int]] = []
    tiled = decompress(data, tile=16, progress=lambda d, t: calls.append((d, t)))
    assert np.array_equal(tiled.pixels, whole)
    assert calls[-1][0] == calls[-1][1] > 1 and [d for d, _ in calls] == sorted(d for d, _ in calls)

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        if done >= 2:
            raise Stop

    with pytest.raises(Stop):
        decompress(data, tile=16, progress=stop)


def test_compress_auto_reports_the_progress_of_its_restorations() -> None:
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    calls: list[tuple[int, int]] = []
    plain = compress(pixels, codec="jpeg", target_bpp=2.0, scale="auto", model="fast")
    tracked = compress(pixels, codec="jpeg", target_bpp=2.0, scale="auto", model="fast",
                             tile=16, progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert tracked == plain  # the same choice and bytes
    assert calls and all(0 <= d <= t for d, t in calls) and calls.count((4, 4)) >= 2  # 2+ scales
