"""Training data: HR folders -> (LR, HR) patch pairs, deterministic from (seed, iteration, k).

Data flow::

    HR file --read_image--> uint8 RGB (grey replicated, alpha dropped, 16-bit rounded to 8)
      --modcrop(scale)--> HR --quantize(imresize(HR, 1/scale))--> LR        (once per image)
    (seed, iteration, k) --rng--> image, LR crop position, dihedral transform
      --> LR patch (patch x patch) and the HR patch covering exactly the same area

* **LR synthesis** is the evaluator's (:func:`superres.core.degrade.make_lr`): MATLAB-compatible
  bicubic through :mod:`superres.core.resize`, rounded to 8 bits. It runs once per image and scale
  when the dataset is built; the pairs are kept in memory as ``uint8`` arrays, or in
  ``cache_dir`` as ``.npy`` files that later runs (and every process of a distributed run)
  memory-map instead of decoding and resizing again.
* **Small images are skipped**: an image whose LR version is smaller than the patch in either
  dimension is left out (and reported), rather than padded, so every patch is real image
  content. Building the dataset fails if no image is left.
* **Sampling is a pure function** of ``(seed, iteration, k)``, ``k`` being the position in the
  global batch: :meth:`PatchDataset.sample` draws the image (uniformly), the crop and one of the
  8 dihedral transforms from ``np.random.default_rng([seed, iteration, k])``. No sampler or
  worker RNG state exists, so resuming at any iteration, changing ``num_workers`` or splitting
  the global batch over processes (:class:`IterationBatchSampler` gives rank ``r`` the
  positions ``r * b .. (r + 1) * b - 1``) all see exactly the same patches.
"""

from __future__ import annotations

import hashlib
import io as _bytes_io
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from superres.core.degrade import (
    dihedral,
    list_images,
    load_hr,
    make_lr_array,
    modcrop,
    rescale_array,
)

__all__ = [
    "CodecDegradation",
    "IterationBatchSampler",
    "PatchDataset",
    "TrainPair",
    "load_pairs",
    "make_loader",
]

_CACHE_VERSION = 1


@dataclass(frozen=True)
class TrainPair:
    """One training image: modcropped HR and its LR, both ``H x W x 3`` uint8."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


def _cache_key(path: Path, scale: int, factor: float = 1.0) -> str:
    stat = path.stat()
    text = f"{_CACHE_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|x{scale}"
    if factor != 1.0:
        text += f"|rescaled {factor!r}"
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _save_npy(path: Path, array: np.ndarray) -> None:
    from superres.core.io import atomic_write_bytes

    buffer = _bytes_io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue(), overwrite=True)


def _cached(
    path: Path, scale: int, cache_dir: Path, factor: float
) -> tuple[np.ndarray, np.ndarray] | None:
    key = _cache_key(path, scale, factor)
    hr_file, lr_file = cache_dir / f"{key}.hr.npy", cache_dir / f"{key}.lr.npy"
    if hr_file.is_file() and lr_file.is_file():
        try:
            hr = np.load(hr_file, mmap_mode="r", allow_pickle=False)
            lr = np.load(lr_file, mmap_mode="r", allow_pickle=False)
            if hr.dtype == lr.dtype == np.uint8 and hr.shape[0] == lr.shape[0] * scale:
                return hr, lr
        except (OSError, ValueError):
            pass  # a corrupt cache entry is rebuilt
    return None


def _load_one(
    path: Path, scale: int, cache_dir: Path | None, factors: Sequence[float] = (1.0,)
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(hr, lr)`` of ``path`` at each HR ``factor`` (1: as it is), from the cache when it
    has them; the file is decoded once, and only if one is missing."""
    source: np.ndarray | None = None
    out = []
    for factor in factors:
        cached = None if cache_dir is None else _cached(path, scale, cache_dir, factor)
        if cached is not None:
            out.append(cached)
            continue
        if source is None:
            source = load_hr(path)
        hr = source if factor == 1.0 else rescale_array(source, factor)
        hr = np.ascontiguousarray(modcrop(hr, scale))
        if hr.shape[0] == 0 or hr.shape[1] == 0:
            out.append((hr, np.zeros((0, 0, 3), np.uint8)))
            continue
        lr = make_lr_array(hr, scale)
        if cache_dir is not None:
            key = _cache_key(path, scale, factor)
            cache_dir.mkdir(parents=True, exist_ok=True)
            _save_npy(cache_dir / f"{key}.hr.npy", hr)
            _save_npy(cache_dir / f"{key}.lr.npy", lr)
        out.append((hr, lr))
    return out


