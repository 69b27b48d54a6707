"""Time the fills an erase runs besides the model, at a real resolution (docs/performance.md).

An erase fills its region's depth and colours from the boundary (:func:`gen1.masked_edits.structure_depth`,
:func:`gen1.masked_edits.prefilled`) and composites the model's drawing seamlessly (:mod:`gen1.seamless`); all three
solve Laplace's equation over the region's pixels (:func:`gen1.depth.fill.fill_from_boundary`). This times them on
random frames with a rectangular region (the time depends on the region's pixel count, not on what they show).

    OMP_NUM_THREADS=1 python scripts/bench_fill.py --size 512 --frames 16 --region 150x120
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="frame side in pixels (default 512)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--region", default="150x120", help="the region's HEIGHTxWIDTH in pixels, centred")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from gen1.masked_edits import prefilled, structure_depth
    from gen1.propagation import background_sources
    from gen1.seamless import blend_seamlessly

    height, width = (int(v) for v in args.region.split("x"))
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(args.frames, 3, args.size, args.size, generator=generator)
    drawn = torch.rand(args.frames, 3, args.size, args.size, generator=generator)
    depth = torch.rand(args.frames, 1, args.size, args.size, generator=generator)
    region = torch.zeros(args.frames, 1, args.size, args.size)
    top, left = (args.size - height) // 2, (args.size - width) // 2
    region[:, :, top:top + height, left:left + width] = 1
    structure_depth(depth[:1, :, :64, :64], region[:1, :, :64, :64] * 0 + torch.nn.functional.pad(
        torch.ones(1, 1, 8, 8), (28, 28, 28, 28)), "fill")  # warm-up: scipy's import is not the fill's time
    timings, held = {}, {}
    for name, run in (("depth fill", lambda: structure_depth(depth, region, "fill")),
                      ("colour prefill", lambda: prefilled(frames, region)),
                      ("what other frames see (flows and trace)", lambda: background_sources(frames, region)),
                      ("seamless composite", lambda: blend_seamlessly(drawn, frames, region))):
        start = time.perf_counter()
        output = run()
        timings[name] = round(time.perf_counter() - start, 3)
        if hasattr(output, "pixels"):  # what other frames see: the arrays it holds, per region pixel and frame
            arrays = [a for rows_cols in output.pixels for a in rows_cols]
            arrays += [a for per_frame in output.frame + output.position for a in per_frame]
            held[name] = round(sum(a.nbytes for a in arrays) / max(int((region > 0.5).sum()), 1), 1)
    result = dict(size=args.size, frames=args.frames, region=args.region, threads=args.threads, seconds=timings,
                  bytes_per_region_pixel=held)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
