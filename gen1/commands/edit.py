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

from gen1.commands._common import (
    add_threads_argument,
    apply_threads,
    check_input_file,
    check_integer,
    check_number,
    check_output_file,
    check_seed,
    errors_naming,
    refuse_overwriting_inputs,
    safetensors_metadata,
    seed_value,
)
from gen1.commands._models import ModelSource, add_model_arguments, check_model_source, load_model, unet_config_of

DTYPES = ("fp32", "fp16", "bf16")
SCHEDULERS = ("ddim", "dpm", "euler")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "edit",
        help="edit a video by a prompt or reference image",
        description="Edit INPUT by content (a --prompt and/or --reference image) while keeping its structure "
        "(depth, obscured by --structure-level) and its audio; writes OUTPUT atomically.",
    )
    parser.add_argument("input", metavar="INPUT", help="source video")
    parser.add_argument("-o", "--output", required=True, help="output video (.mp4/.mov/.m4v)")
    content = parser.add_argument_group("content")
    content.add_argument("--prompt", action="append", default=[], help="text prompt (repeatable)")
    content.add_argument("--reference", action="append", default=[], metavar="IMG", help="reference image (repeatable)")
    content.add_argument("--negative-prompt", metavar="TEXT",
                         help="public route: what the edit should not look like (default: the empty prompt)")
    content.add_argument(
        "--content-weights", type=float, nargs="+", metavar="W",
        help="one weight >= 0 per prompt, then per reference image; normalised to sum to 1 (default: equal)",
    )
    knobs = parser.add_argument_group("guidance and structure")
    knobs.add_argument("--structure-level", type=float, default=0.0, help="t_s in [0, 7]: 0 = full depth detail")
    knobs.add_argument("--guidance", type=float,
                       help="content guidance scale w (default: the model's recommended w, else 7.5)")
    knobs.add_argument("--temporal-guidance", type=float, default=1.0, help="temporal guidance scale w_t (default 1)")
    knobs.add_argument("--controlnet-scale", type=float, default=1.0,
                       help="public route: strength of the depth ControlNet's guidance, >= 0 (default 1)")
    knobs.add_argument("--steps", type=int, default=30, help="denoising steps (default 30)")
    knobs.add_argument("--scheduler", choices=SCHEDULERS, help="sampler (default: the model's own)")
    knobs.add_argument("--strength", type=float, default=1.0, help="in (0, 1]: start from the noised source below 1")
    knobs.add_argument("--seed", type=seed_value, default=0, help="random seed, 0 to 2**64-1 (default 0)")
    knobs.add_argument("--mask", help="mask image or video: white = edit, black = keep the source")
    knobs.add_argument(
        "--depth",
        help="your own structure instead of the estimate: a depth video, an image (8/16-bit PNG or TIFF, read at "
        "full precision), a .npy array or a folder of images; brighter = nearer unless --depth-invert",
    )
    knobs.add_argument(
        "--depth-invert", action="store_true",
        help="--depth holds distance (far = large), e.g. a Blender Z pass: use 1/distance as the structure",
    )
    io = parser.add_argument_group("input, output and model")
    add_model_arguments(io)
    io.add_argument("--size", type=int,
                    help="short side of the output in pixels, a multiple of 8 up to 4096 (default: the size the "
                    "model was trained at, else 512)")
    io.add_argument("--fps", type=float, help="resample the input to this frame rate (default: keep)")
    io.add_argument("--start", type=float, default=0.0, help="start time in seconds")
    io.add_argument("--duration", type=float, help="duration in seconds")
    io.add_argument("--max-frames", type=int, help="at most this many frames")
    io.add_argument("--window", type=int, help="frames per temporal window (default: the model's clip length)")
    io.add_argument("--overlap", type=int, help="frames shared by neighbouring windows (default: window // 4)")
    io.add_argument("--compare", metavar="PATH", help="also write source | depth | output (.png/.jpg or .mp4)")
    io.add_argument("--adapter", help="customisation adapter (.safetensors from `gen1 customize`) to apply")
    io.add_argument("--lora", metavar="FILE",
                    help="a Stable Diffusion LoRA (.safetensors, diffusers or kohya format) for the UNet")
    io.add_argument("--lora-scale", type=float, default=1.0, help="strength of --lora (default 1)")
    io.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    io.add_argument("--dtype", choices=DTYPES, help="model dtype (default: fp16 on cuda, fp32 on cpu)")
    io.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet: a one-off compilation at start-up for faster steps (worth it on GPUs)",
    )
    add_threads_argument(io)
    parser.set_defaults(func=run)


def _check_content(args) -> None:
    if not args.prompt and not args.reference:
        raise ValueError("give --prompt and/or --reference for the content of the edit")
    if any(not prompt.strip() for prompt in args.prompt):
        raise ValueError("--prompt must not be empty")
    if args.content_weights is not None:
        count = len(args.prompt) + len(args.reference)
        if len(args.content_weights) != count:
            raise ValueError(f"--content-weights needs one weight per --prompt and --reference ({count}), "
                             f"got {len(args.content_weights)}")
        for weight in args.content_weights:
            check_number("--content-weights", weight, low=0)
        if not any(weight > 0 for weight in args.content_weights):
            raise ValueError("--content-weights must not all be 0")


