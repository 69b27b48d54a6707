"""Global directions (issue 34): the content is the source's own plus alpha x (text(TARGET) - text(NEUTRAL)) in the
space each route conditions on. alpha = 0 is the source-content edit bit for bit; a direction changes the edit; a
mask confines it; bad input is one line naming the setting, before any model runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from tiny_public import public_pipeline

from gen1.editing import EditRequest, check_request
from gen1.settings import check_directions, flag_label

FRAMES, SIZE = 4, 32
CAR = ("a car", "a red car")


def _video(seed=0):
    return torch.rand(FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _depth(seed=1):
    return torch.rand(FRAMES, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _edit(pipe, **kwargs):
    settings = dict(num_inference_steps=2, guidance_scale=3.0, depth=_depth(), output_type="pt",
                    generator=torch.Generator().manual_seed(7))
    settings.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny content encoder has no prior: its text embeddings warn
        return pipe(_video(), **settings).frames


# ------------------------------------------------------------------------------------------ native route
def test_native_alpha_zero_is_the_source_content_edit_bit_for_bit(native):
    own = native.route.source_embedding(_video())
    assert own.shape == (1, native.unet.content_dim)
    source_edit = _edit(native, content_embeds=own)
    assert torch.equal(_edit(native, direction=[CAR], direction_scale=[0.0]), source_edit)
    assert torch.equal(_edit(native, direction=[CAR, ("day", "night")], direction_scale=[0.0, 0.0]), source_edit)


def test_native_direction_moves_the_content_by_alpha_times_the_text_difference(native):
    from gen1.routes import ContentRequest

    encoder, route = native.content_encoder, native.route
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = encoder.encode_text(list(CAR)).float()
        content = route.edit_content(ContentRequest(direction=(CAR,), direction_scale=(1.5,)), _video(),
                                     generator=None, device="cpu")
    expected = route.source_embedding(_video()) + 1.5 * (text[1:] - text[:1])
    torch.testing.assert_close(content.context.reshape(1, -1), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(content.null_context, torch.zeros_like(content.null_context))  # w acts as in any edit
    one, two = _edit(native, direction=[CAR], direction_scale=[1.0]), _edit(native, direction=[CAR],
                                                                              direction_scale=[2.0])
    source = _edit(native, direction=[CAR], direction_scale=[0.0])
    assert (one - source).abs().mean() > 1e-4 and (two - one).abs().mean() > 1e-4
    assert torch.equal(_edit(native, direction=[CAR]), one)  # no scale: alpha = 1


def test_native_direction_with_a_prior_draws_the_same_noise_for_both_texts(native):
    from tiny_structure_content import tiny_prior

    from gen1.routes import ContentRequest

    native.prior = tiny_prior()
    try:
        zero = native.route.text_direction("a car", "a car ", device="cpu")  # the same text up to a space
        same = native.route.text_direction("a car", "a car ", device="cpu")
        moved = native.route.text_direction(*CAR, device="cpu")
    finally:
        native.prior = None
    assert torch.equal(zero, same)  # deterministic: its own seed, nothing from the edit's generator
    assert moved.abs().sum() > 0 and moved.shape == (1, 1, native.unet.content_dim)
    assert ContentRequest(direction=(CAR,)).direction == (CAR,)


def test_a_mask_confines_a_direction(native):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, 16:] = 255
    out = _edit(native, direction=[CAR], direction_scale=[2.0], mask=mask)
    keep = torch.zeros_like(out, dtype=torch.bool)
    keep[..., :16] = True
    assert torch.equal(out[keep], _video()[keep])


# ------------------------------------------------------------------------------------------ public route
def test_public_alpha_zero_is_the_empty_prompt_edit_and_a_direction_moves_the_hidden_states(public):
    from gen1.prompts import encode_prompts
    from gen1.routes import ContentRequest

    source_edit = _edit(public, prompt="")
    assert torch.equal(_edit(public, direction=[CAR], direction_scale=[0.0]), source_edit)
    moved = _edit(public, direction=[CAR], direction_scale=[1.5])
    assert (moved - source_edit).abs().mean() > 1e-4
    content = public.route.edit_content(ContentRequest(direction=(CAR,), direction_scale=(1.5,)), _video(),
                                        generator=None, device="cpu")
    hidden = encode_prompts(public.tokenizer, public.text_encoder, ["", *CAR])
    torch.testing.assert_close(content.context, hidden[:1] + 1.5 * (hidden[2:] - hidden[1:2]), rtol=1e-5,
                               atol=1e-5)
    with_prompt = public.route.edit_content(ContentRequest(prompt="a street", direction=(CAR,),
                                                           direction_scale=(0.0,)), _video(), generator=None,
                                            device="cpu")
    torch.testing.assert_close(with_prompt.context, encode_prompts(public.tokenizer, public.text_encoder,
                                                                   ["a street"]), rtol=0, atol=0)


def test_public_with_an_ip_adapter_moves_the_text_and_keeps_the_null_image_tokens(public_stack, tmp_path):
    from tiny_models import tiny_motion_unet
    from tiny_public import write_ip_adapter

    from gen1.routes import ContentRequest

    pipe = public_pipeline(public_stack)
    pipe.load_ip_adapter(write_ip_adapter(tmp_path / "ip" / "models", tiny_motion_unet(seed=0)))
    assert torch.equal(_edit(pipe, direction=[CAR], direction_scale=[0.0]), _edit(pipe, prompt=""))
    content = pipe.route.edit_content(ContentRequest(direction=(CAR,)), _video(), generator=None, device="cpu")
    assert content.extra is not None and torch.equal(content.extra, content.null_extra)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("direction, scales, message", [
    ([("", "a red car")], [], r"^direction needs two non-empty texts"),
    ([("a car", "  ")], [], r"^direction needs two non-empty texts"),
    ([("a car", "a car")], [], r"^direction: NEUTRAL and TARGET are the same text"),
    ([("a car",)], [], r"^direction takes two texts"),
    ([CAR], [float("nan")], r"^direction_scale must be a finite number, got nan"),
    ([CAR], [1e30], r"^direction_scale must be within \[-100, 100\], got 1e\+30"),
    ([CAR], [1.0, 2.0], r"^direction_scale: give one per direction \(1\), or none for 1 each; got 2"),
    ([], [1.0], r"^direction_scale was given without direction"),
])
def test_bad_directions_are_one_line_before_any_model_runs(native, monkeypatch, direction, scales, message):
    def no_model(*args, **kwargs):
        raise AssertionError("a model ran before the directions were checked")

    monkeypatch.setattr(native.content_encoder, "forward", no_model)
    monkeypatch.setattr(native.unet, "forward", no_model)
    monkeypatch.setattr(native.vae, "forward", no_model)
    monkeypatch.setattr(native.route.__class__, "edit_content", no_model)
    with pytest.raises(ValueError, match=message) as error:
        native(_video(), direction=direction, direction_scale=scales, depth=_depth(), num_inference_steps=1)
    assert "\n" not in str(error.value)


def test_the_command_line_names_the_flags_and_a_direction_alone_is_content():
    with pytest.raises(ValueError, match=r"^--direction-scale must be a finite number"):
        check_request(EditRequest(input="in.mp4", output="out.mp4", direction=[list(CAR)],
                                  direction_scale=[float("inf")]))
    with pytest.raises(ValueError, match=r"^--direction needs two non-empty texts"):
        check_request(EditRequest(input="in.mp4", output="out.mp4", direction=[["", "x"]]))
    request = EditRequest(input="in.mp4", output="out.mp4", direction=[list(CAR)], direction_scale=[0.5])
    check_request(request)  # no prompt needed: the source's own content is moved
    assert request.direction == (CAR,) and request.settings("edit")["direction_scale"] == (0.5,)
    assert check_directions([CAR, ("day", "night")], [], flag_label) == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"^--direction-scale was given without --direction$"):
        check_request(EditRequest(input="in.mp4", output="out.mp4", direction_scale=[1.0]))
    with pytest.raises(ValueError, match=r"or --imagic-scale with an Imagic --adapter\) for the content of the edit"):
        check_request(EditRequest(input="in.mp4", output="out.mp4"))


def test_gen1_edit_parses_repeated_directions_and_writes_them_back():
    import argparse
    import shlex

    from gen1.cli import build_parser
    from gen1.editing import edit_command, request_from_args

    parser = build_parser()
    args = parser.parse_args(["edit", "in.mp4", "-o", "out.mp4", "--direction", "a car", "a red car",
                              "--direction", "day", "night", "--direction-scale", "1.5", "--direction-scale", "0"])
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    request = request_from_args(args)
    assert request.direction == (CAR, ("day", "night")) and request.direction_scale == (1.5, 0.0)
    again = request_from_args(subparsers.choices["edit"].parse_args(shlex.split(edit_command(request))[2:]))
    assert again == request


def test_the_web_form_gives_one_direction_with_its_slider():
    from gen1.serve.service import EditForm, _direction

    assert _direction(EditForm(video=None)) == {}
    assert _direction(EditForm(video=None, direction_neutral=" a car ", direction_target="a red car",
                               direction_alpha=0.5)) == dict(direction=(CAR,), direction_scale=(0.5,))


def test_erase_and_a_direction_do_not_go_together(native):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[8:24, 8:24] = 255
    with pytest.raises(ValueError, match="^erase takes its content from the source without the subject"):
        native(_video(), direction=[CAR], erase=True, mask=mask, depth=_depth(), num_inference_steps=1)
    with pytest.raises(ValueError, match="^--erase takes its content from the source without the subject"):
        check_request(EditRequest(input="in.mp4", output="out.mp4", direction=[list(CAR)], erase=True,
                                  mask="mask.png"))
