"""Gen1Pipeline end to end with a tiny random pipeline (CPU): determinism, guidance, masks, windows, saving."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from diffusers import ConfigMixin, DDIMScheduler, DPMSolverMultistepScheduler, ModelMixin
from diffusers.configuration_utils import register_to_config

from gen1.guidance import guidance_formula
from gen1.media import resized_shape
from gen1.pipeline import Gen1Pipeline
from tiny_models import tiny_unet, tiny_vae
from tiny_pipeline import tiny_content_encoder, tiny_depth_estimator, tiny_pipeline, tiny_video_unet
from tiny_structure_content import TINY_DIM

VIDEO_COND, VIDEO_NULL, IMAGE_NULL = 0.3, -0.2, 0.05


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(max_frames=4)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _video(frames=4, height=32, width=32, seed=0):
    return torch.rand(frames, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _embeds():
    return torch.randn(1, TINY_DIM, generator=torch.Generator().manual_seed(5))


# ------------------------------------------------------------------------------------------ end to end
def test_real_clip_end_to_end_and_seeding(pipe, clips_dir):
    from gen1.media import read_video

    clip = read_video(clips_dir / "wolf.mp4", size=32, max_frames=4)
    kwargs = dict(prompt="a wolf in snow", num_inference_steps=2, structure_level=2.0, guidance_scale=3.0)
    with pytest.warns(UserWarning, match="without a prior"):
        first = pipe(clip, generator=_gen(0), **kwargs)
        again = pipe(clip, generator=_gen(0), **kwargs)
        other = pipe(clip, generator=_gen(1), **kwargs)
    assert first.frames.shape == (4, 32, 32, 3) and first.frames.dtype == np.float32
    assert first.fps == Fraction(20) and first.depth.shape == (4, 1, 32, 32)
    assert 0.0 <= first.frames.min() and first.frames.max() <= 1.0
    np.testing.assert_array_equal(first.frames, again.frames)
    assert np.abs(first.frames - other.frames).mean() > 1e-3


def test_output_types_size_and_references(pipe):
    video = (_video(3, 24, 40).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    refs = [torch.rand(3, 32, 32), np.zeros((20, 30, 3), np.uint8)]
    common = dict(reference_image=refs, content_weights=[0.3, 0.7], num_inference_steps=2, guidance_scale=1.0)
    pt = pipe(video, size=16, output_type="pt", generator=_gen(), **common)
    # short side 16, the long side 26.7 rounded down to a multiple of 8 though this VAE's factor is 2: the size
    # gen1 edit reads the video at (gen1.media.resized_shape), so Python and the command line agree
    assert resized_shape(24, 40, 16) == (16, 24)
    assert pt.frames.shape == (3, 3, 16, 24) and pt.depth.shape == (3, 1, 16, 24)
    with pytest.raises(ValueError, match="size .* must be a multiple of 8, got 12"):
        pipe(video, size=12, output_type="pt", generator=_gen(), **common)
    pil = pipe(video, height=16, width=24, output_type="pil", generator=_gen(), **common)
    assert len(pil.frames) == 3 and pil.frames[0].size == (24, 16)
    latent = pipe(video, height=16, width=24, output_type="latent", generator=_gen(), **common)
    assert latent.frames.shape == (1, 4, 3, 8, 12)


def test_a_clip_given_as_8_bit_pixels_is_resized_as_gen1_edit_reads_it(pipe, clips_dir):
    # the pipeline resized float frames with torch's antialiased bilinear, gen1 edit reads with OpenCV's area
    # averaging: the same clip gave source frames up to 0.15 apart, an erase kept other pixels outside its region
    # than the command line's, and the depth cache missed between them
    from gen1.media import read_video

    path = clips_dir / "blackswan.mp4"
    as_read = read_video(path, size=32, max_frames=2)
    expected = torch.from_numpy(as_read.frames).permute(0, 3, 1, 2).float() / 255
    full = read_video(path, max_frames=2)
    for given in (full.frames, full, list(full.frames)):
        assert torch.equal(pipe.prepare_source(given, size=32).frames, expected)
    assert pipe.prepare_source(full.frames, size=32).input_size == full.frames.shape[1:3]
    # a float tensor of the same pixels is resized by the same interpolation: only the 8-bit rounding differs
    # (torch's bilinear left it up to 0.085 apart on this clip)
    as_float = torch.from_numpy(full.frames).permute(0, 3, 1, 2).float() / 255
    from_float = pipe.prepare_source(as_float, size=32).frames
    assert from_float.dtype == torch.float32 and from_float.shape == expected.shape
    assert (from_float - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_frames_read_at_an_edits_size_keep_their_size_above_512(pipe):
    # gen1 serve's previews took frames read at the edit's size through the default size rule, which caps a model
    # that records no size at 512: a 600x800 clip was previewed at 512x680 and edited at 600x800
    frames = np.zeros((2, 600, 800, 3), np.uint8)
    source = pipe.source_as_read(frames)
    assert source.size == (600, 800) and source.latent_size == (300, 400)  # the tiny VAE halves once


@pytest.mark.parametrize(
    "scheduler",
    [DPMSolverMultistepScheduler(prediction_type="v_prediction"), DDIMScheduler(prediction_type="v_prediction")],
    ids=["dpm++-v", "ddim-v"],
)
def test_other_schedulers_and_v_prediction(pipe, scheduler):
    original = pipe.scheduler
    try:
        pipe.scheduler = scheduler
        steps = []
        out = pipe(
            _video(4), content_embeds=_embeds(), num_inference_steps=3, generator=_gen(), output_type="pt",
            temporal_guidance_scale=1.5,
            callback_on_step_end=lambda p, i, t, kw: steps.append(int(t)) or {},
        )
    finally:
        pipe.scheduler = original
    assert out.frames.shape == (4, 3, 32, 32) and torch.isfinite(out.frames).all()
    assert len(steps) == 3 and steps == sorted(steps, reverse=True)


def test_strength_below_one_runs_the_tail_of_the_schedule(pipe):
    steps = []
    out = pipe(_video(4, 16, 16), content_embeds=_embeds(), num_inference_steps=4, strength=0.5, guidance_scale=1.0,
               generator=_gen(), output_type="latent", callback_on_step_end=lambda p, i, t, kw: steps.append(int(t)) or {})
    assert len(steps) == 2 and steps[0] < 500 and torch.isfinite(out.frames).all()


# ------------------------------------------------------------------------------------------ content mixing
def test_content_mixing_is_a_convex_combination():
    from gen1.content import convex_mix

    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, -2.0]])
    same = convex_mix(torch.cat([a, a]), None)
    torch.testing.assert_close(same, a, rtol=0, atol=1e-6)  # the same embedding twice gives itself back
    torch.testing.assert_close(convex_mix(torch.cat([a, b]), [3, 1]), 0.75 * a + 0.25 * b)
    torch.testing.assert_close(convex_mix(torch.cat([a, b]), [6, 2]), 0.75 * a + 0.25 * b)
    torch.testing.assert_close(convex_mix(a, [5.0]), a)  # one input: its weight is a no-op
    for bad in ([0, 0], [-1, 2], [float("nan"), 1]):
        with pytest.raises(ValueError, match="content_weights"):
            convex_mix(torch.cat([a, b]), bad)


# ------------------------------------------------------------------------------------------ guidance
class StubUNet(ModelMixin, ConfigMixin):
    """Predicts a distinct constant per term: image mode -> IMAGE_NULL, null content -> VIDEO_NULL, else
    VIDEO_COND. Records every call's batch size. Frame-local: output depends on nothing across frames."""

    @register_to_config
    def __init__(self, max_frames: int = 4, content_dim: int = TINY_DIM):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.calls: list[int] = []
        self.max_numel = 0

    latent_channels = 4

    @property
    def content_dim(self):
        return self.config.content_dim

    def forward(self, sample, timestep, encoder_hidden_states, image_mode=None, return_dict=True):
        self.calls.append(sample.shape[0])
        self.max_numel = max(self.max_numel, sample.numel())
        is_null = encoder_hidden_states.flatten(1).abs().amax(dim=1) == 0
        image = torch.zeros_like(is_null) if image_mode is None else torch.as_tensor(image_mode, dtype=torch.bool)
        # the image-model term is mu_pi(null): an image-mode row must carry the null content, not the real one
        assert bool(is_null[image].all()), "image-mode batch entry with non-null content"
        value = torch.where(image, IMAGE_NULL, torch.where(is_null, VIDEO_NULL, VIDEO_COND))
        out = value.view(-1, 1, 1, 1, 1) + 0.0 * sample[:, :4] + self.anchor
        return (out,)


