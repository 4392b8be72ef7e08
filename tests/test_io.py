"""Image I/O: every mode, 16-bit, EXIF orientation, ICC/EXIF copying, atomic writes, bad input."""

from __future__ import annotations

import io as bytesio
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms

from superres.apps.cli import main
from superres.core import io
from superres.core.io import read as io_read
from superres.core.io import write as io_write

RNG = np.random.default_rng(7)


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], -1)
    return rgb.astype(np.uint8)


def _save(path: Path, im: PILImage.Image, **kw) -> Path:
    im.save(path, **kw)
    return path


def _no_leftovers(folder: Path, keep: set[str]) -> None:
    names = {p.name for p in folder.iterdir()}
    assert names == keep, names - keep


# --------------------------------------------------------------------------- modes


def test_rgb_and_rgba_round_trip_exactly(tmp_path):
    rgb = _gradient()
    alpha = RNG.integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    _save(tmp_path / "rgb.png", PILImage.fromarray(rgb))
    _save(tmp_path / "rgba.png", PILImage.fromarray(np.dstack([rgb, alpha])))
    a = io.read_image(tmp_path / "rgb.png")
    b = io.read_image(tmp_path / "rgba.png")
    assert a.mode == "RGB" and a.alpha is None and np.array_equal(a.pixels, rgb)
    assert b.mode == "RGBA" and np.array_equal(b.pixels, rgb) and np.array_equal(b.alpha, alpha)
    for ext in (".png", ".tif"):
        io.write_image(tmp_path / f"out{ext}", b)
        c = io.read_image(tmp_path / f"out{ext}")
        assert np.array_equal(c.pixels, rgb) and np.array_equal(c.alpha, alpha), ext


def test_grey_modes_stay_one_channel(tmp_path):
    grey = _gradient()[:, :, 0]
    alpha = RNG.integers(0, 256, grey.shape, dtype=np.uint8)
    _save(tmp_path / "l.png", PILImage.fromarray(grey))
    _save(tmp_path / "la.png", PILImage.fromarray(np.dstack([grey, alpha]), "LA"))
    _save(tmp_path / "bw.png", PILImage.fromarray(grey > 128))  # mode "1"
    l_img, la_img, bw = (io.read_image(tmp_path / n) for n in ("l.png", "la.png", "bw.png"))
    assert l_img.pixels.shape == (24, 32, 1) and np.array_equal(l_img.pixels[:, :, 0], grey)
    assert la_img.mode == "LA" and np.array_equal(la_img.alpha, alpha)
    assert bw.mode == "1" and set(np.unique(bw.pixels)) == {0, 255}
    assert np.array_equal(bw.pixels[:, :, 0] == 255, grey > 128)


def test_palette_with_and_without_transparency(tmp_path):
    rgb = _gradient()
    pal = PILImage.fromarray(rgb).quantize(16)
    _save(tmp_path / "p.png", pal)
    expected = np.asarray(pal.convert("RGB"))
    img = io.read_image(tmp_path / "p.png")
    assert img.mode == "P" and img.alpha is None and np.array_equal(img.pixels, expected)
    _save(tmp_path / "pt.png", pal, transparency=0)
    img = io.read_image(tmp_path / "pt.png")
    index = np.asarray(pal)
    assert img.alpha is not None and np.array_equal(img.alpha == 0, index == 0)


def test_cmyk_is_converted_to_rgb(tmp_path):
    rgb = _gradient()
    cmyk = PILImage.fromarray(rgb).convert("CMYK")
    _save(tmp_path / "c.jpg", cmyk, quality=100)
    _save(tmp_path / "c.tif", cmyk)
    img = io.read_image(tmp_path / "c.tif")
    assert img.mode == "CMYK" and img.pixels.shape == (24, 32, 3)
    assert np.array_equal(img.pixels, np.asarray(cmyk.convert("RGB")))
    jpeg = io.read_image(tmp_path / "c.jpg")
    assert jpeg.pixels.shape == (24, 32, 3)
    assert np.abs(jpeg.pixels.astype(int) - rgb).mean() < 4


