"""The settings of an edit, declared once: name, default, range, flag and help of each.

:class:`EditSettings` holds every knob of an edit under the name ``Gen1Pipeline.__call__`` takes (``guidance_scale``,
``window_size``, ...). Everything else is derived from it or checked against it: ``gen1 edit``'s flags
(:func:`add_setting_arguments`), the request :mod:`gen1.editing` runs (a subclass adding the files), the web form
(tested against it), and the range checks (:func:`check_setting`, the one place a range is written), which the
pipeline, the editing layer and the front ends all call, naming the setting their own way (a flag or a keyword).

Each field's metadata (:func:`setting`) says:

* ``flag``: the ``gen1 edit`` option; ``help``: its help text; ``group``: which part of ``--help`` it is listed in;
* ``low`` / ``high`` / ``low_open`` / ``integer`` / ``choices``: its range;
* ``stage``: ``"edit"`` for a ``Gen1Pipeline.__call__`` argument, ``"read"`` for how the source is read
  (frame selection, the depth file's convention), ``"seed"`` for the generator's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from gen1.checks import SEED_MAX, check_integer, check_number, seed_value
from gen1.media import check_size
from gen1.model_defaults import FALLBACK_SIZE

#: The structure levels t_s run from 0 to this (gen1.depth.obscure defines what each does; the number lives here, at
#: the bottom of the layers, so that declaring the settings needs no torch: every command builds its parser from them).
MAX_LEVEL = 7
#: The samplers an edit can name (gen1.denoise.make_scheduler makes them).
SCHEDULERS = ("ddim", "dpm", "euler", "unipc")
#: What a masked edit does with the structure inside the mask (gen1.masked_edits).
MASK_STRUCTURES = ("keep", "fill")
#: Where an edit at strength 1 starts: pure noise (Gen-1's way, the source's pixels play no part) or the source
#: latents noised to the first timestep (diffusers' video-to-video pipelines, which keep sqrt(alpha_bar_T) of them).
FULL_STRENGTH_STARTS = ("noise", "noised-source")
#: Where an erase (and a drag's old place) takes what the subject hid before the model redraws it (gen1.masked_edits):
#: copied from the frames that see it, the rest from the surroundings; or from the surroundings only.
ERASE_FILLS = ("frames", "boundary")
#: The trackers that carry a one-frame mask to every frame (gen1.tracking.TRACKERS holds them by these names).
TRACKER_NAMES = ("flow", "sam2")


def click_value(text: str) -> tuple[float, float, bool]:
    """argparse type of ``--mask-click``: ``X,Y`` or ``X,Y,+`` (on the subject) or ``X,Y,-`` (not the subject), in
    pixels of the source video -> ``(x, y, positive)``; the frame's bounds are checked when the video is read."""
    import argparse  # lazy: only the command line parses clicks

    parts = [part.strip() for part in str(text).split(",")]
    sign = parts.pop() if len(parts) == 3 else "+"
    try:
        x, y = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a click is X,Y or X,Y,+ or X,Y,- (pixels), got '{text}'") from None
    if sign not in ("+", "-") or not (math.isfinite(x) and math.isfinite(y)):
        raise argparse.ArgumentTypeError(f"a click is X,Y or X,Y,+ or X,Y,- (pixels), got '{text}'")
    return x, y, sign == "+"


