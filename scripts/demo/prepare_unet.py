"""Write what ``gen1 train demo_joint`` needs: the shards (synthetic clips encoded with the trained VAE and
content encoder, exact depth) and the random image-UNet base. Resumable (finished shards are skipped).

    python scripts/demo/prepare_unet.py --vae runs/demo/vae/export --content runs/demo/content/export \
        --shards runs/demo/shards --base runs/demo/base --videos 1200 --images 400
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
    parser.add_argument("--base", required=True)
    parser.add_argument("--videos", type=int, default=1200)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import AutoencoderKL

    from gen1.content import ContentEncoder
    from gen1.demo.shards import build_shards
    from gen1.demo.unet import write_base

    vae = AutoencoderKL.from_pretrained(args.vae).eval()
    content = ContentEncoder.from_pretrained(args.content).eval()
    index = build_shards(args.shards, vae, content, videos=args.videos, images=args.images)
    print(json.dumps({k: v for k, v in index.items() if k != "shards"}))
    if not (Path(args.base) / "unet" / "config.json").is_file():
        write_base(args.base, cross_attention_dim=content.embedding_dim)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