def test_sixteen_bit_grey(tmp_path):
    grey = RNG.integers(0, 65536, (20, 30), dtype=np.uint16)
    _save(tmp_path / "g.png", PILImage.fromarray(grey))
    _save(tmp_path / "g.tif", PILImage.fromarray(grey))
    for name in ("g.png", "g.tif"):
        img = io.read_image(tmp_path / name)
        assert img.pixels.dtype == np.uint16 and np.array_equal(img.pixels[:, :, 0], grey), name


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_sixteen_bit_colour_round_trips_exactly(tmp_path, ext, with_alpha):
    """Pillow alone reduces 16-bit RGB(A) to 8 bits; io keeps all 16 bits both ways."""
    rgb = RNG.integers(0, 65536, (19, 23, 3), dtype=np.uint16)
    alpha = RNG.integers(0, 65536, (19, 23), dtype=np.uint16) if with_alpha else None
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    io.write_image(tmp_path / f"x{ext}", io.Image(rgb, alpha, icc_profile=icc))
    assert PILImage.open(tmp_path / f"x{ext}").mode == ("RGBA" if with_alpha else "RGB")
    img = io.read_image(tmp_path / f"x{ext}")
    assert img.pixels.dtype == np.uint16 and np.array_equal(img.pixels, rgb)
    assert img.icc_profile == icc
    if with_alpha:
        assert np.array_equal(img.alpha, alpha)


def test_sixteen_bit_png_with_every_filter_is_decoded(tmp_path):
    """A 16-bit RGB PNG whose rows use each of the five PNG filters (as other encoders write)."""
    rgb = RNG.integers(0, 65536, (10, 9, 3), dtype=np.uint16)
    rows = rgb.astype(">u2").view(np.uint8).reshape(10, -1).astype(np.int32)
    bpp, raw = 6, b""
    for y in range(10):
        kind = y % 5
        cur, up = rows[y], rows[y - 1] if y else np.zeros_like(rows[0])
        out = np.zeros_like(cur)
        for i in range(cur.size):
            a = cur[i - bpp] if i >= bpp else 0
            c = up[i - bpp] if i >= bpp else 0
            b = up[i]
            pred = [0, a, b, (a + b) // 2, 0][kind]
            if kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[i] = (cur[i] - pred) % 256
        raw += bytes([kind]) + out.astype(np.uint8).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 9, 10, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
    (tmp_path / "f.png").write_bytes(png + chunk(b"IEND", b""))
    assert np.array_equal(io.read_image(tmp_path / "f.png").pixels, rgb)


def test_eight_bit_formats_get_rounded_sixteen_bit(tmp_path):
    rgb = (np.arange(24 * 32 * 3).reshape(24, 32, 3) * 29).astype(np.uint16)
    io.write_image(tmp_path / "x.webp", io.Image(rgb), quality=100)
    io.write_image(tmp_path / "x.avif", io.Image(rgb), quality=100)
    for name in ("x.webp", "x.avif"):
        img = io.read_image(tmp_path / name)
        assert img.pixels.dtype == np.uint8 and img.pixels.shape == (24, 32, 3)


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_reset(tmp_path, orientation):
    rgb = _gradient(6, 10)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "superres-test"
    _save(tmp_path / "o.jpg", PILImage.fromarray(rgb), exif=exif.tobytes(), quality=100)
    raw = PILImage.open(tmp_path / "o.jpg")
    from PIL import ImageOps

    expected = np.asarray(ImageOps.exif_transpose(raw).convert("RGB"))
    img = io.read_image(tmp_path / "o.jpg")
    assert np.array_equal(img.pixels, expected)
    assert img.pixels.shape[:2] == ((10, 6) if orientation >= 5 else (6, 10))
    kept = PILImage.Exif()
    kept.load(img.exif)
    assert kept.get(0x010F) == "superres-test" and kept.get(0x0112, 1) == 1


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".avif", ".tif"])
def test_icc_profile_and_exif_are_copied_through_upscale(tmp_path, ext):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = PILImage.Exif()
    exif[0x010F] = "superres-test"
    src = _save(
        tmp_path / "in.png", PILImage.fromarray(_gradient()), icc_profile=icc, exif=exif.tobytes()
    )
    out = tmp_path / f"out{ext}"
    assert main(["upscale", str(src), "-o", str(out), "--model", "bicubic", "-s", "2", "-q"]) == 0
    img = io.read_image(out)
    assert img.pixels.shape[:2] == (48, 64)
    assert img.icc_profile == icc
    kept = PILImage.Exif()
    kept.load(img.exif)
    assert kept.get(0x010F) == "superres-test"


