"""Reading and writing image files: modes, alpha, 16-bit, EXIF orientation, ICC/EXIF, atomic writes.

Data flow::

    file --read_image--> Image(pixels H x W x C uint8|uint16, alpha H x W | None, icc, exif)
         --write_image (format from the extension, temp file + rename)--> file

Every failure a user can cause (missing, unreadable, truncated, non-image, over-limit or
unsupported files; an existing output) raises :class:`ImageError`, whose message is one line
``"<path>: <problem>"`` (``"<bytes>: ..."`` for bytes, the object's ``name`` or
``"<BytesIO>"`` for a file object). Nothing is written for a failed read, and a failed write
leaves no file behind: writes go to a temporary file beside the target that is fsynced,
renamed into place only once it is complete, and the folder is fsynced after the rename.

Thread safety: reading never changes process-wide state. Pillow's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``) and ``ImageFile.LOAD_TRUNCATED_IMAGES`` are left as they
are: the file's header is parsed by Pillow's format plugin directly (without the bomb check
of ``PIL.Image.open``), and the size is checked against :func:`max_pixels` before any pixel
is decoded. Truncated data is an error unless the process itself has set
``LOAD_TRUNCATED_IMAGES``.

16-bit colour: Pillow keeps 16 bits for greyscale (``I;16``) but reduces 16-bit RGB(A)
PNG and TIFF to 8 bits. This module recovers the low bytes by decoding the same file a second
time with the opposite byte order (the decoder still does the unfiltering/decompression in
C), and writes 16-bit RGB(A) PNG and TIFF with its own small encoders. JPEG, WebP and AVIF
are 8-bit formats: 16-bit images are rounded to 8 bits when saved to them.
"""

from __future__ import annotations

from superres.core.io.atomic import atomic_write, atomic_write_bytes
from superres.core.io.image import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_OUTPUT_EXTENSIONS,
    Image,
    ImageSource,
    output_format,
    split_alpha,
    to_8bit,
)
from superres.core.io.read import from_pil, max_pixels, read_image, source_name
from superres.core.io.write import encode_image, to_pil, write_image
from superres.errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_OUTPUT_EXTENSIONS",
    "Image",
    "ImageError",
    "ImageSource",
    "atomic_write",
    "atomic_write_bytes",
    "encode_image",
    "from_pil",
    "max_pixels",
    "output_format",
    "read_image",
    "source_name",
    "split_alpha",
    "to_8bit",
    "to_pil",
    "write_image",
]
