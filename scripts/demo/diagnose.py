"""Depth-usage probe: does a demo UNet (an export, or the bundled model's) take structure from depth?

    python scripts/demo/diagnose.py --unet runs/demo/unet_image/export --images 128
    python scripts/demo/diagnose.py --unet runs/demo/unet_ref/export --estimated-depth --reference-content

Prints the image-mode training loss on held-out images at fixed noise levels with the structure input at
t_s = 0 (true), 4, 7 and another image's depth (shuffled); see demo_recipe/diagnostics.py. Much faster
than the sampled benchmark, so a run can be followed while it trains.
"""

from __future__ import annotations

import argparse

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="pipeline directory for the VAE, content encoder and scheduler "
                                        "(default: the bundled demo model)")
    parser.add_argument("--unet", help="a VideoUNet folder to probe instead of the pipeline's (e.g. a "
                                       "gen1 train export)")
    parser.add_argument("--images", type=int, default=128, help="held-out images (default 128)")
    parser.add_argument("--estimated-depth", action="store_true",
                        help="structure from the pipeline's depth estimator, not the renderer's exact depth")
    parser.add_argument("--reference-content", action="store_true",
                        help="content from another held-out scene in the image's style, not the image itself")
    parser.add_argument("--timesteps", default="999,850,600", help="comma-separated noise levels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the result as JSON here")
    args = parser.parse_args()
    timesteps = [int(t) for t in args.timesteps.split(",") if t.strip()]
    from demo_recipe.cli import load_pipeline, prepare_json_output

    prepare_json_output(args.json)
    torch.set_num_threads(args.threads)
    from diffusers import DDPMScheduler

    from demo_recipe.diagnostics import format_usage, probe_images, structure_usage
    from gen1.assembly import trained_video_unet

    pipe = load_pipeline(args.model)
    unet = trained_video_unet(args.unet).float().eval() if args.unet else pipe.unet.eval()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    images = probe_images(pipe.vae, pipe.content_encoder, num_images=args.images,
                          depth_estimator=pipe.depth_estimator if args.estimated_depth else None,
                          reference_content=args.reference_content)
    result = structure_usage(unet, scheduler, images, timesteps=timesteps)
    print(format_usage(result))
    if args.json:
        from gen1.atomic import write_json

        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
