"""Benchmark drag (move a subject) on synthetic scenes with an exact target (docs/drag.md; every
figure: docs/drag_results.md).

Not a test: it runs the bundled demo model (64 px) on held-out scenes of its synthetic world. In each scene one object
(the one ``bench_erase.pick_subject`` picks) is moved in the world sideways, along the ground at a constant distance
from the first frame's camera, so that its first-frame projection shifts by a known vector (its centre's, 6 to 14 px);
the scene re-rendered is the exact target, and rendered without the object the exact background. The drag is that
one vector, given on frame 0 from a pixel on the subject, with the subject's mask on frame 0 only (tracked by
``flow``); it applies to every frame (the camera moves, so the true shift of later frames differs a little: part of
what is measured).

The subject is drawn in a colour of its own (the palette colour farthest from the scene's object, floor and wall
colours; same renderer, light and texture), so that its colour tells it from everything else exactly. Per scene it
reports:

* outside the old and new places (``DragLayers.union``, :func:`gen1.drag.drag_layers`) the output equals the source;
* the moved subject's mask on the output, by colour (a pixel is the subject's where its nearest colour in the source
  frame is one of the subject's), against the target's true mask: IoU and centroid error (px), mean over frames (the
  target itself scores about 1.0 and 0 px);
* PSNR inside the union of the true old and new masks against the target, for the drag and for an erase-then-paste
  baseline (the subject erased by ``erase=True`` from the same frame-0 mask, then its source pixels pasted where the
  same warp puts them);
* the warp error inside that union (frame t+1 against frame t carried along the target's flow) against the target's.

    OMP_NUM_THREADS=1 python scripts/bench_drag.py --scenes 32 --steps 20 --json docs/drag_32.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np
import torch
from bench_common import add_sampler_argument, add_scene_arguments, load_scene_pipeline, run_scenes, use_sampler
from bench_erase import pick_subject, psnr_inside, subject_masks, warp_error, with_primitive

from gen1.demo import DEMO_GUIDANCE
from gen1.demo.world import HELD_OUT_START, demo_scene
from gen1.depth.warp import warp_layer
from gen1.drag import drag_layers, parse_drag
from gen1.masked_edits import edit_region
from gen1.synthetic import render, sample_style
from gen1.synthetic.style import PALETTE
from gen1.synthetic.raycast import _camera_rays

SEED_OFFSET = 400_000  # held-out scenes of the demo world, apart from the erase benchmark's and the edit cases


def project(scene, point: torch.Tensor, size: int, time: float = 0.0) -> torch.Tensor:
    """Pixel (column, row) of the world ``point`` (3,) at ``time`` (0: frame 0), as the ray caster lays pixels out."""
    origin, _, (right, up, forward) = _camera_rays(scene, torch.tensor([float(time)]), size, size)
    relative = point - origin[0, 0]
    depth = float(relative @ forward[0])
    tan_half = math.tan(math.radians(scene.camera.fov) / 2)
    x, y = float(relative @ right[0]) / depth, float(relative @ up[0]) / depth
    return torch.tensor([(x / tan_half + 1) * size / 2 - 0.5, (1 - y / tan_half) * size / 2 - 0.5])


def sideways(scene) -> torch.Tensor:
    """A unit move along the ground perpendicular to frame 0's viewing direction: the distance stays the same."""
    _, _, (_, _, forward) = _camera_rays(scene, torch.zeros(1), 4, 4)
    direction = torch.tensor([-float(forward[0, 2]), 0.0, float(forward[0, 0])])
    return direction / direction.norm()


def subject_colour(style) -> str:
    """The palette colour farthest from the style's object, floor and wall colours: the subject is drawn in it, so
    that its colour tells it from everything else exactly."""
    used = [torch.tensor(PALETTE[name]) for name in (style.object_color, style.floor_color, style.wall_color)]
    return max(PALETTE, key=lambda name: min(float((torch.tensor(PALETTE[name]) - c).norm()) for c in used))


