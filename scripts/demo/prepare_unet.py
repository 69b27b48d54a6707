"""Write what ``gen1 train demo_*`` needs: the shards (synthetic clips encoded with the trained VAE and
content encoder; exact depth, or a trained estimator's with ``--depth-estimator``) and, with ``--base``, the
random image-UNet base. Resumable (finished shards are skipped).

    python scripts/demo/prepare_unet.py --vae runs/demo/vae/export --content runs/demo/content/export \
        --shards runs/demo/shards --base runs/demo/base --videos 1200 --images 400
    python scripts/demo/prepare_unet.py --vae M/vae --content M/content_encoder --depth-estimator M/depth_estimator \
        --reference-content --shards runs/demo/shards_ref --videos 1200 --images 32976   # M = a pipeline folder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", required=True)
    parser.add_argument("--content", required=True)
    parser.add_argument("--shards", required=True)
    parser.add_argument("--base", help="also write the random image-UNet base here (skipped when present)")
    parser.add_argument("--depth-estimator", help="depth estimator folder: shards hold its estimate, not exact depth")
    parser.add_argument("--reference-content", action="store_true",
                        help="content embeddings from another scene in the clip's style (a reference), not the clip's own")
    parser.add_argument("--videos", type=int, default=1200)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL

    from demo_recipe.shards import build_shards
    from demo_recipe.unet import write_base
    from gen1.content import ContentEncoder

    vae = AutoencoderKL.from_pretrained(args.vae).float().eval()
    content = ContentEncoder.from_pretrained(args.content).float().eval()
    estimator = None
    if args.depth_estimator:
        from gen1.depth import load_depth_estimator

        estimator = load_depth_estimator(args.depth_estimator).float().eval()
    index = build_shards(args.shards, vae, content, videos=args.videos, images=args.images, depth_estimator=estimator,
                         reference_content=args.reference_content)
    print(json.dumps({k: v for k, v in index.items() if k != "shards"}))
    if args.base and not (Path(args.base) / "unet" / "config.json").is_file():
        write_base(args.base, cross_attention_dim=content.embedding_dim)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
