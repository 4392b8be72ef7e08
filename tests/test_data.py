"""Training data: LR synthesis, aligned crops, dihedral augmentation, deterministic sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from superres.core import degrade
from superres.core.degrade import make_lr, modcrop
from superres.training import data


def make_folder(folder: Path, sizes, seed: int = 0, grey: tuple[int, ...] = ()) -> Path:
    """Smooth random RGB images (grey for the indices in ``grey``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        coarse = rng.random((h // 4 + 2, w // 4 + 2, 3)) * 255
        big = np.kron(coarse, np.ones((4, 4, 1)))[:h, :w]
        arr = np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)
        image = Image.fromarray(arr[:, :, 0], "L") if i in grey else Image.fromarray(arr)
        image.save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "hr", [(37, 45), (50, 41), (26, 30), (9, 40)], grey=(2,))


def test_pairs_modcrop_lr_once_and_skip_small(folder):
    pairs, skipped = data.load_pairs([folder], scale=3, patch=8)
    assert [p.name for p in pairs] == ["hr/img00.png", "hr/img01.png", "hr/img02.png"]
    assert skipped == ["hr/img03.png (LR 3x13)"]
    for pair in pairs:
        assert pair.hr.dtype == pair.lr.dtype == np.uint8
        assert pair.hr.shape[2] == pair.lr.shape[2] == 3
        assert pair.hr.shape[:2] == (pair.lr.shape[0] * 3, pair.lr.shape[1] * 3)
    # LR is exactly the evaluator's: quantize(imresize(modcrop(hr), 1/scale))
    hr = np.array(Image.open(folder / "img00.png"))
    assert pairs[0].hr.shape == (36, 45, 3)
    expected = make_lr(modcrop(torch.from_numpy(hr).permute(2, 0, 1).float() / 255, 3), 3)
    np.testing.assert_array_equal(pairs[0].lr, (expected * 255).round().byte().permute(1, 2, 0))
    # one-channel images are replicated to RGB
    grey = pairs[2]
    assert (grey.hr[..., 0] == grey.hr[..., 1]).all() and (grey.hr[..., 1] == grey.hr[..., 2]).all()
    with pytest.raises(ValueError, match="lower data.patch"):
        data.load_pairs([folder], scale=3, patch=100)
    with pytest.raises(FileNotFoundError):
        data.load_pairs([folder.parent / "missing"], scale=2, patch=8)


def test_disk_cache_round_trip(folder, tmp_path):
    cache = tmp_path / "cache"
    first, _ = data.load_pairs([folder], 2, 8, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 2 * 4
    second, _ = data.load_pairs([folder], 2, 8, cache_dir=cache)
    assert isinstance(second[0].lr, np.memmap)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.hr, b.hr)
        np.testing.assert_array_equal(a.lr, b.lr)


def test_threads_read_the_same_pairs_in_the_same_order(tmp_path):
    folder = make_folder(tmp_path / "many", [(30 + i, 41 - i) for i in range(12)], seed=3)
    calls = []
    one, _ = data.load_pairs([folder], 2, 8, threads=1)
    many, _ = data.load_pairs([folder], 2, 8, threads=5, progress=lambda d, t: calls.append(d))
    assert [p.name for p in many] == [p.name for p in one] == sorted(p.name for p in one)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(a.hr, b.hr)
        np.testing.assert_array_equal(a.lr, b.lr)
    assert calls == list(range(1, 13))
    (folder / "img05.png").write_bytes(b"not a png")  # one bad file fails the whole read
    with pytest.raises(Exception, match="img05"):
        data.load_pairs([folder], 2, 8, threads=5)


def test_rescaled_copies_are_more_images_with_their_own_lr(tmp_path):
    folder = make_folder(tmp_path / "hr", [(48, 60), (40, 40)], seed=4)
    cache = tmp_path / "cache"
    pairs, skipped = data.load_pairs([folder], 2, 8, cache_dir=cache, rescale=(0.5, 0.75))
    names = [p.name for p in pairs]
    assert names == ["hr/img00.png", "hr/img01.png", "hr/img00.png@0.5", "hr/img01.png@0.5",
                     "hr/img00.png@0.75", "hr/img01.png@0.75"]  # fmt: skip
    assert skipped == [] and len(list(cache.glob("*.npy"))) == 2 * 6
    hr = np.asarray(Image.open(folder / "img00.png"))
    small = degrade.rescale_array(hr, 0.5)
    assert small.shape == (24, 30, 3) and pairs[2].hr.shape == (24, 30, 3)
    np.testing.assert_array_equal(pairs[2].hr, small)  # 24x30: already a multiple of 2
    np.testing.assert_array_equal(pairs[2].lr, degrade.make_lr_array(small, 2))
    assert pairs[4].hr.shape == (36, 44, 3)  # 36x45 modcropped
    again, _ = data.load_pairs([folder], 2, 8, cache_dir=cache, rescale=(0.5, 0.75))
    for a, b in zip(pairs, again, strict=True):  # from the cache, keyed by the factor too
        np.testing.assert_array_equal(a.lr, b.lr)
    with pytest.raises(ValueError, match=r"rescale factors must be in \(0, 1\), got 1.5"):
        data.load_pairs([folder], 2, 8, rescale=(1.5,))


def test_dihedral_group():
    square = np.arange(9).reshape(3, 3)
    images = {degrade.dihedral(square, t).tobytes() for t in range(8)}
    assert len(images) == 8  # all eight symmetries are distinct
    np.testing.assert_array_equal(degrade.dihedral(square, 0), square)
    with pytest.raises(ValueError):
        degrade.dihedral(square, 8)


def undo(patch: torch.Tensor, transform: int) -> np.ndarray:
    """Inverse of degrade.dihedral on a (C, H, W) tensor -> (H, W, C) array."""
    a = patch.permute(1, 2, 0).numpy()
    if transform & 4:
        a = a.swapaxes(0, 1)
    if transform & 2:
        a = a[:, ::-1]
    if transform & 1:
        a = a[::-1]
    return a


def test_patches_are_aligned_and_augmented(folder):
    pairs, _ = data.load_pairs([folder], 2, 8)
    ds = data.PatchDataset(pairs, scale=2, patch=8, batch=4, seed=3)
    seen = set()
    for it in range(12):
        for k in range(4):
            lr, hr = ds.sample(it, k)
            assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16) and lr.dtype == torch.uint8
            index, top, left, t = ds.sample_params(it, k)
            seen.add(t)
            pair = pairs[index]
            np.testing.assert_array_equal(undo(lr, t), pair.lr[top : top + 8, left : left + 8])
            np.testing.assert_array_equal(
                undo(hr, t), pair.hr[2 * top : 2 * top + 16, 2 * left : 2 * left + 16]
            )
    assert len(seen) > 4
    plain = data.PatchDataset(pairs, scale=2, patch=8, batch=4, seed=3, augment=False)
    assert {plain.sample_params(it, 0)[3] for it in range(20)} == {0}


