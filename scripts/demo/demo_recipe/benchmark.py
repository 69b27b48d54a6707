"""The demo model's benchmark: :mod:`gen1.eval.edit_benchmark` on the demo world's held-out edit cases
(:func:`gen1.demo.world.edit_case`), and the options and set-up the held-out-edit scripts share."""

from __future__ import annotations

from functools import partial

import torch

from gen1.demo import DEMO_GUIDANCE


def run_demo_benchmark(pipe, *, num_edits: int, steps: int, guidance: float = DEMO_GUIDANCE, frames: int = 8,
                       first_edit: int = 0, progress: bool = True) -> dict:
    """:func:`gen1.eval.edit_benchmark.run_benchmark` over the demo's held-out edits ``first_edit`` onward."""
    from gen1.demo.world import edit_case
    from gen1.eval.edit_benchmark import run_benchmark

    return run_benchmark(pipe, partial(edit_case, frames=frames), num_edits=num_edits, steps=steps, guidance=guidance,
                         first_edit=first_edit, progress=progress)


def add_edit_arguments(parser, *, edits: int) -> None:
    """The options every held-out-edit script takes (``evaluate.py``, ``decompose_error.py``)."""
    parser.add_argument("--model", help="pipeline directory (default: the bundled demo model)")
    parser.add_argument("--edits", type=int, default=edits, help=f"held-out edit cases (default {edits})")
    parser.add_argument("--steps", type=int, default=15, help="steps of the model's sampler per edit (default 15)")
    parser.add_argument("--guidance", type=float, default=DEMO_GUIDANCE,
                        help=f"(baseline) content guidance w (default {DEMO_GUIDANCE:g}, the demo's)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the full result as JSON here (its folder is created)")


def edit_script_pipeline(args):
    """Check :func:`add_edit_arguments`' values and the ``--json`` path, set the thread count and load the
    pipeline (:func:`demo_recipe.cli.load_pipeline`)."""
    from demo_recipe.cli import load_pipeline, prepare_json_output

    if args.edits < 1 or args.steps < 1:
        raise ValueError(f"--edits and --steps must be >= 1, got {args.edits}, {args.steps}")
    prepare_json_output(args.json)
    torch.set_num_threads(args.threads)
    return load_pipeline(args.model)