def setting(default, flag: str, help: str, *, group: str = "knobs", stage: str = "edit", low=None, high=None,
            low_open: bool = False, integer: bool = False, choices=None, metavar: str | None = None,
            repeat: bool = False, nargs: str | None = None, kind: type | Callable | None = None,
            switch: bool = False, web: bool = True):
    """A field of :class:`EditSettings` with its flag, help and range (see the module docstring).

    ``repeat``: the flag may be given several times (a tuple); ``nargs``: several values after one flag;
    ``switch``: a flag without a value that sets the opposite of ``default``; ``kind``: argparse's ``type``;
    ``web``: False for a setting the web app cannot offer (it needs a file only the command line and the API load,
    such as a ``gen1 customize --imagic`` adapter).
    """
    metadata = dict(flag=flag, help=help, group=group, stage=stage, low=low, high=high, low_open=low_open,
                    integer=integer, choices=choices, metavar=metavar, repeat=repeat, nargs=nargs, kind=kind,
                    switch=switch, web=web)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class EditSettings:
    """Every knob of an edit, with ``Gen1Pipeline.__call__``'s names and ``gen1 edit``'s defaults."""

    # content
    prompt: tuple[str, ...] = setting((), "--prompt", "text prompt (repeatable)", group="content", repeat=True)
    reference_image: tuple[str, ...] = setting((), "--reference", "reference image (repeatable)", group="content",
                                               repeat=True, metavar="IMG")
    negative_prompt: str | None = setting(None, "--negative-prompt", "public route: what the edit should not look "
                                          "like (default: the empty prompt)", group="content", metavar="TEXT")
    content_weights: tuple[float, ...] | None = setting(
        None, "--content-weights", "one weight >= 0 per prompt, then per reference image; normalised to sum to 1 "
        "(default: equal)", group="content", nargs="+", kind=float, metavar="W", low=0)
    direction: tuple[tuple[str, str], ...] = setting(
        (), "--direction", "a global direction NEUTRAL TARGET (repeatable, StyleCLIP-style): the content becomes the "
        "source's own (or the prompt's) plus alpha x (text(TARGET) - text(NEUTRAL)) in the route's content space "
        "(docs/directions.md)", group="content", repeat=True, nargs=2, metavar=("NEUTRAL", "TARGET"))
    direction_scale: tuple[float, ...] = setting(
        (), "--direction-scale", "alpha of each --direction, in order: a number in [-100, 100], 0 = the source's own "
        "content (repeatable; default 1 for every direction)", group="content", repeat=True, kind=float,
        metavar="ALPHA")
    imagic_scale: float | None = setting(
        None, "--imagic-scale", "eta in [0, 2] with an Imagic adapter (--adapter DIR from gen1 customize --imagic): the "
        "content is eta x target + (1 - eta) x the optimised embedding; 0 reconstructs the clip, 1 is the target text, "
        "above 1 extrapolates (docs/directions.md)", group="content", low=0, high=2, kind=float, metavar="ETA",
        web=False)
    # guidance and structure
    structure_level: float = setting(0.0, "--structure-level", f"t_s in [0, {MAX_LEVEL}]: 0 = full depth detail, "
                                     f"{MAX_LEVEL} = coarse layout only (default 0)", low=0, high=MAX_LEVEL,
                                     kind=float)
    guidance_scale: float | None = setting(None, "--guidance", "content guidance scale w (default: the model's "
                                           "recommended w, else 7.5)", low=0, kind=float)
    temporal_guidance_scale: float = setting(1.0, "--temporal-guidance", "temporal guidance scale w_t (default 1)",
                                             low=0, kind=float)
    controlnet_conditioning_scale: float = setting(1.0, "--controlnet-scale", "public route: strength of the depth "
                                                   "ControlNet's guidance, >= 0 (default 1)", low=0, kind=float)
    controlnet_guidance_start: float = setting(0.0, "--controlnet-start", "public route: the share of the steps, "
                                               "from the first, before the ControlNet starts to act (default 0)",
                                               low=0, high=1, kind=float)
    controlnet_guidance_end: float = setting(1.0, "--controlnet-end", "public route: the share of the steps after "
                                             "which the ControlNet stops acting, saving its evaluation on the rest "
                                             "(default 1)", low=0, high=1, kind=float)
    inpaint_controlnet_scale: float = setting(1.0, "--inpaint-controlnet-scale", "public route with "
                                              "--inpaint-controlnet: strength of the inpainting ControlNet in a "
                                              "masked edit, >= 0 (default 1)", low=0, kind=float)
    num_inference_steps: int | None = setting(None, "--steps", "denoising steps (default: the model's recommended "
                                              "count with its own sampler, else 30)", low=1, integer=True, kind=int)
    scheduler: str | None = setting(None, "--scheduler", "sampler (default: the model's own)", choices=SCHEDULERS)
    strength: float = setting(1.0, "--strength", "in (0, 1]: start from the noised source below 1", low=0, high=1,
                              low_open=True, kind=float)
    full_strength_start: str = setting(
        "noise", "--full-strength-start", "where an edit at --strength 1 starts: 'noise' (pure noise, as Gen-1; the "
        "source's pixels play no part) or 'noised-source' (the source noised to the first step, as diffusers' "
        "video-to-video pipelines; docs/models.md). Below strength 1 both start from the noised source",
        choices=FULL_STRENGTH_STARTS)
    seed: int = setting(0, "--seed", "random seed, 0 to 2**64-1 (default 0)", stage="seed", low=0, high=SEED_MAX,
                        integer=True, kind=seed_value)
    mask: str | None = setting(None, "--mask", "mask image, video or .npy array: white (1) = edit, black (0) = "
                               "keep the source", group="masked")
    mask_frame: int | None = setting(None, "--mask-frame", "--mask is one image of this frame (0 = the first edited "
                                     "frame, after --start and --fps): the subject is tracked from it to every frame "
                                     "(docs/masked_edits.md)", low=0,
                                     integer=True, kind=int, metavar="N", group="masked")
    erase: bool = setting(False, "--erase", "remove the masked subject: the region is filled with the surroundings' "
                          "structure and the source's own look (name the subject with --negative-prompt on public "
                          "models); no --prompt or --reference", group="masked", switch=True)
    erase_strength: float | None = setting(
        None, "--erase-strength", "an erase starts from its region pre-filled (--erase-fill), noised "
        "to this share of the steps: in (0, 1], 1 = from pure noise (default 0.4; docs/masked_edits.md)", low=0,
        high=1, low_open=True, kind=float, group="masked")
    drag_strength: float | None = setting(
        None, "--drag-strength", "a drag starts from the clip with the subject moved and its old place pre-filled, "
        "noised to this share of the steps: in (0, 1], 1 = from pure noise (default 0.4; docs/drag.md)", low=0,
        high=1, low_open=True, kind=float, group="masked")
    erase_fill: str | None = setting(
        None, "--erase-fill", "where an erase (and a drag's old place) takes the colours the subject hid before the "
        "model redraws them: frames = copied from the frames that see them along the background's motion, the rest "
        "from the surroundings; boundary = from the surroundings only (default frames; docs/masked_edits.md)",
        choices=ERASE_FILLS, group="masked")
    mask_structure: str | None = setting(None, "--mask-structure", "the structure inside --mask: keep the subject's "
                                         "depth (or your --depth: the new object's), or fill it from the mask's "
                                         "boundary (default: fill with --erase, else keep)", choices=MASK_STRUCTURES,
                                         group="masked")
    mask_structure_level: float | None = setting(None, "--mask-structure-level", f"t_s in [0, {MAX_LEVEL}] inside "
                                                 "--mask (default: --structure-level)", low=0, high=MAX_LEVEL,
                                                 kind=float, metavar="T", group="masked")
    mask_tracker: str = setting("flow", "--mask-tracker", "how --mask-frame's mask (or --mask-click) follows the "
                                "subject: flow (no weights: carried by optical flow or moved by the subject's matched "
                                "motion, whichever outline fits its colours, then snapped to colour and depth edges) "
                                "or sam2 (the SAM 2 video segmentation model, --mask-tracker-model; default flow)",
                                choices=TRACKER_NAMES, group="masked")
    mask_tracker_model: str | None = setting(None, "--mask-tracker-model", "the SAM 2 model of --mask-tracker sam2: a "
                                             "folder or Hub id (default facebook/sam2.1-hiera-tiny)",
                                             metavar="DIR|REPO", group="masked")
    mask_clicks: tuple[tuple[float, float, bool], ...] = setting(
        (), "--mask-click", "a click X,Y (pixels of the source video) on the subject, X,Y,- on what is not it, on frame "
        "--mask-frame (default 0) instead of a painted --mask; repeatable; needs --mask-tracker sam2",
        repeat=True, kind=click_value, metavar="X,Y[,+|-]", group="masked")
    drag: tuple[str, ...] = setting(
        (), "--drag", "move the --mask subject from X0,Y0 (a pixel on it) to X1,Y1, in pixels of INPUT (repeatable: "
        "one = move, two = move, turn and scale, three or more = affine); given on --mask-frame (else the first frame) "
        "and applied to every frame; or a track file (.json/.csv) with vectors for every frame (docs/drag.md)",
        repeat=True, metavar="X0,Y0:X1,Y1", group="masked")
    depth: str | None = setting(None, "--depth", "your own structure instead of the estimate: a depth video, an "
                                "image (8/16-bit PNG or TIFF, read at full precision), a .npy array or a folder of "
                                "images; brighter = nearer unless --depth-invert")
    depth_cache: bool = setting(True, "--no-cache", "estimate the depth again instead of taking it from the cache of "
                                "earlier edits of the same clip (gen1.depth.cache: the user's cache directory, or "
                                "GEN1_CACHE_DIR)", switch=True)
    depth_invert: bool = setting(False, "--depth-invert", "--depth holds distance (far = large), e.g. a Blender Z "
                                 "pass: use 1/distance as the structure", stage="read", switch=True)
    # which frames, at which size, in which windows
    size: int | None = setting(None, "--size", "short side of the output in pixels, a multiple of 8 up to 4096 "
                               f"(default: the size the model was trained at, else the clip's short side up to {FALLBACK_SIZE})", group="io",
                               kind=int)
    fps: float | None = setting(None, "--fps", "resample the input to this frame rate (default: keep)", group="io",
                                stage="read", low=0, low_open=True, kind=float)
    start: float = setting(0.0, "--start", "start time in seconds", group="io", stage="read", low=0, kind=float)
    duration: float | None = setting(None, "--duration", "duration in seconds", group="io", stage="read", low=0,
                                     low_open=True, kind=float)
    max_frames: int | None = setting(None, "--max-frames", "at most this many frames", group="io", stage="read",
                                     low=1, integer=True, kind=int)
    window_size: int | None = setting(None, "--window", "frames per temporal window (default: the model's clip "
                                      "length)", group="io", low=1, integer=True, kind=int)
    window_overlap: int | None = setting(None, "--overlap", "frames shared by neighbouring windows (default: "
                                         "window // 4)", group="io", low=0, integer=True, kind=int)
    window_shift: bool = setting(True, "--fixed-windows", "keep the same windows at every step (default: they shift "
                                 "from step to step, so that no frame stays at a window edge; docs/long_videos.md)",
                                 group="io", switch=True)


