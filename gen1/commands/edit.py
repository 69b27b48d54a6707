"""``gen1 edit``: edit a video by a prompt or reference image, keeping its structure (depth) and audio.

Example::

    gen1 edit input.mp4 -o out.mp4 --prompt "a watercolor painting" --structure-level 3 \\
        --guidance 7.5 --temporal-guidance 1.2 --compare compare.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from gen1.checks import check_integer, check_number, safetensors_metadata
from gen1.commands._common import (
    add_device_arguments,
    add_threads_argument,
    apply_threads,
    check_input_file,
    check_output_file,
    device_and_dtype,
    refuse_overwriting_inputs,
)
from gen1.commands._models import add_model_arguments
from gen1.editing import (
    EditRequest,
    check_request,
    read_inputs,
    request_from_args,
    run_edit,
    source_short_side,
    with_model_defaults,
)
from gen1.model_sources import ModelSource, check_model_source, load_model, unet_config_of
from gen1.settings import add_setting_arguments, flag_label


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "edit",
        help="edit a video by a prompt or reference image",
        description="Edit INPUT by content (a --prompt and/or --reference image) while keeping its structure "
        "(depth, obscured by --structure-level) and its audio; writes OUTPUT atomically.",
    )
    parser.add_argument("input", metavar="INPUT", help="source video")
    parser.add_argument("-o", "--output", required=True, help="output video (.mp4/.mov/.m4v)")
    groups = {"content": parser.add_argument_group("content"),
              "knobs": parser.add_argument_group("guidance and structure"),
              "masked": parser.add_argument_group("masks: masked edits, erase, replace, drag (docs/masked_edits.md, "
                                                  "docs/drag.md)"),
              "io": parser.add_argument_group("input, output and model")}
    add_setting_arguments(groups)  # every setting of the edit, from its one declaration (gen1.settings)
    _add_ip_adapter_arguments(groups["content"])
    _add_io_arguments(groups["io"])
    parser.set_defaults(func=run)


def _add_ip_adapter_arguments(content) -> None:
    """Reference images on the public route: the IP-Adapter that carries them."""
    content.add_argument("--ip-adapter", metavar="PATH|REPO",
                         help="public route: an IP-Adapter for --reference images, a local file or a Hub name such as "
                         "h94/IP-Adapter/models/ip-adapter_sd15.safetensors (its CLIP image encoder: image_encoder/ "
                         "beside it, or --image-encoder)")
    content.add_argument("--image-encoder", metavar="DIR|REPO",
                         help="the IP-Adapter's CLIP image encoder (a CLIPVisionModelWithProjection folder or Hub "
                         "name; default: image_encoder/ beside --ip-adapter)")
    content.add_argument("--ip-adapter-text-encoder", metavar="DIR|REPO",
                         help="the CLIP text tower (with projection) of the IP-Adapter's image encoder, so that "
                         "--direction acts in the IP-Adapter's image space: a folder or Hub name, for "
                         "h94/IP-Adapter's SD-1.5 adapters laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    content.add_argument("--ip-adapter-scale", type=float,
                         help="how strongly the --reference images act through the IP-Adapter, >= 0 (default 1, "
                         "or the scale a saved pipeline holds)")


def _add_io_arguments(io) -> None:
    """Which model and adapters, where the comparison goes, on which device."""
    add_model_arguments(io)
    io.add_argument("--compare", metavar="PATH", help="also write source | depth | output (.png/.jpg or .mp4)")
    io.add_argument("--adapter", help="customisation adapter (.safetensors from `gen1 customize`, or the folder "
                    "`gen1 customize --imagic` writes, for --imagic-scale) to apply")
    io.add_argument("--lora", metavar="FILE|REPO",
                    help="a Stable Diffusion LoRA (.safetensors, diffusers or kohya format) for the UNet, a local "
                    "file or a Hub name")
    io.add_argument("--lora-scale", type=float, help="strength of --lora (default 1)")
    add_device_arguments(io)
    io.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet (and the ControlNet of the public route): a one-off compilation at start-up "
        "for faster steps (worth it on GPUs)",
    )
    add_threads_argument(io)


def _check_loading_knobs(args) -> None:
    """The flags that shape loading rather than the edit (the request's own are checked by gen1.editing)."""
    if args.ip_adapter_scale is not None:
        check_number("--ip-adapter-scale", args.ip_adapter_scale, low=0)
    if args.threads is not None:
        check_integer("--threads", args.threads, low=1)
    if args.lora_scale is not None and args.lora is None:  # it was taken and ignored
        raise ValueError("--lora-scale needs a LoRA: give --lora (the LoRA it scales)")
    if args.lora_scale is not None and not math.isfinite(args.lora_scale):
        raise ValueError(f"--lora-scale must be a finite number, got {args.lora_scale:g}")


def _check_files(args) -> None:
    """Inputs exist and are what the flag expects; outputs are writable and overwrite no input."""
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.comparison import IMAGE_SUFFIXES as COMPARE_IMAGES

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.comparison import VIDEO_SUFFIXES as COMPARE_VIDEOS

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.media import IMAGE_SUFFIXES, OUTPUT_VIDEO_SUFFIXES, VIDEO_SUFFIXES

    check_input_file("INPUT", args.input)
    if Path(args.input).suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"INPUT '{args.input}' is a still image; gen1 edit edits videos ({', '.join(VIDEO_SUFFIXES)})")
    check_input_file("--mask", args.mask)
    for track in [value for value in args.drag if Path(value).suffix.lower() in (".json", ".csv")]:
        check_input_file("--drag", track)  # a track file (gen1.drag.TRACK_SUFFIXES)
    check_input_file("--depth", args.depth, directory_ok=True)
    check_input_file("--adapter", args.adapter, directory_ok=True)  # a folder: an Imagic adapter
    for reference in args.reference_image:
        check_input_file("--reference", reference)
    refuse_overwriting_inputs(
        {"-o/--output": args.output, "--compare": args.compare},
        {"INPUT": args.input, "--mask": args.mask, "--depth": args.depth, "--reference": args.reference_image,
         "--adapter": args.adapter, "--lora": args.lora},
    )
    check_output_file("-o/--output", args.output, OUTPUT_VIDEO_SUFFIXES)
    if args.compare is not None:
        check_output_file("--compare", args.compare, COMPARE_IMAGES | COMPARE_VIDEOS)


