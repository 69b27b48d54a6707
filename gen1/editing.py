"""One video edit, the way ``gen1 edit`` and ``gen1 serve`` both run it.

An :class:`EditRequest` holds everything an edit needs besides the model: the files (source, mask, your own
depth, reference images, outputs) and the settings declared once in :mod:`gen1.settings`, under the names
``Gen1Pipeline.__call__`` takes; ``gen1 edit``'s flags are made from the same declaration, so a setting means the
same thing on the command line, in the web app and in Python::

    request = EditRequest(input="in.mp4", output="out.mp4", prompt=("red striped objects",), structure_level=3)
    check_request(request)                     # ValueError naming the gen1 edit flag, before any heavy work
    request = with_pipeline_defaults(request, pipe)   # unset size / guidance: the model's own
    inputs = read_inputs(request)              # decode the clip, the mask and your own depth
    result = run_edit(pipe, request, inputs, progress=lambda done, total: ..., cancel=stop.is_set)
    edit_command(request)                      # "gen1 edit in.mp4 -o out.mp4 --prompt '...' --structure-level 3"

:func:`run_edit` reports progress as denoising steps across temporal windows (the pipeline's own progress-bar
total: steps x windows) and stops with :class:`EditCancelled` as soon as ``cancel()`` turns true; outputs are
written only after the whole edit succeeded, atomically (:mod:`gen1.atomic`), so a cancelled or failed edit
writes nothing.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from gen1.checks import errors_naming
from gen1.model_defaults import edit_size
from gen1.settings import (FLAGS, EditSettings, check_content_sources, check_directions, check_settings, flag_label,
                           setting_fields)

Progress = Callable[[int, int], None]
"""``progress(done, total)``: denoising steps done so far across all temporal windows, of ``total``."""


@dataclass(frozen=True, kw_only=True)
class EditRequest(EditSettings):
    """What to edit and how: the files (source, outputs) and every setting of :class:`gen1.settings.EditSettings`,
    named as ``Gen1Pipeline.__call__`` names them and defaulted as ``gen1 edit`` defaults them.

    ``prompt`` and ``reference_image`` hold one entry per ``--prompt`` / ``--reference`` (image paths);
    ``content_weights`` one weight per prompt, then per reference (``None``: equal); ``mask`` / ``depth`` are
    paths. ``compare`` is the optional source | depth | output file.
    """

    input: str
    output: str
    compare: str | None = None

    def __post_init__(self):  # lists from argparse or JSON become tuples, so that requests compare and hash
        for name in ("prompt", "reference_image"):
            object.__setattr__(self, name, tuple(str(value) for value in getattr(self, name)))
        if self.content_weights is not None:
            object.__setattr__(self, "content_weights", tuple(float(w) for w in self.content_weights))
        # a direction's texts without surrounding spaces, which the content encoder's tokenizer drops anyway: so
        # edit_command can write a text starting with '-' as ' -red' (argparse takes it for a value) and the
        # command parses back to this request
        object.__setattr__(self, "direction", tuple(
            tuple(text.strip() if isinstance(text, str) else text for text in pair)
            if isinstance(pair, (list, tuple)) else pair for pair in self.direction))
        object.__setattr__(self, "direction_scale", tuple(self.direction_scale))
        object.__setattr__(self, "mask_clicks", tuple(tuple(click) for click in self.mask_clicks))
        object.__setattr__(self, "drag", tuple(str(value) for value in self.drag))
        for name in ("input", "output", "mask", "depth", "compare"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value))

    @property
    def clip_args(self) -> dict:
        """Which frames of the source are edited (``gen1.media.read_video``'s selection arguments)."""
        return dict(target_fps=self.fps, start=self.start, duration=self.duration, max_frames=self.max_frames)

    def settings(self, stage: str) -> dict:
        """The settings of one ``stage`` (``"edit"``: ``Gen1Pipeline.__call__``'s arguments; ``"read"``; ``"seed"``)."""
        return {item.name: getattr(self, item.name) for item in setting_fields() if item.metadata["stage"] == stage}


#: The ``gen1 edit`` command line's words for each field of a request, in the order :func:`edit_command` writes
#: them (INPUT is positional).
COMMAND_FLAGS = {"output": "-o", **FLAGS, "compare": "--compare"}
#: Each field's default (the files have none).
DEFAULTS = {item.name: item.default for item in setting_fields()}


def request_from_args(args) -> EditRequest:
    """The request that parsed ``gen1 edit`` arguments describe (model and device flags are not part of it)."""
    return EditRequest(**{item.name: getattr(args, item.name) for item in fields(EditRequest)})


# ----------------------------------------------------------------------------------------------- checks
def check_request(request: EditRequest) -> None:
    """Check the content and every setting's range (:func:`gen1.settings.check_settings`); ``ValueError`` naming
    the ``gen1 edit`` flag. Files are the caller's to check."""
    _check_content(request)
    check_settings({item.name: getattr(request, item.name) for item in setting_fields()}, flag_label)


def _check_content(request: EditRequest) -> None:
    from gen1.drag import check_drag_settings  # lazy: keeps this module's import light (no torch)
    from gen1.masked_edits import check_mask_arguments

    # the pipeline's own checks of the masked modes, naming the flags
    check_drag_settings(bool(request.drag), mask_given=request.mask is not None, erase=request.erase,
                        mask_structure=request.mask_structure, drag_strength=request.drag_strength,
                        strength=request.strength, label=flag_label)
    check_mask_arguments(request.mask, mask_frame=request.mask_frame, erase=request.erase,
                         mask_structure=request.mask_structure, mask_structure_level=request.mask_structure_level,
                         clicks=request.mask_clicks, erase_strength=request.erase_strength, strength=request.strength,
                         erase_fill=request.erase_fill, drag=bool(request.drag), tracker=request.mask_tracker,
                         label=flag_label)
    if request.drag:
        _check_drag_vectors(request)
    if request.depth_invert and request.depth is None:  # it was taken and ignored
        raise ValueError(f"{flag_label('depth_invert')} needs a depth: give {flag_label('depth')} (the distance map "
                         "it reads as depth)")
    check_content_sources(dict(erase=request.erase, imagic_scale=request.imagic_scale, prompt=request.prompt,
                               reference_image=request.reference_image, direction=request.direction), flag_label)
    if request.direction or request.direction_scale:  # a scale without a direction is named as such, not as no content
        check_directions(request.direction, request.direction_scale, flag_label)
    if request.erase or request.imagic_scale is not None:  # the source's own content, or the Imagic adapter's
        return
    if not request.prompt and not request.reference_image and not request.direction and not request.drag:
        raise ValueError("give --prompt and/or --reference (or --direction, or --imagic-scale with an Imagic "
                         "--adapter) for the content of the edit")
    if any(not prompt.strip() for prompt in request.prompt):
        raise ValueError("--prompt must not be empty")
    if request.content_weights is not None:
        count = len(request.prompt) + len(request.reference_image)
        if len(request.content_weights) != count:
            raise ValueError(f"--content-weights needs one weight per --prompt and --reference ({count}), "
                             f"got {len(request.content_weights)}")
        check_settings({"content_weights": request.content_weights}, flag_label)
        if not any(weight > 0 for weight in request.content_weights):
            raise ValueError("--content-weights must not all be 0")


def _check_drag_vectors(request: EditRequest) -> None:
    """--drag's vectors well-formed (a track file is read with the inputs)."""
    from gen1.drag import is_track_file, parse_drag  # lazy: keeps this module's import light (no torch)

    if any(is_track_file(value) for value in request.drag):
        if len(request.drag) != 1:
            raise ValueError("--drag: give either one track file or vectors X0,Y0:X1,Y1, not both")
        return
    try:
        parse_drag(request.drag)
    except ValueError as error:
        raise ValueError(_flags_named(str(error))) from None


def _flags_named(text: str) -> str:
    """A message of the pipeline or of :mod:`gen1.drag` as ``gen1 edit`` names its settings: a leading "drag" as
    "--drag", and every setting whose Python name has an underscore (``mask_frame``) by its flag (``--mask-frame``).
    Left as they are: single words such as "mask" (also plain words of a message), quoted text (a file name),
    ``name=value`` (a model's own setting, such as the UNet's max_frames=16) and settings whose flag is a negation
    (``depth_cache``: ``--no-cache``)."""
    text = f"--{text}" if re.match(r"drag\b", text) else text
    names = "|".join(sorted((name for name, flag in FLAGS.items() if "_" in name and not flag.startswith("--no-")),
                            key=len, reverse=True))
    parts = re.split(r"('[^']*')", text)  # quoted parts at odd places
    return "".join(part if index % 2 else re.sub(rf"(?<![\w-])({names})(?![\w=-])",
                                                 lambda match: FLAGS[match.group(1)], part)
                   for index, part in enumerate(parts))


def with_model_defaults(request: EditRequest, defaults, source_short_side: int | None = None
                        ) -> tuple[EditRequest, list[str]]:
    """``request`` with an unset ``size``, ``guidance_scale`` and ``num_inference_steps`` taken from a model's
    :class:`gen1.model_defaults.ModelDefaults` (:func:`gen1.model_defaults.edit_size` of the source's short side, as
    the pipeline chooses it, w = 7.5 and 30 steps when the model records none), and the flags so chosen, as
    ``gen1 edit`` reports them (``["--size 64 (the model's trained size)", ...]``)."""
    chosen, changes = [], {}
    if request.size is None:
        changes["size"] = edit_size(defaults.trained_size, source_short_side)
        chosen.append(f"--size {changes['size']}" + (" (the model's trained size)" if defaults.trained_size else ""))
    if request.guidance_scale is None:
        changes["guidance_scale"] = defaults.guidance_or()
        chosen.append(f"--guidance {changes['guidance_scale']:g}"
                      + (" (the model's)" if defaults.guidance_scale is not None else ""))
    if request.num_inference_steps is None:
        changes["num_inference_steps"] = defaults.steps_or()
        chosen.append(f"--steps {changes['num_inference_steps']}"
                      + (" (the model's)" if defaults.num_inference_steps is not None else ""))
    return replace(request, **changes), chosen


def with_pipeline_defaults(request: EditRequest, pipe) -> EditRequest:
    """``request`` with an unset ``size`` and ``guidance_scale`` taken from what ``pipe``'s model records
    (:func:`with_model_defaults`; the source's size probed when the model records none)."""
    short_side = None if request.size is not None or pipe.config.trained_size else source_short_side(request.input)
    return with_model_defaults(request, pipe.recorded_defaults, short_side)[0]


def source_short_side(path: str) -> int | None:
    """The source video's short side in pixels (read from its header), or None if it cannot be probed."""
    from gen1.media import frame_size  # lazy: keeps this module's import light (no torch when it loads)

    try:
        return min(frame_size(path)) or None
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class ClipLimits:
    """The most one edit may take (a server's bounds): frames and seconds of the selected part of the source."""

    max_frames: int
    max_seconds: float | None = None
    max_image_pixels: int | None = None  # the largest mask or depth image (or .npy frame) read; None: gen1.media's


class ClipTooLong(ValueError):
    """The selected part of the source is over a :class:`ClipLimits`."""


@dataclass
class EditInputs:
    """The decoded inputs of an edit: the source clip, the mask ``(F|1, 1, H, W)`` and your own depth, if any."""

    clip: Any  # gen1.media.VideoClip
    mask: Any = None
    depth: Any = None
    clicks: tuple = ()  # --mask-click in pixels of the clip as read
    drag: Any = None  # a gen1.drag.Drag in the clip's pixels (the request's are the source file's)


def read_inputs(request: EditRequest, *, limits: ClipLimits | None = None) -> EditInputs:
    """Decode the source, the mask and your own depth at ``request.size`` with the request's frame selection.

    With ``limits``, no more than ``limits.max_frames + 1`` frames are decoded from any file (memory stays
    bounded whatever is uploaded), a longer selection is a :class:`ClipTooLong`, and a mask or depth image over
    ``limits.max_image_pixels`` is refused on its header, before it is decoded.
    """
    if request.size is None:
        raise ValueError("the request has no size: give one, or take the model's with "
                         "with_pipeline_defaults(request, pipe) before reading the inputs")
    clip_args = request.clip_args
    if limits is not None:
        clip_args["max_frames"] = min(request.max_frames or math.inf, limits.max_frames + 1)
    max_pixels = None if limits is None else limits.max_image_pixels
    _check_references(request.reference_image, max_pixels)  # before the source is decoded: a typo costs nothing
    clip = _read_source(request, clip_args)
    if limits is not None:
        _check_limits(clip, limits)
    mask = None if request.mask is None else _mask_for(request.mask, clip_args, request.size, clip, max_pixels)
    depth = None if request.depth is None else _user_depth(request, clip_args, clip, max_pixels)
    clicks = _clicks_for(request, clip) if request.mask_clicks else ()
    drag = _drag_for(request, clip) if request.drag else None
    return EditInputs(clip=clip, mask=mask, depth=depth, clicks=clicks, drag=drag)


def _check_references(paths, max_pixels: int | None = None) -> None:
    """Each ``--reference`` an image whose header reads, before the model loads (the pipeline decodes it later):
    a wrong file is one line naming the flag, and a video given as a reference says so."""
    from gen1.media import VIDEO_SUFFIXES  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.media.images import open_image  # lazy: keeps this module's import light (no torch when it loads)

    for path in paths:
        try:
            with errors_naming("--reference"), open_image(path, "reference image", max_pixels=max_pixels):
                pass
        except ValueError:
            if Path(path).suffix.lower() in VIDEO_SUFFIXES:  # a GIF opens as an image (its first frame): not here
                raise ValueError(f"--reference: '{path}' is a video; a reference is an image (save one frame of it "
                                 "as a PNG)") from None
            raise


def _clicks_for(request: EditRequest, clip) -> tuple:
    """``--mask-click`` in pixels of the source video's frames, checked against them, brought to the clip as read
    (at ``--size``, :func:`gen1.tracking.fit_clicks`: the clip's covering scale and centred crop, as a drag's
    vectors are); one in the part that ``--size`` crops away is refused here, in the user's numbers, as a
    ``--drag`` there is, not later in the clip's pixels."""
    from gen1.media import frame_size  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.tracking import check_clicks, fit_clicks  # lazy: keeps this module's import light (no torch)

    height, width = frame_size(request.input)
    mask_frame = 0 if request.mask_frame is None else request.mask_frame
    try:
        points = check_clicks(request.mask_clicks, mask_frame, clip.num_frames, (height, width))
    except ValueError as error:
        raise ValueError(f"--mask-click: {error}") from None
    return tuple(fit_clicks(points, (height, width), (clip.height, clip.width), label="--mask-click",
                            cropped_at=f" at --size {request.size}"))


def _drag_for(request: EditRequest, clip):
    """--drag read (a track file too), checked against the source file's frame size and the clip's frame count, and
    brought to the pixels of the clip as read at --size (:func:`gen1.drag.scale_drag`)."""
    from gen1.drag import check_drag, parse_drag, scale_drag  # lazy: keeps this module's import light
    from gen1.media import frame_size  # lazy: keeps this module's import light (no torch when it loads)

    try:
        drag = parse_drag(request.drag)
        source_size = frame_size(request.input)
        check_drag(drag, clip.num_frames, source_size, (clip.height, clip.width), f" at --size {request.size}")
    except ValueError as error:
        raise ValueError(_flags_named(str(error))) from None
    return scale_drag(drag, source_size, (clip.height, clip.width))


def _check_limits(clip, limits: ClipLimits) -> None:
    advice = "choose a shorter part (start, duration, max frames)"
    if clip.num_frames > limits.max_frames:
        raise ClipTooLong(f"the selected part of the video has more than {limits.max_frames} frames, the most this "
                          f"server edits at once: {advice}")
    if limits.max_seconds is not None and clip.duration > limits.max_seconds + 1e-6:
        raise ClipTooLong(f"the selected part of the video lasts {clip.duration:.1f} s; this server edits at most "
                          f"{limits.max_seconds:g} s at once: {advice}")


def _read_media(path: str, clip_args: dict, size: int, clip, max_pixels: int | None = None, mask: bool = True):
    """uint8 frames (F, H, W, 3) from a mask image (one frame, at most ``max_pixels``; one with transparency is
    read as its alpha: :func:`gen1.media.images.alpha_mask`), an image folder, or a video
    sampled at the times of the clip's frames (:func:`gen1.media.read_video_at`): frame ``i`` is what the video
    shows when ``clip``'s frame ``i`` is shown, whatever its frame rate (the docs: 'read on the source's
    timeline'; a one-frame video is one mask for every frame, as an image is; a mask video's transparent frames are
    read as their alpha too); and the video's frame rate (None for images). A video that ends early gives fewer
    frames (:func:`_check_covers` refuses them). ``mask=False``: a depth video, read by its colours."""
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.media import frame_times, is_image_path, read_frames_or_images, read_video_at

    if Path(path).is_dir() or is_image_path(path) or not Path(path).exists():
        return read_frames_or_images(path, size=size, max_pixels=max_pixels, mask=True, **clip_args), None
    own = frame_times(path)  # its frames' times, demuxed, not decoded
    if len(own) == 1:  # a still saved as a GIF: one for every frame
        return read_video_at(path, own, size=size, alpha=mask)[0], None
    return read_video_at(path, _frame_for_frame(own, clip), size=size, alpha=mask)


def _frame_for_frame(own, clip):
    """The times of ``clip``'s frames on the timeline of a mask or depth video whose frames are at ``own`` times: the
    same times, unless the video has exactly as many frames as the clip's whole video. Then it is taken frame for
    frame (made for this clip: a depth tool's output written at its own fixed rate, which matched frame by frame
    before masks and depth were read by time): edited frame ``i``, frame ``k`` of its video, takes the video's frame
    ``k``, whatever the rates and however unevenly either spaces its frames (packet timestamps)."""
    import numpy as np  # lazy: keeps this module's import light

    from gen1.media import frame_times  # lazy: keeps this module's import light (no torch when it loads)

    source = frame_times(clip.path)
    if len(own) == 0 or len(own) != len(source):
        return clip.times
    index = np.clip(np.searchsorted(source, np.asarray(clip.times) - 1e-4), 0, len(source) - 1)
    return own[index]


def _check_covers(flag: str, frames, fps, clip) -> None:
    """Refuse a mask or depth video that ends before the edited part: '``flag`` has N frames but the video has M'
    (N: its frames at the edited frames' times), naming both frame rates when they differ."""
    if fps is None or len(frames) >= clip.num_frames:
        return
    rates = "" if abs(float(fps) - float(clip.fps)) < 1e-3 else (
        f" ({flag} is {float(fps):g} fps and the edited frames {float(clip.fps):g} fps: it is read at their times, "
        f"and ends after {len(frames)} of them)")
    raise ValueError(f"{flag} has {len(frames)} frames but the video has {clip.num_frames}{rates}: give one image, "
                     f"or a video that lasts the edited part ({clip.duration:.2f} s from {clip.start:.2f} s)")


def _read_source(request: EditRequest, clip_args: dict):
    from gen1.media import read_video  # lazy: keeps this module's import light (no torch when it loads)

    with errors_naming("INPUT"):
        return read_video(request.input, size=request.size, **clip_args)


def _mask_for(path: str, clip_args: dict, size: int, clip, max_pixels: int | None = None):
    """The mask at the clip's frame size (same resize policy as the video), as float (F|1, 1, H, W)."""
    import torch  # lazy: torch is heavy and only this path needs it

    from gen1.masking import mask_at_size, mask_to_tensor  # lazy: keeps this module's import light
    from gen1.media import fit_tensor  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.media.resize import edited_frames_shape  # lazy: keeps this module's import light

    with errors_naming("--mask"):
        if Path(path).suffix.lower() == ".npy":
            mask, stored = _mask_array(path, size, max_pixels)
        else:
            frames, fps = _read_media(path, clip_args, size, clip, max_pixels)
            stored = None  # an image or a video: its size is read from the file if a message needs it
    if stored is None:
        _check_covers("--mask", frames, fps, clip)
        mask = torch.as_tensor(mask_to_tensor(frames))
    if stored is not None and mask.shape[0] not in (1, clip.num_frames):  # an array has no timing
        raise ValueError(f"--mask has {mask.shape[0]} frames but the edited clip has {clip.num_frames} (give one "
                         "mask or one per edited frame)")
    if tuple(mask.shape[-2:]) != (clip.height, clip.width):  # resized alike, so another aspect ratio ...
        (mask_height, mask_width), (height, width) = stored or _media_size(path), _media_size(clip.path)
        if not edited_frames_shape((height, width), (mask_height, mask_width)):
            raise ValueError(f"--mask is {mask_width}x{mask_height} but the video is {width}x{height}: a mask has the "
                             "video's size (or another size of the same shape)")
        # ... or the shape of the frames an edit reads at some --size (the web app's mask.png): put back where
        # those frames lie in the video, then read as the video is
        with errors_naming("--mask"):
            native = _mask_array(path, None, max_pixels)[0] if stored else torch.as_tensor(
                mask_to_tensor(_read_media(path, clip_args, None, clip, max_pixels)[0]))
        mask = fit_tensor(mask_at_size(native, (height, width)), (clip.height, clip.width)).clamp(0, 1)
    binary = mask > 0.5
    if not bool(binary.any()):
        raise ValueError(f"--mask has no white pixel at the edit's size ({clip.width}x{clip.height}, --size {size}; "
                         "white: above half grey): paint the region to edit white (a region of a few source pixels "
                         "vanishes when the mask is brought to that size: paint a larger one, or edit at a larger "
                         "--size)")
    if bool(binary.all()):
        raise ValueError("--mask is white everywhere: it would edit every pixel of every frame (an edit without "
                         "--mask does that); paint only the region to edit white")
    return mask


def _mask_array(path: str, size: int | None, max_pixels: int | None = None):
    """A ``.npy`` mask (:func:`gen1.masking.read_mask_array`) as float (F|1, 1, H, W), brought to ``size`` by the
    video's resize policy (as an image mask is), and its stored (height, width)."""
    from gen1.masking import mask_to_tensor, read_mask_array  # lazy: keeps this module's import light (no torch)
    from gen1.media import fit_tensor, resized_shape  # lazy: keeps this module's import light (no torch)

    mask = mask_to_tensor(read_mask_array(path, max_pixels))
    stored = tuple(mask.shape[-2:])
    return (mask if size is None else fit_tensor(mask, resized_shape(*stored, size))), stored


def _media_size(path) -> tuple[int, int]:
    """(height, width) of an image or of a video's frames as they are read (upright: EXIF orientation, a video's
    display rotation)."""
    from gen1.media import frame_size, is_image_path  # lazy: keeps this module's import light (no torch when it loads)

    if is_image_path(path):
        from PIL import ImageOps  # lazy: only a message needs it

        from gen1.media.images import open_image  # lazy: only a message needs it

        with open_image(path) as image:
            upright = ImageOps.exif_transpose(image)  # as the mask is read (gen1.media.images.read_image)
            return upright.height, upright.width
    return frame_size(path)


def _user_depth(request: EditRequest, clip_args: dict, clip, max_pixels: int | None = None):
    """--depth as normalised inverse depth (F|1, 1, H, W) at the clip's frame size.

    A depth video is read at the clip's frames' times (video codecs hold 8 bits anyway); images, ``.npy`` arrays and
    image folders are read at full precision (16-bit PNG/TIFF) and scaled and centre-cropped like the video.
    """
    from gen1.depth import load_structure  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.depth.structure import check_depth_shape  # lazy: keeps this module's import light
    from gen1.media import VIDEO_SUFFIXES  # lazy: keeps this module's import light (no torch when it loads)

    video_size = _media_size(clip.path)
    if Path(request.depth).suffix.lower() in VIDEO_SUFFIXES:
        with errors_naming("--depth"):
            check_depth_shape(_media_size(request.depth), video_size, frames_size=(clip.height, clip.width))
            frames, fps = _read_media(request.depth, clip_args, request.size, clip, mask=False)
        _check_covers("--depth", frames, fps, clip)  # outside errors_naming: its message names --depth
        depth = load_structure(frames, invert=request.depth_invert)
    else:
        with errors_naming("--depth"):
            depth = load_structure(request.depth, size=(clip.height, clip.width), crop=True,
                                   invert=request.depth_invert, max_pixels=max_pixels, video_size=video_size)
    if depth.shape[0] not in (1, clip.num_frames):
        raise ValueError(f"--depth has {depth.shape[0]} frames but the edited clip has {clip.num_frames} "
                         f"(give one depth map or one per edited frame)")
    return depth


# ----------------------------------------------------------------------------------------------- the edit
class EditCancelled(Exception):
    """The edit was cancelled (``cancel()`` turned true); nothing was written."""


@dataclass
class EditResult:
    """What :func:`run_edit` wrote, and the frames it wrote (float ``(F, 3, H, W)`` in [0, 1])."""

    output: Path
    compare: Path | None
    frames: Any
    depth: Any
    fps: Any
    has_audio: bool

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def run_edit(pipe, request: EditRequest, inputs: EditInputs | None = None, *, progress: Progress | None = None,
             cancel: Callable[[], bool] | None = None) -> EditResult:
    """Edit ``request.input`` with ``pipe`` (a :class:`gen1.pipeline.Gen1Pipeline`, already on its device and
    dtype) and write ``request.output`` with the source's audio (and ``request.compare``).

    ``inputs`` are the decoded inputs (:func:`read_inputs`; read here when omitted). ``progress(done, total)``
    is called as denoising steps finish in each temporal window; ``cancel()`` is polled at the same moments and
    before writing: when it returns true the edit stops with :class:`EditCancelled` and writes nothing. Both reach
    the pipeline as arguments of this call only (its scheduler too), so the pipeline itself is never changed.
    """
    import torch  # lazy: torch is heavy and only this path needs it

    from gen1.media import write_video  # lazy: keeps this module's import light (no torch when it loads)

    request = with_pipeline_defaults(request, pipe)
    inputs = read_inputs(request) if inputs is None else inputs
    clip = inputs.clip
    generator = torch.Generator(device="cpu").manual_seed(request.seed)
    settings = request.settings("edit")
    settings.update(prompt=list(request.prompt) or None, reference_image=list(request.reference_image) or None,
                    content_weights=None if request.content_weights is None else list(request.content_weights),
                    depth=inputs.depth, mask=inputs.mask, size=None, mask_clicks=inputs.clicks)
    if request.drag:  # in the clip's pixels (read_inputs)
        settings.update(drag=inputs.drag if inputs.drag is not None else _drag_for(request, clip))
    try:
        result = pipe(
            clip.frames,
            **settings,
            height=clip.height,  # the clip as read (at request.size), not resized again to the model's size
            width=clip.width,
            generator=generator,
            output_type="pt",
            progress_callback=_reporter(progress, cancel),
        )
    except ValueError as error:  # the pipeline names settings as Python does; a request names them by flag
        raise ValueError(_flags_named(str(error))) from None
    if cancel is not None and cancel():
        raise EditCancelled("the edit was cancelled")
    audio = clip if clip.has_audio else None
    compare = None
    if request.compare is None:
        output = write_video(request.output, result.frames, clip.fps, audio_from=audio)
    else:
        from gen1.atomic import atomic_path  # lazy: keeps this module's import light (no torch when it loads)
        from gen1.comparison import write_comparison  # lazy: keeps this module's import light (no torch when it loads)

        # both outputs or neither: the edit is staged beside its target and renamed into place only once the
        # comparison is written (a full disk while writing the comparison leaves no new output and keeps an old one)
        with atomic_path(request.output) as staged:
            write_video(staged, result.frames, clip.fps, audio_from=audio)
            inside = request.mask_structure_level
            level = f"t_s = {request.structure_level:g}" + (
                f", {inside:g} in the mask" if inside is not None and inside != request.structure_level else "")
            labels = ("source", f"structure ({level})", "output")
            compare = Path(write_comparison(request.compare, clip.frames, result.depth, result.frames, clip.fps,
                                            labels=labels))
        output = request.output
    return EditResult(output=Path(output), compare=compare, frames=result.frames, depth=result.depth, fps=clip.fps,
                      has_audio=clip.has_audio)


def _reporter(progress: Progress | None, cancel: Callable[[], bool] | None):
    """The pipeline's ``progress_callback``: reports ``progress(done, total)`` and raises :class:`EditCancelled`
    as soon as ``cancel()`` is true; None when neither is given."""
    if progress is None and cancel is None:
        return None

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        if cancel is not None and cancel():
            raise EditCancelled("the edit was cancelled")

    return report


# ----------------------------------------------------------------------------------------------- command line
def edit_command(request: EditRequest, model_args: Sequence[str] = ()) -> str:
    """The ``gen1 edit`` command line that runs ``request`` (knobs at their defaults left out), then
    ``model_args`` (e.g. ``["--model", "DIR"]``), quoted for a POSIX shell."""
    words = ["gen1", "edit"]
    words += [request.input] if not request.input.startswith("-") else []
    for name, flag in COMMAND_FLAGS.items():
        value = getattr(request, name)
        if name != "output" and value == DEFAULTS.get(name):
            continue
        if isinstance(value, bool):
            words.append(flag)  # a switch: given only when it differs from its default
        elif name in ("prompt", "reference_image"):
            for item in value:
                words += _option(flag, item)
        elif name == "content_weights":
            words += [flag, *map(_number, value)]
        elif name == "direction":
            for pair in value:  # nargs=2: no '--direction=TEXT' form; a leading space keeps '-red' a value
                words += [flag, *(f" {text}" if text.startswith("-") else text for text in pair)]
        elif name == "direction_scale":
            for scale in value:
                words += _option(flag, _number(scale))
        elif name == "mask_clicks":
            for x, y, positive in value:
                words += _option(flag, f"{_number(x)},{_number(y)}" + ("" if positive else ",-"))
        elif name == "drag":
            for vector in value:
                words += _option(flag, vector)
        else:
            words += _option(flag, _number(value) if isinstance(value, float) else str(value))
    words += list(model_args)
    if request.input.startswith("-"):
        words += ["--", request.input]  # a file name that looks like a flag
    return shlex.join(words)


def _option(flag: str, text: str) -> list[str]:
    """``[flag, text]``, or ``[flag=text]`` when the text starts with ``-`` (argparse would take it for a flag)."""
    return [f"{flag}={text}"] if text.startswith("-") else [flag, text]


def _number(value: float) -> str:
    """The shortest text that parses back to exactly ``value`` (``3`` for 3.0, ``0.1`` for 0.1)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


__all__ = [
    "COMMAND_FLAGS", "ClipLimits", "ClipTooLong", "DEFAULTS", "EditCancelled", "EditInputs", "EditRequest",
    "EditResult", "check_request", "edit_command", "read_inputs", "request_from_args", "run_edit", "source_short_side",
    "with_model_defaults", "with_pipeline_defaults",
]
