"""Evaluate one edited video against its source (and optionally a ground-truth edit): all metrics in one report.

Input policy: source, output and ground truth must have the **same number of frames** (a ValueError names
the counts otherwise). If the output or the ground truth has another frame size than the source (editing
pipelines round sizes to multiples of 8), it is resized to the source's size (bilinear, antialiased) and the
report says so; the metrics are then computed at the source's resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gen1.eval.clip_metrics import frame_consistency, prompt_consistency
from gen1.eval.depth_fidelity import depth_fidelity
from gen1.eval.image_metrics import as_float_video, psnr, ssim, style_accuracy, style_score
from gen1.eval.report import Report
from gen1.eval.seams import seam_ratio
from gen1.eval.warp import mean_warp_error, pair_warp_errors, source_flows


def _match_size(video: torch.Tensor, reference: torch.Tensor, name: str, report: Report) -> torch.Tensor:
    if video.shape[0] != reference.shape[0]:
        raise ValueError(
            f"{name} has {video.shape[0]} frames but the source has {reference.shape[0]}; "
            "they must have the same number of frames"
        )
    if video.shape[-2:] != reference.shape[-2:]:
        report.info[f"note_{name}_resized"] = (
            f"{name} resized from {tuple(video.shape[-2:])} to the source size {tuple(reference.shape[-2:])}"
        )
        video = F.interpolate(video, size=reference.shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True).clamp(0, 1)
    return video


def _set_seam_ratio(report: Report, key: str, pair_errors, window_schedule) -> None:
    if window_schedule is None:
        report.skip(key, "no window schedule (--window)")
        return
    ratio = seam_ratio(pair_errors, window_schedule)
    if ratio is None:
        report.skip(key, "no seams to measure (one window, or every pair at a seam or inside occluded)")
    else:
        report.set(key, ratio)


def evaluate_videos(
    source,
    output,
    *,
    prompt: str | None = None,
    ground_truth=None,
    clip_scorer=None,
    depth_estimator=None,
    flow_method: str = "dis",
    window_schedule=None,
) -> Report:
    """All metrics for ``output`` (an edit of ``source``). Frames: uint8 (F,H,W,3) or float (F,3,H,W).

    ``clip_scorer``: a :class:`gen1.eval.clip_metrics.ClipScorer` or None; ``depth_estimator``: an object with
    ``.estimate(frames)`` (or a callable) or None. ``window_schedule``: where the temporal windows of the edit
    met at every step (:func:`gen1.windows.blend_schedule`), for the seam ratio (:mod:`gen1.eval.seams`) of the
    output and, as its reference, of the source. Metrics whose inputs are missing are skipped with a note.
    """

    report = Report()
    src = as_float_video(source)
    out = _match_size(as_float_video(output), src, "output", report)
    gt = None if ground_truth is None else _match_size(as_float_video(ground_truth), src, "ground_truth", report)
    report.info.update(num_frames=int(src.shape[0]), height=int(src.shape[-2]), width=int(src.shape[-1]),
                       prompt=prompt, flow_method=flow_method)

    if src.shape[0] >= 2:
        flows = source_flows(src, flow_method)
        for suffix, video in (("", out), ("_source", src)):
            pair_errors = pair_warp_errors(video, flows=flows)
            report.set("warp_error" + suffix, mean_warp_error(pair_errors))
            _set_seam_ratio(report, "seam_ratio" + suffix, pair_errors, window_schedule)
    else:
        for key in ("warp_error", "warp_error_source", "seam_ratio", "seam_ratio_source"):
            report.skip(key, "needs at least 2 frames")

    if clip_scorer is None:
        report.skip("clip_frame_consistency", "no CLIP model (--clip-model)")
        report.skip("clip_prompt_consistency", "no CLIP model (--clip-model)")
    else:
        embeddings = clip_scorer.image_embeddings(out)

        if len(embeddings) >= 2:
            report.set("clip_frame_consistency", frame_consistency(embeddings))
        else:
            report.skip("clip_frame_consistency", "needs at least 2 frames")
        if prompt:
            report.set("clip_prompt_consistency", prompt_consistency(embeddings, clip_scorer.text_embeddings([prompt])[0]))
        else:
            report.skip("clip_prompt_consistency", "no prompt (--prompt)")

    if depth_estimator is None:
        report.skip("depth_fidelity", "no depth model (--depth-model)")
    else:
        report.set("depth_fidelity", depth_fidelity(out, depth_estimator, source=src))

    if gt is None:
        for key in ("psnr", "ssim", "style_accuracy", "style_score"):
            report.skip(key, "no ground truth (--gt)")
    else:
        report.set("psnr", psnr(out, gt))
        report.set("ssim", ssim(out, gt))
        report.set("style_accuracy", style_accuracy(out, src, gt))
        report.set("style_score", style_score(out, src, gt))
    return report
