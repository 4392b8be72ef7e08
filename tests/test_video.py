"""Video upscaling: core.io.video (probe, decode, atomic encode with the audio kept),
``superres.upscale_video`` (a sliding window of frames fused as a burst) and ``superres video``.

The clips are made here with PyAV itself: 12 frames of 48x32 texture moving 2 pixels per
frame at 10 fps, with or without a 1.2 s sine tone in AAC.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

import torch  # noqa: E402

import superres  # noqa: E402
from superres.apps.cli.main import main  # noqa: E402
from superres.core.io import video as video_io  # noqa: E402
from superres.errors import ImageError  # noqa: E402
from superres.inference import engine  # noqa: E402

FRAMES, WIDTH, HEIGHT, FPS, RATE = 12, 48, 32, 10, 16000


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny frames: one torch thread (several only contend on a busy machine); restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _texture(t: int) -> np.ndarray:
    """Frame ``t``: a smooth colour texture moved right by 2 pixels per frame."""
    y, x = np.mgrid[:HEIGHT, :WIDTH].astype(np.float64)
    x = x - 2 * t
    r = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    g = 128 + 100 * np.sin((x + y) / 6.0)
    b = 128 + 100 * np.cos(x / 8.0 - y / 6.0)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def _clip(path: Path, *, audio: str | None = "aac") -> Path:
    """A clip of :func:`_texture` frames; ``audio``: the tone's encoder (None: no audio)."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rate = 48000 if audio == "libopus" else RATE
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if codec == "libx264":
            video.codec_context.options = {"crf": "10"}
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=rate)
            sound.layout = "mono"
        for t in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(_texture(t), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        if sound is not None:
            seconds = np.arange(FRAMES * rate // FPS) / rate
            tone = (0.3 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32)[None]
            samples = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            samples.sample_rate, samples.pts = rate, 0
            for packet in [*sound.encode(samples), *sound.encode(None)]:
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return path


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


def _decoded(path: Path) -> list[np.ndarray]:
    return list(video_io.read_frames(path))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clip(tmp_path_factory.mktemp("video") / "clip.mp4")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_probe_and_read_frames(clip: Path, tmp_path: Path) -> None:
    info = video_io.probe(clip)
    assert (info.frames, info.fps, info.width, info.height) == (FRAMES, Fraction(FPS), 48, 32)
    assert info.has_audio and info.codec in ("h264", "mpeg4")
    frames = _decoded(clip)
    assert len(frames) == FRAMES and frames[0].shape == (32, 48, 3) and frames[0].dtype == np.uint8
    assert np.abs(frames[5].astype(int) - _texture(5)).mean() < 8
    # Matroska does not store a frame count: it is counted.
    mkv = _clip(tmp_path / "clip.mkv", audio=None)
    assert video_io.probe(mkv).frames == FRAMES and not video_io.probe(mkv).has_audio


def test_cli_upscales_a_clip_keeping_frames_fps_and_audio(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.mp4"
    argv = ["video", str(clip), "-o", str(out), "--scale", "2", "--window", "3"]
    assert main([*argv, "--threads", "1"]) == 0
    summary = capsys.readouterr().out
    assert "12 frames" in summary and "96x64" in summary and "audio kept: yes" in summary
    info, source = video_io.probe(out), video_io.probe(clip)
    assert (info.frames, info.width, info.height) == (FRAMES, 96, 64)
    assert info.fps == source.fps and info.has_audio
    assert abs(_audio_seconds(out) - _audio_seconds(clip)) < 0.05
    frames = _decoded(out)
    assert len(frames) == FRAMES and frames[0].shape == (64, 96, 3)
    # Every output frame lies on its own input frame's grid (the reference is the centre
    # frame of its window): it matches frame t, not its moving neighbours.
    for t, sr in enumerate(frames):
        lr = sr.reshape(32, 2, 48, 2, 3).mean(axis=(1, 3))
        errors = [np.abs(lr - _texture(k)).mean() for k in range(FRAMES)]
        assert int(np.argmin(errors)) == t and errors[t] < 10, (t, errors[t])
    assert _leftovers(tmp_path) == []


def test_library_call_window_1_and_progress(clip: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    out = superres.upscale_video(
        clip, tmp_path / "single.mkv", 2, window=1, progress=lambda d, n: calls.append((d, n))
    )
    assert out == tmp_path / "single.mkv"
    assert calls == [(k, FRAMES) for k in range(1, FRAMES + 1)]
    info = video_io.probe(out)
    assert (info.frames, info.width, info.height, info.fps) == (FRAMES, 96, 64, Fraction(FPS))
    assert info.has_audio


def test_learned_method_runs_the_network_once_per_frame(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = []
    real = engine.upscale_array

    def counted(pixels, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        runs.append(pixels.shape)
        return real(pixels, *args, **kwargs)

    monkeypatch.setattr(engine, "upscale_array", counted)
    out = superres.upscale_video(clip, tmp_path / "learned.mp4", 2, window=3, method="learned",
                                 model="bicubic")  # fmt: skip
    assert len(runs) == FRAMES  # not once per window it belongs to (3x)
    assert video_io.probe(out).frames == FRAMES


def test_the_burst_network_runs_once_per_window(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from superres.models.burst import BurstLAFN

    windows, singles = [], []
    real = BurstLAFN.forward

    def counted(self, x, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        windows.append(x.shape[1])
        return real(self, x, *args, **kwargs)

    monkeypatch.setattr(BurstLAFN, "forward", counted)
    monkeypatch.setattr(engine, "upscale_array", lambda *a, **k: singles.append(1))
    out = superres.upscale_video(clip, tmp_path / "burst.mp4", 4, window=3, method="learned")
    assert windows == [2] + [3] * (FRAMES - 2) + [2] and not singles
    info = video_io.probe(out)
    assert (info.frames, info.width, info.height) == (FRAMES, 192, 128)


def test_a_clip_without_audio_gives_a_video_without_audio(tmp_path: Path) -> None:
    silent = _clip(tmp_path / "silent.mkv", audio=None)
    out = tmp_path / "silent_x2.mp4"
    assert main(["video", str(silent), "-o", str(out), "-s", "2", "-k", "1", "-q"]) == 0
    info = video_io.probe(out)
    assert info.frames == FRAMES and not info.has_audio


def test_audio_the_container_cannot_hold_is_re_encoded(tmp_path: Path) -> None:
    if "libopus" not in av.codecs_available:
        pytest.skip("this PyAV build has no Opus encoder")
    opus = _clip(tmp_path / "opus.mkv", audio="libopus")
    out = tmp_path / "opus_x2.avi"  # AVI cannot hold Opus
    superres.upscale_video(opus, out, 2, window=1)
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    assert video_io.probe(out).frames == FRAMES
    assert abs(_audio_seconds(out) - FRAMES / FPS) < 0.1


def test_a_non_video_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_bytes(b"this is not a video\n" * 20)
    out = tmp_path / "out.mp4"
    assert main(["video", str(fake), "-o", str(out), "-s", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("superres: error: ") and str(fake) in err
    assert not out.exists() and _leftovers(tmp_path) == []
    with pytest.raises(ImageError, match="no such file"):
        video_io.probe(tmp_path / "missing.mp4")


def test_an_existing_output_is_kept_unless_overwrite(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"my own file")
    argv = ["video", str(clip), "-o", str(out), "-s", "2", "-k", "1", "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "--overwrite" in err
    assert out.read_bytes() == b"my own file"
    assert main([*argv, "--overwrite"]) == 0
    assert video_io.probe(out).frames == FRAMES


def test_a_failure_part_way_leaves_no_file(clip: Path, tmp_path: Path) -> None:
    def stop(done: int, total: int) -> None:
        if done == 4:
            raise RuntimeError("stop")

    out = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError, match="stop"):
        superres.upscale_video(clip, out, 2, window=1, progress=stop)
    assert not out.exists() and _leftovers(tmp_path) == []
    with pytest.raises(ImageError, match="unsupported video format"):
        superres.upscale_video(clip, tmp_path / "out.gif", 2)
