"""A model's own defaults (gen1.model_defaults): the size it was trained at and its recommended guidance, recorded
in its folder and used by the API, `gen1 edit` and `gen1 customize` when no size / guidance is given; a size far
from the trained one warns."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_pipeline import tiny_pipeline
from tiny_structure_content import TINY_DIM

from gen1.cli import main
from gen1.model_defaults import check_defaults, far_from_trained, image_model_size, read_model_defaults
from gen1.pipeline import Gen1Pipeline


def _recorded(trained_size=None, guidance=None) -> Gen1Pipeline:
    pipe = tiny_pipeline(max_frames=4)
    return Gen1Pipeline(**pipe.components, trained_size=trained_size, recommended_guidance_scale=guidance)


def _call(pipe, video, **kwargs):
    embeds = torch.randn(1, TINY_DIM, generator=torch.Generator().manual_seed(5))
    depth = torch.rand(video.shape[0], 1, *video.shape[-2:], generator=torch.Generator().manual_seed(6))  # its shape
    pipe.set_progress_bar_config(disable=True)
    return pipe(video, content_embeds=embeds, depth=depth, num_inference_steps=2, output_type="pt",
                generator=torch.Generator().manual_seed(0), **kwargs).frames


def _video(height=48, width=64):
    return torch.rand(4, 3, height, width, generator=torch.Generator().manual_seed(0))


def test_the_bundled_model_records_64_px_the_demo_guidance_and_its_sampler(bundled_pipe):
    """64 px, w = 1, and the cheapest sampler within the frontier's bounds (docs/performance.md): UniPC (order 2)
    at 6 steps."""
    from diffusers import UniPCMultistepScheduler

    from gen1.demo import DEMO_GUIDANCE, bundled_model_dir
    from gen1.demo.world import FRAME_SIZE

    recorded = read_model_defaults(bundled_model_dir())
    assert recorded == check_defaults(FRAME_SIZE, DEMO_GUIDANCE, num_inference_steps=6) \
        == check_defaults(64, 1.0, num_inference_steps=6)
    assert bundled_pipe.config.trained_size == 64 and bundled_pipe.default_guidance_scale == DEMO_GUIDANCE
    assert isinstance(bundled_pipe.scheduler, UniPCMultistepScheduler)
    assert bundled_pipe.scheduler.config.solver_order == 2
    assert bundled_pipe.scheduler.config.prediction_type == "v_prediction"
    assert bundled_pipe.scheduler.config.timestep_spacing == "trailing"


def test_the_api_defaults_to_the_recorded_size_and_guidance(tmp_path):
    pipe = _recorded(trained_size=16, guidance=2.0)
    video = _video(48, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the trained size itself never warns
        out = _call(pipe, video)
    assert out.shape == (4, 3, 16, 16 * 100 // 48 // 8 * 8)  # short side 16, aspect kept (rounded to 8, as gen1 edit)
    torch.testing.assert_close(out, _call(pipe, video, size=16, guidance_scale=2.0), rtol=0, atol=0)
    assert (out - _call(pipe, video, size=16, guidance_scale=7.5)).abs().mean() > 1e-4

    # recorded in model_index.json by save_pretrained, read back by from_pretrained
    pipe.save_pretrained(tmp_path / "m")
    index = json.loads((tmp_path / "m" / "model_index.json").read_text())
    assert index["trained_size"] == 16 and index["recommended_guidance_scale"] == 2.0
    loaded = Gen1Pipeline.from_pretrained(tmp_path / "m")
    assert loaded.config.trained_size == 16 and loaded.default_guidance_scale == 2.0


def test_a_model_that_records_nothing_keeps_the_source_size_and_7_5():
    pipe = _recorded()
    video = _video(24, 32)
    out = _call(pipe, video)
    assert out.shape == (4, 3, 24, 32)
    torch.testing.assert_close(out, _call(pipe, video, guidance_scale=7.5), rtol=0, atol=0)


def test_a_size_far_from_the_trained_one_warns_once_in_one_line():
    pipe = _recorded(trained_size=16)
    with pytest.warns(UserWarning, match=r"size 40 px is far from the 16 px this model was trained at: expect a worse "
                                         r"edit, about 6x the compute per step \(its default size is 16\)") as seen:
        _call(pipe, _video(48, 48), size=40)
    assert len([w for w in seen if "far from" in str(w.message)]) == 1 and "\n" not in str(seen[0].message)
    with pytest.warns(UserWarning, match="size 8 px is far from the 32 px"):
        _call(_recorded(trained_size=32), _video(48, 48), height=8, width=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _call(pipe, _video(48, 48), size=32)  # 2x is not "far"
    assert far_from_trained(512, None) is None


def test_bad_recorded_defaults_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"trained_size must be a multiple of 8 pixels in \[8, 4096\] or null, got 60"):
        _recorded(trained_size=60)
    with pytest.raises(ValueError, match=r"recommended_guidance_scale must be a finite number >= 0 or null, got -1"):
        _recorded(guidance=-1)
    (tmp_path / "model_index.json").write_text(json.dumps({"trained_size": "64"}))
    with pytest.raises(ValueError, match=r"model_index.json': trained_size must be .* got '64'"):
        read_model_defaults(tmp_path)


def test_stable_diffusion_bases_default_to_their_image_model_size():
    """diffusers' convention: sample_size latent cells times the VAE factor, 512 for SD 1.5."""
    sd15_unet, sd15_vae = {"sample_size": 64}, {"block_out_channels": [128, 256, 512, 512]}
    assert image_model_size(sd15_unet, sd15_vae) == 512
    assert image_model_size({}, sd15_vae) is None
    pipe = tiny_pipeline(max_frames=4)._record_image_model_size()
    assert pipe.config.trained_size == 16 * 2  # the tiny UNet's sample_size 16, VAE factor 2