def _stub_pipe(max_frames=4):
    pipe = Gen1Pipeline(vae=tiny_vae(), unet=StubUNet(max_frames), scheduler=DDIMScheduler(),
                        depth_estimator=None, content_encoder=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


GUIDANCE_CASES = [  # (w, w_t, evaluations per step)
    (1.0, 1.0, 1), (7.5, 1.0, 2), (0.0, 1.0, 1), (1.0, 1.5, 3), (7.5, 1.2, 3), (7.5, 0.0, 3), (0.0, 0.0, 1),
    (2.0, 2.0, 2), (0.0, 1.5, 2),
]


@pytest.mark.parametrize("w, w_t, evaluations", GUIDANCE_CASES)
def test_pipeline_guidance_matches_formula_in_one_call_per_step(w, w_t, evaluations):
    pipe = _stub_pipe()
    preds = []
    pipe(_video(4, 16, 16), content_embeds=_embeds(), depth=torch.rand(4, 1, 16, 16), guidance_scale=w,
         temporal_guidance_scale=w_t, num_inference_steps=3, output_type="latent", generator=_gen(),
         callback_on_step_end=lambda p, i, t, kw: preds.append(kw["noise_pred"].clone()) or {},
         callback_on_step_end_tensor_inputs=["noise_pred"])
    expected = guidance_formula(torch.tensor(VIDEO_COND), torch.tensor(VIDEO_NULL), torch.tensor(IMAGE_NULL), w, w_t)
    assert pipe.unet.calls == [evaluations] * 3  # ONE call per step, `evaluations` batch entries
    for pred in preds:
        torch.testing.assert_close(pred, expected.expand_as(pred), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ masks
def test_masked_edit_keeps_the_unmasked_region(pipe):
    video = _video(4, 32, 32, seed=3)
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255  # edit the right half, keep the left half
    final = {}
    out = pipe(video, content_embeds=_embeds(), num_inference_steps=2, guidance_scale=1.0, mask=mask,
               generator=_gen(), output_type="pt", callback_on_step_end=lambda p, i, t, kw: final.update(kw) or {})
    latents, out = final["latents"], out.frames
    source = pipe.encode_video(video)
    # latent columns 0..5 are > 2 latent cells (the feather radius) away from the mask edge at column 8
    torch.testing.assert_close(latents[..., :6], source[..., :6], rtol=0, atol=0)
    assert (latents[..., 10:] - source[..., 10:]).abs().mean() > 0.05
    frames = video
    # every pixel the mask keeps (mask 0) is the source frame itself, not its VAE reconstruction
    torch.testing.assert_close(out[..., :16], frames[..., :16], rtol=0, atol=0)
    assert (out[..., 20:] - frames[..., 20:]).abs().mean() > 0.02


def test_an_all_black_mask_returns_the_source_and_a_soft_mask_is_kept_where_zero(pipe):
    video = _video(4, 32, 32, seed=4)
    frames = video
    out = pipe(video, content_embeds=_embeds(), num_inference_steps=2, guidance_scale=1.0,
               mask=np.zeros((32, 32), np.uint8), generator=_gen(), output_type="pt").frames
    assert torch.equal(out, frames)
    soft = np.zeros((4, 32, 32), np.float32)
    soft[:, 8:24, 8:24] = np.linspace(0.2, 1.0, 16, dtype=np.float32)  # a graded region in the middle
    out = pipe(video, content_embeds=_embeds(), num_inference_steps=2, guidance_scale=1.0, mask=soft,
               generator=_gen(), output_type="pt").frames
    keep = torch.from_numpy(soft == 0)[:, None].expand_as(out)
    assert torch.equal(out[keep], frames[keep])
    assert (out[~keep] - frames[~keep]).abs().mean() > 0.01


# ------------------------------------------------------------------------------------------ windows
def test_three_plus_windows_run_with_bounded_unet_inputs(pipe):
    sizes = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args: sizes.append(tuple(args[0].shape)))
    try:
        out = pipe(_video(10, 16, 16), content_embeds=_embeds(), num_inference_steps=2, guidance_scale=1.0,
                   window_size=4, window_overlap=1, generator=_gen(), output_type="latent")
    finally:
        handle.remove()
    assert out.frames.shape == (1, 4, 10, 8, 8) and torch.isfinite(out.frames).all()
    assert len(sizes) == 2 * 3  # windows (0,4) (3,7) (6,10) for each of 2 steps
    assert all(shape[2] == 4 for shape in sizes)


def test_default_window_is_the_trained_clip_length():
    pipe = tiny_pipeline(max_frames=8)
    pipe.unet.register_to_config(clip_length=4)
    sizes = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[2]))
    try:
        pipe(_video(10, 16, 16), content_embeds=_embeds(), num_inference_steps=1, guidance_scale=1.0,
             generator=_gen(), output_type="latent")
    finally:
        handle.remove()
    assert sizes == [4, 4, 4]  # window 4, overlap 1: (0,4) (3,7) (6,10), not 8-frame windows
    # a VideoUNet config saved before clip_length existed still loads (clip_length None -> window = max_frames)
    assert tiny_video_unet(max_frames=8).config.clip_length is None


