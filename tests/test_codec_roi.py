"""Region-of-interest compression and the .srz section table (version 3).

The container: typed sections (unknown optional ones skipped, unknown required ones refused),
the rules a table follows, the mask section's own checks. Compression: the region gets the
bits at the same target, every byte counted; bad masks are one-line errors that leave no file;
``rd --roi`` reports PSNR inside and outside; and on Kodak images, issue 14's floor.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from superres.apps import cli
from superres.codec import (
    ContainerError,
    Header,
    Section,
    compress,
    compress_detailed,
    compress_file,
    decompress,
    pack,
    parse,
    pipeline,
    roi,
    unpack,
)
from superres.codec import container as ct
from superres.codec.rd import psnr_regions
from superres.core import io
from superres.core.metrics import psnr_rgb
from superres.errors import ConfigError, ImageError, SuperresError

DATA = Path(__file__).resolve().parent / "data"
PATTERN = Path(__file__).resolve().parents[1] / "examples" / "pattern.png"
KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "Kodak24"
#: Written by the first version 3 container: the top-left 48x40 of examples/pattern.png,
#: jpeg x2 bicubic at target 4 bpp, an ICC section, the ROI rows 8..31 x columns 16..39.
V3_ROI_FIXTURE = DATA / "v3_jpeg_x2_bicubic_roi.srz"
V3_ROI_PIXELS_SHA256 = "9f76c78bfb576909aa3459426067a31a1f9c2e6d399869e0dbe320ccffecc532"


def _photo(h: int = 96, w: int = 128) -> np.ndarray:
    """Texture everywhere (so that the base layer leaves a residual worth coding)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 80 * np.sin(x / 3.0 + y / 5.0), 128 + 80 * np.cos(y / 2.5),
                     (x * 5 + y * 3) % 256], -1)  # fmt: skip
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _centre(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    return mask


def _one_line(err: BaseException) -> str:
    message = str(err)
    assert message and "\n" not in message
    return message


def _raw_v3(header: Header, entries, bodies: bytes) -> bytes:
    """A version 3 file with any table (``(type, flags, length)`` entries) and valid CRCs."""
    head = struct.pack(
        ">3sBIIBBBB4sH", b"SRZ", 3, header.width, header.height, header.channels,
        header.scale, header.codec_id, header.model_id, header.model_hash, len(entries),
    )  # fmt: skip
    head += b"".join(struct.pack(">HBI", *e) for e in entries)
    data = head + struct.pack(">I", zlib.crc32(head)) + bodies
    return data + struct.pack(">I", zlib.crc32(data))


HEADER = Header(45, 37, 3, 1, 1)


@pytest.fixture(scope="module")
def plain() -> tuple[bytes, np.ndarray]:
    """A plain version 3 file and its decoded pixels."""
    image = _photo(37, 45)
    data = compress(image, quality=60)
    return data, decompress(data).pixels


@pytest.fixture(scope="module")
def with_roi() -> bytes:
    return compress(_photo(), codec="jpeg", target_bpp=3.0, scale=2, model="bicubic",
                    roi=_centre(96, 128))  # fmt: skip


# --------------------------------------------------------------------------- section table


def test_old_and_roi_fixtures_decode():
    out = decompress(V3_ROI_FIXTURE.read_bytes(), device="cpu")
    assert hashlib.sha256(out.pixels.tobytes()).hexdigest() == V3_ROI_PIXELS_SHA256
    assert out.icc_profile == b"v3 fixture icc"
    contents = parse(V3_ROI_FIXTURE.read_bytes())
    assert contents.version == 3 and [s.kind for s in contents.sections] == [4, 5]
    for name, version in (("v1_jpeg_x2_bicubic.srz", 1), ("v2_webp_x2_bicubic.srz", 2)):
        contents = parse((DATA / name).read_bytes())
        assert contents.version == version and contents.sections == ()


def test_extra_sections_round_trip_and_layout():
    payload, icc = b"payload", b"icc bytes"
    extra = (Section(ct.SECTION_ROI_MASK, b"m"), Section(ct.SECTION_ENHANCEMENT, b"e", True),
             Section(900, b"future"))  # fmt: skip
    data = pack(HEADER, payload, icc, None, sections=extra)
    table = [struct.unpack_from(">HBI", data, 22 + 7 * i) for i in range(5)]
    assert table == [(2, 0, 9), (1, 1, 7), (4, 0, 1), (5, 1, 1), (900, 0, 6)]
    assert len(data) == 22 + 7 * 5 + 4 + 9 + 7 + 1 + 1 + 6 + 4
    contents = parse(data)
    assert (contents.header, contents.payload, contents.icc, contents.exif) == (
        HEADER, payload, icc, None,
    )  # fmt: skip
    assert contents.sections == extra[:2] and contents.skipped == (900,)
    assert contents.section(ct.SECTION_ENHANCEMENT) == b"e" and contents.section(3) is None
    assert unpack(data) == (HEADER, payload, icc, None)


def test_unknown_optional_sections_are_skipped(plain):
    data, pixels = plain
    contents = parse(data)
    entries = [(2, 0, 3), (ct.SECTION_BASE, 1, len(contents.payload)), (4242, 0, 5), (7, 0, 0)]
    extended = _raw_v3(contents.header, entries, b"abc" + contents.payload + b"later")
    assert parse(extended).skipped == (4242, 7) and parse(extended).icc == b"abc"
    assert np.array_equal(decompress(extended).pixels, pixels)


def test_unknown_required_sections_are_refused(plain):
    data, _ = plain
    contents = parse(data)
    entries = [(ct.SECTION_BASE, 1, len(contents.payload)), (4242, ct.SECTION_FLAG_REQUIRED, 2)]
    with pytest.raises(ContainerError, match="needs a section of type 4242, which this reader"):
        decompress(_raw_v3(contents.header, entries, contents.payload + b"xx"))


@pytest.mark.parametrize(
    ("entries", "bodies", "message"),
    [
        ([], b"", "0 sections"),
        ([(2, 0, 1)], b"i", "no base layer section"),
        ([(1, 1, 1), (1, 1, 1)], b"pp", "more than one base layer section"),
        ([(1, 1, 1), (2, 0, 0)], b"p", "empty ICC section"),
        ([(1, 1, 1), (4, 0, 1)], b"pm", "a ROI mask section without a enhancement layer"),
        ([(1, 1, 1), (5, 0, 1)], b"pe", "enhancement layer section without a ROI mask"),
        ([(1, 3, 1)], b"p", "unknown flag bits 0x03 of the base layer section"),
        ([(1, 1, 9)], b"p", r"truncated payload \(1 of 9 bytes\)"),
        ([(1, 1, 1 << 31), (2, 0, 1)], b"pi", "payload of 2147483648 bytes runs past the end"),
        ([(1, 1, 1)], b"p+", "1 trailing bytes after the sections"),
    ],
)
def test_broken_tables_are_refused(entries, bodies, message):
    with pytest.raises(ContainerError, match=message) as info:
        parse(_raw_v3(HEADER, entries, bodies))
    _one_line(info.value)


def test_a_table_longer_than_the_file_and_a_damaged_header():
    data = _raw_v3(HEADER, [(1, 1, 1)], b"p")
    lying = bytearray(data)
    lying[20:22] = struct.pack(">H", 9000)  # count: the table would run past the end
    with pytest.raises(ContainerError, match="truncated section table"):
        parse(bytes(lying))
    damaged = bytearray(data)
    damaged[24] ^= 0x01  # in the table: the header CRC covers it
    with pytest.raises(ContainerError, match="header checksum mismatch"):
        parse(bytes(damaged))


def test_pack_refuses_bad_sections():
    with pytest.raises(ContainerError, match="has no sections beyond ICC and EXIF"):
        pack(HEADER, b"p", sections=[Section(900, b"x")], version=2)
    with pytest.raises(ContainerError, match="the ICC section is not an extra one"):
        pack(HEADER, b"p", sections=[Section(ct.SECTION_ICC, b"x")])
    with pytest.raises(ContainerError, match="ROI mask section without"):
        pack(HEADER, b"p", sections=[Section(ct.SECTION_ROI_MASK, b"x")])
    with pytest.raises(ContainerError, match="empty enhancement layer section"):
        pack(HEADER, b"p", sections=[Section(4, b"m"), Section(5, b"")])


# --------------------------------------------------------------------------- mask section


def test_mask_section_round_trip_and_cells():
    mask = np.zeros((37, 45), bool)
    mask[3, 40] = True  # one pixel selects its whole 8x8 cell (cut by the image's edge)
    mask[20:30, 5:9] = True
    body, layers = roi.encode_mask(mask)
    assert body[0] == roi.CELL and len(body) < 30
    decoded = roi.decode_mask(body, (37, 45))
    assert np.array_equal(decoded.grid, layers.grid) and decoded.box == layers.box == (0, 32, 0, 45)
    assert decoded.grid.shape == (5, 6) and decoded.grid.sum() == 5
    assert decoded.mask[0:8, 40:45].all() and decoded.mask[16:32, 0:16].all()
    assert decoded.mask.sum() == 8 * 5 + 16 * 16 and (decoded.mask >= mask).all()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00" + zlib.compress(b"\xff" * 4), "cell of 0 pixels"),
        (b"\x41" + zlib.compress(b"\xff"), "cell of 65 pixels"),
        (b"\x08" + b"not zlib", "corrupt ROI mask"),
        (b"\x08" + zlib.compress(b"\xff" * 3), "wrong size"),
        (b"\x08" + zlib.compress(b"\xff" * 5), "wrong size"),
        (b"\x08" + zlib.compress(b"\xff" * 4) + b"x", "wrong size"),
        (b"\x08" + zlib.compress(b"\xff" * 4)[:-3], "wrong size"),
        (b"\x08" + zlib.compress(b"\xff" * 4), "non-zero padding bits"),
        (b"\x08" + zlib.compress(bytes(4)), "selects nothing"),
    ],
)
def test_bad_mask_sections_are_refused(with_roi, body, message):
    # A 37x45 image: 5 x 6 cells = 30 bits = 4 bytes, 2 padding bits.
    with pytest.raises(ContainerError, match=message) as info:
        roi.decode_mask(body, (37, 45))
    _one_line(info.value)
    # ... and through a file whose checksums agree: refused before any decoding.
    contents = parse(with_roi)
    sections = [Section(4, body), Section(5, contents.section(ct.SECTION_ENHANCEMENT))]
    data = pack(Header(45, 37, 3, 1, 1), b"p", sections=sections)
    with pytest.raises(ContainerError, match=message):
        decompress(data)


