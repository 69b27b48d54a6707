"""Benchmark erase, replace and mask tracking on synthetic scenes with exact targets (docs/masked_edits.md;
every figure: docs/masked_edits_results.md).

Not a test: it runs the bundled demo model (64 px) on held-out scenes of its synthetic world. Each scene is rendered
with and without one object (:mod:`gen1.synthetic`): removing a primitive and re-rendering gives the exact clip an
erase should produce, and comparing the two depths gives the object's exact mask on every frame. The mask is given
on frame 0 only and tracked by the ``flow`` tracker.

Per scene it reports:

* tracking: the IoU of the tracked masks against the exact ones (mean over frames 1..F-1);
* erase (``erase=True``, depth filled) against the same edit with the subject's depth kept (``mask_structure="keep"``):
  outside the region the output equals the source exactly (checked); PSNR inside the exact mask against the true
  background; whether the depth estimated on the output inside the mask is nearer the background's than the
  subject's (per frame); the warp error inside the mask (frame t+1 against frame t carried along the true
  background's flow) against the true background's own;
* replace (the object swapped for another shape, same motion, the target's middle frame as the reference, exact
  per-frame union masks): PSNR inside the union of both objects' masks with the new object's true depth given
  against the old subject's depth given.

    OMP_NUM_THREADS=1 python scripts/bench_erase.py --scenes 32 --json erase.json   # the model's sampler and steps
    OMP_NUM_THREADS=1 python scripts/bench_erase.py --scenes 32 --erase-strength 1 --no-replace   # from pure noise

``--crossing F`` makes the subject walk across the view (F times its footprint radius over the clip: a passer-by,
whose background other frames see), and ``--erase-fill boundary`` fills what it hid from the boundary only instead of
copying it from those frames (gen1's default, ``frames``):

    OMP_NUM_THREADS=1 python scripts/bench_erase.py --scenes 32 --crossing 3 --exact-masks --no-replace
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np
import torch
from bench_common import add_sampler_argument, add_scene_arguments, load_scene_pipeline, run_scenes

from gen1.demo import DEMO_GUIDANCE
from gen1.demo.world import HELD_OUT_START, demo_scene
from gen1.synthetic import inverse_depth_for_viewing, render, sample_style
from gen1.tracking import track_mask

SEED_OFFSET = 300_000  # held-out scenes of the demo world, apart from its edit cases
SWAP = {"sphere": "box", "box": "cylinder", "cylinder": "sphere"}


def subject_masks(depth_with, depth_without):
    """Where the object is the nearest surface: the depth with it is nearer than without it."""
    return (depth_with < depth_without - 1e-4).float()


def with_primitive(scene, index, primitive=None):
    """``scene`` with primitive ``index`` replaced by ``primitive``, or without it (None): the scene re-rendered as
    the target of an edit of that object."""
    kept = (primitive,) if primitive is not None else ()
    return dataclasses.replace(scene, primitives=scene.primitives[:index] + kept + scene.primitives[index + 1:])


def crossing(scene, index, footprints):
    """``scene`` with primitive ``index`` walking across the view instead of its own motion: in a straight line
    across the first frame's line of sight, ``footprints`` times its footprint radius over the clip, centred on its
    place, without spinning (a passer-by)."""
    primitive = scene.primitives[index]
    origin, target = scene.camera.pose(torch.zeros(1))
    sight = (target - origin)[0]
    across = torch.tensor([-float(sight[2]), float(sight[0])])
    across = across / across.norm()
    foot = math.hypot(primitive.size[0], primitive.size[2]) if primitive.shape == "box" else primitive.size[0]
    velocity = across * footprints * foot / scene.duration
    half = velocity * scene.duration / 2
    walker = dataclasses.replace(primitive, motion="linear", velocity=(float(velocity[0]), float(velocity[1])),
                                 spin=0.0, position=(primitive.position[0] - float(half[0]),
                                                     primitive.position[1] - float(half[1])))
    return with_primitive(scene, index, walker)


def pick_subject(scene, style, frames, size, footprints=0.0):
    """The primitive whose frame-0 mask is largest while covering under 40 % of the frame and at least 2 %, with its
    masks visible on every frame; None when no primitive qualifies. ``footprints`` > 0: each candidate walks across
    the view (:func:`crossing`), and the case's clip is the scene with it walking."""
    best = None
    as_it_is = None if footprints > 0 else render(scene, style, frames, size, size)  # the same clip for every candidate
    for index in range(len(scene.primitives)):
        moved = crossing(scene, index, footprints) if footprints > 0 else scene
        rgb, depth = as_it_is or render(moved, style, frames, size, size)
        rgb_bg, depth_bg = render(with_primitive(scene, index), style, frames, size, size)
        masks = subject_masks(depth, depth_bg)
        share = masks.mean(dim=(1, 2, 3))
        if 0.02 <= float(share[0]) <= 0.4 and bool((share > 0.005).all()):
            if best is None or float(share[0]) > best[0]:
                best = (float(share[0]), index, rgb, depth, rgb_bg, depth_bg, masks, moved)
    if best is None:
        return None
    _, index, rgb, depth, rgb_bg, depth_bg, masks, moved = best
    return dict(index=index, frames=rgb, depth=depth, background=rgb_bg, background_depth=depth_bg, masks=masks,
                scene=moved)


