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

Speed (measured on the 2-core build machine, shared with other jobs, torch CPU, float32):
about 400 frames/s at 64x64 (batches of 8-frame clips, ``benchmark_fps``); see docs/synthetic.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

# --------------------------------------------------------------------------------------------------
# vocabularies (fixed: captions only ever use these words)

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.95, 0.85, 0.15),
    "green": (0.20, 0.68, 0.22),
    "teal": (0.08, 0.60, 0.60),
    "blue": (0.12, 0.30, 0.88),
    "purple": (0.50, 0.20, 0.72),
    "pink": (0.96, 0.52, 0.70),
    "brown": (0.50, 0.30, 0.14),
    "white": (0.93, 0.93, 0.93),
    "gray": (0.50, 0.50, 0.52),
    "black": (0.10, 0.10, 0.11),
}
COLOR_NAMES: tuple[str, ...] = tuple(PALETTE)

TEXTURES: tuple[str, ...] = ("flat", "stripes", "checker", "noise", "dots")
# the adjective each texture contributes to a caption
TEXTURE_WORDS: dict[str, str] = {
    "flat": "plain",
    "stripes": "striped",
    "checker": "checkered",
    "noise": "mottled",
    "dots": "dotted",
}
LIGHT_DIRECTIONS: tuple[str, ...] = ("left", "right", "top", "front")
LIGHT_LEVELS: dict[str, float] = {"soft": 0.55, "bright": 0.85}

SHAPES: tuple[str, ...] = ("sphere", "box", "cylinder")

CAPTION_VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        set(COLOR_NAMES)
        | set(TEXTURE_WORDS.values())
        | set(LIGHT_LEVELS)
        | set(LIGHT_DIRECTIONS)
        | {"a", "an", "the", "objects", "on", "floor", "in", "front", "of", "wall", "light", "from"}
    )
)
"""Every word a caption can contain (for building small tokenizers)."""

_EPS = 1e-4
_AMBIENT = 0.30
OBJECT_PERIOD = 0.5  # texture repeat length on objects (scene units)
FLOOR_PERIOD = 1.2  # ... and on the floor


# --------------------------------------------------------------------------------------------------
# geometry


@dataclass(frozen=True)
class Primitive:
    """One object standing on the ground, with its motion.

    ``shape``: "sphere" (radius ``size[0]``), "box" (half extents ``size``), "cylinder" (radius ``size[0]``,
    height ``size[1]``). Its ground position at time ``t`` is ``position + velocity * t`` for "linear"
    motion, or ``position + orbit_radius * (cos, sin)(orbit_phase + orbit_speed * t)`` for "circular" motion
    (x, z). ``yaw(t) = yaw + spin * t`` (radians about the vertical axis).
    """

    shape: str
    size: tuple[float, float, float]
    position: tuple[float, float]
    motion: str = "linear"
    velocity: tuple[float, float] = (0.0, 0.0)
    orbit_radius: float = 0.0
    orbit_phase: float = 0.0
    orbit_speed: float = 0.0
    yaw: float = 0.0
    spin: float = 0.0

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if self.motion not in ("linear", "circular"):
            raise ValueError(f"motion must be 'linear' or 'circular', got {self.motion!r}")
        if min(self.size) <= 0:
            raise ValueError(f"size must be positive, got {self.size!r}")

    @property
    def center_height(self) -> float:
        """Height of the local origin above the ground (objects rest on ``y = 0``)."""
        if self.shape == "sphere":
            return self.size[0]
        if self.shape == "box":
            return self.size[1]
        return 0.0  # cylinder: local origin at the centre of its base

    def ground_xz(self, t: torch.Tensor) -> torch.Tensor:
        """(x, z) of the object at times ``t`` (F,) -> (F, 2)."""
        px, pz = self.position
        if self.motion == "linear":
            return torch.stack([px + self.velocity[0] * t, pz + self.velocity[1] * t], dim=-1)
        angle = self.orbit_phase + self.orbit_speed * t
        return torch.stack(
            [px + self.orbit_radius * torch.cos(angle), pz + self.orbit_radius * torch.sin(angle)], dim=-1
        )

    def center(self, t: torch.Tensor) -> torch.Tensor:
        """Local origin in world coordinates at times ``t`` (F,) -> (F, 3)."""
        xz = self.ground_xz(t)
        y = torch.full_like(t, self.center_height)
        return torch.stack([xz[:, 0], y, xz[:, 1]], dim=-1)


