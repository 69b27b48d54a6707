"""Masks that follow the subject: a mask given on one frame, propagated to every frame of the clip.

A user paints (or uploads) the subject on one frame; erasing or replacing a moving subject needs its mask on every
frame. A :class:`MaskTracker` turns the one-frame mask into a per-frame one; trackers are registered by name in
:data:`TRACKERS` (``flow``, the default, needs no weights; a video segmentation model such as SAM 2 is another
tracker of the same interface).

:class:`FlowTracker` carries the mask frame by frame, forwards and backwards from the given frame, along the
source's dense optical flow (OpenCV's Farneback), then snaps it to the depth edges near its outline: a pixel in a thin
band around the carried outline joins the subject (or the surroundings) when its depth is clearly the subject's
depth nearby (or the surroundings'; locally weighted means). The flow drifts and blurs at motion boundaries; the depth edge is where the
subject really ends, so the snap keeps the mask on it over many frames. The depth is used only when it agrees with
the given mask on its own frame (:meth:`FlowTracker.depth_agrees`): an estimate whose edges are blurred or shifted
against the subject's outline would pull the mask off it, and then the flow alone carries the mask.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch


def check_one_frame_mask(mask: torch.Tensor, mask_frame: int, num_frames: int, size: tuple[int, int]) -> torch.Tensor:
    """The mask of frame ``mask_frame`` as float ``(1, 1, H, W)``; ``ValueError`` (one line) for a frame outside the
    clip, a per-frame mask, a wrong size, or an empty / full mask."""
    if isinstance(mask_frame, bool) or int(mask_frame) != mask_frame:
        raise ValueError(f"mask_frame must be an integer frame index, got {mask_frame!r}")
    if not 0 <= int(mask_frame) < num_frames:
        raise ValueError(f"mask_frame {mask_frame} is outside the clip (frames 0 to {num_frames - 1})")
    if mask.ndim != 4 or mask.shape[0] != 1:
        raise ValueError(f"a mask tracked from mask_frame must be one image, got {mask.shape[0]} frames")
    if tuple(mask.shape[-2:]) != tuple(size):
        raise ValueError(f"mask size {mask.shape[-1]}x{mask.shape[-2]} (WxH) does not match the video size "
                         f"{size[1]}x{size[0]}")
    binary = mask > 0.5
    if not bool(binary.any()):
        raise ValueError("the mask is empty: paint the subject white on the mask frame")
    if bool(binary.all()):
        raise ValueError("the mask covers the whole frame: paint only the subject white")
    return binary.float()


class MaskTracker:
    """Propagates a one-frame mask to every frame of a clip (see the module docstring)."""

    #: The name it is registered under in :data:`TRACKERS`.
    name: ClassVar[str] = ""

    def track(self, frames: torch.Tensor, mask: torch.Tensor, mask_frame: int,
              depth: torch.Tensor | None = None) -> torch.Tensor:
        """``frames`` ``(F, 3, H, W)`` in [0, 1], ``mask`` ``(1, 1, H, W)`` (1 = subject) on frame ``mask_frame``,
        optionally the clip's depth ``(F, 1, H, W)`` in [0, 1] -> the mask on every frame ``(F, 1, H, W)`` in {0, 1}."""
        raise NotImplementedError


class FlowTracker(MaskTracker):
    """The mask carried along the optical flow and snapped to nearby depth edges (no weights).

    ``band``: half-width in pixels of the band around the carried outline where the depth decides (default: 1/32 of
    the short side, at least 1); ``depth_contrast``: the least depth difference between subject and surroundings for
    the depth to decide at all (normalised depth units; below it the flow alone decides).
    """

    name = "flow"

    def __init__(self, band: int | None = None, depth_contrast: float = 0.02):
        self.band = band
        self.depth_contrast = depth_contrast

    def track(self, frames, mask, mask_frame, depth=None):
        num_frames, _, height, width = frames.shape
        binary = check_one_frame_mask(mask, mask_frame, num_frames, (height, width))[0, 0].numpy()
        gray = [_gray_uint8(frame) for frame in frames]
        depth_np = None if depth is None else depth[:, 0].float().numpy()
        band = self.band or max(1, round(min(height, width) / 32))
        if depth_np is not None and not self.depth_agrees(binary, depth_np[mask_frame], band):
            depth_np = None  # the depth's edges are not the subject's outline here: the flow alone decides
        masks = [None] * num_frames
        masks[mask_frame] = binary
        for step in (1, -1):
            soft, index = binary, mask_frame + step
            while 0 <= index < num_frames:
                soft = _warp(soft, gray[index], gray[index - step])
                carried = (soft > 0.5).astype(np.float32)
                if depth_np is not None:
                    snapped = _snap_to_depth(carried, depth_np[index], band, self.depth_contrast)
                    soft = np.where(snapped != carried, snapped, soft)
                    carried = snapped
                masks[index] = carried
                index += step
        return torch.from_numpy(np.stack(masks).astype(np.float32))[:, None]

    def depth_agrees(self, mask: np.ndarray, depth: np.ndarray, band: int) -> bool:
        """Whether snapping the given frame's own mask to its depth leaves it (IoU >= :data:`DEPTH_AGREEMENT`):
        only then are the depth's edges the subject's outline (a blurred or shifted estimate would pull the mask
        off the subject at every frame)."""
        snapped = _snap_to_depth(mask, depth, band, self.depth_contrast) > 0.5
        given = mask > 0.5
        return float((snapped & given).sum()) / max(float((snapped | given).sum()), 1.0) >= DEPTH_AGREEMENT