def setting_fields():
    """The fields of :class:`EditSettings`, in declaration order."""
    return fields(EditSettings)


#: Setting name -> its ``gen1 edit`` flag.
FLAGS: dict[str, str] = {item.name: item.metadata["flag"] for item in setting_fields()}
#: Setting name -> its default.
DEFAULTS: dict[str, Any] = {item.name: item.default for item in setting_fields()}
#: The settings only some routes take, with the value that leaves them out (:meth:`gen1.routes.Route.check_settings`).
OPTIONAL_SETTINGS: dict[str, Any] = {"negative_prompt": None, "controlnet_conditioning_scale": 1.0,
                                     "controlnet_guidance_start": 0.0, "controlnet_guidance_end": 1.0,
                                     "inpaint_controlnet_scale": 1.0}


def flag_label(name: str) -> str:
    """How the command line names a setting (its flag); other names are returned as they are."""
    return FLAGS.get(name, name)


def check_setting(name: str, value, label: Callable[[str], str] = lambda name: name) -> None:
    """``ValueError`` unless ``value`` is within setting ``name``'s declared range; ``None`` passes (not given).

    The message names the setting as ``label(name)`` (``flag_label`` for a command line). Sizes are checked by
    :func:`gen1.media.check_size` (a multiple of 8 up to :data:`gen1.media.MAX_SIZE`).
    """
    if value is None:
        return
    spec = _FIELDS[name].metadata
    shown = label(name)
    if name == "size":
        check_size(value, shown)
        return
    values = value if spec["repeat"] or spec["nargs"] else (value,)
    for item in values:
        if spec["choices"] is not None:
            if item not in spec["choices"]:
                raise ValueError(f"{shown} must be one of {', '.join(spec['choices'])}, got '{item}'")
        elif spec["integer"]:
            if isinstance(item, bool) or not float(item).is_integer():
                raise ValueError(f"{shown} must be an integer, got {item!r}")
            check_integer(shown, int(item), low=spec["low"], high=spec["high"])
        elif spec["low"] is not None or spec["high"] is not None:
            try:
                number = float(item)
            except (TypeError, ValueError):
                raise ValueError(f"{shown} must be a number, got {item!r}") from None
            check_number(shown, number, low=spec["low"], high=spec["high"], low_open=spec["low_open"])


