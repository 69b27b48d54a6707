"""``gen1 train CONFIG.yaml [section.key=value ...]``: train a VideoUNet stage on cached shards or synthetic scenes.

Examples::

    gen1 train stage2_temporal model.base=sd-2-1/ data.shards=shards/ train.output_dir=runs/s2
    accelerate launch --num_processes 8 -m gen1 train my.yaml train.resume=latest
"""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a VideoUNet stage (Accelerate: one CPU/GPU or accelerate launch)",
        description="Train from a YAML preset (a file, or a packaged preset name such as stage2_temporal) with "
        "section.key=value overrides. Checkpoints go to OUTPUT/checkpoints; train.resume=latest continues "
        "a run; the final model is exported to OUTPUT/export.",
    )
    parser.add_argument("config", metavar="CONFIG", help="YAML file or packaged preset name")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=5e-5")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.set_defaults(func=run)


def run(args) -> int:
    import yaml

    from gen1.training.config import config_to_dict, load_config

    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False))
        return 0
    from gen1.training.trainer import train

    result = train(config)
    if result.losses:
        print(f"trained to step {result.step}; last loss {result.losses[-1]:.4f}")
    if result.export_dir:
        print(f"exported to {result.export_dir}")
    return 0