def load_pairs(
    folders: Sequence[str | Path],
    scale: int,
    patch: int,
    *,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    threads: int | None = None,
    rescale: Sequence[float] = (),
) -> tuple[list[TrainPair], list[str]]:
    """Read every image of ``folders`` and make its LR version once.

    Images are decoded and downscaled by ``threads`` threads at once (None: one per CPU core
    up to 16; decoding and torch's resize release the GIL), in the same order and with the
    same bytes as one by one.

    Args:
        folders: Folders of HR images (files directly inside, sorted by name).
        scale: Upscaling factor.
        patch: LR patch size; images whose LR is smaller in either dimension are skipped.
        cache_dir: Where to keep ``.npy`` copies of the HR/LR arrays (keyed by path, size,
            modification time and scale); cached arrays are memory-mapped.
        progress: Optional ``callback(done_files, total_files)``.
        rescale: Extra HR scale factors in (0, 1): each image is also added shrunk by each
            (:func:`~superres.core.degrade.rescale_array`, then modcrop and its own LR),
            named ``folder/file@factor``, after all the full-size images.

    Returns:
        ``(pairs, skipped)``: the usable images, and ``"name (LR hxw)"`` of the skipped ones.

    Raises:
        FileNotFoundError: a folder is missing or holds no images.
        ValueError: every image is smaller than the patch.
    """
    for factor in rescale:
        if not 0 < factor < 1:
            raise ValueError(f"rescale factors must be in (0, 1), got {factor}")
    paths = [f for folder in folders for f in list_images(folder)]
    factors = (1.0, *(float(f) for f in rescale))
    cache = Path(cache_dir) if cache_dir is not None else None
    threads = min(os.cpu_count() or 1, 16) if threads is None else max(1, int(threads))
    loaded = []  # per file, its (hr, lr) at each factor
    with ThreadPoolExecutor(threads) as pool:  # map keeps the order of the files
        for i, found in enumerate(pool.map(lambda p: _load_one(p, scale, cache, factors), paths)):
            loaded.append(found)
            if progress is not None:
                progress(i + 1, len(paths))
    pairs, skipped = [], []
    for j, factor in enumerate(factors):  # every full-size image, then each rescaled set
        for path, found in zip(paths, loaded, strict=True):
            hr, lr = found[j]
            name = f"{path.parent.name}/{path.name}" + (f"@{factor:g}" if factor != 1 else "")
            if lr.shape[0] < patch or lr.shape[1] < patch:
                skipped.append(f"{name} (LR {lr.shape[0]}x{lr.shape[1]})")
            else:
                pairs.append(TrainPair(name, hr, lr))
    if not pairs:
        raise ValueError(
            f"no training image is large enough for {patch}x{patch} LR patches at x{scale} "
            f"({len(skipped)} skipped); lower data.patch"
        )
    return pairs, skipped


@dataclass(frozen=True)
class CodecDegradation:
    """Codec in the loop: LR patches are encoded and decoded by a random codec and quality.

    Used to train restoration models for :mod:`superres.codec`, whose input is a decoded,
    artefacted image rather than clean bicubic LR. Each patch draws (from the sample's own
    RNG, so it stays a pure function of ``(seed, iteration, k)``): whether it stays clean
    (probability ``clean``), one of ``codecs`` uniformly, and a quality uniformly in that
    codec's inclusive range. The encoder is the one ``superres compress`` uses (4:2:0).
    LR crops start on multiples of ``align`` pixels, so the codec's block grid falls on
    the patch as it falls on a whole image (16: JPEG's 4:2:0 MCU, WebP's macroblock).

    Attributes:
        codecs: ``(name, lowest quality, highest quality)`` per codec.
        clean: Probability that a patch is left uncompressed.
        align: LR crop positions are multiples of this.
    """

    codecs: tuple[tuple[str, int, int], ...]
    clean: float = 0.0
    align: int = 16

    def __post_init__(self) -> None:
        from superres.codec import get_codec

        if not self.codecs:
            raise ValueError("codec degradation needs at least one codec")
        for name, low, high in self.codecs:
            codec = get_codec(name)
            codec.check_quality(low)
            codec.check_quality(high)
            if low > high:
                raise ValueError(f"{name} quality range {low}..{high} is empty")
        if not 0 <= self.clean <= 1:
            raise ValueError(f"clean probability must be in [0, 1], got {self.clean}")
        if self.align < 1:
            raise ValueError(f"align must be >= 1, got {self.align}")

    def draw(self, rng: np.random.Generator) -> tuple[str, int] | None:
        """``(codec, quality)`` for one patch, or None to leave it clean."""
        if rng.random() < self.clean:
            return None
        name, low, high = self.codecs[int(rng.integers(len(self.codecs)))]
        return name, int(rng.integers(low, high + 1))

    @staticmethod
    def apply(lr: np.ndarray, choice: tuple[str, int] | None) -> np.ndarray:
        """``lr`` (``h x w x 3`` uint8) after encoding and decoding with ``choice``."""
        if choice is None:
            return lr
        from superres.codec import get_codec

        codec = get_codec(choice[0])
        payload = codec.encode(np.ascontiguousarray(lr), choice[1])
        return codec.decode(payload, lr.shape[:2], channels=3)


