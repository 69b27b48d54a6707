"""What the benchmark scripts beside this one share: the sampler their published figures were measured with, the
options and the loop of the scene benchmarks (one synthetic scene after another, a row each, a summary), and the grid
of stills they write for the docs. Imported as a sibling module (``python scripts/bench_x.py`` puts this folder on
``sys.path``)."""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from gen1.denoise import make_scheduler
from gen1.settings import SCHEDULERS


def add_sampler_argument(parser, default: str | None = "ddim") -> None:
    """``--scheduler``: the sampler, made from the model's own scheduler config. The default ``ddim`` is the sampler
    the published figures were measured with (the bundled model's own default has been UniPC at 6 steps since
    2026-12-07); ``None`` keeps the model's."""
    if default is None:
        help_text = "sampler (default: the model's)"
    else:
        help_text = (f"sampler, made from the model's scheduler config (default {default}: the published figures' "
                     "sampler; the bundled model's own default is unipc at 6 steps)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=default, help=help_text)


def use_sampler(pipe, name: str | None) -> None:
    """Give ``pipe`` the sampler ``name`` (:func:`gen1.denoise.make_scheduler` from its config); None: keep its own."""
    if name is not None:
        pipe.scheduler = make_scheduler(name, pipe.scheduler.config)


def add_scene_arguments(parser, *, stills_columns: str, guidance: float) -> None:
    """The options of a scene benchmark: which scenes (``--scenes``, ``--first``), their size (``--frames``,
    ``--size``), the edit's ``--guidance``, ``--seed`` and ``--temporal-guidance``, what it writes (``--json``,
    ``--stills`` showing ``stills_columns``, ``--stills-scenes``) and which ``--model`` edits."""
    from gen1.demo.world import FRAME_SIZE

    parser.add_argument("--scenes", type=int, default=32, help="scenes to try (a scene without a fitting object is "
                        "skipped and reported)")
    parser.add_argument("--first", type=int, default=0, help="index of the first scene")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=FRAME_SIZE)
    parser.add_argument("--guidance", type=float, default=guidance)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temporal-guidance", type=float, default=1.0, help="w_t of every edit (default 1)")
    parser.add_argument("--json", help="write every scene's row and the summary here")
    parser.add_argument("--stills", help=f"write a PNG of the first scenes here ({stills_columns}; frames 0, 3, 7)")
    parser.add_argument("--stills-scenes", type=int, default=2, help="scenes in --stills (default 2)")
    parser.add_argument("--model", default=None, help="a gen1 pipeline folder of the demo world's kind, e.g. a "
                        "fine-tune's export (default: the bundled demo model)")


def load_scene_pipeline(args):
    """The pipeline a scene benchmark edits with: ``--model``, or the bundled demo model; progress bars off."""
    from gen1.demo import bundled_model_dir
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_pretrained(args.model or bundled_model_dir())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_scenes(pipe, args, first_seed: int, run_scene, summary, stills: list) -> dict:
    """Scenes ``first_seed + args.first`` on, ``args.scenes`` of them: ``run_scene(pipe, seed, args)`` gives a row
    (printed as it comes) or None and why it was skipped; then ``summary(rows)`` is printed, the ``stills`` the
    scenes collected written to ``--stills`` and everything to ``--json`` (atomically). Returns what ``--json`` holds."""
    from gen1.atomic import write_json

    rows, skipped = [], []
    for index in range(args.first, args.first + args.scenes):
        seed = first_seed + index
        start = time.time()
        row, why = run_scene(pipe, seed, args)
        if row is None:
            skipped.append(seed)
            print(f"scene {seed}: {why}; skipped", flush=True)
            continue
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
              f"({time.time() - start:.0f} s)", flush=True)
    result = dict(summary=summary(rows), skipped=skipped, rows=rows, args=vars(args))
    print(json.dumps(result["summary"], indent=1))
    if args.stills and stills:
        write_stills(args.stills, stills)
    if args.json:
        write_json(args.json, result)
    return result


def write_stills(path, scenes, frames=(0, 3, 7), zoom: int = 2) -> None:
    """A PNG (checked, written atomically) with one row per scene and frame in ``frames`` (those the clip has):
    each scene's videos side by side (``(F, C, H, W)`` in [0, 1], one channel shown grey), enlarged ``zoom`` times
    (nearest)."""
    from PIL import Image

    from gen1.atomic import atomic_path, check_output_path

    rows = []
    for videos in scenes:
        for index in frames:
            if index < videos[0].shape[0]:
                rows.append(torch.cat([video[index].expand(3, -1, -1) for video in videos], dim=2))
    grid = (torch.cat(rows, dim=1).clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    image = Image.fromarray(grid).resize((grid.shape[1] * zoom, grid.shape[0] * zoom), Image.NEAREST)
    with atomic_path(check_output_path(path)) as staged:
        image.save(staged, format="PNG")
