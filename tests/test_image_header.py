"""The image header check (``headpose.io.images.image_header_size``, read by Pillow): the sizes
of JPEG, PNG and BMP files without decoding, None for another format, and one line naming the
file for a truncated or corrupt header or a size beyond this project's limits, never Pillow's
own decompression-bomb error or warning."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from headpose.errors import HeadposeError
from headpose.io.images import MAX_IMAGE_PIXELS, image_header_size


def encoded(suffix: str, width: int = 7, height: int = 5) -> bytes:
    ok, data = cv2.imencode(suffix, np.zeros((height, width, 3), np.uint8))
    assert ok
    return data.tobytes()


def forged_jpeg(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height`` pixels."""
    data = bytearray(encoded(".jpg"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp"])
def test_the_three_formats_give_their_size_and_others_none(tmp_path, suffix):
    assert image_header_size(write(tmp_path, f"a{suffix}", encoded(suffix, 7, 5))) == (7, 5)
    assert image_header_size(write(tmp_path, "a.tiff", encoded(".tiff"))) is None
    assert image_header_size(write(tmp_path, "text.jpg", b"no image at all")) is None
    assert image_header_size(write(tmp_path, "empty.jpg", b"")) is None


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp"])
def test_a_truncated_or_corrupt_header_is_one_line_naming_the_file(tmp_path, suffix):
    cut = write(tmp_path, f"cut{suffix}", encoded(suffix)[:20])
    with pytest.raises(HeadposeError, match="not a readable .* header") as error:
        image_header_size(cut)
    assert str(error.value).startswith(f"{cut}: ") and "\n" not in str(error.value)
    if suffix == ".png":  # Pillow checks the CRC of IHDR
        damaged = bytearray(encoded(".png"))
        damaged[18] ^= 1
        with pytest.raises(HeadposeError, match="bad header checksum"):
            image_header_size(write(tmp_path, "crc.png", bytes(damaged)))


def test_pillows_bomb_limit_gives_way_to_the_projects_own(tmp_path):
    """Pillow's Image.open refuses more than 2 x 89.5 million pixels and warns above 89.5
    million; the sizes come from its header readers, so this project's limits apply instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning (nor ResourceWarning)
        big = write(tmp_path, "big.jpg", forged_jpeg(10000, 10000))  # Pillow warns
        assert image_header_size(big) == (10000, 10000)
        bigger = write(tmp_path, "bigger.jpg", forged_jpeg(17000, 12000))  # Pillow refuses
        assert MAX_IMAGE_PIXELS >= 17000 * 12000 > 2 * 89_478_485
        assert image_header_size(bigger) == (17000, 12000)
        with pytest.raises(HeadposeError, match="claims 40000x40000 pixels; at most 32766"):
            image_header_size(write(tmp_path, "huge.jpg", forged_jpeg(40000, 40000)))
        with pytest.raises(HeadposeError, match=r"claims 30000x30000 = 900,000,000 pixels"):
            image_header_size(write(tmp_path, "many.jpg", forged_jpeg(30000, 30000)))
        gc.collect()  # an unclosed file would warn here


def test_a_folder_or_missing_file_is_one_line(tmp_path):
    with pytest.raises(HeadposeError, match="not found"):
        image_header_size(tmp_path / "nowhere.jpg")
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(HeadposeError, match="folder"):
        image_header_size(tmp_path / "folder.jpg")