def test_a_mask_zip_bomb_is_not_inflated():
    body = b"\x01" + zlib.compress(b"\xff" * (50 << 20))  # 50 MB of set cells
    with pytest.raises(ContainerError, match="wrong size"):
        roi.decode_mask(body, (37, 45))


# --------------------------------------------------------------------------- compression


def test_roi_spends_the_bits_on_the_region(with_roi):
    image, mask = _photo(), _centre(96, 128)
    target = 3.0
    plain = compress_detailed(image, codec="jpeg", target_bpp=target, scale=2, model="bicubic")
    result = compress_detailed(image, codec="jpeg", target_bpp=target, scale=2,
                               model="bicubic", roi=mask)  # fmt: skip
    assert result.data == with_roi  # deterministic
    assert result.bpp == len(result.data) * 8 / (96 * 128) <= target
    assert result.roi_quality is not None and result.roi_bytes > 0
    contents = parse(result.data)
    assert [s.kind for s in contents.sections] == [ct.SECTION_ROI_MASK, ct.SECTION_ENHANCEMENT]
    assert result.roi_bytes == sum(len(s.data) for s in contents.sections)
    out = decompress(result.data).pixels
    before = decompress(plain.data).pixels
    assert result.psnr == pytest.approx(psnr_rgb(out, image))
    inside, outside = psnr_regions(out, image, mask)
    inside_before, outside_before = psnr_regions(before, image, mask)
    assert inside > inside_before + 1.0 and outside < outside_before
    # Outside the region's cells the file decodes to its base layer exactly.
    base = pipeline.decode_pixels(
        contents.header, contents.payload, pipeline.choose_restorer("bicubic", 2).net
    )
    cells = roi.decode_mask(contents.section(ct.SECTION_ROI_MASK), (96, 128)).mask
    assert np.array_equal(out[~cells], base[~cells]) and not np.array_equal(out, base)
    # A heavier weight moves more of the bits into the region.
    heavy = compress_detailed(image, codec="jpeg", target_bpp=target, scale=2,
                              model="bicubic", roi=mask, roi_weight=40)  # fmt: skip
    assert psnr_regions(decompress(heavy.data).pixels, image, mask)[0] >= inside - 0.05


