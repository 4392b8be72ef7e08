"""Region maps (superres.core.regions) and the ``superres regions`` command."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from superres.core import regions
from superres.core.io import read_image
from superres.core.resize import imresize
from superres.errors import ConfigError, ContainerError, ImageError, SuperresError
from tests.conftest import dataset


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(array, mode).save(buf, "PNG")
    return buf.getvalue()


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x.ravel(), kind="stable")
    ranks = np.empty(order.size)
    ranks[order] = np.arange(order.size)
    return ranks


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


@pytest.fixture(scope="module")
def kodim() -> np.ndarray:
    return read_image(dataset("Kodak24") / "kodim23.png").pixels


# --------------------------------------------------------------------------- difficulty


def test_difficulty_ranks_flat_below_textured() -> None:
    image = np.full((64, 96, 3), 120, np.uint8)
    image[:, 64:] = _texture(64, 32)
    image[:32, 32:64] = np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None]  # smooth ramp
    scores = regions.difficulty(image, 32)
    assert scores.shape == (2, 3) and scores.dtype == np.float32
    assert scores[1, 0] == 0.0  # flat
    assert 0 < scores[0, 1] < scores[0, 2]  # a ramp is easier than noise
    assert scores[1, 2] > 0.3


def test_difficulty_grid_shape_and_partial_tiles() -> None:
    image = np.zeros((70, 33), np.uint8)
    image[64:, :] = _texture(6, 33)[:, :, 0]
    scores = regions.difficulty(image, 32)
    assert scores.shape == (3, 2)
    assert scores[2, 0] > 0 and scores[2, 1] > 0  # the 6-row tiles average their own pixels


def test_difficulty_is_independent_of_bit_depth_and_dtype() -> None:
    image8 = _texture(64, 64)
    image16 = image8.astype(np.uint16) * 257
    image_f = image8.astype(np.float32) / 255.0
    s8 = regions.difficulty(image8, 16)
    np.testing.assert_allclose(regions.difficulty(image16, 16), s8, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(regions.difficulty(image_f, 16), s8, rtol=1e-5, atol=1e-7)


def test_difficulty_is_local_so_crops_keep_their_scores(kodim: np.ndarray) -> None:
    full = regions.difficulty(kodim, 32)
    cropped = regions.difficulty(kodim[32:, 64:], 32)
    np.testing.assert_allclose(cropped[1:, 1:], full[2:, 3:], rtol=1e-5, atol=1e-7)


def test_difficulty_ranks_survive_a_change_of_resolution(kodim: np.ndarray) -> None:
    """At half the size with half the tile, the same tiles are hard: rank correlation > 0.9."""
    full = regions.difficulty(kodim, 32)
    half = imresize(torch_chw(kodim), scale=0.5).clamp(0, 1).permute(1, 2, 0).numpy()
    small = regions.difficulty(half, 16)
    assert small.shape == full.shape
    assert _spearman(full, small) > 0.9


def torch_chw(image: np.ndarray):
    import torch

    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0


def test_difficulty_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="tile"):
        regions.difficulty(np.zeros((8, 8), np.uint8), 0)
    with pytest.raises(ConfigError, match="shape"):
        regions.difficulty(np.zeros((8, 8, 5), np.uint8), 4)
    with pytest.raises(ConfigError, match="int32"):
        regions.difficulty(np.zeros((8, 8), np.int32), 4)


def test_difficulty_is_cheap(kodim: np.ndarray) -> None:
    import time

    regions.difficulty(kodim, 32)
    start = time.perf_counter()
    for _ in range(3):
        regions.difficulty(kodim, 32)
    assert (time.perf_counter() - start) / 3 < 0.075  # 5 % of the quality tier's ~1.5 s


# --------------------------------------------------------------------------- classes


def test_classify_counts_the_thresholds_reached() -> None:
    scores = np.array([[0.0, 0.01, 0.02], [0.05, 0.2, 1.0]], np.float32)
    classes = regions.classify(scores, (0.02, 0.1))
    assert classes.dtype == np.uint8
    assert classes.tolist() == [[0, 0, 1], [1, 2, 2]]
    assert regions.classify(scores, ()).max() == 0


@pytest.mark.parametrize("bad", [(0.1, 0.05), (0.1, 0.1), (float("nan"),), ("x",)])
def test_classify_refuses_bad_thresholds(bad) -> None:
    with pytest.raises(ConfigError, match="thresholds"):
        regions.classify(np.zeros((2, 2)), bad)


def test_default_thresholds_split_the_reference_evenly() -> None:
    for n in (1, 2, 3, 4):
        cuts = regions.default_thresholds(n)
        assert len(cuts) == n - 1 and list(cuts) == sorted(cuts)
    assert regions.default_thresholds(2) == (regions.REFERENCE_QUANTILES[10],)
    with pytest.raises(ConfigError, match="classes"):
        regions.default_thresholds(0)


def test_default_classes_are_all_used_on_a_photograph(kodim: np.ndarray) -> None:
    classes = regions.classify(regions.difficulty(kodim, 32), regions.default_thresholds(3))
    assert set(np.unique(classes).tolist()) == {0, 1, 2}


# --------------------------------------------------------------------------- masks


def _rect_mask(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = 255
    return mask


def test_load_mask_resizes_any_source_to_the_image(tmp_path) -> None:
    small = _rect_mask(50, 100, (10, 20, 30, 60))
    expected = np.zeros((200, 400), bool)
    expected[40:120, 80:240] = True
    path = tmp_path / "mask.png"
    PILImage.fromarray(small > 0).save(path)  # 1-bit PNG
    sources = [
        path,
        str(path),
        _png(small),
        PILImage.fromarray(small),
        small,
        small[:, :, None],
        small > 0,
        small.astype(np.float32) / 255.0,
        small.astype(np.uint16) * 257,
    ]
    for source in sources:
        mask = regions.load_mask(source, (200, 400))
        assert mask.dtype == np.bool_ and mask.shape == (200, 400)
        assert (mask != expected).mean() < 0.01, type(source)
    rgb = np.repeat(small[:, :, None], 3, axis=2)
    assert (regions.load_mask(_png(rgb), (200, 400)) != expected).mean() < 0.01


def test_load_mask_transparent_pixels_are_outside(tmp_path) -> None:
    rgba = np.full((20, 20, 4), 255, np.uint8)
    rgba[:, :10, 3] = 0
    mask = regions.load_mask(_png(rgba), (20, 20))
    assert not mask[:, :9].any() and mask[:, 11:].all()


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_load_mask_errors_are_one_line_naming_the_file(tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a mask\nsecond line\n")
    with pytest.raises(ImageError) as info:
        regions.load_mask(text, (10, 10))
    assert _one_line(info.value).startswith(str(text)) and "not an image" in str(info.value)

    with pytest.raises(ImageError) as info:
        regions.load_mask(tmp_path / "missing.png", (10, 10))
    assert _one_line(info.value).startswith(str(tmp_path / "missing.png"))

    black = tmp_path / "black.png"
    PILImage.new("L", (30, 30)).save(black)
    with pytest.raises(ImageError) as info:
        regions.load_mask(black, (10, 10))
    assert _one_line(info.value) == f"{black}: the mask selects nothing (it is all black)"

    dot = np.zeros((400, 400), np.uint8)
    dot[200, 200] = 255
    with pytest.raises(ImageError, match="selects nothing once resized to 10x10"):
        regions.load_mask(dot, (10, 10))

    truncated = tmp_path / "cut.png"
    truncated.write_bytes(_png(_rect_mask(64, 64, (0, 0, 32, 32)))[:60])
    with pytest.raises(ImageError) as info:
        regions.load_mask(truncated, (10, 10))
    assert _one_line(info.value).startswith(str(truncated))


@pytest.mark.parametrize(
    "source, match",
    [
        (np.zeros((10, 10, 3), np.uint8), "must be H x W"),
        (np.zeros(10, np.uint8), "must be H x W"),
        (np.ones((10, 10), np.int64), "int64"),
        (np.full((10, 10), np.nan, np.float32), "non-finite"),
        ([[1, 0], [0, 1]], "got list"),
    ],
)
def test_load_mask_refuses_wrong_types(source, match) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        regions.load_mask(source, (10, 10), name="roi")
    assert _one_line(info.value).startswith("roi: ")


def test_load_mask_refuses_a_bad_size() -> None:
    with pytest.raises(ConfigError, match="size"):
        regions.load_mask(np.ones((4, 4), bool), (0, 4))


# --------------------------------------------------------------------------- saliency


def test_saliency_finds_a_bright_patch_on_a_flat_background() -> None:
    rng = np.random.default_rng(1)
    image = np.full((240, 320, 3), 90, np.float32) + rng.normal(0, 2, (240, 320, 3))
    image[150:190, 60:110] = 230
    image = np.clip(image, 0, 255).astype(np.uint8)
    sal = regions.saliency(image)
    assert sal.shape == (240, 320) and sal.dtype == np.float32
    assert sal.min() >= 0.0 and sal.max() <= 1.0
    inside = np.zeros((240, 320), bool)
    inside[150:190, 60:110] = True
    assert sal[inside].mean() > 3 * sal[~inside].mean()
    y, x = np.unravel_index(np.argmax(sal), sal.shape)
    assert 140 <= y < 200 and 50 <= x < 120
    mask = regions.auto_mask(image, fraction=0.02)  # the patch is 2.6 % of the image
    assert abs(mask.mean() - 0.02) < 0.005
    assert (mask & inside).sum() / mask.sum() > 0.6  # the smoothing spreads it a little
    ys, xs = np.nonzero(mask)
    assert 150 <= ys.mean() < 190 and 60 <= xs.mean() < 110


def test_auto_mask_of_a_flat_image_is_the_centre() -> None:
    mask = regions.auto_mask(np.full((100, 200), 128, np.uint8), fraction=0.25)
    assert regions.saliency(np.full((100, 200), 128, np.uint8)).max() == 0
    assert mask.sum() == 50 * 100 and mask[25:75, 50:150].all()


def test_auto_mask_on_a_photograph_selects_its_fraction(kodim: np.ndarray) -> None:
    mask = regions.auto_mask(kodim, 0.25)
    assert mask.shape == kodim.shape[:2]
    assert abs(mask.mean() - 0.25) < 0.02
    with pytest.raises(ConfigError, match="fraction"):
        regions.auto_mask(kodim, 0)


def test_region_of_interest_takes_auto_or_a_mask() -> None:
    image = np.full((40, 40, 3), 50, np.uint8)
    image[10:20, 10:20] = 250
    assert regions.region_of_interest("auto", image).shape == (40, 40)
    mask = regions.region_of_interest(_png(_rect_mask(4, 4, (0, 0, 2, 2))), image)
    assert mask[:20, :20].all() and not mask[20:, :].any()


# --------------------------------------------------------------------------- RegionMap


def _map(mask: bool = True, classes: bool = True) -> regions.RegionMap:
    rng = np.random.default_rng(3)
    return regions.RegionMap(
        size=(70, 100),
        tile=32,
        classes=rng.integers(0, 3, (3, 4)).astype(np.uint8) if classes else None,
        thresholds=(0.02, 0.05),
        mask=(rng.random((37, 51)) > 0.5) if mask else None,
    )


@pytest.mark.parametrize("mask, classes", [(True, True), (False, True), (True, False)])
def test_region_map_round_trips_exactly(mask: bool, classes: bool) -> None:
    original = _map(mask, classes)
    for copy in (
        regions.RegionMap.from_bytes(original.to_bytes()),
        regions.RegionMap.from_dict(original.to_dict()),
    ):
        assert copy == original
        if classes:
            assert np.array_equal(copy.class_map(), original.class_map())
        if mask:
            assert np.array_equal(copy.mask_at((7, 9)), original.mask_at((7, 9)))
    import json

    assert regions.RegionMap.from_dict(json.loads(json.dumps(original.to_dict()))) == original
    assert original != _map(not mask, classes)


def test_region_map_is_resolution_independent(kodim: np.ndarray) -> None:
    lr = kodim[:100, :150]
    region_map = regions.RegionMap.from_image(lr, 32, mask=regions.auto_mask(lr))
    assert region_map.grid_shape == (4, 5) and region_map.histogram().sum() == 20
    sr_map = region_map.resize((400, 600))
    assert sr_map.tile == (128.0, 128.0) and sr_map.grid_shape == (4, 5)
    classes = region_map.class_map()
    assert np.array_equal(sr_map.class_map(), np.repeat(np.repeat(classes, 4, 0), 4, 1))
    mask = region_map.mask_at()
    assert np.array_equal(sr_map.mask_at(), np.repeat(np.repeat(mask, 4, 0), 4, 1))
    odd = region_map.resize((150, 225))  # x1.5: the tile becomes 48 pixels
    assert odd.tile == (48.0, 48.0) and odd.class_map()[47, 47] == classes[31, 31]
    assert odd.resize((100, 150)) == region_map
    assert regions.RegionMap.from_bytes(odd.to_bytes()) == odd


def test_region_map_refuses_inconsistent_fields() -> None:
    with pytest.raises(ConfigError, match="classes must be 3x4"):
        regions.RegionMap(size=(70, 100), tile=32, classes=np.zeros((2, 2), np.uint8))
    with pytest.raises(ConfigError, match="mask"):
        regions.RegionMap(size=(70, 100), mask=np.zeros((4, 4), np.uint8))
    with pytest.raises(ConfigError, match="tile"):
        regions.RegionMap(size=(70, 100), tile=0)


def test_region_map_refuses_corrupt_data() -> None:
    data = _map().to_bytes()
    for bad in (b"", b"XXXX" + data[4:], data[:4] + b"\x09" + data[5:], data[:-5], data + b"!"):
        with pytest.raises(ContainerError):
            regions.RegionMap.from_bytes(bad)
    header_end = len(data) - len(zlib.compress(_map()._payload(), 9))
    extra = data[:header_end] + zlib.compress(_map()._payload() + b"\x00", 9)
    with pytest.raises(ContainerError, match="corrupt region map"):
        regions.RegionMap.from_bytes(extra)
    with pytest.raises(ContainerError):
        regions.RegionMap.from_dict({"version": 1, "data": "!!"})
    bomb = data[:header_end] + zlib.compress(bytes(50_000_000), 9)  # 50 MB behind 50 KB
    with pytest.raises(ContainerError, match="does not match its header"):
        regions.RegionMap.from_bytes(bomb)
    rng = np.random.default_rng(0)
    for _ in range(200):  # random damage is refused as ContainerError or decodes
        damaged = bytearray(data)
        damaged[rng.integers(0, len(data))] ^= 1 << int(rng.integers(0, 8))
        try:
            regions.RegionMap.from_bytes(bytes(damaged))
        except SuperresError as err:
            assert isinstance(err, ContainerError)


def test_draw_tints_tiles_and_outlines_the_mask() -> None:
    image = np.full((64, 64, 3), 128, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    region_map = regions.RegionMap(
        size=(64, 64), tile=32, classes=np.array([[0, 1], [2, 3]], np.uint8), mask=mask
    )
    picture = regions.draw(image, region_map)
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8
    assert picture[5, 5, 2] > picture[5, 5, 0]  # class 0: blue
    assert picture[60, 60, 0] > picture[60, 60, 2]  # class 3: red
    assert (picture[16, 20] == 255).all()  # the outline
    assert regions.draw(image[:, :, 0], region_map.resize((32, 32))).shape == (64, 64, 3)


# --------------------------------------------------------------------------- superres regions


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from superres.apps.cli.main import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_regions_draws_the_map_and_prints_the_histogram(tmp_path, capsys) -> None:
    source = dataset("Kodak24") / "kodim23.png"
    out = tmp_path / "map.png"
    mask = tmp_path / "mask.png"
    PILImage.fromarray(_rect_mask(16, 24, (4, 6, 12, 18))).save(mask)
    code, stdout, err = _cli([
        "regions", str(source), "-o", str(out), "--tile", "64", "--classes", "4",
        "--mask", str(mask),
    ], capsys)  # fmt: skip
    assert code == 0, err
    picture = read_image(out)
    assert (picture.width, picture.height) == (768, 512 + 28)  # the legend strip
    lines = stdout.splitlines()
    assert lines[0] == f"{out}: 768x512, 12x8 tiles of 64 px"
    counts = [int(line.split(": ")[1].split()[0]) for line in lines[1:5]]
    assert [line.split()[2] for line in lines[1:5]] == ["(blue,", "(green,", "(yellow,", "(red,"]
    assert sum(counts) == 96
    assert lines[5].startswith(f"  mask {mask}: 25.0 %")

    code, stdout, err = _cli(["regions", str(source), "-o", str(out), "--mask", "auto", "-q",
                              "--overwrite", "--no-legend"], capsys)  # fmt: skip
    assert code == 0 and stdout == "" and err == ""
    assert read_image(out).height == 512


def test_legend_names_each_class_in_its_colour() -> None:
    region_map = regions.RegionMap(
        size=(64, 64), tile=32, classes=np.array([[0, 1], [2, 2]], np.uint8),
        thresholds=(0.03, 0.1), mask=np.ones((4, 4), bool),
    )  # fmt: skip
    strip = regions.legend(region_map, 400, mask_label="region of interest")
    assert strip.shape == (28, 400, 3) and strip.dtype == np.uint8
    colours = {tuple(c) for c in strip.reshape(-1, 3).tolist()}
    for name in regions.palette(3):
        assert regions.CLASS_COLOURS[name] in colours
    assert regions.palette(3) == ("blue", "yellow", "red")
    with pytest.raises(ConfigError, match="1 to 6 classes"):
        regions.palette(7)


def test_cli_regions_help_has_examples(capsys) -> None:
    from superres.apps.cli.main import main

    with pytest.raises(SystemExit):
        main(["regions", "--help"])
    text = capsys.readouterr().out
    assert "superres regions photo.png -o" in text.split("examples:", 1)[1]


@pytest.mark.parametrize(
    "extra, problem, status",
    [
        ([], "output exists (use --overwrite to replace it)", 1),
        (["--mask", "{text}"], "{text}: not an image file", 1),
        (["--mask", "{black}"], "{black}: the mask selects nothing (it is all black)", 1),
        (["--mask", "{missing}"], "{missing}: ", 1),
        (["--classes", "9"], "--classes must be 1 to 6, got 9", 2),
        (["--tile", "0"], "--tile: expected a positive integer, got '0'", 2),
        (["--fraction", "2"], "--fraction: expected a number in (0, 1], got '2'", 2),
    ],
)
def test_cli_regions_refuses_bad_input_in_one_line(tmp_path, capsys, extra, problem, status):
    image = tmp_path / "in.png"
    PILImage.fromarray(_texture(40, 60)).save(image)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    black = tmp_path / "black.png"
    PILImage.new("1", (8, 8)).save(black)
    names = {"text": text, "black": black, "missing": tmp_path / "missing.png"}
    out = tmp_path / "map.png"
    if not extra:
        out.write_bytes(b"keep")
    argv = ["regions", str(image), "-o", str(out), *(e.format(**names) for e in extra)]
    code, stdout, err = _cli(argv, capsys)
    assert code == status
    assert err.count("\n") == 1 and err.startswith("superres: error: ")
    assert problem.format(**names) in err
    if extra:
        assert not out.exists()
    else:
        assert out.read_bytes() == b"keep"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_regions_refuses_an_unreadable_input(tmp_path, capsys) -> None:
    bad = tmp_path / "in.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, _, err = _cli(["regions", str(bad), "-o", str(tmp_path / "map.png")], capsys)
    assert code == 1 and err.startswith(f"superres: error: {bad}: ") and err.count("\n") == 1
    assert not (tmp_path / "map.png").exists()