def _unet_frame_limits(source: ModelSource) -> tuple[int, int] | None:
    """(max_frames, default window) of the model's UNet, as the pipeline derives them; None if unknown."""
    config = unet_config_of(source)
    if config is None:
        return None
    max_frames = int(config.get("max_frames") or 0) or 16
    clip_length = int(config.get("clip_length") or 0)
    return max_frames, (min(clip_length, max_frames) if clip_length else max_frames)


def _check_model(args) -> ModelSource:
    """The model (a folder, or the public route's parts), its files readable, and --window / --overlap within
    what its UNet takes."""
    source = check_model_source(args, user_depth=args.depth is not None)
    limits = _unet_frame_limits(source)
    max_frames, window = limits if limits is not None else (None, args.window_size)
    if args.window_size is not None:
        check_integer("--window", args.window_size, low=1)
        if max_frames is not None and args.window_size > max_frames:
            raise ValueError(f"--window must be <= {max_frames} (the model's max_frames), got {args.window_size}")
        window = args.window_size
    if args.window_overlap is not None and window is not None:
        check_integer("--overlap", args.window_overlap, low=0, high=window - 1)
    source.route.check_settings(vars(args), label=flag_label, model=source.describe())
    return source


def _check_tracker(request: EditRequest) -> None:
    """--mask-tracker / --mask-tracker-model / --mask-click fit together, and the clicks are on the video
    (:func:`_check_tracker_model` checks the tracker's model once the edit's size is known)."""
    from gen1.tracking import TRACKERS  # lazy: keeps this module's import light (no torch when it loads)

    kind = TRACKERS[request.mask_tracker]
    if request.mask_tracker_model is not None and not kind.takes_model:
        raise ValueError(f"--mask-tracker-model names the model of --mask-tracker sam2, not of {request.mask_tracker}")
    if request.mask_clicks and not kind.takes_clicks:
        raise ValueError(f"--mask-click needs --mask-tracker sam2 (the {request.mask_tracker} tracker carries a "
                         "painted --mask)")
    if request.mask_clicks and request.mask is not None:
        raise ValueError("give the subject as --mask or as --mask-click, not both")
    if request.mask_clicks:  # in pixels of the source video: checked against its size before any model is fetched
        from gen1.checks import errors_naming  # lazy: keeps this module's import light (no torch when it loads)
        from gen1.media import frame_size  # lazy: keeps this module's import light (no torch when it loads)
        from gen1.tracking import check_clicks  # lazy: keeps this module's import light (no torch when it loads)

        with errors_naming("INPUT"):
            size = frame_size(request.input)
        try:  # the frame they are on is checked once the clip is read (its length is not known yet)
            check_clicks(request.mask_clicks, 0, 1, size)
        except ValueError as error:
            raise ValueError(f"--mask-click: {error}") from None


def _check_tracker_model(request: EditRequest) -> None:
    """--mask-click in the part of the video kept at --size (the model's size, if not given: known by now), then
    the tracker's model there (the Hub cache, or fetched): a wrong click fetches no model."""
    from gen1.tracking import TRACKERS  # lazy: keeps this module's import light (no torch when it loads)

    if request.mask_clicks and request.size is not None:
        from gen1.media import frame_size, resized_shape  # lazy: keeps this module's import light (no torch)
        from gen1.tracking import fit_clicks  # lazy: keeps this module's import light (no torch when it loads)

        height, width = frame_size(request.input)
        fit_clicks([(float(x), float(y), bool(p)) for x, y, p in request.mask_clicks], (height, width),
                   resized_shape(height, width, request.size), label="--mask-click",
                   cropped_at=f" at --size {request.size}")
    kind = TRACKERS[request.mask_tracker]
    if kind.takes_model and (request.mask_frame is not None or request.mask_clicks):
        tracker = kind(model=request.mask_tracker_model)
        tracker.check_model()


