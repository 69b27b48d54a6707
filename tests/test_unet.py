"""VideoUNet: inflation identity, image-mode gate, save/load, gradient checkpointing, input checks."""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch
from einops import rearrange
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gen1.temporal_layers import TemporalConv
from gen1.unet import VideoUNet
from tiny_models import UNET_KINDS, tiny_unet

B, F, H, W = 2, 4, 16, 16


def inputs(model: VideoUNet, batch: int = B, frames: int = F, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, model.in_channels, frames, H, W, generator=g)
    timestep = torch.randint(0, 1000, (batch,), generator=g)
    context = torch.randn(batch, 3, model.content_dim, generator=g)
    return sample, timestep, context


def base_frame_by_frame(base, sample, timestep, context):
    """The image UNet on every frame as an independent image (batch (b f), like VideoUNet uses)."""
    frames = sample.shape[2]
    images = rearrange(sample[:, : base.config.in_channels], "b c f h w -> (b f) c h w")
    out = base(
        images, timestep.repeat_interleave(frames), context.repeat_interleave(frames, dim=0)
    ).sample
    return rearrange(out, "(b f) c h w -> b c f h w", f=frames)


def randomise_temporal(model: VideoUNet, seed: int = 3, scale: float = 0.2) -> None:
    """Give every temporal-layer parameter (incl. zero-initialised projections) random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".temporal." in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if name.endswith("norm1.weight") else 0.0))


def video_unet(kind="sd1", randomised=False, **kwargs) -> tuple[VideoUNet, torch.nn.Module]:
    base = tiny_unet(kind)
    model = VideoUNet.from_image_unet(base, max_frames=8, **kwargs).eval()
    if randomised:
        randomise_temporal(model)
    return model, base


@torch.no_grad()
@pytest.mark.parametrize("kind", UNET_KINDS)
def test_inflated_model_equals_image_unet_frame_by_frame(kind):
    model, base = video_unet(kind)
    assert model.in_channels == 5 and model.latent_channels == 4
    if kind == "sd2-depth":  # 5 input channels already: nothing added, conv_in copied as is
        assert torch.equal(model.unet.conv_in.weight, base.conv_in.weight)
    else:
        assert torch.equal(model.unet.conv_in.weight[:, :4], base.conv_in.weight)
        assert not model.unet.conv_in.weight[:, 4:].any()
    for name, p in model.new_layers_state_dict().items():  # allocated on meta then initialised: no garbage
        assert torch.isfinite(p).all(), name
        if name.endswith(("proj_out.weight", "conv2.weight")) and ".temporal." in name:
            assert not p.any(), name
    sample, timestep, context = inputs(model)
    out = model(sample, timestep, context).sample
    ref = base_frame_by_frame(base, sample, timestep, context)
    assert out.shape == (B, 4, F, H, W)
    assert torch.equal(out, ref)  # exact: zero-initialised layers add exactly 0, not merely something small
    assert ref.abs().mean() > 0.05  # a non-trivial output, so the equality means something


@torch.no_grad()
def test_temporal_layers_wrap_every_resnet_and_transformer():
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    model, base = video_unet("sd2")
    n_resnets = sum(isinstance(m, ResnetBlock2D) for m in base.modules())
    n_transformers = sum(isinstance(m, Transformer2DModel) for m in base.modules())
    assert len(model._wrapped_paths) == n_resnets + n_transformers
    assert any(p.startswith("mid_block.attentions") for p in model._wrapped_paths)
    assert any(p.startswith("up_blocks.1.attentions") for p in model._wrapped_paths)
    for name in base.state_dict():  # every image key has its documented place
        assert name in {k.replace(".spatial.", ".") for k in model.unet.state_dict()}


@torch.no_grad()
@pytest.mark.parametrize("kind", ["sd1", "sd2"])
def test_image_mode_equals_image_unet_with_random_temporal_weights(kind):
    model, base = video_unet(kind, randomised=True)
    sample, timestep, context = inputs(model)
    ref = base_frame_by_frame(base, sample, timestep, context)
    image = model(sample, timestep, context, image_mode=torch.ones(B, dtype=torch.bool)).sample
    video = model(sample, timestep, context).sample
    assert torch.equal(image, ref)  # the gate skips the temporal layers: exactly the image model
    assert (video - ref).abs().max().item() > 1e-3  # the temporal layers do act in video mode


@torch.no_grad()
def test_video_mode_couples_frames_and_image_mode_does_not():
    model, _ = video_unet("sd1", randomised=True)
    sample, timestep, context = inputs(model)
    changed = sample.clone()
    changed[:, :, 3] += torch.randn_like(changed[:, :, 3])  # change only the last frame
    for image_mode, should_change in ((torch.tensor([False, False]), True), (torch.tensor([True, True]), False)):
        before = model(sample, timestep, context, image_mode=image_mode).sample[:, :, 0]
        after = model(changed, timestep, context, image_mode=image_mode).sample[:, :, 0]
        diff = (before - after).abs().max().item()
        assert (diff > 1e-4) if should_change else (diff == 0.0), (image_mode, diff)


@torch.no_grad()
def test_mixed_batch_gives_each_sample_its_result_alone():
    model, _ = video_unet("sd2", randomised=True)
    sample, timestep, context = inputs(model, batch=3)
    image_mode = torch.tensor([False, True, False])
    mixed = model(sample, timestep, context, image_mode=image_mode).sample
    for b in range(3):
        alone = model(sample[b : b + 1], timestep[b : b + 1], context[b : b + 1], image_mode=image_mode[b : b + 1]).sample
        assert (mixed[b : b + 1] - alone).abs().max().item() < 1e-5, b


@torch.no_grad()
def test_timestep_forms_are_equivalent():
    model, _ = video_unet("sd1", randomised=True)
    sample, _, context = inputs(model)
    ref = model(sample, torch.tensor([250, 250]), context).sample
    for t in (250, torch.tensor(250), torch.tensor([250])):
        assert torch.equal(model(sample, t, context).sample, ref)
    out = model(sample, 250, context, return_dict=False)
    assert isinstance(out, tuple) and torch.equal(out[0], ref)


@torch.no_grad()
def test_save_and_load_new_layers_round_trip(tmp_path):
    model, _ = video_unet("sd1", randomised=True)
    path = model.save_new_layers(tmp_path / "temporal.safetensors")
    names = set(load_file(str(path)))
    assert names == set(model.new_layers_state_dict())
    assert "unet.conv_in.weight" in names and all(
        n.startswith("unet.conv_in.") or ".temporal." in n for n in names
    )
    fresh, _ = video_unet("sd1")
    sample, timestep, context = inputs(model)
    assert not torch.equal(fresh(sample, timestep, context).sample, model(sample, timestep, context).sample)
    fresh.load_new_layers(path)
    assert torch.equal(fresh(sample, timestep, context).sample, model(sample, timestep, context).sample)


def _rewrite(path, out, edit):
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(out), metadata=metadata)


def test_load_new_layers_rejects_wrong_shape_missing_key_and_other_config(tmp_path):
    model, _ = video_unet("sd1", randomised=True)
    path = model.save_new_layers(tmp_path / "temporal.safetensors")
    key = "unet.down_blocks.0.attentions.0.temporal.proj_out.weight"

    def wrong_shape(t):
        t[key] = torch.zeros(3, 3)

    _rewrite(path, tmp_path / "shape.safetensors", wrong_shape)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        model.load_new_layers(tmp_path / "shape.safetensors")
    _rewrite(path, tmp_path / "missing.safetensors", lambda t: t.pop(key))
    with pytest.raises(ValueError, match="missing.*" + key.replace(".", r"\.")):
        model.load_new_layers(tmp_path / "missing.safetensors")
    other = VideoUNet.from_image_unet(tiny_unet("sd1"), max_frames=4)
    with pytest.raises(ValueError, match="max_frames"):
        other.load_new_layers(path)
    with pytest.raises(FileNotFoundError):
        model.load_new_layers(tmp_path / "nope.safetensors")


@torch.no_grad()
def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    model, _ = video_unet("sd2", randomised=True, content_dim=40)
    model.save_pretrained(tmp_path / "vunet")
    loaded = VideoUNet.from_pretrained(tmp_path / "vunet").eval()
    assert loaded.config.content_dim == 40 and loaded.max_frames == 8
    sample, timestep, context = inputs(model)
    image_mode = torch.tensor([True, False])
    assert torch.equal(
        loaded(sample, timestep, context, image_mode=image_mode).sample,
        model(sample, timestep, context, image_mode=image_mode).sample,
    )


def test_from_pretrained_rejects_wrong_shape_and_missing_key(tmp_path):
    model, _ = video_unet("sd1")
    folder = tmp_path / "vunet"
    model.save_pretrained(folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    key = "unet.mid_block.attentions.0.temporal.proj_in.weight"
    original = load_file(str(weights))

    bad = dict(original, **{key: torch.zeros(2, 2)})
    save_file(bad, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        VideoUNet.from_pretrained(folder)

    bad = {k: v for k, v in original.items() if k != key}
    save_file(bad, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        VideoUNet.from_pretrained(folder)

    bad = dict(original, **{"unet.extra.weight": torch.zeros(1)})
    save_file(bad, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"unexpected keys.*unet\.extra\.weight"):
        VideoUNet.from_pretrained(folder)


def test_from_image_unet_accepts_a_diffusers_folder(tmp_path):
    base = tiny_unet("sd2")
    base.save_pretrained(tmp_path / "pipe" / "unet")
    from_folder = VideoUNet.from_image_unet(tmp_path / "pipe", subfolder="unet", max_frames=8).eval()
    from_module = VideoUNet.from_image_unet(base, max_frames=8).eval()
    for (n1, p1), (n2, p2) in zip(from_folder.state_dict().items(), from_module.state_dict().items()):
        if ".temporal." not in n1 or "proj_out" in n1 or "conv2" in n1:
            assert n1 == n2 and torch.equal(p1, p2), n1
    with pytest.raises(FileNotFoundError, match="config.json"):
        VideoUNet.from_image_unet(tmp_path / "pipe", subfolder="vae")


def _gradients(model, sample, timestep, context, image_mode):
    model.zero_grad(set_to_none=True)
    model(sample, timestep, context, image_mode=image_mode).sample.square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients_and_covers_temporal_layers():
    model, _ = video_unet("sd1", randomised=True)
    model.train()
    sample, timestep, context = inputs(model)
    image_mode = torch.tensor([False, True])
    reference = _gradients(model, sample, timestep, context, image_mode)

    calls = []
    convs = [m for m in model.modules() if isinstance(m, TemporalConv)]
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in convs[:1]]
    model.enable_gradient_checkpointing()
    checkpointed = _gradients(model, sample, timestep, context, image_mode)
    for h in hooks:
        h.remove()
    assert len(calls) == 2, "the temporal convolution is re-run in backward: it is checkpointed"
    assert set(checkpointed) == set(reference)
    assert any(".temporal." in n for n in reference) and any(".spatial." in n for n in reference)
    for name, grad in reference.items():
        assert torch.allclose(checkpointed[name], grad, atol=1e-6, rtol=1e-5), name
    assert model.unet.mid_block.attentions[0].temporal.gradient_checkpointing


@torch.no_grad()
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda s, t, c: (s[:, :4], t, c, None), "channels"),
        (lambda s, t, c: (torch.cat([s, s[:, :, :1]], 2).repeat(1, 1, 2, 1, 1), t, c, None), "max_frames"),
        (lambda s, t, c: (s[:, :, 0], t, c, None), "5-D"),
        (lambda s, t, c: (s, t, c, torch.tensor([True])), "image_mode"),
        (lambda s, t, c: (s, t, c, torch.tensor([1, 0])), "image_mode"),
        (lambda s, t, c: (s, t, c[..., :5], None), "encoder_hidden_states"),
        (lambda s, t, c: (s, torch.tensor([1, 2, 3]), c, None), "timestep"),
    ],
)
def test_bad_inputs_raise_value_errors(make, match):
    model, _ = video_unet("sd1")
    sample, timestep, context, image_mode = make(*inputs(model))
    with pytest.raises(ValueError, match=match):
        model(sample, timestep, context, image_mode=image_mode)


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="structure_channels"):
        VideoUNet.from_image_unet(tiny_unet("sd2-depth"), structure_channels=3)
    with pytest.raises(ValueError, match="unet_or_path"):
        VideoUNet.from_image_unet(42)


@torch.no_grad()
def test_content_proj_maps_a_different_content_dim():
    same, _ = video_unet("sd1", content_dim=32)
    assert same.content_proj is None and same.content_dim == 32
    model, _ = video_unet("sd1", content_dim=48)
    assert model.content_dim == 48 and model.cross_attention_dim == 32
    assert "content_proj.weight" in model.new_layers_state_dict()
    sample, timestep, context = inputs(model)
    assert context.shape[-1] == 48
    before = model(sample, timestep, context).sample
    model.content_proj.weight.mul_(2.0)
    assert (model(sample, timestep, context).sample - before).abs().max() > 1e-4


@torch.no_grad()
def test_attention_backends(monkeypatch):
    model, _ = video_unet("sd1", randomised=True)
    sample, timestep, context = inputs(model)
    ref = model(sample, timestep, context).sample
    model.set_attention_backend("sdpa")
    assert torch.allclose(model(sample, timestep, context).sample, ref, atol=1e-6)
    with pytest.raises(ValueError, match="backend"):
        model.set_attention_backend("flash9")
    monkeypatch.setitem(sys.modules, "xformers", None)
    monkeypatch.setitem(sys.modules, "xformers.ops", None)
    with pytest.raises(ValueError, match="xformers"):
        model.set_attention_backend("xformers")


@torch.no_grad()
def test_temporal_attention_chunks_large_token_batches(monkeypatch):
    """(b h w) can pass the CUDA grid limit of fused attention kernels; chunking must not change results."""
    from gen1.temporal_layers.attention import TemporalSelfAttention

    model, _ = video_unet("sd1", randomised=True)
    sample, timestep, context = inputs(model)
    ref = model(sample, timestep, context).sample
    monkeypatch.setattr(TemporalSelfAttention, "max_batch", 37)
    assert torch.allclose(model(sample, timestep, context).sample, ref, atol=1e-6)


@torch.no_grad()
def test_deepcopy_and_context_isolation():
    """A copy (e.g. an EMA model) has its own frame context; temporal layers refuse to run outside forward."""
    model, _ = video_unet("sd1", randomised=True)
    twin = copy.deepcopy(model)
    assert twin._frame_context is not model._frame_context
    assert twin.unet.mid_block.resnets[0]._frame_context is twin._frame_context
    sample, timestep, context = inputs(model)
    assert torch.equal(twin(sample, timestep, context).sample, model(sample, timestep, context).sample)
    with pytest.raises(RuntimeError, match="frame context"):
        model.unet(sample[:, :, 0], timestep, context)


def test_config_is_json_and_new_layers_parameters_are_the_new_ones(tmp_path):
    model, base = video_unet("sd1")
    assert json.loads(model.to_json_string())["unet_config"]["cross_attention_dim"] == 32
    new = sum(p.numel() for p in model.new_layers_parameters())
    total = sum(p.numel() for p in model.parameters())
    base_total = sum(p.numel() for p in base.parameters())
    conv_in = model.unet.conv_in.weight.numel() + model.unet.conv_in.bias.numel()
    assert total - new == base_total - base.conv_in.weight.numel() - base.conv_in.bias.numel()
    assert new > conv_in


def test_temporal_layers_trained_with_dropout_load_into_an_inference_model(tmp_path):
    """Training-only settings are not part of the temporal file's contract; the resolved group count is."""
    base = tiny_unet("sd1")
    trained = VideoUNet.from_image_unet(base, max_frames=4, temporal_dropout=0.1)
    path = trained.save_new_layers(tmp_path / "temporal.safetensors")
    explicit_groups = VideoUNet.from_image_unet(base, max_frames=4, temporal_norm_num_groups=base.config.norm_num_groups)
    explicit_groups.load_new_layers(path)
    for (name, a), b in zip(trained.new_layers_state_dict().items(), explicit_groups.new_layers_state_dict().values()):
        assert torch.equal(a, b), name
    other = VideoUNet.from_image_unet(base, max_frames=8)
    with pytest.raises(ValueError, match="max_frames"):
        other.load_new_layers(path)


def test_image_mode_gate_may_be_a_host_list_or_bool():
    """The pipeline and trainer pass the gate as Python values (no device sync); same result as a tensor."""
    model = VideoUNet.from_image_unet(tiny_unet("sd1"), max_frames=4)
    with torch.no_grad():
        for p in model.new_layers_parameters():
            p.normal_(0, 0.1)
    sample = torch.randn(2, model.in_channels, 3, 8, 8)
    context = torch.randn(2, 1, model.content_dim)
    with torch.no_grad():
        as_tensor = model(sample, 10, context, image_mode=torch.tensor([True, False])).sample
        as_list = model(sample, 10, context, image_mode=[True, False]).sample
        all_image = model(sample, 10, context, image_mode=True).sample
        all_image_list = model(sample, 10, context, image_mode=[True, True]).sample
    assert torch.equal(as_tensor, as_list)
    assert torch.equal(all_image, all_image_list)
    with pytest.raises(ValueError, match="image_mode"):
        model(sample, 10, context, image_mode=[True])
