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


def check_clicks(clicks, mask_frame: int, num_frames: int, size: tuple[int, int]) -> list[tuple[float, float, bool]]:
    """Clicks ``(x, y, positive)`` on frame ``mask_frame``, in pixels of a frame of ``size`` (H, W), as a list;
    ``ValueError`` (one line) for a click outside the frame, a frame outside the clip, or no positive click."""
    if isinstance(mask_frame, bool) or int(mask_frame) != mask_frame:
        raise ValueError(f"mask_frame must be an integer frame index, got {mask_frame!r}")
    if not 0 <= int(mask_frame) < num_frames:
        raise ValueError(f"mask_frame {mask_frame} is outside the clip (frames 0 to {num_frames - 1})")
    height, width = size
    checked = []
    for click in clicks:
        if len(click) != 3:
            raise ValueError(f"a click is (x, y, positive), got {click!r}")
        x, y, positive = float(click[0]), float(click[1]), bool(click[2])
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < width and 0 <= y < height):
            raise ValueError(f"the click at x={click[0]:g}, y={click[1]:g} is outside the frame (x in [0, {width}), "
                             f"y in [0, {height}))")
        checked.append((x, y, positive))
    if not any(positive for _, _, positive in checked):
        raise ValueError("give at least one positive click on the subject (negative clicks only mark what it is not)")
    return checked


class MaskTracker:
    """Propagates a one-frame mask to every frame of a clip (see the module docstring)."""

    #: The name it is registered under in :data:`TRACKERS`.
    name: ClassVar[str] = ""
    #: Whether it can start from clicks on the subject instead of a mask.
    takes_clicks: ClassVar[bool] = False
    #: Whether it runs a model with weights (named by ``model=``, e.g. ``gen1 edit --mask-tracker-model``).
    takes_model: ClassVar[bool] = False

    def track(self, frames: torch.Tensor, mask: torch.Tensor | None, mask_frame: int,
              depth: torch.Tensor | None = None, clicks=()) -> torch.Tensor:
        """``frames`` ``(F, 3, H, W)`` in [0, 1], ``mask`` ``(1, 1, H, W)`` (1 = subject) on frame ``mask_frame``,
        optionally the clip's depth ``(F, 1, H, W)`` in [0, 1] -> the mask on every frame ``(F, 1, H, W)`` in {0, 1}.
        A tracker that :attr:`takes_clicks` may be given ``clicks`` ``(x, y, positive)`` on that frame (pixels of
        the frames) instead of the mask."""
        raise NotImplementedError

    def check_model(self) -> None:
        """Make sure what it runs is there (its weights resolved and fetched), before any heavy work;
        ``ValueError`` in one line otherwise. Nothing to check for a tracker without weights."""


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

    def track(self, frames, mask, mask_frame, depth=None, clicks=()):
        if clicks or mask is None:
            raise ValueError("the flow tracker carries a painted mask: clicks need the sam2 tracker "
                             "(--mask-tracker sam2)")
        num_frames, _, height, width = frames.shape
        binary = check_one_frame_mask(mask, mask_frame, num_frames, (height, width))[0, 0].numpy()
        gray = [gray_uint8(frame) for frame in frames]
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


class Sam2Tracker(MaskTracker):
    """SAM 2 (:mod:`gen1.sam2_tracker`): the subject segmented on every frame from its mask, or from clicks on it,
    on one frame. ``model``: a folder or Hub id (default ``facebook/sam2.1-hiera-tiny``); ``device``: where it runs
    (default: the first GPU, else the CPU). The depth plays no part: SAM 2 follows the subject's appearance."""

    name = "sam2"
    takes_clicks = True
    takes_model = True

    def __init__(self, model: str | None = None, device: str | None = None):
        self.model = model
        self.device = device

    def check_model(self) -> None:
        from gen1.sam2_tracker import resolve_sam2  # lazy: light import

        resolve_sam2(self.model)

    def track(self, frames, mask, mask_frame, depth=None, clicks=()):
        # lazy: transformers' SAM 2 only when this tracker runs
        from gen1.sam2_tracker import segment_video

        num_frames, _, height, width = frames.shape
        if clicks and mask is not None:
            raise ValueError("give the subject on its frame as a mask or as clicks, not both")
        if clicks:
            points = check_clicks(clicks, mask_frame, num_frames, (height, width))
            return segment_video(frames, int(mask_frame), points=points, model=self.model, device=self.device)
        binary = check_one_frame_mask(mask, mask_frame, num_frames, (height, width))[0, 0]
        return segment_video(frames, int(mask_frame), mask=binary, model=self.model, device=self.device)


