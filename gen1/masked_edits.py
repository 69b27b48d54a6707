"""Erase and replace: the region a masked edit changes, and the structure it is guided by inside it.

A masked edit keeps the source exactly outside its mask (:class:`gen1.masking.KeptRegion`). This module decides the
rest, before any network runs:

* **where** (:func:`edit_region`): the user's mask on every frame at the output size, either as given (one mask for
  all frames, or one per frame) or, with ``mask_frame``, the mask of that one frame carried to every frame by a
  tracker (:mod:`gen1.tracking`). An erase grows it by :func:`erase_margin` pixels, so that the subject's soft
  outline (anti-aliasing, motion blur, the tracker's error) goes with it and leaves no ghost line;
* **with which structure** (:func:`structure_depth`): ``"keep"`` the subject's depth (a replace that keeps the
  subject's shape; today's masked edit), or ``"fill"`` it from the mask's boundary (:func:`gen1.depth.fill.fill_depth`:
  what lies behind the subject, the default of an erase and a replace that removes the old shape). The depth is the
  estimate or the one the user gives (``depth``): a replace that keeps a mock-up render's depth of the new object
  is guided by the new object's shape.

* **what the subject hid** (:func:`hidden_background`, ``erase_fill``): where other frames see the background behind
  the region (a subject that moves across the shot), its colours are copied from them along the background's
  motion (:mod:`gen1.propagation`); the rest is filled from the boundary, which then includes the copied pixels
  (``"boundary"``: all of it from the boundary, as before); the depth is always filled from the boundary
  (:func:`structure_depth` says why);
* **from what it starts** (:func:`prefilled`): an erase starts from the source with the region filled in (the
  colours copied or continued across it, as the depth is), noised to :data:`ERASE_STRENGTH` of the steps
  (``erase_strength``), not from pure noise: the model then refines a background that is already there instead of
  inventing the region's content, and draws less of the subject back (on the erase benchmark, 8 scenes, exact
  masks: PSNR inside the mask 16.56 -> 19.19 dB, frames whose output depth is nearer the background's 59 -> 80 %,
  warp error 2.79x -> 1.94x the truth's; docs/masked_edits_results.md);
* **how it meets its surroundings**: the redrawn region is composited seamlessly (:mod:`gen1.seamless`, the
  erase's :class:`gen1.masking.KeptRegion`): its colour cast is corrected to meet the kept pixels at its edge. A
  replace with a given depth composites only the background it leaves (:func:`given_background`) so, the new object
  keeping its own colours (replace benchmark, 32 scenes: 17.41 -> 17.79 dB inside the union of both objects).

What content fills the region is the route's (:meth:`gen1.routes.Route.source_content` for an erase: the source's
own; a prompt or reference for a replace).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from gen1.conditioning import resize
from gen1.depth.fill import check_fill_mask, fill_holes
from gen1.masking import grow, mask_at_size, mask_to_tensor, prepare_mask
from gen1.propagation import BackgroundSources, background_sources
from gen1.settings import MASK_STRUCTURES, TRACKER_NAMES, check_setting
from gen1.tracking import check_clicks, check_one_frame_mask, fit_clicks, track_mask

#: The share of the steps an erase redraws of its pre-filled region (:func:`prefilled`) unless ``erase_strength``
#: says otherwise. With the seamless composite (:mod:`gen1.seamless`) and a 2-px margin, on the erase benchmark's 32
#: scenes (UniPC 6 steps; PSNR inside the mask / frames nearer the background / warp error over the truth's): 0.3
#: 19.40 dB / 85 % / 1.33x, 0.4 19.45 / 85 % / 1.49x, 0.6 19.42 / 88 % / 1.67x, 1 17.65 / 84 % / 2.12x: 0.4 keeps the
#: flicker within 1.5x the truth's at the best PSNR (0.6 was the default before the composite was seamless).
ERASE_STRENGTH = 0.4

#: Where an erase takes what its subject hid unless ``erase_fill`` says otherwise (:data:`gen1.settings.ERASE_FILLS`):
#: from the frames that see it. On the erase benchmark (32 scenes, tracked masks; docs/masked_edits_results.md) it
#: changes little where the subjects barely move (PSNR inside the mask 19.36 -> 19.52 dB, warp error 1.36x -> 1.29x
#: the truth's); where the subject walks across the view (``--crossing 3``, exact masks) it is worth +1.55 dB and
#: takes the warp error from 2.06x to 1.45x.
ERASE_FILL = "frames"

#: How much nearer than the background continued across the region (normalised inverse depth) a replace's given
#: depth must be to count as the new object (:func:`given_background`).
GIVEN_OBJECT_TOLERANCE = 0.02  # chosen on the replace benchmark's first 8 scenes (docs/masked_edits_results.md)
#: The short side :func:`given_background` solves its continuation at (a frame larger than this is solved on a
#: coarser grid: a harmonic fill of a 512-px frame took a second of CPU, 53 s for 48 frames).
GIVEN_FILL_SIDE = 128

def erase_margin(size: tuple[int, int]) -> int:
    """Pixels an erase grows the mask by: 3/64 of the short side, at least 1 (3 at 64 px, 24 at 512). On the erase
    benchmark (32 scenes, the seamless composite, start 0.4; docs/masked_edits_results.md) margins of 1 / 2 / 3 / 4 /
    5 px at 64 px gave PSNR 19.52 / 19.45 / 19.36 / 19.03 / 18.95 dB, frames nearer the background 83.6 / 85.2 / 86.7 /
    87.5 / 87.5 %, warp error 1.80 / 1.49 / 1.36 / 1.31 / 1.25x the truth's: 3 takes most of the gain for 0.1 dB."""
    return max(1, round(3 * min(size) / 64))


