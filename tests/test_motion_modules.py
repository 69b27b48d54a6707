"""AnimateDiff motion modules as VideoUNet temporal layers: placement and equality with diffusers'
UNetMotionModel, the image-mode gate, loading from MotionAdapter folders and original AnimateDiff files,
mismatch refusals, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
from einops import rearrange
from safetensors.torch import load_file, save_file

from gen1.temporal_layers import check_motion_adapter_fits, infer_motion_adapter_config, load_motion_adapter
from gen1.unet import VideoUNet
from tiny_models import (
    original_animatediff_state_dict,
    tiny_motion_adapter,
    tiny_motion_adapter_config,
    tiny_motion_unet,
    tiny_motion_unet_config,
)

B, F, H, W = 2, 4, 16, 16


def inputs(batch: int = B, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, F, H, W, generator=g)
    timestep = torch.randint(0, 1000, (batch,), generator=g)
    text = torch.randn(batch, 3, 32, generator=g)
    return sample, timestep, text


def control_residuals(unet, images: int, seed: int = 2) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Random ControlNet-style residuals of the shapes the UNet's down blocks and mid block produce."""
    g = torch.Generator().manual_seed(seed)
    widths, size = unet.config.block_out_channels, H
    shapes = [(widths[0], size)]
    for width, block in zip(widths, unet.down_blocks):
        shapes += [(width, size)] * len(block.resnets)
        if block.downsamplers:
            size //= 2
            shapes.append((width, size))
    down = [torch.randn(images, c, s, s, generator=g) * 0.5 for c, s in shapes]
    return down, torch.randn(images, widths[-1], size, size, generator=g) * 0.5


def image_unet_frame_by_frame(unet, sample, timestep, text, **residuals):
    frames = sample.shape[2]
    out = unet(
        rearrange(sample, "b c f h w -> (b f) c h w"),
        timestep.repeat_interleave(frames),
        text.repeat_interleave(frames, dim=0),
        **residuals,
    ).sample
    return rearrange(out, "(b f) c h w -> b c f h w", f=frames)


class _TimeEmbeddingPerFrame(torch.nn.Module):
    """Makes UNetMotionModel embed the timestep once per frame, as VideoUNet (through the image UNet) does.

    UNetMotionModel embeds it once per clip and repeats the result; a Linear over B rows and one over B*F rows
    round differently in the last bit, which is the only difference left between the two models.
    """

    def __init__(self, inner: torch.nn.Module, frames: int):
        super().__init__()
        self.inner, self.frames = inner, frames

    def forward(self, sample, condition=None):
        return self.inner(sample.repeat_interleave(self.frames, dim=0), condition)[:: self.frames]


def both_models(layers_per_block: int = 1, **adapter_overrides):
    unet = tiny_motion_unet(layers_per_block)
    adapter = tiny_motion_adapter(layers_per_block, **adapter_overrides)
    model = VideoUNet.from_image_unet_and_motion_adapter(unet, adapter).eval()
    reference = UNetMotionModel.from_unet2d(unet, adapter).eval()
    return model, reference, unet, adapter


