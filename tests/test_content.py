"""gen1.content: CLIP image/text embeddings from a transformers checkpoint, the prior path, mixing, null content."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from gen1.content import ContentEncoder, as_unet_context, mix_content, null_content
from tiny_structure_content import TINY_DIM, save_tiny_clip_checkpoint, tiny_prior


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip_checkpoint(tmp_path_factory.mktemp("clip") / "clip-vit-tiny")


@pytest.fixture(scope="module")
def encoder(clip_dir):
    return ContentEncoder.from_clip_pretrained(clip_dir)


def _images(n=2, h=40, w=52, seed=0):
    return (np.random.default_rng(seed).random((n, h, w, 3)) * 255).astype(np.uint8)


def test_from_clip_pretrained_matches_transformers_clip(encoder, clip_dir):
    from transformers import CLIPModel, CLIPTokenizer

    clip = CLIPModel.from_pretrained(clip_dir).eval()
    assert encoder.embedding_dim == TINY_DIM
    assert encoder.config.image_size == 32 and encoder.config.crop_size == 32
    images = _images()
    pixels = encoder.preprocess(images)
    assert pixels.shape == (2, 3, 32, 32)
    with torch.no_grad():
        ref = clip.get_image_features(pixel_values=pixels)
        ref = getattr(ref, "pooler_output", ref)
    emb = encoder.encode_image(images)
    assert emb.shape == (2, TINY_DIM) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, ref, atol=1e-6, rtol=0)

    ids = CLIPTokenizer.from_pretrained(clip_dir)(["a red car"], padding="max_length", max_length=16,
                                                  return_tensors="pt").input_ids
    with torch.no_grad():
        ref_text = clip.get_text_features(input_ids=ids)
        ref_text = getattr(ref_text, "pooler_output", ref_text)
    text, hidden, mask = encoder.encode_clip_text(["a red car"])
    torch.testing.assert_close(text, ref_text, atol=1e-6, rtol=0)
    assert hidden.shape[:2] == mask.shape == (1, 16)


def test_image_embeddings_are_deterministic_and_accept_every_input_type(encoder, tmp_path):
    images = _images()
    ref = encoder.encode_image(images)
    assert torch.equal(encoder.encode_image(images), ref)
    as_tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(encoder.encode_image(as_tensor), ref, atol=1e-5, rtol=0)
    pil = [Image.fromarray(im) for im in images]
    torch.testing.assert_close(encoder.encode_image(pil), ref, atol=1e-5, rtol=0)
    pil[1].save(tmp_path / "ref.png")
    torch.testing.assert_close(encoder.encode_image(tmp_path / "ref.png"), ref[1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(encoder.encode_image(images[0]), ref[:1], atol=1e-5, rtol=0)


def test_text_without_prior_warns_and_returns_clip_text_embedding(encoder):
    with pytest.warns(UserWarning, match="without a prior"):
        emb = encoder.encode_text(["a cat", "a dog on a beach"])
    assert emb.shape == (2, TINY_DIM)
    torch.testing.assert_close(emb, encoder.encode_clip_text(["a cat", "a dog on a beach"])[0])


def test_text_with_prior_maps_into_image_embedding_space(encoder):
    prior = tiny_prior()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "without a prior" warning
        a = encoder.encode_text(["a cat", "a dog"], prior=prior, num_inference_steps=4,
                                generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, TINY_DIM) and torch.isfinite(a).all()
    b = encoder.encode_text(["a cat", "a dog"], prior=prior, num_inference_steps=4,
                            generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)  # seeded: deterministic
    c = encoder.encode_text(["a cat", "a dog"], prior=prior, num_inference_steps=4,
                            generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, c)
    no_cfg = encoder.encode_text(["a cat"], prior=prior, num_inference_steps=2, guidance_scale=1.0,
                                 generator=torch.Generator().manual_seed(0))
    assert no_cfg.shape == (1, TINY_DIM)

    from diffusers import PriorTransformer

    wrong = PriorTransformer(num_attention_heads=2, attention_head_dim=4, num_layers=1, embedding_dim=8,
                             num_embeddings=16, additional_embeddings=4)
    with pytest.raises(ValueError, match="embedding_dim"):
        encoder.encode_text("a cat", prior=wrong)


def test_mixing_is_linear_and_null_content_is_zero():
    torch.manual_seed(0)
    a, b = torch.randn(TINY_DIM), torch.randn(3, TINY_DIM)
    torch.testing.assert_close(mix_content([a, b], [0.25, 0.75]), 0.25 * a[None] + 0.75 * b)
    w, v = [0.2, 1.0], [0.5, -0.3]
    lhs = mix_content([a, b], [2 * x + 3 * y for x, y in zip(w, v)])
    torch.testing.assert_close(lhs, 2 * mix_content([a, b], w) + 3 * mix_content([a, b], v))
    stacked = torch.randn(3, TINY_DIM)  # one tensor: rows are the embeddings
    torch.testing.assert_close(mix_content(stacked, [1, 1, 1]), stacked.sum(0, keepdim=True))
    with pytest.raises(ValueError, match="one entry per embedding"):
        mix_content([a, b], [1.0])
    with pytest.raises(ValueError, match="dimension"):
        mix_content([a, torch.randn(5)], [1.0, 1.0])

    null = null_content(2, TINY_DIM, device="cpu", dtype=torch.float16)
    assert null.shape == (2, TINY_DIM) and null.dtype == torch.float16 and not null.any()
    ctx = as_unet_context(b)
    assert ctx.shape == (3, 1, TINY_DIM) and torch.equal(ctx[:, 0], b)
    assert as_unet_context(a).shape == (1, 1, TINY_DIM)


def test_save_pretrained_round_trip_keeps_weights_and_tokenizer(encoder, tmp_path):
    encoder.save_pretrained(tmp_path / "content_encoder")
    again = ContentEncoder.from_pretrained(tmp_path / "content_encoder")
    images = _images()
    assert torch.equal(again.encode_image(images), encoder.encode_image(images))
    assert torch.equal(again.encode_clip_text(["a cat"])[0], encoder.encode_clip_text(["a cat"])[0])


def test_bad_inputs_give_clear_errors(encoder, clip_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ContentEncoder.from_clip_pretrained(tmp_path / "no-such-clip")
    (tmp_path / "not_an_image.png").write_text("hello")
    with pytest.raises(ValueError, match="not_an_image.png"):
        encoder.encode_image(tmp_path / "not_an_image.png")
    with pytest.raises(ValueError, match="uint8"):
        encoder.encode_image(np.zeros((1, 8, 8, 3), dtype=np.float32))

    bare = ContentEncoder(vision_config=encoder.config.vision_config, text_config=encoder.config.text_config,
                          projection_dim=TINY_DIM, image_size=32, crop_size=32)
    with pytest.raises(ValueError, match="tokenizer"):
        bare.encode_text("a cat")

    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken-clip"
    shutil.copytree(clip_dir, broken)
    sd = load_file(broken / "model.safetensors")
    sd["visual_projection.weight"] = torch.zeros(TINY_DIM, 5)
    save_file(sd, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="visual_projection.weight"):
        ContentEncoder.from_clip_pretrained(broken)


def _closed_encoder(encoder, **flags):
    """The tiny encoder's weights and tokenizer under a config that records a closed vocabulary."""
    closed = ContentEncoder(**{**{k: v for k, v in encoder.config.items() if not k.startswith("_")}, **flags})
    closed.load_state_dict(encoder.state_dict())
    closed.set_tokenizer(encoder.tokenizer)
    return closed.eval()


