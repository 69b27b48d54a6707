"""``gen1 customize``: fine-tune a gen1 model on 15-30 images of a subject or style; save a small adapter.

Example::

    gen1 customize --model my-gen1-pipeline/ --images corgi/ --out corgi.safetensors --lora-rank 4
    gen1 edit input.mp4 -o out.mp4 --reference corgi/1.png --adapter corgi.safetensors
"""

from __future__ import annotations

from gen1.commands._common import (
    add_threads_argument,
    apply_threads,
    check_integer,
    check_model_files,
    check_number,
    check_output_file,
    check_seed,
    seed_value,
)

FALLBACK_SIZE = 256  # --size for a model that records no trained size (gen1.model_defaults)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "customize",
        help="fine-tune on a few images (LoRA by default) and save an adapter",
        description="Train the model to reproduce each image given its own CLIP image embedding (images are "
        "1-frame clips in image mode, structure from their depth). LoRA on the spatial attention "
        "(to_q/to_k/to_v/to_out.0) by default, or --full fine-tuning of the whole UNet (a large adapter). Defaults come from "
        "gen1/configs/customize.yaml.",
    )
    parser.add_argument("--model", required=True, help="gen1 pipeline directory (unet/ vae/ scheduler/ ...)")
    parser.add_argument("--images", required=True, help="folder of images of the subject or style")
    parser.add_argument("--out", required=True, help="adapter file to write (.safetensors)")
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
                        help="square training size in pixels (default: the size the model was trained at, else 256)")
    parser.add_argument("--depth-model", help="depth estimator (default: MODEL/depth_estimator)")
    parser.add_argument("--content-model", help="content encoder (default: MODEL/content_encoder)")
    add_threads_argument(parser)
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


def _size_from_model(args, model) -> None:
    """--size not given: the size the model was trained at (:mod:`gen1.model_defaults`); given far from it: a warning."""
    import warnings

    from gen1.model_defaults import far_from_trained, read_model_defaults

    trained = read_model_defaults(model).trained_size
    if args.size is None:
        args.size = trained or FALLBACK_SIZE
        print(f"defaults: --size {args.size}" + (" (the model's trained size)" if trained else ""))
    warning = far_from_trained(args.size, trained)
    if warning is not None:
        warnings.warn(warning, UserWarning)


def load_settings(args):
    """Packaged defaults (gen1/configs/customize.yaml) overridden by the flags given."""
    from pathlib import Path

    import yaml

    from gen1.training.customize import CustomizeSettings

    defaults = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "customize.yaml").read_text())
    flags = dict(lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, full=args.full,
                 include_temporal=args.include_temporal, steps=args.steps, lr=args.lr,
                 batch_size=args.batch_size, seed=args.seed)
    defaults.update({k: v for k, v in flags.items() if v is not None})
    return CustomizeSettings(**defaults).validate()


def run(args) -> int:
    from pathlib import Path

    import torch

    from gen1.training.components import load_content, load_depth, load_vae
    from gen1.adapters import save_adapter
    from gen1.training.customize import encode_images, train_adapter
    from gen1.training.model import load_noise_scheduler
    from gen1.training.preprocess import ClipEncoder
    from gen1.video import IMAGE_SUFFIXES
    from gen1.unet import VideoUNet

    _check_arguments(args)
    settings = load_settings(args)
    model = Path(args.model)
    if not (model / "unet" / "config.json").is_file():
        raise FileNotFoundError(f"--model {args.model!r} has no unet/config.json (expected a gen1 pipeline directory)")
    check_model_files("--model", model)
    _size_from_model(args, model)
    images = Path(args.images)
    if not images.is_dir():
        raise FileNotFoundError(f"--images folder not found: {args.images!r}")
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"--images {args.images!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    out = check_output_file("--out", args.out)
    if out.exists() and any(out.resolve().is_relative_to(d.resolve()) for d in (model, images)):
        raise ValueError(f"--out '{args.out}' would overwrite a file of --model or --images; choose another path")
    apply_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(settings.seed)
    encoder = ClipEncoder(load_vae(args.model, device, torch.float32), load_depth(args.model, args.depth_model, device),
                          load_content(args.model, args.content_model, device), device=device)
    data = encode_images(paths, encoder, args.size)
    unet = VideoUNet.from_pretrained(str(model), subfolder="unet").to(device)
    losses = train_adapter(unet, data, load_noise_scheduler(str(model)), settings, device=device)
    path = save_adapter(unet, args.out)
    print(f"trained on {len(paths)} images for {settings.steps} steps (loss {losses[0]:.4f} -> {losses[-1]:.4f}); "
          f"adapter {path} ({path.stat().st_size / 1024:.1f} KiB)")
    return 0
