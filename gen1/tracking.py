"""Masks that follow the subject: a mask given on one frame, propagated to every frame of the clip.

A user paints (or uploads) the subject on one frame; erasing or replacing a moving subject needs its mask on every
frame. A :class:`MaskTracker` turns the one-frame mask into a per-frame one; trackers are registered by name in
:data:`TRACKERS` (``flow``, the default, needs no weights; a video segmentation model such as SAM 2 is another
tracker of the same interface).

:class:`FlowTracker` carries the mask frame by frame, forwards and backwards from the given frame. Each step has three
candidates for the next frame's mask: the mask carried along the source's dense optical flow (OpenCV's Farneback);
the mask moved by the subject's own translation, found by matching the subject's pixels in the next frame (masked
sum of squared differences over a search window); and the given frame's own mask, matched into the next frame the
same way from where the previous mask is. The flow follows a subject that turns or changes shape, but inside a
flat-coloured subject it sees no texture and takes the motion of the surroundings, so on a subject crossing the view
the mask lags and shrinks frame by frame; the subject's matched pixels move with it whole, and the given mask
carries no error from frame to frame in its shape. A rigid candidate is taken over the flow's where its outline
agrees with the subject's colours better than the flow's and clearly better than chance (the share of its inner
ring whose colours are more common on the subject of the previous frame than around it, and of its outer ring the
other way round); where the colours cannot tell them apart (a subject the colour of its surroundings) the flow's
stands, and of shifts that match equally well the smallest is taken (a flat subject at the frame's edge, which the
padding mirrors, matches at many). Then the pixels in a thin band around the outline are snapped to the
subject or the surroundings where their colour, then their depth, is clearly one side's (locally weighted means of
each side): the edges of the colours and the depth are where the subject really ends, so the snaps keep the mask
on it over many frames. Each snap is used only when it agrees with the given mask on its own frame
(:func:`agrees`): a subject the colour of its surroundings, or a depth estimate whose edges are blurred or shifted
against the subject's outline, would pull the mask off it, and then the others decide. A subject that leaves the
shot leaves nothing at the edge for the flow or the matches to follow, so its last sliver would stay there: a mask
at the frame's edge whose pixels are mostly unlike the given frame's subject is taken as the subject gone, and the
mask is empty from there on (:func:`_left_the_shot`; a subject that comes back needs a mask per frame or SAM 2).
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
    if mask.ndim != 4:
        raise ValueError(f"a mask tracked from mask_frame must be (1, 1, H, W), got shape {tuple(mask.shape)}")
    if mask.shape[0] != 1:
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


def fit_clicks(clicks, input_size: tuple[int, int], size: tuple[int, int], *, label: str = "mask_clicks",
               cropped_at: str = "") -> list[tuple[float, float, bool]]:
    """Clicks ``(x, y, positive)`` checked by :func:`check_clicks` in frames of ``input_size`` (H, W), brought to
    the frames an edit reads at ``size`` (H, W) as the frames are (:func:`gen1.media.resize.fit_points`: the
    covering scale, then the centred crop). A click in the part cropped away is a ``ValueError`` naming ``label``
    and the click as given (``cropped_at``: what cut it, e.g. ``" at --size 64"``)."""
    from gen1.media.resize import cover_geometry, fit_points  # lazy: keeps this module's import light

    _, _, top, left = cover_geometry(*input_size, *size)
    height, width = size
    fitted = fit_points([(x, y) for x, y, _ in clicks], input_size, size).reshape(-1, 2)
    for (x, y, _), (column, row) in zip(clicks, fitted, strict=True):  # on a pixel kept, along an axis cut?
        if (left and not -0.5 <= column < width - 0.5) or (top and not -0.5 <= row < height - 0.5):
            raise ValueError(f"{label}: the click at x={x:g}, y={y:g} is in the part of the video cropped "
                             f"away{cropped_at} (the frames are cut to {width}x{height} about their centre): click "
                             "within the part that is kept")
    fitted = np.clip(fitted, 0, [width - 1, height - 1])  # on the frames' outer pixels, as check_clicks wants
    return [(float(x), float(y), positive) for (x, y), (_, _, positive) in zip(fitted, clicks, strict=True)]


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
    """The mask carried along the flow or the subject's matched motion (or the given mask matched anew), snapped to
    its colour and depth edges (no weights; the module docstring says how).

    ``band``: half-width in pixels of the band around the carried outline where the colour and the depth decide
    (default: 1/32 of the short side, at least 1); ``colour_contrast`` / ``depth_contrast``: the least difference
    between the subject and its surroundings (RGB distance in [0, 1]; normalised depth units) for the colour / the
    depth to decide at all (below it the other cues decide); ``search``: how far the subject is looked for in the next
    frame, in pixels (default: 1/8 of the short side, at least 2). A rigid candidate is taken over the flow's only
    where its outline fits the subject's colours clearly better than chance and than the flow's (:func:`_pick`).
    """

    name = "flow"

    def __init__(self, band: int | None = None, depth_contrast: float = 0.02, colour_contrast: float = 0.05,
                 search: int | None = None):
        for name, value in (("band", band), ("search", search)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"the flow tracker's {name} must be a whole number of pixels >= 1, got {value!r}")
        self.band = band
        self.depth_contrast = depth_contrast
        self.colour_contrast = colour_contrast
        self.search = search

    def track(self, frames, mask, mask_frame, depth=None, clicks=()):
        if clicks or mask is None:
            raise ValueError("the flow tracker carries a painted mask: clicks need the sam2 tracker "
                             "(--mask-tracker sam2)")
        num_frames, _, height, width = frames.shape
        binary = check_one_frame_mask(mask, mask_frame, num_frames, (height, width))[0, 0].numpy()
        gray = [gray_uint8(frame) for frame in frames]

        def rgb(index: int) -> np.ndarray:  # a frame as OpenCV takes it, made when used (not the whole clip again)
            return np.ascontiguousarray(frames[index].clamp(0, 1).permute(1, 2, 0).numpy(), dtype=np.float32)

        band = self.band or max(1, round(min(height, width) / 32))
        search = self.search or max(2, min(height, width) // 8)
        # each cue, (values of a frame, least contrast, whether its snaps must fit the subject's colours), kept only
        # where it agrees with the given mask on its frame; the colour snap is colour evidence itself
        cues = [(rgb, self.colour_contrast, False)]
        if depth is not None:
            cues.append((lambda index: depth[index, 0, :, :, None].float().numpy(), self.depth_contrast, True))
        cues = [(values, contrast, judged) for values, contrast, judged in cues
                if agrees(binary, values(mask_frame), band, contrast)]
        given_frame = rgb(mask_frame)
        given_colours = _SubjectColours(given_frame, binary, band)  # the colours a subject that left lacks
        masks = np.zeros((num_frames, 1, height, width), dtype=np.float32)
        masks[mask_frame, 0] = binary
        for step in (1, -1):
            soft, index, previous = binary, mask_frame + step, given_frame
            while 0 <= index < num_frames:
                following = rgb(index)
                by_flow = _warp(soft, gray[index], gray[index - step])
                rigid = [_translate(soft, *_matched_translation(previous, soft, following, search)),
                         _given_mask_matched(given_frame, binary, soft, following, search)]
                colours = _SubjectColours(previous, soft, band)
                soft = _pick(by_flow, rigid, colours, following)
                carried = (soft > 0.5).astype(np.float32)
                for values, contrast, judged in cues:
                    snapped = _snap_to_edges(carried, values(index), band, contrast)
                    if judged and not colours.agree_with_change(carried, snapped, following):
                        continue  # the snap moved the outline where the subject's colours say it is not
                    soft = np.where(snapped != carried, snapped, soft)
                    carried = snapped
                if _left_the_shot(carried, following, colours, given_colours):
                    soft, carried = np.zeros_like(soft), np.zeros_like(carried)
                masks[index, 0] = carried
                index, previous = index + step, following
        return torch.from_numpy(masks)



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


#: Shifts whose matching cost is within this of the least, per pixel and colour channel (a squared difference:
#: 1 % of the range), tie; of tied shifts the smallest is taken. A subject the colour of its surroundings, or one
#: touching the frame's edge (the padding mirrors it), matches equally well at many shifts: none of them says it
#: moved.
TIE = 1e-4


def _matched_translation(previous: np.ndarray, mask: np.ndarray, following: np.ndarray,
                         search: int) -> tuple[float, float]:
    """The shift ``(dx, dy)`` that best moves the subject's pixels of the ``previous`` frame ``(H, W, 3)`` (where
    the soft ``mask`` is above 0.5) onto the ``following`` frame: the least sum of squared differences over shifts
    up to ``search`` pixels each way (OpenCV's masked template matching; of shifts within :data:`TIE` of the least,
    the smallest), to a fraction of a pixel by a parabola through the least and its neighbours."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    rows, cols = np.nonzero(mask > 0.5)
    if len(rows) == 0:
        return 0.0, 0.0
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    template = np.ascontiguousarray(previous[top:bottom, left:right])
    weight = np.ascontiguousarray(np.repeat((mask[top:bottom, left:right] > 0.5).astype(np.float32)[..., None], 3,
                                            axis=-1))
    padded = cv2.copyMakeBorder(following, search, search, search, search, cv2.BORDER_REFLECT)
    window = padded[top:bottom + 2 * search, left:right + 2 * search]
    cost = cv2.matchTemplate(window, template, cv2.TM_SQDIFF, mask=weight)
    tolerance = TIE * float(weight.sum())
    shift_rows, shift_cols = np.mgrid[:cost.shape[0], :cost.shape[1]] - search
    tied = cost <= cost.min() + tolerance
    distance = np.where(tied, shift_rows ** 2 + shift_cols ** 2, np.iinfo(np.int64).max)
    row, col = np.unravel_index(int(np.argmin(distance)), cost.shape)
    return (float(col - search + _parabola_vertex(cost[row, :], col, tolerance)),
            float(row - search + _parabola_vertex(cost[:, col], row, tolerance)))


