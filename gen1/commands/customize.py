"""``gen1 customize``: fine-tune a gen1 model on 15-30 images of a subject or style; save a small adapter.

Examples::

    gen1 customize --model my-gen1-pipeline/ --images corgi/ --out corgi.safetensors --lora-rank 4
    gen1 edit input.mp4 -o out.mp4 --reference corgi/1.png --adapter corgi.safetensors

    # the public route: the subject is tied to an instance prompt (DreamBooth-LoRA style)
    gen1 customize --base stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --motion-adapter guoyww/animatediff-motion-adapter-v1-5-2 --controlnet lllyasviel/control_v11f1p_sd15_depth \\
        --depth-model lllyasviel/Annotators/dpt_hybrid-midas-501f0c75.pt \\
        --images corgi/ --prompt "a photo of sks dog" --out corgi-sd15.safetensors
    gen1 edit input.mp4 -o out.mp4 --prompt "a photo of sks dog running" --adapter corgi-sd15.safetensors \\
        --base ... --motion-adapter ... --controlnet ... --depth-model ...

Checkpoints go to ``OUT.work`` while it runs (every 100 steps; removed once the adapter is written). Ctrl-C saves
one after the current step and exits with 130; the same command with ``--resume`` continues from it.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from gen1.checks import check_integer, check_model_files, check_number, check_seed, seed_value
from gen1.commands._common import add_threads_argument, apply_threads, check_output_file
from gen1.commands._imagic import (add_imagic_arguments, check_work_dir, refuse_imagic_flags, report_interrupted,
                                   run_imagic, work_dir)
from gen1.commands._models import NAME_HELP, model_parts

FALLBACK_SIZE = 256  # --size for a model that records no trained size (gen1.model_defaults)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "customize",
        help="fine-tune on a few images (LoRA by default) and save an adapter",
        description="Native Gen-1 models learn to reproduce each image given its own CLIP image embedding; the public "
        "route (--base/--motion-adapter/--controlnet, or a saved public --model) learns it given --prompt (an "
        "instance prompt such as 'a photo of sks dog'; default: the empty prompt). Images are 1-frame clips in image "
        "mode, with structure from their depth. LoRA on the spatial attention (to_q/to_k/to_v/to_out.0) by default, "
        "or --full fine-tuning of the whole UNet (a large adapter). Defaults come from gen1/configs/customize.yaml.",
    )
    parser.add_argument("--model", metavar="DIR|REPO",
                        help=f"gen1 pipeline (unet/ vae/ scheduler/ ...), {NAME_HELP} (default: the bundled demo "
                        "model, as gen1 edit)")
    parser.add_argument("--base", metavar="DIR|REPO", help="public route: the Stable Diffusion 1.x base (as gen1 edit)")
    parser.add_argument("--motion-adapter", metavar="PATH|REPO",
                        help="public route: the AnimateDiff motion modules you edit with (off while training)")
    parser.add_argument("--controlnet", metavar="DIR|REPO", help="public route: the depth ControlNet")
    parser.add_argument("--prompt", help="public route: the instance prompt that names the subject (default: empty); "
                        "with --imagic, on any route: the target text, the edit you want (required)")
    parser.add_argument("--images", help="folder of images of the subject or style (or --imagic --video CLIP)")
    parser.add_argument("--out", required=True, help="adapter file to write (.safetensors; with --imagic a folder)")
    parser.add_argument("--lora-rank", type=int, help="LoRA rank (default 4)")
    parser.add_argument("--lora-alpha", type=float, help="LoRA alpha (default: the rank)")
    parser.add_argument("--full", action="store_true", default=None, help="fine-tune every UNet weight instead of LoRA (adapter as large as the UNet)")
    parser.add_argument("--include-temporal", action="store_true", default=None,
                        help="also adapt the temporal attention")
    parser.add_argument("--steps", type=int, help="optimizer steps (default 400)")
    parser.add_argument("--lr", type=float, help="learning rate (default 1e-4)")
    parser.add_argument("--batch-size", type=int, help="images per step (default 2)")
    parser.add_argument("--seed", type=seed_value, help="random seed, 0 to 2**64-1 (default 0)")
    parser.add_argument("--size", type=int,
                        help="training size in pixels: the side of the square images, or with --imagic the clip's "
                        "short side, its aspect kept (default: the size the model was trained at, else 256)")
    parser.add_argument("--depth-model", metavar="PATH|REPO",
                        help="depth estimator (default: MODEL/depth_estimator; the public route assembled from its "
                        "parts needs one)")
    parser.add_argument("--content-model", metavar="PATH|REPO",
                        help="native models: content encoder or CLIP model, a folder or a Hub repo id (default: "
                        "MODEL/content_encoder)")
    add_threads_argument(parser)
    add_imagic_arguments(parser)
    parser.set_defaults(func=run)


def _check_arguments(args) -> None:
    """The flags the user gave (the YAML defaults are checked by CustomizeSettings.validate)."""
    for flag, value in (("--lora-rank", args.lora_rank), ("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--threads", args.threads)):
        if value is not None:
            check_integer(flag, value, low=1)
    for flag, value in (("--lora-alpha", args.lora_alpha), ("--lr", args.lr)):
        if value is not None:
            check_number(flag, value, low=0, low_open=True)
    check_seed("--seed", args.seed)
    if args.size is not None:
        check_integer("--size", args.size, low=8)
        if args.size % 8:
            raise ValueError(f"--size must be a multiple of 8, got {args.size}")


def _size_from_model(args, source) -> None:
    """--size not given: the size the model was trained at (:mod:`gen1.model_defaults`; a public base's image
    size); given far from it: a warning."""

    from gen1.model_defaults import far_from_trained  # lazy: keeps this module's import light (no torch when it loads)

    trained = source.recorded_defaults().trained_size
    if args.size is None:
        args.size = trained or FALLBACK_SIZE
        print(f"defaults: --size {args.size}" + (" (the model's trained size)" if trained else ""))
    warning = far_from_trained(args.size, trained)
    if warning is not None:
        warnings.warn(warning, UserWarning)


def load_settings(args):
    """Packaged defaults (gen1/configs/customize.yaml) overridden by the flags given."""

    import yaml  # lazy: yaml is heavy and only this path needs it

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.customize import CustomizeSettings

    defaults = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "customize.yaml").read_text())
    flags = dict(lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, full=args.full,
                 include_temporal=args.include_temporal, steps=args.steps, lr=args.lr,
                 batch_size=args.batch_size, seed=args.seed)
    defaults.update({k: v for k, v in flags.items() if v is not None})
    return CustomizeSettings(**defaults).validate()


def _check_model(args):
    """The model to customise (a :class:`gen1.model_sources.ModelSource`), its flags consistent with its route."""

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.model_sources import ModelSource, check_model_source, resolve_model_dir

    if any(value is not None for value in (args.base, args.motion_adapter, args.controlnet)):
        source = check_model_source(args)  # the parts resolved and checked against each other; --depth-model needed
    else:
        model = resolve_model_dir(args.model)  # no --model: the bundled demo model, as gen1 edit and demo take
        if not (Path(model) / "unet" / "config.json").is_file():
            raise FileNotFoundError(f"--model {str(args.model or model)!r} has no unet/config.json (expected a gen1 "
                                    "pipeline directory)")
        check_model_files("--model", model)
        source = ModelSource(model_dir=Path(model), label=args.model)
    if source.route.text_content:
        if args.content_model is not None:
            raise ValueError(f"--content-model does not apply to {source.describe()}, {source.route.description}: "
                             "its content is the --prompt")
        if args.depth_model is None and not source.is_public and not (source.model_dir / "depth_estimator").is_dir():
            raise ValueError(f"{source.describe()} has no depth estimator: give --depth-model")
    elif args.prompt is not None and not getattr(args, "imagic", False):  # --imagic: the target text
        raise ValueError(f"--prompt does not apply to {source.describe()}, {source.route.description}: it is "
                         "customised on each image's own CLIP embedding")
    return source


def _image_paths(args):
    from gen1.media import IMAGE_SUFFIXES  # lazy: keeps this module's import light (no torch when it loads)

    images = Path(args.images)
    if not images.is_dir():
        raise FileNotFoundError(f"--images folder not found: {args.images!r}")
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"--images {args.images!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def _train_native(args, source, paths, settings, device, **checkpoints):
    import torch  # lazy: torch is heavy and only this path needs it

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.components import load_content, load_depth, load_vae

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.customize import encode_images, train_adapter

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.model import load_noise_scheduler
    from gen1.training.preprocess import ClipEncoder  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.unet import VideoUNet  # lazy: keeps this module's import light (no torch when it loads)

    model = str(source.model_dir)
    encoder = ClipEncoder(load_vae(model, device, torch.float32), load_depth(model, args.depth_model, device),
                          load_content(model, args.content_model, device), device=device)
    data = encode_images(paths, encoder, args.size)
    unet = VideoUNet.from_pretrained(model, subfolder="unet").to(device)
    return unet, train_adapter(unet, data, load_noise_scheduler(model), settings, device=device, **checkpoints)


def _train_public(args, source, paths, settings, device, **checkpoints):
    """LoRA of the public route's image UNet, on the images given the instance prompt (see gen1.training.customize)."""
    from diffusers import DDPMScheduler  # lazy: diffusers is heavy and only this path needs it

    from gen1.model_sources import load_model  # lazy: keeps this module's import light (no torch when it loads)

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.customize import controlnet_image_inputs, encode_public_images, train_adapter

    pipe = load_model(source, report=print)
    estimator = pipe.depth_estimator
    if args.depth_model is not None and not source.is_public:  # a saved public pipeline, another estimator
        from gen1.depth import load_depth_estimator  # lazy: keeps this module's import light (no torch when it loads)
        from gen1.hub import DEPTH_MODEL, resolve  # lazy: keeps this module's import light (no torch when it loads)

        estimator = load_depth_estimator(resolve(args.depth_model, DEPTH_MODEL, flag="--depth-model"))
    pipe.to(device)
    estimator.to(device)
    data = encode_public_images(paths, pipe, estimator, args.prompt or "", args.size)
    # the schedule the edits denoise with (the pipeline's; AnimateDiff's linear betas when assembled from parts)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    losses = train_adapter(pipe.unet, data, scheduler, settings, device=device,
                           draw=controlnet_image_inputs(pipe.controlnet), **checkpoints)
    pipe.unet._gen1_adapter["prompt"] = args.prompt or ""  # recorded in the adapter's metadata
    return pipe.unet, losses


