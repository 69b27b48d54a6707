"""Drag a subject to a new place or pose: a structure edit (DragGAN's idea, for video).

The user gives drag vectors ``X0,Y0:X1,Y1`` (a point on the subject and where it should go, in the source video's
pixel coordinates: column, row, 0 = the first) and the subject's mask (:mod:`gen1.masked_edits`: one frame's,
tracked, or one per frame). gen1 separates structure (depth) from content, so a drag moves the subject's depth and
keeps its content:

* **the transform** (:func:`fit_transform`): one vector moves the subject rigidly (a translation); two give a
  similarity (move, turn and scale in the image plane, exact through both); three or more the least-squares affine
  map. Vectors given on one frame (``mask_frame``, else the first) apply to every frame: the subject keeps its own
  motion, offset (the map's turn and scale act about the subject's centroid in each frame,
  :func:`frame_transforms`). A track file gives vectors for every frame instead (:func:`read_track_file`);
* **the structure** (:func:`drag_layers`): the scene without the subject (its place, grown as an erase grows it,
  filled from the boundary: :func:`gen1.depth.fill.fill_depth`), with the subject's inverse depth carried by the
  transform and composited with a z-test (:mod:`gen1.depth.warp`): where it lands behind something nearer it stays
  hidden;
* **the region**: the union of the subject's old and new masks, grown as an erase grows it; outside it the source's
  pixels exactly (:class:`gen1.masking.KeptRegion`, every pixel inside edited fully); what the model draws is
  composited seamlessly (:mod:`gen1.seamless`, :class:`gen1.seamless.SeamAnchor`): the old place into the pixels
  outside the union, as an erase's is, with the moved subject beside it a mirror; the drawn margin around the moved
  subject into the subject and its surroundings both;
* **the content** (:func:`drag_content`): the source's own (:meth:`gen1.routes.Route.own_content`), or the prompt /
  reference the user gives;
* **the start** (:func:`moved_frames`, :func:`drag_start`): the source with the subject moved and its old place
  pre-filled, noised to ``drag_strength`` of the steps (default :data:`DRAG_STRENGTH`), as an erase starts from its
  pre-filled region.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gen1.depth.fill import check_fill_mask
from gen1.depth.warp import composite_nearer, warp_layer
from gen1.masked_edits import erase_margin, grow, hidden_background, prefilled, structure_depth
from gen1.media.resize import fit_points  # where the source's pixels land in the frames an edit reads

#: Where the moved subject lands on something at most this much nearer (normalised inverse depth), it stays in front:
#: the subject's own contact with the floor and a blurred depth estimate are not occluders.
OCCLUSION_TOLERANCE = 0.1
#: Whether the moved subject's own pixels are kept where it is visible at its new place (the edit then draws its old
#: place, its outline, and what it changes around it): the subject looks exactly as it did. False: the model draws
#: the subject too, from the moved structure and the content (docs/drag_results.md measures both).
KEEP_SUBJECT = True
#: The share of the steps a drag redraws, from the clip with the subject moved and its old place pre-filled
#: (:func:`moved_frames`), unless ``drag_strength`` says otherwise: on the drag benchmark (32 scenes, with the
#: two-part seamless composite; docs/drag_results.md) 0.4 and 0.6 beat 1 (from pure noise) by about 0.3 dB inside the
#: union, with the subject's place as good and the warp error lower.
DRAG_STRENGTH = 0.4
#: The suffixes a drag given as a file (a per-frame track) may have.
TRACK_SUFFIXES = (".json", ".csv")
#: The most a drag may stretch or shrink the subject along any direction (the linear part's singular values within
#: [1/MAX_DRAG_SCALE, MAX_DRAG_SCALE]): a subject moved by its depth and drawn again from its own content has no
#: detail to show at several times its size (7x filled a 64-px frame with blocks), nor any left at a fraction of it.
MAX_DRAG_SCALE = 4.0


@dataclass(frozen=True)
class DragVector:
    """One drag: from ``(x0, y0)`` on the subject to ``(x1, y1)``, in pixels (column, row) of the source."""

    x0: float
    y0: float
    x1: float
    y1: float
    #: The vector as the user gave it, when these are its pixels at another size (:func:`scale_drag`): what
    #: messages name, so that a refusal shows the user's own numbers.
    given: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        if self.given is not None:
            return self.given
        return ":".join(",".join(f"{v:g}" for v in pair) for pair in ((self.x0, self.y0), (self.x1, self.y1)))

    def points(self) -> tuple[tuple[str, float, float, str], ...]:
        """``(name, x, y, shown)`` of the start and the end: ``shown`` is the point as messages name it (the user's
        own numbers, :attr:`given`, when these are its pixels at another size)."""
        start, end = str(self).split(":")
        return ("start", self.x0, self.y0, start), ("end", self.x1, self.y1, end)


def on_frame(x: float, y: float, size: tuple[int, int]) -> bool:
    """Whether the point ``(x, y)`` is on a pixel of a frame of ``size`` (H, W): within half a pixel of the centres
    of the outermost ones."""
    height, width = size
    return -0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5


@dataclass(frozen=True)
class Drag:
    """The drag of one edit: ``vectors`` holds one tuple of vectors given on one frame (``per_frame`` False: they
    apply to every frame) or one tuple per frame of the clip (a track file)."""

    vectors: tuple[tuple[DragVector, ...], ...]
    per_frame: bool = False


def parse_vector(value) -> DragVector:
    """``"X0,Y0:X1,Y1"`` (or four numbers, or two points) as a :class:`DragVector`; ``ValueError`` in one line."""
    if isinstance(value, DragVector):
        return value
    numbers = None
    if isinstance(value, str):
        parts = value.strip().split(":")
        if len(parts) == 2 and all(len(part.split(",")) == 2 for part in parts):
            numbers = [item.strip() for part in parts for item in part.split(",")]
    elif isinstance(value, (list, tuple)):
        flat = [item for pair in value for item in pair] if len(value) == 2 and all(
            isinstance(pair, (list, tuple)) for pair in value) else list(value)
        numbers = flat if len(flat) == 4 else None
    try:
        coordinates = [float(item) for item in numbers] if numbers is not None else None
    except (TypeError, ValueError):
        coordinates = None
    if coordinates is None or not all(math.isfinite(v) for v in coordinates):
        raise ValueError(f"drag must be X0,Y0:X1,Y1 (from a pixel on the subject to where it goes), got {value!r}")
    return DragVector(*coordinates)


def is_track_file(value) -> bool:
    """Whether a drag given as text names a track file (by its suffix) rather than a vector."""
    return isinstance(value, (str, os.PathLike)) and Path(value).suffix.lower() in TRACK_SUFFIXES


def _is_number(item) -> bool:
    return isinstance(item, (int, float, np.integer, np.floating)) and not isinstance(item, bool)


def _one_vector_of_numbers(value) -> bool:
    """Whether ``value`` is one vector written as numbers: four (x0, y0, x1, y1), or two points ((x0, y0), (x1, y1))
    (a point alone is no vector, so two of them cannot be two drags)."""
    if not isinstance(value, (list, tuple)):
        return False
    if len(value) == 4 and all(_is_number(item) for item in value):
        return True
    return len(value) == 2 and all(isinstance(point, (list, tuple)) and len(point) == 2 and all(
        _is_number(item) for item in point) for point in value)


def parse_drag(value) -> Drag | None:
    """The drag a user gave: ``None`` or empty (no drag), a :class:`Drag`, one vector (``"X0,Y0:X1,Y1"``, four
    numbers or two points, also as an array), a list of vectors (given on one frame), or a track file's path (alone,
    or as the only item of a list). ``ValueError`` in one line."""
    if value is None or isinstance(value, Drag):
        return value
    if isinstance(value, (np.ndarray, torch.Tensor)):  # (4,), (2, 2) one vector; (N, 4) several
        value = value.tolist()
    if isinstance(value, (list, tuple)) and value and all(_is_number(item) for item in value) and len(value) != 4:
        raise ValueError(f"drag as numbers is four, x0, y0, x1, y1 (from a pixel on the subject to where it goes), "
                         f"got {len(value)}: {list(value)!r}")
    if isinstance(value, (str, os.PathLike, DragVector)) or _one_vector_of_numbers(value):
        value = [value]
    items = list(value)
    if not items:
        return None
    if any(is_track_file(item) for item in items):
        if len(items) != 1:
            raise ValueError("drag: give either a track file or vectors X0,Y0:X1,Y1, not both")
        return read_track_file(items[0])
    return Drag((tuple(parse_vector(item) for item in items),))


def read_track_file(path) -> Drag:
    """Per-frame drag vectors from a file: JSON, a list with one entry per frame of the edited clip, each a list of
    vectors (``"X0,Y0:X1,Y1"`` or ``[x0, y0, x1, y1]``); or CSV, rows ``frame,x0,y0,x1,y1`` (a header row is
    allowed) with every frame from 0 on."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"drag track file not found: '{path}'")
    try:
        if path.suffix.lower() == ".json":
            entries = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(entries, list) or not all(isinstance(e, list) and e for e in entries) or not entries:
                raise ValueError("not a list with a non-empty list of vectors per frame")
            frames = [tuple(parse_vector(item) for item in entry) for entry in entries]
        else:
            frames = _csv_frames(path)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"drag track file '{path}': {error}") from None
    return Drag(tuple(frames), per_frame=True)


