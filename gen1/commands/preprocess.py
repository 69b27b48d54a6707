"""``gen1 preprocess``: cache VAE latents, depth and CLIP embeddings of videos/images into shards.

Example (one process; many with ``accelerate launch --multi_gpu --num_processes N -m gen1 preprocess ...`` on
GPUs, ``ACCELERATE_USE_CPU=true torchrun --nproc_per_node N -m gen1 preprocess ...`` on CPU)::

    gen1 preprocess --input videos/ --out shards/ --model sd-2-1/ --depth-model dpt_hybrid.pt \\
        --content-model clip-vit-large-patch14/ --clip-length 8 --stride 4 --size 256
"""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="cache latents, depth and CLIP embeddings of videos/images as training shards",
        description="Read a folder (or CSV/JSONL list) of videos and images, cut clips, encode them with the "
        "VAE, the depth estimator and the content encoder, and write safetensors shards plus index.json. "
        "Resumable (finished shards are skipped); corrupt inputs are logged and counted. Runs on every "
        "process of a launcher (each takes every N-th shard): accelerate launch --multi_gpu on GPUs, "
        "ACCELERATE_USE_CPU=true torchrun --nproc_per_node N on CPU.",
    )
    parser.add_argument("--input", required=True, help="folder of videos/images, or a .csv/.jsonl list (path[,caption])")
    parser.add_argument("--out", required=True, help="shard directory")
    parser.add_argument("--model", required=True, help="Stable Diffusion or gen1 pipeline directory (its vae/)")
    parser.add_argument("--depth-model", help="depth estimator (default: MODEL/depth_estimator)")
    parser.add_argument("--content-model", help="content encoder or CLIP folder (default: MODEL/content_encoder)")
    parser.add_argument("--clip-length", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--stride", type=int, default=4, help="keep every N-th source frame (default 4)")
    parser.add_argument("--size", type=int, default=256, help="square frame size in pixels (default 256)")
    parser.add_argument("--shard-size", type=int, default=16, help="input files per shard (default 16)")
    parser.add_argument("--max-clips-per-video", type=int, help="cap on clips taken from one video")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"),
                        help="storage dtype in the shards (default float16)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per encoder forward (default 8)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import logging
    from pathlib import Path

    import torch
    from accelerate import Accelerator

    from gen1.training.components import load_content, load_depth, load_vae
    from gen1.training.launch import check_process_count
    from gen1.training.preprocess import ClipEncoder, PreprocessSettings, list_inputs, preprocess

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not Path(args.model).exists():
        raise FileNotFoundError(f"--model not found: {args.model!r}")
    settings = PreprocessSettings(clip_length=args.clip_length, stride=args.stride, size=args.size,
                                  shard_size=args.shard_size, max_clips_per_video=args.max_clips_per_video,
                                  dtype=args.dtype, batch_size=args.batch_size).validate()
    inputs = list_inputs(args.input)
    accelerator = Accelerator()
    check_process_count(accelerator.num_processes)
    device = accelerator.device
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    encoder = ClipEncoder(load_vae(args.model, device, dtype), load_depth(args.model, args.depth_model, device),
                          load_content(args.model, args.content_model, device), device=device,
                          batch_size=settings.batch_size)
    summary = preprocess(inputs, args.out, encoder, settings, rank=accelerator.process_index,
                         world_size=accelerator.num_processes, barrier=accelerator.wait_for_everyone)
    accelerator.print(f"rank {accelerator.process_index}: wrote {summary['written']} shards, skipped "
                      f"{summary['skipped']} finished ones, {len(summary['failed'])} inputs failed")
    if "index" in summary:
        index = summary["index"]
        print(f"{args.out}: {index['num_clips']} clips in {len(index['shards'])} shards; "
              f"{index['num_failed']} corrupt/unreadable inputs skipped")
    return 0