def _parabola_vertex(values: np.ndarray, index: int, tolerance: float = 0.0) -> float:
    """Where the parabola through ``values[index - 1 : index + 2]`` has its least, relative to ``index`` (0 at an
    end of ``values``, where they are not convex, or where a neighbour ties the middle within ``tolerance``)."""
    if 0 < index < len(values) - 1:
        if min(values[index - 1], values[index + 1]) <= values[index] + tolerance:
            return 0.0
        curvature = values[index - 1] - 2 * values[index] + values[index + 1]
        if curvature > 1e-12:
            return float(0.5 * (values[index - 1] - values[index + 1]) / curvature)
    return 0.0


def _translate(image: np.ndarray, dx: float, dy: float, reflect: bool = False) -> np.ndarray:
    """``image`` (a soft mask ``(H, W)`` or a frame ``(H, W, 3)``) moved by ``(dx, dy)`` pixels, bilinearly; what
    comes in from outside the frame is 0 (a mask: nothing), or the frame mirrored (``reflect``)."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    border = cv2.BORDER_REFLECT if reflect else cv2.BORDER_CONSTANT
    return cv2.warpAffine(image.astype(np.float32), shift, image.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=0)


#: Rounds of :func:`_placed_at`'s correction for the frame's edge (each moves the shift by the centroid's error).
PLACEMENT_ROUNDS = 4


def _placed_at(mask: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """The shift that puts the part of ``mask`` left inside the frame with its centroid at ``(x, y)``. Centroid to
    centroid when the moved mask stays inside; where the frame's edge cuts it, the cut part's centroid moves inward,
    so the shift is corrected until the visible part's centroid is there (a subject leaving the shot is placed
    mostly outside the frame, as it is, not pulled whole into it)."""
    rows, cols = np.nonzero(mask > 0.5)
    dx, dy = x - cols.mean(), y - rows.mean()
    for _ in range(PLACEMENT_ROUNDS):
        visible_rows, visible_cols = np.nonzero(_translate(mask, dx, dy) > 0.5)
        if len(visible_rows) == 0 or len(visible_rows) == len(rows):
            break
        dx, dy = dx + x - visible_cols.mean(), dy + y - visible_rows.mean()
    return float(dx), float(dy)


def _given_mask_matched(given_frame: np.ndarray, given_mask: np.ndarray, soft: np.ndarray, following: np.ndarray,
                        search: int) -> np.ndarray:
    """The given frame's own mask moved into the ``following`` frame: brought to where the previous frame's ``soft``
    mask is (centroid to centroid, :func:`_placed_at`), then by the subject's matched translation from there (the
    given frame's pixels moved along). Its shape carries no error from frame to frame (its place follows the previous
    mask), so a subject that keeps its shape keeps its outline over the whole shot; an empty previous mask gives an
    empty candidate."""
    rows, cols = np.nonzero(soft > 0.5)
    if len(rows) == 0:
        return np.zeros_like(soft, dtype=np.float32)
    dx, dy = _placed_at(given_mask, cols.mean(), rows.mean())
    moved_mask, moved_frame = _translate(given_mask, dx, dy), _translate(given_frame, dx, dy, reflect=True)
    return _translate(moved_mask, *_matched_translation(moved_frame, moved_mask, following, search))


#: How many of the subject's and of its surroundings' colours the outline agreement compares with, at most.
COLOUR_SAMPLES = 256
#: How many pixels of each of a candidate's rings the outline agreement looks at, at most.
RING_SAMPLES = 2048


#: The least outline agreement a rigid candidate needs to be taken over the flow's (chance is 1): where colours
#: cannot tell the candidates apart (a subject the colour of its surroundings), the flow's carried mask stands.
#: (Asking also a margin of 0.05 over the flow's agreement tracked worse: 0.880 / 0.750 against 0.885 / 0.765.)
RIGID_LEAST = 1.2


def _pick(by_flow: np.ndarray, rigid: list[np.ndarray], colours: "_SubjectColours",
          following: np.ndarray) -> np.ndarray:
    """The flow's candidate, unless the best rigid candidate's outline agrees with the subject's colours better than
    the flow's and at least :data:`RIGID_LEAST` (of rigid candidates that tie, the later)."""
    flow_score = colours.agreement(by_flow, following)
    scores = [colours.agreement(candidate, following) for candidate in rigid]
    best = max(range(len(rigid)), key=lambda i: (scores[i], i))
    if scores[best] >= RIGID_LEAST and scores[best] > flow_score:
        return rigid[best]
    return by_flow


