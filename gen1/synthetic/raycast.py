"""Batched analytic ray casting of a :class:`Scene`: all frames and pixels at once.

Ray directions have a unit component along the camera's optical axis, so the ray parameter of a hit is its
z-depth. Returns, per pixel, the z-depth, the surface normal, texture coordinates and the surface id.
"""

from __future__ import annotations

import math

import torch

from gen1.synthetic.scene import Scene

_EPS = 1e-4


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
    if scene.camera.roll:
        roll = math.radians(scene.camera.roll)
        right, up = (math.cos(roll) * right + math.sin(roll) * up, math.cos(roll) * up - math.sin(roll) * right)
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


def cast_rays(scene: Scene, t: torch.Tensor, height: int, width: int):
    """Ray-cast all frames of ``scene`` at times ``t`` (F,).

    Returns ``(depth (F,N), normals (F,N,3), coords (F,N,3), surface (F,N), directions (F,N,3), (right, up,
    forward))``: z-depth of the nearest hit, its unit normal, its texture coordinates (object-local for
    objects, world for the floor, (arc length, height, 0) for the wall), the surface id (-2 wall, -1 floor,
    ``i`` primitive ``i``), the ray directions (unit forward component) and the per-frame camera basis (F,3).
    """
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