def run(args) -> int:
    import shutil

    import torch  # lazy: torch is heavy and only this path needs it

    from gen1.adapters import save_adapter  # lazy: keeps this module's import light (no torch when it loads)
    if args.imagic:  # one clip and a target text (gen1.commands._imagic)
        return run_imagic(args, _check_model, _size_from_model)
    refuse_imagic_flags(args)
    if args.images is None:
        raise ValueError("give --images FOLDER (or --imagic --video CLIP --prompt TEXT)")
    _check_arguments(args)
    settings = load_settings(args)
    paths = _image_paths(args)  # the user's own files first: a typo costs nothing, not a model download
    out = check_output_file("--out", args.out, suffixes={".safetensors"})  # gen1 edit --adapter reads safetensors
    work = check_work_dir(work_dir(out), resume=args.resume)  # Ctrl-C's checkpoint goes there (OUT.work)
    source = _check_model(args)
    _size_from_model(args, source)
    inputs = [Path(folder) for folder in (source.model_dir, source.base, args.images) if folder is not None]
    if out.exists() and any(out.resolve().is_relative_to(folder.resolve()) for folder in inputs):
        raise ValueError(f"--out '{args.out}' would overwrite a file of the model or --images; choose another path")
    apply_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(settings.seed)
    train = _train_public if source.route.text_content else _train_native  # a prompt, or its CLIP embedding
    from gen1.training.customize import fingerprint  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.customize import TrainingDiverged  # lazy: keeps this module's import light
    from gen1.training.interrupt import TrainingInterrupted  # lazy: keeps this module's import light

    if train is _train_native:  # the encoders, a path or a Hub id, resolved before they are fingerprinted
        from gen1.hub import resolve_encoders  # lazy: keeps this module's import light (no torch when it loads)

        args.depth_model, args.content_model = resolve_encoders(args.depth_model, args.content_model)
    key = fingerprint(paths, args.size, settings, model_parts(source, args), args.prompt or "")
    try:
        unet, losses = train(args, source, paths, settings, device, work_dir=work, resume=args.resume, key=key)
    except TrainingDiverged:
        shutil.rmtree(work, ignore_errors=True)  # a resume would diverge again; a lower --lr is another run
        raise
    except (TrainingInterrupted, KeyboardInterrupt) as stop:
        return report_interrupted(stop, work)
    try:
        path = save_adapter(unet, args.out)  # atomic: a Ctrl-C here leaves --out as it was
    except KeyboardInterrupt:
        print(f"gen1 customize: stopped while writing the adapter; '{args.out}' was not written. The last checkpoint, "
              f"if any, is in '{work}': resume with the same command and --resume", file=sys.stderr)
        return 130
    shutil.rmtree(work, ignore_errors=True)  # the adapter is written: its checkpoints are no longer needed
    print(f"trained on {len(paths)} images for {settings.steps} steps ({loss_summary(losses)}); "
          f"adapter {path} ({path.stat().st_size / 1024:.1f} KiB)")
    return 0


def loss_summary(losses: list[float]) -> str:
    """How the loss moved, told by the means of its first and last steps (a quarter of them, 1 to 10 each): one
    step's loss is one noise draw at one timestep, and two of them said more of the draws than of the training."""
    count = max(1, min(10, len(losses) // 4))
    first, last = sum(losses[:count]) / count, sum(losses[-count:]) / count
    told = "loss" if count == 1 else f"mean loss of the first and last {count} steps"
    return f"{told} {first:.4f} -> {last:.4f}"
