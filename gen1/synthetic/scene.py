"""Scene geometry and motion (no colours): primitives on a ground plane, a backdrop wall, a moving camera.

Deterministic by seed (:func:`sample_scene` uses its own ``torch.Generator``). Units are metric, y is up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch

SHAPES: tuple[str, ...] = ("sphere", "box", "cylinder")


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
    view in degrees; ``roll`` (degrees) turns the camera counter-clockwise about its optical axis, so the
    picture turns clockwise and the horizon is no longer level.
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
    roll: float = 0.0

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


def sample_scene(seed: int, max_roll: float = 0.0) -> Scene:
    """A random scene, fully determined by ``seed`` (and ``max_roll``; uses its own ``torch.Generator``).

    ``max_roll`` (degrees): the camera's roll is drawn uniformly from ``[-max_roll, max_roll]``. With the
    default 0 the horizon is level and roughly at the same height in every scene, so a frame's layout is
    largely predictable without its depth; a large roll makes the layout something only the structure
    input can tell (the demo model trains and is evaluated that way). The roll is drawn after everything
    else, so a scene's geometry does not depend on ``max_roll``.
    """
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
    if max_roll:
        camera = replace(camera, roll=_uniform(gen, -float(max_roll), float(max_roll)))
    return Scene(primitives=tuple(prims), camera=camera, seed=int(seed))
