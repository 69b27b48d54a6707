"""Hostile image and depth files end in one line naming the file, before anything large is decoded or allocated;
a FIFO given as a video or image is refused at once instead of blocking."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bad_files import npy_claiming, png_claiming
from process_helpers import ENV
from gen1.depth import load_structure
from gen1.media import read_frames_or_images, read_image


@pytest.mark.parametrize("side", [13000, 20000])  # over gen1's limit only; over PIL's bomb limit too
def test_an_image_claiming_too_many_pixels_is_one_line_naming_it(tmp_path, side):
    bomb = png_claiming(tmp_path / "bomb.png", side, side)
    with pytest.raises(ValueError) as error:
        read_image(bomb, what="mask image")
    message = str(error.value)
    assert f"mask image '{bomb}'" in message and "\n" not in message
    assert "pixels" in message


def test_the_pixel_limit_is_the_callers(tmp_path):
    image = tmp_path / "small.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image)
    assert read_image(image, max_pixels=2000).shape == (40, 50, 3)
    with pytest.raises(ValueError, match=r"50x40 = 2,000 pixels, more than the 1,999"):
        read_image(image, max_pixels=1999)
    with pytest.raises(ValueError, match=r"50x40 = 2,000 pixels"):
        read_frames_or_images(tmp_path, max_pixels=1999)


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_a_depth_image_bomb_is_refused_before_opencv_decodes_it(tmp_path, layout):
    folder = tmp_path / "depth"
    folder.mkdir()
    bomb = png_claiming(folder / "0001.png", 20000, 20000, bit_depth=16, colour_type=0)
    with pytest.raises(ValueError) as error:
        load_structure(bomb if layout == "file" else folder)
    assert f"depth image '{bomb}'" in str(error.value) and "\n" not in str(error.value)


def test_a_depth_image_over_the_limit_is_refused(tmp_path):
    bomb = png_claiming(tmp_path / "depth.png", 13000, 13000, bit_depth=16, colour_type=0)
    with pytest.raises(ValueError, match=r"depth image '.*depth.png' is 13000x13000 = 169,000,000 pixels"):
        load_structure(bomb)


def test_16_bit_depth_still_reads_at_full_precision(tmp_path):
    import cv2

    depth = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 251)
    cv2.imwrite(str(tmp_path / "d.png"), depth)
    colour = np.stack([depth, depth, depth], axis=-1)
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    from gen1.media.images import read_depth_image

    assert np.array_equal(read_depth_image(tmp_path / "d.png"), depth.astype(np.float32))
    assert np.array_equal(read_depth_image(tmp_path / "c.png"), depth.astype(np.float32))  # 16-bit colour kept


@pytest.mark.parametrize(
    "shape, data, message",
    [
        ((10**6, 10**5, 10**5), b"\0" * 64, "claims shape (1000000, 100000, 100000) of float32"),
        ((3, 16, 16), b"\0" * 64, "claims shape (3, 16, 16) of float32 (3,072 bytes) but holds 64 bytes"),
        ((1, 9000, 9000), None, "is 9000x9000 = 81,000,000 pixels"),
    ],
    ids=["petabytes", "truncated", "over-the-pixel-limit"],
)
def test_a_npy_depth_header_is_checked_before_allocating(tmp_path, shape, data, message):
    if data is None:  # a header and data that agree, sparse on disk: over the pixel limit all the same
        path = npy_claiming(tmp_path / "depth.npy", shape, data=b"")
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size + int(np.prod(shape)) * 4)
    else:
        path = npy_claiming(tmp_path / "depth.npy", shape, data=data)
    with pytest.raises(ValueError) as error:
        load_structure(path)
    assert f"depth array '{path}'" in str(error.value) and message in str(error.value)


def test_a_npy_of_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "depth.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"depth array '.*depth.npy' holds object values"):
        load_structure(path)


def test_a_valid_npy_depth_still_loads(tmp_path):
    np.save(tmp_path / "d.npy", np.linspace(0, 1, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8))
    assert load_structure(tmp_path / "d.npy").shape == (2, 1, 8, 8)


@pytest.mark.parametrize("name", ["input.mp4", "frame.png"])
def test_a_fifo_is_refused_at_once_not_read_forever(tmp_path, name):
    """Run in a subprocess with a timeout: the old code blocked forever opening a FIFO with no writer."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    code = ("import sys\nfrom gen1.media import read_frames_or_images\n"
            f"try:\n    read_frames_or_images({str(fifo)!r})\n"
            "except ValueError as e:\n    print(e)\n    sys.exit(3)\n")
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading the FIFO '{fifo}' blocked")
    assert result.returncode == 3, result.stderr
    assert f"got a FIFO (named pipe), not a regular file: '{fifo}'" in result.stdout

