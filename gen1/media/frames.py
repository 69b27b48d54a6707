"""Frames as gen1 passes them between reading, models and writing: ``uint8 (F, H, W, 3)`` RGB numpy arrays.

:func:`to_uint8_frames` is the one conversion into that form (from float tensors, lists of arrays or PIL
images); :func:`check_uint8_frames` checks an array already claimed to be in it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def check_uint8_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """``frames`` itself after checking it is a uint8 numpy array ``(F, H, W, 3)``; a ValueError naming ``name``
    and what it got otherwise."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        desc = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {tuple(getattr(frames, 'shape', ()))}"
        raise ValueError(f"{name} must be a uint8 numpy array of shape (F, H, W, 3), got {desc}")
    return frames


def unit_to_uint8(values) -> np.ndarray:
    """THE float -> 8-bit conversion: values in [0, 1] (numpy or torch, any shape) -> uint8 numpy, clamped then
    rounded to the nearest of 0..255."""
    if type(values).__module__.startswith("torch"):
        values = values.detach().float().cpu().numpy()
    return (np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def to_uint8_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """``uint8 (F, H, W, 3)`` RGB from any of the frame forms gen1 accepts.

    * a uint8 numpy array ``(F, H, W, 3)`` (returned as it is);
    * a float torch tensor ``(F, 3, H, W)`` in [0, 1] (clamped, then rounded; NaN or inf is an error);
    * a list of uint8 arrays ``(H, W, 3)`` of one shape, or of PIL images (converted to RGB).

    A float numpy array is refused rather than guessed at: it may hold [0, 1] or [0, 255] values.
    """
    if isinstance(frames, (list, tuple)) and frames:
        arrays = [np.asarray(f.convert("RGB")) if hasattr(f, "convert") else f for f in frames]
        if all(isinstance(a, np.ndarray) for a in arrays):
            shapes = {a.shape for a in arrays}
            if len(shapes) != 1:
                raise ValueError(f"{name} must all have one shape, got {sorted(shapes)}")
            frames = np.stack(arrays)
    if type(frames).__module__.startswith("torch"):
        import torch  # lazy: torch is heavy and only this path needs it
        from einops import rearrange  # lazy: einops is heavy and only this path needs it

        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"a {name} tensor must have shape (F, 3, H, W), got {tuple(frames.shape)}")
        if frames.dtype == torch.uint8:
            raise ValueError(f"a {name} tensor must be float in [0, 1]; pass uint8 frames as numpy (F, H, W, 3)")
        if not torch.isfinite(frames).all():
            raise ValueError(f"{name} tensor contains NaN or infinite values")
        return np.ascontiguousarray(unit_to_uint8(rearrange(frames, "f c h w -> f h w c")))
    return check_uint8_frames(frames, name)
