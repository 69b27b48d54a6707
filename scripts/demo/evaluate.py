"""Score the bundled demo model (or any gen1 pipeline at 64x64) on held-out synthetic edits; print the table.

    python scripts/demo/evaluate.py --edits 32 --steps 15 --json runs/demo/eval.json

See gen1/demo/benchmark.py for what each row measures; docs/demo.md holds the last table.
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="pipeline directory (default: the bundled demo model)")
    parser.add_argument("--edits", type=int, default=32, help="held-out edit cases (default 32)")
    parser.add_argument("--steps", type=int, default=15, help="DDIM steps per edit (default 15)")
    parser.add_argument("--guidance", type=float, default=3.0, help="baseline content guidance w (default 3)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the full result as JSON here")
    args = parser.parse_args()
    if args.edits < 1 or args.steps < 1:
        raise ValueError(f"--edits and --steps must be >= 1, got {args.edits}, {args.steps}")
    torch.set_num_threads(args.threads)
    from gen1.demo import bundled_model_dir
    from gen1.demo.benchmark import format_table, run_benchmark, thresholds
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_pretrained(str(args.model or bundled_model_dir()))
    pipe.cast(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    result = run_benchmark(pipe, num_edits=args.edits, steps=args.steps, guidance=args.guidance, frames=args.frames)
    print(format_table(result))
    checks = thresholds(result)
    print()
    print(json.dumps(checks, indent=1))
    if args.json:
        from gen1.atomic import atomic_path, check_output_path

        with atomic_path(check_output_path(args.json)) as tmp:
            tmp.write_text(json.dumps(dict(result, checks=checks), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