# ---------------------------------------------------------------------------------------------- placement, equality
@torch.no_grad()
def test_motion_modules_sit_where_unet_motion_model_places_them():
    model, reference, _, _ = both_models(layers_per_block=2)
    assert model.temporal_kind == "animatediff" and model.config.structure_channels == 0
    assert model._motion_placement == {
        "down_blocks.0.motion_modules.0": "down_blocks.0.attentions.0",  # after each transformer
        "down_blocks.0.motion_modules.1": "down_blocks.0.attentions.1",
        "down_blocks.1.motion_modules.0": "down_blocks.1.resnets.0",  # no transformers: after each resnet
        "down_blocks.1.motion_modules.1": "down_blocks.1.resnets.1",
        "mid_block.motion_modules.0": "mid_block.attentions.0",  # after the transformer, before resnets.1
        **{f"up_blocks.0.motion_modules.{j}": f"up_blocks.0.resnets.{j}" for j in range(3)},
        **{f"up_blocks.1.motion_modules.{j}": f"up_blocks.1.attentions.{j}" for j in range(3)},
    }
    for adapter_name, path in model._motion_placement.items():  # the same weights as diffusers' module there
        ours = model.unet.get_submodule(path).temporal.state_dict()
        theirs = reference.get_submodule(adapter_name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@torch.no_grad()
@pytest.mark.parametrize("layers_per_block, mid_block", [(1, True), (2, True), (1, False)])
def test_video_mode_equals_unet_motion_model(layers_per_block, mid_block):
    model, reference, unet, _ = both_models(layers_per_block, use_motion_mid_block=mid_block)
    sample, timestep, text = inputs()
    ours = model(sample, timestep, text).sample
    theirs = reference(sample, timestep, text.repeat_interleave(F, dim=0)).sample
    assert (ours - theirs).abs().max().item() < 1e-5
    reference.time_embedding = _TimeEmbeddingPerFrame(reference.time_embedding, F)
    assert torch.equal(ours, reference(sample, timestep, text.repeat_interleave(F, dim=0)).sample)
    image = image_unet_frame_by_frame(unet, sample, timestep, text)
    assert (ours - image).abs().max().item() > 0.1  # the motion modules act, so the equality means something


@torch.no_grad()
def test_control_residuals_reach_the_unet_as_in_unet_motion_model():
    model, reference, unet, _ = both_models()
    reference.time_embedding = _TimeEmbeddingPerFrame(reference.time_embedding, F)
    sample, timestep, text = inputs()
    down, mid = control_residuals(unet, B * F)
    residuals = dict(down_block_additional_residuals=down, mid_block_additional_residual=mid)
    ours = model(sample, timestep, text, **residuals).sample
    assert torch.equal(ours, reference(sample, timestep, text.repeat_interleave(F, dim=0), **residuals).sample)
    assert (ours - model(sample, timestep, text).sample).abs().max().item() > 0.1
    gated = model(sample, timestep, text, image_mode=True, **residuals).sample
    assert torch.equal(gated, image_unet_frame_by_frame(unet, sample, timestep, text, **residuals))


def test_control_residuals_are_checked():
    model, _, unet, _ = both_models()
    sample, timestep, text = inputs()
    down, mid = control_residuals(unet, B * F)
    with pytest.raises(ValueError, match="must be passed together"):
        model(sample, timestep, text, down_block_additional_residuals=down)
    with pytest.raises(ValueError, match=f"must be {len(down)} tensors"):
        model(sample, timestep, text, down_block_additional_residuals=down[:-1], mid_block_additional_residual=mid)
    with pytest.raises(ValueError, match=r"mid_block_additional_residual must be a \(B\*F=8"):
        model(sample, timestep, text, down_block_additional_residuals=down, mid_block_additional_residual=mid[:B])


# ---------------------------------------------------------------------------------------------- the gate
@torch.no_grad()
def test_image_mode_is_the_image_unet_bit_for_bit():
    model, _, unet, _ = both_models(layers_per_block=2)
    sample, timestep, text = inputs()
    gated = model(sample, timestep, text, image_mode=torch.ones(B, dtype=torch.bool)).sample
    assert torch.equal(gated, image_unet_frame_by_frame(unet, sample, timestep, text))


@torch.no_grad()
def test_mixed_batch_gates_each_sample():
    model, _, unet, _ = both_models()
    sample, timestep, text = inputs(batch=3)
    image_mode = torch.tensor([False, True, False])
    mixed = model(sample, timestep, text, image_mode=image_mode).sample
    image = image_unet_frame_by_frame(unet, sample, timestep, text)
    assert torch.equal(mixed[1], image[1])
    for b in (0, 2):
        alone = model(sample[b : b + 1], timestep[b : b + 1], text[b : b + 1]).sample
        assert (mixed[b : b + 1] - alone).abs().max().item() < 1e-5, b
        assert (mixed[b] - image[b]).abs().max().item() > 0.1, b


# ---------------------------------------------------------------------------------------------- loading
def save_original(adapter, path):
    tensors = original_animatediff_state_dict(adapter)
    if path.suffix == ".safetensors":
        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    return path


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_original_file_loads_the_same_weights_as_the_adapter_folder(tmp_path, suffix):
    adapter = tiny_motion_adapter(layers_per_block=2)
    adapter.save_pretrained(tmp_path / "adapter")
    from_folder = load_motion_adapter(tmp_path / "adapter")
    original = save_original(adapter, tmp_path / f"mm_tiny{suffix}")
    from_file = load_motion_adapter(original, config=tmp_path / "adapter")
    assert_same_weights(from_folder, adapter)
    assert_same_weights(from_file, from_folder)
    assert dict(from_file.config) == dict(from_folder.config)
    unet = tiny_motion_unet(layers_per_block=2)
    a = VideoUNet.from_image_unet_and_motion_adapter(unet, tmp_path / "adapter")
    b = VideoUNet.from_image_unet_and_motion_adapter(unet, original, adapter_config=tmp_path / "adapter")
    assert_same_weights(a, b)


def test_original_file_config_is_inferred_from_its_tensors(tmp_path):
    adapter = tiny_motion_adapter(layers_per_block=2, motion_num_attention_heads=8)  # AnimateDiff's 8 heads
    original = save_original(adapter, tmp_path / "mm_tiny.ckpt")
    shapes = {k: tuple(v.shape) for k, v in original_animatediff_state_dict(adapter).items()}
    inferred = infer_motion_adapter_config(shapes)
    assert inferred["motion_max_seq_length"] == 8 and inferred["motion_layers_per_block"] == 2
    loaded = load_motion_adapter(original)
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == inferred
    assert_same_weights(loaded, adapter)
    no_mid = tiny_motion_adapter(use_motion_mid_block=False, motion_num_attention_heads=8)
    loaded = load_motion_adapter(save_original(no_mid, tmp_path / "mm_v1.safetensors"))
    assert loaded.mid_block is None
    assert_same_weights(loaded, no_mid)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.update({"down_blocks.0.motion_modules.0.temporal_transformer.extra.weight": torch.zeros(1)}),
         "unexpected key 'down_blocks.0.motion_modules.0.extra.weight'"),
        (lambda sd: sd.pop("up_blocks.1.motion_modules.1.temporal_transformer.proj_out.bias"),
         "missing key 'up_blocks.1.motion_modules.1.proj_out.bias'"),
        (lambda sd: sd.update({"mid_block.motion_modules.0.temporal_transformer.proj_in.weight": torch.zeros(3, 3)}),
         r"'mid_block.motion_modules.0.proj_in.weight' has shape \(3, 3\)"),
        (lambda sd: sd.update({"controlnet_cond_embedding.conv_in.weight": torch.zeros(1)}),
         "controlnet_cond_embedding.conv_in.weight"),
    ],
)
def test_original_file_with_wrong_keys_is_refused_naming_the_key(tmp_path, edit, message):
    adapter = tiny_motion_adapter()
    adapter.save_pretrained(tmp_path / "adapter")
    tensors = original_animatediff_state_dict(adapter)
    edit(tensors)
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=message):
        load_motion_adapter(tmp_path / "bad.safetensors", config=tmp_path / "adapter")