def check_mask_arguments(mask, *, mask_frame, erase: bool, mask_structure, mask_structure_level, clicks=(),
                         erase_strength=None, strength: float | None = 1.0, erase_fill=None, drag: bool = False,
                         tracker="flow", label: Callable[[str], str] = str) -> None:
    """``ValueError`` for a mask setting given without a mask (or ``clicks`` on the subject), a mask and clicks
    both, an unknown ``mask_structure``, an erase's start given as ``strength`` (it is ``erase_strength``), an
    erase's settings without an erase (``erase_fill`` is a ``drag``'s too), or a ``tracker`` other than the default
    with nothing to track (no ``mask_frame``, no clicks). The messages name each setting as
    ``label(name)``: the pipeline's keywords by default, ``gen1 edit``'s flags with :func:`gen1.settings.flag_label`
    (the one check both call)."""
    if erase_strength is not None and not erase:
        raise ValueError(f"{label('erase_strength')} is an erase's start: give {label('erase')}, or no "
                         f"{label('erase_strength')}")
    if erase_fill is not None and not (erase or drag):
        raise ValueError(f"{label('erase_fill')} is an erase's or a drag's: give {label('erase')} or {label('drag')}, "
                         f"or no {label('erase_fill')}")
    if erase and strength is not None and strength < 1.0:
        raise ValueError(f"{label('erase')} starts from its pre-filled region at {label('erase_strength')}: leave "
                         f"{label('strength')} at 1 and give {label('erase_strength')}")
    name = tracker if isinstance(tracker, str) else getattr(tracker, "name", None)  # a name or a MaskTracker
    if name in TRACKER_NAMES and name != "flow" and mask_frame is None and not clicks:  # (an unknown name: its own)
        raise ValueError(f"{label('mask_tracker')} {name} follows the subject from one frame: give "
                         f"{label('mask_frame')} (the frame {label('mask')} shows) or {label('mask_clicks')}, or no "
                         f"{label('mask_tracker')}")
    if clicks and mask is not None:
        raise ValueError(f"give the subject as {label('mask')} or as clicks ({label('mask_clicks')}), not both")
    if mask is None and not clicks:
        for name, value in (("mask_frame", mask_frame), ("mask_structure", mask_structure),
                            ("mask_structure_level", mask_structure_level)):
            if value is not None:
                raise ValueError(f"{label(name)} needs {label('mask')}")
        if erase:
            raise ValueError(f"{label('erase')} needs {label('mask')} (the subject to erase), or "
                             f"{label('mask_clicks')} on it")
    check_setting("mask_structure", mask_structure, label)


