"""Assemble the trained components into the bundled pipeline (fp16 safetensors) and print file sizes.

    python scripts/demo/assemble.py --runs runs/demo --out gen1/assets/demo-model

Each component defaults to its run's export under ``--runs``; ``--vae/--content/--depth/--unet`` take any
folder of that component instead (e.g. the subfolders of an earlier pipeline: M/vae, M/content_encoder,
M/depth_estimator).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/demo", help="folder with vae/ content/ depth/ unet/ runs")
    parser.add_argument("--out", default="gen1/assets/demo-model")
    parser.add_argument("--unet", default=None, help="the VideoUNet folder (default: RUNS/unet_d3_video/export/unet, "
                        "the last stage of scripts/demo/train_all.sh)")
    parser.add_argument("--vae", default=None, help="AutoencoderKL folder (default: RUNS/vae/export)")
    parser.add_argument("--content", default=None, help="ContentEncoder folder (default: RUNS/content4/export, "
                        "the encoder the last UNet runs were trained with)")
    parser.add_argument("--depth", default=None, help="DepthEstimator folder (default: RUNS/depth3/export, "
                        "the estimator the last UNet runs were trained with)")
    args = parser.parse_args()
    from demo_recipe.assemble import assemble, save_fp16

    runs = Path(args.runs)
    pipe = assemble(vae=args.vae or runs / "vae" / "export",
                    unet=args.unet or runs / "unet_d3_video" / "export" / "unet",
                    depth=args.depth or runs / "depth3" / "export", content=args.content or runs / "content4" / "export")
    sizes = save_fp16(pipe, args.out)
    print(json.dumps(sizes, indent=1))
    print(f"total {sum(sizes.values()) / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