@pytest.mark.parametrize(("codec", "scale", "model"), [("webp", 1, None), ("avif", 2, "lanczos")])
def test_roi_with_other_codecs_scales_and_grey(codec, scale, model):
    image, mask = _photo(), _centre(96, 128)
    for pixels in (image, image[:, :, :1]):
        result = compress_detailed(pixels, codec=codec, target_bpp=3.0, scale=scale,
                                   model=model, roi=mask)  # fmt: skip
        assert result.met_target and result.bpp <= 3.0
        out = decompress(result.data)
        assert out.pixels.shape == pixels.shape
        assert psnr_regions(out.pixels, pixels, mask)[0] > psnr_rgb(out.pixels, pixels)


def test_roi_sources_auto_path_bytes_pil_and_other_sizes(tmp_path):
    image = _photo()
    small = np.zeros((24, 32), np.uint8)  # a quarter-size mask, resized to the image
    small[6:18, 8:24] = 255
    path = tmp_path / "mask.png"
    PILImage.fromarray(small).save(path)
    expected = compress(image, codec="webp", target_bpp=3.0, scale=2, model="bicubic",
                        roi=_centre(96, 128))  # fmt: skip
    for source in (path, str(path), path.read_bytes(), PILImage.open(path), small > 0):
        data = compress(image, codec="webp", target_bpp=3.0, scale=2, model="bicubic",
                        roi=source)  # fmt: skip
        assert data == expected
    auto = compress_detailed(image, codec="webp", target_bpp=3.0, scale=2, model="bicubic",
                             roi="auto")  # fmt: skip
    assert auto.met_target and auto.roi_quality is not None
    both = compress_detailed(image, codec="webp", target_bpp=3.0, scale="auto",
                             model="bicubic", roi=_centre(96, 128))  # fmt: skip
    assert both.met_target and both.roi_quality is not None and both.bpp <= 3.0