def load_mask(mask, num_frames: int, input_size: tuple[int, int], mask_frame: int | None = None) -> torch.Tensor:
    """``mask`` read and checked against the source (before any model runs): float ``(F, 1, H, W)`` at the source's
    ``input_size``, or with ``mask_frame`` the one frame's mask ``(1, 1, H, W)``
    (:func:`gen1.tracking.check_one_frame_mask`:
    not empty, not full, inside the clip)."""

    if mask_frame is None:
        return prepare_mask(mask, num_frames, *input_size)
    tensor = mask_to_tensor(mask)
    if tensor.ndim == 4 and tensor.shape[0] == 1:  # one image: of the video's shape at another size, scaled
        tensor = mask_at_size(tensor, input_size)
    return check_one_frame_mask(tensor, mask_frame, num_frames, input_size)


def edit_region(mask, frames: torch.Tensor, input_size: tuple[int, int], *, mask_frame: int | None = None,
                depth: torch.Tensor | None = None, erase: bool = False, tracker="flow", clicks=()) -> torch.Tensor:
    """The region to edit on every frame, float ``(F, 1, H, W)`` at the size of ``frames`` ``(F, 3, H, W)``.

    ``mask``: as :func:`gen1.masking.mask_to_tensor` takes it, at the source's ``input_size`` (H, W); with
    ``mask_frame`` one image, the mask of that frame, tracked to every frame by ``tracker`` (a name of
    :data:`gen1.tracking.TRACKERS` or a tracker) along ``frames`` and ``depth`` (the unobscured depth, ``(F, 1, H,
    W)``). An ``erase`` makes it binary and grows it by :func:`erase_margin`; its every frame must then leave some
    surroundings and hold some subject. ``clicks`` ``(x, y, positive)`` in pixels at ``input_size``, on frame
    ``mask_frame``, give the subject instead of ``mask`` to a tracker that takes them (brought to the frames as the
    frames are: :func:`gen1.tracking.fit_clicks`; one in the part cropped away is refused)."""

    num_frames, size = frames.shape[0], tuple(frames.shape[-2:])
    if clicks:
        points = check_clicks(clicks, mask_frame, num_frames, input_size)
        fitted = fit_clicks(points, input_size, size)  # where they land in the frames (scaled, then cropped)
        region = track_mask(frames, None, mask_frame, depth, tracker, clicks=fitted)
    elif mask_frame is None:
        region = resize(load_mask(mask, num_frames, input_size).float(), size).clamp(0, 1)
    else:
        one = (resize(load_mask(mask, num_frames, input_size, mask_frame), size) > 0.5).float()
        check_one_frame_mask(one, mask_frame, num_frames, size)  # still a subject after resizing
        region = track_mask(frames, one, mask_frame, depth, tracker)
    if erase:

        region = grow((region > 0.5).float(), erase_margin(size))
        check_fill_mask(region, "the mask (tracked and grown)" if mask_frame is not None else "the mask")
    return region


def erase_start(erase_strength: float | None) -> float:
    """The strength an erase starts at: ``erase_strength``, or :data:`ERASE_STRENGTH` when not given."""
    return ERASE_STRENGTH if erase_strength is None else float(erase_strength)


def hidden_background(frames: torch.Tensor, region: torch.Tensor, erase_fill: str | None) -> BackgroundSources | None:
    """Where the frames see what ``region`` hides (:func:`gen1.propagation.background_sources`) when ``erase_fill``
    (None: :data:`ERASE_FILL`) is ``"frames"``; None for ``"boundary"`` (everything from the boundary)."""
    check_setting("erase_fill", erase_fill)
    return None if (erase_fill or ERASE_FILL) == "boundary" else background_sources(frames, region)


