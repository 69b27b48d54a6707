"""``gen1 demo``: the first command after installing -- edit a sample clip with the bundled model.

    gen1 demo --out demo_out

writes ``demo_out/source.mp4`` (a synthetic clip gen1 renders), ``reference.png`` (another scene in another
style), ``edited.mp4`` and ``comparison.png`` (source | depth | reference | output). ``--input`` /
``--reference`` / ``--prompt`` swap in your own video, image or text (output is 64 px: the demo model's size).
Your own video is edited as ``gen1 edit`` edits it: every frame (``--frames`` to edit fewer), its frame rate
and its audio kept.
"""

from __future__ import annotations

import os
from pathlib import Path


def register(subparsers) -> None:
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.commands._common import add_threads_argument
    from gen1.demo import DEMO_GUIDANCE  # light: gen1.demo imports nothing heavy

    parser = subparsers.add_parser(
        "demo",
        help="edit a sample clip with the bundled demo model (no download)",
        description="Render a sample clip and a reference image, edit the clip with the bundled demo model and "
        "write source.mp4, reference.png, edited.mp4 and comparison.png to --out.",
    )
    parser.add_argument("--out", default="gen1-demo", help="output directory (default: gen1-demo)")
    parser.add_argument("--input", help="your own video instead of the sample clip (every frame is edited, its "
                        "audio kept)")
    parser.add_argument("--reference", help="your own reference image")
    parser.add_argument("--prompt", help="a text prompt instead of the reference (e.g. \"red striped objects ...\")")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps (default: the model's recommended count; 6 for the bundled model)")
    parser.add_argument("--guidance", type=float, default=DEMO_GUIDANCE,
                        help=f"content guidance w (default {DEMO_GUIDANCE:g}; see docs/demo.md)")
    parser.add_argument("--structure-level", type=float, default=0.0, help="t_s in [0, 7] (default 0)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames to edit (default: the 16 of the sample clip, or every frame of --input)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="pipeline directory (default: the bundled demo model)")
    add_threads_argument(parser, default_help="2: the model is tiny, more threads only add overhead")
    parser.set_defaults(func=run)


def run(args) -> int:
    from gen1.checks import check_integer  # lazy: keeps this module's import light (no torch when it loads)

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    if args.reference is not None and args.prompt is not None:
        raise ValueError("give --reference or --prompt, not both")
    for flag, value in (("--input", args.input), ("--reference", args.reference)):
        if value is not None and not os.path.isfile(value):
            raise FileNotFoundError(f"{flag} file not found: {value!r}")
    if not Path(args.out).parent.exists():
        raise FileNotFoundError(f"--out: parent directory of {args.out!r} does not exist")
    import torch  # lazy: torch is heavy and only this path needs it

    from gen1.commands._common import apply_threads  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.demo.showcase import run_showcase  # lazy: keeps this module's import light (no torch when it loads)

    if args.threads is not None:
        check_integer("--threads", args.threads, low=1)
    threads = torch.get_num_threads()
    if args.threads is None:
        torch.set_num_threads(min(2, threads))  # the model is tiny: more threads only add overhead
    try:
        apply_threads(args.threads)  # capped at the machine's cores, with a line
        result = run_showcase(args.out, model=args.model, input_video=args.input, reference=args.reference,
                              prompt=args.prompt, steps=args.steps, guidance=args.guidance,
                              structure_level=args.structure_level, seed=args.seed, frames=args.frames)
    finally:
        torch.set_num_threads(threads)  # leave the caller's setting as it was (run() may be called in-process)
    for name, path in result["paths"].items():
        print(f"{name}: {path}")
    audio = ", audio kept" if result["audio"] else ""
    print(f"edited {result['frames']} frames{audio} in {result['edit_seconds']:.1f} s")
    return 0