def _csv_frames(path: Path) -> list[tuple[DragVector, ...]]:
    by_frame: dict[int, list[DragVector]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle)):
            if not row or (number == 0 and not row[0].strip().lstrip("-").isdigit()):
                continue  # an empty line or the header
            if len(row) != 5 or not row[0].strip().isdigit():
                raise ValueError(f"row {number + 1} is not frame,x0,y0,x1,y1: {','.join(row)!r}")
            by_frame.setdefault(int(row[0]), []).append(parse_vector(row[1:]))
    if not by_frame:
        raise ValueError("no rows frame,x0,y0,x1,y1")
    missing = sorted(set(range(max(by_frame) + 1)) - set(by_frame))
    if missing:
        raise ValueError(f"frame {missing[0]} has no vector (give every frame from 0 on)")
    return [tuple(by_frame[index]) for index in range(len(by_frame))]


def check_drag(drag: Drag | None, num_frames: int, input_size: tuple[int, int], kept_size=None,
               cropped_at: str = "") -> Drag | None:
    """``drag`` as it is, or ``ValueError`` (one line) for a track with another frame count than the clip, a vector
    whose start or end lies outside the frame (``input_size`` = (H, W) of the source; a point counts as inside while
    it is on a pixel of the frame, i.e. within half a pixel of the centres of the outermost ones) or, with
    ``kept_size`` (the edit's (H, W), which the frames are scaled and centre-cropped to), in the part cropped away
    (``cropped_at`` says why, e.g. " at --size 64"), starts that determine no map, a map that scales past
    :data:`MAX_DRAG_SCALE` (the vectors alone say so: checked before any model runs), or a drag whose every vector
    ends where it starts."""
    if drag is None:
        return None
    if drag.per_frame and len(drag.vectors) != num_frames:
        raise ValueError(f"drag: the track has {len(drag.vectors)} frames but the clip has {num_frames}")
    height, width = input_size
    for vectors in drag.vectors:
        for vector in vectors:
            for name, x, y, _ in vector.points():
                if not on_frame(x, y, input_size):
                    raise ValueError(f"drag {vector}: its {name} {x:g},{y:g} is outside the frame "
                                     f"(columns 0 to {width - 1}, rows 0 to {height - 1})")
                if kept_size is not None and not on_frame(*fit_points((x, y), input_size, kept_size), kept_size):
                    raise ValueError(f"drag {vector}: its {name} {x:g},{y:g} is in the part of the video cropped "
                                     f"away{cropped_at} (the frames are cut to {kept_size[1]}x{kept_size[0]} about "
                                     "their centre): drag within the part that is kept")
    for frame, vectors in enumerate(drag.vectors):  # the map the vectors ask for: determined, and within scale
        where = f" on frame {frame}" if drag.per_frame else ""
        _within_scale(_fitted(_start_end(vectors), vectors, where), vectors, where)
    if all(vector.x0 == vector.x1 and vector.y0 == vector.y1 for vectors in drag.vectors for vector in vectors):
        shown = "the track" if drag.per_frame else _shown(drag.vectors[0])
        raise ValueError(f"drag {shown}: moves nothing (every start is its end), yet the subject's place and its "
                         "surroundings would be drawn again")
    return drag


