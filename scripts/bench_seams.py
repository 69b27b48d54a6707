"""Seams of long edits: seam ratio, warp error and UNet evaluations per frame, fixed vs shifted windows.

Edits long clips with a pipeline (the bundled 64 px demo model by default) under several window settings,
once per seed, and scores the edits with ``gen1.eval``: the seam ratio (:mod:`gen1.eval.seams`) over the
windows the edits used, of the seeds' mean warp error per frame pair (``seam_ratio``; a seam is at the same
frames in every seed, the noise of one seed's texture averages out) and of each seed alone
(``seam_ratio_seeds``); the same ratio on the source (the clip's own level at those frames); the overall warp
error (mean over the seeds); and how many frames the UNet processed per frame of video (all steps and guidance
terms together). Every setting of a clip uses the same seeds, depth and reference image, so settings differ
only in their windows.

Clips: ``NAME`` or ``NAME:FRAMES`` from ``--clips-dir`` (the first FRAMES frames; all without);
``NAME:pingpong``, the clip played forward and then backward (2F - 1 frames: how the shared 40- and 42-frame
clips reach the 48+ frames the seam benchmark asks for); and ``synth:SEED[:FRAMES]``, a procedural scene as
``gen1 synth --seed SEED --frames FRAMES`` renders it.
Settings: ``fixed:OVERLAP`` (the same windows at every step) or ``shifted:OVERLAP`` (the default:
:func:`gen1.windows.step_windows`). "x today" compares with ``fixed`` at the default overlap (window // 4).

    python scripts/bench_seams.py --threads 1 --json docs/long_videos.json   # the first order's table (~25 min)
    python scripts/bench_seams.py --settings fixed:2 shifted:2 --seeds 0 1 2 3 4 5 6 7 \
        --json docs/long_videos_8_seeds.json                                  # its 8-seed table
    # both in docs/long_videos_results.md ("Earlier figures: the first order of shifts")
    python scripts/bench_seams.py --clips wolf --settings fixed:2 shifted:2 --steps 4 --seeds 0   # a quick look

Not a test: it reports, it does not assert. On a shared CPU run it alone (``--threads 1`` avoids
oversubscribing cores that other processes use).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import add_sampler_argument, use_sampler


REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = ("car-turn:48", "car-turn:80", "wolf", "blackswan", "synth:1000:48", "synth:1001:48")
DEFAULT_SETTINGS = ("fixed:2", "shifted:2", "fixed:3", "shifted:3")
COLUMNS = ("clip", "frames", "window", "overlap", "method", "seam_ratio", "seam_ratio_seeds", "seam_ratio_source",
           "warp_error", "warp_vs_today", "unet_evals_per_frame", "evals_vs_today")


def load_clip(spec: str, clips_dir: Path, size: int) -> tuple[str, torch.Tensor]:
    """(label, frames (F, 3, size, size) float in [0, 1]) for a clip spec (see the module docstring)."""
    parts = spec.split(":")
    if parts[0] == "synth":
        from gen1.synthetic import sample_clip

        if len(parts) not in (2, 3):
            raise ValueError(f"--clips: a synthetic clip is synth:SEED[:FRAMES], got {spec!r}")
        frames = int(parts[2]) if len(parts) == 3 else 48
        clip = sample_clip(int(parts[1]), frames, size, size)
        return f"synth {parts[1]}", clip.frames.float().clamp(0, 1)
    from gen1.media import read_video

    if len(parts) > 2 or (len(parts) == 2 and not (parts[1].isdigit() or parts[1] == "pingpong")):
        raise ValueError(f"--clips: a clip is NAME[:FRAMES] or NAME:pingpong, got {spec!r}")
    pingpong = parts[1:] == ["pingpong"]
    path = clips_dir / f"{parts[0]}.mp4"
    clip = read_video(path, size=size, max_frames=int(parts[1]) if len(parts) == 2 and not pingpong else None)
    frames = torch.from_numpy(np.asarray(clip.frames)).permute(0, 3, 1, 2).float() / 255
    if pingpong:  # forward, then backward from the second-to-last frame: 2F - 1 frames, no frame shown twice in a row
        return f"{parts[0]} pingpong", torch.cat([frames, frames.flip(0)[1:]])
    return parts[0], frames


def parse_setting(spec: str) -> tuple[str, int]:
    method, _, overlap = spec.partition(":")
    if method not in ("fixed", "shifted") or not overlap.isdigit():
        raise ValueError(f"--settings: expected fixed:OVERLAP or shifted:OVERLAP, got {spec!r}")
    return method, int(overlap)


def edit(pipe, frames, depth, reference, *, window, overlap, shift, steps, guidance, seed):
    """The edited frames and the frames the UNet processed (batch entries x frames, summed over calls)."""
    processed = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args: processed.append(args[0].shape[0] * args[0].shape[2]))
    try:
        out = pipe(frames, reference_image=reference, depth=depth, guidance_scale=guidance,
                   num_inference_steps=steps, window_size=window, window_overlap=overlap, window_shift=shift,
                   generator=torch.Generator().manual_seed(seed), output_type="pt").frames
    finally:
        handle.remove()
    return out.float().clamp(0, 1), sum(processed)


def bench_clip(pipe, label, frames, reference, args) -> list[dict]:
    from gen1.eval.seams import distinct_layouts, layout_seam_ratio, mean_pair_errors, seam_ratio
    from gen1.eval.warp import mean_warp_error, pair_warp_errors, source_flows
    from gen1.windows import blend_schedule

    depth = pipe.prepare_depth(frames, None)  # what the pipeline would estimate, once for every setting
    flows = source_flows(frames)
    source_errors = pair_warp_errors(frames, flows=flows)
    num_frames, rows, today = frames.shape[0], [], None
    for method, overlap in map(parse_setting, args.settings):
        shift = method == "shifted"
        schedule = blend_schedule(num_frames, args.window, overlap, args.steps, shift=shift)
        start, runs = time.perf_counter(), []
        for seed in args.seeds:
            out, processed = edit(pipe, frames, depth, reference, window=args.window, overlap=overlap, shift=shift,
                                  steps=args.steps, guidance=args.guidance, seed=seed)
            runs.append(pair_warp_errors(out, flows=flows))
        pooled = mean_pair_errors(runs)
        row = dict(clip=label, frames=num_frames, window=args.window, overlap=overlap, method=method,
                   seam_ratio=seam_ratio(pooled, schedule),
                   seam_ratio_seeds=[seam_ratio(run, schedule) for run in runs],
                   seam_ratio_source=seam_ratio(source_errors, schedule),
                   warp_error=sum(map(mean_warp_error, runs)) / len(runs),
                   layout_ratios=[layout_seam_ratio(pooled, layout) for layout in distinct_layouts(schedule)],
                   unet_evals_per_frame=processed / num_frames,
                   seconds_per_edit=round((time.perf_counter() - start) / len(args.seeds), 1))
        if method == "fixed" and overlap == args.window // 4:
            today = row
        rows.append(row)
        print(json.dumps(row), flush=True)
    for row in rows:
        row["warp_vs_today"] = None if today is None else row["warp_error"] / today["warp_error"]
        row["evals_vs_today"] = None if today is None else row["unet_evals_per_frame"] / today["unet_evals_per_frame"]
    return rows


def markdown_table(rows: list[dict]) -> str:
    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, list):  # per seed: the range
            return f"{min(value):.3f}-{max(value):.3f}" if None not in value else "-"
        if isinstance(value, float):
            return f"{value:.5f}" if abs(value) < 0.01 else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row.get(key)) for key in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS), help="NAME[:FRAMES] or synth:SEED[:FRAMES]")
    parser.add_argument("--clips-dir", default=str(REPO.parent / "shared" / "clips"), help="folder of NAME.mp4")
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), help="fixed:OVERLAP / shifted:OVERLAP")
    parser.add_argument("--model", default=None, help="pipeline directory (default: the bundled demo model)")
    parser.add_argument("--window", type=int, default=8, help="frames per window")
    parser.add_argument("--steps", type=int, default=15, help="denoising steps")
    add_sampler_argument(parser)
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels")
    parser.add_argument("--guidance", type=float, default=None, help="content guidance (default: the demo's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3],
                        help="one edit per seed; the seam ratio is taken of their mean error per frame pair")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="write the settings and rows to this JSON file")
    args = parser.parse_args()
    for spec in args.settings:
        parse_setting(spec)
    if args.threads:
        torch.set_num_threads(args.threads)

    from gen1.demo import DEMO_GUIDANCE, bundled_model_dir
    from gen1.demo.showcase import sample_inputs
    from gen1.pipeline import Gen1Pipeline

    args.guidance = DEMO_GUIDANCE if args.guidance is None else args.guidance
    pipe = Gen1Pipeline.from_pretrained(str(args.model or bundled_model_dir()))
    use_sampler(pipe, args.scheduler)
    pipe.cast(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    _, reference, _, _ = sample_inputs(size=args.size)  # a held-out reference image of the demo's world
    rows = []
    for spec in args.clips:
        label, frames = load_clip(spec, Path(args.clips_dir), args.size)
        rows += bench_clip(pipe, label, frames, reference[0], args)
    print(markdown_table(rows))
    if args.json:
        from gen1.atomic import atomic_path

        settings = {key: value for key, value in vars(args).items() if key != "json"}
        settings["clips_dir"] = os.path.relpath(args.clips_dir, REPO)
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(dict(settings=settings, rows=rows), indent=2) + "\n")


if __name__ == "__main__":
    main()