def test_one_window_equals_the_unwindowed_loop(pipe):
    video, embeds = _video(4, 16, 16), _embeds()
    out = pipe(video, content_embeds=embeds, num_inference_steps=2, guidance_scale=3.0, generator=_gen(),
               window_size=4, window_overlap=2, output_type="latent", depth=torch.full((4, 1, 16, 16), 0.5))
    # the same computation written without windows
    from gen1.conditioning import video_structure
    from gen1.guidance import plan_guidance

    plan = plan_guidance(3.0, 1.0)
    _, structure = video_structure(torch.full((4, 1, 16, 16), 0.5), 0.0, (8, 8))
    from gen1.routes import ContentRequest

    route = pipe.route
    content = route.encode_content(ContentRequest(content_embeds=embeds), generator=None, device="cpu")
    route = route.bind(content, structure, plan, {})
    pipe.scheduler.set_timesteps(2)
    latents = torch.randn((1, 4, 4, 8, 8), generator=_gen()) * pipe.scheduler.init_noise_sigma
    for t in pipe.scheduler.timesteps:
        eps = route.predict(pipe.scheduler.scale_model_input(latents, t), t, slice(0, 4))
        latents = pipe.scheduler.step(eps, t, latents, generator=_gen()).prev_sample
    torch.testing.assert_close(out.frames, latents, rtol=0, atol=0)