#: Tracker name -> its class (made with no arguments by :func:`track_mask`).
TRACKERS: dict[str, type[MaskTracker]] = {FlowTracker.name: FlowTracker}


def track_mask(frames: torch.Tensor, mask: torch.Tensor, mask_frame: int, depth: torch.Tensor | None = None,
               tracker: str | MaskTracker = "flow") -> torch.Tensor:
    """The one-frame ``mask`` on every frame, by ``tracker`` (a name of :data:`TRACKERS` or an instance)."""
    if isinstance(tracker, str):
        if tracker not in TRACKERS:
            raise ValueError(f"tracker must be one of {', '.join(TRACKERS)}, got {tracker!r}")
        tracker = TRACKERS[tracker]()
    return tracker.track(frames.float().cpu(), mask.float().cpu(), int(mask_frame),
                         None if depth is None else depth.float().cpu())


def _gray_uint8(frame: torch.Tensor) -> np.ndarray:
    """A ``(3, H, W)`` frame in [0, 1] as an 8-bit grey image (what OpenCV's flow takes)."""
    rgb = frame.clamp(0, 1).permute(1, 2, 0).numpy()
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.ascontiguousarray((gray * 255.0 + 0.5).astype(np.uint8))


def _flow(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` from ``target`` to ``source`` (Farneback's polynomial expansion, window 1/7 of the
    short side): pixel ``p`` of ``target`` shows what ``source`` shows at ``p + flow(p)``."""
    import cv2

    window = max(5, min(target.shape) // 7) | 1
    return cv2.calcOpticalFlowFarneback(target, source, None, 0.5, 3, window, 5, 5, 1.1, 0)


def _warp(previous: np.ndarray, target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The soft mask of the ``source`` frame carried to the ``target`` frame (backward warping, bilinear). It stays
    soft from frame to frame (thresholding at every frame would erode it), and is thresholded at 0.5 for each
    frame's mask."""
    import cv2

    flow = _flow(target, source)
    height, width = target.shape
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    carried = cv2.remap(previous.astype(np.float32), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return carried


#: How closely the given frame's mask must survive its own depth snap for the depth to be used at all.
DEPTH_AGREEMENT = 0.97
#: A band pixel changes side only when its depth is within this share of the subject-surroundings gap of one side's.
CLEAR_SHARE = 0.25


def _snap_to_depth(mask: np.ndarray, depth: np.ndarray, band: int, contrast: float) -> np.ndarray:
    """``mask`` with the pixels within ``band`` of its outline given to the subject or the surroundings when their
    depth is clearly one side's local mean depth (within :data:`CLEAR_SHARE` of the gap between the two, where the
    two differ by at least ``contrast``); the flow's decision stands for the others (a contact with the floor, a
    blurred estimate)."""
    import cv2

    if not mask.any() or mask.all():
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    core = cv2.erode(mask, kernel)
    outside = 1.0 - cv2.dilate(mask, kernel)
    if not core.any() or not outside.any():
        return mask
    sigma = 3.0 * band
    subject = _local_mean(depth, core, sigma)
    surroundings = _local_mean(depth, outside, sigma)
    gap = np.abs(subject - surroundings)
    band_pixels = (core == 0) & (outside == 0) & (gap >= contrast)
    to_subject, to_surroundings = np.abs(depth - subject), np.abs(depth - surroundings)
    snapped = mask.copy()
    snapped[band_pixels & (to_subject < CLEAR_SHARE * gap)] = 1.0  # clearly the subject's depth
    snapped[band_pixels & (to_surroundings < CLEAR_SHARE * gap)] = 0.0  # clearly the surroundings'
    return snapped


def _local_mean(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted mean of ``values`` over the pixels where ``weight`` is 1 (the global mean where none is
    near)."""
    import cv2

    total = cv2.GaussianBlur(values * weight, (0, 0), sigma)
    count = cv2.GaussianBlur(weight, (0, 0), sigma)
    fallback = float((values * weight).sum() / max(weight.sum(), 1.0))
    return np.where(count > 1e-6, total / np.maximum(count, 1e-6), fallback)


__all__ = ["FlowTracker", "MaskTracker", "TRACKERS", "check_one_frame_mask", "track_mask"]
