"""Train one component of the bundled demo model (resumable: rerun the same command to continue).

    python scripts/demo/train_component.py vae     --out runs/demo/vae     --steps 600
    python scripts/demo/train_component.py content --out runs/demo/content --steps 600
    python scripts/demo/train_component.py content --out runs/demo/content2 --steps 1400 --batch 128 \
        --hard-negatives 3 --clip-frames 1
    python scripts/demo/train_component.py content --out runs/demo/content3 --steps 800 --batch 128 \
        --hard-negatives 3 --clip-frames 1 --attribute-weight 1 --init runs/demo/content2/export
    python scripts/demo/train_component.py depth   --out runs/demo/depth   --steps 500
    python scripts/demo/train_component.py depth   --out runs/demo/depth2  --steps 1500 --loss ssimae \
        --lr 5e-4 --init runs/demo/depth/export

``--minutes M`` stops after M minutes of wall time (checkpointing first); rerun to resume.
The finished model is exported to OUT/export; OUT/checkpoint/state.json holds the loss history.
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("component", choices=("vae", "content", "depth"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    # content encoder only; unset ones keep train_content's defaults (batch 32, no hard negatives, 2 frames)
    parser.add_argument("--batch", type=int, help="content: clips per step")
    parser.add_argument("--hard-negatives", type=int, help="content: one-attribute-off captions per image")
    parser.add_argument("--clip-frames", type=int, help="content: frames rendered per clip, one used")
    parser.add_argument("--attribute-weight", type=float,
                        help="content: weight of the per-attribute classification heads' cross-entropy")
    parser.add_argument("--init", help="content, depth: an exported model to fine-tune instead of random weights")
    # depth estimator only
    parser.add_argument("--loss", choices=("ssimse", "ssimae"),
                        help="depth: least-squares aligned MSE (default; blind to sign) or median/MAD aligned L1")
    parser.add_argument("--lr", type=float, help="depth: peak learning rate (default 2e-3)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.component == "vae":
        from demo_recipe.vae import train_vae as train
    elif args.component == "content":
        from demo_recipe.content import train_content as train
    else:
        from demo_recipe.depth import train_depth as train
    content_options = {name: value for name, value in (("batch", args.batch), ("hard_negatives", args.hard_negatives),
                                                       ("clip_frames", args.clip_frames),
                                                       ("attribute_weight", args.attribute_weight))
                       if value is not None}
    depth_options = {name: value for name, value in (("loss", args.loss), ("lr", args.lr)) if value is not None}
    if content_options and args.component != "content":
        parser.error("--batch, --hard-negatives, --clip-frames and --attribute-weight are options of the content "
                     "encoder only")
    if depth_options and args.component != "depth":
        parser.error("--loss and --lr are options of the depth estimator only")
    if args.init is not None and args.component == "vae":
        parser.error("--init is an option of the content encoder and the depth estimator only")
    options = {**content_options, **depth_options, **({"init": args.init} if args.init is not None else {})}
    state = train(args.out, max_steps=args.steps, max_minutes=args.minutes, seed=args.seed, **options)
    print(json.dumps({"step": state["step"], "done": state["done"], "metrics": state.get("metrics")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