def check_settings(settings: Mapping[str, Any], label: Callable[[str], str] = lambda name: name) -> None:
    """:func:`check_setting` for every declared setting in ``settings`` (other keys are ignored)."""
    for name, value in settings.items():
        if name in _FIELDS:
            check_setting(name, value, label)
    if settings.get("direction") or settings.get("direction_scale"):
        check_directions(settings.get("direction") or (), settings.get("direction_scale") or (), label)


#: Settings that decide an edit's content themselves, and where it comes from then: given with another source of
#: content (:data:`CONTENT_SOURCES`) the edit would have to ignore one of them.
CONTENT_OWNERS: dict[str, str] = {"erase": "the source without the subject", "imagic_scale": "the Imagic adapter"}
#: The settings that give an edit its content.
CONTENT_SOURCES = ("prompt", "reference_image", "content_embeds", "direction", "imagic_scale")


def check_content_sources(given: Mapping[str, Any], label: Callable[[str], str] = lambda name: name,
                          hint: str = "") -> None:
    """``ValueError`` when a setting of :data:`CONTENT_OWNERS` comes with another source of content, naming what
    was given (``given``: setting name -> value; None, False and empty values count as not given; names shown as
    ``label(name)``, ``flag_label`` for a command line; ``hint`` is added to the message). The one check of the
    API, the command line and the routes."""

    def is_given(value) -> bool:
        return value is not None and value is not False and not (hasattr(value, "__len__") and len(value) == 0)

    for owner, source in CONTENT_OWNERS.items():
        if not is_given(given.get(owner)):
            continue
        others = [label(name) for name in CONTENT_SOURCES if name != owner and is_given(given.get(name))]
        if others:
            listed = others[0] if len(others) == 1 else f"{', '.join(others[:-1])} or {others[-1]}"
            raise ValueError(f"{label(owner)} takes its content from {source}: give no {listed}{hint}")


