"""Rendered training batches for the demo components.

The demo world and its seed policy (training seeds ``[0, TRAIN_SEEDS)``, held-out seeds from
``HELD_OUT_START``) are :mod:`gen1.demo.world`'s. Batch ``m`` of a trainer is a pure function of
``(seed, m)``, so resuming a run needs only its step counter.
"""

from __future__ import annotations

import torch

from gen1.demo.world import FRAME_SIZE, TRAIN_SEEDS, demo_scene


def train_seed(base: int, step: int, index: int, per_step: int) -> int:
    """The scene/style seed of item ``index`` of batch ``step`` (wraps inside the training range)."""
    return (int(base) * 7_919 + int(step) * int(per_step) + int(index)) % TRAIN_SEEDS


def batch_seeds(base: int, step: int, clips: int) -> list[int]:
    """The scene/style seeds of the ``clips`` items of batch ``step`` (what :func:`frame_batch` renders)."""
    return [train_seed(base, step, i, clips) for i in range(clips)]


def render_clip(scene_seed: int, style_seed: int, num_frames: int, size: int = FRAME_SIZE):
    """RGB ``(F,3,H,W)`` in [0,1], z-depth ``(F,1,H,W)`` and the caption of scene ``scene_seed`` in the
    style of ``style_seed``."""
    from gen1.synthetic import render, sample_style

    style = sample_style(style_seed)
    rgb, depth = render(demo_scene(scene_seed), style, num_frames, size, size)
    return rgb, depth, style.caption


def frame_batch(base: int, step: int, clips: int, frames: int, size: int = FRAME_SIZE):
    """``clips`` training clips of ``frames`` frames (scene and style from the same seed), flattened:
    RGB ``(clips*frames,3,H,W)``, z-depth ``(clips*frames,1,H,W)``, captions (one per clip)."""
    rgbs, depths, captions = [], [], []
    for seed in batch_seeds(base, step, clips):
        rgb, depth, caption = render_clip(seed, seed, frames, size)
        rgbs.append(rgb)
        depths.append(depth)
        captions.append(caption)
    return torch.cat(rgbs), torch.cat(depths), captions
