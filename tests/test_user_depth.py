"""User depth (gen1.depth.load_structure) read at full precision and fitted to a frame size like a video."""

from __future__ import annotations

import numpy as np
import torch

from gen1.depth import load_structure


def test_16_bit_colour_depth_keeps_every_level(tmp_path):
    """A 16-bit RGB PNG (as some renderers export depth): PIL would cut it to 256 levels."""
    import cv2

    ramp = np.arange(0, 65536, 64, dtype=np.uint16).reshape(1, 1024)  # 1024 distinct 16-bit levels
    path = tmp_path / "depth16rgb.png"
    cv2.imwrite(str(path), np.repeat(np.repeat(ramp, 4, axis=0)[..., None], 3, axis=-1))
    depth = load_structure(path, low=0, high=100)
    assert depth.shape == (1, 1, 4, 1024)
    assert len(torch.unique(depth[0, 0, 0])) == 1024


def test_crop_fits_like_a_video_frame(tmp_path):
    """(H, W) with crop=True keeps the aspect and centre-crops the long side, as gen1.media fits frames."""
    depth = np.tile(np.arange(16, dtype=np.float32), (8, 1))  # 8 x 16, the value is the column
    np.save(tmp_path / "d.npy", depth)
    fitted = load_structure(tmp_path / "d.npy", size=(8, 8), crop=True, low=0, high=100)
    expected = load_structure(depth[:, 4:12], low=0, high=100)
    torch.testing.assert_close(fitted, expected)
    stretched = load_structure(tmp_path / "d.npy", size=(8, 8), low=0, high=100)
    assert not torch.allclose(stretched, expected)