def test_roi_target_below_the_lowest_qualities():
    image = _photo()
    with pytest.raises(SuperresError, match="above the target") as info:
        compress(image, codec="jpeg", target_bpp=0.05, scale=2, model="bicubic",
                 roi=_centre(96, 128))  # fmt: skip
    _one_line(info.value)
    with pytest.warns(UserWarning, match="above the target"):
        over = compress_detailed(
            image, codec="jpeg", target_bpp=0.05, scale=2, model="bicubic",
            roi=_centre(96, 128), allow_over=True,
        )  # fmt: skip
    assert not over.met_target and over.quality == 1 and over.roi_quality == 1
    assert decompress(over.data).pixels.shape == image.shape


def test_roi_argument_errors():
    image = _photo()
    with pytest.raises(ConfigError, match="needs target_bpp"):
        compress(image, quality=50, roi="auto")
    for weight in (0.5, float("nan"), True, "8"):
        with pytest.raises(ConfigError, match="roi_weight must be a number >= 1"):
            compress(image, target_bpp=2.0, roi="auto", roi_weight=weight)


# --------------------------------------------------------------------------- bad masks


@pytest.fixture
def mask_files(tmp_path):
    black = tmp_path / "black.png"
    PILImage.fromarray(np.zeros((10, 10), np.uint8)).save(black)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    return {"black": black, "garbage": garbage, "missing": tmp_path / "missing.png"}


@pytest.mark.parametrize(
    ("which", "kind", "message"),
    [
        ("black", ImageError, r"black\.png: the mask selects nothing \(it is all black\)"),
        ("garbage", ImageError, r"garbage\.png"),
        ("missing", ImageError, r"missing\.png"),
        ("number", ConfigError, "a mask must be an image file, its bytes, a PIL image or an array"),
        ("array", ConfigError, "a mask array must be H x W"),
    ],
)
def test_bad_masks_are_one_line_errors_and_leave_no_file(tmp_path, mask_files, which, kind,
                                                          message):  # fmt: skip
    source = tmp_path / "in.png"
    io.write_image(source, io.Image(_photo()))
    mask = {"number": 3.5, "array": np.ones((4, 4, 3), bool)}.get(which, mask_files.get(which))
    out = tmp_path / "out" / "a.srz"
    with pytest.raises(kind, match=message) as info:
        compress_file(source, out, codec="jpeg", target_bpp=2.0, scale=2, model="bicubic",
                      roi=mask)  # fmt: skip
    assert isinstance(info.value, SuperresError)
    _one_line(info.value)
    assert not out.parent.exists()