#: The least share of a mask's pixels, where it reaches the frame's edge, that must have the subject's colours
#: (those of the given frame) for the subject to be still in the shot. A subject that leaves it leaves the flow and
#: the matches nothing to follow at the edge, and its last sliver would stay there, holding what was behind it.
#: Measured on raw colours: slivers left after synthetic exits 0.00-0.18; real subjects at the edge (car-turn,
#: blackswan at 64 and 128 px) 0.46 and above. A subject at the edge whose light changes is kept by the same test on
#: colours relative to each frame's light (:func:`_left_the_shot`).
GONE_SHARE = 0.25


def _left_the_shot(mask: np.ndarray, following: np.ndarray, colours: "_SubjectColours",
                   given: "_SubjectColours") -> bool:
    """Whether the subject has left the shot: its ``mask`` on the ``following`` frame reaches within the outline's
    ``band`` of the frame's edge and fewer than :data:`GONE_SHARE` of its pixels are more like the ``given`` frame's
    subject colours than like the surroundings of the step (``colours``; the previous frame's own subject colours
    would be the sliver's, once it holds background), both as they are and as offsets from their frame's light
    (the mean colour outside the subject): a change of light or exposure over the whole frame (a fade,
    auto-exposure) moves every colour alike and must not make a subject at the edge look gone, while the offsets
    alone tell a subject from its surroundings less well (on car-turn the least share at the edge fell from 0.46 to
    0.24)."""
    inside, band = mask > 0.5, colours.band
    if not inside.any() or not (inside[:band].any() or inside[-band:].any() or inside[:, :band].any()
                                or inside[:, -band:].any()):
        return False
    if not len(given.subject) or not len(colours.surroundings):
        return False
    pixels = colours.sample(following[inside], RING_SAMPLES)
    light = _light(following, inside)
    as_they_are = _share_nearer(pixels, given.subject, colours.surroundings)
    relative = _share_nearer(pixels - light, given.subject - given.light, colours.surroundings - colours.light)
    return as_they_are < GONE_SHARE and relative < GONE_SHARE


