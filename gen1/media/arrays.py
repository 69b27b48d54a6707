"""``.npy`` arrays a user gives in place of images (a depth map, a mask), read safely.

``np.load`` allocates what a file's header claims, so a few bytes can ask for petabytes, and an object array would
unpickle code: :func:`read_npy` reads the header first (``numpy.lib.format``) and refuses, naming the file, what
does not match it (a truncated or forged file), numbers of another kind, a frame over ``max_pixels`` or a whole over
``max_values``; pickles are never loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from gen1.media.checks import existing_file
from gen1.media.images import check_max_pixels, check_pixel_count

#: The most values one array may hold: 4 GiB as float32, e.g. 4096 frames of 512x512.
MAX_ARRAY_VALUES = 2**30


def read_npy(path, what: str = "array", max_pixels: int | None = None,
             max_values: int = MAX_ARRAY_VALUES) -> np.ndarray:
    """The numbers (bool, int or float) of the ``.npy`` file ``path``, as stored: shape ``(H, W)``, ``(F, H, W)``,
    ``(F, 1, H, W)`` or ``(F, H, W, 1|3)``. ``what`` names it in errors ("depth array", "mask array")."""
    path = existing_file(path, what)
    max_pixels = check_max_pixels(max_pixels)
    try:
        with open(path, "rb") as f:
            version = npy.read_magic(f)
            header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = header(f, max_header_size=10_000)
            data_start = f.tell()
    except (ValueError, OSError, SyntaxError, EOFError) as err:
        raise ValueError(f"{what} '{path}' is not a readable .npy file ({err})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ValueError(f"{what} '{path}' holds {dtype} values; it must hold numbers (bool, int or float)")
    if len(shape) not in (2, 3, 4) or any(n < 1 for n in shape):
        raise ValueError(f"{what} '{path}' has shape {shape}; expected (H, W), (F, H, W) or (F, H, W, 1|3)")
    values = int(np.prod(shape, dtype=object))
    if values * dtype.itemsize != Path(path).stat().st_size - data_start:
        raise ValueError(f"{what} '{path}' claims shape {shape} of {dtype} ({values * dtype.itemsize:,} bytes) "
                         f"but holds {Path(path).stat().st_size - data_start:,} bytes of data (truncated or not "
                         "written by numpy)")
    height, width = array_frame_size(shape)
    check_pixel_count(height, width, path, what, max_pixels)
    if values > max_values:
        raise ValueError(f"{what} '{path}' has shape {shape} = {values:,} values, more than the {max_values:,} gen1 "
                         "loads; give fewer frames or a smaller size")
    return np.load(path, allow_pickle=False)


def array_frame_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(H, W)`` of one frame of an array of ``shape`` as :func:`read_npy` takes it: the last two sides, or the
    middle two of ``(F, H, W, 1|3)`` (channels last)."""
    channels_last = len(shape) == 4 and shape[1] != 1 and shape[-1] in (1, 3)
    return tuple(shape[1:3]) if channels_last else tuple(shape[-2:])
