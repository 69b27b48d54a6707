"""Quality/time frontier of samplers and step counts on the bundled demo model (CPU is enough: 64 px).

Every setting (sampler x steps x temporal guidance w_t) edits the same held-out-style synthetic cases from the
same initial noise, with depth estimated and content embedded once per case, and is scored against the case's
ground truth: PSNR, SSIM, detail (neighbouring-pixel differences as a share of the ground truth's: PSNR and warp
error both reward blur), warp error (source optical flow), seconds per edit (the denoising loop plus VAE decoding)
and UNet evaluations per frame (counted by a hook on the UNet: batch terms x frames per call, over the clip's
frames). Settings run interleaved in a shuffled order within each case, so a load change on a shared machine
spreads over all of them; seconds are medians over cases.

The reference is today's default, 30 DDIM steps (``--reference``), at each w_t. A setting is within bounds when its
mean PSNR is at most ``--psnr-tolerance`` dB below the reference's and its mean warp error at most
``--warp-tolerance`` (relative) above; it also keeps detail when its mean detail is at most ``--detail-tolerance``
(relative) below. The cheapest setting of each kind, by UNet evaluations per frame, then by seconds, is reported.

    python scripts/bench_steps.py --cases 8 --out docs/performance_steps.json --plot docs/performance_steps.png
    python scripts/bench_steps.py --from-json docs/performance_steps.json --table table.md   # re-summarise only

Cases: the demo world's scenes (rolled cameras, :func:`gen1.demo.world.demo_scene`) at seeds that neither training
(< 1e6) nor the demo's own held-out cases (1e7 + 1e5 + i, 1e7 + 2e5 + i) use: source 1e7 + 5e5 + i, target
1e7 + 6e5 + i.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

SOURCE_OFFSET = 10_500_000
TARGET_OFFSET = 10_600_000

# name -> (diffusers scheduler class, overrides of the model's scheduler config)
SAMPLERS = {
    "ddim": ("DDIMScheduler", {}),
    "dpmpp2m": ("DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++", solver_order=2)),
    "dpmpp2m-karras": ("DPMSolverMultistepScheduler",
                       dict(algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True)),
    "unipc": ("UniPCMultistepScheduler", dict(solver_order=2)),
    "euler": ("EulerDiscreteScheduler", {}),
}


#: Karras sigmas do not fit a squaredcos_cap_v2 (cosine) schedule such as the bundled model's: its sigma_max is in
#: the hundreds, so Karras' rho-spacing puts most steps at the very top and rounds them to the same timestep (20 steps:
#: 998 five times and more), which diffusers' multistep solvers cannot step through (IndexError). Offered for models
#: with a scaled-linear schedule; left out of the default sweep.
KARRAS_NOTE = "Karras sigmas collapse on a cosine schedule"
DEFAULT_SAMPLERS = ["ddim", "dpmpp2m", "unipc", "euler"]


def make_scheduler(base_config, sampler: str):
    """The model's own scheduler config (betas, prediction type, spacing) on the sampler ``sampler``."""
    import diffusers

    class_name, overrides = SAMPLERS[sampler]
    scheduler_cls = getattr(diffusers, class_name)
    return scheduler_cls.from_config(base_config, **overrides)


class EvaluationCounter:
    """Counts UNet evaluations per frame: each call adds batch terms x frames in the call / frames of the clip."""

    def __init__(self, unet, num_frames: int):
        self.num_frames = num_frames
        self.total = 0.0
        self.handle = unet.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        sample = args[0]
        self.total += sample.shape[0] * sample.shape[2] / self.num_frames

    def take(self) -> float:
        value, self.total = self.total, 0.0
        return value


