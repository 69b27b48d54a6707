"""Procedural 3D scenes with exact depth and ground-truth edits, ray-cast in torch.

Why: no public data set gives both the exact depth of every frame and the *ground-truth edit* of a video
(the same geometry and motion in another look). Here geometry (:class:`Scene`) and appearance
(:class:`Style`) are sampled separately, so ``render(scene, style_b)`` is exactly what an ideal edit of
``render(scene, style_a)`` towards ``style_b.caption`` should produce, with identical depth.

Geometry (all units metric, world y axis up):

- a ground plane ``y = 0`` and a backdrop: an enclosing vertical cylindrical wall of radius
  ``Scene.wall_radius`` around the origin, so every pixel hits a surface and has finite depth;
- 2–6 primitives resting on the ground: spheres, boxes rotated about the vertical axis and vertical
  cylinders. Each moves linearly or on a circle, and spins about its vertical axis (the spin is visible
  through the texture of spheres and cylinders and through the geometry of boxes);
- a camera orbiting a look-at target, with dolly (radius change), height change and pan (target motion).

Time: frame ``i`` of ``F`` is at ``t = duration * i / (F - 1)`` (``t = 0`` for one frame), so a clip always spans
the scene's whole motion, whatever the frame count.

Depth: **z-depth**, the distance along the camera's optical axis (not along the ray), in scene units.
Ray directions are built with a unit forward component, so the ray parameter of a hit *is* its z-depth.

Appearance: a named colour for the objects, the floor and the wall, a texture per surface class
(flat, stripes, checker, noise, dots) computed in object-local / world coordinates (solid textures), so
patterns stick to surfaces as they move, and a Lambert + ambient light whose direction ("from the left",
"right", "top", "front") is given in the camera frame of the first frame and then fixed in the world.
Captions are built from the fixed vocabulary in :data:`CAPTION_VOCABULARY`.

Speed (``benchmark_fps``; 2-core build machine shared with other jobs, torch CPU, float32, one thread):
340-470 frames/s at 64x64 in 8-frame clips (160-300 under heavy load), 45-80 frames/s at 128x128;
see docs/synthetic.md. Use one torch thread per DataLoader worker.
"""

from __future__ import annotations

from gen1.synthetic.render import (
    SyntheticClip,
    SyntheticVideoDataset,
    benchmark_fps,
    inverse_depth_for_viewing,
    render,
    sample_clip,
)
from gen1.synthetic.scene import SHAPES, Camera, Primitive, Scene, sample_scene
from gen1.synthetic.style import (
    CAPTION_VOCABULARY,
    COLOR_NAMES,
    LIGHT_DIRECTIONS,
    LIGHT_LEVELS,
    PALETTE,
    TEXTURE_WORDS,
    TEXTURES,
    Style,
    sample_edit_style,
    sample_style,
)

__all__ = [
    "CAPTION_VOCABULARY", "COLOR_NAMES", "LIGHT_DIRECTIONS", "LIGHT_LEVELS", "PALETTE", "SHAPES", "TEXTURES",
    "TEXTURE_WORDS", "Camera", "Primitive", "Scene", "Style", "SyntheticClip", "SyntheticVideoDataset",
    "benchmark_fps", "inverse_depth_for_viewing", "render", "sample_clip", "sample_edit_style", "sample_scene",
    "sample_style",
]