def test_transparent_edges_do_not_darken_through_files(tmp_path):
    """A white disc on transparent *black*: upscaled edge pixels must stay white, not grey."""
    h = w = 32
    y, x = np.mgrid[0:h, 0:w]
    inside = (y - 15.5) ** 2 + (x - 15.5) ** 2 < 10**2
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[inside] = 255
    src = _save(tmp_path / "disc.png", PILImage.fromarray(rgba))
    out = tmp_path / "up.png"
    assert main(["upscale", str(src), "-o", str(out), "--model", "bicubic", "-s", "4", "-q"]) == 0
    img = io.read_image(out)
    edge = (img.alpha > 8) & (img.alpha < 247)
    assert edge.sum() > 100
    assert img.pixels[edge].min() >= 250  # without premultiplication: ~128 at mid-edge


def test_sixteen_bit_is_kept_through_upscale(tmp_path):
    y, x = np.mgrid[0:16, 0:16]
    rgb = np.stack([x * 4000 + 3, y * 4000 + 7, (x + y) * 2000 + 11], -1).astype(np.uint16)
    io.write_image(tmp_path / "in.png", io.Image(rgb))
    out = tmp_path / "out.tif"
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(out), "--model", "bicubic",
                 "-s", "2", "-q"]) == 0  # fmt: skip
    img = io.read_image(out)
    assert img.pixels.dtype == np.uint16 and img.pixels.shape == (32, 32, 3)
    assert np.any(img.pixels % 257 != 0)  # real 16-bit values, not 8-bit ones scaled up


# --------------------------------------------------------------------------- writing


def test_write_refuses_to_overwrite_and_is_atomic(tmp_path):
    img = io.Image(_gradient())
    target = tmp_path / "x.png"
    target.write_bytes(b"mine")
    with pytest.raises(io.ImageError, match=r"x\.png: output exists"):
        io.write_image(target, img)
    assert target.read_bytes() == b"mine"
    io.write_image(target, img, overwrite=True)
    assert np.array_equal(io.read_image(target).pixels, img.pixels)
    _no_leftovers(tmp_path, {"x.png"})


def test_write_errors_name_the_file(tmp_path):
    img = io.Image(_gradient())
    with pytest.raises(io.ImageError, match=r"x\.bmpx: unsupported output extension"):
        io.write_image(tmp_path / "x.bmpx", img)
    with pytest.raises(io.ImageError, match="does not exist"):
        io.write_image(tmp_path / "missing" / "x.png", img)
    with pytest.raises(io.ImageError, match="quality must be between 1 and 100"):
        io.write_image(tmp_path / "x.jpg", img, quality=0)
    _no_leftovers(tmp_path, set())


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def half_written(file, image):  # the PNG writer streams: fail after some bytes are out
        file.write(b"\x89PNG partial")
        raise OSError("disk full")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io_write, "_write_png", half_written)
    monkeypatch.setattr(io_write, "encode_image", broken)
    for name in ("x.png", "x.jpg"):
        with pytest.raises(
            io.ImageError, match=rf"x\.{name[2:]}: cannot write the image \(disk full\)"
        ):
            io.write_image(tmp_path / name, io.Image(_gradient()))
    _no_leftovers(tmp_path, set())


