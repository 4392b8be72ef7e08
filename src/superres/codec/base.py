"""The :class:`Codec` interface, its registry, and the error every codec and parser raises.

A codec turns an ``H x W x C`` uint8 array (C = 1 grey or 3 RGB) into the smallest payload
it can, and back. Codecs are registered by name and by the numeric id the ``.srz`` container
stores; the built-in ones (:mod:`superres.codec.pillow_codecs`) are registered on first use
of :func:`get_codec` or :func:`list_codecs`.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from superres.errors import ConfigError, ContainerError

__all__ = ["Codec", "ContainerError", "get_codec", "list_codecs", "register_codec"]


class Codec(abc.ABC):
    """A still-image codec: ``pixels --encode(quality)--> bytes --decode--> pixels``.

    Attributes:
        name: Short name (``"jpeg"``), what users type.
        codec_id: Id stored in the container (1..255, unique).
        quality_range: Lowest and highest accepted ``quality`` (higher is better).
        default_quality: Quality used when none is given.
    """

    name: str
    codec_id: int
    quality_range: tuple[int, int] = (1, 100)
    default_quality: int = 75

    @abc.abstractmethod
    def encode(self, pixels: np.ndarray, quality: int, **options: Any) -> bytes:
        """Encode ``pixels`` (``H x W x 1`` or ``H x W x 3`` uint8) at ``quality``.

        The payload holds nothing but the image: no EXIF, ICC or other metadata.

        Raises:
            ConfigError: quality out of :attr:`quality_range`, an unknown option or value.
            ValueError: pixels that are not ``H x W x 1`` or ``H x W x 3`` uint8.
        """

    @abc.abstractmethod
    def decode(
        self, data: bytes, expected_size: tuple[int, int], *, channels: int | None = None
    ) -> np.ndarray:
        """Decode a payload of this codec, trusting nothing in it.

        Args:
            data: The payload.
            expected_size: ``(height, width)`` the payload must have; checked from its
                header before any pixel is decoded.
            channels: 1 or 3 to convert the result to grey or RGB; None keeps what the
                payload holds.

        Returns:
            ``H x W x C`` uint8.

        Raises:
            ContainerError: the payload is corrupt, of another format, or of another size.
        """

    def check_quality(self, quality: int) -> int:
        """``quality`` as an int, or :class:`ConfigError` (a ``ValueError``) if it is outside
        :attr:`quality_range`."""
        low, high = self.quality_range
        integer = isinstance(quality, (int, np.integer)) and not isinstance(quality, bool)
        if not integer or not low <= quality <= high:
            raise ConfigError(
                f"{self.name} quality must be an integer {low}..{high}, got {quality!r}"
            )
        return int(quality)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} id={self.codec_id}>"


_BY_NAME: dict[str, Codec] = {}
_BY_ID: dict[int, Codec] = {}


def register_codec(codec: Codec) -> Codec:
    """Add ``codec`` to the registry (its name and id must be new)."""
    if not 1 <= codec.codec_id <= 255:
        raise ValueError(f"codec id must be 1..255, got {codec.codec_id}")
    if codec.name in _BY_NAME or codec.codec_id in _BY_ID:
        raise ValueError(f"codec {codec.name!r} / id {codec.codec_id} is already registered")
    _BY_NAME[codec.name] = codec
    _BY_ID[codec.codec_id] = codec
    return codec


def _builtins() -> None:
    from superres.codec import pillow_codecs  # noqa: F401  (registers jpeg, webp, avif)


def get_codec(name_or_id: str | int) -> Codec:
    """The registered codec with this name (``"jpeg"``, ``"webp"``, ``"avif"``) or id.

    Raises:
        ConfigError: no such name (a ``ValueError``); :class:`ContainerError` for an unknown
            numeric id, which only comes from a file.
    """
    _builtins()
    if isinstance(name_or_id, str):
        codec = _BY_NAME.get(name_or_id.strip().lower())
        if codec is None:
            known = ", ".join(list_codecs())
            raise ConfigError(f"unknown codec {name_or_id!r} (use one of {known})")
        return codec
    codec = _BY_ID.get(int(name_or_id))
    if codec is None:
        known = ", ".join(f"{c.codec_id} {c.name}" for c in _BY_ID.values())
        raise ContainerError(f"unknown codec id {name_or_id} (known: {known})")
    return codec


def list_codecs() -> list[str]:
    """Names of the registered codecs, by id."""
    _builtins()
    return [c.name for c in sorted(_BY_ID.values(), key=lambda c: c.codec_id)]