def _check_knobs(args) -> None:
    from gen1.depth.obscure import MAX_LEVEL

    check_number("--structure-level", args.structure_level, low=0, high=MAX_LEVEL)
    if args.guidance is not None:
        check_number("--guidance", args.guidance, low=0)
    check_number("--temporal-guidance", args.temporal_guidance, low=0)
    check_number("--controlnet-scale", args.controlnet_scale, low=0)
    if not math.isfinite(args.lora_scale):
        raise ValueError(f"--lora-scale must be a finite number, got {args.lora_scale:g}")
    check_integer("--steps", args.steps, low=1)
    check_number("--strength", args.strength, low=0, high=1, low_open=True)
    check_seed("--seed", args.seed)
    from gen1.media import check_size

    if args.size is not None:
        check_size(args.size, "--size")  # before any decoding: a multiple of 8, at most gen1.media.MAX_SIZE
    if args.fps is not None:
        check_number("--fps", args.fps, low=0, low_open=True)
    check_number("--start", args.start, low=0)
    if args.duration is not None:
        check_number("--duration", args.duration, low=0, low_open=True)
    if args.max_frames is not None:
        check_integer("--max-frames", args.max_frames, low=1)
    if args.threads is not None:
        check_integer("--threads", args.threads, low=1)


def _check_files(args) -> None:
    """Inputs exist and are what the flag expects; outputs are writable and overwrite no input."""
    from gen1.comparison import IMAGE_SUFFIXES as COMPARE_IMAGES, VIDEO_SUFFIXES as COMPARE_VIDEOS
    from gen1.video import IMAGE_SUFFIXES, OUTPUT_VIDEO_SUFFIXES, VIDEO_SUFFIXES

    check_input_file("INPUT", args.input)
    if Path(args.input).suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"INPUT '{args.input}' is a still image; gen1 edit edits videos ({', '.join(VIDEO_SUFFIXES)})")
    check_input_file("--mask", args.mask)
    check_input_file("--depth", args.depth, directory_ok=True)
    check_input_file("--adapter", args.adapter)
    check_input_file("--lora", args.lora, directory_ok=True)
    for reference in args.reference:
        check_input_file("--reference", reference)
    refuse_overwriting_inputs(
        {"-o/--output": args.output, "--compare": args.compare},
        {"INPUT": args.input, "--mask": args.mask, "--depth": args.depth, "--reference": args.reference,
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
    max_frames, window = limits if limits is not None else (None, args.window)
    if args.window is not None:
        check_integer("--window", args.window, low=1)
        if max_frames is not None and args.window > max_frames:
            raise ValueError(f"--window must be <= {max_frames} (the model's max_frames), got {args.window}")
        window = args.window
    if args.overlap is not None and window is not None:
        check_integer("--overlap", args.overlap, low=0, high=window - 1)
    if not source.is_public and (args.negative_prompt is not None or args.controlnet_scale != 1.0):
        flag = "--negative-prompt" if args.negative_prompt is not None else "--controlnet-scale"
        if not _is_public_folder(source.model_dir):
            raise ValueError(f"{flag} applies to the public route (a text-conditioned model with a ControlNet); "
                             f"{source.describe()} is a native Gen-1 model")
    return source


def _is_public_folder(model_dir: Path) -> bool:
    index = json.loads((model_dir / "model_index.json").read_text(encoding="utf-8"))
    return bool(index.get("controlnet")) and index["controlnet"][0] is not None


def _check_adapter(path: str) -> dict:
    """The adapter's metadata (kind, rank, targets), or ``ValueError`` if the file is no gen1 adapter."""
    from gen1.adapters import METADATA_KEY

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


def _check_arguments(args) -> tuple[ModelSource, dict | None]:
    """Every check that needs no model and no decoded video, in the order a user fixes them."""
    _check_content(args)
    _check_knobs(args)
    _check_files(args)
    source = _check_model(args)
    _apply_model_defaults(args, source)
    adapter = None if args.adapter is None else _check_adapter(args.adapter)
    return source, adapter


def _apply_model_defaults(args, source: ModelSource) -> None:
    """--size and --guidance not given: the model's own (:mod:`gen1.model_defaults`), said in one line."""
    from gen1.model_defaults import FALLBACK_EDIT_SIZE, base_folder_defaults, read_model_defaults

    defaults = base_folder_defaults(source.base) if source.is_public else read_model_defaults(source.model_dir)
    chosen = []
    if args.size is None:
        args.size = defaults.size_or(FALLBACK_EDIT_SIZE)
        chosen.append(f"--size {args.size}" + (" (the model's trained size)" if defaults.trained_size else ""))
    if args.guidance is None:
        args.guidance = defaults.guidance_or()
        chosen.append(f"--guidance {args.guidance:g}" + (" (the model's)" if defaults.guidance_scale is not None else ""))
    if chosen:
        print(f"defaults: {', '.join(chosen)}")


def _device_and_dtype(args):
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"--device must be cpu or cuda, got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    name = args.dtype or ("fp16" if device.startswith("cuda") else "fp32")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]
    return torch.device(device), dtype


def _scheduler(name: str, config):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    cls = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}[name]
    return cls.from_config(config)


def _read_media(path: str, clip_args: dict, size: int):
    """uint8 frames (F, H, W, 3) from an image (one frame) or a video read with the source's timing."""
    from gen1.media import read_frames_or_images

    return read_frames_or_images(path, size=size, **clip_args)


def _read_source(args, clip_args: dict):
    from gen1.video import read_video

    with errors_naming("INPUT"):
        return read_video(args.input, size=args.size, **clip_args)


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


def _user_depth(args, clip_args: dict, clip):
    """--depth as normalised inverse depth (F|1, 1, H, W) at the clip's frame size.

    A depth video is read with the clip's timing (video codecs hold 8 bits anyway); images, ``.npy`` arrays and
    image folders are read at full precision (16-bit PNG/TIFF) and scaled and centre-cropped like the video.
    """
    from gen1.depth import load_structure
    from gen1.video import VIDEO_SUFFIXES

    with errors_naming("--depth"):
        if Path(args.depth).suffix.lower() in VIDEO_SUFFIXES:
            depth = load_structure(_read_media(args.depth, clip_args, args.size), invert=args.depth_invert)
        else:
            depth = load_structure(args.depth, size=(clip.height, clip.width), crop=True, invert=args.depth_invert)
    if depth.shape[0] not in (1, clip.num_frames):
        raise ValueError(f"--depth has {depth.shape[0]} frames but the edited clip has {clip.num_frames} "
                         f"(give one depth map or one per edited frame)")
    return depth


def _load_pipeline(source: ModelSource, args, adapter: dict | None):
    pipe = load_model(source)
    if adapter is not None:
        from gen1.adapters import load_adapter

        try:
            load_adapter(pipe, args.adapter)
        except ValueError as error:
            raise ValueError(f"--adapter does not fit {source.describe()}: {error}") from None
        details = [str(adapter["kind"])] + ([f"rank {adapter['rank']}"] if adapter.get("rank") is not None else [])
        details.append(f"{len(adapter['targets'])} layers" if adapter["targets"] else "every UNet weight")
        print(f"applied adapter {args.adapter} ({', '.join(details)})")
    if args.lora is not None:
        try:
            targets = pipe.load_lora_weights(args.lora, scale=args.lora_scale)
        except ValueError as error:
            raise ValueError(f"--lora: {error}") from None
        print(f"applied LoRA {args.lora} ({len(targets)} layers, scale {args.lora_scale:g})")
    return pipe


def run(args: argparse.Namespace) -> int:
    import torch

    from gen1.video import write_video

    source, adapter = _check_arguments(args)
    device, dtype = _device_and_dtype(args)
    apply_threads(args.threads)
    clip_args = dict(target_fps=args.fps, start=args.start, duration=args.duration, max_frames=args.max_frames)
    clip = _read_source(args, clip_args)
    mask = None if args.mask is None else _mask_for(args.mask, clip_args, args.size, clip)
    depth = None if args.depth is None else _user_depth(args, clip_args, clip)

    pipe = _load_pipeline(source, args, adapter)
    if args.scheduler is not None:
        pipe.scheduler = _scheduler(args.scheduler, pipe.scheduler.config)
    pipe.cast(dtype).to(device)  # loaded in fp32, cast once (adapter layers included)
    if args.compile:
        pipe.unet.compile()  # in place: the pipeline keeps the same VideoUNet object and its attributes
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    result = pipe(
        clip.frames,
        prompt=args.prompt or None,
        negative_prompt=args.negative_prompt,
        reference_image=args.reference or None,
        content_weights=args.content_weights,
        height=clip.height,
        width=clip.width,
        structure_level=args.structure_level,
        guidance_scale=args.guidance,
        temporal_guidance_scale=args.temporal_guidance,
        num_inference_steps=args.steps,
        generator=generator,
        depth=depth,
        mask=mask,
        window_size=args.window,
        window_overlap=args.overlap,
        strength=args.strength,
        controlnet_conditioning_scale=args.controlnet_scale,
        output_type="pt",
    )
    write_video(args.output, result.frames, clip.fps, audio_from=clip if clip.has_audio else None)
    print(f"wrote {args.output} ({result.frames.shape[0]} frames at {float(clip.fps):.3f} fps)")
    if args.compare is not None:
        from gen1.comparison import write_comparison

        write_comparison(args.compare, clip.frames, result.depth, result.frames, clip.fps)
        print(f"wrote {args.compare}")
    return 0
