"""Put a fine-tuned VideoUNet into a copy of an assembled demo model, keeping everything else it records.

    python scripts/demo/replace_unet.py --model gen1/assets/demo-model --unet runs/demo/unet_inpaint_video/export/unet \
        --out runs/demo/model_inpaint

A fine-tune of the UNet alone (e.g. the inpainting-input fine-tune of docs/masked_edits_results.md, measured and not
shipped) leaves the VAE, the content encoder, the depth estimator, the scheduler and the recorded defaults (trained
size, guidance, steps) as they were; assemble.py would rebuild the scheduler and the defaults from the recipe's first
choices. The result is saved in fp16, atomically, to a folder the benchmarks take as ``--model`` (``--out`` may be
``--model`` itself, to replace it).
"""

from __future__ import annotations

import argparse
import json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the assembled gen1 pipeline folder")
    parser.add_argument("--unet", required=True, help="the VideoUNet folder to put in it (a run's export/unet)")
    parser.add_argument("--out", required=True, help="where the pipeline is written (fp16)")
    args = parser.parse_args()

    import torch

    from demo_recipe.assemble import save_fp16
    from gen1.pipeline import Gen1Pipeline
    from gen1.unet import VideoUNet

    pipe = Gen1Pipeline.from_pretrained(args.model, torch_dtype=torch.float32)
    unet = VideoUNet.from_pretrained(args.unet)
    if unet.content_dim != pipe.unet.content_dim or unet.latent_channels != pipe.unet.latent_channels:
        raise SystemExit(f"{args.unet} takes content of size {unet.content_dim} and {unet.latent_channels} latent "
                         f"channels; {args.model}'s UNet {pipe.unet.content_dim} and {pipe.unet.latent_channels}")
    pipe.register_modules(unet=unet)
    print(json.dumps(save_fp16(pipe, args.out), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
