"""Global directions in the IP-Adapter's image space (issue 34, public route): with an IP-Adapter and the CLIP text
tower of its image encoder loaded, a direction moves the IP-Adapter's image content (the source frames' own, or the
references') by alpha x (unit(text(TARGET)) - unit(text(NEUTRAL))) x |content|, the text hidden states unmoved.
alpha = 0 is the source-image-content edit bit for bit; a tower of another width is refused in one line; the tower
loads by Hub name from an offline cache through `gen1 edit --ip-adapter-text-encoder`; without it, nothing changes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_directions import CAR, FRAMES, SIZE, _edit, _video
from tiny_public import public_pipeline, write_ip_adapter, write_public_stack

IMAGE_WIDTH = 24  # the projection width of write_ip_adapter's image encoder
TOWER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def write_text_tower(folder, projection_dim: int = IMAGE_WIDTH, seed: int = 11):
    """A tiny CLIP model in the laion repo's layout: a whole ``CLIPModel`` (config.json with ``projection_dim`` at
    the top and transformers' default 512 inside ``text_config``, model.safetensors) and its tokenizer files."""
    from tiny_structure_content import tiny_clip_tokenizer
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(text_config=dict(vocab_size=514, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=512,
                                         eos_token_id=513, pad_token_id=513),
                        vision_config=dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=16),
                        projection_dim=projection_dim)
    assert config.to_dict()["text_config"]["projection_dim"] == 512  # as the real repo's config may say
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        CLIPModel(config).save_pretrained(folder)
    tiny_clip_tokenizer(16).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from tiny_models import tiny_motion_unet

    root = tmp_path_factory.mktemp("ipdir")
    stack = write_public_stack(root)
    ip = write_ip_adapter(root / "ip" / "models", tiny_motion_unet(seed=0))
    return dict(stack, ip=ip, root=root, tower=write_text_tower(root / "tower"),
                narrow=write_text_tower(root / "narrow", projection_dim=16))


@pytest.fixture(scope="module")
def pipe(parts):
    pipe = public_pipeline(parts)
    pipe.load_ip_adapter(parts["ip"], text_encoder=parts["tower"])
    return pipe


def _content(pipe, **request):
    from gen1.routes import ContentRequest

    return pipe.route.edit_content(ContentRequest(**request), _video(), generator=None, device="cpu")


# ------------------------------------------------------------------------------------------ the edit
def test_alpha_zero_is_the_source_image_content_edit_bit_for_bit(pipe):
    images = pipe.route.source_images(_video())
    assert len(images) == FRAMES and images[0].shape == (SIZE, SIZE, 3) and images[0].dtype.name == "uint8"
    source_edit = _edit(pipe, prompt="", reference_image=images)
    assert torch.equal(_edit(pipe, direction=[CAR], direction_scale=[0.0]), source_edit)
    assert torch.equal(_edit(pipe, direction=[CAR, ("day", "night")], direction_scale=[0.0, 0.0]), source_edit)
    moved = _edit(pipe, direction=[CAR], direction_scale=[2.0])
    assert (moved - source_edit).abs().mean() > 1e-4


def test_a_direction_moves_only_the_image_tokens(pipe):
    still, moved = _content(pipe, direction=(CAR,), direction_scale=(0.0,)), _content(pipe, direction=(CAR,),
                                                                                        direction_scale=(1.5,))
    own_text = pipe.route.own_content(_video(), _content_request(), generator=None, device="cpu")
    assert torch.equal(moved.context, own_text.context) and torch.equal(moved.context, still.context)
    assert torch.equal(moved.null_context, still.null_context) and torch.equal(moved.null_extra, still.null_extra)
    assert torch.equal(moved.null_extra, torch.zeros_like(moved.null_extra))  # w acts as in any edit
    assert moved.extra.shape == (1, 1, IMAGE_WIDTH) and (moved.extra - still.extra).abs().max() > 1e-4
    prompted = _content(pipe, prompt="a street", direction=(CAR,), direction_scale=(1.5,))
    from gen1.prompts import encode_prompts

    assert torch.equal(prompted.context, encode_prompts(pipe.tokenizer, pipe.text_encoder, ["a street"]))
    assert torch.equal(prompted.extra, moved.extra)  # the prompt is the text; the image content is still the source's


def _content_request():
    from gen1.routes import ContentRequest

    return ContentRequest()


def test_the_direction_is_the_unit_text_difference_times_the_image_embeddings_length(pipe):
    route = pipe.route
    pixels = pipe.feature_extractor(route.source_images(_video()), return_tensors="pt").pixel_values
    with torch.no_grad():
        own = pipe.image_encoder(pixels).image_embeds.float().mean(dim=0)
        tokens = pipe.ip_adapter_tokenizer(["a red car", "a car", "night", "day"], padding="max_length",
                                           max_length=pipe.ip_adapter_tokenizer.model_max_length, truncation=True,
                                           return_tensors="pt")
        text = F.normalize(pipe.ip_adapter_text_encoder(tokens.input_ids).text_embeds.float(), dim=-1)
    expected = own + own.norm() * (1.5 * (text[0] - text[1]) - 0.5 * (text[2] - text[3]))
    content = _content(pipe, direction=(CAR, ("day", "night")), direction_scale=(1.5, -0.5))
    torch.testing.assert_close(content.extra.reshape(-1), expected, rtol=1e-5, atol=1e-5)
    # with references, the direction moves the references' content, scaled by its own length
    reference = route.source_images(_video(seed=5))[0]
    with torch.no_grad():
        ref = pipe.image_encoder(pipe.feature_extractor([reference], return_tensors="pt").pixel_values).image_embeds[0]
    content = _content(pipe, reference_image=reference, direction=(CAR,), direction_scale=(1.0,))
    torch.testing.assert_close(content.extra.reshape(-1), ref + ref.norm() * (text[0] - text[1]), rtol=1e-5,
                               atol=1e-5)