def _check_adapter(path: str) -> dict:
    """The adapter's metadata (kind, rank, targets), or ``ValueError`` if the file is no gen1 adapter; for an Imagic
    adapter folder (:mod:`gen1.imagic`) its LoRA's, with ``imagic`` holding the folder's own metadata."""
    from gen1.adapters import METADATA_KEY  # lazy: keeps this module's import light (no torch when it loads)

    if Path(path).is_dir():
        from gen1.imagic import ADAPTER_FILE, read_imagic_info  # lazy: keeps this module's import light

        try:
            imagic = read_imagic_info(path)
        except ValueError as error:
            raise ValueError(f"--adapter: {error}") from None
        return dict(_check_adapter(str(Path(path) / ADAPTER_FILE)), imagic=imagic)

    try:
        metadata = safetensors_metadata(Path(path))
    except ValueError as error:
        raise ValueError(f"--adapter '{path}' is not a gen1 adapter: {error}") from None
    if METADATA_KEY not in metadata:
        raise ValueError(f"--adapter '{path}' is not a gen1 adapter (a safetensors file without "
                         f"'{METADATA_KEY}' metadata; `gen1 customize` writes adapters)")
    try:
        info = json.loads(metadata[METADATA_KEY])
    except ValueError:
        info = None
    if not isinstance(info, dict) or not {"kind", "targets"} <= info.keys():
        raise ValueError(f"--adapter '{path}': its '{METADATA_KEY}' metadata is damaged")
    return info


def _check_arguments(args) -> tuple[EditRequest, ModelSource, dict | None]:
    """Every check that needs no model and no decoded video, in the order a user fixes them."""
    request = request_from_args(args)
    check_request(request)
    _check_loading_knobs(args)
    _check_files(args)
    adapter = None if args.adapter is None else _check_adapter(args.adapter)  # a local file: before any model
    _check_tracker(request)
    if request.imagic_scale is not None and (adapter is None or "imagic" not in adapter):
        raise ValueError("--imagic-scale needs an Imagic adapter: --adapter DIR, a folder written by gen1 customize "
                         "--imagic")
    source = _check_model(args)
    request = _with_model_defaults(request, source)
    _check_tracker_model(request)
    return request, source, adapter


def _with_model_defaults(request: EditRequest, source: ModelSource) -> EditRequest:
    """--size and --guidance not given: the model's own (:mod:`gen1.model_defaults`), said in one line; read from
    its folder (a public base's image size) before any model is loaded, as the pipeline would choose them."""
    defaults = source.recorded_defaults()
    short_side = None if defaults.trained_size or request.size is not None else source_short_side(request.input)
    request, chosen = with_model_defaults(request, defaults, short_side)
    if chosen:
        print(f"defaults: {', '.join(chosen)}")
    return request


def _load_pipeline(source: ModelSource, args, adapter: dict | None):
    pipe = load_model(source, report=print)
    if adapter is not None:
        from gen1.adapters import load_adapter  # lazy: keeps this module's import light (no torch when it loads)
        from gen1.imagic import load_imagic_adapter  # lazy: keeps this module's import light

        try:
            (load_imagic_adapter if "imagic" in adapter else load_adapter)(pipe, args.adapter)
        except ValueError as error:
            raise ValueError(f"--adapter does not fit {source.describe()}: {error}") from None
        details = [str(adapter["kind"])] + ([f"rank {adapter['rank']}"] if adapter.get("rank") is not None else [])
        details.append(f"{len(adapter['targets'])} layers" if adapter["targets"] else "every UNet weight")
        if "imagic" in adapter:
            details.append(f"Imagic embeddings for '{adapter['imagic'].get('text', '?')}'")
        print(f"applied adapter {args.adapter} ({', '.join(details)})")
    if args.lora is not None:
        lora_scale = 1.0 if args.lora_scale is None else args.lora_scale
        try:
            targets = pipe.load_lora_weights(source.lora, scale=lora_scale)
        except ValueError as error:
            raise ValueError(f"--lora: {error}") from None
        print(f"applied LoRA {args.lora} ({len(targets)} layers, scale {lora_scale:g})")
    return pipe


def run(args: argparse.Namespace) -> int:
    request, source, adapter = _check_arguments(args)
    device, dtype = device_and_dtype(args)
    apply_threads(args.threads)
    inputs = read_inputs(request)  # before loading the model: a bad file costs seconds, not a model load

    pipe = _load_pipeline(source, args, adapter)
    pipe.cast(dtype).to(device)  # loaded in fp32, cast once (adapter layers included)
    if args.compile:
        pipe.compile_denoiser()  # in place: the UNet (and a ControlNet) stay the same objects
    result = run_edit(pipe, request, inputs)
    frames = f"{result.num_frames} frame{'' if result.num_frames == 1 else 's'}"
    print(f"wrote {result.output} ({frames} at {float(result.fps):.3f} fps)")
    if result.compare is not None:
        print(f"wrote {result.compare}")
    return 0
