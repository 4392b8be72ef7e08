"""Video files: probe, decode to RGB frames, encode RGB frames with the source's audio kept.

Data flow::

    file --probe--> VideoInfo (frames, fps, time base, size, audio, codec)
    file --read_video--> Frame(pixels H x W x 3 uint8 RGB, pts)   (read_frames: pixels only)
    frames --VideoWriter (H.264 or MPEG-4 Part 2, yuv420p, the source's time base and
             timestamps; the source's audio packets copied unchanged, or re-encoded to AAC
             where the container cannot hold them)--> file
    write_video: the same into a temporary file beside the target, renamed into place only
             once complete (superres.core.io.atomic)

PyAV (``pip install 'superres[video]'``) is imported only when a function here runs; without
it every function raises :class:`~superres.errors.ConfigError`. Every failure a file causes
(missing, a folder, not a video, no video stream, an output container that cannot be
written) raises :class:`~superres.errors.ImageError`, one line naming the file.

Odd sizes: yuv420p (what players expect) stores colour at half resolution and needs an even
width and height, so a frame with an odd width or height is padded by one column or row
(a copy of the last one) before encoding; :attr:`VideoWriter.size` is the size written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from superres.core.io.atomic import atomic_write
from superres.errors import ConfigError, ImageError

__all__ = [
    "CONTAINERS",
    "Frame",
    "VideoInfo",
    "VideoWriter",
    "container_format",
    "probe",
    "read_frames",
    "read_video",
    "write_video",
]

#: Output extensions and the FFmpeg muxer of each.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}

#: Video encoders in order of preference (the first one this PyAV build has is used).
VIDEO_CODECS = ("libx264", "mpeg4")

#: libx264 settings: visually near-lossless (an upscaled video is worth keeping sharp).
X264_OPTIONS = {"crf": "18", "preset": "medium"}

#: Audio is muxed up to this many seconds ahead of the last video frame written.
AUDIO_LEAD = 0.5

Source = str | os.PathLike[str]


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise ConfigError("video support needs PyAV: pip install 'superres[video]'") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reads from a video file.

    Attributes:
        frames: Number of video frames (from the container's header; where it does not say,
            as in Matroska, counted by demuxing the video packets: one per frame, nothing
            decoded).
        fps: Average frame rate.
        width, height: Frame size in pixels.
        has_audio: Whether the file has an audio stream.
        codec: Name of the video codec (``h264``, ``mpeg4``, ...).
        time_base: Unit of the video stream's timestamps, in seconds.
        duration: Seconds, when the container says (else None).
    """

    frames: int
    fps: Fraction
    width: int
    height: int
    has_audio: bool
    codec: str
    time_base: Fraction
    duration: float | None = None


class Frame(NamedTuple):
    """A decoded frame: ``H x W x 3`` uint8 RGB and its timestamp in the stream's time base
    (None where the file gives none)."""

    pixels: np.ndarray
    pts: int | None


def _problem(err: BaseException) -> str:
    """An FFmpeg error as a short phrase (without errno or the file name PyAV appends)."""
    strerror = getattr(err, "strerror", None)
    return str(strerror or err or type(err).__name__).rstrip(".").lower()


