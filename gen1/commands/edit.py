"""``gen1 edit``: edit a video by a prompt or reference image, keeping its structure (depth) and audio.

Example::

    gen1 edit input.mp4 -o out.mp4 --prompt "a watercolor painting" --structure-level 3 \\
        --guidance 7.5 --temporal-guidance 1.2 --compare compare.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
    content.add_argument(
        "--content-weights", type=float, nargs="+", metavar="W",
        help="one weight >= 0 per prompt, then per reference image; normalised to sum to 1 (default: equal)",
    )
    knobs = parser.add_argument_group("guidance and structure")
    knobs.add_argument("--structure-level", type=float, default=0.0, help="t_s in [0, 7]: 0 = full depth detail")
    knobs.add_argument("--guidance", type=float, default=7.5, help="content guidance scale w (default 7.5)")
    knobs.add_argument("--temporal-guidance", type=float, default=1.0, help="temporal guidance scale w_t (default 1)")
    knobs.add_argument("--steps", type=int, default=30, help="denoising steps (default 30)")
    knobs.add_argument("--scheduler", choices=SCHEDULERS, help="sampler (default: the model's own)")
    knobs.add_argument("--strength", type=float, default=1.0, help="in (0, 1]: start from the noised source below 1")
    knobs.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    knobs.add_argument("--mask", help="mask image or video: white = edit, black = keep the source")
    knobs.add_argument("--depth", help="your own structure (depth video or image, 1 = near) instead of the estimate")
    io = parser.add_argument_group("input, output and model")
    io.add_argument("--model", help="pipeline directory (Gen1Pipeline.save_pretrained); default: the bundled model")
    io.add_argument("--size", type=int, default=512,
                    help="short side of the output in pixels, a multiple of 8 up to 4096 (default 512)")
    io.add_argument("--fps", type=float, help="resample the input to this frame rate (default: keep)")
    io.add_argument("--start", type=float, default=0.0, help="start time in seconds")
    io.add_argument("--duration", type=float, help="duration in seconds")
    io.add_argument("--max-frames", type=int, help="at most this many frames")
    io.add_argument("--window", type=int, help="frames per temporal window (default: the model's clip length)")
    io.add_argument("--overlap", type=int, help="frames shared by neighbouring windows (default: window // 4)")
    io.add_argument("--compare", metavar="PATH", help="also write source | depth | output (.png/.jpg or .mp4)")
    io.add_argument("--adapter", help="customisation adapter (.safetensors from `gen1 customize`) to apply")
    io.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    io.add_argument("--dtype", choices=DTYPES, help="model dtype (default: fp16 on cuda, fp32 on cpu)")
    io.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the UNet: a one-off compilation at start-up for faster steps (worth it on GPUs)",
    )
    parser.set_defaults(func=run)


def resolve_model_dir(model: str | None) -> Path:
    """The pipeline directory to load, with clear errors for missing / unknown directories."""
    if model is None:
        from gen1.demo import bundled_model_dir

        return bundled_model_dir()  # FileNotFoundError naming the path if the package data is missing
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"--model directory not found: '{path}'")
    if not (path / "model_index.json").is_file():
        raise ValueError(f"--model '{path}' is not a gen1 pipeline directory (no model_index.json)")
    return path


def _check_inputs(args) -> None:
    from gen1.atomic import check_output_path

    for flag, value in (("INPUT", args.input), ("--mask", args.mask), ("--depth", args.depth),
                        ("--adapter", args.adapter)):
        if value is not None and not Path(value).is_file():
            raise FileNotFoundError(f"{flag} file not found: '{value}'")
    for value in args.reference:
        if not Path(value).is_file():
            raise FileNotFoundError(f"--reference file not found: '{value}'")
    if not args.prompt and not args.reference:
        raise ValueError("give --prompt and/or --reference for the content of the edit")
    from gen1.media import check_size

    check_size(args.size, "--size")  # before any decoding: a multiple of 8, at most MAX_SIZE
    check_output_path(args.output)
    from gen1.video import OUTPUT_VIDEO_SUFFIXES

    if Path(args.output).suffix.lower() not in OUTPUT_VIDEO_SUFFIXES:
        raise ValueError(f"-o/--output must end in {', '.join(OUTPUT_VIDEO_SUFFIXES)}, got '{args.output}'")
    if args.compare is not None:
        check_output_path(args.compare)
        from gen1.comparison import IMAGE_SUFFIXES as COMPARE_IMAGES, VIDEO_SUFFIXES as COMPARE_VIDEOS

        if Path(args.compare).suffix.lower() not in COMPARE_IMAGES | COMPARE_VIDEOS:
            raise ValueError(f"--compare must end in one of {sorted(COMPARE_IMAGES | COMPARE_VIDEOS)}, got '{args.compare}'")
        if Path(args.compare).resolve() == Path(args.output).resolve():
            raise ValueError(f"--compare must differ from --output, got '{args.compare}' for both")


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


def _mask_for(path: str, clip_args: dict, size: int, clip):
    """The mask at the clip's frame size (same resize policy as the video), as float (F|1, 1, H, W)."""
    import torch

    from gen1.masking import mask_to_tensor

    mask = mask_to_tensor(_read_media(path, clip_args, size))
    if tuple(mask.shape[-2:]) != (clip.height, clip.width):
        raise ValueError(
            f"--mask size {mask.shape[-1]}x{mask.shape[-2]} (after resizing to --size {size}) does not match "
            f"the video's {clip.width}x{clip.height}"
        )
    return torch.as_tensor(mask)


def run(args: argparse.Namespace) -> int:
    import torch

    from gen1.pipeline import Gen1Pipeline
    from gen1.video import read_video, write_video

    _check_inputs(args)
    model_dir = resolve_model_dir(args.model)
    device, dtype = _device_and_dtype(args)
    clip_args = dict(target_fps=args.fps, start=args.start, duration=args.duration, max_frames=args.max_frames)
    clip = read_video(args.input, size=args.size, **clip_args)
    mask = None if args.mask is None else _mask_for(args.mask, clip_args, args.size, clip)
    depth = None
    if args.depth is not None:
        from gen1.depth import load_structure

        depth = load_structure(_read_media(args.depth, clip_args, args.size))

    pipe = Gen1Pipeline.from_pretrained(model_dir)
    if args.adapter is not None:
        from gen1.training.customize import load_adapter

        load_adapter(pipe, args.adapter)
    if args.scheduler is not None:
        pipe.scheduler = _scheduler(args.scheduler, pipe.scheduler.config)
    pipe.cast(dtype).to(device)  # loaded in fp32, cast once (adapter layers included)
    if args.compile:
        pipe.unet.compile()  # in place: the pipeline keeps the same VideoUNet object and its attributes
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    result = pipe(
        clip.frames,
        prompt=args.prompt or None,
        reference_image=args.reference or None,
        content_weights=args.content_weights,
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
        output_type="pt",
    )
    write_video(args.output, result.frames, clip.fps, audio_from=clip if clip.has_audio else None)
    print(f"wrote {args.output} ({result.frames.shape[0]} frames at {float(clip.fps):.3f} fps)")
    if args.compare is not None:
        from gen1.comparison import write_comparison

        write_comparison(args.compare, clip.frames, result.depth, result.frames, clip.fps)
        print(f"wrote {args.compare}")
    return 0
