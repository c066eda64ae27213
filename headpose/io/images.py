"""Image files: their header checked before anything is decoded, decoding, and JPEG writing.

Every image this project reads (a dataset's sample, a photo given to ``headpose predict``) goes
through :func:`image_header_size` first: its dimensions, read from the file header by Pillow's
JPEG/PNG/BMP readers without decoding, must be positive, at most :data:`MAX_IMAGE_SIDE_PX` per
side and :data:`MAX_IMAGE_PIXELS` in all; a file that is missing, a folder, a FIFO or a device,
or whose header is truncated or corrupt, is one :class:`~headpose.errors.HeadposeError` naming
it. :func:`decode_rgb` and :func:`read_image` decode (OpenCV) to RGB; :func:`write_jpeg` encodes
and writes atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import BmpImagePlugin, ImageFile, JpegImagePlugin, PngImagePlugin

from headpose.errors import HeadposeError
from headpose.io.files import atomic_path, file_problem

JPEG_SUFFIX = ".jpg"
# Largest image accepted anywhere (2^28 = 268 million pixels, 805 MB as RGB); OpenCV's own
# limit is 2^30. Checked on the header, before decoding.
MAX_IMAGE_PIXELS = 2**28
# Longest accepted side: OpenCV's warps and remaps need sides below SHRT_MAX (32767).
MAX_IMAGE_SIDE_PX = 2**15 - 2


def refuse_special_file(path: str | os.PathLike, what: str) -> None:
    """A FIFO, socket or device named like a data file would block or feed endless bytes to
    its reader, a folder fails in it: refuse either in one line (a missing file is left to the
    reader's own message). ``what`` names the file expected (``annotation (.mat)``)."""
    problem = file_problem(path)
    if problem and problem.startswith(("is not a regular file", "is a folder")):
        raise HeadposeError(f"{path}: {problem}; expected an {what} file")


def _unreadable_header(name: str, error: BaseException) -> str:
    """One line on a JPEG/PNG/BMP header Pillow cannot read (its reason on one line)."""
    reason = " ".join(str(error).split()) or type(error).__name__
    return f"not a readable {name} header (truncated or corrupt: {reason})"


# The header readers, by the signature a file starts with. Pillow's own ``Image.open`` would
# pick them the same way, but it applies Pillow's decompression-bomb limit (an error above
# 2 x 89.5 million pixels, a warning above 89.5 million) before the size is known to the caller,
# and this module has limits of its own (:data:`MAX_IMAGE_PIXELS`, :data:`MAX_IMAGE_SIDE_PX`)
# whose message names the claimed width x height; so the format's reader is called directly.
# Each reads the header only (JPEG: the segments up to the frame header; PNG: IHDR, CRC checked;
# BMP: the info header); no pixel is decoded.
_HEADER_READERS: dict[bytes, tuple[str, type[ImageFile.ImageFile]]] = {
    b"\xff\xd8": ("JPEG", JpegImagePlugin.JpegImageFile),
    b"\x89PNG\r\n\x1a\n": ("PNG", PngImagePlugin.PngImageFile),
    b"BM": ("BMP", BmpImagePlugin.BmpImageFile),
}
_SIGNATURE_BYTES = max(map(len, _HEADER_READERS))


def _header_reader(start: bytes) -> tuple[str, type[ImageFile.ImageFile]] | None:
    """(format name, Pillow reader) of a file starting with ``start``, or None."""
    return next(
        (reader for signature, reader in _HEADER_READERS.items() if start.startswith(signature)),
        None,
    )


def image_header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) an image file's header claims, read by Pillow without decoding (JPEG,
    PNG, BMP); None for another format. Raises a HeadposeError naming the file when it cannot
    be read, its JPEG/PNG/BMP header is truncated or corrupt, or it claims no pixels, a side
    over :data:`MAX_IMAGE_SIDE_PX` or more than :data:`MAX_IMAGE_PIXELS` pixels."""
    refuse_special_file(path, "image")
    try:
        with open(path, "rb") as handle:
            reader = _header_reader(handle.read(_SIGNATURE_BYTES))
            if reader is None:
                return None
            name, image_file = reader
            handle.seek(0)
            try:
                with image_file(handle) as image:
                    size = image.size
            except OSError as error:
                if error.errno is not None:  # the file system's error, not Pillow's
                    raise
                raise HeadposeError(f"{path}: {_unreadable_header(name, error)}") from None
            except Exception as error:  # SyntaxError, ValueError, ...: a corrupt header
                raise HeadposeError(f"{path}: {_unreadable_header(name, error)}") from None
    except IsADirectoryError:
        raise HeadposeError(f"{path}: is a folder, not an image file") from None
    except FileNotFoundError:
        raise HeadposeError(f"{path}: image file not found (or a broken link)") from None
    except OSError as error:
        raise HeadposeError(f"{path}: image not readable: {error.strerror}") from None
    width, height = size
    if width < 1 or height < 1:
        raise HeadposeError(f"{path}: the image header claims {width}x{height} pixels")
    if max(width, height) > MAX_IMAGE_SIDE_PX:
        raise HeadposeError(
            f"{path}: the image header claims {width}x{height} pixels; at most "
            f"{MAX_IMAGE_SIDE_PX} are accepted per side"
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise HeadposeError(
            f"{path}: the image header claims {width}x{height} = {width * height:,} pixels, "
            f"more than the {MAX_IMAGE_PIXELS:,} accepted"
        )
    return width, height


def decode_rgb(path: str | os.PathLike, upright: bool = False) -> np.ndarray | None:
    """Decode an image file to an RGB uint8 array (H, W, 3), or None when it is no image.

    One rule for EXIF orientation: a dataset's image is used as its pixels are stored
    (``upright=False``, as the published code reads them: its landmarks and pose refer to those
    pixels), a photo given to ``headpose predict`` is turned upright as a viewer shows it
    (``upright=True``). The header is checked first (:func:`image_header_size`): a file that is
    no readable image file, or claims too many pixels, raises a HeadposeError naming it.
    """
    image_header_size(path)
    data = np.fromfile(str(path), dtype=np.uint8)
    flags = cv2.IMREAD_COLOR if upright else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(data, flags) if data.size else None
    except cv2.error:  # OpenCV's own size limit, for formats whose header is not read here
        return None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode a sample's image to an RGB uint8 array (H, W, 3), its pixels as stored (EXIF
    orientation ignored: the labels refer to them), or raise naming the file."""
    if not Path(path).is_file():
        raise HeadposeError(f"{path}: image file not found")
    image = decode_rgb(path)
    if image is None:
        raise HeadposeError(f"{path}: not a decodable image")
    return image


def write_jpeg(path: str | os.PathLike, image_rgb: np.ndarray, quality: int = 95) -> None:
    """Encode an RGB uint8 image as JPEG and write it atomically."""
    ok, encoded = cv2.imencode(
        JPEG_SUFFIX,
        cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, quality],
    )
    if not ok:
        raise HeadposeError(f"{path}: JPEG encoding failed")
    with atomic_path(path) as temp:
        encoded.tofile(str(temp))
