"""The public route's masked edits with an inpainting ControlNet (``--inpaint-controlnet``, e.g.
``lllyasviel/control_v11p_sd15_inpaint``) beside the depth ControlNet: equal to diffusers'
``AnimateDiffVideoToVideoControlNetPipeline`` with a ``MultiControlNetModel`` of the two at neutral settings (w_t = 1,
one window, the same inputs), each ControlNet at its own scale. Tiny random weights in the real layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import tiny_motion_unet
from tiny_public import (
    animatediff_scheduler,
    diffusers_video_pipeline,
    public_pipeline,
    tiny_controlnet,
    write_foreign_controlnet,
    write_public_stack,
)

from gen1.masked_edits import given_background
from gen1.masking import KeptRegion
from gen1.pipeline import Gen1Pipeline
from gen1.routes.controlnet import inpaint_condition
from gen1.seamless import SeamAnchor

FRAMES, SIZE = 4, 32


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("public")
    parts = write_public_stack(root)
    tiny_controlnet(tiny_motion_unet(seed=0), seed=6).save_pretrained(root / "inpaint")  # the inpainting layout
    return {**parts, "inpaint": root / "inpaint"}


@pytest.fixture(scope="module")
def pipe(stack):
    return public_pipeline(stack, inpaint_controlnet=stack["inpaint"])


def _video(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)


def _depth(seed=1):
    """Depth in exact multiples of 1/255, so that the same values reach diffusers as 8-bit images."""
    levels = np.random.default_rng(seed).integers(0, 256, (FRAMES, 1, SIZE, SIZE), dtype=np.uint8)
    return torch.from_numpy(levels).float() / 255.0


def _mask():
    """A square moving right, one mask per frame (F, H, W) in {0, 1}."""
    mask = np.zeros((FRAMES, SIZE, SIZE), dtype=np.float32)
    for index in range(FRAMES):
        mask[index, 8:22, 4 + 3 * index:16 + 3 * index] = 1
    return mask


def _gen(seed=7):
    return torch.Generator().manual_seed(seed)


SETTINGS = {"prompt": "a red car", "guidance_scale": 3.0, "strength": 0.75, "num_inference_steps": 3}


def _edit(pipe, stack, **kwargs):
    pipe.scheduler = animatediff_scheduler(stack)
    settings = dict(SETTINGS, temporal_guidance_scale=1.0, depth=_depth(), generator=_gen(), output_type="pt",
                    decode_chunk_size=8, mask=_mask(), controlnet_conditioning_scale=0.8, inpaint_controlnet_scale=0.6)
    settings.update(kwargs)
    return pipe(_video(), **settings).frames


def test_the_inpaint_condition_is_the_source_with_the_region_at_minus_one():
    frames = torch.rand(2, 3, 8, 8)
    region = torch.zeros(2, 1, 8, 8)
    region[:, :, 2:5, 3:6] = 1
    condition = inpaint_condition(frames, region)
    inside = (region > 0.5).expand_as(frames)
    assert torch.equal(condition[inside], torch.full_like(condition[inside], -1.0))
    assert torch.equal(condition[~inside], frames[~inside])


def test_a_masked_edit_equals_diffusers_with_a_multi_controlnet_of_depth_and_inpainting(stack, pipe):
    """diffusers' pipeline gets the depth images and the inpainting images (the source with the mask's pixels at
    -1, as diffusers' ControlNet inpainting docs make them) with a scale each; a masked edit's kept region (the
    source's latents, noised to each step, outside the mask; its pixels at the end) is put back by its step
    callback as gen1 puts it back, from the source latents and noise diffusers drew itself."""
    from diffusers import ControlNetModel
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    reference = diffusers_video_pipeline(pipe, base=stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"], scheduler=animatediff_scheduler(stack))
    reference.register_modules(controlnet=MultiControlNetModel(
        [reference.controlnet, ControlNetModel.from_pretrained(stack["inpaint"])]))
    video, depth = _video(), _depth()
    source = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0
    mask = torch.from_numpy(_mask())[:, None]
    drawn = {}
    add_noise = reference.scheduler.add_noise

    def spy(samples, noise, timesteps):  # the first call: the source latents and noise the edit starts from
        drawn.setdefault("source", samples.permute(0, 2, 1, 3, 4))
        drawn.setdefault("noise", noise.permute(0, 2, 1, 3, 4))
        return add_noise(samples, noise, timesteps)

    reference.scheduler.add_noise = spy
    latent_size = (SIZE // pipe.vae_scale_factor,) * 2

    def keep(pipeline, index, t, tensors):
        if "kept" not in drawn:
            drawn["kept"] = KeptRegion.from_pixel_mask(
                mask, (SIZE, SIZE), latent_size, 1.0, source_latents=drawn["source"], noise=drawn["noise"],
                scheduler=pipeline.scheduler, timesteps=pipeline.scheduler.timesteps[-pipeline._num_timesteps:],
                cover=True,  # a depth given by the user: its masked pixels are edited fully, and the part where
                # that depth shows no new object is composited seamlessly, as gen1 composites it
                seamless=True, seam_anchor=SeamAnchor(1 - mask, redrawn=given_background(depth, mask)))
        return {"latents": drawn["kept"](index, t, tensors["latents"], None)}

    depth_images = [Image.fromarray((d[0].numpy() * 255).round().astype(np.uint8)).convert("RGB") for d in depth]
    expected = reference(
        video=[Image.fromarray(frame) for frame in video],
        conditioning_frames=[depth_images, list(inpaint_condition(source, mask))],
        controlnet_conditioning_scale=[0.8, 0.6], height=SIZE, width=SIZE, generator=_gen(), output_type="pt",
        decode_chunk_size=8, callback_on_step_end=keep, **SETTINGS,
    ).frames[0].float()
    expected = drawn["kept"].composite(expected, source)
    out = _edit(pipe, stack)
    assert out.shape == expected.shape == (FRAMES, 3, SIZE, SIZE)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)
    outside = (mask < 0.5).expand_as(out)
    assert torch.equal(out[outside], source[outside])  # not trivial: the kept region is the source's
    assert (out - _edit(pipe, stack, inpaint_controlnet_scale=1.5)).abs().max() > 1e-3  # the inpainting acts


def test_scale_zero_is_the_depth_controlnet_alone_and_an_edit_without_a_mask_runs_no_inpainting(stack, pipe):
    alone = public_pipeline(stack)
    torch.testing.assert_close(_edit(pipe, stack, inpaint_controlnet_scale=0.0),
                               _edit(alone, stack, inpaint_controlnet_scale=1.0), rtol=0, atol=1e-6)
    calls = []
    hook = pipe.inpaint_controlnet.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        unmasked = _edit(pipe, stack, mask=None)
        assert not calls
        _edit(pipe, stack)
        assert len(calls) == 2  # one call per step (strength 0.75 of 3 steps: 2 steps)
    finally:
        hook.remove()
    torch.testing.assert_close(unmasked, _edit(alone, stack, mask=None, inpaint_controlnet_scale=1.0), rtol=0,
                               atol=1e-6)
    assert pipe.inpaint_controlnet in pipe.route.denoisers()  # --compile compiles it too


def test_its_scale_is_refused_without_an_inpainting_controlnet_and_on_native_models(stack):
    from tiny_pipeline import tiny_pipeline

    with pytest.raises(ValueError, match="^inpaint_controlnet_scale needs an inpainting ControlNet") as error:
        _edit(public_pipeline(stack), stack, inpaint_controlnet_scale=0.5)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="^inpaint_controlnet_scale does not apply to this pipeline"):
        tiny_pipeline()(_video(), prompt="x", inpaint_controlnet_scale=0.5, num_inference_steps=1)
    with pytest.raises(ValueError, match="^inpaint_controlnet_scale must be a finite number >= 0"):
        _edit(public_pipeline(stack), stack, inpaint_controlnet_scale=-1.0)


def test_an_inpainting_controlnet_of_another_base_is_refused_before_its_weights_load(stack, tmp_path):
    foreign = write_foreign_controlnet(tmp_path / "foreign")
    with pytest.raises(ValueError, match="^inpainting ControlNet '.*foreign' was made for another base"):
        Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                      controlnet=stack["controlnet"], inpaint_controlnet=foreign)


def test_the_pipeline_saves_and_loads_with_its_inpainting_controlnet(pipe, stack, tmp_path):
    pipe.save_pretrained(tmp_path / "saved")
    loaded = Gen1Pipeline.from_pretrained(tmp_path / "saved")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.inpaint_controlnet is not None
    torch.testing.assert_close(_edit(loaded, stack), _edit(pipe, stack), rtol=0, atol=1e-6)


def test_gen1_edit_takes_the_inpainting_controlnet_on_the_public_route_only(stack, tmp_path):
    from types import SimpleNamespace

    from gen1.model_sources import check_model_source

    args = SimpleNamespace(model=None, base=str(stack["base"]), motion_adapter=str(stack["motion_adapter"]),
                           controlnet=str(stack["controlnet"]), depth_model=None,
                           inpaint_controlnet=str(stack["inpaint"]))
    source = check_model_source(args, user_depth=True)
    assert source.inpaint_controlnet == stack["inpaint"]
    with pytest.raises(ValueError, match=r"^--inpaint-controlnet belongs to the public route"):
        check_model_source(SimpleNamespace(model=None, base=None, motion_adapter=None, controlnet=None,
                                           depth_model=None, inpaint_controlnet=str(stack["inpaint"])))
    missing = SimpleNamespace(**{**vars(args), "inpaint_controlnet": str(tmp_path / "nowhere")})
    with pytest.raises((ValueError, FileNotFoundError), match="--inpaint-controlnet"):
        check_model_source(missing, user_depth=True)