def test_sampling_is_a_function_of_seed_iteration_position(folder):
    pairs, _ = data.load_pairs([folder], 2, 8)
    ds = data.PatchDataset(pairs, scale=2, patch=8, batch=4, seed=7)
    again = data.PatchDataset(pairs, scale=2, patch=8, batch=4, seed=7)
    other = data.PatchDataset(pairs, scale=2, patch=8, batch=4, seed=8)
    assert all(torch.equal(ds.sample(5, k)[1], again.sample(5, k)[1]) for k in range(4))
    assert len({ds.sample_params(i, k) for i in range(4) for k in range(4)}) > 8
    assert [ds.sample_params(i, 0) for i in range(8)] != [
        other.sample_params(i, 0) for i in range(8)
    ]
    # item index = iteration * batch + k
    assert torch.equal(ds[5 * 4 + 3][0], ds.sample(5, 3)[0])


def test_loader_is_independent_of_workers_and_sharding(folder):
    pairs, _ = data.load_pairs([folder], 2, 6)
    ds = data.PatchDataset(pairs, scale=2, patch=6, batch=4, seed=1)

    def batches(workers, start=0, rank=0, world=1):
        sampler = data.IterationBatchSampler(4, start, 6, rank, world)
        loader = data.make_loader(ds, sampler, workers=workers, prefetch=2)
        return [(lr.clone(), hr.clone()) for lr, hr in loader]

    serial = batches(0)
    assert len(serial) == 6 and serial[0][0].shape == (4, 3, 6, 6)
    assert serial[2][1].shape == (4, 3, 12, 12)
    with_workers = batches(2)
    resumed = batches(0, start=3)
    shards = [batches(0, rank=r, world=2) for r in range(2)]
    for i in range(6):
        assert torch.equal(serial[i][1], with_workers[i][1])
        merged = torch.cat([shards[0][i][1], shards[1][i][1]])
        assert torch.equal(serial[i][1], merged)
    for i in range(3):
        assert torch.equal(serial[3 + i][0], resumed[i][0])
    with pytest.raises(ValueError, match="not divisible"):
        data.IterationBatchSampler(5, 0, 6, 0, 2)


