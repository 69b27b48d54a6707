"""``gen1 train CONFIG.yaml [section.key=value ...]``: train a VideoUNet stage on cached shards or synthetic scenes.

Examples::

    gen1 train stage2_temporal model.base=sd-2-1/ data.shards=shards/ train.output_dir=runs/s2
    gen1 train --list-presets
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m gen1 train my.yaml     # two CPU processes
    accelerate launch --multi_gpu --num_processes 8 -m gen1 train my.yaml train.resume=latest   # 8 GPUs

Ctrl-C saves a checkpoint after the current step, prints the command that resumes, and exits with 130; a
second Ctrl-C quits at once. Under torchrun / accelerate launch the launcher forwards the Ctrl-C to every process
(that echo is not a second one: :mod:`gen1.training.interrupt`) and then prints its own SignalException
traceback after gen1's message.
"""

from __future__ import annotations

import shlex
import sys
from typing import Optional


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a VideoUNet stage (Accelerate: one CPU/GPU or accelerate launch)",
        description="Train from a YAML preset (a file, or a packaged preset name such as stage2_temporal) with "
        "section.key=value overrides. Checkpoints go to OUTPUT/checkpoints; train.resume=latest continues "
        "a run; the final model is exported to OUTPUT/export, a pipeline folder for `gen1 edit --model`.",
    )
    parser.add_argument("config", nargs="?", metavar="CONFIG", help="YAML file or packaged preset name")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=5e-5")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--list-presets", action="store_true", help="list the packaged presets and exit")
    parser.set_defaults(func=run)


def preset_summaries() -> list[tuple[str, str]]:
    """``(name, what it trains on what)`` of every packaged preset."""
    import yaml  # lazy: yaml is heavy and only this path needs it

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.config import PRESET_DIR, config_from_dict, list_presets

    out = []
    for name in list_presets():
        c = config_from_dict(yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text(encoding="utf-8")))
        d = c.diffusion
        levels = f"t_s {d.structure_level_min:g}..{d.structure_level_max:g}" if d.use_structure else "no structure"
        out.append((name, f"stage {c.stage}: trains {c.model.trainable}, image_ratio {c.data.image_ratio:g}, {levels}"))
    return out


def run(args) -> int:
    import yaml  # lazy: yaml is heavy and only this path needs it

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.config import config_to_dict, load_config

    if args.list_presets:
        summaries = preset_summaries()
        width = max(len(name) for name, _ in summaries)
        for name, summary in summaries:
            print(f"{name:<{width}}  {summary}".rstrip())
        return 0
    if args.config is None:
        raise ValueError("CONFIG is required: a YAML file or a packaged preset name (see gen1 train --list-presets)")
    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False))
        return 0
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.interrupt import TrainingInterrupted, launcher_note
    from gen1.training.trainer import train  # lazy: keeps this module's import light (no torch when it loads)

    try:
        result = train(config)
    except TrainingInterrupted as stop:
        if stop.main_process:
            print(f"gen1 train: interrupted after step {stop.step}; checkpoint saved: {stop.checkpoint}\n"
                  f"{resume_hint(args, stop.processes, stop.global_batch, config.train.distributed)}"
                  f"{launcher_note()}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("gen1 train: stopped at once (a second Ctrl-C, or one before training began); resume from the "
              f"last checkpoint, if any, with: {resume_command(args)}", file=sys.stderr)
        return 130
    if result.main_process and result.losses:
        print(f"trained to step {result.step}; last loss {result.losses[-1]:.4f}")
    if result.main_process and result.export_dir:
        print(f"exported to {result.export_dir}")
    return 0


def resume_command(args, batch_size: Optional[int] = None) -> str:
    """The ``gen1 train`` command line that continues this run from its latest checkpoint (same launcher), or with
    ``data.batch_size`` set to ``batch_size``."""

    drop = ("train.resume=",) + (("data.batch_size=",) if batch_size is not None else ())
    overrides = [o for o in args.overrides if not o.startswith(drop)]
    extra = [f"data.batch_size={batch_size}"] if batch_size is not None else []
    return "gen1 train " + shlex.join([args.config, *overrides, *extra, "train.resume=latest"])


def resume_hint(args, processes: int = 1, global_batch: Optional[int] = None, distributed: str = "ddp") -> str:
    """How to resume: the command as run (one process), or, after a run of several processes, that command on one
    process with the whole global batch, and the same command under the launcher with as many processes (a
    resume must keep the global batch, ``data.batch_size`` x processes). An FSDP run resumes only under the
    launcher at its own world size (its checkpoint is sharded), so only that is offered."""
    if processes <= 1 or global_batch is None:
        return f"resume with: {resume_command(args)}"
    if distributed == "fsdp":
        return f"resume under the same launcher with {processes} processes: {resume_command(args)}"
    return (f"resume with: {resume_command(args, global_batch)}\n"
            f"or under the same launcher with {processes} processes: {resume_command(args)}")
