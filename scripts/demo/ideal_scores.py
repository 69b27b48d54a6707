"""What the benchmark's structure check can show at best: PSNR of ideal predictions on its held-out edits.

    python scripts/demo/ideal_scores.py --edits 32

For each of the benchmark's edits (gen1.demo.world.edit_case) it scores, against the ground truth, predictions
an ideal model could make with the layout (the ground truth through the VAE; the same scene and style
with every texture at its mean) and without it (the target style on other scenes: one sharp sample, and their pixel
mean; the palette alone). See demo_recipe.diagnostics.ideal_scores. Compare with scripts/demo/evaluate.py's
PSNR at t_s = 0 and 7: docs/demo.md.
"""

from __future__ import annotations

import argparse

import torch

ROWS = (
    ("vae_round_trip", "with layout", "ground truth through the VAE (no latent model does better)"),
    ("mean_textures", "with layout", "same scene and style, each texture at its mean colour, through the VAE"),
    ("other_layout", "without", "target style on another scene (a sharp sample with a guessed layout)"),
    ("other_layout_mean", "without", "pixel mean of those renders (least-squares guess)"),
    ("frame_mean_colour", "without", "each ground-truth frame's mean colour (palette alone)"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="pipeline directory whose VAE is used (default: the bundled demo model)")
    parser.add_argument("--edits", type=int, default=32, help="held-out edit cases (default 32)")
    parser.add_argument("--other-layouts", type=int, default=12, help="other scenes per edit (default 12)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the means as JSON here")
    args = parser.parse_args()
    if args.edits < 1:
        raise ValueError(f"--edits must be >= 1, got {args.edits}")
    from demo_recipe.cli import prepare_json_output

    prepare_json_output(args.json)
    torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL

    from demo_recipe.diagnostics import ideal_scores
    from gen1.demo import bundled_model_dir
    from gen1.demo.world import edit_case

    vae = AutoencoderKL.from_pretrained(str(args.model or bundled_model_dir()), subfolder="vae").float().eval()
    means: dict[str, float] = {}
    for i in range(args.edits):
        scores = ideal_scores(edit_case(i, frames=args.frames), vae, other_layouts=args.other_layouts)
        for key, value in scores.items():
            means[key] = means.get(key, 0.0) + value / args.edits
    print(f"{args.edits} held-out edits, {args.other_layouts} other scenes each")
    print("| prediction | layout | PSNR (dB) |")
    print("|---|---|---|")
    for key, layout, label in ROWS:
        print(f"| {label} | {layout} | {means[key]:.2f} |")
    if args.json:
        from gen1.atomic import write_json

        write_json(args.json, means)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