def psnr_inside(output, target, masks):
    error = ((output - target) ** 2 * masks).sum() / (masks.sum() * 3).clamp_min(1)
    return float(10 * math.log10(1.0 / max(float(error), 1e-12)))


def warp_error(video, flow_source, masks):
    """Mean |frame t+1 - frame t carried along the flow of ``flow_source``| inside frame t+1's mask."""
    import cv2

    from gen1.tracking import dense_flow, gray_uint8

    total, count = 0.0, 0.0
    height, width = video.shape[-2:]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    for t in range(video.shape[0] - 1):
        flow = dense_flow(gray_uint8(flow_source[t + 1]), gray_uint8(flow_source[t]))
        frame = video[t].permute(1, 2, 0).numpy().astype(np.float32)
        carried = cv2.remap(frame, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
        diff = np.abs(video[t + 1].permute(1, 2, 0).numpy() - carried).mean(axis=-1)
        weight = masks[t + 1, 0].numpy()
        total += float((diff * weight).sum())
        count += float(weight.sum())
    return total / max(count, 1.0)


def nearer_background(pipe, output, source, background, masks):
    """Per frame: whether the depth estimated on ``output`` inside the mask is nearer the background's estimate
    than the source's (the subject's)."""
    estimate = pipe.depth_estimator.estimate
    out_d, src_d, bg_d = (estimate(video, batch_size=8) for video in (output, source, background))
    result = []
    for f in range(output.shape[0]):
        m = masks[f] > 0.5
        to_bg = float((out_d[f][m] - bg_d[f][m]).abs().mean())
        to_subject = float((out_d[f][m] - src_d[f][m]).abs().mean())
        result.append(to_bg < to_subject)
    return result


def run_scene(pipe, seed, args):
    """The scene's row, and None; or None and why the scene is skipped."""
    scene, style = demo_scene(seed), sample_style(seed)
    case = pick_subject(scene, style, args.frames, args.size, args.crossing)
    if case is None:
        return None, "no object covers 2-40 % of frame 0 and stays visible"
    frames, masks = case["frames"], case["masks"]
    generator = lambda: torch.Generator().manual_seed(args.seed)  # noqa: E731
    common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, size=args.size, output_type="pt",
                  temporal_guidance_scale=args.temporal_guidance, scheduler=args.scheduler)
    erase_start = dict(erase_strength=args.erase_strength, erase_fill=args.erase_fill)
    depth_estimate = pipe.prepare_depth(frames, None)
    tracked = track_mask(frames, masks[:1], 0, depth_estimate)
    ious = [float(((tracked[f] > 0.5) & (masks[f] > 0.5)).sum() / ((tracked[f] > 0.5) | (masks[f] > 0.5)).sum())
            for f in range(1, args.frames)]
    row = dict(seed=seed, subject=scene.primitives[case["index"]].shape, mask_share=float(masks.mean()),
               tracking_iou=float(np.mean(ious)))
    if not args.erase:
        return {**row, **replace_scene(pipe, case["scene"], style, case, args, common, generator)}, None
    # the mask on frame 0 only, tracked; or (--exact-masks) the exact mask of every frame, to tell the tracker's
    # misses from the erase's
    given = dict(mask=masks[:, 0].numpy()) if args.exact_masks else dict(mask=masks[0, 0].numpy(), mask_frame=0)
    erased = pipe(frames, erase=True, generator=generator(), **given, **common, **erase_start).frames
    kept = pipe(frames, erase=True, mask_structure="keep", generator=generator(), **given, **common,
                **erase_start).frames
    from gen1.masked_edits import edit_region

    region = edit_region(given["mask"], frames, (args.size, args.size), mask_frame=given.get("mask_frame"),
                         depth=depth_estimate, erase=True)
    outside = (region < 0.5).expand_as(frames)
    row.update(outside_exact=bool(torch.equal(erased[outside], frames[outside])),
               erase_psnr=psnr_inside(erased, case["background"], masks),
               kept_depth_psnr=psnr_inside(kept, case["background"], masks))
    if args.stills and len(STILLS) < args.stills_scenes:
        STILLS.append([frames, region, erased, kept, case["background"]])
    near = nearer_background(pipe, erased, frames, case["background"], masks)
    row["nearer_background_share"] = float(np.mean(near))
    row["warp_error"] = warp_error(erased, case["background"], masks)
    row["warp_error_truth"] = warp_error(case["background"], case["background"], masks)
    if args.replace:
        row.update(replace_scene(pipe, case["scene"], style, case, args, common, generator))
    else:
        row.update(replace_new_depth_psnr=None, replace_old_depth_psnr=None)
    return row, None