def check_drag_arguments(drag, *, mask, erase: bool, mask_structure, drag_strength=None,
                         strength: float = 1.0) -> Drag | None:
    """The parsed drag (:func:`parse_drag`), after :func:`check_drag_settings` (a drag without a subject mask, with an
    erase, with a ``mask_structure``: a drag makes the structure inside the mask itself, started by ``strength``: it
    is ``drag_strength``; a ``drag_strength`` without a drag)."""
    parsed = parse_drag(drag)
    check_drag_settings(parsed is not None, mask_given=mask is not None, erase=erase, mask_structure=mask_structure,
                        drag_strength=drag_strength, strength=strength)
    return parsed


def check_drag_settings(given: bool, *, mask_given: bool, erase: bool, mask_structure, drag_strength=None,
                        strength: float | None = 1.0, label: Callable[[str], str] = str) -> None:
    """``ValueError`` for a drag (``given``) without a subject mask, with an erase or a ``mask_structure``, started
    by ``strength``, or a ``drag_strength`` without a drag. The messages name each setting as ``label(name)``: the
    pipeline's keywords by default, ``gen1 edit``'s flags with :func:`gen1.settings.flag_label`."""
    if not given:
        if drag_strength is not None:
            raise ValueError(f"{label('drag_strength')} is a drag's start: give {label('drag')}, or no "
                             f"{label('drag_strength')}")
        return
    if not mask_given:
        raise ValueError(f"{label('drag')} needs {label('mask')} (the subject to move)")
    if erase:
        raise ValueError(f"{label('drag')} moves the subject and {label('erase')} removes it: give one of them")
    if mask_structure is not None:
        raise ValueError(f"{label('drag')} makes the structure inside {label('mask')} itself: give no "
                         f"{label('mask_structure')}")
    if strength is not None and strength < 1.0:
        raise ValueError(f"{label('drag')} starts from the clip with the subject moved, at {label('drag_strength')}: "
                         f"leave {label('strength')} at 1 and give {label('drag_strength')}")