#: The largest |alpha| of a direction: the content moved 100 times the distance between the two texts is far past
#: anything a model draws (1 to 2 is a clear change), and much more overflows inside the network (a NaN video).
MAX_DIRECTION_SCALE = 100.0


def check_directions(directions, scales, label: Callable[[str], str] = lambda name: name) -> list[float]:
    """``ValueError`` unless every direction is two different non-empty texts (NEUTRAL, TARGET) and the scales are
    finite numbers, none (1 for every direction) or one per direction; returns the scale of each direction."""

    shown, shown_scale = label("direction"), label("direction_scale")
    for pair in directions:
        if isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"{shown} takes two texts, NEUTRAL and TARGET, got {pair!r}")
        neutral, target = pair
        if not all(isinstance(text, str) and text.strip() for text in pair):
            raise ValueError(f"{shown} needs two non-empty texts NEUTRAL TARGET, got {tuple(pair)!r}")
        if neutral.strip() == target.strip():
            raise ValueError(f"{shown}: NEUTRAL and TARGET are the same text ({neutral!r}), so there is no direction")
    values = []
    for scale in scales:
        try:
            value = float(scale)
        except (TypeError, ValueError):
            raise ValueError(f"{shown_scale} must be a number, got {scale!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{shown_scale} must be a finite number, got {scale!r}")
        if abs(value) > MAX_DIRECTION_SCALE:
            raise ValueError(f"{shown_scale} must be within [-{MAX_DIRECTION_SCALE:g}, {MAX_DIRECTION_SCALE:g}], got "
                             f"{value:g} (alpha times the distance between the two texts; 1 to 2 is a clear change)")
        values.append(value)
    if values and not directions:
        raise ValueError(f"{shown_scale} was given without {shown}")
    if values and len(values) != len(directions):
        raise ValueError(f"{shown_scale}: give one per {shown} ({len(directions)}), or none for 1 each; "
                         f"got {len(values)}")
    return values or [1.0] * len(directions)


def add_setting_arguments(groups: Mapping[str, Any]) -> None:
    """Add every setting's flag to the argparse group named by its ``group`` (``content``, ``knobs``, ``masked``,
    ``io``); the parsed ``dest`` of each is the setting's name."""
    for item in setting_fields():
        spec = item.metadata
        kwargs = dict(dest=item.name, help=spec["help"])
        if spec["switch"]:
            kwargs.update(action="store_false" if item.default else "store_true")
        else:
            if spec["repeat"]:
                kwargs.update(action="append", default=[])
            else:
                kwargs.update(default=item.default)
            for key, argparse_key in (("kind", "type"), ("metavar", "metavar"), ("nargs", "nargs"),
                                      ("choices", "choices")):
                if spec[key] is not None:
                    kwargs[argparse_key] = spec[key]
        groups[spec["group"]].add_argument(spec["flag"], **kwargs)


_FIELDS = {item.name: item for item in setting_fields()}

__all__ = ["DEFAULTS", "FALLBACK_SIZE", "FLAGS", "FULL_STRENGTH_STARTS", "OPTIONAL_SETTINGS", "SCHEDULERS",
           "TRACKER_NAMES", "EditSettings", "click_value",
           "CONTENT_OWNERS", "CONTENT_SOURCES", "add_setting_arguments", "check_content_sources", "check_directions",
           "check_setting", "check_settings", "flag_label", "setting",
           "setting_fields"]
