"""Score the bundled demo model (or any gen1 pipeline at 64x64) on held-out synthetic edits; print the table.

    python scripts/demo/evaluate.py --edits 32 --steps 15 --json runs/demo/eval.json
    python scripts/demo/evaluate.py --first-edit 32 --edits 64   # the next 64 held-out edits: how much is luck

See gen1/eval/edit_benchmark.py for what each row measures; docs/demo.md holds the last table. The --json
folder is created if needed.
"""

from __future__ import annotations

import argparse
import json


def main() -> int:
    from demo_recipe.benchmark import add_edit_arguments, edit_script_pipeline, run_demo_benchmark
    from gen1.eval.edit_benchmark import format_table, thresholds

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_edit_arguments(parser, edits=32)
    parser.add_argument("--first-edit", type=int, default=0,
                        help="index of the first held-out edit (default 0: the benchmark's edits 0..EDITS-1)")
    args = parser.parse_args()
    if args.first_edit < 0:
        parser.error(f"--first-edit must be >= 0, got {args.first_edit}")

    pipe = edit_script_pipeline(args)
    result = run_demo_benchmark(pipe, num_edits=args.edits, steps=args.steps, guidance=args.guidance,
                                frames=args.frames, first_edit=args.first_edit)
    print(format_table(result))
    checks = thresholds(result)
    print()
    print(json.dumps(checks, indent=1))
    if args.json:
        from gen1.atomic import write_json

        write_json(args.json, dict(result, checks=checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