def drag_start(drag_strength: float | None) -> float:
    """The strength a drag starts at: ``drag_strength``, or :data:`DRAG_STRENGTH` when not given."""
    return DRAG_STRENGTH if drag_strength is None else float(drag_strength)


def fit_transform(starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """The affine map ``(2, 3)`` that takes ``starts`` ``(N, 2)`` to ``ends``: a translation for one vector, the
    similarity through both for two, the least-squares affine map for three or more."""
    starts, ends = starts.double(), ends.double()
    if starts.shape[0] == 1:
        return torch.cat([torch.eye(2, dtype=torch.float64), (ends - starts).T], dim=1)
    if starts.shape[0] == 2:
        z0, z1 = torch.complex(starts[:, 0], starts[:, 1]), torch.complex(ends[:, 0], ends[:, 1])
        if bool((z0[1] - z0[0]).abs() < 1e-9):
            raise ValueError("two drags start at the same point: give them different starts")
        a = (z1[1] - z1[0]) / (z0[1] - z0[0])  # turn and scale
        b = z1[0] - a * z0[0]
        return torch.tensor([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=torch.float64)
    design = torch.cat([starts, torch.ones(starts.shape[0], 1, dtype=torch.float64)], dim=1)
    if int(torch.linalg.matrix_rank(design)) < 3:
        raise ValueError("the starts of three or more drags lie on one line: an affine map is not determined")
    return torch.linalg.lstsq(design, ends).solution.T


def centroids(masks: torch.Tensor) -> torch.Tensor:
    """The centroid (x, y) of each frame's mask ``(F, 1, H, W)`` (> 0.5), ``(F, 2)`` float64."""
    binary = (masks[:, 0] > 0.5).double()
    rows, cols = torch.meshgrid(torch.arange(masks.shape[-2], dtype=torch.float64),
                                torch.arange(masks.shape[-1], dtype=torch.float64), indexing="ij")
    count = binary.sum(dim=(1, 2)).clamp_min(1)
    return torch.stack([(binary * cols).sum(dim=(1, 2)) / count, (binary * rows).sum(dim=(1, 2)) / count], dim=1)


def frame_transforms(drag: Drag, subject: torch.Tensor, input_size: tuple[int, int], drag_frame: int = 0
                     ) -> torch.Tensor:
    """One affine map per frame ``(F, 2, 3)`` at the size of ``subject`` ``(F, 1, H, W)`` (the subject's mask). A
    track gives each frame its own; vectors given on ``drag_frame`` act on every frame as on that one, about the
    subject's place in it: frame t's map is ``p -> A (p - d) + b + d`` with ``d`` the subject's centroid's offset
    from ``drag_frame`` (a translation stays the same vector). Also refuses a start that is not on the subject."""
    size = tuple(subject.shape[-2:])
    frames = range(subject.shape[0]) if drag.per_frame else [drag_frame]
    on_subject = grow((subject > 0.5).float(), erase_margin(size)) > 0.5  # a click on the outline counts
    maps = []
    for frame, vectors in zip(frames, drag.vectors, strict=True):
        points = _start_end(vectors)
        points = torch.from_numpy(fit_points(points.numpy(), input_size, size))
        for vector, (x, y) in zip(vectors, points[:, 0].tolist(), strict=True):
            column, row = min(max(round(x), 0), size[1] - 1), min(max(round(y), 0), size[0] - 1)
            if not bool(on_subject[frame, 0, row, column]):
                where = f" on frame {frame}" if drag.per_frame or subject.shape[0] > 1 else ""
                start = vector.points()[0][3]
                raise ValueError(f"drag {vector}: its start {start} is not on the subject{where} (the mask)")
        maps.append(_fitted(points, vectors, f" on frame {frame}" if drag.per_frame else ""))
    if drag.per_frame:
        return torch.stack(maps)
    linear, shift = maps[0][:, :2], maps[0][:, 2]
    offsets = centroids(subject) - centroids(subject[drag_frame:drag_frame + 1])  # (F, 2)
    shifts = shift + offsets - offsets @ linear.T
    return torch.cat([linear.expand(subject.shape[0], 2, 2), shifts[:, :, None]], dim=2)


def _shown(vectors) -> str:
    """The vectors of one frame as messages name them (as the user gave them)."""
    return " ".join(str(vector) for vector in vectors)


def _start_end(vectors) -> torch.Tensor:
    """The ``vectors`` of one frame as ``(N, 2, 2)`` float64: each one's start and end, (x, y)."""
    return torch.tensor([[v.x0, v.y0, v.x1, v.y1] for v in vectors], dtype=torch.float64).reshape(-1, 2, 2)


def _fitted(points: torch.Tensor, vectors, where: str = "") -> torch.Tensor:
    """:func:`fit_transform` of ``points`` ``(N, 2, 2)`` (start, end), its refusal named with the ``vectors``."""
    try:
        return fit_transform(points[:, 0], points[:, 1])
    except ValueError as error:  # the starts do not determine a map
        raise ValueError(f"drag {_shown(vectors)}{where}: {error}") from None


def _within_scale(transform: torch.Tensor, vectors, where: str = "") -> torch.Tensor:
    """``transform`` (2, 3) as it is, or ``ValueError`` naming ``vectors`` when it stretches or shrinks the subject
    past :data:`MAX_DRAG_SCALE` along some direction."""
    stretch = torch.linalg.svdvals(transform[:, :2])
    largest, smallest = float(stretch[0]), float(stretch[-1])
    if largest > MAX_DRAG_SCALE or smallest < 1.0 / MAX_DRAG_SCALE:
        shown = _shown(vectors)
        factor = f"{largest:.3g}x" if largest > MAX_DRAG_SCALE else f"{smallest:.3g}x"
        raise ValueError(f"drag {shown}{where}: scales the subject by {factor} along one direction; a drag moves, "
                         f"turns and scales it by at most {MAX_DRAG_SCALE:g}x or 1/{MAX_DRAG_SCALE:g} (the ends "
                         "relative to each other as the starts are, give or take that)")
    return transform


@dataclass
class DragLayers:
    """What a drag makes, all ``(F, 1, H, W)`` at the output size: ``depth``, the structure it is guided by;
    ``union``, the old and new places (grown; 0/1), outside which the source is kept; ``region``, what is edited
    (``union``, less the moved subject where its pixels are kept: :data:`KEEP_SUBJECT`); ``moved``, where the moved
    subject is visible; ``subject``, where it was; ``old_place``, that grown as an erase grows its region (0/1);
    ``background``, the scene's depth without the subject; ``transforms`` ``(F, 2, 3)``, the map of each frame."""

    depth: torch.Tensor
    union: torch.Tensor
    region: torch.Tensor
    moved: torch.Tensor
    subject: torch.Tensor
    old_place: torch.Tensor
    background: torch.Tensor
    transforms: torch.Tensor


def drag_layers(depth: torch.Tensor, subject: torch.Tensor, drag: Drag, input_size: tuple[int, int], *,
                drag_frame: int = 0, tolerance: float | None = None, keep_subject: bool | None = None
                ) -> DragLayers:
    """The structure and region of a drag (see the module docstring): ``depth`` the unobscured depth ``(F, 1, H, W)``
    and ``subject`` the subject's mask on every frame (same shape, as :func:`gen1.masked_edits.edit_region` gives
    it), ``drag`` in the source's pixel coordinates at ``input_size`` (H, W), given on ``drag_frame``;
    ``tolerance`` and ``keep_subject``: default :data:`OCCLUSION_TOLERANCE` and :data:`KEEP_SUBJECT`."""
    subject = (subject > 0.5).float()
    margin = erase_margin(tuple(depth.shape[-2:]))
    old = grow(subject, margin)
    check_fill_mask(old, "the subject's mask (tracked and grown)")
    transforms = frame_transforms(drag, subject, input_size, drag_frame)
    background = structure_depth(depth.float(), old, "fill")  # the old place filled as an erase fills it
    layer, landed = warp_layer(depth.float(), subject, transforms)
    tolerance = OCCLUSION_TOLERANCE if tolerance is None else tolerance
    guided, moved = composite_nearer(background, layer, landed, tolerance)
    warn_if_hidden(moved, landed, tolerance)
    union = ((old + grow(moved, margin)) > 0).float()
    keep = KEEP_SUBJECT if keep_subject is None else keep_subject
    region = union * (1 - moved) if keep else union
    return DragLayers(depth=guided, union=union, region=region, moved=moved, subject=subject, old_place=old,
                      background=background, transforms=transforms)


#: The share of the moved subject that may be hidden behind nearer things before a drag says so.
HIDDEN_WARNING = 0.25


def warn_if_hidden(moved: torch.Tensor, landed: torch.Tensor, tolerance: float = OCCLUSION_TOLERANCE) -> None:
    """A warning when the z-test hides more than :data:`HIDDEN_WARNING` of the moved subject where it lands: the
    depth estimate there is nearer than the subject (a wall, a bush), so that part of the subject is not drawn, and
    the user would otherwise find it missing from the output without a word."""
    import warnings  # lazy: only this check warns

    landed_pixels = float((landed > 0.5).sum())
    hidden = 1.0 - float((moved > 0.5).sum()) / landed_pixels if landed_pixels else 0.0
    if hidden > HIDDEN_WARNING:
        warnings.warn(f"the moved subject is hidden behind nearer things on {hidden:.0%} of its pixels (the depth "
                      f"there is nearer than the subject's by more than {tolerance:g}): those parts are not "
                      "drawn; drag it less far, or give your own structure (--depth; depth= in Python)", UserWarning,
                      stacklevel=2)


def moved_frames(frames: torch.Tensor, layers: DragLayers, erase_fill: str | None = None) -> torch.Tensor:
    """``frames`` ``(F, 3, H, W)`` moved as the drag moves the depth: the subject's old place (grown) filled as an
    erase's region is, per ``erase_fill`` (:func:`gen1.masked_edits.hidden_background`: what other frames see copied
    from them, the rest from the boundary; :func:`gen1.masked_edits.prefilled`), and the subject's pixels where it
    is visible at its new place; outside ``layers.union`` the frames exactly. The source of the edit: what sampling
    starts from at a ``strength`` below 1, and what is kept outside ``layers.region``."""
    frames = frames.float()
    filled = prefilled(frames, layers.old_place, hidden_background(frames, layers.old_place, erase_fill))
    colours, _ = warp_layer(frames, layers.subject, layers.transforms)
    return torch.where(layers.moved > 0.5, colours, filled)


def drag_content(route, content, frames: torch.Tensor, layers: DragLayers, *, generator, device):
    """The content of a drag: the prompt / reference / embedding / direction / Imagic mix the user gives (the route's
    :meth:`~gen1.routes.Route.edit_content`), else the source's own: where the subject's pixels are kept (``layers``'
    region leaves them out) what the model draws is its old place and surroundings, so an erase's content (the
    source without the subject, :meth:`~gen1.routes.Route.source_content`); where the model draws the subject too,
    the source's own with it (:meth:`~gen1.routes.Route.own_content`)."""
    given = (content.prompts or content.images or content.content_embeds is not None or content.direction
             or content.imagic_scale is not None)
    if given:
        return route.edit_content(content, frames, generator=generator, device=device)
    if bool((layers.region < layers.union).any()):  # the subject's pixels are kept
        return route.source_content(frames, layers.old_place, content, generator=generator, device=device)
    return route.own_content(frames, content, generator=generator, device=device)


def scale_drag(drag: Drag | None, from_size: tuple[int, int], to_size: tuple[int, int]) -> Drag | None:
    """``drag`` given in pixels of a video of ``from_size`` (H, W) in pixels of the same video resized to ``to_size``
    by gen1's resize policy (how ``gen1 edit`` reads the source at ``--size`` before the pipeline sees it)."""
    if drag is None or tuple(from_size) == tuple(to_size):
        return drag
    frames = []
    for vectors in drag.vectors:
        points = _start_end(vectors)
        moved = fit_points(points.numpy(), from_size, to_size).reshape(-1, 4).tolist()
        frames.append(tuple(DragVector(*row, given=str(vector)) for row, vector in zip(moved, vectors, strict=True)))
    return Drag(tuple(frames), per_frame=drag.per_frame)


__all__ = ["DRAG_STRENGTH", "KEEP_SUBJECT", "OCCLUSION_TOLERANCE", "TRACK_SUFFIXES", "Drag", "DragLayers", "DragVector",
           "check_drag", "check_drag_arguments", "drag_content", "drag_layers", "drag_start", "fit_transform",
           "frame_transforms", "is_track_file", "moved_frames", "on_frame", "parse_drag", "parse_vector",
           "read_track_file", "scale_drag"]
