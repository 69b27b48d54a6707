"""Model folders are untrusted input: JSON of the wrong type is one line naming the file, and a component whose
module is outside the allow-list is refused naming the entry, without importing that module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gen1.cli import main

DEMO = Path(__file__).resolve().parents[1] / "gen1" / "assets" / "demo-model"


@pytest.fixture
def model(tmp_path) -> Path:
    """A copy of the bundled demo model (15 MB, loads in a second) to damage."""
    return Path(shutil.copytree(DEMO, tmp_path / "model"))


def _set_entry(model: Path, name: str, value) -> Path:
    index = model / "model_index.json"
    data = json.loads(index.read_text())
    data[name] = value
    index.write_text(json.dumps(data))
    return index


def _edit(model: Path, tmp_path: Path, clips_dir: Path) -> list[str]:
    return ["edit", str(clips_dir / "wolf.mp4"), "-o", str(tmp_path / "o.mp4"), "--prompt", "x", "--model", str(model),
            "--size", "16", "--max-frames", "2", "--steps", "1"]


@pytest.mark.parametrize("content, kind", [("[]", "a JSON list"), ("null", "null"), ("3", "a JSON int"),
                                           ('"unet"', "a JSON str")])
def test_a_json_file_of_the_wrong_type_is_one_line_naming_it(tmp_path, content, kind):
    from gen1.model_folders import read_json_object

    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ValueError) as error:
        read_json_object(path, "a model config")
    assert str(error.value) == f"'{path}' holds {kind}, expected a JSON object (a model config)"


@pytest.mark.parametrize("damaged", ["model_index.json", "vae/config.json", "scheduler/scheduler_config.json",
                                     "unet/config.json"])
@pytest.mark.parametrize("content", ["[]", "null"])
def test_gen1_edit_names_an_index_or_config_of_the_wrong_type(model, tmp_path, clips_dir, capsys, damaged, content):
    (model / damaged).write_text(content)
    assert main(_edit(model, tmp_path, clips_dir)) == 2
    err = capsys.readouterr().err
    assert f"'{model / damaged}' holds {'null' if content == 'null' else 'a JSON list'}, expected a JSON object" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_from_pretrained_names_a_component_config_of_the_wrong_type(model):
    from gen1.pipeline import Gen1Pipeline

    (model / "vae" / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"vae/config.json' holds a JSON list, expected a JSON object"):
        Gen1Pipeline.from_pretrained(model)


def test_a_vae_missing_a_weight_is_one_line_naming_the_key(model, tmp_path, clips_dir, capsys):
    # diffusers left the key on the meta device after a warning: the pipeline loaded and the edit ended in a
    # traceback ("Cannot copy out of meta tensor"); gen1's own components were strict already
    from safetensors.torch import load_file, save_file

    from gen1.pipeline import Gen1Pipeline

    weights = model / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    del tensors["decoder.conv_norm_out.weight"]
    save_file(tensors, weights)
    with pytest.raises(ValueError, match=r"the weights of 'vae' lack key 'decoder.conv_norm_out.weight'"):
        Gen1Pipeline.from_pretrained(model)
    assert main(_edit(model, tmp_path, clips_dir)) == 2  # 2: refused in one line (a traceback exits 1)
    err = capsys.readouterr().err
    assert "lack key 'decoder.conv_norm_out.weight'" in err.strip().splitlines()[-1]
    assert "TRAIN this model" not in err  # diffusers' advice for the same key is not printed before it
    with pytest.raises(ValueError, match="is a file: give the pipeline's folder"):
        Gen1Pipeline.from_pretrained(weights)


@pytest.mark.parametrize("entry", [["os", "system"], ["builtins", "eval"], ["gen1.cli", "VideoUNet"],
                                   ["gen1.unet", "ContentEncoder"], ["evil_module", "VideoUNet"],
                                   ["diffusers", "__class__"], ["diffusers"], "diffusers", None])
def test_a_component_outside_the_allow_list_is_refused(model, entry):
    from gen1.pipeline import Gen1Pipeline

    _set_entry(model, "unet", entry)
    with pytest.raises(ValueError) as error:
        Gen1Pipeline.from_pretrained(model)
    assert f"'{model / 'model_index.json'}': component 'unet' = {json.dumps(entry)}" in str(error.value)
    assert "\n" not in str(error.value) and "evil_module" not in sys.modules


def test_gen1_main_named_as_a_component_is_refused_without_importing_it(model):
    """In a fresh interpreter, so that "not imported" is true of the process that loads the folder (importing
    gen1.__main__ runs the gen1 command)."""
    _set_entry(model, "unet", ["gen1.__main__", "X"])
    code = (f"import sys\nfrom gen1.pipeline import Gen1Pipeline\n"
            f"try:\n    Gen1Pipeline.from_pretrained({str(model)!r})\n"
            "except ValueError as e:\n    print(e)\n"
            "print('imported:', 'gen1.__main__' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "imported: False", result.stdout
    assert len(lines) == 2 and "component 'unet' = [\"gen1.__main__\", \"X\"] names a module gen1 does not load " \
        "components from" in lines[0]


def test_the_allow_list_admits_what_gen1_saves(model):
    from gen1.model_folders import check_pipeline_folder

    assert check_pipeline_folder(model) == ["gen1.content", "gen1.depth.base", "gen1.unet"]
    _set_entry(model, "unet", ["gen1", "VideoUNet"])  # the package that exports the class
    assert check_pipeline_folder(model) == ["gen1", "gen1.content", "gen1.depth.base"]
    _set_entry(model, "safety_checker", ["stable_diffusion", "StableDiffusionSafetyChecker"])  # diffusers' own
    _set_entry(model, "unet", ["gen1.unet", "VideoUNet"])
    assert check_pipeline_folder(model) == ["gen1.content", "gen1.depth.base", "gen1.unet"]


def test_gen1_edit_refuses_a_foreign_module_in_one_line(model, tmp_path, clips_dir, capsys):
    _set_entry(model, "depth_estimator", ["gen1.__main__", "DepthEstimator"])
    assert main(_edit(model, tmp_path, clips_dir)) == 2
    err = capsys.readouterr().err
    assert "component 'depth_estimator' = [\"gen1.__main__\", \"DepthEstimator\"] names a module gen1 does not " \
           "load components from" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


def test_a_hub_pipeline_with_a_foreign_module_is_refused_before_its_components_are_fetched(model, tmp_path,
                                                                                         monkeypatch):
    from gen1.hub import resolve_pipeline
    from tiny_hub import cache_repo, offline_cache

    _set_entry(model, "unet", ["gen1.__main__", "VideoUNet"])
    cache = offline_cache(monkeypatch, tmp_path / "hf")
    cache_repo(cache, "someone/evil", {"model_index.json": model / "model_index.json"})  # components never cached
    with pytest.raises(ValueError, match=r"--model 'someone/evil': '.*model_index.json': component 'unet' = "
                                         r"\[\"gen1.__main__\", \"VideoUNet\"\] names a module"):
        resolve_pipeline("someone/evil", flag="--model")