def test_cli_compress_roi(tmp_path, mask_files, capsys):
    source = tmp_path / "in.png"
    io.write_image(source, io.Image(_photo()))
    mask = tmp_path / "mask.png"
    PILImage.fromarray(_centre(96, 128)).save(mask)
    out = tmp_path / "a.srz"
    argv = ["compress", str(source), "-o", str(out), "--codec", "jpeg", "--target-bpp", "3",
            "--scale", "2", "--model", "bicubic"]  # fmt: skip
    assert cli.main([*argv, "--roi", str(mask)]) == 0
    line = capsys.readouterr().out
    assert "region of interest: " in line and "enhancement quality" in line
    assert out.read_bytes() == compress(_photo(), codec="jpeg", target_bpp=3.0, scale=2,
                                        model="bicubic", roi=_centre(96, 128))  # fmt: skip
    restored = tmp_path / "a.png"
    assert cli.main(["decompress", str(out), "-o", str(restored)]) == 0
    assert np.array_equal(io.read_image(restored).pixels, decompress(out.read_bytes()).pixels)
    capsys.readouterr()
    for bad in ("black", "garbage", "missing"):
        target = tmp_path / f"{bad}.srz"
        assert cli.main([*argv[:3], str(target), *argv[4:], "--roi", str(mask_files[bad])]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("superres: error: ") and f"{bad}.png" in err
        assert not target.exists()
    assert cli.main(["compress", str(source), "-o", str(out), "--quality", "5", "--roi",
                     "auto"]) == 2  # fmt: skip
    assert "--roi needs --target-bpp" in capsys.readouterr().err
    assert cli.main([*argv, "--roi-weight", "4"]) == 2
    assert "--roi-weight goes with --roi" in capsys.readouterr().err


def test_rd_roi_reports_psnr_inside_and_outside(tmp_path, capsys):
    data = tmp_path / "images"
    data.mkdir()
    PILImage.fromarray(_photo(176, 200)).save(data / "a.png")
    mask = tmp_path / "mask.png"
    PILImage.fromarray(_centre(176, 200)).save(mask)
    out = tmp_path / "rd.json"
    argv = ["rd", "--data", str(data), "--codec", "jpeg", "--scales", "2", "--models",
            "bicubic", "--qualities", "10,40", "--roi", str(mask), "--roi-bpp", "1.5",
            "--bpp-window", "0.1,4", "--json", str(out), "-q"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "region of interest" in printed and "PSNR-in" in printed and "PSNR-out" in printed
    assert "jpeg x2 + bicubic, ROI layer" in printed
    result = json.loads(out.read_text())
    names = [c["name"] for c in result["curves"]]
    assert names == [
        "jpeg (full resolution)", "jpeg x2 + bicubic",
        "jpeg (full resolution), ROI layer", "jpeg x2 + bicubic, ROI layer",
    ]  # fmt: skip
    roi_curve = result["curves"][3]["results"]
    assert roi_curve["target_bpp"] == [1.5] and roi_curve["bpp"][0] <= 1.5
    plain = result["curves"][1]["results"]
    assert len(plain["psnr-rgb-roi"]) == len(plain["psnr-rgb-outside"]) == 2
    assert result["roi"]["target_bpp"] == [1.5]
    assert "jpeg x2 + bicubic, ROI layer" not in result["bd_rate"]["percent"]
    missing, never = tmp_path / "nope.png", tmp_path / "n.json"
    nope = ["rd", "--data", str(data), "--scales", "2", "--models", "bicubic", "--qualities",
            "10", "--roi", str(missing), "--json", str(never)]  # fmt: skip
    assert cli.main(nope) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.png" in err and not never.exists()


# --------------------------------------------------------------------------- the floor


@pytest.mark.skipif(not KODAK.is_dir(), reason="needs ../shared/data/Kodak24")
@pytest.mark.parametrize("codec", ["jpeg", "webp"])
def test_kodak_floor(codec):
    """Issue 14: at 0.25 bpp, x2 with the default model, the centred quarter gains >= 1 dB
    inside with roi, every file within the target (two Kodak images; benchmarks/roi_kodak.py
    measures all 24)."""
    from superres.core.degrade import load_hr

    for name in ("kodim05.png", "kodim21.png"):
        image = load_hr(KODAK / name)
        mask = _centre(*image.shape[:2])
        plain = compress_detailed(image, codec=codec, target_bpp=0.25, scale=2)
        with_roi = compress_detailed(image, codec=codec, target_bpp=0.25, scale=2, roi=mask)
        assert plain.bpp <= 0.25 and with_roi.bpp <= 0.25
        before = psnr_regions(decompress(plain.data).pixels, image, mask)
        after = psnr_regions(decompress(with_roi.data).pixels, image, mask)
        assert after[0] >= before[0] + 1.0, (name, before, after)
        assert after[1] < before[1]  # the rest pays for it
