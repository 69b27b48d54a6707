"""The demo's evidence: held-out synthetic edits scored against their ground truth (issue 7).

An edit case: scene A (geometry + motion) rendered in style A is the source; the ground truth is scene A
rendered in style B (another object and floor colour); the content is a frame of a *different* scene B in
style B (the reference image) or style B's caption (the prompt). Seeds come from the held-out range
(:data:`gen1.demo.data.HELD_OUT_START` + 100000 upward), never used in training.

Every configuration of a case runs from the same generator seed (same initial noise), with depth estimated
once by the pipeline's own depth estimator and content embedded once, so configurations differ only in the
knob being swept. Sweeps (other knobs at the baseline ``t_s = 0``, ``w_t = 1``, ``w = guidance``):

* structure: PSNR vs ground truth for t_s in (0, 2, 4, 7);
* content: style accuracy with the reference and with the prompt;
* time: warp error (source optical flow, :mod:`gen1.eval.warp`) for w_t in (0, 0.5, 1, 1.5), w_t = 0 being
  the image model alone (temporal layers gated off);
* guidance: PSNR and style accuracy for w in (1, 3, 7.5).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from gen1.demo import DEMO_GUIDANCE

STRUCTURE_LEVELS = (0, 2, 4, 7)
TEMPORAL_SCALES = (0.0, 0.5, 1.0, 1.5)
GUIDANCE_SCALES = (1.0, 3.0, 7.5)


@dataclass
class EditCase:
    source: torch.Tensor  # (F,3,H,W) [0,1], scene A in style A
    ground_truth: torch.Tensor  # scene A in style B
    reference: torch.Tensor  # (1,3,H,W): scene B in style B
    prompt: str  # style B's caption
    seed: int
    depth: torch.Tensor  # (F,1,H,W) the renderer's z-depth of scene A (for exact-depth diagnostics)
    scene: object  # scene A (a gen1.synthetic Scene), for diagnostics that re-render it
    target_style: object  # style B (a gen1.synthetic Style)


def edit_case(index: int, *, frames: int = 8, size: int = 64) -> EditCase:
    from gen1.demo.data import HELD_OUT_START, demo_scene
    from gen1.synthetic import render, sample_edit_style, sample_style

    seed_a = HELD_OUT_START + 100_000 + index
    seed_b = HELD_OUT_START + 200_000 + index
    style_a = sample_style(seed_a)
    style_b = sample_edit_style(style_a, seed_b)
    scene_a = demo_scene(seed_a)
    source, depth = render(scene_a, style_a, frames, size, size)
    truth, _ = render(scene_a, style_b, frames, size, size)
    reference, _ = render(demo_scene(seed_b), style_b, 1, size, size)
    return EditCase(source, truth, reference, style_b.caption, seed_a, depth, scene_a, style_b)


def configurations(guidance: float) -> dict[str, dict]:
    """name -> pipeline keywords (+ ``content``: "reference" or "prompt") for every distinct run."""
    base = dict(structure_level=0.0, temporal_guidance_scale=1.0, guidance_scale=guidance, content="reference")
    runs = {"base": base}
    for level in STRUCTURE_LEVELS[1:]:
        runs[f"ts={level}"] = dict(base, structure_level=float(level))
    runs["prompt"] = dict(base, content="prompt")
    for scale in TEMPORAL_SCALES:
        if scale != 1.0:
            runs[f"wt={scale}"] = dict(base, temporal_guidance_scale=scale)
    for scale in GUIDANCE_SCALES:
        if scale != guidance:
            runs[f"w={scale}"] = dict(base, guidance_scale=scale)
    return runs


def run_name(runs: dict, **knobs) -> str:
    for name, cfg in runs.items():
        if all(cfg[k] == v for k, v in knobs.items()):
            return name
    raise KeyError(knobs)


@torch.no_grad()
def score_case(pipe, case: EditCase, runs: dict, *, steps: int) -> dict[str, dict[str, float]]:
    """Metrics of every run of one case: ``{run: {psnr, ssim, style_accuracy, style_score, warp_error}}``."""
    from gen1.eval.image_metrics import psnr, ssim, style_accuracy, style_score
    from gen1.eval.warp import source_flows, warp_error

    depth = pipe.depth_estimator.estimate(case.source)
    content = {"reference": pipe.content_encoder.encode_image(case.reference)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the documented direct-text fallback warns
        content["prompt"] = pipe.content_encoder.encode_text([case.prompt])
    flows = source_flows(case.source)
    scores = {}
    for name, cfg in runs.items():
        knobs = {k: v for k, v in cfg.items() if k != "content"}
        out = pipe(case.source, content_embeds=content[cfg["content"]], depth=depth, num_inference_steps=steps,
                   generator=torch.Generator().manual_seed(case.seed), output_type="pt", **knobs).frames
        out = out.float().clamp(0, 1)
        scores[name] = dict(psnr=psnr(out, case.ground_truth), ssim=ssim(out, case.ground_truth),
                            style_accuracy=style_accuracy(out, case.source, case.ground_truth),
                            style_score=style_score(out, case.source, case.ground_truth),
                            warp_error=warp_error(out, flows=flows))
    return scores


def run_benchmark(pipe, *, num_edits: int, steps: int, guidance: float, frames: int = 8, size: int = 64,
                  progress: bool = True, first_edit: int = 0) -> dict:
    """Mean metrics per run over ``num_edits`` held-out cases (``first_edit`` onward: a later range checks
    how much of a result is luck), plus reference rows for the source itself and the ground truth (warp error
    of a perfect edit)."""
    if first_edit < 0:
        raise ValueError(f"first_edit must be >= 0, got {first_edit}")
    from tqdm.auto import tqdm

    from gen1.eval.warp import source_flows, warp_error

    runs = configurations(guidance)
    totals: dict[str, dict[str, float]] = {}
    truth_warp = 0.0
    for i in tqdm(range(first_edit, first_edit + num_edits), desc="edits", disable=not progress):
        case = edit_case(i, frames=frames, size=size)
        truth_warp += warp_error(case.ground_truth, flows=source_flows(case.source)) / num_edits
        for name, metrics in score_case(pipe, case, runs, steps=steps).items():
            row = totals.setdefault(name, {})
            for key, value in metrics.items():
                row[key] = row.get(key, 0.0) + value / num_edits
    return dict(runs=runs, means=totals, ground_truth_warp_error=truth_warp, num_edits=num_edits, steps=steps,
                guidance=guidance, first_edit=first_edit)


def format_table(result: dict) -> str:
    """Markdown tables of the sweeps (see the module docstring)."""
    runs, means, g = result["runs"], result["means"], result["guidance"]

    def m(name, key):
        return means[name][key]

    first, count = result["first_edit"], result["num_edits"]
    cases = f" (cases {first}-{first + count - 1})" if first else ""
    lines = [f"{count} held-out edits{cases}, {result['steps']} DDIM steps, baseline t_s=0, w_t=1, w={g}", "",
             "| structure t_s | PSNR (dB) | SSIM |", "|---|---|---|"]
    for level in STRUCTURE_LEVELS:
        name = run_name(runs, structure_level=float(level), temporal_guidance_scale=1.0, guidance_scale=g,
                        content="reference")
        lines.append(f"| {level} | {m(name, 'psnr'):.2f} | {m(name, 'ssim'):.3f} |")
    lines += ["", "| content | style accuracy | style score | PSNR (dB) |", "|---|---|---|---|"]
    for label, name in (("reference image", "base"), ("prompt (direct text, no prior)", "prompt")):
        lines.append(f"| {label} | {m(name, 'style_accuracy'):.1%} | {m(name, 'style_score'):.3f} | {m(name, 'psnr'):.2f} |")
    lines += ["", "| temporal w_t | warp error |", "|---|---|"]
    for scale in TEMPORAL_SCALES:
        name = run_name(runs, structure_level=0.0, temporal_guidance_scale=scale, guidance_scale=g, content="reference")
        lines.append(f"| {scale} | {m(name, 'warp_error'):.5f} |")
    lines.append(f"| (ground-truth edit) | {result['ground_truth_warp_error']:.5f} |")
    lines += ["", "| content guidance w | PSNR (dB) | style accuracy |", "|---|---|---|"]
    for scale in GUIDANCE_SCALES:
        name = run_name(runs, structure_level=0.0, temporal_guidance_scale=1.0, guidance_scale=scale, content="reference")
        lines.append(f"| {scale} | {m(name, 'psnr'):.2f} | {m(name, 'style_accuracy'):.1%} |")
    return "\n".join(lines)


def thresholds(result: dict) -> dict[str, bool | float]:
    """The issue's acceptance checks on a benchmark result."""
    runs, means, g = result["runs"], result["means"], result["guidance"]
    psnr = [means[run_name(runs, structure_level=float(t), temporal_guidance_scale=1.0, guidance_scale=g,
                           content="reference")]["psnr"] for t in STRUCTURE_LEVELS]
    warp = {s: means[run_name(runs, structure_level=0.0, temporal_guidance_scale=s, guidance_scale=g,
                              content="reference")]["warp_error"] for s in (0.0, 1.0)}
    return dict(
        structure_gap_db=psnr[0] - psnr[-1],
        structure_gap_ok=psnr[0] - psnr[-1] >= 3.0,
        structure_monotonic=all(a > b for a, b in zip(psnr, psnr[1:])),
        style_accuracy_reference=means["base"]["style_accuracy"],
        style_accuracy_ok=means["base"]["style_accuracy"] >= 0.9,
        warp_reduction=1 - warp[1.0] / warp[0.0] if warp[0.0] > 0 else 0.0,
        warp_ok=warp[0.0] > 0 and warp[1.0] <= 0.7 * warp[0.0],
    )


def add_edit_arguments(parser, *, edits: int) -> None:
    """The options every held-out-edit script takes (``scripts/demo/evaluate.py``, ``decompose_error.py``)."""
    parser.add_argument("--model", help="pipeline directory (default: the bundled demo model)")
    parser.add_argument("--edits", type=int, default=edits, help=f"held-out edit cases (default {edits})")
    parser.add_argument("--steps", type=int, default=15, help="DDIM steps per edit (default 15)")
    parser.add_argument("--guidance", type=float, default=DEMO_GUIDANCE,
                        help=f"(baseline) content guidance w (default {DEMO_GUIDANCE:g}, the demo's)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the full result as JSON here")


def edit_script_pipeline(args):
    """Check :func:`add_edit_arguments`' values, set the thread count and load the pipeline (float32, quiet)."""
    from gen1.demo import bundled_model_dir
    from gen1.pipeline import Gen1Pipeline

    if args.edits < 1 or args.steps < 1:
        raise ValueError(f"--edits and --steps must be >= 1, got {args.edits}, {args.steps}")
    torch.set_num_threads(args.threads)
    pipe = Gen1Pipeline.from_pretrained(str(args.model or bundled_model_dir()))
    pipe.cast(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe
