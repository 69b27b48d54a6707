"""One video edit, the way ``gen1 edit`` and ``gen1 serve`` both run it.

An :class:`EditRequest` holds everything an edit needs besides the model: the files (source, mask, your own
depth, reference images, outputs) and the knobs, with the defaults of ``gen1 edit``. Its field names are the
``dest`` names of ``gen1 edit``'s flags, so a setting means the same thing on the command line, in the web app
and in Python::

    request = EditRequest(input="in.mp4", output="out.mp4", prompt=("a watercolour painting",), structure_level=3)
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

import contextlib
import math
import shlex
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from gen1.commands._common import check_integer, check_number, check_seed, errors_naming

SCHEDULERS = ("ddim", "dpm", "euler")

Progress = Callable[[int, int], None]
"""``progress(done, total)``: denoising steps done so far across all temporal windows, of ``total``."""


@dataclass(frozen=True)
class EditRequest:
    """What to edit and how: paths and knobs, named and defaulted as ``gen1 edit``'s flags (see its ``--help``).

    ``prompt`` and ``reference`` hold one entry per ``--prompt`` / ``--reference``; ``content_weights`` one weight
    per prompt, then per reference (``None``: equal). ``compare`` is the optional source | depth | output file.
    """

    input: str
    output: str
    prompt: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    negative_prompt: str | None = None
    content_weights: tuple[float, ...] | None = None
    structure_level: float = 0.0
    guidance: float | None = None  # None: the model's recommended w (gen1.model_defaults), else 7.5
    temporal_guidance: float = 1.0
    controlnet_scale: float = 1.0
    steps: int = 30
    scheduler: str | None = None
    strength: float = 1.0
    seed: int = 0
    mask: str | None = None
    depth: str | None = None
    depth_invert: bool = False
    size: int | None = None  # None: the size the model was trained at (gen1.model_defaults), else 512
    fps: float | None = None
    start: float = 0.0
    duration: float | None = None
    max_frames: int | None = None
    window: int | None = None
    overlap: int | None = None
    fixed_windows: bool = False  # True: the same windows at every step (gen1.windows; default: shifted)
    compare: str | None = None

    def __post_init__(self):  # lists from argparse or JSON become tuples, so that requests compare and hash
        for name in ("prompt", "reference"):
            object.__setattr__(self, name, tuple(str(value) for value in getattr(self, name)))
        if self.content_weights is not None:
            object.__setattr__(self, "content_weights", tuple(float(w) for w in self.content_weights))
        for name in ("input", "output", "mask", "depth", "compare"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value))

    @property
    def clip_args(self) -> dict:
        """Which frames of the source are edited (``gen1.video.read_video``'s selection arguments)."""
        return dict(target_fps=self.fps, start=self.start, duration=self.duration, max_frames=self.max_frames)


DEFAULTS = {item.name: item.default for item in fields(EditRequest) if item.name not in ("input", "output")}

# EditRequest field -> the gen1 edit flag that sets it (INPUT is positional), in the order edit_command writes them.
FLAGS = {
    "output": "-o", "prompt": "--prompt", "reference": "--reference", "negative_prompt": "--negative-prompt",
    "content_weights": "--content-weights", "structure_level": "--structure-level", "guidance": "--guidance",
    "temporal_guidance": "--temporal-guidance", "controlnet_scale": "--controlnet-scale", "steps": "--steps",
    "scheduler": "--scheduler", "strength": "--strength", "seed": "--seed", "mask": "--mask", "depth": "--depth",
    "depth_invert": "--depth-invert", "size": "--size", "fps": "--fps", "start": "--start",
    "duration": "--duration", "max_frames": "--max-frames", "window": "--window", "overlap": "--overlap",
    "fixed_windows": "--fixed-windows",
    "compare": "--compare",
}


def request_from_args(args) -> EditRequest:
    """The request that parsed ``gen1 edit`` arguments describe (model and device flags are not part of it)."""
    return EditRequest(**{item.name: getattr(args, item.name) for item in fields(EditRequest)})


# ----------------------------------------------------------------------------------------------- checks
def check_request(request: EditRequest) -> None:
    """Check the content and the knobs; ``ValueError`` naming the flag. Files are the caller's to check."""
    _check_content(request)
    _check_knobs(request)


def _check_content(request: EditRequest) -> None:
    if not request.prompt and not request.reference:
        raise ValueError("give --prompt and/or --reference for the content of the edit")
    if any(not prompt.strip() for prompt in request.prompt):
        raise ValueError("--prompt must not be empty")
    if request.content_weights is not None:
        count = len(request.prompt) + len(request.reference)
        if len(request.content_weights) != count:
            raise ValueError(f"--content-weights needs one weight per --prompt and --reference ({count}), "
                             f"got {len(request.content_weights)}")
        for weight in request.content_weights:
            check_number("--content-weights", weight, low=0)
        if not any(weight > 0 for weight in request.content_weights):
            raise ValueError("--content-weights must not all be 0")


def _check_knobs(request: EditRequest) -> None:
    from gen1.depth.obscure import MAX_LEVEL
    from gen1.media import check_size

    check_number("--structure-level", request.structure_level, low=0, high=MAX_LEVEL)
    if request.guidance is not None:
        check_number("--guidance", request.guidance, low=0)
    check_number("--temporal-guidance", request.temporal_guidance, low=0)
    check_number("--controlnet-scale", request.controlnet_scale, low=0)
    check_integer("--steps", request.steps, low=1)
    if request.scheduler is not None and request.scheduler not in SCHEDULERS:
        raise ValueError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got '{request.scheduler}'")
    check_number("--strength", request.strength, low=0, high=1, low_open=True)
    check_seed("--seed", request.seed)
    if request.size is not None:
        check_size(request.size, "--size")  # before any decoding: a multiple of 8, at most gen1.media.MAX_SIZE
    if request.fps is not None:
        check_number("--fps", request.fps, low=0, low_open=True)
    check_number("--start", request.start, low=0)
    if request.duration is not None:
        check_number("--duration", request.duration, low=0, low_open=True)
    if request.max_frames is not None:
        check_integer("--max-frames", request.max_frames, low=1)


def with_model_defaults(request: EditRequest, defaults) -> tuple[EditRequest, list[str]]:
    """``request`` with an unset ``size`` and ``guidance`` taken from a model's :class:`gen1.model_defaults.ModelDefaults`
    (else 512 px and w = 7.5), and the flags so chosen, as ``gen1 edit`` reports them (``["--size 64 (the model's
    trained size)", ...]``)."""
    from gen1.model_defaults import FALLBACK_EDIT_SIZE

    chosen, changes = [], {}
    if request.size is None:
        changes["size"] = defaults.size_or(FALLBACK_EDIT_SIZE)
        chosen.append(f"--size {changes['size']}" + (" (the model's trained size)" if defaults.trained_size else ""))
    if request.guidance is None:
        changes["guidance"] = defaults.guidance_or()
        chosen.append(f"--guidance {changes['guidance']:g}" + (" (the model's)" if defaults.guidance_scale is not None
                                                              else ""))
    return replace(request, **changes), chosen


def with_pipeline_defaults(request: EditRequest, pipe) -> EditRequest:
    """``request`` with an unset ``size`` and ``guidance`` taken from what ``pipe``'s model records
    (:func:`with_model_defaults`)."""
    return with_model_defaults(request, pipe.recorded_defaults)[0]


# ----------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class ClipLimits:
    """The most one edit may take (a server's bounds): frames and seconds of the selected part of the source."""

    max_frames: int
    max_seconds: float | None = None


class ClipTooLong(ValueError):
    """The selected part of the source is over a :class:`ClipLimits`."""


@dataclass
class EditInputs:
    """The decoded inputs of an edit: the source clip, the mask ``(F|1, 1, H, W)`` and your own depth, if any."""

    clip: Any  # gen1.video.VideoClip
    mask: Any = None
    depth: Any = None


def read_inputs(request: EditRequest, *, limits: ClipLimits | None = None) -> EditInputs:
    """Decode the source, the mask and your own depth at ``request.size`` with the request's frame selection.

    With ``limits``, no more than ``limits.max_frames + 1`` frames are decoded from any file (memory stays
    bounded whatever is uploaded) and a longer selection is a :class:`ClipTooLong`.
    """
    if request.size is None:
        raise ValueError("the request has no size: give one, or take the model's with "
                         "with_pipeline_defaults(request, pipe) before reading the inputs")
    clip_args = request.clip_args
    if limits is not None:
        clip_args["max_frames"] = min(request.max_frames or math.inf, limits.max_frames + 1)
    clip = _read_source(request, clip_args)
    if limits is not None:
        _check_limits(clip, limits)
    mask = None if request.mask is None else _mask_for(request.mask, clip_args, request.size, clip)
    depth = None if request.depth is None else _user_depth(request, clip_args, clip)
    return EditInputs(clip=clip, mask=mask, depth=depth)


def _check_limits(clip, limits: ClipLimits) -> None:
    advice = "choose a shorter part (start, duration, max frames)"
    if clip.num_frames > limits.max_frames:
        raise ClipTooLong(f"the selected part of the video has more than {limits.max_frames} frames, the most this "
                          f"server edits at once: {advice}")
    if limits.max_seconds is not None and clip.duration > limits.max_seconds + 1e-6:
        raise ClipTooLong(f"the selected part of the video lasts {clip.duration:.1f} s; this server edits at most "
                          f"{limits.max_seconds:g} s at once: {advice}")


def _read_media(path: str, clip_args: dict, size: int):
    """uint8 frames (F, H, W, 3) from an image (one frame) or a video read with the source's timing."""
    from gen1.media import read_frames_or_images

    return read_frames_or_images(path, size=size, **clip_args)


def _read_source(request: EditRequest, clip_args: dict):
    from gen1.video import read_video

    with errors_naming("INPUT"):
        return read_video(request.input, size=request.size, **clip_args)


def _mask_for(path: str, clip_args: dict, size: int, clip):
    """The mask at the clip's frame size (same resize policy as the video), as float (F|1, 1, H, W)."""
    import torch

    from gen1.masking import mask_to_tensor

    with errors_naming("--mask"):
        mask = mask_to_tensor(_read_media(path, clip_args, size))
    if tuple(mask.shape[-2:]) != (clip.height, clip.width):
        raise ValueError(
            f"--mask size {mask.shape[-1]}x{mask.shape[-2]} (after resizing to --size {size}) does not match "
            f"the video's {clip.width}x{clip.height}"
        )
    return torch.as_tensor(mask)


def _user_depth(request: EditRequest, clip_args: dict, clip):
    """--depth as normalised inverse depth (F|1, 1, H, W) at the clip's frame size.

    A depth video is read with the clip's timing (video codecs hold 8 bits anyway); images, ``.npy`` arrays and
    image folders are read at full precision (16-bit PNG/TIFF) and scaled and centre-cropped like the video.
    """
    from gen1.depth import load_structure
    from gen1.video import VIDEO_SUFFIXES

    with errors_naming("--depth"):
        if Path(request.depth).suffix.lower() in VIDEO_SUFFIXES:
            depth = load_structure(_read_media(request.depth, clip_args, request.size), invert=request.depth_invert)
        else:
            depth = load_structure(request.depth, size=(clip.height, clip.width), crop=True,
                                   invert=request.depth_invert)
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
    before writing: when it returns true the edit stops with :class:`EditCancelled` and writes nothing.
    """
    import torch

    from gen1.video import write_video

    request = with_pipeline_defaults(request, pipe)
    inputs = read_inputs(request) if inputs is None else inputs
    clip = inputs.clip
    generator = torch.Generator(device="cpu").manual_seed(request.seed)
    with _scheduler_swapped(pipe, request.scheduler), _reporting_progress(pipe, progress, cancel):
        result = pipe(
            clip.frames,
            prompt=list(request.prompt) or None,
            negative_prompt=request.negative_prompt,
            reference_image=list(request.reference) or None,
            content_weights=None if request.content_weights is None else list(request.content_weights),
            height=clip.height,  # the clip as read (at request.size), not resized again to the model's size
            width=clip.width,
            structure_level=request.structure_level,
            guidance_scale=request.guidance,
            temporal_guidance_scale=request.temporal_guidance,
            num_inference_steps=request.steps,
            generator=generator,
            depth=inputs.depth,
            mask=inputs.mask,
            window_size=request.window,
            window_overlap=request.overlap,
            window_shift=not request.fixed_windows,
            strength=request.strength,
            controlnet_conditioning_scale=request.controlnet_scale,
            output_type="pt",
        )
    if cancel is not None and cancel():
        raise EditCancelled("the edit was cancelled")
    output = write_video(request.output, result.frames, clip.fps, audio_from=clip if clip.has_audio else None)
    compare = None
    if request.compare is not None:
        from gen1.comparison import write_comparison

        compare = Path(write_comparison(request.compare, clip.frames, result.depth, result.frames, clip.fps))
    return EditResult(output=Path(output), compare=compare, frames=result.frames, depth=result.depth, fps=clip.fps,
                      has_audio=clip.has_audio)


def make_scheduler(name: str, config):
    """A diffusers scheduler of kind ``name`` (``ddim``, ``dpm``, ``euler``) from another scheduler's config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    cls = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}[name]
    return cls.from_config(config)


@contextlib.contextmanager
def _scheduler_swapped(pipe, name: str | None):
    """Use scheduler ``name`` for one call, then give the pipeline back its own (a server reuses the pipeline)."""
    if name is None:
        yield
        return
    own = pipe.scheduler
    pipe.scheduler = make_scheduler(name, own.config)
    try:
        yield
    finally:
        pipe.scheduler = own


class _ReportingBar:
    """The pipeline's progress bar, also reporting ``progress(done, total)`` and raising when ``cancel()``.

    The pipeline advances its bar once per temporal window of each denoising step, with ``total`` = steps x
    windows, so this is the edit's real progress.
    """

    def __init__(self, bar, total: int, progress: Progress | None, cancel: Callable[[], bool] | None):
        self._bar, self._total, self._progress, self._cancel = bar, int(total or 0), progress, cancel
        self._done = 0

    def __enter__(self):
        self._bar.__enter__()
        self._report()
        return self

    def __exit__(self, *exc_info):
        return self._bar.__exit__(*exc_info)

    def update(self, n: int = 1):
        self._bar.update(n)
        self._done += n
        self._report()

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self._done, self._total)
        if self._cancel is not None and self._cancel():
            raise EditCancelled("the edit was cancelled")

    def __getattr__(self, name):
        return getattr(self._bar, name)


@contextlib.contextmanager
def _reporting_progress(pipe, progress: Progress | None, cancel: Callable[[], bool] | None):
    """For one call, wrap the bars of diffusers' ``DiffusionPipeline.progress_bar`` (the hook diffusers gives
    for following a pipeline) in :class:`_ReportingBar`."""
    if progress is None and cancel is None:
        yield
        return
    make_bar = pipe.progress_bar

    def progress_bar(iterable=None, total=None):
        return _ReportingBar(make_bar(iterable=iterable, total=total), total, progress, cancel)

    pipe.progress_bar = progress_bar  # an instance attribute in front of the method, removed below
    try:
        yield
    finally:
        del pipe.progress_bar


# ----------------------------------------------------------------------------------------------- command line
def edit_command(request: EditRequest, model_args: Sequence[str] = ()) -> str:
    """The ``gen1 edit`` command line that runs ``request`` (knobs at their defaults left out), then
    ``model_args`` (e.g. ``["--model", "DIR"]``), quoted for a POSIX shell."""
    words = ["gen1", "edit"]
    words += [request.input] if not request.input.startswith("-") else []
    for name, flag in FLAGS.items():
        value = getattr(request, name)
        if name != "output" and value == DEFAULTS[name]:
            continue
        if isinstance(value, bool):
            words.append(flag)
        elif name in ("prompt", "reference"):
            for item in value:
                words += _option(flag, item)
        elif name == "content_weights":
            words += [flag, *map(_number, value)]
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
    "ClipLimits", "ClipTooLong", "DEFAULTS", "EditCancelled", "EditInputs", "EditRequest", "EditResult", "FLAGS",
    "SCHEDULERS", "check_request", "edit_command", "make_scheduler", "read_inputs", "request_from_args", "run_edit",
    "with_model_defaults", "with_pipeline_defaults",
]