def test_words_outside_a_closed_vocabulary_warn_listing_the_vocabulary(encoder, tmp_path):
    closed = _closed_encoder(encoder, text_vocabulary=["a", "red", "floor", "on"], text_in_image_space=True)
    assert closed.unknown_words(["a Red floor", "red, on a floor 2", "a blue-red floor"]) == ["blue"]
    with pytest.warns(UserWarning, match=r"not trained on .*: 'watercolour', 'painting'\. Its 4 words: a, floor, on, "
                                         r"red$") as seen:
        closed.encode_text("A watercolour painting on a painting")
    assert len(seen) == 1  # and no "without a prior": its text tower embeds into image space
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        closed.encode_text(["a red floor", "red on a floor"])
    # the settings survive save_pretrained / from_pretrained
    closed.save_pretrained(tmp_path / "closed")
    again = ContentEncoder.from_pretrained(tmp_path / "closed")
    assert again.config.text_vocabulary == ["a", "red", "floor", "on"] and again.config.text_in_image_space
    # an open vocabulary (CLIP's) never warns about words
    assert encoder.unknown_words("a watercolour painting") == []
    with pytest.raises(ValueError, match="text_vocabulary must be a list of words"):
        ContentEncoder(text_vocabulary="red floor")


def test_the_bundled_encoder_knows_the_caption_words_and_warns_about_others(bundled_pipe):
    from gen1.synthetic import CAPTION_VOCABULARY

    content = bundled_pipe.content_encoder
    assert tuple(sorted(content.config.text_vocabulary)) == CAPTION_VOCABULARY and len(CAPTION_VOCABULARY) == 34
    for word in CAPTION_VOCABULARY:  # each caption word is one token of its tokenizer
        assert len(content.tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "without a prior": the demo's text tower was trained into image space
        content.encode_text("red striped objects on a blue floor")
    with pytest.warns(UserWarning, match=r"'watercolour', 'painting'\. Its 34 words: a, an, black, blue"):
        content.encode_text("a watercolour painting")