#: The videos of the first scenes, for --stills: source, the region, erase, erase with the subject's depth kept, truth.
STILLS: list[list[torch.Tensor]] = []


def replace_scene(pipe, scene, style, case, args, common, generator):
    """The subject swapped for another shape: PSNR inside the union mask, new depth given vs the old one's."""
    old = scene.primitives[case["index"]]
    size = old.size if SWAP[old.shape] != "sphere" else (max(old.size),) * 3
    new = dataclasses.replace(old, shape=SWAP[old.shape], size=tuple(args.swap_scale * s for s in size))
    swapped = with_primitive(scene, case["index"], new)
    target, target_depth = render(swapped, style, args.frames, args.size, args.size)
    new_masks = subject_masks(target_depth, case["background_depth"])
    union = ((case["masks"] + new_masks) > 0).float()
    if bool((union.mean(dim=(1, 2, 3)) > 0.6).any()):
        return dict(replace_new_depth_psnr=None, replace_old_depth_psnr=None)
    reference = target[args.frames // 2]
    scores = {}
    for name, depth in (("new", target_depth), ("old", case["depth"])):
        out = pipe(case["frames"], mask=union[:, 0].numpy(), reference_image=reference,
                   depth=inverse_depth_for_viewing(depth), generator=generator(), **common).frames
        scores[f"replace_{name}_depth_psnr"] = psnr_inside(out, target, union)
    return scores


def summary(rows):
    done = [row for row in rows if row is not None]
    replaced = [row for row in done if row.get("replace_new_depth_psnr") is not None]
    result = dict(scenes=len(done), tracking_mean_iou=float(np.mean([r["tracking_iou"] for r in done])))
    if replaced:
        result.update(replace_scenes=len(replaced), replace_gain_db=float(np.mean(
            [r["replace_new_depth_psnr"] - r["replace_old_depth_psnr"] for r in replaced])))
    done = [row for row in done if "erase_psnr" in row]
    if not done:
        return result
    return dict(
        **result,
        outside_exact=all(r["outside_exact"] for r in done),
        erase_psnr=float(np.mean([r["erase_psnr"] for r in done])),
        kept_depth_psnr=float(np.mean([r["kept_depth_psnr"] for r in done])),
        erase_gain_db=float(np.mean([r["erase_psnr"] - r["kept_depth_psnr"] for r in done])),
        nearer_background_share=float(np.mean([r["nearer_background_share"] for r in done])),
        warp_error_ratio=float(np.mean([r["warp_error"] for r in done]) /
                               max(np.mean([r["warp_error_truth"] for r in done]), 1e-12)),
        erased_scenes_nearer_background_90=sum(r["nearer_background_share"] >= 0.9 for r in done),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scene_arguments(parser, stills_columns="source | region | erase | erase with the subject's depth kept | "
                        "true background", guidance=DEMO_GUIDANCE)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's recorded)")
    add_sampler_argument(parser, default=None)
    parser.add_argument("--erase-strength", type=float, default=None,
                        help="an erase's start from its pre-filled region (default: gen1's, ERASE_STRENGTH; 1 = "
                        "from pure noise, as before it was pre-filled)")
    parser.add_argument("--erase-fill", choices=("frames", "boundary"), default=None,
                        help="where the erase takes what the subject hid (default: gen1's, ERASE_FILL)")
    parser.add_argument("--exact-masks", action="store_true", help="give the exact mask of every frame instead of "
                        "frame 0's tracked (tells the tracker's misses from the erase's)")
    parser.add_argument("--crossing", type=float, default=0.0, metavar="FOOTPRINTS",
                        help="the subject walks across the view, this many times its footprint radius over the clip "
                        "(a passer-by; default 0: the scene's own motion)")
    parser.add_argument("--swap-scale", type=float, default=1.0, help="the new object's size over the old one's")
    parser.add_argument("--no-erase", dest="erase", action="store_false", help="only tracking and replace")
    parser.add_argument("--no-replace", dest="replace", action="store_false", help="skip the replace edits")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pipe = load_scene_pipeline(args)
    return run_scenes(pipe, args, HELD_OUT_START + SEED_OFFSET, run_scene, summary, STILLS)


if __name__ == "__main__":
    main()