def test_gen1_edit_uses_the_model_defaults_and_warns_for_a_far_size(tmp_path, capsys):
    from gen1.media import read_video, write_video

    model = tmp_path / "model"
    _recorded(trained_size=16, guidance=2.0).save_pretrained(model)
    source = tmp_path / "in.mp4"
    write_video(source, np.random.default_rng(0).integers(0, 255, (2, 48, 48, 3), dtype=np.uint8), fps=8)
    reference = tmp_path / "ref.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(reference)
    common = ["--reference", reference, "--model", model, "--steps", 1]

    assert main(["edit", str(source), "-o", str(tmp_path / "a.mp4"), *map(str, common)]) == 0
    assert "defaults: --size 16 (the model's trained size), --guidance 2 (the model's)" in capsys.readouterr().out
    assert read_video(tmp_path / "a.mp4").frames.shape == (2, 16, 16, 3)

    with pytest.warns(UserWarning, match="size 40 px is far from the 16 px"):
        assert main(["edit", str(source), "-o", str(tmp_path / "b.mp4"), "--size", "40", "--guidance", "1",
                     *map(str, common)]) == 0
    assert "defaults:" not in capsys.readouterr().out
    assert read_video(tmp_path / "b.mp4").frames.shape == (2, 40, 40, 3)


def test_gen1_customize_trains_at_the_model_size(tmp_path, capsys, monkeypatch):
    from gen1.training import customize

    model = tmp_path / "model"
    _recorded(trained_size=16).save_pretrained(model)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
    sizes = []
    real = customize.encode_images
    monkeypatch.setattr(customize, "encode_images", lambda paths, encoder, size: sizes.append(size) or real(
        paths, encoder, size))
    code = main(["customize", "--model", str(model), "--images", str(images), "--out", str(tmp_path / "a.safetensors"),
                 "--steps", "1", "--batch-size", "1"])
    assert code == 0 and sizes == [16]
    assert "defaults: --size 16 (the model's trained size)" in capsys.readouterr().out


def test_a_model_that_records_its_step_count_edits_with_it_unless_told_otherwise(tmp_path):
    pipe = tiny_pipeline(max_frames=4)
    recorded = Gen1Pipeline(**pipe.components, recommended_num_inference_steps=3)
    recorded.save_pretrained(tmp_path / "model")
    assert read_model_defaults(tmp_path / "model").num_inference_steps == 3
    totals = []
    embeds = torch.randn(1, TINY_DIM, generator=torch.Generator().manual_seed(5))
    for steps in (None, 2):
        recorded(_video(16, 16), content_embeds=embeds, num_inference_steps=steps, output_type="latent",
                 progress_callback=lambda done, total: totals.append(total))
    assert sorted(set(totals)) == [2, 3]  # one window: the step count is the bar's length
    assert read_model_defaults(tmp_path / "nothing").steps_or() == 30
    with pytest.raises(ValueError, match="recommended_num_inference_steps must be an integer in \\[1, 1000\\]"):
        check_defaults(None, None, num_inference_steps=0)
