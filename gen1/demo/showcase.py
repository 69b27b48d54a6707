"""The main job of a fresh install: edit a sample clip with the bundled model and show the result.

:func:`sample_inputs` renders a held-out synthetic clip (scene A, style A) and a reference image (scene B,
style B); :func:`run_showcase` edits the clip towards the reference (or a prompt) with the bundled
pipeline and writes ``source.mp4``, ``reference.png``, ``edited.mp4`` and ``comparison.png`` (rows = a few
frames; columns = source | depth | reference | output, enlarged ``zoom`` times with nearest-neighbour so
the 64x64 frames stay readable). A video of your own (``input_video``) is edited as ``gen1 edit`` edits it:
every frame (long clips in temporal windows) unless ``frames`` says fewer, at its own frame rate, with its
audio.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from gen1.atomic import atomic_path
from gen1.demo import DEMO_GUIDANCE
from gen1.demo.world import edit_case
from gen1.media import read_image, read_video, unit_to_uint8, write_video
from gen1.pipeline import Gen1Pipeline

SAMPLE_INDEX = 7  # which held-out edit case (gen1.demo.world.edit_case) the demo shows
SAMPLE_FRAMES = 16  # frames of the sample clip


def sample_inputs(frames: int = SAMPLE_FRAMES, size: int = 64):
    """Source (F,3,H,W), reference (1,3,H,W), its caption and the ground-truth edit, from held-out seeds."""

    case = edit_case(SAMPLE_INDEX, frames=frames, size=size)
    return case.source, case.reference, case.prompt, case.ground_truth


def _uint8(x: torch.Tensor) -> np.ndarray:
    """(N,C,H,W) float [0,1] -> (N,H,W,3) uint8 (grey channels repeated)."""
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return unit_to_uint8(x.permute(0, 2, 3, 1))


def comparison_sheet(source, depth, reference, output, *, rows: int = 4, zoom: int = 3) -> np.ndarray:
    """uint8 (rows*H*zoom, 4*W*zoom, 3): source | depth | reference | output for ``rows`` evenly spaced frames."""
    n = source.shape[0]
    picks = np.unique(np.linspace(0, n - 1, min(rows, n)).round().astype(int))
    h, w = output.shape[-2:]
    resize = torch.nn.functional.interpolate
    panels = [source, depth, reference.expand(n, -1, -1, -1), output]
    panels = [_uint8(resize(p.float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
                     if tuple(p.shape[-2:]) != (h, w) else p) for p in panels]
    strip = np.concatenate(panels, axis=2)[picks]  # (rows, H, 4W, 3)
    sheet = np.concatenate(list(strip), axis=0)
    return sheet.repeat(zoom, axis=0).repeat(zoom, axis=1)


def run_showcase(out: str | Path, *, model: str | Path | None = None, input_video: str | None = None,
                 reference: str | None = None, prompt: str | None = None, steps: int | None = None,
                 guidance: float = DEMO_GUIDANCE, structure_level: float = 0.0, seed: int = 0,
                 frames: int | None = None, size: int = 64) -> dict:
    """Run the demo edit; return the written paths, the number of frames edited, whether audio was kept and
    the seconds the edit took. ``frames``: how many frames to edit (default: :data:`SAMPLE_FRAMES` of the
    sample clip, every frame of ``input_video``)."""
    from PIL import Image  # lazy: PIL is heavy and only this path needs it

    from gen1.demo import bundled_model_dir  # lazy: its own package, loaded by the time this runs

    if frames is not None and frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fps, audio_from = 8.0, None
    sample_src, sample_ref, sample_prompt, _ = sample_inputs(frames or SAMPLE_FRAMES, size)
    if input_video is not None:
        clip = read_video(input_video, size=size, max_frames=frames)
        source = torch.from_numpy(np.array(clip.frames)).permute(0, 3, 1, 2).float() / 255
        fps = clip.fps
        audio_from = clip if clip.has_audio else None
    else:
        source = sample_src
    if reference is not None:
        ref = torch.from_numpy(np.array(read_image(reference))).permute(2, 0, 1)[None].float() / 255
    elif prompt is None:
        ref = sample_ref
    else:
        ref = None
    paths = dict(source=out / "source.mp4", edited=out / "edited.mp4", comparison=out / "comparison.png")
    write_video(paths["source"], _uint8(source), fps, audio_from=audio_from)
    if ref is not None:
        paths["reference"] = out / "reference.png"
        with atomic_path(paths["reference"]) as tmp:
            Image.fromarray(_uint8(ref)[0]).save(tmp)

    start = time.perf_counter()
    pipe = Gen1Pipeline.from_pretrained(str(model or bundled_model_dir()))
    pipe.cast(torch.float32)
    result = pipe(source, prompt=prompt, reference_image=None if ref is None else ref[0],
                  structure_level=structure_level, guidance_scale=guidance, num_inference_steps=steps,
                  generator=torch.Generator().manual_seed(seed), output_type="pt")
    seconds = time.perf_counter() - start
    output = result.frames.float().clamp(0, 1)
    write_video(paths["edited"], _uint8(output), fps, audio_from=audio_from)
    shown_ref = ref if ref is not None else torch.ones(1, 3, *output.shape[-2:])
    sheet = comparison_sheet(source, torch.as_tensor(result.depth).float(), shown_ref, output)
    with atomic_path(paths["comparison"]) as tmp:
        Image.fromarray(sheet).save(tmp)
    return dict(paths={k: str(v) for k, v in paths.items()}, frames=int(output.shape[0]), audio=audio_from is not None,
                edit_seconds=seconds, prompt=prompt if ref is None else None, sample_caption=sample_prompt)
