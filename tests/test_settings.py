"""An edit's settings are declared once (gen1.settings.EditSettings): the command line's flags, the web form and the
pipeline's arguments are made from that declaration or checked against it here, and ranges are checked in one
place."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields

import pytest

from gen1.cli import build_parser
from gen1.editing import EditRequest, check_request
from gen1.pipeline import Gen1Pipeline
from gen1.serve.service import FORM_FIELDS, EditForm
from gen1.settings import DEFAULTS, FLAGS, EditSettings, check_content_sources, check_setting, flag_label, setting_fields

#: ``gen1 edit``'s options before the settings were declared once (no option lost or renamed), and those added since
#: (--no-cache, --controlnet-start, --controlnet-end, and the masked edits' --erase, --mask-frame, --mask-structure,
#: --mask-structure-level).
EDIT_OPTIONS = ['--adapter', '--base', '--compare', '--compile', '--content-weights', '--controlnet',
                '--controlnet-end', '--controlnet-scale', '--controlnet-start', '--depth', '--depth-invert',
                '--depth-model', '--device', '--direction', '--direction-scale', '--drag', '--drag-strength', '--dtype', '--duration', '--erase', '--erase-fill', '--erase-strength', '--fixed-windows', '--fps', '--full-strength-start', '--guidance',
                '--help', '--image-encoder', '--imagic-scale', '--inpaint-controlnet', '--inpaint-controlnet-scale', '--ip-adapter', '--ip-adapter-scale', '--ip-adapter-text-encoder', '--lora', '--lora-scale', '--mask',
                '--mask-click', '--mask-frame', '--mask-structure', '--mask-structure-level', '--mask-tracker',
                '--mask-tracker-model', '--max-frames', '--model',
                '--motion-adapter', '--negative-prompt', '--no-cache', '--output', '--overlap', '--prompt',
                '--reference', '--scheduler', '--seed',
                '--size', '--start', '--steps', '--strength', '--structure-level', '--temporal-guidance', '--threads',
                '--window', '-h', '-o']


def _edit_parser() -> argparse.ArgumentParser:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["edit"]


def test_gen1_edit_has_one_flag_per_setting_with_the_settings_name_and_default():
    actions = {action.dest: action for action in _edit_parser()._actions}
    for item in setting_fields():
        action = actions.get(item.name)
        assert action is not None, f"gen1 edit has no flag for the setting {item.name}"
        assert item.metadata["flag"] in action.option_strings
        parsed = _edit_parser().parse_args(["in.mp4", "-o", "out.mp4"])
        assert getattr(parsed, item.name) == (list(item.default) if item.metadata["repeat"] else item.default)


def test_gen1_edit_help_lists_the_same_options_as_before():
    options = sorted(option for action in _edit_parser()._actions for option in action.option_strings)
    assert options == EDIT_OPTIONS


def test_the_pipeline_takes_every_edit_setting_by_its_name():
    parameters = inspect.signature(Gen1Pipeline.__call__).parameters
    for item in setting_fields():
        if item.metadata["stage"] == "edit":
            assert item.name in parameters, f"Gen1Pipeline.__call__ has no argument {item.name}"
            default = parameters[item.name].default
            if item.name not in ("prompt", "reference_image", "guidance_scale"):  # None there: no content / the model's
                assert default == item.default, f"{item.name}: {default!r} in the pipeline, {item.default!r} declared"


def test_the_web_form_gives_every_setting_and_nothing_else():
    form_fields = {item.name for item in fields(EditForm)}
    given_otherwise = {name for names in FORM_FIELDS.values() for name in names}
    for item in setting_fields():
        if not item.metadata["web"]:  # needs a file the web app does not load (an Imagic adapter)
            assert item.name not in form_fields, f"{item.name} is declared web=False but the web form has it"
            continue
        assert item.name in form_fields or item.name in FORM_FIELDS, f"the web form has no field for {item.name}"
    unexplained = form_fields - {item.name for item in setting_fields()} - given_otherwise - {"video", "model"}
    assert not unexplained, f"web form fields that are no setting: {sorted(unexplained)}"
    for name in form_fields & set(DEFAULTS):
        if name not in ("guidance_scale", "size", "prompt", "negative_prompt"):  # empty: the model's own, or no text
            assert getattr(EditForm(video=None), name) == DEFAULTS[name], name


def test_the_request_is_the_settings_plus_its_files():
    assert issubclass(EditRequest, EditSettings)
    assert {item.name for item in fields(EditRequest)} - set(FLAGS) == {"input", "output", "compare"}


@pytest.mark.parametrize("name, value, rule", [
    ("structure_level", 7.5, r"in \[0, 7\]"),
    ("guidance_scale", -1.0, ">= 0"),
    ("num_inference_steps", 0, "integer >= 1"),
    ("strength", 0.0, r"in \(0, 1\]"),
    ("scheduler", "plms", "one of ddim, dpm, euler"),
    ("window_overlap", -1, "integer >= 0"),
    ("size", 100, "multiple of 8"),
])
def test_a_range_is_checked_in_one_place_and_named_as_each_caller_names_it(name, value, rule):
    with pytest.raises(ValueError, match=f"^{name} .*{rule}"):
        check_setting(name, value)
    with pytest.raises(ValueError, match=f"^{FLAGS[name]} .*{rule}"):
        check_setting(name, value, flag_label)
    with pytest.raises(ValueError, match=f"^{FLAGS[name]} "):
        check_request(EditRequest(input="in.mp4", output="out.mp4", prompt=("x",), **{name: value}))


@pytest.mark.parametrize("given, message", [
    (dict(erase=True, prompt=("a cat",)),
     "erase takes its content from the source without the subject: give no prompt$"),
    (dict(erase=True, prompt=("a cat",), direction=(("a", "b"),)),
     "erase takes its content from the source without the subject: give no prompt or direction$"),
    (dict(erase=True, imagic_scale=0.0), "erase takes .* give no imagic_scale$"),
    (dict(imagic_scale=0.5, reference_image=("ref.png",), content_embeds=[[0.1]], direction=(("a", "b"),)),
     "imagic_scale takes its content from the Imagic adapter: give no reference_image, content_embeds or direction$"),
])
def test_a_content_owner_with_another_source_of_content_is_one_check_named_as_each_caller_names_it(given, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        check_content_sources(given)
    flags = message.replace("imagic_scale", "--imagic-scale").replace("erase takes", "--erase takes")
    for name in ("prompt", "direction", "reference_image"):
        flags = flags.replace(f" {name}", f" {FLAGS[name]}")
    with pytest.raises(ValueError, match=f"^{flags}"):
        check_content_sources(given, flag_label)
    # not given: None, False and empty values
    check_content_sources(dict(erase=False, imagic_scale=None, prompt=("a cat",), direction=()))
    check_content_sources(dict(erase=True, prompt=(), reference_image=None, content_embeds=None))


def test_the_command_line_and_the_pipeline_refuse_an_erase_with_a_prompt_by_the_same_check():
    request = EditRequest(input="in.mp4", output="out.mp4", prompt=("a cat",), erase=True, mask="m.png")
    with pytest.raises(ValueError, match="^--erase takes its content from the source without the subject: give no "
                                         "--prompt$"):
        check_request(request)