@dataclass(frozen=True)
class Camera:
    """Orbiting, dollying, panning pinhole camera that looks at a (moving) target.

    At time ``t``: position = target_xz(t) + (radius + dolly*t) * (sin a, cos a), a = angle + angular_speed*t,
    height = height + rise * t; target = target + target_velocity * t. ``fov`` is the vertical field of
    view in degrees.
    """

    target: tuple[float, float, float] = (0.0, 0.6, 0.0)
    target_velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 6.0
    dolly: float = 0.0
    angle: float = 0.0
    angular_speed: float = 0.0
    height: float = 2.0
    rise: float = 0.0
    fov: float = 50.0

    def pose(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera origins (F, 3) and look-at targets (F, 3) at times ``t`` (F,)."""
        target = torch.tensor(self.target, dtype=t.dtype, device=t.device) + t[:, None] * torch.tensor(
            self.target_velocity, dtype=t.dtype, device=t.device
        )
        angle = self.angle + self.angular_speed * t
        radius = self.radius + self.dolly * t
        origin = torch.stack(
            [
                target[:, 0] + radius * torch.sin(angle),
                self.height + self.rise * t,
                target[:, 2] + radius * torch.cos(angle),
            ],
            dim=-1,
        )
        return origin, target


@dataclass(frozen=True)
class Scene:
    """Pure geometry and motion (no colours): primitives, camera, backdrop wall and clip duration."""

    primitives: tuple[Primitive, ...]
    camera: Camera
    wall_radius: float = 10.0
    duration: float = 1.0
    seed: int | None = None

    def times(self, num_frames: int, device="cpu") -> torch.Tensor:
        """Frame times (F,) spanning ``[0, duration]``."""
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if num_frames == 1:
            return torch.zeros(1, dtype=torch.float32, device=device)
        return torch.linspace(0.0, self.duration, num_frames, dtype=torch.float32, device=device)


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _choice(gen: torch.Generator, options: Sequence):
    return options[int(torch.randint(len(options), (), generator=gen))]


def sample_scene(seed: int) -> Scene:
    """A random scene, fully determined by ``seed`` (uses its own ``torch.Generator``)."""
    gen = torch.Generator().manual_seed(int(seed))
    num = int(torch.randint(2, 7, (), generator=gen))
    placed: list[tuple[float, float, float]] = []  # x, z, footprint radius
    prims = []
    for _ in range(num):
        shape = _choice(gen, SHAPES)
        if shape == "sphere":
            r = _uniform(gen, 0.35, 0.9)
            size = (r, r, r)
            foot = r
        elif shape == "box":
            size = (_uniform(gen, 0.25, 0.8), _uniform(gen, 0.25, 0.9), _uniform(gen, 0.25, 0.8))
            foot = math.hypot(size[0], size[2])
        else:
            r = _uniform(gen, 0.25, 0.6)
            size = (r, _uniform(gen, 0.5, 1.8), r)
            foot = r
        # rejection-sample a start position that does not overlap earlier objects
        for _attempt in range(30):
            x, z = _uniform(gen, -1.8, 1.8), _uniform(gen, -1.8, 1.8)
            if math.hypot(x, z) <= 1.8 and all(math.hypot(x - px, z - pz) > foot + pf + 0.1 for px, pz, pf in placed):
                break
        placed.append((x, z, foot))
        if float(torch.rand((), generator=gen)) < 0.5:
            speed = _uniform(gen, 0.2, 0.6)
            heading = _uniform(gen, 0.0, 2 * math.pi)
            motion = dict(motion="linear", velocity=(speed * math.cos(heading), speed * math.sin(heading)))
        else:
            motion = dict(
                motion="circular",
                orbit_radius=_uniform(gen, 0.2, 0.6),
                orbit_phase=_uniform(gen, 0.0, 2 * math.pi),
                orbit_speed=_uniform(gen, -2.0, 2.0),
            )
        prims.append(
            Primitive(
                shape=shape,
                size=size,
                position=(x, z),
                yaw=_uniform(gen, 0.0, 2 * math.pi),
                spin=_uniform(gen, -1.5, 1.5),
                **motion,
            )
        )
    camera = Camera(
        target=(_uniform(gen, -0.35, 0.35), _uniform(gen, 0.2, 0.7), _uniform(gen, -0.35, 0.35)),
        target_velocity=(_uniform(gen, -0.3, 0.3), 0.0, _uniform(gen, -0.3, 0.3)),
        # objects stay within 3.5 of the origin, the camera beyond 3.85: it never enters one
        radius=_uniform(gen, 5.5, 7.0),
        dolly=_uniform(gen, -1.0, 0.8),
        angle=_uniform(gen, 0.0, 2 * math.pi),
        angular_speed=_uniform(gen, -0.8, 0.8),
        height=_uniform(gen, 1.2, 3.5),
        rise=_uniform(gen, -0.5, 0.5),
        fov=_uniform(gen, 40.0, 55.0),
    )
    return Scene(primitives=tuple(prims), camera=camera, seed=int(seed))


# --------------------------------------------------------------------------------------------------
# appearance


@dataclass(frozen=True)
class Style:
    """Appearance only: colours (names from :data:`PALETTE`), textures, light. ``caption`` describes it."""

    object_color: str
    object_texture: str
    floor_color: str
    floor_texture: str
    wall_color: str
    light_direction: str
    light_level: str = "bright"
    seed: int | None = field(default=None, compare=False)

    def __post_init__(self):
        for name in ("object_color", "floor_color", "wall_color"):
            if getattr(self, name) not in PALETTE:
                raise ValueError(f"{name} must be one of {COLOR_NAMES}, got {getattr(self, name)!r}")
        for name in ("object_texture", "floor_texture"):
            if getattr(self, name) not in TEXTURES:
                raise ValueError(f"{name} must be one of {TEXTURES}, got {getattr(self, name)!r}")
        if self.light_direction not in LIGHT_DIRECTIONS:
            raise ValueError(f"light_direction must be one of {LIGHT_DIRECTIONS}, got {self.light_direction!r}")
        if self.light_level not in LIGHT_LEVELS:
            raise ValueError(f"light_level must be one of {tuple(LIGHT_LEVELS)}, got {self.light_level!r}")

    @property
    def caption(self) -> str:
        """E.g. "blue checkered objects on an orange striped floor in front of a gray wall, bright light from the left"."""
        floor = f"{self.floor_color} {TEXTURE_WORDS[self.floor_texture]}"
        return (
            f"{self.object_color} {TEXTURE_WORDS[self.object_texture]} objects on {_article(floor)} {floor} floor "
            f"in front of {_article(self.wall_color)} {self.wall_color} wall, "
            f"{self.light_level} light from the {self.light_direction}"
        )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def sample_style(seed: int, *, avoid: Style | None = None) -> Style:
    """A random style determined by ``seed``. Object, floor and wall colours differ from each other.

    With ``avoid``, the object and floor colours both differ from ``avoid``'s (a visibly different edit).
    """
    gen = torch.Generator().manual_seed(int(seed) + 7_919)  # decorrelated from sample_scene(seed)
    while True:
        obj, floor, wall = (_choice(gen, COLOR_NAMES) for _ in range(3))
        if len({obj, floor, wall}) < 3:
            continue
        if avoid is not None and (obj == avoid.object_color or floor == avoid.floor_color):
            continue
        break
    return Style(
        object_color=obj,
        object_texture=_choice(gen, TEXTURES),
        floor_color=floor,
        floor_texture=_choice(gen, TEXTURES),
        wall_color=wall,
        light_direction=_choice(gen, LIGHT_DIRECTIONS),
        light_level=_choice(gen, tuple(LIGHT_LEVELS)),
        seed=int(seed),
    )


def sample_edit_style(style: Style, seed: int) -> Style:
    """A target style for a ground-truth edit of a clip rendered with ``style`` (different colours)."""
    return sample_style(seed, avoid=style)


# --------------------------------------------------------------------------------------------------
# textures: pattern value in [0, 1] from surface coordinates (..., 3)


def _hash3(ix: torch.Tensor, iy: torch.Tensor, iz: torch.Tensor) -> torch.Tensor:
    """Deterministic lattice hash -> float in [0, 1)."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).to(torch.float32) / 65536.0


def _value_noise(p: torch.Tensor) -> torch.Tensor:
    """Trilinear value noise of points ``p`` (..., 3), smooth, in [0, 1]."""
    base = torch.floor(p)
    f = p - base
    f = f * f * (3.0 - 2.0 * f)
    i = base.to(torch.int64)
    ix, iy, iz = i.unbind(-1)
    fx, fy, fz = f.unbind(-1)
    out = torch.zeros_like(fx)
    for dx in (0, 1):
        wx = fx if dx else 1 - fx
        for dy in (0, 1):
            wy = fy if dy else 1 - fy
            for dz in (0, 1):
                wz = fz if dz else 1 - fz
                out = out + wx * wy * wz * _hash3(ix + dx, iy + dy, iz + dz)
    return out


_PATTERN_MEAN = {"flat": 0.0, "stripes": 0.5, "checker": 0.5, "noise": 0.5, "dots": math.pi * 0.3**2}


def texture_pattern(
    texture: str,
    coords: torch.Tensor,
    stripe_axis: int,
    period: float = 0.5,
    footprint: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pattern weight in [0, 1] (0 = base colour, 1 = second colour) at surface coordinates (..., 3).

    ``period`` is the pattern's repeat length in scene units. ``footprint`` (...), the size of a pixel on
    the surface, fades the pattern towards its mean where it would alias (a cheap stand-in for mip-mapping,
    which keeps far floors from turning into moiré).
    """
    if texture == "flat":
        return torch.zeros(coords.shape[:-1], dtype=coords.dtype, device=coords.device)
    if texture == "stripes":
        pattern = (torch.sin(coords[..., stripe_axis] * (2 * math.pi / period)) > 0).to(coords.dtype)
    elif texture == "checker":
        cells = torch.floor(coords / (period / 2)).to(torch.int64).sum(-1)
        pattern = (cells % 2).to(coords.dtype)
    elif texture == "noise":
        n = 0.65 * _value_noise(coords * (1.25 / period)) + 0.35 * _value_noise(coords * (3.0 / period) + 17.0)
        pattern = ((n - 0.25) * 2.0).clamp(0.0, 1.0)
    elif texture == "dots":
        q = coords / (0.8 * period)
        frac = q - torch.round(q)
        pattern = (frac.square().sum(-1) < 0.3**2).to(coords.dtype)
    else:
        raise ValueError(f"texture must be one of {TEXTURES}, got {texture!r}")
    if footprint is not None:
        fade = ((footprint / period - 0.15) / 0.35).clamp(0.0, 1.0)
        pattern = torch.lerp(pattern, torch.full_like(pattern, _PATTERN_MEAN[texture]), fade)
    return pattern


def _second_color(color: torch.Tensor) -> torch.Tensor:
    """The pattern colour paired with a base colour: darker shade, or lighter for dark colours."""
    luminance = float(color @ torch.tensor([0.299, 0.587, 0.114], device=color.device))
    return color * 0.45 if luminance > 0.3 else color + 0.4 * (1 - color)


def _light_vector(direction: str, right: torch.Tensor, up: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Unit vector towards the light, built in the (first-frame) camera frame."""
    combos = {
        "left": -1.0 * right + 0.7 * up - 0.4 * forward,
        "right": 1.0 * right + 0.7 * up - 0.4 * forward,
        "top": 1.0 * up - 0.25 * forward,
        "front": -1.0 * forward + 0.5 * up,
    }
    v = combos[direction]
    return v / v.norm()


# --------------------------------------------------------------------------------------------------
# ray casting


def _rotate_y(v: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``v`` (F, N, 3) by ``angle`` (F,) about the y axis (x->z convention: x' = c x + s z)."""
    c = torch.cos(angle)[:, None]
    s = torch.sin(angle)[:, None]
    x, y, z = v.unbind(-1)
    return torch.stack([c * x + s * z, y, -s * x + c * z], dim=-1)


def _camera_rays(scene: Scene, t: torch.Tensor, height: int, width: int):
    """Origins (F,1,3), directions with unit forward component (F,N,3), and the camera basis."""
    origin, target = scene.camera.pose(t)
    forward = target - origin
    forward = forward / forward.norm(dim=-1, keepdim=True)
    world_up = torch.tensor([0.0, 1.0, 0.0], device=t.device).expand_as(forward)
    right = torch.linalg.cross(forward, world_up)
    right = right / right.norm(dim=-1, keepdim=True)
    up = torch.linalg.cross(right, forward)
    tan_half = math.tan(math.radians(scene.camera.fov) / 2)
    ys = (1 - (torch.arange(height, device=t.device, dtype=torch.float32) + 0.5) * 2 / height) * tan_half
    xs = ((torch.arange(width, device=t.device, dtype=torch.float32) + 0.5) * 2 / width - 1) * tan_half * width / height
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    gx = gx.reshape(1, -1, 1)
    gy = gy.reshape(1, -1, 1)
    dirs = forward[:, None] + gx * right[:, None] + gy * up[:, None]
    return origin[:, None], dirs, (right, up, forward)


def _intersect_sphere(o, d, center, radius):
    oc = o - center[:, None]
    a = (d * d).sum(-1)
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - radius**2
    disc = b * b - a * c
    hit_t = (-b - torch.sqrt(disc.clamp_min(0))) / a
    hit_t = torch.where((disc > 0) & (hit_t > _EPS), hit_t, torch.inf)

    def normal(p):
        return (p - center[:, None]) / radius

    return hit_t, normal


def _intersect_box(o, d, center, half, yaw):
    lo = _rotate_y(o - center[:, None], -yaw)
    ld = _rotate_y(d, -yaw)
    ld = torch.where(ld.abs() < 1e-9, torch.full_like(ld, 1e-9), ld)
    h = torch.tensor(half, device=o.device)
    t1 = (-h - lo) / ld
    t2 = (h - lo) / ld
    tnear = torch.minimum(t1, t2)
    tfar = torch.maximum(t1, t2).amin(-1)
    tmin, axis = tnear.max(-1)
    hit_t = torch.where((tfar >= tmin) & (tmin > _EPS), tmin, torch.inf)

    def normal(p):
        n_local = torch.nn.functional.one_hot(axis, 3).to(d.dtype) * -torch.sign(ld)
        return _rotate_y(n_local, yaw)

    return hit_t, normal


def _intersect_cylinder(o, d, center, radius, height):
    oc = o - center[:, None]
    ox, oy, oz = oc.unbind(-1)
    dx, dy, dz = d.unbind(-1)
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - radius**2
    disc = b * b - a * c
    t_side = (-b - torch.sqrt(disc.clamp_min(0))) / a.clamp_min(1e-12)
    y_side = oy + t_side * dy
    t_side = torch.where((disc > 0) & (t_side > _EPS) & (y_side >= 0) & (y_side <= height), t_side, torch.inf)
    safe_dy = torch.where(dy.abs() < 1e-9, torch.full_like(dy, 1e-9), dy)
    t_cap = (height - oy) / safe_dy
    cx = ox + t_cap * dx
    cz = oz + t_cap * dz
    t_cap = torch.where((t_cap > _EPS) & (cx * cx + cz * cz <= radius**2), t_cap, torch.inf)
    on_cap = t_cap < t_side
    hit_t = torch.minimum(t_side, t_cap)

    def normal(p):
        q = p - center[:, None]
        side = torch.stack([q[..., 0], torch.zeros_like(q[..., 1]), q[..., 2]], dim=-1) / radius
        cap = torch.tensor([0.0, 1.0, 0.0], device=p.device).expand_as(side)
        return torch.where(on_cap[..., None], cap, side)

    return hit_t, normal


def _cast(scene: Scene, t: torch.Tensor, height: int, width: int):
    """Ray-cast all frames: z-depth, hit points, normals, texture coords, surface ids (-2 wall, -1 floor, i object)."""
    o, d, basis = _camera_rays(scene, t, height, width)
    num_frames, num_rays = d.shape[:2]
    device = d.device
    # backdrop: inside of the cylinder x^2 + z^2 = R^2 (far root); the camera is inside it
    ox, oz = o[..., 0], o[..., 2]
    dx, dy, dz = d.unbind(-1)
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - scene.wall_radius**2
    best_t = (-b + torch.sqrt((b * b - a * c).clamp_min(0))) / a.clamp_min(1e-12)
    surface = torch.full((num_frames, num_rays), -2, dtype=torch.int64, device=device)
    # ground plane y = 0
    t_floor = torch.where(dy < -1e-9, -o[..., 1] / torch.where(dy < -1e-9, dy, -torch.ones_like(dy)), torch.inf)
    closer = t_floor < best_t
    best_t = torch.where(closer, t_floor, best_t)
    surface = torch.where(closer, -1, surface)
    normal_fns = []
    yaws = []
    centers = []
    for index, prim in enumerate(scene.primitives):
        center = prim.center(t)
        yaw = prim.yaw + prim.spin * t
        if prim.shape == "sphere":
            hit_t, normal_fn = _intersect_sphere(o, d, center, prim.size[0])
        elif prim.shape == "box":
            hit_t, normal_fn = _intersect_box(o, d, center, prim.size, yaw)
        else:
            hit_t, normal_fn = _intersect_cylinder(o, d, center, prim.size[0], prim.size[1])
        closer = hit_t < best_t
        best_t = torch.where(closer, hit_t, best_t)
        surface = torch.where(closer, index, surface)
        normal_fns.append(normal_fn)
        yaws.append(yaw)
        centers.append(center)

    points = o + best_t[..., None] * d
    # floor / wall defaults
    wall_normal = -torch.stack([points[..., 0], torch.zeros_like(points[..., 1]), points[..., 2]], dim=-1)
    wall_normal = wall_normal / wall_normal.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    normals = torch.where(
        (surface == -1)[..., None], torch.tensor([0.0, 1.0, 0.0], device=device).expand_as(points), wall_normal
    )
    arc = torch.atan2(points[..., 0], points[..., 2]) * scene.wall_radius
    coords = torch.where(
        (surface == -2)[..., None],
        torch.stack([arc, points[..., 1], torch.zeros_like(arc)], dim=-1),
        points,
    )
    for index, (normal_fn, yaw, center) in enumerate(zip(normal_fns, yaws, centers)):
        mask = (surface == index)[..., None]
        if not bool(mask.any()):
            continue
        normals = torch.where(mask, normal_fn(points), normals)
        local = _rotate_y(points - center[:, None], -yaw)
        coords = torch.where(mask, local, coords)
    return best_t, normals, coords, surface, d, basis


def render(
    scene: Scene,
    style: Style,
    num_frames: int = 8,
    height: int = 64,
    width: int = 64,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``scene`` in ``style``: RGB (F,3,H,W) float32 in [0,1] and z-depth (F,1,H,W) in scene units.

    All frames and pixels are cast at once. Depth does not depend on ``style``, so rendering the same
    scene with another style gives the ground-truth edit with identical depth.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got height={height}, width={width}")
    device = torch.device(device)
    t = scene.times(num_frames, device=device)
    depth, normals, coords, surface, dirs, (right, up, forward) = _cast(scene, t, height, width)
    # size of one pixel on the surface hit, for texture anti-aliasing
    pixel_angle = 2 * math.tan(math.radians(scene.camera.fov) / 2) / height
    unit_dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    cos_incidence = (normals * unit_dirs).sum(-1).abs().clamp_min(0.1)
    footprint = depth * dirs.norm(dim=-1) * pixel_angle / cos_incidence

    def color(name):
        return torch.tensor(PALETTE[name], dtype=torch.float32, device=device)

    # albedo per surface class
    obj_base, floor_base, wall_base = color(style.object_color), color(style.floor_color), color(style.wall_color)
    obj_pattern = texture_pattern(style.object_texture, coords, 1, OBJECT_PERIOD, footprint)[..., None]
    obj_albedo = torch.lerp(obj_base, _second_color(obj_base), obj_pattern)
    # small per-object brightness variation so neighbouring objects stay distinguishable
    shade = 1.0 + 0.12 * ((surface.clamp_min(0) % 3) - 1).to(torch.float32)[..., None]
    obj_albedo = obj_albedo * shade
    floor_pattern = texture_pattern(style.floor_texture, coords, 0, FLOOR_PERIOD, footprint)[..., None]
    floor_albedo = torch.lerp(floor_base, _second_color(floor_base), floor_pattern)
    # the wall gets a soft vertical gradient (lighter higher up)
    wall_albedo = wall_base * (0.85 + 0.15 * (coords[..., 1:2] / 4.0).clamp(0, 1))
    albedo = torch.where(
        (surface >= 0)[..., None], obj_albedo, torch.where((surface == -1)[..., None], floor_albedo, wall_albedo)
    )
    light = _light_vector(style.light_direction, right[0], up[0], forward[0])
    lambert = (normals @ light).clamp_min(0.0)[..., None]
    rgb = albedo * (_AMBIENT + LIGHT_LEVELS[style.light_level] * lambert)
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