def test_sixteen_bit_and_alpha_images(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 10
    Image.fromarray(rgba, "RGBA").save(folder / "a.png")
    deep = np.full((20, 20), 65535 // 2, np.uint16)
    Image.fromarray(deep).save(folder / "b.png")
    pairs, _ = data.load_pairs([folder], 2, 4)
    assert pairs[0].hr.shape == (20, 20, 3) and (pairs[0].hr[..., 0] == 200).all()
    assert pairs[1].hr.shape == (20, 20, 3) and int(pairs[1].hr[0, 0, 0]) in (127, 128)


def test_codec_degradation_encodes_block_aligned_patches(tmp_path):
    from superres.codec import get_codec

    folder = make_folder(tmp_path / "big", [(130, 150), (120, 128)])
    pairs, _ = data.load_pairs([folder], 2, 32)
    degradation = data.CodecDegradation((("jpeg", 10, 30), ("webp", 20, 20)), clean=0.25)
    ds = data.PatchDataset(pairs, 2, 32, 4, seed=5, augment=False, degradation=degradation)
    clean_patches = codecs = 0
    for it in range(10):
        for k in range(4):
            lr, hr = ds.sample(it, k)
            index, top, left, transform, choice = ds._draw(it, k)
            assert top % 16 == 0 and left % 16 == 0 and transform == 0
            crop = pairs[index].lr[top : top + 32, left : left + 32]
            np.testing.assert_array_equal(
                hr.numpy().transpose(1, 2, 0),
                pairs[index].hr[2 * top : 2 * top + 64, 2 * left : 2 * left + 64],
            )  # HR stays clean
            if choice is None:
                clean_patches += 1
                np.testing.assert_array_equal(lr.numpy().transpose(1, 2, 0), crop)
                continue
            codecs += 1
            name, quality = choice
            assert (name == "jpeg" and 10 <= quality <= 30) or choice == ("webp", 20)
            codec = get_codec(name)
            expected = codec.decode(codec.encode(np.ascontiguousarray(crop), quality), (32, 32))
            np.testing.assert_array_equal(lr.numpy().transpose(1, 2, 0), expected)
            assert not np.array_equal(expected, crop)
            assert torch.equal(ds.sample(it, k)[0], lr)  # deterministic
    assert clean_patches > 3 and codecs > 20


def test_codec_degradation_config_errors():
    from superres.training.config import ConfigError, load_config

    base = ["data.train=[x]", "model.arch=espcn"]
    cfg = load_config(None, [*base, "data.degrade.codecs=[avif]", "data.degrade.avif=[30,40]"])
    assert cfg.data.degrade.degradation() == data.CodecDegradation((("avif", 30, 40),))
    assert load_config(None, base).data.degrade.degradation() is None
    with pytest.raises(ConfigError, match="data.degrade.codecs: unknown codec 'png'"):
        load_config(None, [*base, "data.degrade.codecs=[png]"])
    with pytest.raises(ConfigError, match="data.degrade: webp quality range 50..40 is empty"):
        load_config(None, [*base, "data.degrade.codecs=[webp]", "data.degrade.webp=[50,40]"])
    with pytest.raises(ConfigError, match="data.degrade: clean probability"):
        load_config(None, [*base, "data.degrade.codecs=[jpeg]", "data.degrade.clean=2"])