def recoloured(scene, style, frames, masks, args):
    """``frames`` with the subject (where ``masks``) drawn in :func:`subject_colour` (the same renderer, light and
    texture; the other objects keep the style's colour)."""
    unique = dataclasses.replace(style, object_color=subject_colour(style))
    other, _ = render(scene, unique, args.frames, args.size, args.size)
    return torch.where(masks > 0.5, other, frames)


def moved_case(scene, style, case, args, rng):
    """The subject moved sideways by 6-14 px (its centre's frame-0 projection), its target render, and the drag
    vector; None when neither direction keeps it mostly in view."""
    index = case["index"]
    prim = scene.primitives[index]
    centre = prim.center(torch.zeros(1))[0]
    if prim.shape == "cylinder":
        centre = centre + torch.tensor([0.0, prim.size[1] / 2, 0.0])
    unit = sideways(scene)
    per_unit = project(scene, centre + unit, args.size) - project(scene, centre, args.size)
    length = float(rng.uniform(args.min_move, args.max_move))
    for sign in rng.permutation([-1.0, 1.0]):
        step = unit * sign * length / float(per_unit.norm())
        vector = project(scene, centre + step, args.size) - project(scene, centre, args.size)
        moved = dataclasses.replace(prim, position=(prim.position[0] + float(step[0]),
                                                    prim.position[1] + float(step[2])))
        target_scene = with_primitive(scene, index, moved)
        target, target_depth = render(target_scene, style, args.frames, args.size, args.size)
        new_masks = subject_masks(target_depth, case["background_depth"])
        target = recoloured(target_scene, style, target, new_masks, args)
        start = start_on_subject(case["masks"][0, 0], project(scene, centre, args.size))
        end = start + vector
        in_view = bool((new_masks.mean(dim=(1, 2, 3)) >= 0.5 * case["masks"].mean(dim=(1, 2, 3))).all())
        if in_view and bool(((end >= 0) & (end <= args.size - 1)).all()):
            text = f"{start[0]:.2f},{start[1]:.2f}:{end[0]:.2f},{end[1]:.2f}"
            return dict(target=target, target_depth=target_depth, new_masks=new_masks, drag=text,
                        vector=[round(float(v), 3) for v in vector],
                        track_on=lambda masks, prim=prim, step=step: true_track(scene, prim, step, masks, args))
    return None


def true_track(scene, prim, step, masks, args) -> list[list[str]]:
    """Per frame, the vector the subject's centre really moves by in the image (the camera moves, so it is not frame
    0's on later frames), from the pixel of the subject nearest its centre: a drag track file's contents."""
    track = []
    for index, when in enumerate(scene.times(args.frames).tolist()):
        centre = prim.center(torch.tensor([when]))[0]
        if prim.shape == "cylinder":
            centre = centre + torch.tensor([0.0, prim.size[1] / 2, 0.0])
        here = project(scene, centre, args.size, when)
        vector = project(scene, centre + step, args.size, when) - here
        start = start_on_subject(masks[index, 0], here)
        end = (start + vector).clamp(0, args.size - 1)
        track.append([f"{start[0]:.2f},{start[1]:.2f}:{end[0]:.2f},{end[1]:.2f}"])
    return track


