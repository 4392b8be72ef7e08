"""Screenshot of the ``superres serve`` page after an upscale, for README.

Starts the service in this process (uvicorn in a thread, loopback, a free port), drives
Debian's Chromium headless with Playwright (never ``playwright install``: nothing is
downloaded), uploads an image, waits for the result and saves a PNG of the page::

    python tools/service_screenshot.py --image ../shared/data/Set5/butterfly.png \\
        --out docs/service/page.png --model fast --scale 4

tests/test_service_browser.py drives the page with the same helpers (:func:`launch`,
:class:`ThreadServer`, :func:`upscale_on_page`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Flags that keep Chromium from reaching the network or needing a sandbox or a GPU.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def find_chromium() -> str | None:
    """``$SUPERRES_CHROMIUM``, else Debian's ``chromium`` on the PATH (None if absent)."""
    explicit = os.environ.get("SUPERRES_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@contextmanager
def launch(executable: str | None = None) -> Iterator[Any]:
    """A headless Chromium browser (Playwright), closed on exit."""
    from playwright.sync_api import sync_playwright

    path = executable or find_chromium()
    if path is None:
        raise RuntimeError("no Chromium found (apt-get install chromium, or SUPERRES_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class ThreadServer:
    """The service under uvicorn in a daemon thread on a free loopback port."""

    def __init__(self, **settings: Any) -> None:
        import uvicorn

        from superres.apps.service import Settings, create_app

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.settings = Settings(host="127.0.0.1", port=port, **settings)
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(self.settings), host="127.0.0.1", port=port,
                                log_level="warning", access_log=False)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("the service did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def upscale_on_page(page: Any, url: str, image: Path, model: str, scale: int) -> dict[str, Any]:
    """Open the page, upload ``image``, run an upscale and wait for the result; returns what
    the page shows (output size text, the two images' natural and displayed sizes)."""
    page.goto(url)
    page.wait_for_selector(f"#model option[value='{model}']", state="attached")
    page.select_option("#model", model)
    page.select_option("#scale", str(scale))
    page.set_input_files("#file", str(image))
    page.click("#run")
    page.wait_for_selector("#result:not(.hidden)", timeout=120_000)
    page.wait_for_function(
        "document.getElementById('after').complete && "
        "document.getElementById('after').naturalWidth > 0 && "
        "document.getElementById('before').naturalWidth > 0"
    )
    return page.evaluate(
        """() => {
            const box = (id) => document.getElementById(id).getBoundingClientRect();
            const img = (id) => document.getElementById(id);
            return {
                outSize: document.getElementById('out-size').textContent,
                model: document.getElementById('model-used').textContent,
                after: [img('after').naturalWidth, img('after').naturalHeight],
                before: [img('before').naturalWidth, img('before').naturalHeight],
                afterBox: [box('after').width, box('after').height],
                beforeBox: [box('before').width, box('before').height],
                error: document.getElementById('error').textContent,
            };
        }"""
    )


def set_range(page: Any, selector: str, value: float) -> None:
    """Move a range input as a user would (its ``input`` event fires)."""
    page.eval_on_selector(
        selector,
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
        str(value),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot the superres page after an upscale.")
    parser.add_argument("--image", required=True, type=Path, help="image to upload")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--model", default="fast")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--width", type=int, default=1280, help="browser window width")
    parser.add_argument("--height", type=int, default=860, help="browser window height")
    parser.add_argument("--slider", type=int, default=50, help="before/after split (%%)")
    parser.add_argument("--zoom", type=float, default=1.0, help="zoom of the comparison")
    parser.add_argument(
        "--colors",
        type=int,
        default=256,
        help="quantize the PNG to this many colours (0: keep it true-colour)",
    )
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ThreadServer(models=(args.model,), default_model=args.model,
                      max_pixels=4_000_000) as server, launch() as browser:  # fmt: skip
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        shown = upscale_on_page(page, server.url, args.image, args.model, args.scale)
        set_range(page, "#slider", args.slider)
        set_range(page, "#zoom", args.zoom)
        page.screenshot(path=str(args.out), full_page=True)
    if args.colors:
        from PIL import Image

        with Image.open(args.out) as shot:
            rgb = shot.convert("RGB")
            palette = rgb.quantize(args.colors, method=Image.Quantize.MEDIANCUT)
            small = rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        small.save(args.out, optimize=True)
    print(f"{args.out}: {shown['outSize']} by {shown['model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
