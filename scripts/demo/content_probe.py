"""Does the content signal carry enough of the style for the layout to matter? (demo_recipe/sufficiency.py)

    python scripts/demo/content_probe.py --kinds style,reference --no-depth style,reference

Renders one frame each of --train training scenes and --held held-out scenes, encodes them with a pipeline's
VAE and content encoder, and fits a small direct regressor (depth + content -> latents) per content signal,
with and without the depth; prints the held-out latent MSE of each (docs/demo.md).
"""

from __future__ import annotations

import argparse

import torch


def main() -> int:
    from demo_recipe.cli import load_pipeline, prepare_json_output
    from demo_recipe.sufficiency import CONTENT_KINDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="pipeline directory (VAE, content encoder; default: the bundled demo model)")
    parser.add_argument("--train", type=int, default=4000, help="training frames (default 4000)")
    parser.add_argument("--held", type=int, default=256, help="held-out frames (default 256)")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps per fit (default 1500)")
    parser.add_argument("--kinds", default=",".join(CONTENT_KINDS),
                        help=f"content signals to fit with the depth (default all: {','.join(CONTENT_KINDS)})")
    parser.add_argument("--no-depth", default="style", help="content signals to fit also without the depth")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    no_depth = [k for k in args.no_depth.split(",") if k]
    for kind in kinds + no_depth:
        if kind not in CONTENT_KINDS:
            raise ValueError(f"unknown content signal {kind!r}; choose from {CONTENT_KINDS}")
    if args.train < 1 or args.held < 1:
        raise ValueError(f"--train and --held must be >= 1, got {args.train}, {args.held}")
    prepare_json_output(args.json)
    torch.set_num_threads(args.threads)
    from demo_recipe.sufficiency import (REGRESSION_HELD_OUT_OFFSET, REGRESSION_TRAIN_SEED, fit_and_score,
                                         regression_data)
    from gen1.demo.world import HELD_OUT_START

    pipe = load_pipeline(args.model)
    train = regression_data(pipe.vae, pipe.content_encoder, range(REGRESSION_TRAIN_SEED, REGRESSION_TRAIN_SEED + args.train))
    held_start = HELD_OUT_START + REGRESSION_HELD_OUT_OFFSET
    held = regression_data(pipe.vae, pipe.content_encoder, range(held_start, held_start + args.held))
    results = {}
    for kind in kinds:
        results[f"{kind}+depth"] = fit_and_score(train, held, kind, steps=args.steps)
    for kind in no_depth:
        results[f"{kind}, no depth"] = fit_and_score(train, held, kind, use_depth=False, steps=args.steps)
    print(f"{args.train} training / {args.held} held-out frames, {args.steps} steps per fit")
    print("| content signal | latent MSE, training frames | latent MSE, held out |")
    print("|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['train_mse']:.3f} | {row['held_mse']:.3f} |")
    if args.json:
        from gen1.atomic import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
