"""The page in a real headless Chromium (Debian's, driven by Playwright): upload an image,
wait for the result, check the displayed sizes, the slider, zoom and the download, then
compress and check the reported sizes and PSNR. Skips only where Playwright or Chromium is
missing (CI installs both: see .ci/run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import load_script

pytest.importorskip("fastapi", reason="the serve extra (FastAPI) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
pytest.importorskip("playwright", reason="Playwright is not installed")


tool = load_script("tools/service_screenshot.py")
if tool.find_chromium() is None:
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with tool.launch() as running:
        yield running


@pytest.fixture(scope="module")
def server():
    with tool.ThreadServer(models=("fast", "bicubic"), default_model="fast") as running:
        yield running


@pytest.fixture
def photo(tmp_path) -> Path:
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(small).resize((48, 40), Image.Resampling.BICUBIC).save(path)
    return path


def test_upscale_in_the_browser(browser, server, photo, tmp_path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    shown = tool.upscale_on_page(page, server.url, photo, "fast", 2)
    assert shown["error"] == ""
    assert shown["outSize"] == "96×80"
    assert shown["after"] == [96, 80] and shown["before"] == [48, 40]
    # before and after are displayed at the same size, one over the other
    assert shown["afterBox"] == pytest.approx(shown["beforeBox"], abs=0.5)
    assert shown["model"] == "fast x2"

    tool.set_range(page, "#slider", 20)
    assert "20%" in page.eval_on_selector("#after-clip", "el => el.style.clipPath")
    box = page.locator("#compare").bounding_box()
    page.mouse.click(box["x"] + 0.75 * box["width"], box["y"] + box["height"] / 2)
    assert float(page.input_value("#slider")) == pytest.approx(75, abs=2)  # click to split
    width = page.eval_on_selector("#before", "el => el.getBoundingClientRect().width")
    tool.set_range(page, "#zoom", 2)
    zoomed = page.eval_on_selector("#before", "el => el.getBoundingClientRect().width")
    assert zoomed == pytest.approx(2 * width, rel=0.02)

    with page.expect_download() as info:
        page.click("#download")
    saved = tmp_path / "download.png"
    info.value.save_as(saved)
    assert info.value.suggested_filename == "photo_x2.png"
    with Image.open(saved) as image:
        assert image.size == (96, 80)

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1200
    page.close()


def test_compress_in_the_browser(browser, server, photo) -> None:
    page = browser.new_page()
    page.goto(server.url)
    page.wait_for_selector("#codec option[value='webp']", state="attached")
    page.click("#mode-compress")
    assert page.is_visible("#compress-options") and not page.is_visible("#upscale-options")
    page.fill("#target-bpp", "3")
    page.select_option("#compress-scale", "2")
    page.set_input_files("#file", str(photo))
    page.click("#run")
    page.wait_for_selector("#row-psnr:not(.hidden)", timeout=120_000)
    assert page.text_content("#error") == ""
    assert page.text_content("#out-size") == "48×40"
    assert "dB" in page.text_content("#psnr")
    assert ".srz" in page.text_content("#out-bytes")
    assert page.is_visible("#download-srz")
    # the same with adaptive downscaling: the page sends adapt=10
    page.check("#adapt")
    with page.expect_response(lambda r: "/v1/compress" in r.url, timeout=120_000) as sent:
        page.click("#run")
    assert sent.value.status == 200 and sent.value.headers["x-superres-adapt"] == "10"
    page.wait_for_selector("#model-used:has-text('adaptive downscaling (10 steps)')",
                           timeout=120_000)  # fmt: skip
    assert page.text_content("#error") == ""
    page.close()


def test_an_error_is_shown_on_the_page(browser, server, tmp_path) -> None:
    bogus = tmp_path / "notes.png"
    bogus.write_bytes(b"this is not an image")
    page = browser.new_page()
    page.goto(server.url)
    page.wait_for_selector("#model option[value='fast']", state="attached")
    page.set_input_files("#file", str(bogus))
    page.click("#run")
    page.wait_for_selector("#error:not(.hidden)")
    assert "415" in page.text_content("#error")
    assert not page.is_visible("#result")
    page.close()


def test_the_page_works_without_the_network(browser, server, photo) -> None:
    """Every request the page makes goes to the service itself (no CDN)."""
    context = browser.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    tool.upscale_on_page(page, server.url, photo, "bicubic", 3)
    assert seen and all(url.startswith((server.url, "blob:", "data:")) for url in seen), seen
    context.close()