@contextlib.contextmanager
def _open_input(path: Path) -> Iterator[Any]:
    """The file opened for reading by PyAV, with its first video stream checked."""
    av = _av()
    if path.is_dir():
        raise ImageError(path, "is a folder, not a video")
    if not path.is_file():
        raise ImageError(path, "no such file")
    try:
        container = av.open(os.fspath(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise ImageError(path, f"not a readable video ({_problem(err)})") from None
    try:
        if not container.streams.video:
            raise ImageError(path, "has no video stream")
        yield container
    finally:
        container.close()


def _fps(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate.numerator, rate.denominator)
    return Fraction(25)


def probe(path: Source) -> VideoInfo:
    """Frame count, frame rate, size, audio and codec of a video file.

    Raises:
        ImageError: ``path`` is missing, a folder, not a video or has no video stream.
    """
    path = Path(path)
    av = _av()
    with _open_input(path) as container:
        stream = container.streams.video[0]
        frames = int(stream.frames or 0)
        if frames <= 0:
            try:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            except (av.FFmpegError, OSError) as err:
                raise ImageError(path, f"corrupt video ({_problem(err)})") from None
        time_base = stream.time_base or Fraction(1, 1000)
        if stream.duration:
            duration = float(stream.duration * time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = None
        return VideoInfo(
            frames=frames, fps=_fps(stream), width=int(stream.codec_context.width),
            height=int(stream.codec_context.height), has_audio=bool(container.streams.audio),
            codec=stream.codec_context.name, time_base=Fraction(time_base), duration=duration,
        )  # fmt: skip


def read_video(path: Source) -> Iterator[Frame]:
    """Decode the first video stream, frame by frame, in presentation order.

    Raises:
        ImageError: as for :func:`probe`, or corrupt data part way through.
    """
    path = Path(path)
    av = _av()
    with _open_input(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield Frame(frame.to_ndarray(format="rgb24"), frame.pts)
        except (av.FFmpegError, OSError) as err:
            raise ImageError(path, f"corrupt video ({_problem(err)})") from None


def read_frames(path: Source) -> Iterator[np.ndarray]:
    """The frames of the first video stream as ``H x W x 3`` uint8 RGB arrays."""
    for frame in read_video(path):
        yield frame.pixels


def container_format(path: Source) -> str:
    """The FFmpeg muxer for an output path, from its extension.

    Raises:
        ImageError: an extension with no video container here.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        known = ", ".join(sorted(CONTAINERS))
        raise ImageError(path, f"unsupported video format '{suffix}' (supported: {known})")
    return CONTAINERS[suffix]


class VideoWriter:
    """Encode RGB frames into an open binary file, with the audio of a source video.

    The video stream takes the source's frame rate and time base; frames written with
    their source timestamps (``pts``) keep the source's timing exactly (variable frame rate
    included), so frame count and duration are the source's. The source's first audio
    stream is copied packet by packet (no re-encoding) where the container can hold its
    codec, else re-encoded to AAC (the container's default audio codec if not AAC), and
    interleaved with the video as it is written. Use as a context manager: leaving the
    block normally flushes the encoder and writes the rest of the audio.

    Args:
        file: Binary file open for writing (seekable for MP4/MOV).
        format: FFmpeg muxer name (:func:`container_format`).
        info: The source's :func:`probe`.
        width, height: Frame size that will be written (padded to even numbers).
        audio_from: Source video whose audio is kept (None: no audio).
        name: File name for error messages.
    """

    def __init__(
        self,
        file: BinaryIO,
        format: str,
        info: VideoInfo,
        width: int,
        height: int,
        *,
        audio_from: Source | None = None,
        name: Source = "<video>",
    ) -> None:
        av = self._av = _av()
        self.name = Path(name)
        self.size = (width + width % 2, height + height % 2)
        self.audio = "none"  # "copied", "re-encoded" or "none"
        self.frames = 0
        self._info = info
        # AVI has one timestamp per frame period; MPEG-4 Part 2 allows denominators < 2^16.
        self.codec = next((c for c in VIDEO_CODECS if c in av.codecs_available), None)
        if self.codec is None:
            raise ConfigError("this PyAV build has no H.264 or MPEG-4 encoder")
        fixed = format == "avi" or (self.codec == "mpeg4" and info.time_base.denominator > 65535)
        self._time_base = 1 / info.fps if fixed else info.time_base
        self._last_pts: int | None = None
        self._audio_in = None
        try:
            self._out = av.open(file, "w", format=format)
        except (av.FFmpegError, OSError, ValueError) as err:
            raise ImageError(self.name, f"cannot write {format} ({_problem(err)})") from None
        try:
            self._video = self._add_video()
            if audio_from is not None and info.has_audio:
                self._add_audio(Path(audio_from))
        except BaseException:
            self._close()
            raise

    # ------------------------------------------------------------------ setup

    def _add_video(self) -> Any:
        codec, info = self.codec, self._info
        stream = self._out.add_stream(codec, rate=info.fps)
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = self._time_base
        if codec == "libx264":
            stream.codec_context.options = dict(X264_OPTIONS)
        else:  # about 0.3 bit per pixel: near-transparent for MPEG-4 Part 2
            stream.bit_rate = max(1_000_000, int(self.size[0] * self.size[1] * info.fps * 0.3))
        return stream

    def _add_audio(self, source: Path) -> None:
        av = self._av
        self._audio_in = av.open(os.fspath(source), "r")
        template = self._audio_in.streams.audio[0]
        try:
            self._audio = self._out.add_stream_from_template(template)
            self.audio = "copied"
        except (ValueError, av.FFmpegError):
            supported = self._out.supported_codecs
            codec = "aac" if "aac" in supported else self._out.default_audio_codec
            self._audio = self._out.add_stream(codec, rate=template.codec_context.sample_rate)
            self._audio.layout = template.codec_context.layout
            self.audio = "re-encoded"
        self._audio_packets = self._audio_in.demux(template)
        self._pending: Any = None  # an audio packet read but not yet muxed
        self._audio_done = False

    # ------------------------------------------------------------------ writing

    def write(self, pixels: np.ndarray, pts: int | None = None) -> None:
        """Encode one ``H x W x 3`` uint8 RGB frame (padded to :attr:`size` if odd).

        Args:
            pixels: The frame; every frame must have the same size.
            pts: Its timestamp in the source's time base (None: the frame index at the
                source's frame rate; AVI, one timestamp per frame period, rounds it). A
                timestamp not after the previous one is moved just after it (encoders need
                increasing timestamps).
        """
        av = self._av
        pixels = np.asarray(pixels)
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ConfigError(f"expected H x W x 3 uint8 frames, got {pixels.shape} {pixels.dtype}")
        h, w = pixels.shape[:2]
        if (w + w % 2, h + h % 2) != self.size:
            raise ConfigError(f"frame {self.frames} is {w}x{h}, expected {self.size}")
        if h % 2 or w % 2:
            pixels = np.pad(pixels, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        time_base = self._time_base
        if pts is None:
            pts = round(self.frames / (self._info.fps * time_base))
        elif time_base != self._info.time_base:
            pts = round(pts * self._info.time_base / time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self._mux(self._video.encode(frame))
        self.frames += 1
        if self._audio_in is not None:
            self._write_audio(until=float(pts * time_base) + AUDIO_LEAD)

    def _mux(self, packets: Iterable[Any]) -> None:
        try:
            for packet in packets:
                self._out.mux(packet)
        except (self._av.FFmpegError, OSError) as err:
            raise ImageError(self.name, f"cannot write video ({_problem(err)})") from None

    def _write_audio(self, until: float | None) -> None:
        """Mux source audio packets up to ``until`` seconds (None: all of them)."""
        av = self._av
        while not self._audio_done:
            packet = self._pending
            if packet is None:
                try:
                    packet = next(self._audio_packets)
                except StopIteration:
                    self._audio_done = True
                    break
                except (av.FFmpegError, OSError) as err:
                    raise ImageError(self.name, f"cannot read audio ({_problem(err)})") from None
            timed = until is not None and packet.pts is not None
            if timed and float(packet.pts * packet.time_base) > until:
                self._pending = packet
                return
            self._pending = None
            if packet.dts is None and self.audio == "copied":  # the demuxer's final empty one
                continue
            if self.audio == "copied":
                packet.stream = self._audio
                self._mux([packet])
            else:
                try:
                    frames = packet.decode()
                except (av.FFmpegError, OSError) as err:
                    raise ImageError(self.name, f"cannot decode audio ({_problem(err)})") from None
                for frame in frames:
                    frame.pts = None  # the encoder numbers samples from 0
                    self._mux(self._audio.encode(frame))
        if until is None and self.audio == "re-encoded":
            self._mux(self._audio.encode(None))

    def finish(self) -> None:
        """Flush the video encoder, write the remaining audio and the container trailer."""
        self._mux(self._video.encode(None))
        if self._audio_in is not None:
            self._write_audio(until=None)
        try:
            self._out.close()
        except (self._av.FFmpegError, OSError) as err:
            raise ImageError(self.name, f"cannot write video ({_problem(err)})") from None
        finally:
            self._close()

    def _close(self) -> None:
        for container in (self._audio_in, getattr(self, "_out", None)):
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()
        self._audio_in = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self.finish()
        else:
            self._close()


def write_video(
    dst: Source,
    frames: Iterable[Frame | np.ndarray],
    *,
    like: Source,
    info: VideoInfo | None = None,
    size: tuple[int, int],
    overwrite: bool = False,
) -> VideoWriter:
    """Encode ``frames`` into ``dst`` atomically, with the timing and audio of ``like``.

    ``frames`` may be a generator: frames are encoded as they come. The file is written to a
    temporary file beside ``dst`` and renamed onto it only once complete; on any error
    (including one raised by ``frames``) no file is left behind and ``dst`` is untouched.

    Args:
        dst: Output path; its extension picks the container (:data:`CONTAINERS`).
        frames: ``H x W x 3`` uint8 RGB frames, or :class:`Frame` with source timestamps.
        like: Source video: frame rate, time base and audio.
        info: ``probe(like)`` if already known.
        size: ``(width, height)`` of the frames.
        overwrite: Replace an existing ``dst``.

    Returns:
        The finished writer: ``size`` (as written, even), ``frames`` and ``audio``
        (``"copied"``, ``"re-encoded"`` or ``"none"``).

    Raises:
        ImageError: ``dst`` exists (``output exists``) and not ``overwrite``, an unknown
            extension, or the container cannot be written.
    """
    target = Path(dst)
    format = container_format(target)
    if target.is_dir():
        raise ImageError(target, "is a folder; the output must be a file")
    if not target.parent.is_dir():
        raise ImageError(target, f"folder {target.parent} does not exist")
    if target.exists() and not overwrite:
        raise ImageError(target, "output exists")
    info = probe(like) if info is None else info
    done: list[VideoWriter] = []

    def encode(file: BinaryIO) -> None:
        with VideoWriter(file, format, info, *size, audio_from=like, name=target) as writer:
            for item in frames:
                if isinstance(item, Frame):
                    writer.write(item.pixels, item.pts)
                else:
                    writer.write(item)
        done.append(writer)

    try:
        atomic_write(target, encode, overwrite=overwrite)
    except FileExistsError:
        raise ImageError(target, "output exists") from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ImageError(target, f"cannot write ({reason})") from None
    return done[0]
