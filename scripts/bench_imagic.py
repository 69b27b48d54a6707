"""Imagic (``gen1 customize --imagic`` + ``gen1 edit --imagic-scale``) on held-out synthetic scenes with a ground truth.

The scenes are the directions benchmark's (``scripts/bench_directions.py``: a held-out scene of the bundled model's
world in style A; one attribute of its objects, colour or texture, changed and the scene re-rendered in style B as
the ground truth). The target text is style B's full caption, the same text a plain prompt edit is given.

Per case, on the bundled model at 64 px, every edit from the same generator seed with the depth estimated once:

* the VAE's own round trip of the source (decode(encode(source))): the best a reconstruction can do;
* the plain prompt edit: style B's caption as the prompt, no adapter;
* Imagic: the embedding optimised from the caption's (``--embedding-steps``), a LoRA on the clip
  (``--lora-steps``), then edits at every eta of ``--etas``.

Figures: PSNR of the eta = 0 edit against the source (the issue's target: >= the VAE round trip - 3 dB); PSNR against
the ground truth of the best eta (chosen per case and, honestly, also the single eta best on average) and of the
prompt edit (target: >= 1.5 dB above it); the fall of the embedding loss (fixed draws; target: >= 20 %); seconds.

    OMP_NUM_THREADS=1 python scripts/bench_imagic.py --cases 2                   # develop
    OMP_NUM_THREADS=1 python scripts/bench_imagic.py --cases 8 --json docs/imagic.json --stills docs/imagic_stills.png

Not a test: it reports, it does not assert.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import add_sampler_argument, use_sampler  # noqa: E402  (scripts beside this one)
from bench_directions import direction_case, write_direction_stills  # noqa: E402

ETAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)


def psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    mse = float((output.float() - reference.float()).square().mean())
    return 99.0 if mse <= 0 else -10 * math.log10(mse)


@torch.no_grad()
def edit(pipe, case, depth, *, steps: int, guidance: float, strength: float = 1.0, **content) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = pipe(case.source, depth=depth, num_inference_steps=steps, guidance_scale=guidance, strength=strength,
                   generator=torch.Generator().manual_seed(case.seed), output_type="pt", **content).frames
    return out.float().clamp(0, 1)


def score_case(pipe, case, args, outputs: dict | None = None) -> dict:
    from gen1.adapters import remove_adapter
    from gen1.training.imagic import ImagicRun, ImagicSettings

    depth = pipe.depth_estimator.estimate(case.source)
    guidance = pipe.default_guidance_scale if args.guidance is None else args.guidance
    vae = pipe.decode_latents(pipe.encode_video(case.source)).float().clamp(0, 1)
    prompt = edit(pipe, case, depth, steps=args.steps, guidance=guidance, prompt=case.caption)
    # the prompt edit from the same start as the Imagic edits (Dreamix's: the source noised to --strength)
    prompt_same_start = prompt if args.strength == 1 else edit(pipe, case, depth, steps=args.steps, guidance=guidance,
                                                                strength=args.strength, prompt=case.caption)
    settings = ImagicSettings(embedding_steps=args.embedding_steps, steps=args.lora_steps,
                              embedding_lr=args.embedding_lr, lr=args.lr, eval_every=5, patience=args.patience,
                              lora_rank=args.lora_rank, image_ratio=args.image_ratio,
                              include_temporal=args.include_temporal, seed=case.seed % 1000)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = ImagicRun(pipe, case.source, case.caption, settings, args.work / f"case-{case.seed}", device="cpu",
                           progress=False, depth=depth).run()
    tuned = time.perf_counter() - started
    etas = {eta: edit(pipe, case, depth, steps=args.steps, guidance=guidance, strength=args.strength,
                      imagic_scale=eta) for eta in args.etas}
    edits = time.perf_counter() - started - tuned
    remove_adapter(pipe)
    if outputs is not None:
        outputs["prompt edit"] = prompt
        outputs.update({f"eta={eta:g}": out for eta, out in etas.items()})
    before, after = result.embedding_loss
    from gen1.eval.image_metrics import style_accuracy

    return dict(vae_psnr=psnr(vae, case.source), prompt_psnr_truth=psnr(prompt, case.truth),
                prompt_psnr_source=psnr(prompt, case.source),
                prompt_same_start_psnr_truth=psnr(prompt_same_start, case.truth),
                prompt_style_accuracy=style_accuracy(prompt, case.source, case.truth),
                prompt_same_start_style_accuracy=style_accuracy(prompt_same_start, case.source, case.truth),
                eta_style_accuracy={f"{e:g}": style_accuracy(o, case.source, case.truth) for e, o in etas.items()},
                eta_psnr_source={f"{e:g}": psnr(o, case.source) for e, o in etas.items()},
                eta_psnr_truth={f"{e:g}": psnr(o, case.truth) for e, o in etas.items()},
                embedding_loss=[before, after], embedding_loss_fall=(before - after) / before,
                lora_loss=list(result.lora_loss), steps=result.steps, stopped_early=result.stopped_early,
                seconds_tuning=tuned, seconds_edits=edits)


def summarise(per_case: list[dict], etas) -> dict:
    n = len(per_case)

    def mean(values):
        return sum(values) / len(values)

    by_eta = {f"{e:g}": mean([c["eta_psnr_truth"][f"{e:g}"] for c in per_case]) for e in etas}
    best_fixed = max(by_eta, key=by_eta.get)
    best_per_case = [max(c["eta_psnr_truth"].values()) for c in per_case]
    vae = mean([c["vae_psnr"] for c in per_case])
    eta0 = mean([c["eta_psnr_source"]["0"] for c in per_case]) if "0" in per_case[0]["eta_psnr_source"] else None
    prompt = mean([c["prompt_psnr_truth"] for c in per_case])
    return dict(cases=n, vae_psnr=vae, eta0_psnr_source=eta0, prompt_psnr_truth=prompt,
                prompt_same_start_psnr_truth=mean([c["prompt_same_start_psnr_truth"] for c in per_case]),
                prompt_style_accuracy=mean([c["prompt_style_accuracy"] for c in per_case]),
                prompt_same_start_style_accuracy=mean([c["prompt_same_start_style_accuracy"] for c in per_case]),
                eta_style_accuracy={f"{e:g}": mean([c["eta_style_accuracy"][f"{e:g}"] for c in per_case])
                                    for e in etas},
                eta_psnr_truth=by_eta, best_fixed_eta=best_fixed, best_fixed_psnr_truth=by_eta[best_fixed],
                best_per_case_psnr_truth=mean(best_per_case),
                embedding_loss_fall=mean([c["embedding_loss_fall"] for c in per_case]),
                embedding_loss_fall_min=min(c["embedding_loss_fall"] for c in per_case),
                seconds_tuning=mean([c["seconds_tuning"] for c in per_case]),
                seconds_edits=mean([c["seconds_edits"] for c in per_case]))


def format_table(summary: dict, args) -> str:
    s = summary
    lines = [f"{s['cases']} held-out cases, {args.steps} steps, {args.size} px, {args.frames} frames; Imagic: "
             f"{args.embedding_steps} embedding steps, {args.lora_steps} LoRA steps (early stopping, patience "
             f"{args.patience})", "",
             "| figure | value | target |", "|---|---|---|",
             f"| VAE round trip PSNR vs source | {s['vae_psnr']:.2f} dB | |"]
    if s["eta0_psnr_source"] is not None:
        lines.append(f"| eta = 0 edit PSNR vs source | {s['eta0_psnr_source']:.2f} dB | "
                     f">= {s['vae_psnr'] - 3:.2f} dB |")
    lines += [f"| prompt edit (target caption) PSNR vs ground truth | {s['prompt_psnr_truth']:.2f} dB | |",
              f"| prompt edit from the Imagic edits' start (strength {args.strength:g}) PSNR vs ground truth | "
              f"{s['prompt_same_start_psnr_truth']:.2f} dB | |",
              f"| style accuracy: prompt edit / from the same start | {s['prompt_style_accuracy']:.1%} / "
              f"{s['prompt_same_start_style_accuracy']:.1%} | |",
              f"| best eta per case, PSNR vs ground truth | {s['best_per_case_psnr_truth']:.2f} dB | "
              f">= {s['prompt_psnr_truth'] + 1.5:.2f} dB |",
              f"| best single eta ({s['best_fixed_eta']}), PSNR vs ground truth | "
              f"{s['best_fixed_psnr_truth']:.2f} dB | "
              f">= {s['prompt_psnr_truth'] + 1.5:.2f} dB |",
              f"| embedding loss fall (mean / smallest) | {s['embedding_loss_fall']:.1%} / "
              f"{s['embedding_loss_fall_min']:.1%} | >= 20 % |",
              f"| seconds per case: tuning / {len(args.etas)} edits | {s['seconds_tuning']:.1f} / "
              f"{s['seconds_edits']:.1f} | |", "",
              "| eta | " + " | ".join(s["eta_psnr_truth"]) + " |",
              "|---|" + "---|" * len(s["eta_psnr_truth"]),
              "| PSNR vs ground truth (dB) | " + " | ".join(f"{v:.2f}" for v in s["eta_psnr_truth"].values()) + " |",
              "| style accuracy | " + " | ".join(f"{v:.1%}" for v in s["eta_style_accuracy"].values()) + " |"]
    return "\n".join(lines)


def main(argv=None) -> dict:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the bundled demo model)")
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--first", type=int, default=0, help="first case index")
    parser.add_argument("--etas", type=float, nargs="+", default=list(ETAS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--strength", type=float, default=1.0,
                        help="where the Imagic edits start: the source noised to this share of the steps (Dreamix "
                        "starts from the degraded input; 1 = pure noise, as Imagic). The prompt edit is run at 1 and, "
                        "when this is below 1, from the same start too")
    add_sampler_argument(parser)
    parser.add_argument("--guidance", type=float, default=None, help="w (default: the model's recommended w)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--embedding-steps", type=int, default=40)
    parser.add_argument("--embedding-lr", type=float, default=0.1)
    parser.add_argument("--lora-steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--image-ratio", type=float, default=0.25)
    parser.add_argument("--include-temporal", action="store_true")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--stills", default=None, help="write a PNG of the first case's frames 0 and 4 here")
    args = parser.parse_args(argv)

    from gen1.demo import bundled_model_dir
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_pretrained(str(args.model or bundled_model_dir()))
    use_sampler(pipe, args.scheduler)
    pipe.cast(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    per_case = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        args.work = Path(work)
        for index in range(args.first, args.first + args.cases):
            case = direction_case(index, frames=args.frames, size=args.size)
            outputs = {} if args.stills and index == args.first else None
            scores = score_case(pipe, case, args, outputs)
            if outputs is not None:
                write_direction_stills(args.stills, case, outputs)
            per_case.append(dict(index=index, attribute=case.attribute, caption=case.caption, **scores))
            best = max(scores["eta_psnr_truth"], key=scores["eta_psnr_truth"].get)
            print(f"case {index} ({case.attribute}): VAE {scores['vae_psnr']:.2f} dB, eta=0 vs source "
                  f"{scores['eta_psnr_source'].get('0', float('nan')):.2f} dB, prompt vs truth "
                  f"{scores['prompt_psnr_truth']:.2f} dB, best eta {best} vs truth "
                  f"{scores['eta_psnr_truth'][best]:.2f} dB, embedding loss -{scores['embedding_loss_fall']:.1%}, "
                  f"{scores['seconds_tuning']:.0f}+{scores['seconds_edits']:.0f} s", flush=True)
    del args.work
    summary = summarise(per_case, args.etas)
    result = dict(summary=summary, settings=vars(args), per_case=per_case, seconds=time.perf_counter() - start)
    print(format_table(summary, args))
    if args.json:
        from gen1.atomic import write_json

        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
