"""What the benchmark scripts beside this one share: the sampler their published figures were measured with, and
the grid of stills they write for the docs. Imported as a sibling module (``python scripts/bench_x.py`` puts this
folder on ``sys.path``)."""

from __future__ import annotations

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
