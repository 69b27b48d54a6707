"""gen1 preprocess, QA pass on its output folder: a rerun with other inputs or encoders, an --out that is an input,
a model or another tool's folder, a run that wrote no clip, and a damaged shard met by gen1 train are all refused
in one line naming what is wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from training_helpers import make_encoder, make_media, make_sd_dir

from gen1.training.preprocess import PreprocessSettings, check_out, list_inputs, model_paths, preprocess
from gen1.training.shards import ShardDataset

SETTINGS = dict(clip_length=4, stride=1, size=32, shard_size=2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("preqa")
    sd = make_sd_dir(root / "sd")
    first = make_media(root / "first", videos=2, images=2)
    other = make_media(root / "other", videos=1, images=1)
    out = root / "shards"
    preprocess(list_inputs(first), out, make_encoder(sd), PreprocessSettings(**SETTINGS), models=model_paths(sd, None, None))
    return root, sd, first, other, out


def _copy(out, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


def test_a_rerun_with_other_inputs_is_refused_naming_the_shard(setup, tmp_path):
    root, sd, first, other, out = setup
    copy = _copy(out, tmp_path)
    with pytest.raises(ValueError, match=r"holds shard-00000.safetensors, made from other inputs .*image0.png.* use a "
                                         r"new --out"):
        preprocess(list_inputs(other), copy, make_encoder(sd), PreprocessSettings(**SETTINGS))
    # fewer inputs: the old shards past this run's last one would be indexed as its own
    (root / "fewer").mkdir(exist_ok=True)
    shutil.copy(first / "image0.png", root / "fewer")
    shutil.copy(first / "image1.png", root / "fewer")
    items = [i for i in list_inputs(first) if "image" in i.path]
    with pytest.raises(ValueError, match=r"holds shard-00001.safetensors, made from other inputs"):
        preprocess(items, copy, make_encoder(sd), PreprocessSettings(**SETTINGS))
    # the same inputs again: resumed, nothing rewritten
    again = preprocess(list_inputs(first), copy, make_encoder(sd), PreprocessSettings(**SETTINGS))
    assert again["written"] == 0 and again["skipped"] == 2
    # the same inputs at another shard size regroup them: the setting is named, not "other inputs"
    with pytest.raises(ValueError, match=r"was preprocessed with shard_size=2, now shard_size=4"):
        preprocess(list_inputs(first), copy, make_encoder(sd), PreprocessSettings(**dict(SETTINGS, shard_size=4)))


def test_a_rerun_with_another_model_is_refused(setup, tmp_path):
    root, sd, first, other, out = setup
    copy = _copy(out, tmp_path)
    assert json.loads((copy / "preprocess.json").read_text())["model"] == str(sd.resolve())
    with pytest.raises(ValueError, match=r"was preprocessed with model='.*sd', now model='.*elsewhere'"):
        preprocess(list_inputs(first), copy, make_encoder(sd), PreprocessSettings(**SETTINGS),
                   models=model_paths(str(tmp_path / "elsewhere"), None, None))


def test_an_out_folder_that_is_an_input_a_model_or_another_tools_is_refused(setup, tmp_path):
    root, sd, first, other, out = setup
    with pytest.raises(ValueError, match=r"--out '.*first' is the --input folder"):
        check_out(first, first, sd)
    with pytest.raises(ValueError, match=r"--out '.*shards' lies inside the --model folder"):
        check_out(sd / "shards", first, sd)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "index.json").write_text('{"pages": []}')
    with pytest.raises(ValueError, match=r"holds an index.json that is not a gen1 shard index"):
        preprocess(list_inputs(first), foreign, make_encoder(sd), PreprocessSettings(**SETTINGS))
    assert json.loads((foreign / "index.json").read_text()) == {"pages": []}
    garbled = _copy(out, tmp_path)
    (garbled / "preprocess.json").write_text("not json")
    with pytest.raises(ValueError, match=r"settings file '.*preprocess.json' is not readable JSON"):
        preprocess(list_inputs(first), garbled, make_encoder(sd), PreprocessSettings(**SETTINGS))


def test_the_cli_refuses_the_input_folder_as_out_before_loading_anything(setup, capsys):
    from gen1.cli import main

    root, sd, first, other, out = setup
    before = sorted(p.name for p in first.iterdir())
    code = main(["preprocess", "--input", str(first), "--out", str(first), "--model", str(sd)])
    assert code != 0 and "is the --input folder" in capsys.readouterr().err
    assert sorted(p.name for p in first.iterdir()) == before
    check_out(first / "shards", first, sd)  # a folder inside the input is a common layout: its shards are no input


def test_a_run_that_wrote_no_clip_fails_and_train_calls_the_set_empty(setup, tmp_path, monkeypatch, capsys):
    import gen1.training.preprocess as pre
    from gen1.cli import main

    root, sd, first, other, out = setup
    listing = tmp_path / "list.csv"
    listing.write_text("path\nmissing0.mp4\nmissing1.png\n")
    monkeypatch.setattr(pre, "load_clip_encoder", lambda *a, **k: make_encoder(sd))
    code = main(["preprocess", "--input", str(listing), "--out", str(tmp_path / "empty"), "--model", str(sd),
                 "--size", "32", "--clip-length", "4"])
    err = capsys.readouterr().err
    assert code != 0 and "holds no clips: all 2 input(s) failed" in err and "Traceback" not in err
    with pytest.raises(ValueError, match=r"shard directory '.*empty' is empty: it holds no clips"):
        ShardDataset(tmp_path / "empty")


def test_a_damaged_shard_is_named_with_the_rerun_that_repairs_it(setup, tmp_path):
    root, sd, first, other, out = setup
    copy = _copy(out, tmp_path)
    shard = copy / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:50])
    with pytest.raises(ValueError, match=r"shard '.*shard-00001.safetensors' is damaged .*rerun gen1 preprocess"):
        ShardDataset(copy)
    again = preprocess(list_inputs(first), copy, make_encoder(sd), PreprocessSettings(**SETTINGS))
    assert again["written"] == 1 and len(ShardDataset(copy)) == 6


def test_a_synth_folder_gives_its_rgb_clips_only(tmp_path, caplog):
    from training_helpers import moving_square

    from gen1.media import write_video

    for name in ("synth_00000", "synth_00000_depth", "synth_00000_edit", "walk_depth", "walk_edit", "interview",
                 "interview_edit"):
        write_video(tmp_path / f"{name}.mp4", moving_square(4, 16, seed=0), fps=8)
    for caption in ("synth_00000.txt", "synth_00000_edit.txt"):  # what gen1 synth writes beside each clip
        (tmp_path / caption).write_text("red objects\n")
    with caplog.at_level("WARNING"):
        names = [item.path.rsplit("/", 1)[1] for item in list_inputs(tmp_path)]
    # a _depth / _edit video without its clip beside it, or a user's own NAME_edit beside NAME (no synth captions,
    # no depth video), is an ordinary video
    assert names == ["interview.mp4", "interview_edit.mp4", "synth_00000.mp4", "walk_depth.mp4", "walk_edit.mp4"]
    assert "skipping 2 depth/edit videos of `gen1 synth`" in caplog.text
    listing = tmp_path / "list.csv"
    listing.write_text("path\nsynth_00000_depth.mp4\n")
    assert [item.path.rsplit("/", 1)[1] for item in list_inputs(listing)] == ["synth_00000_depth.mp4"]


def test_the_encoders_are_taken_by_hub_id_from_the_cache(setup, tmp_path, monkeypatch, capsys):
    # --content-model openai/clip-vit-large-patch14 was refused as "does not exist": preprocess read its encoder
    # options as local paths only, while every other model option goes through gen1.hub
    from tiny_hub import cache_repo, offline_cache
    from tiny_pipeline import tiny_depth_estimator
    from tiny_structure_content import TINY_DIM, save_tiny_clip_checkpoint

    from gen1.cli import main
    from gen1.training.preprocess import SETTINGS_NAME

    root, sd, first, other, out = setup
    cache = offline_cache(monkeypatch, tmp_path / "hf")
    clip = cache_repo(cache, "openai/clip-vit-large-patch14", {"": save_tiny_clip_checkpoint(tmp_path / "clip")})
    tiny_depth_estimator().save_pretrained(tmp_path / "depth")
    depth = cache_repo(cache, "someone/tiny-depth", {"": tmp_path / "depth"})
    shards = tmp_path / "shards"
    command = ["preprocess", "--input", str(first), "--out", str(shards), "--model", str(sd), "--size", "32",
               "--clip-length", "4", "--stride", "1", "--depth-model", "someone/tiny-depth",
               "--content-model", "openai/clip-vit-large-patch14"]
    assert main(command) == 0, capsys.readouterr().err
    recorded = json.loads((shards / SETTINGS_NAME).read_text())
    assert (recorded["content_model"], recorded["depth_model"]) == (str(clip.resolve()), str(depth.resolve()))
    assert ShardDataset(shards)[0]["content"].shape[-1] == TINY_DIM  # the cached CLIP's embeddings
    assert main(command) == 0  # a rerun resolves to the same encoders: accepted
    assert main([*command[:-1], "openai/clip-vit-base-patch32"]) == 2
    assert "hf download openai/clip-vit-base-patch32 config.json model.safetensors preprocessor_config.json" in \
        capsys.readouterr().err


def test_the_model_is_taken_by_hub_id_from_the_cache_with_its_own_encoders(setup, tmp_path, monkeypatch, capsys):
    # --model was read as a local path only: a Stable Diffusion or gen1 pipeline by Hub id was "not found"
    from tiny_hub import cache_repo, offline_cache
    from tiny_pipeline import tiny_content_encoder, tiny_depth_estimator

    from gen1.cli import main
    from gen1.training.preprocess import SETTINGS_NAME

    root, sd, first, other, out = setup
    cache = offline_cache(monkeypatch, tmp_path / "hf")
    pipeline = tmp_path / "pipeline"
    shutil.copytree(sd / "vae", pipeline / "vae")
    tiny_depth_estimator().save_pretrained(pipeline / "depth_estimator")
    tiny_content_encoder().save_pretrained(pipeline / "content_encoder")
    snapshot = cache_repo(cache, "someone/tiny-gen1", {"": pipeline})
    shards = tmp_path / "shards"
    command = ["preprocess", "--input", str(first), "--out", str(shards), "--model", "someone/tiny-gen1",
               "--size", "32", "--clip-length", "4", "--stride", "1"]
    assert main(command) == 0, capsys.readouterr().err
    recorded = json.loads((shards / SETTINGS_NAME).read_text())
    assert recorded["model"] == str(snapshot.resolve())
    assert recorded["depth_model"] == str((snapshot / "depth_estimator").resolve())  # the pipeline's own encoders
    assert recorded["content_model"] == str((snapshot / "content_encoder").resolve())
    assert main([*command[:6], "someone/not-cached", *command[7:]]) == 2
    assert ("hf download someone/not-cached vae/config.json vae/diffusion_pytorch_model.safetensors"
            in capsys.readouterr().err)
    assert main([*command[:6], "./no-such-folder", *command[7:]]) == 2
    assert "--model path not found: './no-such-folder'" in capsys.readouterr().err
    # Ray's encoder actors are given the names as typed and resolve them in their own cache (another node's)
    from gen1.training.preprocess import load_clip_encoder

    encoder = load_clip_encoder("someone/tiny-gen1", None, None, "cpu")
    assert encoder.vae is not None and encoder.depth is not None and encoder.content is not None