def test_original_position_tables_are_checked(tmp_path):
    adapter = tiny_motion_adapter()
    key = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    for value, message in ((torch.zeros(1, 16, 32), "motion_max_seq_length"), (torch.zeros(1, 8, 32), "sinusoidal")):
        tensors = original_animatediff_state_dict(adapter)
        tensors[key] = value
        save_file(tensors, str(tmp_path / "bad.safetensors"))
        with pytest.raises(ValueError, match=f"'{key}'.*{message}"):
            load_motion_adapter(tmp_path / "bad.safetensors", config=dict(adapter.config))


def test_unreadable_and_unknown_files_are_refused(tmp_path):
    adapter = tiny_motion_adapter()
    config = dict(adapter.config)
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable"):
        load_motion_adapter(tmp_path / "corrupt.safetensors", config=config)
    torch.save({"weights": torch.nn.Linear(2, 2)}, tmp_path / "pickled.ckpt")  # a module: not weights-only
    with pytest.raises(ValueError, match="not a readable"):
        load_motion_adapter(tmp_path / "pickled.ckpt", config=config)
    save_file(dict(adapter.state_dict()), str(tmp_path / "diffusers_layout.safetensors"))
    with pytest.raises(ValueError, match="not an original AnimateDiff motion-module file"):
        load_motion_adapter(tmp_path / "diffusers_layout.safetensors", config=config)
    adapter.save_pretrained(tmp_path / "adapter")
    weights = tmp_path / "adapter" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    tensors["down_blocks.0.motion_modules.0.surplus"] = torch.zeros(1)
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match="unexpected key 'down_blocks.0.motion_modules.0.surplus'"):
        load_motion_adapter(tmp_path / "adapter")


# ---------------------------------------------------------------------------------------------- mismatches
def unet_folder_without_weights(tmp_path, **overrides):
    """A UNet folder with a config and no weights: a refusal from it happened before any weight was read."""
    folder = tmp_path / "unet"
    folder.mkdir()
    UNet2DConditionModel.from_config(dict(tiny_motion_unet_config(), **overrides)).save_config(folder)
    return folder


def adapter_folder_without_weights(tmp_path, **overrides):
    folder = tmp_path / "adapter"
    folder.mkdir()
    MotionAdapter.from_config(tiny_motion_adapter_config(**overrides)).save_config(folder)
    return folder


