"""Edit benchmark: a pipeline's edits of synthetic scenes scored against their ground truth.

An edit case: scene A (geometry + motion) rendered in style A is the source; the ground truth is scene A
rendered in style B; the content is a frame of a *different* scene B in style B (the reference image) or
style B's caption (the prompt). :func:`synthetic_edit_case` builds one from two seeds; which seeds (and which
world of scenes) a benchmark uses is the caller's choice -- they should be seeds the model never trained on.

Every configuration of a case runs from the same generator seed (same initial noise), with depth estimated
once by the pipeline's own depth estimator and content embedded once, so configurations differ only in the
knob being swept. Sweeps (other knobs at the baseline ``t_s = 0``, ``w_t = 1``, ``w = guidance``):

* structure: PSNR vs ground truth for t_s in :data:`STRUCTURE_LEVELS`;
* content: style accuracy with the reference and with the prompt;
* time: warp error (source optical flow, :mod:`gen1.eval.warp`) for w_t in :data:`TEMPORAL_SCALES`, w_t = 0
  being the image model alone (temporal layers gated off);
* guidance: PSNR and style accuracy for w in :data:`GUIDANCE_SCALES`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from gen1.eval.image_metrics import psnr, ssim, style_accuracy, style_score
from gen1.eval.warp import source_flows, warp_error
from gen1.synthetic import render, sample_edit_style, sample_scene, sample_style

STRUCTURE_LEVELS = (0, 2, 4, 7)
TEMPORAL_SCALES = (0.0, 0.5, 1.0, 1.5)
GUIDANCE_SCALES = (1.0, 3.0, 7.5)


@dataclass
class EditCase:
    source: torch.Tensor  # (F,3,H,W) [0,1], scene A in style A
    ground_truth: torch.Tensor  # scene A in style B
    reference: torch.Tensor  # (1,3,H,W): scene B in style B
    prompt: str  # style B's caption
    seed: int  # the source's seed, also the generator seed of every run of the case
    depth: torch.Tensor  # (F,1,H,W) the renderer's z-depth of scene A (for exact-depth diagnostics)
    scene: object  # scene A (a gen1.synthetic Scene), for diagnostics that re-render it
    target_style: object  # style B (a gen1.synthetic Style)


def synthetic_edit_case(source_seed: int, target_seed: int, *, frames: int = 8, size: int = 64,
                        scene_of: Callable[[int], object] | None = None) -> EditCase:
    """The edit case of scene and style ``source_seed`` towards the style of ``target_seed`` (sampled to differ
    from the source's, :func:`gen1.synthetic.sample_edit_style`), whose scene gives the reference image.
    ``scene_of(seed)`` makes a scene (default :func:`gen1.synthetic.sample_scene`)."""

    if frames < 1 or size < 8:
        raise ValueError(f"frames must be >= 1 and size >= 8, got frames={frames}, size={size}")
    scene_of = sample_scene if scene_of is None else scene_of
    style_a = sample_style(source_seed)
    style_b = sample_edit_style(style_a, target_seed)
    scene_a = scene_of(source_seed)
    source, depth = render(scene_a, style_a, frames, size, size)
    truth, _ = render(scene_a, style_b, frames, size, size)
    reference, _ = render(scene_of(target_seed), style_b, 1, size, size)
    return EditCase(source, truth, reference, style_b.caption, source_seed, depth, scene_a, style_b)


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
    """The name of the run in ``runs`` whose configuration has all of ``knobs``."""
    for name, cfg in runs.items():
        if all(cfg[k] == v for k, v in knobs.items()):
            return name
    raise KeyError(knobs)


@torch.no_grad()
def score_case(pipe, case: EditCase, runs: dict, *, steps: int) -> dict[str, dict[str, float]]:
    """Metrics of every run of one case: ``{run: {psnr, ssim, style_accuracy, style_score, warp_error}}``."""

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


def run_benchmark(pipe, case_at: Callable[[int], EditCase], *, num_edits: int, steps: int, guidance: float,
                  first_edit: int = 0, progress: bool = True) -> dict:
    """Mean metrics per run over the cases ``case_at(first_edit)`` .. ``case_at(first_edit + num_edits - 1)``
    (a later range checks how much of a result is luck), plus the warp error of the ground truth itself (that
    of a perfect edit)."""
    if first_edit < 0:
        raise ValueError(f"first_edit must be >= 0, got {first_edit}")
    if num_edits < 1 or steps < 1:
        raise ValueError(f"num_edits and steps must be >= 1, got {num_edits}, {steps}")
    from tqdm.auto import tqdm  # lazy: tqdm is heavy and only this path needs it

    runs = configurations(guidance)
    totals: dict[str, dict[str, float]] = {}
    truth_warp = 0.0
    for i in tqdm(range(first_edit, first_edit + num_edits), desc="edits", disable=not progress):
        case = case_at(i)
        truth_warp += warp_error(case.ground_truth, flows=source_flows(case.source)) / num_edits
        for name, metrics in score_case(pipe, case, runs, steps=steps).items():
            row = totals.setdefault(name, {})
            for key, value in metrics.items():
                row[key] = row.get(key, 0.0) + value / num_edits
    return dict(runs=runs, means=totals, ground_truth_warp_error=truth_warp, num_edits=num_edits, steps=steps,
                guidance=guidance, first_edit=first_edit, sampler=type(pipe.scheduler).__name__)


def format_table(result: dict) -> str:
    """Markdown tables of the sweeps (see the module docstring)."""
    runs, means, g = result["runs"], result["means"], result["guidance"]

    def m(name, key):
        return means[name][key]

    def at(level=0.0, scale=1.0, guidance=g):
        return run_name(runs, structure_level=float(level), temporal_guidance_scale=scale, guidance_scale=guidance,
                        content="reference")

    first, count = result["first_edit"], result["num_edits"]
    cases = f" (cases {first}-{first + count - 1})" if first else ""
    sampler = result.get("sampler", "DDIMScheduler").removesuffix("Scheduler")  # results before it was recorded: DDIM
    lines = [f"{count} held-out edits{cases}, {result['steps']} {sampler} steps, baseline t_s=0, w_t=1, w={g}", "",
             "| structure t_s | PSNR (dB) | SSIM |", "|---|---|---|"]
    for level in STRUCTURE_LEVELS:
        lines.append(f"| {level} | {m(at(level), 'psnr'):.2f} | {m(at(level), 'ssim'):.3f} |")
    lines += ["", "| content | style accuracy | style score | PSNR (dB) |", "|---|---|---|---|"]
    for label, name in (("reference image", "base"), ("prompt (direct text, no prior)", "prompt")):
        lines.append(f"| {label} | {m(name, 'style_accuracy'):.1%} | {m(name, 'style_score'):.3f} | "
                     f"{m(name, 'psnr'):.2f} |")
    lines += ["", "| temporal w_t | warp error |", "|---|---|"]
    for scale in TEMPORAL_SCALES:
        lines.append(f"| {scale} | {m(at(scale=scale), 'warp_error'):.5f} |")
    lines.append(f"| (ground-truth edit) | {result['ground_truth_warp_error']:.5f} |")
    lines += ["", "| content guidance w | PSNR (dB) | style accuracy |", "|---|---|---|"]
    for scale in GUIDANCE_SCALES:
        name = at(guidance=scale)
        lines.append(f"| {scale} | {m(name, 'psnr'):.2f} | {m(name, 'style_accuracy'):.1%} |")
    return "\n".join(lines)


def thresholds(result: dict, *, structure_gap_db: float = 3.0, style_accuracy: float = 0.9,
               warp_ratio: float = 0.7) -> dict[str, bool | float]:
    """Pass/fail checks on a benchmark result: PSNR falls by at least ``structure_gap_db`` from t_s = 0 to
    t_s = 7 (and whether it falls at every level), style accuracy with a reference of at least
    ``style_accuracy``, and a warp error with w_t = 1 at most ``warp_ratio`` times the image model's (w_t = 0)."""
    runs, means, g = result["runs"], result["means"], result["guidance"]
    psnr = [means[run_name(runs, structure_level=float(t), temporal_guidance_scale=1.0, guidance_scale=g,
                           content="reference")]["psnr"] for t in STRUCTURE_LEVELS]
    warp = {s: means[run_name(runs, structure_level=0.0, temporal_guidance_scale=s, guidance_scale=g,
                              content="reference")]["warp_error"] for s in (0.0, 1.0)}
    return dict(
        structure_gap_db=psnr[0] - psnr[-1],
        structure_gap_ok=psnr[0] - psnr[-1] >= structure_gap_db,
        structure_monotonic=all(a > b for a, b in zip(psnr, psnr[1:])),
        style_accuracy_reference=means["base"]["style_accuracy"],
        style_accuracy_ok=means["base"]["style_accuracy"] >= style_accuracy,
        warp_reduction=1 - warp[1.0] / warp[0.0] if warp[0.0] > 0 else 0.0,
        warp_ok=warp[0.0] > 0 and warp[1.0] <= warp_ratio * warp[0.0],
    )