#: Tracker name -> its class (made by :func:`make_tracker`); the names are :data:`gen1.settings.TRACKER_NAMES`.
TRACKERS: dict[str, type[MaskTracker]] = {FlowTracker.name: FlowTracker, Sam2Tracker.name: Sam2Tracker}


def make_tracker(tracker: str | MaskTracker = "flow", model: str | None = None) -> MaskTracker:
    """The tracker ``tracker`` names (a name of :data:`TRACKERS`; an instance is returned as it is), with its
    ``model`` (a folder or Hub id) for a tracker that :attr:`MaskTracker.takes_model`; ``ValueError`` otherwise."""
    if not isinstance(tracker, str):
        if model is not None:
            raise ValueError("mask_tracker_model names the model of a tracker given by name, not of a tracker object")
        return tracker
    if tracker not in TRACKERS:
        raise ValueError(f"mask_tracker must be one of {', '.join(TRACKERS)}, got {tracker!r}")
    kind = TRACKERS[tracker]
    if model is None:
        return kind()
    if not kind.takes_model:
        raise ValueError(f"mask_tracker_model does not apply to the {tracker} tracker (it has no weights); "
                         f"it names the model of {', '.join(n for n, k in TRACKERS.items() if k.takes_model)}")
    return kind(model=model)


def track_mask(frames: torch.Tensor, mask: torch.Tensor | None, mask_frame: int, depth: torch.Tensor | None = None,
               tracker: str | MaskTracker = "flow", clicks=()) -> torch.Tensor:
    """The one-frame ``mask`` (or ``clicks`` on frame ``mask_frame``, for a tracker that takes them) on every
    frame, by ``tracker`` (a name of :data:`TRACKERS` or an instance)."""
    tracker = make_tracker(tracker)
    if clicks and not tracker.takes_clicks:
        raise ValueError(f"the {tracker.name} tracker carries a painted mask: clicks need "
                         f"{' or '.join(n for n, k in TRACKERS.items() if k.takes_clicks)} (--mask-tracker)")
    extra = {"clicks": tuple(clicks)} if clicks else {}  # a tracker without clicks need not take the argument
    return tracker.track(frames.float().cpu(), None if mask is None else mask.float().cpu(), int(mask_frame),
                         None if depth is None else depth.float().cpu(), **extra)


def gray_uint8(frame: torch.Tensor) -> np.ndarray:
    """A ``(3, H, W)`` frame in [0, 1] as an 8-bit grey image (what OpenCV's flow takes)."""
    rgb = frame.clamp(0, 1).permute(1, 2, 0).numpy()
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.ascontiguousarray((gray * 255.0 + 0.5).astype(np.uint8))


def dense_flow(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` from ``target`` to ``source`` (Farneback's polynomial expansion, window 1/7 of the
    short side): pixel ``p`` of ``target`` shows what ``source`` shows at ``p + flow(p)``."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    return cv2.calcOpticalFlowFarneback(target, source, None, 0.5, 3, flow_window(target.shape), 5, 5, 1.1, 0)


def flow_window(size: tuple[int, int]) -> int:
    """The side of :func:`dense_flow`'s averaging window for frames of ``size`` (H, W): 1/7 of the short side, odd,
    at least 5. The flow near a moving subject is smeared by it up to half this far."""
    return max(5, min(size) // 7) | 1


def _warp(previous: np.ndarray, target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The soft mask of the ``source`` frame carried to the ``target`` frame (backward warping, bilinear). It stays
    soft from frame to frame (thresholding at every frame would erode it), and is thresholded at 0.5 for each
    frame's mask."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    flow = dense_flow(target, source)
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
    import cv2  # lazy: cv2 is heavy and only this path needs it

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
    import cv2  # lazy: cv2 is heavy and only this path needs it

    total = cv2.GaussianBlur(values * weight, (0, 0), sigma)
    count = cv2.GaussianBlur(weight, (0, 0), sigma)
    fallback = float((values * weight).sum() / max(weight.sum(), 1.0))
    return np.where(count > 1e-6, total / np.maximum(count, 1e-6), fallback)


__all__ = ["TRACKERS", "FlowTracker", "MaskTracker", "Sam2Tracker", "check_clicks", "check_one_frame_mask",
           "make_tracker", "track_mask"]