class WindowStub(StubUNet):
    """Predicts ``10 * k + j`` for frame ``j`` of the ``k``-th window of a step: every window disagrees with its
    neighbours on the frames they share, so the blend is visible in the prediction."""

    num_windows = 1

    def forward(self, sample, timestep, encoder_hidden_states, image_mode=None, return_dict=True):
        k = len(self.calls) % self.num_windows
        self.calls.append(sample.shape[0])
        local = torch.arange(sample.shape[2], dtype=sample.dtype).view(1, 1, -1, 1, 1)
        return (10.0 * k + local + 0.0 * sample[:, :4] + self.anchor,)


def test_window_blending_is_a_linear_cross_fade_on_overlaps():
    pipe = _stub_pipe(max_frames=16)
    pipe.unet = WindowStub(16)
    pipe.unet.num_windows = 4  # 10 frames, window 4, overlap 2: (0,4) (2,6) (4,8) (6,10)
    preds = []
    pipe(_video(10, 16, 16), content_embeds=_embeds(), depth=torch.rand(10, 1, 16, 16), num_inference_steps=1,
         guidance_scale=1.0, window_size=4, window_overlap=2, output_type="latent", generator=_gen(),
         callback_on_step_end=lambda p, i, t, kw: preds.append(kw["noise_pred"][0, 0, :, 0, 0].clone()) or {},
         callback_on_step_end_tensor_inputs=["noise_pred"])
    starts = [0, 2, 4, 6]
    expected = torch.zeros(10)
    for frame in range(10):
        inside = [k for k, s in enumerate(starts) if s <= frame < s + 4]
        if len(inside) == 1:
            expected[frame] = 10 * inside[0] + frame - starts[inside[0]]
        else:  # shared by windows k and k+1: the right one fades in linearly, 1/3 then 2/3
            k = inside[0]
            a = (frame - starts[k + 1] + 1) / 3
            left, right = 10 * k + frame - starts[k], 10 * (k + 1) + frame - starts[k + 1]
            expected[frame] = (1 - a) * left + a * right
    torch.testing.assert_close(preds[0], expected, rtol=0, atol=1e-5)