class _SubjectColours:
    """The colours of the subject of the ``previous`` frame ``(H, W, 3)`` (``previous_mask``) and of its
    surroundings (the ring outside the mask, 2 ``band`` wide), up to :data:`COLOUR_SAMPLES` of each (a fixed draw,
    so that a run is repeatable): what :meth:`agreement` compares a candidate's outline with. Made once per step and
    shared by its candidates."""

    def __init__(self, previous: np.ndarray, previous_mask: np.ndarray, band: int):
        self.band = band
        self.draw = np.random.default_rng(0)
        before = previous_mask > 0.5
        self.subject = self.sample(previous[before])
        self.surroundings = self.sample(previous[_grown(before, 2 * band) & ~before])
        self.light = _light(previous, before)

    def sample(self, colours: np.ndarray, most: int = COLOUR_SAMPLES) -> np.ndarray:
        if not len(colours):
            return colours
        return colours[self.draw.choice(len(colours), min(most, len(colours)), replace=False)]

    def agreement(self, candidate: np.ndarray, following: np.ndarray) -> float:
        """How well the soft ``candidate`` mask of the ``following`` frame fits the subject: the share of its inner
        ring (``band`` wide) whose colour is more common among the subject's colours than among its surroundings'
        (:func:`_colour_density`; as common on both sides counts half), plus the share of its outer ring the other
        way round; up to :data:`RING_SAMPLES` pixels of each ring. 0 to 2, 1 by chance; -1 for an empty
        candidate."""
        after = candidate > 0.5
        if not after.any():
            return -1.0
        if not len(self.subject) or not len(self.surroundings):
            return 0.0
        inner = self.sample(following[after & ~_shrunk(after, self.band)], RING_SAMPLES)
        outer = self.sample(following[_grown(after, self.band) & ~after], RING_SAMPLES)
        return self.subject_share(inner) + (1.0 - self.subject_share(outer) if len(outer) else 0.0)

    def agree_with_change(self, before: np.ndarray, after: np.ndarray, following: np.ndarray) -> bool:
        """Whether the subject's colours agree with the pixels of the ``following`` frame that a change of its mask
        from ``before`` to ``after`` moves: at least half of them (those it adds more common among the subject's
        colours, those it removes among the surroundings'; up to :data:`RING_SAMPLES` of each). Judged on the
        changed pixels alone, so a change of a few pixels is not decided by which of the whole rings were drawn."""
        inside_before, inside_after = before > 0.5, after > 0.5
        added = following[inside_after & ~inside_before]
        removed = following[inside_before & ~inside_after]
        if not len(added) and not len(removed):
            return True
        if not len(self.subject) or not len(self.surroundings):
            return False
        votes = (self.subject_share(self.sample(added, RING_SAMPLES)) * len(added)
                 + (1.0 - self.subject_share(self.sample(removed, RING_SAMPLES))) * len(removed))
        return votes >= 0.5 * (len(added) + len(removed))

    def subject_share(self, colours: np.ndarray) -> float:
        """The share of ``colours`` more common among the subject's than the surroundings' (ties: half)."""
        return _share_nearer(colours, self.subject, self.surroundings)