@pytest.mark.parametrize(
    "unet_overrides, adapter_overrides, message",
    [
        ({}, dict(block_out_channels=(64, 128)), r"block_out_channels=\[64, 128\].*block_out_channels=\[32, 64\]"),
        ({}, dict(motion_layers_per_block=2), r"motion_layers_per_block=\[2, 2\].*layers_per_block=\[1, 1\]"),
        (dict(mid_block_type=None), {}, "use_motion_mid_block=True.*mid_block_type is None"),
        ({}, dict(motion_norm_num_groups=16), "motion_norm_num_groups=16.*norm_num_groups=32"),
        ({}, dict(conv_in_channels=9), "conv_in_channels=9"),
        (dict(down_block_types=("AttnDownBlock2D", "DownBlock2D")), {}, "'AttnDownBlock2D'"),
    ],
)
def test_mismatched_adapter_is_refused_before_any_weight_is_read(tmp_path, unet_overrides, adapter_overrides, message):
    unet = unet_folder_without_weights(tmp_path, **unet_overrides)
    adapter = adapter_folder_without_weights(tmp_path, **adapter_overrides)
    with pytest.raises(ValueError, match=message):
        VideoUNet.from_image_unet_and_motion_adapter(unet, adapter)
    with pytest.raises(ValueError, match=message):
        check_motion_adapter_fits(
            dict(tiny_motion_unet_config(), **unet_overrides), tiny_motion_adapter_config(**adapter_overrides)
        )


def test_bad_motion_arguments_are_refused_before_any_weight_is_read(tmp_path):
    unet = unet_folder_without_weights(tmp_path)
    adapter = adapter_folder_without_weights(tmp_path)
    with pytest.raises(ValueError, match="max_frames=9 exceeds the motion adapter's motion_max_seq_length=8"):
        VideoUNet.from_image_unet_and_motion_adapter(unet, adapter, max_frames=9)
    with pytest.raises(ValueError, match="unknown argument 'motion_heads'"):
        check_motion_adapter_fits(tiny_motion_unet_config(), dict(tiny_motion_adapter_config(), motion_heads=2))
    with pytest.raises(ValueError, match="motion_adapter must be a MotionAdapter, a folder or a file"):
        VideoUNet.from_image_unet_and_motion_adapter(unet, 3)
    with pytest.raises(ValueError, match="config applies to original AnimateDiff files only"):
        VideoUNet.from_image_unet_and_motion_adapter(unet, adapter, adapter_config=tiny_motion_adapter_config())
    with pytest.raises(FileNotFoundError, match="no MotionAdapter weights"):  # configs fit: now weights are read
        VideoUNet.from_image_unet_and_motion_adapter(tiny_motion_unet(), adapter)


def test_wrong_cross_attention_width_is_refused_naming_both():
    model, _, _, _ = both_models()
    sample, timestep, _ = inputs()
    message = r"encoder_hidden_states must have shape \(2, L, content_dim=32\), got \(2, 3, 48\)"
    with pytest.raises(ValueError, match=message):
        model(sample, timestep, torch.randn(B, 3, 48))


def test_adapter_of_another_config_is_refused_by_weight_loading():
    model, _, _, _ = both_models()
    other = tiny_motion_adapter(motion_num_attention_heads=4)
    with pytest.raises(ValueError, match="motion_num_attention_heads=4, but this VideoUNet was built for 2"):
        model.load_motion_adapter_weights(other)


# ---------------------------------------------------------------------------------------------- saving
@torch.no_grad()
def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    model, _, _, _ = both_models(layers_per_block=2)
    model.save_pretrained(tmp_path / "unet")
    config = json.loads((tmp_path / "unet" / "config.json").read_text())
    assert config["motion_adapter_config"]["motion_num_attention_heads"] == 2
    loaded = VideoUNet.from_pretrained(tmp_path / "unet").eval()
    assert loaded.temporal_kind == "animatediff"
    assert_same_weights(loaded, model)
    sample, timestep, text = inputs()
    assert torch.equal(loaded(sample, timestep, text).sample, model(sample, timestep, text).sample)
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(weights))
    del tensors["unet.mid_block.attentions.0.temporal.proj_out.weight"]
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match="missing keys"):
        VideoUNet.from_pretrained(tmp_path / "unet")


def test_native_kind_is_the_default_and_unchanged():
    from tiny_models import tiny_unet

    model = VideoUNet.from_image_unet(tiny_unet("sd1"), max_frames=8)
    assert model.temporal_kind == "gen1" and model.config.motion_adapter_config is None
    assert not any(".motion" in k for k in model.state_dict())
