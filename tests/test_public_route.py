"""The public-checkpoint route (SD-1.5 + AnimateDiff motion modules + depth ControlNet + the base's text encoder):
equal to diffusers' own pipelines at neutral settings, and every Gen-1 mode acting on it as on the native route."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gen1.routes import ControlNetRoute

from tiny_public import animatediff_scheduler, diffusers_video_pipeline, write_foreign_controlnet

FRAMES, SIZE = 4, 32


@pytest.fixture(scope="module")
def stack(public_stack):
    """The tiny public checkpoints (conftest's ``public_stack``), under the short name these tests use."""
    return public_stack


@pytest.fixture(scope="module")
def pipe(public):
    """Their public-route pipeline (conftest's ``public``)."""
    return public


def _video(frames=FRAMES, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def _depth(frames=FRAMES, size=SIZE, seed=1):
    """Depth in exact multiples of 1/255, so that the same values reach diffusers as 8-bit images."""
    levels = np.random.default_rng(seed).integers(0, 256, (frames, 1, size, size), dtype=np.uint8)
    return torch.from_numpy(levels).float() / 255.0


def _gen(seed=7):
    return torch.Generator().manual_seed(seed)


def _edit(pipe, **kwargs):
    settings = dict(prompt="a red car", guidance_scale=3.0, temporal_guidance_scale=1.0, structure_level=0.0,
                    strength=0.75, num_inference_steps=3, depth=_depth(), generator=_gen(), output_type="pt",
                    decode_chunk_size=8)
    settings.update(kwargs)
    video = settings.pop("video", _video())
    return pipe(video, **settings).frames


def _depth_images(depth):
    return [Image.fromarray((d[0].numpy() * 255).round().astype(np.uint8)).convert("RGB") for d in depth]


# ------------------------------------------------------------------------------------------ equal to diffusers
def _diffusers_video_pipeline(stack, pipe):
    """diffusers' AnimateDiff ControlNet video-to-video pipeline on the same checkpoints (and text encoder)."""
    return diffusers_video_pipeline(pipe, base=stack["base"], motion_adapter=stack["motion_adapter"],
                                    controlnet=stack["controlnet"], scheduler=animatediff_scheduler(stack))


def test_video_route_equals_diffusers_animatediff_controlnet_video_to_video(stack, pipe):
    reference = _diffusers_video_pipeline(stack, pipe)
    video, depth = _video(), _depth()
    expected = reference(
        video=[Image.fromarray(frame) for frame in video], conditioning_frames=_depth_images(depth),
        prompt="a red car", strength=0.75, num_inference_steps=3, guidance_scale=3.0, height=SIZE, width=SIZE,
        generator=_gen(), output_type="pt", decode_chunk_size=8,
    ).frames[0]
    pipe.scheduler = animatediff_scheduler(stack)
    out = _edit(pipe, video=video, depth=depth)
    assert out.shape == expected.shape == (FRAMES, 3, SIZE, SIZE)
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=1e-4)
    assert (out - _edit(pipe, video=video, depth=depth, prompt="a blue boat")).abs().mean() > 1e-3  # not trivial


def test_at_strength_1_gen1_starts_from_pure_noise_where_diffusers_keeps_some_of_the_source(stack, pipe):
    """The one documented difference (docs/models.md): at strength 1 gen1 starts from pure noise, as Gen-1 does,
    so the source frames play no part (only their depth); diffusers noises the source to the first timestep and
    keeps sqrt(alpha_bar_T) of it, so its output differs from gen1's and follows the source."""
    reference = _diffusers_video_pipeline(stack, pipe)
    pipe.scheduler = animatediff_scheduler(stack)
    depth = _depth()

    def diffusers_edit(video):
        return reference(
            video=[Image.fromarray(frame) for frame in video], conditioning_frames=_depth_images(depth),
            prompt="a red car", strength=1.0, num_inference_steps=3, guidance_scale=3.0, height=SIZE, width=SIZE,
            generator=_gen(), output_type="pt", decode_chunk_size=8).frames[0].float()

    other = _video(seed=5)
    ours, ours_other = (_edit(pipe, video=v, depth=depth, strength=1.0) for v in (_video(), other))
    theirs, theirs_other = diffusers_edit(_video()), diffusers_edit(other)
    torch.testing.assert_close(ours, ours_other, rtol=0, atol=1e-6)  # the source's pixels play no part
    assert (theirs - theirs_other).abs().max() > 1e-4  # diffusers keeps some of the source
    assert (ours - theirs).abs().max() > 1e-4
    # Asked for, gen1 starts as diffusers does at strength 1, and equals it.
    as_diffusers = _edit(pipe, video=_video(), depth=depth, strength=1.0, full_strength_start="noised-source")
    torch.testing.assert_close(as_diffusers, theirs, rtol=0, atol=1e-4)


def test_full_strength_start_is_checked_and_changes_nothing_below_strength_1(stack, pipe):
    pipe.scheduler = animatediff_scheduler(stack)
    with pytest.raises(ValueError, match="full_strength_start must be one of noise, noised-source, got 'source'"):
        _edit(pipe, full_strength_start="source")
    below = [_edit(pipe, strength=0.75, full_strength_start=start) for start in ("noise", "noised-source")]
    torch.testing.assert_close(below[0], below[1], rtol=0, atol=0)


def _image_reference(stack, pipe, prompt: str, guidance: float):
    from diffusers import ControlNetModel, StableDiffusionControlNetImg2ImgPipeline, UNet2DConditionModel

    reference = StableDiffusionControlNetImg2ImgPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
        unet=UNet2DConditionModel.from_pretrained(stack["base"], subfolder="unet"),
        controlnet=ControlNetModel.from_pretrained(stack["controlnet"]), scheduler=animatediff_scheduler(stack),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    reference.set_progress_bar_config(disable=True)
    frames = [Image.fromarray(frame) for frame in _video()]
    # the frames go through as one batch: each is an image, and the random draws line up with gen1's
    return reference(prompt=[prompt] * FRAMES, image=frames, control_image=_depth_images(_depth()), strength=0.75,
                     num_inference_steps=3, guidance_scale=guidance, controlnet_conditioning_scale=1.0,
                     height=SIZE, width=SIZE, generator=_gen(),
                     output_type="pt").images


def test_image_model_term_equals_diffusers_controlnet_img2img_frame_by_frame(stack, pipe):
    """w_t = 0, w = 0 leaves only mu_pi(null): the image UNet on each frame with the empty prompt."""
    pipe.scheduler = animatediff_scheduler(stack)
    expected = _image_reference(stack, pipe, "", guidance=1.0)
    out = _edit(pipe, guidance_scale=0.0, temporal_guidance_scale=0.0)
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=1e-4)
    assert (out - _edit(pipe, guidance_scale=0.0, temporal_guidance_scale=1.0)).abs().mean() > 1e-3


