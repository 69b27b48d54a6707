"""Global directions (``--direction NEUTRAL TARGET``) on held-out synthetic scenes with a re-rendered ground truth.

Each case is a held-out scene of the bundled model's world (seeds from ``gen1.demo.world.HELD_OUT_START`` + 400000
up, never trained on) in a random style A; ONE attribute of its objects is changed (their colour, or their
texture, alternating case by case) and the scene re-rendered in that style B: the ground-truth edit. The changed
region is where the two renders differ (the objects); everything else is pixel for pixel the same.

Every edit of a case starts from the same generator seed, with the depth estimated once from the source:

* directions: the source's own content (the mean CLIP image embedding of its frames) moved along
  text("<B's object words> objects") - text("<A's object words> objects"), e.g. "red objects" -> "teal objects",
  for alpha in ``--alphas`` (alpha = 0: the source's own content);
* the prompt edit: style B's full caption as the prompt (what a user without directions would type).

Scores (means over the cases): agreement with the ground-truth edit (``gen1.eval.image_metrics.style_score``,
the edit suite's style score, and ``style_accuracy``), PSNR against the source outside the changed region, and
the depth error: mean |depth estimate of the edit - depth estimate of the source| (normalised inverse depth), and
its ratio to alpha = 0.

    OMP_NUM_THREADS=1 python scripts/bench_directions.py --cases 24 --json docs/directions.json
    OMP_NUM_THREADS=1 python scripts/bench_directions.py --cases 24 --alphas 0 1 2 --masked-alphas 1 2 \
        --json docs/directions_masked.json     # also confined to the object's region (--mask)

Not a test: it reports, it does not assert (the issue's targets are printed beside the figures).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import torch
from bench_common import add_sampler_argument, use_sampler, write_stills


ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0)
SEED_OFFSET = 400_000  # held-out cases: HELD_OUT_START + this + i (the edit benchmark uses +100000 and +200000)


@dataclasses.dataclass
class DirectionCase:
    source: torch.Tensor  # (F, 3, H, W) in [0, 1], scene in style A
    truth: torch.Tensor  # the same scene in style B (one object attribute changed)
    kept: torch.Tensor  # (F, 1, H, W) bool: where source and truth are the same pixels
    neutral: str
    target: str
    caption: str  # style B's full caption
    seed: int
    attribute: str


def direction_case(index: int, *, frames: int, size: int) -> DirectionCase:
    """Held-out case ``index``: object colour changed for even indices, object texture for odd ones."""
    from gen1.demo.world import HELD_OUT_START, demo_scene
    from gen1.synthetic import render, sample_style
    from gen1.synthetic.style import COLOR_NAMES, TEXTURE_WORDS, TEXTURES

    seed = HELD_OUT_START + SEED_OFFSET + index
    style = sample_style(seed)
    pick = torch.Generator().manual_seed(seed)
    if index % 2 == 0:
        attribute = "object colour"
        taken = {style.object_color, style.floor_color, style.wall_color}
        options = [c for c in COLOR_NAMES if c not in taken]
        edited = dataclasses.replace(style, object_color=options[int(torch.randint(len(options), (), generator=pick))])
    else:
        attribute = "object texture"
        options = [t for t in TEXTURES if t != style.object_texture]
        edited = dataclasses.replace(style, object_texture=options[int(torch.randint(len(options), (),
                                                                                   generator=pick))])
    scene = demo_scene(seed)
    source, _ = render(scene, style, frames, size, size)
    truth, _ = render(scene, edited, frames, size, size)
    kept = (truth - source).abs().amax(dim=1, keepdim=True) == 0

    def words(s):
        return f"{s.object_color} {TEXTURE_WORDS[s.object_texture]} objects"

    return DirectionCase(source, truth, kept, words(style), words(edited), edited.caption, seed, attribute)


def psnr_where(output: torch.Tensor, reference: torch.Tensor, where: torch.Tensor) -> float:
    """PSNR (dB) over the pixels ``where`` (``(F, 1, H, W)`` bool) of all frames together."""
    import math

    mask = where.expand_as(output)
    mse = float((output[mask] - reference[mask]).square().mean())
    return 99.0 if mse <= 0 else -10 * math.log10(mse)


@torch.no_grad()
def score_case(pipe, case: DirectionCase, alphas, *, steps: int, guidance: float, strength: float = 1.0,
               masked_alphas=(), outputs: dict | None = None) -> dict[str, dict[str, float]]:
    from gen1.eval.image_metrics import style_accuracy, style_score

    depth = pipe.depth_estimator.estimate(case.source)
    runs = {f"alpha={a:g}": dict(direction=[(case.neutral, case.target)], direction_scale=[a]) for a in alphas}
    runs["prompt (full caption)"] = dict(prompt=case.caption)
    if masked_alphas:  # the object's region, as a user would draw or track it: the changed pixels, grown by 2 px
        region = torch.nn.functional.max_pool2d((~case.kept).float(), 5, stride=1, padding=2)[:, 0].numpy()
        for a in masked_alphas:
            runs[f"alpha={a:g}, object masked"] = dict(runs.get(f"alpha={a:g}", dict(
                direction=[(case.neutral, case.target)], direction_scale=[a])), mask=region)
        runs["prompt (full caption), object masked"] = dict(prompt=case.caption, mask=region)
    scores = {}
    for name, content in runs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = pipe(case.source, depth=depth, num_inference_steps=steps, guidance_scale=guidance,
                       strength=strength, generator=torch.Generator().manual_seed(case.seed), output_type="pt", **content).frames
        out = out.float().clamp(0, 1)
        if outputs is not None:
            outputs[name] = out
        scores[name] = dict(style_score=style_score(out, case.source, case.truth),
                            style_accuracy=style_accuracy(out, case.source, case.truth),
                            psnr_outside=psnr_where(out, case.source, case.kept),
                            depth_error=float((pipe.depth_estimator.estimate(out) - depth).abs().mean()))
    return scores


def write_direction_stills(path, case: DirectionCase, outputs: dict, frames=(0, 4), scale: int = 3) -> None:
    """The stills grid (:func:`bench_common.write_stills`): one row per frame in ``frames``; columns the source,
    every run, the ground truth; each 64 px frame enlarged ``scale`` times."""
    write_stills(path, [[case.source, *outputs.values(), case.truth]], frames=frames, zoom=scale)
    print(f"stills: {path} (columns: source, {', '.join(outputs)}, ground truth)")


def format_table(result: dict) -> str:
    means, alphas = result["means"], result["alphas"]
    zero = means[f"alpha={alphas[0]:g}"]["depth_error"]
    lines = [f"{result['cases']} held-out cases ({result['by_attribute']}), {result['steps']} steps, "
             f"w = {result['guidance']}, strength {result.get('strength', 1.0)}, {result['size']} px, "
             f"{result['frames']} frames, t_s = 0", "",
             "| content | style score | style accuracy | PSNR outside the object (dB) | depth error | vs alpha 0 |",
             "|---|---|---|---|---|---|"]
    for name, row in means.items():
        lines.append(f"| {name} | {row['style_score']:.3f} | {row['style_accuracy']:.1%} | "
                     f"{row['psnr_outside']:.2f} | {row['depth_error']:.4f} | {row['depth_error'] / zero:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the bundled demo model)")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--first", type=int, default=0, help="first case index")
    parser.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    parser.add_argument("--steps", type=int, default=20)
    add_sampler_argument(parser)
    parser.add_argument("--guidance", type=float, default=None, help="w (default: the model's recommended w)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--strength", type=float, default=1.0, help="below 1: start from the noised source")
    parser.add_argument("--masked-alphas", type=float, nargs="*", default=[],
                        help="also edit with the object's region as the mask (--mask) at these alphas, and the "
                             "prompt edit with it")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--stills", default=None, help="write a PNG of the first case's frames 0 and 4 here (columns: "
                        "source, each run, ground truth)")
    args = parser.parse_args(argv)

    from gen1.demo import bundled_model_dir
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_pretrained(str(args.model or bundled_model_dir()))
    use_sampler(pipe, args.scheduler)
    pipe.cast(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    guidance = pipe.default_guidance_scale if args.guidance is None else args.guidance
    totals: dict[str, dict[str, float]] = {}
    per_case = []
    attributes: dict[str, int] = {}
    start = time.perf_counter()
    for index in range(args.first, args.first + args.cases):
        case = direction_case(index, frames=args.frames, size=args.size)
        attributes[case.attribute] = attributes.get(case.attribute, 0) + 1
        outputs = {} if args.stills and index == args.first else None
        scores = score_case(pipe, case, args.alphas, steps=args.steps, guidance=guidance, strength=args.strength,
                            masked_alphas=args.masked_alphas, outputs=outputs)
        if outputs is not None:
            write_direction_stills(args.stills, case, outputs)
        per_case.append(dict(index=index, attribute=case.attribute, neutral=case.neutral, target=case.target,
                             scores=scores))
        for name, row in scores.items():
            total = totals.setdefault(name, {})
            for key, value in row.items():
                total[key] = total.get(key, 0.0) + value / args.cases
        print(f"case {index} ({case.attribute}: '{case.neutral}' -> '{case.target}') done, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    result = dict(means=totals, alphas=list(args.alphas), cases=args.cases, first=args.first, steps=args.steps,
                  guidance=guidance, strength=args.strength, frames=args.frames, size=args.size,
                  by_attribute=", ".join(f"{n} {a}" for a, n in attributes.items()), per_case=per_case,
                  seconds=time.perf_counter() - start)
    print(format_table(result))
    if args.json:
        from gen1.atomic import write_json

        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