def _share_nearer(colours: np.ndarray, subject: np.ndarray, surroundings: np.ndarray) -> float:
    """The share of ``colours`` more common among the ``subject`` samples than the ``surroundings`` ones (ties:
    half; no colours: 0)."""
    if not len(colours):
        return 0.0
    margin = _colour_density(colours, subject) - _colour_density(colours, surroundings)
    return float(((margin > 0) + 0.5 * (margin == 0)).mean())


def _light(frame: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """A frame's light: the mean colour of ``frame`` ``(H, W, 3)`` outside the boolean ``subject`` (what a change of
    light or exposure moves); zeros when the subject fills it."""
    return frame[~subject].mean(axis=0) if (~subject).any() else np.zeros(frame.shape[-1], np.float32)


#: The width of the Gaussian kernel over RGB in [0, 1] by which a colour counts its like among the samples.
COLOUR_WIDTH = 0.05


def _colour_density(colours: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """How common each of ``colours`` ``(N, 3)`` is among ``samples`` ``(K, 3)``: the mean of a Gaussian kernel
    (:data:`COLOUR_WIDTH` wide) of the distances. A colour both sides share scores on both; nearest-sample distances
    would call it a tie whenever the subject's samples hold one pixel of the surroundings' colour."""
    squared = (colours ** 2).sum(1)[:, None] + (samples ** 2).sum(1)[None] - 2.0 * colours @ samples.T
    return np.exp(-np.maximum(squared, 0.0) / (2.0 * COLOUR_WIDTH ** 2)).mean(axis=1)


#: How closely the given frame's mask must survive a snap to a cue (colour, depth) for that cue to be used at all.
CUE_AGREEMENT = 0.97
#: A band pixel changes side only when its value is within this share of the subject-surroundings gap of one side's.
CLEAR_SHARE = 0.25


def agrees(mask: np.ndarray, values: np.ndarray, band: int, contrast: float) -> bool:
    """Whether snapping the given frame's own ``mask`` to its ``values`` ``(H, W, C)`` (colour or depth) leaves it
    (IoU >= :data:`CUE_AGREEMENT`): only then are the edges of the values the subject's outline (a blurred or
    shifted depth estimate, or a subject the colour of its surroundings, would pull the mask off the subject at
    every frame)."""
    snapped = _snap_to_edges(mask, values, band, contrast) > 0.5
    given = mask > 0.5
    return float((snapped & given).sum()) / max(float((snapped | given).sum()), 1.0) >= CUE_AGREEMENT


def _snap_to_edges(mask: np.ndarray, values: np.ndarray, band: int, contrast: float) -> np.ndarray:
    """``mask`` with the pixels within ``band`` of its outline given to the subject or the surroundings when their
    ``values`` ``(H, W, C)`` (colour, depth) are clearly one side's local mean (within :data:`CLEAR_SHARE` of the
    distance between the two, where the two are at least ``contrast`` apart); the carried decision stands for the
    others (a contact with the floor, a blurred estimate, a colour between the two)."""
    if not mask.any() or mask.all():
        return mask
    inside = mask > 0.5
    core = _shrunk(inside, band)
    outside = ~_grown(inside, band)
    if not core.any() or not outside.any():
        return mask
    sigma = 3.0 * band
    subject = _local_mean(values, core.astype(np.float32), sigma)
    surroundings = _local_mean(values, outside.astype(np.float32), sigma)
    rows, columns = np.nonzero(~core & ~outside)  # the band: only its pixels can change side
    near_subject, near_surroundings, own = subject[rows, columns], surroundings[rows, columns], values[rows, columns]
    gap = np.linalg.norm(near_subject - near_surroundings, axis=-1)
    clear = gap >= contrast
    to_subject = np.linalg.norm(own - near_subject, axis=-1)
    to_surroundings = np.linalg.norm(own - near_surroundings, axis=-1)
    snapped = mask.copy()
    to_one = clear & (to_subject < CLEAR_SHARE * gap)  # clearly the subject's
    to_zero = clear & (to_surroundings < CLEAR_SHARE * gap)  # clearly the surroundings' (wins a tie, as before)
    snapped[rows[to_one], columns[to_one]] = 1.0
    snapped[rows[to_zero], columns[to_zero]] = 0.0
    return snapped


def _grown(mask: np.ndarray, radius: int) -> np.ndarray:
    """The boolean ``mask`` grown by a disc ``2 radius + 1`` pixels wide: every pixel within ``radius + 1/2``
    (Euclidean) of it. A distance transform, whose cost does not grow with the radius as a dilation's by an
    elliptic kernel does (a band of 34 pixels at 1080p: ~0.13 s a dilation)."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    if not mask.any():
        return mask.copy()
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance <= radius + 0.5


def _shrunk(mask: np.ndarray, radius: int) -> np.ndarray:
    """The boolean ``mask`` without its pixels within ``radius + 1/2`` of a pixel outside it (the frame's edge does
    not count as outside, as an erosion leaves it)."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance > radius + 0.5


def _local_mean(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted mean of ``values`` ``(H, W, C)`` over the pixels where ``weight`` ``(H, W)`` is 1 (the
    global mean where none is near; C at most 4, as OpenCV resizes). A wide Gaussian (``sigma`` of 8 pixels or more:
    a band of 3 pixels, frames from about 81 px) is taken on the frame shrunk so that it is about 4 pixels wide there,
    and the means enlarged back: the same smooth means at a fraction of the cost (a Gaussian 48 pixels wide, as at
    512 px, costs ~0.05 s per channel at full size; shrunk, the means in the band agree within 1e-4)."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    height, width, channels = values.shape
    weighted = np.ascontiguousarray(values * weight[..., None], dtype=np.float32)
    fallback = weighted.reshape(-1, channels).sum(axis=0) / max(float(weight.sum()), 1.0)
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    factor = max(1, int(sigma // 4))
    if factor > 1:
        small = (-(-width // factor), -(-height // factor))
        weighted = cv2.resize(weighted, small, interpolation=cv2.INTER_AREA)
        weight = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    total = cv2.GaussianBlur(weighted, (0, 0), sigma / factor).reshape(*weight.shape, channels)
    count = cv2.GaussianBlur(weight, (0, 0), sigma / factor)[..., None]
    mean = np.where(count > 1e-6, total / np.maximum(count, 1e-6), fallback).astype(np.float32)
    if factor > 1:
        mean = cv2.resize(mean, (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, channels)
    return mean


__all__ = ["TRACKERS", "FlowTracker", "MaskTracker", "Sam2Tracker", "check_clicks", "check_one_frame_mask",
           "fit_clicks", "make_tracker", "track_mask"]