def test_a_text_tower_of_another_width_is_refused_in_one_line(parts):
    fresh = public_pipeline(parts)
    fresh.load_ip_adapter(parts["ip"])
    with pytest.raises(ValueError, match=r"^the IP-Adapter's text encoder projects to width 16, its image encoder to "
                                         r"24") as error:
        fresh.load_ip_adapter_text_encoder(parts["narrow"])
    assert "\n" not in str(error.value) and getattr(fresh, "ip_adapter_text_encoder", None) is None
    with pytest.raises(ValueError, match="needs an IP-Adapter"):
        public_pipeline(parts).load_ip_adapter_text_encoder(parts["tower"])


def test_without_the_text_tower_directions_move_the_text_as_before(parts):
    from gen1.prompts import encode_prompts

    plain = public_pipeline(parts)
    plain.load_ip_adapter(parts["ip"])
    content = _content(plain, direction=(CAR,), direction_scale=(1.5,))
    assert torch.equal(content.extra, content.null_extra)  # the image tokens keep their null content
    hidden = encode_prompts(plain.tokenizer, plain.text_encoder, ["", *CAR])
    torch.testing.assert_close(content.context, hidden[:1] + 1.5 * (hidden[2:] - hidden[1:2]), rtol=1e-5, atol=1e-5)
    assert torch.equal(_edit(plain, direction=[CAR], direction_scale=[0.0]), _edit(plain, prompt=""))


def test_a_saved_pipeline_keeps_the_text_tower(pipe, tmp_path):
    from gen1.pipeline import Gen1Pipeline

    pipe.save_pretrained(tmp_path / "saved")
    again = Gen1Pipeline.from_pretrained(tmp_path / "saved")
    request = dict(direction=(CAR,), direction_scale=(1.5,))
    torch.testing.assert_close(_content(again, **request).extra, _content(pipe, **request).extra, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ the command line
def test_gen1_edit_loads_the_tower_by_hub_name_offline(parts, clips_dir, tmp_path, monkeypatch, capsys):
    from tiny_hub import cache_repo, offline_cache

    from gen1.cli import main
    from gen1.media import read_video

    cache = offline_cache(monkeypatch, tmp_path / "hf")
    snapshot = cache_repo(cache, TOWER, {"": parts["tower"]})
    cache_repo(cache, "someone/narrow-clip", {"": parts["narrow"]})
    monkeypatch.chdir(tmp_path)
    common = [clips_dir / "wolf.mp4", "--base", parts["base"], "--motion-adapter", parts["motion_adapter"],
              "--controlnet", parts["controlnet"], "--depth", _depth_file(tmp_path), "--ip-adapter", parts["ip"],
              "--direction", *CAR, "--direction-scale", 1.5, "--size", 32, "--max-frames", 2, "--steps", 2]
    out = tmp_path / "out.mp4"
    code = main(["edit", *map(str, [*common, "-o", out, "--ip-adapter-text-encoder", TOWER])])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"applied the IP-Adapter's text encoder {snapshot}" in captured.out
    assert read_video(out).frames.shape == (2, 32, 32, 3)

    monkeypatch.setattr("gen1.model_sources.load_model", lambda *a, **k: pytest.fail("loaded before refusing"))
    for extra, message in (
            (["--ip-adapter-text-encoder", "someone/narrow-clip"], "--ip-adapter-text-encoder 'someone/narrow-clip': "
             "the IP-Adapter's text encoder projects to width 16, its image encoder to 24"),
            (["--ip-adapter-text-encoder", "someone/not-cached"], "--ip-adapter-text-encoder 'someone/not-cached': "
             "no local path, and the Hub repo 'someone/not-cached' is not in the Hugging Face cache")):
        code = main(["edit", *map(str, [*common, "-o", tmp_path / "no.mp4", *extra])])
        captured = capsys.readouterr()
        assert code == 2 and message in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    args = [a for a in common if a not in ("--ip-adapter", parts["ip"])]
    code = main(["edit", *map(str, [*args, "-o", tmp_path / "no.mp4", "--ip-adapter-text-encoder", TOWER])])
    captured = capsys.readouterr()
    assert code == 2 and "--ip-adapter-text-encoder belongs to an IP-Adapter: give --ip-adapter" in captured.err


def _depth_file(tmp_path):
    """A depth image for the edit (the public route needs --depth-model or --depth; one image serves every frame)."""
    import numpy as np
    from PIL import Image

    path = tmp_path / "depth.png"
    Image.fromarray(np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :], 32, axis=0)).save(path)
    return path