def detail(video: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels (x and y) of a (F, 3, H, W) video: how much fine detail
    it has. PSNR and warp error both reward blur (a blurred edit is nearer the mean and steadier), so the frontier
    also reports each setting's detail as a share of the ground truth's, and the choice guards it."""
    dx = (video[..., :, 1:] - video[..., :, :-1]).abs().mean()
    dy = (video[..., 1:, :] - video[..., :-1, :]).abs().mean()
    return float((dx + dy) / 2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=3, help="number of synthetic edit cases (default 3)")
    parser.add_argument("--frames", type=int, default=8, help="frames per case (default 8)")
    parser.add_argument("--samplers", nargs="+", default=DEFAULT_SAMPLERS, choices=list(SAMPLERS),
                        help=f"default {' '.join(DEFAULT_SAMPLERS)} (dpmpp2m-karras: see KARRAS_NOTE)")
    parser.add_argument("--steps", nargs="+", type=int, default=[2, 3, 4, 6, 8, 10, 15, 20, 30])
    parser.add_argument("--temporal-guidance", nargs="+", type=float, default=[1.0, 1.2],
                        help="w_t values (1 = off, plain CFG on the video model)")
    parser.add_argument("--reference", default="ddim:30", help="SAMPLER:STEPS of today's default (default ddim:30)")
    parser.add_argument("--psnr-tolerance", type=float, default=0.2, help="dB below the reference (default 0.2)")
    parser.add_argument("--warp-tolerance", type=float, default=0.02, help="relative warp error above (default 0.02)")
    parser.add_argument("--detail-tolerance", type=float, default=0.05,
                        help="relative loss of detail (vs the ground truth's) allowed below the reference's "
                             "(default 0.05)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the interleaving order")
    parser.add_argument("--out", type=Path, help="JSON with every measurement and the summary")
    parser.add_argument("--table", type=Path, help="markdown table")
    parser.add_argument("--plot", type=Path, help="PNG: PSNR, warp error and detail against UNet evaluations per frame")
    parser.add_argument("--from-json", type=Path, help="measure nothing: summarise the rows of an earlier --out file "
                        "(with the tolerances given now) into --table / --plot")
    args = parser.parse_args(argv)
    sampler, _, steps = args.reference.partition(":")
    if sampler not in SAMPLERS or not steps.isdigit():
        parser.error(f"--reference must be SAMPLER:STEPS with SAMPLER one of {list(SAMPLERS)}, got {args.reference!r}")
    args.reference = (sampler, int(steps))
    if args.cases < 1 or args.frames < 2 or min(args.steps) < 1:
        parser.error("--cases and --steps must be >= 1 and --frames >= 2")
    return args


def load_pipeline():
    from gen1.demo import bundled_model_dir
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_pretrained(str(bundled_model_dir()))
    pipe.cast(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def settings_of(args) -> list[tuple[str, int, float]]:
    settings = {(s, n, wt) for s in args.samplers for n in args.steps for wt in args.temporal_guidance}
    settings |= {(args.reference[0], args.reference[1], wt) for wt in args.temporal_guidance}
    return sorted(settings)


def measure(args) -> list[dict]:
    """One row per (case, setting)."""
    from gen1.demo.world import demo_scene
    from gen1.eval.edit_benchmark import synthetic_edit_case
    from gen1.eval.image_metrics import psnr, ssim
    from gen1.eval.warp import source_flows, warp_error

    pipe = load_pipeline()
    base_config = pipe.scheduler.config
    guidance = pipe.default_guidance_scale
    counter = EvaluationCounter(pipe.unet, args.frames)
    order_rng = random.Random(args.seed)
    rows = []
    settings = settings_of(args)
    for i in range(args.cases):
        case = synthetic_edit_case(SOURCE_OFFSET + i, TARGET_OFFSET + i, frames=args.frames, size=64,
                                   scene_of=demo_scene)
        depth = pipe.depth_estimator.estimate(case.source)
        content = pipe.content_encoder.encode_image(case.reference)
        flows = source_flows(case.source)
        truth_detail = detail(case.ground_truth)
        order = list(settings)
        order_rng.shuffle(order)
        # one warm-up edit per case, not timed (first-call allocations)
        pipe(case.source, content_embeds=content, depth=depth, num_inference_steps=2, output_type="pt")
        for n, (sampler, steps, wt) in enumerate(order):
            pipe.scheduler = make_scheduler(base_config, sampler)
            counter.take()
            start = time.perf_counter()
            out = pipe(case.source, content_embeds=content, depth=depth, num_inference_steps=steps,
                       temporal_guidance_scale=wt, guidance_scale=guidance, output_type="pt",
                       generator=torch.Generator().manual_seed(case.seed)).frames
            seconds = time.perf_counter() - start
            out = out.float().clamp(0, 1)
            rows.append(dict(case=i, sampler=sampler, steps=steps, temporal_guidance=wt, seconds=seconds,
                             unet_evaluations_per_frame=counter.take(), psnr=psnr(out, case.ground_truth),
                             ssim=ssim(out, case.ground_truth), detail=detail(out) / truth_detail,
                             warp_error=warp_error(out, flows=flows)))
            print(f"case {i + 1}/{args.cases} setting {n + 1}/{len(order)} {sampler:15s} {steps:3d} steps "
                  f"w_t={wt:g}: {rows[-1]['psnr']:.2f} dB, warp {rows[-1]['warp_error']:.4f}, {seconds:.2f} s",
                  file=sys.stderr, flush=True)
    counter.handle.remove()
    return rows


def summarise(rows: list[dict], args) -> dict:
    """Mean PSNR / warp error, median seconds, evaluations per frame per setting; the cheapest as-good setting."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["sampler"], row["steps"], row["temporal_guidance"]), []).append(row)
    settings = []
    for (sampler, steps, wt), group in sorted(groups.items()):
        settings.append(dict(sampler=sampler, steps=steps, temporal_guidance=wt, cases=len(group),
                             psnr=statistics.fmean(r["psnr"] for r in group),
                             ssim=statistics.fmean(r["ssim"] for r in group),
                             detail=statistics.fmean(r["detail"] for r in group),
                             warp_error=statistics.fmean(r["warp_error"] for r in group),
                             seconds_median=statistics.median(r["seconds"] for r in group),
                             unet_evaluations_per_frame=statistics.fmean(r["unet_evaluations_per_frame"]
                                                                         for r in group)))
    choices = {}
    for wt in args.temporal_guidance:
        reference = next(s for s in settings if (s["sampler"], s["steps"]) == args.reference
                         and s["temporal_guidance"] == wt)
        good = [s for s in settings if s["temporal_guidance"] == wt
                and s["psnr"] >= reference["psnr"] - args.psnr_tolerance
                and s["warp_error"] <= reference["warp_error"] * (1 + args.warp_tolerance)]
        kept = [s for s in good if s["detail"] >= reference["detail"] * (1 - args.detail_tolerance)]
        for s in settings:
            if s["temporal_guidance"] == wt:
                s["within_bounds"] = s in good
                s["keeps_detail"] = s in kept

        def cheapest(candidates):
            return min(candidates, key=lambda x: (x["unet_evaluations_per_frame"], x["seconds_median"]))

        best, best_detail = cheapest(good), cheapest(kept)
        choices[f"{wt:g}"] = dict(reference=reference, cheapest=best,
                                  time_ratio=best["seconds_median"] / reference["seconds_median"],
                                  cheapest_keeping_detail=best_detail,
                                  time_ratio_keeping_detail=best_detail["seconds_median"] / reference["seconds_median"])
    return dict(settings=settings, choices=choices)


def format_table(summary: dict, args) -> str:
    ref_sampler, ref_steps = args.reference
    lines = [f"| sampler | steps | w_t | PSNR (dB) | SSIM | detail / truth's | warp error | s / edit (median) | "
             f"UNet evals / frame | within {args.psnr_tolerance:g} dB and {args.warp_tolerance:.0%} of {ref_sampler} "
             f"{ref_steps} | and detail within {args.detail_tolerance:.0%} |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in sorted(summary["settings"], key=lambda s: (s["temporal_guidance"], s["sampler"], s["steps"])):
        def mark(flag, role, s=s):
            if any(c[role] is s for c in summary["choices"].values()):
                return "**cheapest**"
            return "yes" if s[flag] else ""

        lines.append(f"| {s['sampler']} | {s['steps']} | {s['temporal_guidance']:g} | {s['psnr']:.2f} | "
                     f"{s['ssim']:.3f} | {s['detail']:.3f} | {s['warp_error']:.4f} | {s['seconds_median']:.2f} | "
                     f"{s['unet_evaluations_per_frame']:.0f} | {mark('within_bounds', 'cheapest')} | "
                     f"{mark('keeps_detail', 'cheapest_keeping_detail')} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gen1.atomic import atomic_path

    wts = sorted({s["temporal_guidance"] for s in summary["settings"]})
    fig, axes = plt.subplots(len(wts), 3, figsize=(15, 3.6 * len(wts)), squeeze=False)
    for row, wt in enumerate(wts):
        for col, metric in enumerate(("psnr", "warp_error", "detail")):
            ax = axes[row][col]
            for sampler in dict.fromkeys(s["sampler"] for s in summary["settings"]):
                pts = sorted((s["unet_evaluations_per_frame"], s[metric]) for s in summary["settings"]
                             if s["sampler"] == sampler and s["temporal_guidance"] == wt)
                ax.plot(*zip(*pts), marker="o", label=sampler)
            reference = summary["choices"][f"{wt:g}"]["reference"]
            ax.axhline(reference[metric], color="grey", linestyle=":", linewidth=1)
            ax.set_xscale("log")
            ticks = sorted({s["unet_evaluations_per_frame"] for s in summary["settings"]
                            if s["temporal_guidance"] == wt})
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=7)
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlabel("UNet evaluations per frame")
            ax.set_ylabel({"psnr": "PSNR vs ground truth (dB)", "warp_error": "warp error",
                           "detail": "detail / ground truth's"}[metric])
            ax.set_title(f"w_t = {wt:g}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from gen1.atomic import atomic_path, write_json

    command = "python scripts/bench_steps.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        earlier = json.loads(args.from_json.read_text(encoding="utf-8"))
        rows, command = earlier["rows"], earlier["command"]
        args.temporal_guidance = sorted({r["temporal_guidance"] for r in rows})
        args.cases, args.frames = earlier["cases"], earlier["frames"]
    else:
        rows = measure(args)
    summary = summarise(rows, args)
    if args.out:
        write_json(args.out, dict(command=command, cases=args.cases, frames=args.frames, rows=rows, **summary))
    table = format_table(summary, args)
    if args.table:
        with atomic_path(args.table) as tmp:
            tmp.write_text(table, encoding="utf-8")
    if args.plot:
        plot(summary, args.plot)
    print(table)
    for wt, choice in summary["choices"].items():
        ref = choice["reference"]
        for role, ratio, what in (("cheapest", "time_ratio", "within bounds"),
                                  ("cheapest_keeping_detail", "time_ratio_keeping_detail", "also keeping detail")):
            best = choice[role]
            print(f"w_t={wt}: cheapest {what}: {best['sampler']} {best['steps']} steps ({best['psnr']:.2f} dB vs "
                  f"{ref['psnr']:.2f}, warp {best['warp_error']:.4f} vs {ref['warp_error']:.4f}, detail "
                  f"{best['detail']:.3f} vs {ref['detail']:.3f}, {best['unet_evaluations_per_frame']:.0f} vs "
                  f"{ref['unet_evaluations_per_frame']:.0f} evals/frame, time x{choice[ratio]:.2f})")


if __name__ == "__main__":
    main()
