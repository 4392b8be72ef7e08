"""Regenerate examples/pattern.png: a small synthetic test chart made by this project.

Fine lines, rings, text, a colour gradient and edges at several angles: what upscalers
get wrong first. Run: ``python examples/make_pattern.py``.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 128


def make_pattern(size: int = SIZE) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    # colour gradient background
    rgb = np.stack([x / size, y / size, 1 - (x + y) / (2 * size)], axis=2) * 0.6 + 0.2
    # zone plate in the top-left quadrant
    half = size // 2
    r2 = (x - half / 2) ** 2 + (y - half / 2) ** 2
    zone = 0.5 + 0.5 * np.cos(np.pi * r2 / (1.6 * half))
    mask = (x < half) & (y < half)
    rgb[mask] = zone[mask][:, None]
    image = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    # star of lines (bottom-left)
    cx, cy = half // 2, half + half // 2
    for k in range(24):
        angle = np.pi * k / 24
        dx, dy = np.cos(angle) * (half / 2 - 2), np.sin(angle) * (half / 2 - 2)
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=(20, 20, 20), width=1)
    # text and shapes (right half)
    font = ImageFont.load_default()
    draw.text((half + 4, 4), "superres", fill=(255, 255, 255), font=font)
    draw.text((half + 4, 18), "x2 x3 x4", fill=(0, 0, 0), font=font)
    draw.ellipse([half + 8, 36, size - 8, half + 20], outline=(200, 30, 30), width=2)
    draw.rectangle([half + 10, half + 30, size - 10, size - 10], outline=(10, 90, 200), width=1)
    for i in range(6):
        draw.line(
            [(half + 12 + 6 * i, half + 34), (half + 12 + 6 * i, size - 14)],
            fill=(0, 0, 0),
            width=1 + i % 2,
        )
    return image


if __name__ == "__main__":
    out = Path(__file__).with_name("pattern.png")
    make_pattern().save(out, optimize=True)
    print(f"wrote {out}")
