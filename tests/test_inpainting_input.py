"""Native models with inpainting input (``VideoUNet(inpainting_input=True)``): the channels are added at zero to a
trained model, training draws regions the model learns to fill from the known rest, and an edit shows the model
exactly what it knows: the source outside a masked edit's region, nothing in an edit without a mask."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gen1.conditioning import inpainting_input, nothing_known, region_on_latent_grid
from gen1.training.batch import Clips
from gen1.training.config import DiffusionConfig, load_config
from gen1.training.draws import draw_inpainting_masks, draw_inputs, slot_generators
from gen1.training.losses import DiffusionObjective
from tiny_pipeline import tiny_pipeline, tiny_video_unet

FRAMES, SIZE = 4, 32


def _inputs(unet, batch=2, frames=FRAMES, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, unet.in_channels, frames, 8, 8, generator=generator)
    context = torch.randn(batch, 1, unet.content_dim, generator=generator)
    return sample, torch.tensor([10, 500]), context


def test_inpainting_channels_are_added_at_zero_so_the_model_predicts_what_it_did():
    unet = tiny_video_unet()
    widened = unet.with_inpainting_input()
    assert widened.inpainting_input and not unet.inpainting_input
    assert widened.in_channels == unet.in_channels + 1 + unet.latent_channels
    assert widened.with_inpainting_input() is widened
    shared = {p.data_ptr() for p in unet.parameters()} & {p.data_ptr() for p in widened.parameters()}
    assert not shared and all(p.device.type == "cpu" for p in widened.parameters())
    sample, timesteps, context = _inputs(widened)
    with torch.no_grad():
        before = unet(sample[:, : unet.in_channels], timesteps, context).sample
        after = widened(sample, timesteps, context).sample
        other = widened(torch.cat([sample[:, : unet.in_channels], -sample[:, unet.in_channels:]], 1), timesteps,
                        context).sample
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    torch.testing.assert_close(other, before, rtol=0, atol=1e-6)  # zero weights: the new channels change nothing yet
    with pytest.raises(ValueError, match=r"expected in_channels=\d+ \(4 latent \+ 1 structure \+ 5 inpainting\)"):
        widened(sample[:, : unet.in_channels], timesteps, context)


def test_a_model_with_inpainting_input_saves_and_loads_as_one(tmp_path):
    from gen1.unet import VideoUNet

    widened = tiny_video_unet().with_inpainting_input()
    with torch.no_grad():
        widened.unet.conv_in.weight[:, -5:].normal_(0, 0.1)  # as a fine-tune leaves them
    widened.save_pretrained(tmp_path / "unet")
    loaded = VideoUNet.from_pretrained(tmp_path / "unet")
    assert loaded.inpainting_input
    sample, timesteps, context = _inputs(widened)
    with torch.no_grad():
        torch.testing.assert_close(loaded(sample, timesteps, context).sample, widened(sample, timesteps, context).sample)


def test_a_temporal_layers_file_of_a_model_without_the_option_still_loads(tmp_path):
    """Files written before the option existed do not name it: they fit every model without inpainting input."""
    unet = tiny_video_unet()
    path = unet.save_new_layers(tmp_path / "temporal.safetensors")
    tiny_video_unet(seed=1).load_new_layers(path)
    with pytest.raises(ValueError, match="holds the layers of a model without inpainting input, this model is with"):
        tiny_video_unet().with_inpainting_input().load_new_layers(path)
    widened = tiny_video_unet().with_inpainting_input()
    widened.load_new_layers(widened.save_new_layers(tmp_path / "inpainting.safetensors"))
    with pytest.raises(ValueError, match=r"a model with inpainting input, this model is without it: load them into "
                                         r"VideoUNet.with_inpainting_input\(\)"):
        tiny_video_unet().load_new_layers(tmp_path / "inpainting.safetensors")


def test_the_known_latents_are_the_source_outside_the_region_and_nothing_inside():
    latents = torch.randn(1, 4, 2, 4, 4)
    region = torch.zeros(2, 1, 16, 16)
    region[:, :, 5, 5] = 1.0  # one pixel: its whole latent cell (1, 1) is drawn
    mask = region_on_latent_grid(region, (4, 4))
    assert mask.shape == (2, 1, 4, 4) and int(mask.sum()) == 2 and bool(mask[:, 0, 1, 1].all())
    known = inpainting_input(latents, mask.permute(1, 0, 2, 3)[None])
    assert known.shape == (1, 5, 2, 4, 4)
    assert torch.equal(known[:, :1], 1 - mask.permute(1, 0, 2, 3)[None])  # 1 where the source is known
    inside = mask.permute(1, 0, 2, 3)[None].bool().expand(1, 4, 2, 4, 4)
    assert torch.equal(known[:, 1:][inside], torch.zeros(int(inside.sum())))
    assert torch.equal(known[:, 1:][~inside], latents[~inside])
    assert torch.equal(nothing_known(latents), torch.zeros(1, 5, 2, 4, 4))  # added at zero: the model without them


def test_training_regions_move_across_a_clip_and_the_rest_of_the_draws_are_unchanged():
    shape = (6, 4, 8, 16, 16)
    assert torch.equal(draw_inpainting_masks(shape, 0.0, torch.Generator().manual_seed(0)), torch.ones(6, 1, 8, 16, 16))
    masks = draw_inpainting_masks(shape, 1.0, torch.Generator().manual_seed(0))
    covered = masks.mean(dim=(1, 3, 4))  # (B, F)
    assert bool((covered > 0.01).all()) and bool((covered < 0.5).all())  # a region, never the whole frame
    assert any(not torch.equal(masks[b, :, 0], masks[b, :, -1]) for b in range(6))  # regions move
    # per-sample generators: a sample's region is its slot's, whatever else is in the batch
    both = draw_inpainting_masks(shape[:1] and (2, *shape[1:]), 1.0, slot_generators(0, 3, [7, 8]))
    alone = draw_inpainting_masks((1, *shape[1:]), 1.0, slot_generators(0, 3, [8]))
    assert torch.equal(both[1:], alone)

    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(prediction_type="v_prediction")
    clips = Clips(torch.randn(2, 4, 3, 8, 8), torch.rand(2, 1, 3, 8, 8), torch.randn(2, 3, 16))
    config = DiffusionConfig(structure_level_max=7, inpainting_mask_probability=1.0)
    plain = draw_inputs(clips, scheduler, config, slot_generators(0, 1, [0, 1]), image_mode=False)
    masked = draw_inputs(clips, scheduler, config, slot_generators(0, 1, [0, 1]), image_mode=False, inpainting=True)
    assert plain.known is None and masked.known.shape == (2, 5, 3, 8, 8)
    for name in ("noisy", "timesteps", "context", "target", "levels"):
        assert torch.equal(getattr(plain, name), getattr(masked, name)), name
    drawn = (masked.known[:, :1] == 0).expand(2, 4, 3, 8, 8)
    assert torch.equal(masked.known[:, 1:][~drawn], clips.latents[~drawn]) and not masked.known[:, 1:][drawn].any()


def test_the_objective_tells_a_model_with_inpainting_input_what_is_known():
    widened = tiny_video_unet().with_inpainting_input()
    seen = []
    widened.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    objective = DiffusionObjective(widened)
    from diffusers import DDPMScheduler

    clips = Clips(torch.randn(2, 4, 3, 8, 8), torch.rand(2, 1, 3, 8, 8), torch.randn(2, 3, 16))
    config = DiffusionConfig(inpainting_mask_probability=1.0)
    for inpainting in (False, True):
        part = draw_inputs(clips, DDPMScheduler(), config, torch.Generator().manual_seed(0), image_mode=False,
                           inpainting=inpainting)
        objective(type("Batch", (), {"parts": lambda self, p=part: iter([(False, p)])})())
        given = seen[-1][:, 5:]
        expected = part.known if inpainting else nothing_known(clips.latents)
        assert torch.equal(given, expected)


def _unet_inputs(pipe):
    seen = []
    pipe.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    return seen


def test_an_edit_without_a_mask_tells_the_model_nothing_is_known_and_a_masked_edit_shows_it_the_source():
    pipe = tiny_pipeline()
    pipe.unet = pipe.unet.with_inpainting_input().eval()
    seen = _unet_inputs(pipe)
    frames = torch.rand(FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    edit = dict(prompt="a red cube", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                output_type="pt", size=SIZE)
    pipe(frames, **edit)
    assert seen and all(s.shape[1] == 10 and not s[:, 5:].any() for s in seen)  # nothing known

    seen.clear()
    mask = torch.zeros(SIZE, SIZE)
    mask[8:20, 8:20] = 1
    out = pipe(frames, mask=mask.numpy(), **{**edit, "generator": torch.Generator().manual_seed(0)})
    source = pipe.route.encode_source(frames, generator=None, device="cpu", chunk_size=8)  # (1, 4, F, 16, 16)
    drawn = region_on_latent_grid(mask.expand(FRAMES, 1, SIZE, SIZE), (16, 16)).permute(1, 0, 2, 3)[None]
    for given in seen:
        known = given[:1, 5:]  # every guidance term is shown the same
        assert torch.equal(known[:, :1], 1 - drawn)
        torch.testing.assert_close(known[:, 1:], source * (1 - drawn))
    outside = (mask < 0.5).expand_as(frames)
    assert torch.equal(out.frames[outside], frames[outside])


def test_gen1_train_adds_inpainting_input_to_its_base_and_exports_a_pipeline_that_edits(tmp_path):
    from gen1.pipeline import Gen1Pipeline
    from gen1.training.trainer import train
    from training_helpers import make_sd_dir, tiny_content_encoder

    sd = make_sd_dir(tmp_path / "sd")
    tiny_content_encoder().save_pretrained(sd / "content_encoder")
    items = {
        "model.base": str(sd), "data.source": "synthetic", "train.output_dir": str(tmp_path / "out"),
        "model.max_frames": FRAMES, "model.temporal": "{temporal_attention_head_dim: 8}", "train.tensorboard": "false",
        "data.synthetic.frames": FRAMES, "data.synthetic.size": SIZE, "data.synthetic.num_scenes": 4,
        "model.inpainting_input": "true", "model.trainable": "all", "train.max_steps": 2, "data.batch_size": 2,
        "diffusion.inpainting_mask_probability": "1.0", "validation.every": 2, "validation.num_inference_steps": 2,
    }
    result = train(load_config(None, [f"{k}={v}" for k, v in items.items()]))
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    assert [step for step, _ in result.validation] == [2] and torch.isfinite(torch.tensor(result.validation[0][1]))
    pipe = Gen1Pipeline.from_pretrained(Path(result.export_dir))
    assert pipe.unet.inpainting_input and pipe.unet.unet.conv_in.weight[:, -5:].abs().sum() > 0  # it trained them
    pipe.set_progress_bar_config(disable=True)
    frames = torch.rand(FRAMES, 3, SIZE, SIZE)
    mask = torch.zeros(SIZE, SIZE)
    mask[4:12, 4:12] = 1
    depth = torch.linspace(0.2, 0.4, SIZE).view(1, 1, SIZE, 1).expand(FRAMES, 1, SIZE, SIZE).clone()
    out = pipe(frames, mask=mask.numpy(), erase=True, depth=depth, num_inference_steps=2, output_type="pt",
               size=SIZE, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == frames.shape


def test_a_probability_outside_zero_to_one_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"diffusion.inpainting_mask_probability must be in \[0, 1\], got 1.5"):
        load_config(None, ["model.base=x", "diffusion.inpainting_mask_probability=1.5"])


@pytest.mark.parametrize("edit", ["erase", "drag"])
def test_an_erase_or_a_drag_shows_the_model_what_it_keeps_not_the_subject(edit, monkeypatch):
    """The known latents are those of what the loop keeps outside the region: an erase's pre-filled source (no subject
    to reach the cells around it through the VAE), a drag's source with the subject moved (known where it now is)."""
    import gen1.pipeline as pipeline_module
    from gen1.routes.native import NativeRoute
    from test_masked_edits import moving_square

    made, shown = [], []
    name = "prefilled" if edit == "erase" else "moved_frames"
    original = getattr(pipeline_module, name)
    monkeypatch.setattr(pipeline_module, name, lambda *a, **k: made.append(original(*a, **k)) or made[-1])
    known_input = NativeRoute.known_input
    monkeypatch.setattr(NativeRoute, "known_input",
                        lambda self, frames, *a: shown.append(frames) or known_input(self, frames, *a))
    pipe = tiny_pipeline()
    pipe.unet = pipe.unet.with_inpainting_input().eval()
    frames, depth, masks = moving_square(num_frames=FRAMES, size=SIZE, side=8, step=(1, 0))
    extra = dict(erase=True) if edit == "erase" else dict(drag="8,12:18,14")
    pipe(frames, mask=masks[0, 0].numpy(), mask_frame=0, depth=depth, num_inference_steps=2, output_type="pt",
         size=SIZE, generator=torch.Generator().manual_seed(0), **extra)
    assert len(made) == 1 and len(shown) == 1 and torch.equal(shown[0], made[0])
    assert not torch.equal(shown[0], frames)  # not the source with its subject where it was
