"""``gen1 preprocess``: cache VAE latents, depth and CLIP embeddings of videos/images into shards.

Example (one process; many with ``accelerate launch --multi_gpu --num_processes N -m gen1 preprocess ...`` on
GPUs, ``ACCELERATE_USE_CPU=true torchrun --nproc_per_node N -m gen1 preprocess ...`` on CPU)::

    gen1 preprocess --input videos/ --out shards/ --model sd-2-1/ --depth-model dpt_hybrid.pt \\
        --content-model clip-vit-large-patch14/ --clip-length 8 --stride 4 --size 256

On Ray Data (``pip install gen1[ray]``), locally or on a cluster (``--address``), same shards and index::

    gen1 preprocess --engine ray --address ray://head:10001 --input /shared/videos --out /shared/shards ...
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path


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
    parser.add_argument("--model", required=True, metavar="PATH|REPO",
                        help="Stable Diffusion or gen1 pipeline (its vae/), a folder or a Hub repo id such as "
                        "stable-diffusion-v1-5/stable-diffusion-v1-5")
    parser.add_argument("--depth-model", metavar="PATH|REPO", help="depth estimator, a path or a Hub repo id "
                        "(default: MODEL/depth_estimator)")
    parser.add_argument("--content-model", metavar="PATH|REPO",
                        help="content encoder or CLIP model, a folder or a Hub repo id such as "
                        "openai/clip-vit-large-patch14 (default: MODEL/content_encoder)")
    parser.add_argument("--clip-length", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--stride", type=int, default=4, help="keep every N-th source frame (default 4)")
    parser.add_argument("--size", type=int, default=256, help="square frame size in pixels (default 256)")
    parser.add_argument("--shard-size", type=int, default=16, help="input files per shard (default 16)")
    parser.add_argument("--max-clips-per-video", type=int, help="cap on clips taken from one video")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"),
                        help="storage dtype in the shards (default float16)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per encoder forward (default 8)")
    parser.add_argument("--engine", default="accelerate", choices=("accelerate", "ray"),
                        help="accelerate: this process group (default); ray: Ray Data, decode tasks feeding encoder "
                        "actors (pip install gen1[ray])")
    parser.add_argument("--address", help="--engine ray: the Ray cluster to join (default: a local Ray)")
    parser.add_argument("--encoders", type=int, help="--engine ray: encoder actors (default: one per GPU, or 1)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from accelerate import Accelerator  # lazy: accelerate is heavy and only this path needs it

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.launch import check_process_count

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.preprocess import (
        PreprocessSettings,
        check_out,
        list_inputs,
        load_clip_encoder,
        model_paths,
        preprocess,
    )

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from gen1.hub import resolve_preprocess_models  # lazy: keeps this module's import light (no torch when it loads)

    # paths or Hub ids, before anything reads them (a missing local --model: one line naming it); Ray's encoder
    # actors, maybe on other nodes with caches of their own, get the names as given and resolve them themselves
    args.names = (args.model, args.depth_model, args.content_model)
    args.model, args.depth_model, args.content_model = resolve_preprocess_models(*args.names)
    settings = PreprocessSettings(clip_length=args.clip_length, stride=args.stride, size=args.size,
                                  shard_size=args.shard_size, max_clips_per_video=args.max_clips_per_video,
                                  dtype=args.dtype, batch_size=args.batch_size).validate()
    inputs = list_inputs(args.input)
    check_out(Path(args.out), args.input, args.model)
    args.models = model_paths(args.model, args.depth_model, args.content_model)
    if args.engine == "ray":
        return run_ray(args, inputs, settings)
    if args.address or args.encoders:
        raise ValueError("--address and --encoders apply to --engine ray only")
    accelerator = Accelerator()
    check_process_count(accelerator.num_processes)
    encoder = load_clip_encoder(args.model, args.depth_model, args.content_model, accelerator.device,
                                batch_size=settings.batch_size)
    from tqdm.contrib.logging import logging_redirect_tqdm  # lazy: tqdm is heavy and only this path needs it

    with logging_redirect_tqdm():  # a skipped input's warning on a line of its own, not inside the bar's line
        summary = preprocess(inputs, args.out, encoder, settings, rank=accelerator.process_index,
                             world_size=accelerator.num_processes, barrier=accelerator.wait_for_everyone,
                             models=args.models)
    accelerator.print(f"rank {accelerator.process_index}: wrote {summary['written']} shards, skipped "
                      f"{summary['skipped']} finished ones, {len(summary['failed'])} inputs failed")
    if "index" in summary:
        index = summary["index"]
        print(f"{args.out}: {index['num_clips']} clips in {len(index['shards'])} shards; "
              f"{index['num_failed']} corrupt/unreadable inputs skipped")
        check_some_clips(args.out, index)
    return 0


def check_some_clips(out: str, index: dict) -> None:
    """A shard set without a single clip is a failed run (every input unreadable or too short): one line, exit 1."""
    if index["num_clips"] == 0:
        raise ValueError(f"--out {out!r} holds no clips: all {index['num_inputs']} input(s) failed (see the warnings "
                         "above); nothing to train on")


def run_ray(args, inputs, settings) -> int:
    """``--engine ray``: join (or start) Ray, preprocess on Ray Data, print the summary."""

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.preprocess import load_clip_encoder

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.ray_preprocess import RaySettings, preprocess_ray

    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray Data: pip install 'gen1[ray]'") from None
    ray_settings = RaySettings(encoders=args.encoders).validate()
    ray.init(address=args.address, log_to_driver=False)
    try:
        make = functools.partial(load_clip_encoder, *args.names, batch_size=settings.batch_size)
        summary = preprocess_ray(inputs, args.out, make, settings, ray_settings, models=args.models)  # make(device)
    finally:
        ray.shutdown()
    index = summary["index"]
    print(f"{args.out}: wrote {summary['written']} shards, skipped {summary['skipped']} finished ones; "
          f"{index['num_clips']} clips in {len(index['shards'])} shards; {index['num_failed']} corrupt/unreadable "
          "inputs skipped")
    check_some_clips(args.out, index)
    return 0

