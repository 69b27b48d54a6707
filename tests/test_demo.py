"""The bundled demo model as the library ships it: its files, edits with it, and ``gen1 demo``
(CPU, a few seconds each). The recipe that trained it is tested in tests/test_recipe_demo*.py."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch


def test_bundled_model_is_fp16_safetensors_within_budget():
    from gen1.demo import bundled_model_dir

    root = bundled_model_dir()
    weights = sorted(root.rglob("*.safetensors"))
    assert {p.parent.name for p in weights} == {"vae", "unet", "depth_estimator", "content_encoder"}
    assert not list(root.rglob("*.bin")) and not list(root.rglob("*.pt"))
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) <= 40 * 2**20
    from safetensors import safe_open

    for path in weights:
        with safe_open(str(path), framework="pt") as handle:
            dtypes = {handle.get_slice(k).get_dtype() for k in handle.keys()}
        assert dtypes <= {"F16", "I64"}, (path, dtypes)


def test_demo_edit_cases_come_from_held_out_seeds_of_the_demo_world():
    from gen1.demo.world import HELD_OUT_START, MAX_ROLL, TRAIN_SEEDS, demo_scene, edit_case
    from gen1.synthetic import render, sample_scene

    case = edit_case(3, frames=2, size=32)
    assert case.seed >= HELD_OUT_START > TRAIN_SEEDS
    assert case.source.shape == case.ground_truth.shape == (2, 3, 32, 32) and case.reference.shape == (1, 3, 32, 32)
    # the demo world is the synthetic one with the camera rolled
    assert demo_scene(case.seed) == sample_scene(case.seed, max_roll=MAX_ROLL) != sample_scene(case.seed)
    torch.testing.assert_close(render(demo_scene(case.seed), case.target_style, 2, 32, 32)[0], case.ground_truth)
    assert edit_case(4, frames=2, size=32).seed == case.seed + 1
    with pytest.raises(ValueError, match="index must be >= 0"):
        edit_case(-1)


def test_bundled_model_edits_by_reference_and_by_prompt(bundled_pipe):
    from gen1.demo.world import edit_case

    case = edit_case(0, frames=4)
    for content in (dict(reference_image=case.reference[0]), dict(prompt=case.prompt)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a caption in the model's words: no unknown word, no "no prior" warning
            # diffusers' UniPC scheduler (the bundled model's) calls np.array on a tensor: numpy's notice, not ours
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"diffusers\.")
            out = bundled_pipe(case.source, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                               output_type="pt", guidance_scale=3.0, **content)
        assert out.frames.shape == (4, 3, 64, 64)
        assert torch.isfinite(out.frames).all()
        assert out.depth.shape == (4, 1, 64, 64)


def test_bundled_model_takes_structure_from_depth_and_is_temporally_consistent(bundled_pipe):
    """A reduced run of the demo's benchmark on 4 held-out edits: the bundled model must follow the source's
    depth (PSNR against the ground-truth edit falls when it is given another clip's depth, and falls from
    t_s = 0 to t_s = 7, whose ~4-cell layout still carries the coarse structure) and its temporal layers must
    cut flicker (warp error with w_t = 1 below the image model's, w_t = 0)."""
    from gen1.demo import DEMO_GUIDANCE
    from gen1.demo.world import edit_case
    from gen1.eval.edit_benchmark import configurations, score_case
    from gen1.eval.image_metrics import psnr

    every_run = configurations(DEMO_GUIDANCE)  # the benchmark's own runs; "base" is t_s = 0, w_t = 1, demo's w
    runs = {name: every_run[name] for name in ("base", "ts=7", "wt=0.0")}
    cases = [edit_case(i, frames=8) for i in range(4)]
    scores = [score_case(bundled_pipe, case, runs, steps=8) for case in cases]
    mean = {name: {k: float(np.mean([s[name][k] for s in scores])) for k in ("psnr", "warp_error")} for name in runs}
    wrong = []
    for i, case in enumerate(cases):  # the same edit guided by the next case's depth
        other = bundled_pipe.depth_estimator.estimate(cases[(i + 1) % len(cases)].source)
        out = bundled_pipe(case.source, content_embeds=bundled_pipe.content_encoder.encode_image(case.reference),
                           depth=other, guidance_scale=DEMO_GUIDANCE, num_inference_steps=8,
                           generator=torch.Generator().manual_seed(case.seed), output_type="pt").frames
        wrong.append(psnr(out.float().clamp(0, 1), case.ground_truth))
    assert mean["base"]["psnr"] > float(np.mean(wrong)) + 2.0, (mean, wrong)
    assert mean["base"]["psnr"] > mean["ts=7"]["psnr"] + 0.2, mean
    assert mean["base"]["warp_error"] < 0.7 * mean["wt=0.0"]["warp_error"], mean


def test_gen1_demo_writes_video_and_comparison_and_keeps_the_thread_count(tmp_path):
    from PIL import Image

    from gen1.cli import main
    from gen1.media import read_video

    torch.set_num_threads(1)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "2", "--frames", "4"]) == 0
    assert torch.get_num_threads() == 1  # run in-process, it leaves the caller's setting alone
    for name in ("source.mp4", "edited.mp4", "reference.png", "comparison.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    sheet = Image.open(out / "comparison.png")
    assert sheet.size == (4 * 64 * 3, 4 * 64 * 3)  # 4 panels wide, 4 frames tall, enlarged 3x
    assert read_video(str(out / "edited.mp4")).frames.shape == (4, 64, 64, 3)


def test_gen1_demo_edits_every_frame_of_an_input_and_keeps_its_audio(clips_dir, tmp_path, capsys):
    """Like gen1 edit: more frames than the sample clip's 16, the input's frame rate and its audio."""
    from gen1.cli import main
    from gen1.media import read_video, write_video

    clip = read_video(clips_dir / "man-skiing.mp4", size=64, max_frames=20)
    assert clip.has_audio
    source = write_video(tmp_path / "in.mp4", clip.frames, clip.fps, audio_from=clip)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--input", str(source), "--steps", "1"]) == 0
    assert "edited 20 frames, audio kept" in capsys.readouterr().out
    edited = read_video(out / "edited.mp4")
    assert edited.frames.shape == (20, 64, 64, 3)
    assert edited.fps == Fraction(30000, 1001) and edited.has_audio
    assert main(["demo", "--out", str(out), "--input", str(source), "--steps", "1", "--frames", "3"]) == 0
    assert read_video(out / "edited.mp4").frames.shape[0] == 3


def test_gen1_demo_rejects_bad_arguments(tmp_path, capsys):
    from gen1.cli import main

    assert main(["demo", "--out", str(tmp_path / "x"), "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "x"), "--frames", "0"]) == 2
    assert "--frames" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "x"), "--input", str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4" in capsys.readouterr().err