def test_w_t_0_and_w_1_is_the_image_model_when_the_motion_modules_are_identity(stack):
    """The paper's formula at w_t = 0 reads mu_pi(null) + w (mu(c) - mu(null)): with motion modules at their
    identity (zero output projections) mu = mu_pi and w = 1 gives the image model on the prompt, frame by frame."""
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"], scheduler=animatediff_scheduler(stack))
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        for name, param in pipe.unet.named_parameters():
            if ".temporal." in name and "proj_out" in name:
                param.zero_()
    expected = _image_reference(stack, pipe, "a red car", guidance=1.0)
    out = _edit(pipe, guidance_scale=1.0, temporal_guidance_scale=0.0)
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------ one batched call
def _count_calls(module):
    calls = []
    handle = module.register_forward_pre_hook(lambda m, args, kwargs: calls.append(args[0].shape[0]), with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("w, w_t, unet_batch, controlnet_entries", [
    (3.0, 1.0, 2, 2),   # plain CFG: c and null
    (1.0, 1.0, 1, 1),   # mu(c) only
    (3.0, 1.5, 3, 2),   # all three terms; the two null-content terms share the ControlNet's residuals
    (0.0, 0.0, 1, 1),   # the image model on the null content
])
def test_one_controlnet_call_and_one_unet_call_per_step(pipe, w, w_t, unet_batch, controlnet_entries):
    unet_calls, unet_handle = _count_calls(pipe.unet)
    control_calls, control_handle = _count_calls(pipe.controlnet)
    try:
        _edit(pipe, guidance_scale=w, temporal_guidance_scale=w_t, num_inference_steps=3, strength=1.0)
    finally:
        unet_handle.remove()
        control_handle.remove()
    assert unet_calls == [unet_batch] * 3
    assert control_calls == [controlnet_entries * FRAMES] * 3  # the ControlNet runs per frame


# ------------------------------------------------------------------------------------------ Gen-1 modes
def test_temporal_guidance_moves_the_output_between_image_and_video_model(pipe):
    image, video, beyond = (_edit(pipe, temporal_guidance_scale=w_t) for w_t in (0.0, 1.0, 2.0))
    assert (image - video).abs().mean() > 1e-3 and (beyond - video).abs().mean() > 1e-3


def test_structure_level_obscures_what_the_controlnet_sees(pipe):
    from gen1.depth import obscure

    seen = []
    handle = pipe.controlnet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["controlnet_cond"][:FRAMES].clone()), with_kwargs=True)
    try:
        sharp = _edit(pipe, structure_level=0.0, num_inference_steps=2, strength=1.0)
        coarse = _edit(pipe, structure_level=7.0, num_inference_steps=2, strength=1.0)
    finally:
        handle.remove()
    torch.testing.assert_close(seen[0][:, :1], _depth(), rtol=0, atol=0)
    torch.testing.assert_close(seen[2][:, :1], obscure(_depth(), 7.0).clamp(0, 1), rtol=0, atol=1e-6)
    assert (sharp - coarse).abs().mean() > 1e-3


