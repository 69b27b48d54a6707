"""Warp error (temporal consistency), as defined by Lai et al. 2018, "Learning Blind Video Temporal Consistency".

Optical flow is computed on the **source** video (the structure the output should follow), never on the
output, so a flickering output cannot make its own flow look consistent. For each pair of frames (t, t+1):

1. forward flow ``w`` (t -> t+1) and backward flow ``w_b`` (t+1 -> t) of the source with OpenCV
   (DIS, preset MEDIUM, by default; Farneback as an alternative; no learned weights), on grayscale uint8 frames;
2. occlusion mask ``M_t`` (1 = valid) by the forward-backward check of Sundaram et al. 2010, as used by
   Ruder et al. 2016 and Lai et al. 2018: a pixel is occluded if
   ``|w + w_b(x + w)|^2 > 0.01 (|w|^2 + |w_b(x + w)|^2) + 0.5`` (pixels), or (optionally, on by default, as
   in Ruder et al.) lies on a motion boundary ``|grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002``; pixels whose
   target ``x + w`` falls outside the frame are also masked out;
3. the output frame t+1 is warped back to t, ``Ô_{t+1}(x) = O_{t+1}(x + w(x))`` (bilinear);
4. ``E_t = sum_x M_t(x) ||O_t(x) - Ô_{t+1}(x)||^2 / sum_x M_t(x)`` with pixels in [0, 1] and the squared
   norm summed over the 3 RGB channels (Lai et al.'s convention);

and the warp error of the video is the mean of ``E_t`` over the F-1 pairs (pairs with an empty mask are skipped).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gen1.eval.image_metrics import as_float_video

FLOW_METHODS = ("dis", "farneback")


def _to_gray_uint8(video: torch.Tensor) -> np.ndarray:
    gray = 0.299 * video[:, 0] + 0.587 * video[:, 1] + 0.114 * video[:, 2]
    return (gray.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def compute_flow(first: np.ndarray, second: np.ndarray, method: str = "dis") -> np.ndarray:
    """Dense flow (H,W,2) float32 from grayscale uint8 ``first`` to ``second``: first(x) ~ second(x + flow(x))."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(first, second, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"flow method must be one of {FLOW_METHODS}, got {method!r}")


def _sample(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinearly sample ``image`` (C,H,W) at ``x + flow`` (H,W,2); also return the in-frame mask (H,W)."""
    _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    px = xs + flow[..., 0]
    py = ys + flow[..., 1]
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1)
    out = F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0]
    return out, inside


def occlusion_mask(forward: torch.Tensor, backward: torch.Tensor, motion_boundaries: bool = True) -> torch.Tensor:
    """Valid-pixel mask (H,W) bool from forward flow t->t+1 and backward flow t+1->t (both (H,W,2))."""
    back_at_target, inside = _sample(backward.permute(2, 0, 1), forward)
    back_at_target = back_at_target.permute(1, 2, 0)
    lhs = (forward + back_at_target).square().sum(-1)
    rhs = 0.01 * (forward.square().sum(-1) + back_at_target.square().sum(-1)) + 0.5
    valid = inside & (lhs <= rhs)
    if motion_boundaries:
        du_y, du_x = torch.gradient(forward[..., 0])
        dv_y, dv_x = torch.gradient(forward[..., 1])
        grad = du_x.square() + du_y.square() + dv_x.square() + dv_y.square()
        valid &= grad <= 0.01 * forward.square().sum(-1) + 0.002
    return valid


def source_flows(source, method: str = "dis") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(forward, backward) flow pairs (H,W,2) for consecutive frames of ``source``."""
    gray = _to_gray_uint8(as_float_video(source))
    pairs = []
    for t in range(len(gray) - 1):
        fwd = torch.from_numpy(compute_flow(gray[t], gray[t + 1], method))
        bwd = torch.from_numpy(compute_flow(gray[t + 1], gray[t], method))
        pairs.append((fwd, bwd))
    return pairs


def _check_flows(output, source, method: str, flows) -> tuple[torch.Tensor, list]:
    """``output`` as a float video and the source flows for it (computed unless given), both checked."""
    out = as_float_video(output)
    if out.shape[0] < 2:
        raise ValueError(f"warp error needs at least 2 frames, got {out.shape[0]}")
    if flows is None:
        src = out if source is None else as_float_video(source)
        if src.shape != out.shape:
            raise ValueError(f"source and output must have the same shape, got {tuple(src.shape)} and {tuple(out.shape)}")
        flows = source_flows(src, method)
    if len(flows) != out.shape[0] - 1:
        raise ValueError(f"flows must have {out.shape[0] - 1} pairs for {out.shape[0]} frames, got {len(flows)}")
    return out, flows


def pair_warp_errors(
    output,
    source=None,
    *,
    method: str = "dis",
    motion_boundaries: bool = True,
    flows: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> list[float | None]:
    """``E_t`` of every frame pair (t, t+1) of ``output`` (see the module docstring); ``None`` for a pair whose
    mask is empty. Arguments as for :func:`warp_error`."""
    out, flows = _check_flows(output, source, method, flows)
    errors = []
    for t, (fwd, bwd) in enumerate(flows):
        mask = occlusion_mask(fwd, bwd, motion_boundaries)
        if not bool(mask.any()):
            errors.append(None)
            continue
        warped, _ = _sample(out[t + 1], fwd)
        sq = (out[t] - warped).square().sum(0)
        errors.append(float(sq[mask].mean()))
    return errors


def warp_error(
    output,
    source=None,
    *,
    method: str = "dis",
    motion_boundaries: bool = True,
    flows: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> float:
    """Mean masked squared warp error of ``output`` along the flow of ``source`` (see the module docstring).

    ``source`` defaults to ``output`` itself (then it measures self-consistency). ``flows`` may pass
    precomputed :func:`source_flows` to score several outputs of the same source.
    """
    return mean_warp_error(pair_warp_errors(output, source, method=method, motion_boundaries=motion_boundaries,
                                           flows=flows))


def mean_warp_error(pair_errors: list[float | None]) -> float:
    """The warp error of a video from :func:`pair_warp_errors`: the mean over the pairs that have valid pixels."""
    errors = [e for e in pair_errors if e is not None]
    if not errors:
        raise ValueError("warp error is undefined: every pixel of every frame pair was masked as occluded")
    return float(np.mean(errors))
