"""Rendering (Lambert + ambient shading of the ray-cast surfaces), clips with ground-truth edits, a dataset
and a speed benchmark."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from gen1.synthetic.raycast import cast_rays
from gen1.synthetic.scene import Scene, sample_scene
from gen1.synthetic.style import LIGHT_LEVELS, PALETTE, Style, sample_edit_style, sample_style
from gen1.synthetic.textures import (
    AMBIENT,
    FLOOR_PERIOD,
    OBJECT_PERIOD,
    light_vector,
    second_color,
    texture_pattern,
)


def render(
    scene: Scene,
    style: Style,
    num_frames: int = 8,
    height: int = 64,
    width: int = 64,
    device: str | torch.device = "cpu",
    *,
    texture_detail: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``scene`` in ``style``: RGB (F,3,H,W) float32 in [0,1] and z-depth (F,1,H,W) in scene units.

    All frames and pixels are cast at once. Depth does not depend on ``style``, so rendering the same
    scene with another style gives the ground-truth edit with identical depth. ``texture_detail=False``
    draws every texture at its mean (as from far away): the surface averaged over where its pattern falls.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got height={height}, width={width}")
    device = torch.device(device)
    t = scene.times(num_frames, device=device)
    depth, normals, coords, surface, dirs, (right, up, forward) = cast_rays(scene, t, height, width)
    # size of one pixel on the surface hit, for texture anti-aliasing
    pixel_angle = 2 * math.tan(math.radians(scene.camera.fov) / 2) / height
    unit_dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    cos_incidence = (normals * unit_dirs).sum(-1).abs().clamp_min(0.1)
    footprint = depth * dirs.norm(dim=-1) * pixel_angle / cos_incidence
    if not texture_detail:  # a footprint far above any period fades every pattern fully to its mean
        footprint = torch.full_like(footprint, float("inf"))

    def color(name):
        return torch.tensor(PALETTE[name], dtype=torch.float32, device=device)

    # albedo per surface class
    obj_base, floor_base, wall_base = color(style.object_color), color(style.floor_color), color(style.wall_color)
    obj_pattern = texture_pattern(style.object_texture, coords, 1, OBJECT_PERIOD, footprint)[..., None]
    obj_albedo = torch.lerp(obj_base, second_color(obj_base), obj_pattern)
    # small per-object brightness variation so neighbouring objects stay distinguishable
    shade = 1.0 + 0.12 * ((surface.clamp_min(0) % 3) - 1).to(torch.float32)[..., None]
    obj_albedo = obj_albedo * shade
    floor_pattern = texture_pattern(style.floor_texture, coords, 0, FLOOR_PERIOD, footprint)[..., None]
    floor_albedo = torch.lerp(floor_base, second_color(floor_base), floor_pattern)
    # the wall gets a soft vertical gradient (lighter higher up)
    wall_albedo = wall_base * (0.85 + 0.15 * (coords[..., 1:2] / 4.0).clamp(0, 1))
    albedo = torch.where(
        (surface >= 0)[..., None], obj_albedo, torch.where((surface == -1)[..., None], floor_albedo, wall_albedo)
    )
    light = light_vector(style.light_direction, right[0], up[0], forward[0])
    lambert = (normals @ light).clamp_min(0.0)[..., None]
    rgb = albedo * (AMBIENT + LIGHT_LEVELS[style.light_level] * lambert)
    rgb = rgb.clamp(0.0, 1.0).reshape(num_frames, height, width, 3).permute(0, 3, 1, 2).contiguous()
    depth = depth.reshape(num_frames, 1, height, width)
    return rgb, depth


def inverse_depth_for_viewing(depth: torch.Tensor) -> torch.Tensor:
    """Inverse depth ``1/z`` min-max normalised over the whole clip to [0, 1] (1 = nearest), same shape.

    This is the convention of the depth estimators (``gen1.depth``): per-clip normalised inverse depth.
    """
    inv = 1.0 / depth.clamp_min(1e-6)
    lo, hi = inv.amin(), inv.amax()
    return (inv - lo) / (hi - lo).clamp_min(1e-12)


@dataclass
class SyntheticClip:
    """One rendered example: source clip, its depth, and the ground-truth edit in another style."""

    frames: torch.Tensor  # (F,3,H,W) [0,1]
    depth: torch.Tensor  # (F,1,H,W) z-depth
    caption: str
    edit_frames: torch.Tensor  # (F,3,H,W) [0,1]
    edit_caption: str
    scene: Scene
    style: Style
    edit_style: Style


def sample_clip(
    seed: int, num_frames: int = 8, height: int = 64, width: int = 64, device: str | torch.device = "cpu"
) -> SyntheticClip:
    """Scene, style and edit style all from ``seed``; renders both styles."""
    scene = sample_scene(seed)
    style = sample_style(seed)
    edit_style = sample_edit_style(style, seed + 1_000_003)
    frames, depth = render(scene, style, num_frames, height, width, device)
    edit_frames, _ = render(scene, edit_style, num_frames, height, width, device)
    return SyntheticClip(frames, depth, style.caption, edit_frames, edit_style.caption, scene, style, edit_style)


class SyntheticVideoDataset(torch.utils.data.Dataset):
    """Map-style dataset of rendered clips: item ``i`` is ``sample_clip(base_seed + i)`` as a dict.

    Keys: ``frames`` (F,3,H,W), ``depth`` (F,1,H,W) z-depth, ``caption``, ``edit_frames``, ``edit_caption``.
    Rendering is fast enough to do on the fly in DataLoader workers.
    """

    def __init__(self, length: int, num_frames: int = 8, height: int = 64, width: int = 64, base_seed: int = 0):
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length, self.num_frames, self.height, self.width, self.base_seed = (
            length, num_frames, height, width, base_seed,
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        clip = sample_clip(self.base_seed + index, self.num_frames, self.height, self.width)
        return {
            "frames": clip.frames,
            "depth": clip.depth,
            "caption": clip.caption,
            "edit_frames": clip.edit_frames,
            "edit_caption": clip.edit_caption,
        }


def benchmark_fps(
    num_clips: int = 16, num_frames: int = 8, height: int = 64, width: int = 64, device: str = "cpu"
) -> float:
    """Rendered frames per second over ``num_clips`` random clips (one style each; sampling included)."""
    render(sample_scene(0), sample_style(0), num_frames, height, width, device)  # warm-up
    start = time.perf_counter()
    for seed in range(num_clips):
        rgb, _ = render(sample_scene(seed), sample_style(seed), num_frames, height, width, device)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return num_clips * num_frames / (time.perf_counter() - start)