def test_png_encoder_matches_pillow_decoding(monkeypatch):
    """Own PNG writer (Paeth rows, several bands): exact for every channel layout and depth."""
    monkeypatch.setattr(io_write, "_PNG_BAND_BYTES", 500)  # a few rows per band
    for dtype in (np.uint8, np.uint16):
        peak = np.iinfo(dtype).max
        for channels, with_alpha in ((1, False), (1, True), (3, False), (3, True)):
            pixels = RNG.integers(0, peak + 1, (37, 29, channels), dtype=dtype)
            alpha = RNG.integers(0, peak + 1, (37, 29), dtype=dtype) if with_alpha else None
            data = io.encode_image(io.Image(pixels, alpha), "PNG")
            im = PILImage.open(bytesio.BytesIO(data))
            im.load()
            if dtype == np.uint8 or (channels == 1 and not with_alpha):
                got = np.asarray(im)
                want = pixels[:, :, 0] if channels == 1 and not with_alpha else pixels
                if with_alpha:
                    want = np.dstack([pixels, alpha])
                assert np.array_equal(got, want), (dtype, channels, with_alpha)


def test_atomic_write_bytes(tmp_path):
    target = tmp_path / "a.bin"
    io.atomic_write_bytes(target, b"one")
    io.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    with pytest.raises(FileExistsError):
        io.atomic_write_bytes(target, b"three", overwrite=False)
    assert target.read_bytes() == b"two"
    _no_leftovers(tmp_path, {"a.bin"})


def test_pil_conversion_round_trip():
    rgba = np.dstack([_gradient(), np.full((24, 32), 200, np.uint8)])
    im = PILImage.fromarray(rgba)
    im.info["icc_profile"] = b"profile"
    img = io.from_pil(im)
    assert img.icc_profile == b"profile" and np.array_equal(img.alpha, rgba[:, :, 3])
    back = io.to_pil(img)
    assert back.mode == "RGBA" and np.array_equal(np.asarray(back), rgba)
    assert back.info["icc_profile"] == b"profile"
    grey16 = io.to_pil(io.Image(np.full((4, 5, 1), 40000, np.uint16)))
    assert grey16.mode == "I;16" and np.asarray(grey16)[0, 0] == 40000


# --------------------------------------------------------------------------- bad input