def prefilled(frames: torch.Tensor, region: torch.Tensor, sources: BackgroundSources | None = None) -> torch.Tensor:
    """``frames`` ``(F, 3, H, W)`` in [0, 1] with the region (> 0.5, ``(F, 1, H, W)``) filled: from the frames that
    see the background there (``sources``, :func:`gen1.propagation.background_sources`), the rest from its boundary,
    each colour channel as the depth is filled (:func:`gen1.depth.fill.fill_depth`, harmonic: smooth, exact on a
    colour gradient); outside the region the frames unchanged, bit for bit."""
    return torch.where(region > 0.5, _filled(frames, region, sources).clamp(0, 1), frames)


def structure_depth(depth: torch.Tensor, region: torch.Tensor, mask_structure: str) -> torch.Tensor:
    """The unobscured depth an edit is guided by: ``depth`` ``(F, 1, H, W)`` as it is (``"keep"``), or with the
    region (> 0.5) filled from its boundary (``"fill"``, :func:`gen1.depth.fill.fill_holes`; a frame without region,
    e.g. of a replace's mask video, is left as it is).

    The depth is not copied from the frames that see the background, as the colours are (:func:`prefilled`): the
    estimate is normalised frame by frame and changes as the camera moves, so values from other frames meet in
    seams (on a real pan, car-turn.mp4, a patchwork of steps inside the region: edges the model would draw), and
    its blur carries the subject's own depth some pixels past its outline. On the erase benchmark copying it
    changed nothing (PSNR 19.52 -> 19.53 dB, the same frames nearer the background)."""
    if mask_structure == "keep":
        return depth
    return fill_holes(depth, (region > 0.5).float()).clamp(0, 1)


def given_background(depth: torch.Tensor, region: torch.Tensor, tolerance: float | None = None) -> torch.Tensor:
    """Where a replace's given structure shows the background: the region's pixels (> 0.5 of ``region``
    ``(F, 1, H, W)``) whose given ``depth`` (normalised inverse depth, brighter = nearer) is not nearer than its
    own continuation across the region (:func:`structure_depth`'s fill) by more than ``tolerance`` (default
    :data:`GIVEN_OBJECT_TOLERANCE`): the part of the old subject's place that the new object leaves uncovered.
    Float ``(F, 1, H, W)``, 1 there."""
    tolerance = GIVEN_OBJECT_TOLERANCE if tolerance is None else tolerance
    inside = region > 0.5
    size = tuple(depth.shape[-2:])
    scale = GIVEN_FILL_SIDE / min(size)
    if scale >= 1:
        behind = fill_holes(depth, inside.float())
    else:  # the continuation is smooth: solved on a coarser grid (every cell the region touches filled), brought back
        coarse = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        touched = (F.interpolate(inside.float(), coarse, mode="area") > 0).float()
        behind = F.interpolate(fill_holes(F.interpolate(depth, coarse, mode="area"), touched), size,
                               mode="bilinear", align_corners=False)
    return (inside & (depth <= behind + tolerance)).float()


def _filled(values: torch.Tensor, region: torch.Tensor, sources: BackgroundSources | None) -> torch.Tensor:
    """``values`` with the region copied from where ``sources`` see it and the rest (on frames that have a rest)
    filled from its boundary, the copied pixels included (float64 solves, one frame at a time)."""
    inside = region > 0.5
    if sources is not None:
        values, inside = sources.sample(values), inside & ~sources.seen
    return fill_holes(values, inside.float())


__all__ = ["ERASE_FILL", "ERASE_STRENGTH", "MASK_STRUCTURES", "check_mask_arguments", "edit_region", "erase_margin",
           "erase_start", "given_background", "grow", "hidden_background", "load_mask", "prefilled", "structure_depth"]