class PatchDataset(Dataset):
    """Random aligned (LR, HR) patches; item ``g`` is sample ``divmod(g, batch)`` = (it, k).

    Items are ``(lr, hr)`` uint8 tensors ``(3, patch, patch)`` and
    ``(3, patch * scale, patch * scale)``; the training loop converts them to float on its
    device (a quarter of the inter-process traffic of float32).
    """

    def __init__(
        self,
        pairs: Sequence[TrainPair],
        scale: int,
        patch: int,
        batch: int,
        seed: int,
        augment: bool = True,
        degradation: CodecDegradation | None = None,
    ) -> None:
        if not pairs:
            raise ValueError("no training images")
        self.pairs = list(pairs)
        self.scale, self.patch, self.batch = scale, patch, batch
        self.seed, self.augment = seed, augment
        self.degradation = degradation

    def __len__(self) -> int:
        return len(self.pairs)  # nominal: indices are (iteration * batch + k), unbounded

    def _draw(self, iteration: int, k: int) -> tuple[int, int, int, int, tuple | None]:
        rng = np.random.default_rng([self.seed, iteration, k])
        index = int(rng.integers(len(self.pairs)))
        h, w = self.pairs[index].lr.shape[:2]
        if self.degradation is None:
            top = int(rng.integers(h - self.patch + 1))
            left = int(rng.integers(w - self.patch + 1))
        else:  # crops on the codec's block grid
            a = self.degradation.align
            top = a * int(rng.integers((h - self.patch) // a + 1))
            left = a * int(rng.integers((w - self.patch) // a + 1))
        transform = int(rng.integers(8)) if self.augment else 0
        choice = None if self.degradation is None else self.degradation.draw(rng)
        return index, top, left, transform, choice

    def sample_params(self, iteration: int, k: int) -> tuple[int, int, int, int]:
        """``(image index, LR top, LR left, dihedral transform)`` of sample ``(iteration, k)``."""
        return self._draw(iteration, k)[:4]

    def sample(self, iteration: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k``-th patch pair of the global batch of ``iteration``."""
        index, top, left, transform, choice = self._draw(iteration, k)
        pair, p, s = self.pairs[index], self.patch, self.scale
        lr = pair.lr[top : top + p, left : left + p]
        if self.degradation is not None:
            lr = self.degradation.apply(lr, choice)
        hr = pair.hr[top * s : (top + p) * s, left * s : (left + p) * s]
        lr, hr = dihedral(lr, transform), dihedral(hr, transform)
        return (
            torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))),
            torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))),
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        iteration, k = divmod(int(index), self.batch)
        return self.sample(iteration, k)


class IterationBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for iterations ``start .. stop - 1`` of one process.

    The global batch of ``batch`` samples is split evenly over ``world_size`` processes:
    process ``rank`` gets positions ``rank * b .. (rank + 1) * b - 1`` with
    ``b = batch // world_size``.
    """

    def __init__(
        self, batch: int, start: int, stop: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch % world_size:
            raise ValueError(f"global batch {batch} is not divisible by the {world_size} processes")
        self.batch, self.start, self.stop = batch, start, stop
        self.per_rank = batch // world_size
        self.offset = rank * self.per_rank

    def __iter__(self) -> Iterator[list[int]]:
        for iteration in range(self.start, self.stop):
            base = iteration * self.batch + self.offset
            yield list(range(base, base + self.per_rank))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_loader(
    dataset: PatchDataset,
    sampler: IterationBatchSampler,
    *,
    workers: int = 2,
    prefetch: int = 4,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``sampler``'s batches (persistent workers, prefetching, ordered)."""
    kwargs: dict = {}
    if workers > 0:
        kwargs.update(
            persistent_workers=True,
            prefetch_factor=prefetch,
            worker_init_fn=_worker_init,
        )
    generator = torch.Generator().manual_seed(0)  # keep the global torch RNG untouched
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=generator,
        **kwargs,
    )