def _truncated_png(tmp_path: Path) -> Path:
    buffer = bytesio.BytesIO()
    PILImage.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    path = tmp_path / "truncated.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def _truncated_jpeg(tmp_path: Path) -> Path:
    buffer = bytesio.BytesIO()
    PILImage.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "truncated.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def _bomb(tmp_path: Path) -> Path:
    """A 40 kB PNG that claims 20000 x 20000 pixels (400 M, 1.2 GB of RGB when decoded)."""
    raw = zlib.compress(b"\x00" * (1 + 20000 * 3) * 64, 9)
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.png", "no such file"),
    "folder": (lambda d: (d / "dir.png").mkdir() or d / "dir.png", "is a folder"),
    "text": (lambda d: (d / "notes.png").write_text("hello") and d / "notes.png", "not an image"),
    "empty": (lambda d: (d / "empty.jpg").write_bytes(b"") or d / "empty.jpg", "not an image"),
    "truncated_png": (_truncated_png, "truncated or corrupt"),
    "truncated_jpeg": (_truncated_jpeg, "truncated or corrupt"),
    "bomb": (_bomb, "over the limit"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_naming_the_file(tmp_path, case):
    make, problem = BAD_INPUTS[case]
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    path = make(src_dir)
    with pytest.raises(io.ImageError) as info:
        io.read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


@pytest.mark.parametrize("case", sorted(set(BAD_INPUTS) - {"folder"}))
def test_bad_input_through_the_cli_writes_nothing(tmp_path, case, capsys):
    make, problem = BAD_INPUTS[case]
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    path = make(src_dir)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "x.png"
    assert main(["upscale", str(path), "-o", str(out), "--model", "bicubic", "-s", "2", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and problem in err[0]
    _no_leftovers(out_dir, set())


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = _save(tmp_path / "g.png", PILImage.fromarray(_gradient()))  # 24 x 32 = 768 pixels
    monkeypatch.setenv("SUPERRES_MAX_PIXELS", "700")
    with pytest.raises(io.ImageError, match=r"32x24 = 768 pixels, over the limit of 700"):
        io.read_image(path)
    monkeypatch.setenv("SUPERRES_MAX_PIXELS", "800")
    assert io.read_image(path).pixels.shape == (24, 32, 3)
    assert io.read_image(path, limit=10**9).pixels.shape == (24, 32, 3)


# --------------------------------------------------------------------------- bytes, file objects


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = bytesio.BytesIO()
    PILImage.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_read_image_from_bytes_and_file_objects(tmp_path):
    rgb = _gradient()
    data = _png_bytes(rgb)
    for source in (data, bytearray(data), memoryview(data), bytesio.BytesIO(data)):
        assert np.array_equal(io.read_image(source).pixels, rgb), type(source)
    path = _save(tmp_path / "g.png", PILImage.fromarray(rgb))
    with open(path, "rb") as file:
        assert np.array_equal(io.read_image(file).pixels, rgb)
    # 16-bit RGB needs a second decode of the same data: from bytes too.
    rgb16 = (rgb.astype(np.uint16) * 257 + 3).astype(np.uint16)
    data16 = io.encode_image(io.Image(rgb16), "PNG")
    assert np.array_equal(io.read_image(data16).pixels, rgb16)
    assert np.array_equal(io.read_image(bytesio.BytesIO(data16)).pixels, rgb16)


def test_errors_from_bytes_and_file_objects_name_the_source(tmp_path):
    with pytest.raises(io.ImageError, match=r"^<bytes>: not an image file"):
        io.read_image(b"plain text, not an image")
    with pytest.raises(io.ImageError, match=r"^<bytes>: empty file"):
        io.read_image(b"")
    with pytest.raises(io.ImageError, match=r"^<BytesIO>: truncated or corrupt"):
        io.read_image(bytesio.BytesIO(_png_bytes(_gradient())[:-40]))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with open(broken, "rb") as file, pytest.raises(io.ImageError) as info:
        io.read_image(file)
    assert str(info.value).startswith(f"{broken}: ")
    with pytest.raises(io.ImageError, match=r"^<bytes>: image is 32x24 = 768 pixels, over"):
        io.read_image(_png_bytes(_gradient()), limit=700)
    text = tmp_path / "t.txt"
    text.write_text("text")
    with open(text) as file, pytest.raises(TypeError, match="binary file object"):
        io.read_image(file)
    with pytest.raises(TypeError, match="a path, bytes or a binary file object"):
        io.read_image(12345)


def test_reading_leaves_pillows_bomb_limit_alone(monkeypatch):
    """The size limit is this package's (checked from the header); Pillow's global is not
    changed, not even for a moment, and does not decide what can be read."""
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse 768 px
    observed = []
    real_open = io_read._open

    def spy(file):
        observed.append(PILImage.MAX_IMAGE_PIXELS)
        return real_open(file)

    monkeypatch.setattr(io_read, "_open", spy)
    rgb = _gradient()
    assert np.array_equal(io.read_image(_png_bytes(rgb)).pixels, rgb)
    assert observed and set(observed) == {100}
    assert PILImage.MAX_IMAGE_PIXELS == 100


def test_atomic_write_fsyncs_the_file_and_the_folder(tmp_path, monkeypatch):
    import os
    import stat

    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    io.atomic_write_bytes(tmp_path / "a.bin", b"data")
    assert synced == ["file", "folder"]
    synced.clear()
    io.write_image(tmp_path / "b.png", io.Image(_gradient()))
    assert synced == ["file", "folder"]
    _no_leftovers(tmp_path, {"a.bin", "b.png"})


def test_output_format_and_existing_outputs(tmp_path):
    assert [io.output_format(n) for n in ("x.JPG", ".png", "webp", "TIFF", "a.b/c.avif")] == [
        "JPEG", "PNG", "WEBP", "TIFF", "AVIF"
    ]  # fmt: skip
    with pytest.raises(io.ImageError, match="unsupported output format '.bmp'"):
        io.output_format("out.bmp")
    target = tmp_path / "a.png"
    io.write_image(target, io.Image(_gradient()))
    with pytest.raises(io.ImageError) as info:
        io.write_image(target, io.Image(_gradient()))
    assert str(info.value) == f"{target}: output exists"  # no CLI flag in a library message