def start_on_subject(mask: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    """``point`` when it is on ``mask`` (H, W), else the mask's pixel nearest it."""
    rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
    candidates = torch.stack([cols, rows], dim=1).float()
    if bool(((candidates - point.round()).abs().sum(dim=1) == 0).any()):
        return point
    return candidates[(candidates - point).norm(dim=1).argmin()]


def colour_mask(output: torch.Tensor, source: torch.Tensor, old_masks: torch.Tensor):
    """Per frame: the pixels whose colour is nearest a colour of the subject in the source frame (rather than a colour
    of anything else there): exact where the subject's colour is its own (:func:`recoloured`). Float (F, 1, H, W)."""
    masks = []
    for frame, src, old in zip(output, source, old_masks, strict=True):
        inside = old.flatten() > 0.5
        colours = src.flatten(1).T  # (H*W, 3)
        pixels = frame.flatten(1).T
        to_subject = torch.cdist(pixels, colours[inside]).min(dim=1).values
        to_rest = torch.cdist(pixels, colours[~inside]).min(dim=1).values
        masks.append((to_subject < to_rest).reshape(1, *frame.shape[-2:]))
    return torch.stack(masks).float()


def mask_scores(estimate: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Mean over frames of the IoU and of the centroid distance (px) of ``estimate`` against ``truth``."""
    from gen1.drag import centroids

    est, tru = estimate > 0.5, truth > 0.5
    ious = [float((e & t).sum() / (e | t).sum().clamp_min(1)) for e, t in zip(est, tru, strict=True)]
    distances = (centroids(estimate) - centroids(truth)).norm(dim=1)
    empty = est.flatten(1).sum(dim=1) == 0
    distances = torch.where(empty, torch.full_like(distances, float(estimate.shape[-1])), distances)
    return float(np.mean(ious)), float(distances.mean())


def make_case(seed, args):
    """The scene, its subject (recoloured), the move and its target; or (None, why it was skipped)."""
    scene, style = demo_scene(seed), sample_style(seed)
    case = pick_subject(scene, style, args.frames, args.size)
    if case is None:
        return None, "no object covers 2-40 % of frame 0 and stays visible"
    moved = moved_case(scene, style, case, args, np.random.default_rng(seed))
    if moved is None:
        return None, "the object leaves the view when moved either way"
    frames = recoloured(scene, style, case["frames"], case["masks"], args)
    return dict(case, frames=frames, subject=scene.primitives[case["index"]].shape, **moved), None


def run_scene(pipe, seed, args):
    case, why = make_case(seed, args)
    if case is None:
        return None, why
    frames, masks, moved = case["frames"], case["masks"], case
    generator = lambda: torch.Generator().manual_seed(args.seed)  # noqa: E731
    common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, size=args.size, output_type="pt",
                  temporal_guidance_scale=args.temporal_guidance, mask=masks[0, 0].numpy(), mask_frame=0,
                  erase_fill=args.erase_fill)
    depth = pipe.prepare_depth(frames, None)
    subject = edit_region(masks[0, 0].numpy(), frames, (args.size, args.size), mask_frame=0, depth=depth)
    drag = [moved["drag"]]
    if args.true_track:  # every frame's true vector, from a track file (from the tracked subject's pixel nearest)
        import tempfile
        from pathlib import Path

        drag = [str(Path(tempfile.mkdtemp()) / "track.json")]
        Path(drag[0]).write_text(json.dumps(moved["track_on"](subject)))
    result = pipe(frames, drag=drag, generator=generator(), drag_strength=args.strength, **common)
    dragged = result.frames
    erased = pipe(frames, erase=True, generator=generator(), **common).frames
    layers = drag_layers(depth, subject, parse_drag(drag), (args.size, args.size))
    colours, landed = warp_layer(frames, (subject > 0.5).float(), layers.transforms)
    pasted = torch.where(landed > 0.5, colours, erased)  # erase, then paste the subject's pixels at the new place
    outside = (layers.union < 0.5).expand_as(frames)
    union = ((masks + moved["new_masks"]) > 0).float()
    target, truth = moved["target"], moved["new_masks"]
    row = dict(seed=seed, subject=case["subject"], mask_share=float(masks.mean()),
               drag=moved["drag"], vector=moved["vector"], outside_exact=bool(torch.equal(dragged[outside],
                                                                                          frames[outside])))
    for name, video in (("drag", dragged), ("paste", pasted), ("target", target)):
        iou, centroid = mask_scores(colour_mask(video, frames, masks), truth)
        row.update({f"{name}_iou": iou, f"{name}_centroid_px": centroid})
    if args.stills and len(STILLS) < args.stills_scenes:
        STILLS.append([frames, result.depth, dragged, pasted, target])
    uncovered = (masks * (1 - truth) > 0).float()  # where the subject was and is no longer: what both draw
    for part, region in (("new_place", truth), ("uncovered", uncovered)):
        empty = not bool(region.any())
        row.update({f"drag_psnr_{part}": None if empty else psnr_inside(dragged, target, region),
                    f"paste_psnr_{part}": None if empty else psnr_inside(pasted, target, region)})
    row.update(drag_psnr=psnr_inside(dragged, target, union), paste_psnr=psnr_inside(pasted, target, union),
               drag_warp_error=warp_error(dragged, target, union), paste_warp_error=warp_error(pasted, target, union),
               target_warp_error=warp_error(target, target, union))
    return row, None


#: The videos of the first scenes, for --stills: source, structure, drag, erase-then-paste, target.
STILLS: list[list[torch.Tensor]] = []


def summary(rows):
    done = [row for row in rows if row is not None]
    if not done:
        return {}

    def mean(key):
        return float(np.mean([row[key] for row in done]))

    def gain(part):  # drag over erase-then-paste inside one part of the union, over the scenes that have it
        pairs = [(r[f"drag_psnr_{part}"], r[f"paste_psnr_{part}"]) for r in done if r.get(f"drag_psnr_{part}")]
        return float(np.mean([d - p for d, p in pairs])) if pairs else None

    return dict(
        scenes=len(done), outside_exact=sum(r["outside_exact"] for r in done),
        drag_iou=mean("drag_iou"), paste_iou=mean("paste_iou"), target_iou=mean("target_iou"),
        drag_centroid_px=mean("drag_centroid_px"), paste_centroid_px=mean("paste_centroid_px"),
        target_centroid_px=mean("target_centroid_px"),
        drag_psnr=mean("drag_psnr"), paste_psnr=mean("paste_psnr"),
        gain_db=float(np.mean([r["drag_psnr"] - r["paste_psnr"] for r in done])),
        gain_db_new_place=gain("new_place"), gain_db_uncovered=gain("uncovered"),
        scenes_gain_positive=sum(r["drag_psnr"] > r["paste_psnr"] for r in done),
        drag_warp_ratio=mean("drag_warp_error") / max(mean("target_warp_error"), 1e-12),
        paste_warp_ratio=mean("paste_warp_error") / max(mean("target_warp_error"), 1e-12),
        scenes_iou_06=sum(r["drag_iou"] >= 0.6 for r in done),
        scenes_centroid_2px=sum(r["drag_centroid_px"] <= 2 for r in done),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scene_arguments(parser, stills_columns="source | structure | drag | erase-then-paste | target",
                        guidance=DEMO_GUIDANCE)
    parser.add_argument("--steps", type=int, default=20)
    add_sampler_argument(parser)
    parser.add_argument("--strength", type=float, default=1.0, help="the drag's start, drag_strength (default 1, as "
                        "the published figures were measured; gen1's default is DRAG_STRENGTH)")
    parser.add_argument("--erase-fill", choices=("frames", "boundary"), default=None,
                        help="where the erase takes what the subject hid (default: gen1's, ERASE_FILL)")
    parser.add_argument("--min-move", type=float, default=6.0, help="shortest move in pixels (default 6)")
    parser.add_argument("--max-move", type=float, default=14.0, help="longest move in pixels (default 14)")
    parser.add_argument("--render-subject", action="store_true", help="the model draws the moved subject too "
                        "(gen1.drag.KEEP_SUBJECT = False) instead of keeping its pixels")
    parser.add_argument("--true-track", action="store_true", help="drag by a track file of every frame's true "
                        "vector instead of frame 0's vector on every frame")
    args = parser.parse_args(argv)
    if args.render_subject:
        import gen1.drag

        gen1.drag.KEEP_SUBJECT = False
    torch.set_num_threads(1)
    pipe = load_scene_pipeline(args)
    use_sampler(pipe, args.scheduler)
    return run_scenes(pipe, args, HELD_OUT_START + SEED_OFFSET, run_scene, summary, STILLS)


if __name__ == "__main__":
    main()
