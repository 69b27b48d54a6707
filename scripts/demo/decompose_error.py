"""Where the demo's PSNR error comes from: palette, layout, texture, at t_s = 0 and 7 (docs/demo.md).

    python scripts/demo/decompose_error.py --edits 8                        # bundled estimator, reference
    python scripts/demo/decompose_error.py --edits 8 --depth exact --content truth --guidance 1

Runs the benchmark's held-out edits (demo_recipe/benchmark.py: same cases, same noise per case) with the
structure input from the bundled estimator or the renderer's exact depth, and the content from the reference
image, the ground truth's first frame (an oracle) or the prompt; prints mean PSNR, palette error, PSNR with
the palette corrected and PSNR of blurred frames (demo_recipe.diagnostics.error_decomposition) per t_s.
"""

from __future__ import annotations

import argparse
import warnings

import torch

LEVELS = (0.0, 7.0)


def main() -> int:
    from demo_recipe.benchmark import add_edit_arguments, edit_script_pipeline
    from gen1.demo.world import edit_case

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_edit_arguments(parser, edits=8)
    parser.add_argument("--depth", choices=("estimated", "exact"), default="estimated")
    parser.add_argument("--content", choices=("reference", "truth", "prompt"), default="reference")
    args = parser.parse_args()
    from demo_recipe.diagnostics import error_decomposition
    from gen1.depth import normalize_z_depth

    pipe = edit_script_pipeline(args)
    means: dict[float, dict[str, float]] = {level: {} for level in LEVELS}
    for i in range(args.edits):
        case = edit_case(i, frames=args.frames)
        if args.depth == "exact":
            depth = normalize_z_depth(case.depth)
        else:
            depth = pipe.depth_estimator.estimate(case.source)
        if args.content == "prompt":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the documented direct-text fallback warns
                content = pipe.content_encoder.encode_text([case.prompt])
        else:
            image = case.reference if args.content == "reference" else case.ground_truth[:1]
            content = pipe.content_encoder.encode_image(image)
        for level in LEVELS:
            out = pipe(case.source, content_embeds=content, depth=depth, num_inference_steps=args.steps,
                       structure_level=level, guidance_scale=args.guidance, temporal_guidance_scale=1.0,
                       generator=torch.Generator().manual_seed(case.seed), output_type="pt").frames
            for key, value in error_decomposition(out.float().clamp(0, 1), case.ground_truth).items():
                means[level][key] = means[level].get(key, 0.0) + value / args.edits
    print(f"{args.edits} edits, depth {args.depth}, content {args.content}, w = {args.guidance}")
    print("| t_s | PSNR (dB) | palette MSE | PSNR, palette corrected | PSNR, blurred |")
    print("|---|---|---|---|---|")
    for level, row in means.items():
        print(f"| {level:g} | {row['psnr']:.2f} | {row['palette_mse']:.4f} | {row['psnr_palette_corrected']:.2f} | "
              f"{row['psnr_blurred']:.2f} |")
    if args.json:
        from gen1.atomic import write_json

        write_json(args.json, {str(k): v for k, v in means.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
