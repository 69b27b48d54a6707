"""Side-by-side comparison of an edit: source | structure (obscured depth) | output, each column labelled.

A ``.mp4``/``.mov``/``.m4v`` target gets the whole comparison video (via :func:`gen1.media.write_video`); an image
target (``.png``, ``.jpg``, ...) gets a contact sheet: up to ``max_rows`` evenly spaced frames, one per row,
with the three panels across. Panels smaller than :data:`MIN_PANEL_HEIGHT` are enlarged by a whole factor with
nearest-neighbour sampling (a 64 px edit is shown at 192 px, its pixels as they are, not smoothed), and a band above
the columns names them. Everything is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from gen1.atomic import atomic_path, check_output_path
from gen1.media import IMAGE_SUFFIXES as _IMAGES
from gen1.media import OUTPUT_VIDEO_SUFFIXES as _VIDEOS
from gen1.media import unit_to_uint8, write_video

VIDEO_SUFFIXES = set(_VIDEOS)  # comparison videos: what gen1.media.write_video writes
IMAGE_SUFFIXES = set(_IMAGES)  # contact sheets: the image formats gen1 reads and PIL writes
#: Panels lower than this are enlarged by the smallest whole factor that reaches it (small edits stay legible).
MIN_PANEL_HEIGHT = 192
#: The columns' names, left to right.
DEFAULT_LABELS = ("source", "structure", "output")
LABEL_BAND = 24  # pixels of the band that holds the labels (even, as video encoders need)


def _as_uint8_frames(frames) -> np.ndarray:
    """(F, H, W, 3|1) float [0,1] / uint8 numpy, (F, 3|1, H, W) float tensor, or list of PIL -> uint8 (F, H, W, 3)."""
    if isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(frame.convert("RGB")) for frame in frames])
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    frames = np.asarray(frames)
    if frames.ndim == 4 and frames.shape[1] in (1, 3) and frames.shape[-1] not in (1, 3):
        frames = frames.transpose(0, 2, 3, 1)
    if frames.dtype != np.uint8:
        frames = unit_to_uint8(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"comparison frames must be (F, H, W, 3) or (F, H, W, 1), got shape {frames.shape}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


def _fit(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames
    import cv2  # lazy: cv2 is heavy and only this path needs it

    return np.stack([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA) for frame in frames])


def side_by_side(source, depth, output) -> np.ndarray:
    """``uint8 (F, H, 3 W, 3)``: each panel resized to the output's size, frame counts must match."""
    panels = [_as_uint8_frames(x) for x in (source, depth, output)]
    counts = {p.shape[0] for p in panels}
    if len(counts) != 1:
        raise ValueError(f"source, depth and output must have the same frame count, got {[p.shape[0] for p in panels]}")
    height, width = panels[2].shape[1:3]
    return np.concatenate([_fit(p, height, width) for p in panels], axis=2)


def enlargement(height: int, min_height: int = MIN_PANEL_HEIGHT) -> int:
    """The whole factor a panel of ``height`` pixels is enlarged by: the smallest that reaches ``min_height``."""
    return max(1, -(-min_height // max(height, 1)))


def label_band(width: int, labels, columns: int = 3, height: int = LABEL_BAND) -> np.ndarray:
    """``uint8 (height, width, 3)``: a dark band with each of ``labels`` centred over its column."""
    from PIL import Image, ImageDraw, ImageFont  # lazy: PIL is heavy and only this path needs it

    if len(labels) != columns:
        raise ValueError(f"a comparison has {columns} columns, got {len(labels)} labels: {list(labels)}")
    band = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(band)
    font = ImageFont.load_default(size=max(8, height * 2 // 3))
    column = width / columns
    for i, text in enumerate(labels):
        text = str(text)
        while text and draw.textlength(text, font=font) > column - 4:
            text = text[:-1]  # a label wider than its column is cut, never spills into the next one
        draw.text(((i + 0.5) * column, height / 2), text, fill=(235, 235, 235), font=font, anchor="mm")
    return np.asarray(band)


def enlarged(strip: np.ndarray, min_height: int = MIN_PANEL_HEIGHT) -> np.ndarray:
    """``strip`` ``(F, H, W, 3)`` enlarged by :func:`enlargement` of its height, nearest-neighbour."""
    factor = enlargement(strip.shape[1], min_height)
    return strip if factor == 1 else strip.repeat(factor, axis=1).repeat(factor, axis=2)


def labelled(frames: np.ndarray, labels=DEFAULT_LABELS) -> np.ndarray:
    """``frames`` ``(F, H, W, 3)`` with the label band (:func:`label_band`) on top of each: ``(F, LABEL_BAND + H, W,
    3)``."""
    band = label_band(frames.shape[2], labels)
    return np.concatenate([np.broadcast_to(band, (frames.shape[0], *band.shape)), frames], axis=1)


def write_comparison(path: str | os.PathLike, source, depth, output, fps=None, *, max_rows: int = 4,
                     labels=DEFAULT_LABELS) -> Path:
    """Write the comparison to ``path`` (video or contact-sheet image, chosen by its suffix); ``labels`` name the
    three columns (e.g. the structure level the depth is shown at)."""

    path = check_output_path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
        raise ValueError(
            f"comparison path must end in one of {sorted(VIDEO_SUFFIXES | IMAGE_SUFFIXES)}, got '{path}'"
        )
    strip = side_by_side(source, depth, output)
    if suffix in VIDEO_SUFFIXES:
        strip = labelled(enlarged(strip), labels)
        if fps is None:
            raise ValueError("fps is needed to write a comparison video")

        return write_video(path, strip, fps)
    from PIL import Image  # lazy: PIL is heavy and only this path needs it

    rows = np.unique(np.linspace(0, strip.shape[0] - 1, min(max_rows, strip.shape[0])).round().astype(int))
    sheet = labelled(np.concatenate(list(enlarged(strip[rows])), axis=0)[None], labels)[0]
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).save(tmp)  # format from the suffix, which the temp name keeps
    return path