def test_conditioning_scale_zero_ignores_the_depth(pipe):
    other_depth = 1.0 - _depth()
    a = _edit(pipe, controlnet_conditioning_scale=0.0)
    b = _edit(pipe, controlnet_conditioning_scale=0.0, depth=other_depth)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert (_edit(pipe) - _edit(pipe, depth=other_depth)).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="controlnet_conditioning_scale"):
        _edit(pipe, controlnet_conditioning_scale=-1.0)


def test_masked_edit_keeps_the_source_pixels(pipe):
    video = _video()
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, SIZE // 2:] = 255
    out = _edit(pipe, video=video, mask=mask)
    assert torch.equal(out[..., : SIZE // 2], frames[..., : SIZE // 2])
    assert (out[..., SIZE // 2 + 4:] - frames[..., SIZE // 2 + 4:]).abs().mean() > 0.02
    assert torch.equal(_edit(pipe, video=video, mask=np.zeros((SIZE, SIZE), np.uint8)), frames)


def test_windows_bound_the_unet_input_and_one_window_is_the_whole_clip(pipe):
    frames = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args, kwargs: frames.append(args[0].shape[2]),
                                                 with_kwargs=True)
    video, depth = _video(frames=10), _depth(frames=10)
    try:
        out = _edit(pipe, video=video, depth=depth, window_size=4, window_overlap=1, strength=1.0,
                    num_inference_steps=2)
    finally:
        handle.remove()
    assert set(frames) == {4} and len(frames) == 2 * 3  # windows (0,4) (3,7) (6,10) at each of 2 steps
    assert out.shape[0] == 10 and torch.isfinite(out).all()
    whole = _edit(pipe, window_size=FRAMES, window_overlap=0)
    torch.testing.assert_close(whole, _edit(pipe), rtol=0, atol=0)  # default window (8) covers the 4 frames


def test_long_videos_shift_their_windows_every_step_as_on_the_native_route(pipe, monkeypatch):
    import gen1.pipeline
    from gen1.windows import WindowBlender, window_schedule

    used, unet_frames, controlnet_calls = [], [], []

    class RecordingBlender(WindowBlender):
        def __call__(self, model_input, t, step):
            used.append(self.windows(step))
            return super().__call__(model_input, t, step)

    monkeypatch.setattr(gen1.pipeline, "WindowBlender", RecordingBlender)
    hooks = [pipe.unet.register_forward_pre_hook(lambda m, a, k: unet_frames.append(a[0].shape[2]), with_kwargs=True),
             pipe.controlnet.register_forward_pre_hook(lambda m, a, k: controlnet_calls.append(1), with_kwargs=True)]
    try:  # 16 frames in windows of 4 overlapping by 1: five windows, enough to shift
        out = _edit(pipe, video=_video(frames=16), depth=_depth(frames=16), window_size=4, window_overlap=1,
                    strength=1.0, num_inference_steps=3)
    finally:
        for hook in hooks:
            hook.remove()
    assert used == window_schedule(16, 4, 1, 3) and used[0] != used[1]  # the default: shifted
    assert set(unet_frames) == {4} and len(unet_frames) == len(controlnet_calls) == sum(map(len, used))
    assert out.shape[0] == 16 and torch.isfinite(out).all()


def test_several_prompts_mix_by_weight_and_a_negative_prompt_replaces_the_empty_one(pipe):
    a = _edit(pipe, prompt=["a red car", "a blue boat"], content_weights=[1.0, 0.0])
    torch.testing.assert_close(a, _edit(pipe, prompt="a red car"), rtol=0, atol=1e-5)
    mixed = _edit(pipe, prompt=["a red car", "a blue boat"], content_weights=[1.0, 1.0])
    assert (mixed - a).abs().mean() > 1e-4
    assert (_edit(pipe, negative_prompt="blurry") - _edit(pipe)).abs().mean() > 1e-4


def test_bf16_runs_close_to_fp32(stack):
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"], scheduler=animatediff_scheduler(stack))
    pipe.set_progress_bar_config(disable=True)
    reference = _edit(pipe)
    out = _edit(pipe.cast(torch.bfloat16))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert (out - reference).abs().mean() < 0.05


# ------------------------------------------------------------------------------------------ saving and loading
def test_save_pretrained_round_trip_gives_identical_output(stack, pipe, tmp_path):
    from gen1.pipeline import Gen1Pipeline

    pipe.save_pretrained(tmp_path / "model")
    loaded = Gen1Pipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.route, ControlNetRoute) and loaded.unet.temporal_kind == "animatediff"
    torch.testing.assert_close(_edit(loaded), _edit(pipe), rtol=0, atol=0)

    # a text encoder missing a weight: transformers gave it random values after a warning, and the edit ran
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "model" / "text_encoder" / "model.safetensors"
    tensors = load_file(weights)
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, weights)
    with pytest.raises(ValueError, match=f"the weights of 'text_encoder' lack key '{dropped}'"):
        Gen1Pipeline.from_pretrained(tmp_path / "model")


def test_mismatched_components_are_refused_before_loading_weights(stack, tmp_path):
    import json
    import shutil

    from gen1.pipeline import Gen1Pipeline

    wide = write_foreign_controlnet(tmp_path / "controlnet_other_base")
    with pytest.raises(ValueError, match=r"cross_attention_dim is 48.*has 32"):
        Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"], controlnet=wide)

    base = tmp_path / "base_wrong_text"
    shutil.copytree(stack["base"], base)
    config = json.loads((base / "text_encoder" / "config.json").read_text())
    (base / "text_encoder" / "config.json").write_text(json.dumps(dict(config, hidden_size=64)))
    with pytest.raises(ValueError, match=r"width 64.*width 32"):
        Gen1Pipeline.from_animatediff(base, motion_adapter=stack["motion_adapter"], controlnet=stack["controlnet"])

    with pytest.raises(ValueError, match="no 'text_encoder/'"):
        shutil.rmtree(base / "text_encoder")
        Gen1Pipeline.from_animatediff(base, motion_adapter=stack["motion_adapter"], controlnet=stack["controlnet"])


def test_reference_images_need_an_ip_adapter_on_this_route(pipe):  # without one loaded
    with pytest.raises(ValueError, match="IP-Adapter"):
        _edit(pipe, reference_image=_video()[0])


# ------------------------------------------------------------------------------------------ LoRA
@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    """A diffusers-format SD LoRA (what diffusers' trainers write) for the base UNet, and that UNet with it."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    from tiny_models import tiny_motion_unet

    unet = tiny_motion_unet(seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                    init_lora_weights=False))
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder / "pytorch_lora_weights.safetensors", unet


def test_a_stable_diffusion_lora_applies_to_the_image_unet_exactly(stack, lora_file):
    from gen1.pipeline import Gen1Pipeline

    path, reference = lora_file
    pipe = Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"], scheduler=animatediff_scheduler(stack))
    pipe.set_progress_bar_config(disable=True)
    plain = _edit(pipe)
    targets = pipe.load_lora_weights(path)
    adapted = {name for name, module in reference.named_modules() if hasattr(module, "lora_A")}
    assert {name.replace(".spatial.", ".") for name in targets} == adapted  # every LoRA layer, in its wrapped place
    sample, context = torch.randn(1, 4, 3, 16, 16), torch.randn(1, 16, 32)
    with torch.no_grad():
        ours = pipe.unet(sample, 500, context, image_mode=[True]).sample
        theirs = reference(rearrange_frames(sample), 500, context.repeat(3, 1, 1)).sample
    assert torch.equal(rearrange_frames(ours), theirs)
    assert (_edit(pipe) - plain).abs().mean() > 1e-3


def test_lora_scale_zero_is_no_lora_and_a_lora_of_another_base_is_refused(stack, lora_file, tmp_path):
    from safetensors.torch import load_file, save_file

    from gen1.pipeline import Gen1Pipeline

    path, _ = lora_file
    pipe = Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"], scheduler=animatediff_scheduler(stack))
    pipe.set_progress_bar_config(disable=True)
    plain = _edit(pipe)
    pipe.load_lora_weights(path, scale=0.0)
    torch.testing.assert_close(_edit(pipe), plain, rtol=0, atol=1e-6)
    foreign = {k.replace("down_blocks.0", "down_blocks.7"): v for k, v in load_file(str(path)).items()}
    save_file(foreign, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="down_blocks.7"):
        pipe.load_lora_weights(tmp_path / "foreign.safetensors", adapter_name="other")


def rearrange_frames(sample):
    """(1, C, F, H, W) <-> (F, C, H, W)."""
    return sample[0].permute(1, 0, 2, 3) if sample.ndim == 5 else sample[None].permute(0, 2, 1, 3, 4)


# ------------------------------------------------------------------------------------------ IP-Adapter
@pytest.fixture(scope="module")
def ip_adapter(stack, tmp_path_factory):
    from tiny_models import tiny_motion_unet
    from tiny_public import write_ip_adapter

    return write_ip_adapter(tmp_path_factory.mktemp("ip") / "models", tiny_motion_unet(seed=0))


def _reference(seed=3):
    return np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ip_pipe(stack, ip_adapter):
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"], scheduler=animatediff_scheduler(stack))
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(ip_adapter)
    return pipe


def test_reference_images_equal_diffusers_with_ip_adapter_image_embeds(stack, ip_adapter, ip_pipe):
    from gen1.ip_adapter import encode_reference_images

    reference = _diffusers_video_pipeline(stack, ip_pipe)
    reference.load_ip_adapter(str(ip_adapter.parent), subfolder="", weight_name=ip_adapter.name)
    embeds, null = encode_reference_images(ip_pipe.image_encoder, ip_pipe.feature_extractor, [_reference()],
                                           hidden_states=False)
    video, depth = _video(), _depth()
    expected = reference(
        video=[Image.fromarray(frame) for frame in video], conditioning_frames=_depth_images(depth),
        prompt="a red car", strength=0.75, num_inference_steps=3, guidance_scale=3.0, height=SIZE, width=SIZE,
        generator=_gen(), output_type="pt", decode_chunk_size=8,
        ip_adapter_image_embeds=[torch.cat([null, embeds])[:, None]],
    ).frames[0]
    out = _edit(ip_pipe, video=video, depth=depth, reference_image=_reference())
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=1e-4)
    assert (out - _edit(ip_pipe, video=video, depth=depth, reference_image=_reference(seed=9))).abs().mean() > 1e-4


def test_references_mix_by_weight_and_every_mode_takes_them(ip_pipe):
    one = _edit(ip_pipe, reference_image=_reference())
    weighted = _edit(ip_pipe, prompt=["a red car"], reference_image=[_reference(), _reference(seed=9)],
                     content_weights=[1.0, 1.0, 0.0])
    torch.testing.assert_close(weighted, one, rtol=0, atol=1e-5)  # a zero weight drops a reference
    both = _edit(ip_pipe, reference_image=[_reference(), _reference(seed=9)])
    assert (both - one).abs().mean() > 1e-5
    for knobs in (dict(temporal_guidance_scale=0.0), dict(guidance_scale=1.0, temporal_guidance_scale=1.5),
                  dict(mask=np.pad(np.full((SIZE, SIZE // 2), 255, np.uint8), ((0, 0), (SIZE // 2, 0))))):
        out = _edit(ip_pipe, reference_image=_reference(), **knobs)
        assert torch.isfinite(out).all() and (out - one).abs().mean() > 1e-5
    with pytest.raises(ValueError, match="content_weights"):
        _edit(ip_pipe, reference_image=_reference(), content_weights=[1.0])


def test_ip_adapter_mismatches_are_refused(stack, ip_adapter, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"])
    sdxl = {k: (torch.zeros(v.shape[0], 2048) if "_ip." in k else v) for k, v in load_file(str(ip_adapter)).items()}
    save_file(sdxl, str(tmp_path / "ip-adapter_sdxl.safetensors"))
    shutil.copytree(ip_adapter.parent / "image_encoder", tmp_path / "image_encoder")
    with pytest.raises(ValueError, match=r"width 2048 \(SDXL\), the base UNet has 32"):
        pipe.load_ip_adapter(tmp_path / "ip-adapter_sdxl.safetensors")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(ip_adapter, lone / ip_adapter.name)
    with pytest.raises(ValueError, match="needs its CLIP image encoder"):
        pipe.load_ip_adapter(lone / ip_adapter.name)


def test_a_pipeline_with_an_ip_adapter_saves_and_loads_with_it(ip_pipe, tmp_path):
    from gen1.pipeline import Gen1Pipeline

    from gen1.ip_adapter import set_ip_adapter_scale

    set_ip_adapter_scale(ip_pipe.unet, 0.6)
    try:
        expected = _edit(ip_pipe, reference_image=_reference())
        ip_pipe.save_pretrained(tmp_path / "model")
    finally:
        set_ip_adapter_scale(ip_pipe.unet, 1.0)
    loaded = Gen1Pipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    torch.testing.assert_close(_edit(loaded, reference_image=_reference()), expected, rtol=0, atol=0)


def test_the_controlnet_acting_on_part_of_the_steps_equals_diffusers_and_skips_its_evaluations(stack, pipe):
    reference = _diffusers_video_pipeline(stack, pipe)
    video, depth = _video(), _depth()
    kwargs = dict(prompt="a red car", strength=0.5, num_inference_steps=8, guidance_scale=3.0, height=SIZE,
                  width=SIZE, output_type="pt", decode_chunk_size=8)
    expected = reference(video=[Image.fromarray(frame) for frame in video], conditioning_frames=_depth_images(depth),
                         control_guidance_start=0.25, control_guidance_end=0.75, generator=_gen(), **kwargs).frames[0]
    calls = []
    hook = pipe.controlnet.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        pipe.scheduler = animatediff_scheduler(stack)
        out = _edit(pipe, video=video, depth=depth, strength=0.5, num_inference_steps=8,
                    controlnet_guidance_start=0.25, controlnet_guidance_end=0.75)
    finally:
        hook.remove()
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=1e-4)
    assert len(calls) == 2  # 4 steps run (strength 0.5 of 8): the ControlNet acts at the middle two only
    with pytest.raises(ValueError, match="controlnet_guidance_start must be below controlnet_guidance_end"):
        _edit(pipe, controlnet_guidance_start=0.6, controlnet_guidance_end=0.5)