def test_peak_unet_memory_does_not_grow_with_windows():
    """Peak memory measure: the largest sample tensor the UNet sees per call (its activations scale with it).

    Only the latents (4 x F x h x w floats) are held for the whole video; a 4-window run must not pass the
    UNet more than 1.2x what a 1-window run does."""
    pipe = _stub_pipe(max_frames=4)
    common = dict(content_embeds=_embeds(), num_inference_steps=2, temporal_guidance_scale=1.2,
                  output_type="latent", window_size=4, window_overlap=1, generator=_gen())
    pipe(_video(4, 16, 16), depth=torch.rand(4, 1, 16, 16), **common)
    one_window = pipe.unet.max_numel
    pipe.unet.max_numel, pipe.unet.calls = 0, []
    pipe(_video(13, 16, 16), depth=torch.rand(13, 1, 16, 16), **common)
    assert len(pipe.unet.calls) == 4 + 5  # (0,4) (3,7) (6,10) (9,13), then shifted: (0,4) (1,5) (4,8) (7,11) (9,13)
    assert pipe.unet.max_numel <= 1.2 * one_window


# ------------------------------------------------------------------------------------------ saving, assembly
def test_save_pretrained_round_trip_gives_identical_output(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = Gen1Pipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    kwargs = dict(prompt="red", num_inference_steps=2, output_type="pt", guidance_scale=1.0)
    with pytest.warns(UserWarning):
        a = pipe(_video(4, 16, 16), generator=_gen(), **kwargs).frames
        b = loaded(_video(4, 16, 16), generator=_gen(), **kwargs).frames
    for name in ("vae", "unet", "content_encoder", "depth_estimator"):  # every weight bit for bit
        saved, back = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert saved.keys() == back.keys(), name
        assert all(torch.equal(saved[k], back[k]) for k in saved), name
    # Outputs agree to float32 rounding, not bit for bit: loaded weights sit at other memory alignments, and
    # some CPUs' vectorised kernels then sum in another order (seen: 7e-7 on a UNet output).
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_from_stable_diffusion_assembles_and_loads_temporal_weights(tmp_path):
    sd = tmp_path / "sd"
    tiny_unet("sd1").save_pretrained(sd / "unet")
    tiny_vae().save_pretrained(sd / "vae")
    DDIMScheduler(prediction_type="v_prediction").save_pretrained(sd / "scheduler")
    trained = tiny_video_unet(max_frames=4, seed=0)
    trained.save_new_layers(tmp_path / "temporal.safetensors")
    pipe = Gen1Pipeline.from_stable_diffusion(
        sd, temporal_weights=tmp_path / "temporal.safetensors", depth_estimator=tiny_depth_estimator(),
        content_encoder=tiny_content_encoder(), max_frames=4, temporal_attention_head_dim=8,
    )
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction" and isinstance(pipe.scheduler, DDIMScheduler)
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(pipe.unet.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert pipe.config.trained_size == 32  # the SD UNet's size: sample_size 16 x the VAE's factor 2
    out = pipe(_video(4, 16, 16), content_embeds=_embeds(), num_inference_steps=2, generator=_gen())
    assert out.frames.shape == (4, 32, 32, 3)  # the default size is the base model's
    with pytest.raises(FileNotFoundError, match="no 'unet/' folder"):
        Gen1Pipeline.from_stable_diffusion(sd / "unet", depth_estimator=None, content_encoder=None)


SPATIAL_KEY = "unet.down_blocks.0.attentions.0.spatial.proj_in.weight"


def test_from_stable_diffusion_takes_a_trained_unet_from_a_training_export(tmp_path):
    import json

    sd = tmp_path / "sd"
    tiny_unet("sd1").save_pretrained(sd / "unet")
    tiny_vae().save_pretrained(sd / "vae")
    DDIMScheduler().save_pretrained(sd / "scheduler")
    trained = tiny_video_unet(max_frames=4, seed=0)
    with torch.no_grad():  # a stage-3/4 run also trains spatial (image) weights
        trained.state_dict()[SPATIAL_KEY].add_(0.5)
    trained.register_to_config(clip_length=4)
    export = tmp_path / "export"
    trained.save_pretrained(export / "unet")
    trained.save_new_layers(export / "temporal.safetensors")
    (export / "training.json").write_text(json.dumps({"trainable": "all", "stage": 4, "clip_length": 4}))
    common = dict(depth_estimator=tiny_depth_estimator(), content_encoder=tiny_content_encoder())
    for unet in (export / "unet", export, trained):
        pipe = Gen1Pipeline.from_stable_diffusion(sd, unet=unet, **common)
        for key, value in trained.state_dict().items():
            torch.testing.assert_close(pipe.unet.state_dict()[key], value, rtol=0, atol=0, msg=key)
        assert pipe.unet.config.clip_length == 4
    # temporal weights alone from that run keep the SD spatial weights: warn
    with pytest.warns(UserWarning, match="trainable='all'.*pass unet="):
        pipe = Gen1Pipeline.from_stable_diffusion(sd, temporal_weights=export / "temporal.safetensors", max_frames=4,
                                                  temporal_attention_head_dim=8, **common)
    assert not torch.equal(pipe.unet.state_dict()[SPATIAL_KEY], trained.state_dict()[SPATIAL_KEY])
    assert pipe.unet.config.clip_length == 4  # the temporal file says which clip length its layers trained on
    with pytest.raises(ValueError, match="expected a trained VideoUNet"):
        Gen1Pipeline.from_stable_diffusion(sd, unet=sd / "unet", **common)
    with pytest.raises(ValueError, match="do not also pass"):
        Gen1Pipeline.from_stable_diffusion(sd, unet=trained, temporal_attention_head_dim=8, **common)


# ------------------------------------------------------------------------------------------ input checks
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(structure_level=7.5), "structure_level"),
        (dict(structure_level=-1), "structure_level"),
        (dict(guidance_scale=-1.0), "guidance_scale"),
        (dict(temporal_guidance_scale=-0.5), "temporal_guidance_scale"),
        (dict(output_type="gif"), "output_type"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(window_size=4, window_overlap=4), "window_overlap"),
        (dict(mask=np.zeros((16, 8), np.uint8)), "mask size"),
        (dict(mask=torch.zeros(3, 1, 16, 16)), "mask has 3 frames"),
        (dict(depth=torch.zeros(2, 1, 16, 16)), "depth has 2 frames"),
        (dict(content_weights=[1.0, 2.0]), "content_weights"),
        (dict(strength=0.0), "strength"),
        (dict(mask=np.ones((16, 16), np.uint8), mask_feather=float("nan")), "mask_feather"),
        (dict(mask=np.ones((16, 16), np.uint8), mask_feather=-1.0), "mask_feather"),
    ],
)
def test_bad_inputs_raise_clear_errors(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe(_video(4, 16, 16), **{"content_embeds": _embeds(), "num_inference_steps": 2, **kwargs})


def test_bad_videos_and_content_raise(pipe, tmp_path):
    with pytest.raises(ValueError, match="at least 1 frame"):
        pipe(torch.zeros(0, 3, 16, 16), content_embeds=_embeds())
    with pytest.raises(ValueError, match="video tensor"):
        pipe(torch.zeros(4, 16, 16), content_embeds=_embeds())
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        pipe(tmp_path / "missing.mp4", content_embeds=_embeds())
    with pytest.raises(ValueError, match="prompt, a reference_image or content_embeds"):
        pipe(_video(4, 16, 16))
    with pytest.raises(ValueError, match="content_dim"):
        pipe(_video(4, 16, 16), content_embeds=torch.zeros(1, 7))
    for prompt in (3, ["a", 3]):  # 3 was "TypeError: 'int' object is not iterable"
        with pytest.raises(ValueError, match="prompt must be a text or a list of texts"):
            pipe(_video(4, 16, 16), prompt=prompt)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file; give a folder"):  # was NotADirectoryError '.../file/vae'
        pipe.save_pretrained(tmp_path / "file")
