"""gen1 train, QA pass: settings checked when the config loads (naming the key), an earlier run's folder not
overwritten, FSDP refused where Accelerate would not run it, an images-only stage refused on video-only shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from training_helpers import base_overrides, make_encoder, make_media, make_sd_dir

from gen1.training.config import load_config
from gen1.training.preprocess import PreprocessSettings, list_inputs, preprocess
from gen1.training.trainer import train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainqa")
    sd = make_sd_dir(root / "sd")
    encoder = make_encoder(sd)
    settings = PreprocessSettings(clip_length=4, stride=1, size=32, shard_size=2)
    preprocess(list_inputs(make_media(root / "media", videos=2, images=2, frames=8, size=32)), root / "shards",
               encoder, settings)
    preprocess(list_inputs(make_media(root / "videos", videos=2, images=0, frames=8, size=32)), root / "vshards",
               encoder, settings)
    return root, sd, root / "shards"


def _config(data, out: Path, shards: Path | None = None, **extra):
    root, sd, default = data
    return load_config(None, base_overrides(sd, shards or default, out, extra))


SHORT = {"train.max_steps": 2, "train.checkpoint_every": 1, "data.batch_size": 1, "model.trainable": "all"}


def test_a_new_run_into_an_earlier_runs_folder_is_refused_and_resume_continues_it(data, tmp_path):
    out = tmp_path / "run"
    train(_config(data, out, **SHORT))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"holds an earlier run \(checkpoints/checkpoint-00000001, "
                                         r"checkpoints/checkpoint-00000002, export/\): continue it with "
                                         r"train.resume=latest, or start the new run in a new train.output_dir"):
        train(_config(data, out, **{**SHORT, "train.max_steps": 1}))
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    resumed = train(_config(data, out, **{**SHORT, "train.max_steps": 3, "train.resume": "latest"}))
    assert resumed.resumed_from.endswith("checkpoint-00000002") and resumed.step == 3


def test_the_cli_prints_the_refusal_in_one_line(data, tmp_path, capsys):
    from gen1.cli import main

    out = tmp_path / "run"
    (out / "export").mkdir(parents=True)
    (out / "export" / "training.json").write_text("{}")
    root, sd, shards = data
    code = main(["train", "stage2_temporal", *base_overrides(sd, shards, out, SHORT)])
    err = capsys.readouterr().err
    assert code != 0 and "holds an earlier run (export/)" in err and "Traceback" not in err


def test_an_override_where_the_config_goes_says_so(capsys):
    # `gen1 train model.base=...` said "config file not found: 'model.base=...'"
    from gen1.cli import main

    assert main(["train", "model.base=some/folder", "train.max_steps=2"]) == 2
    err = capsys.readouterr().err
    assert "'model.base=some/folder' is an override (KEY=VALUE); give a CONFIG first" in err and "stage2_temporal" in err


@pytest.mark.parametrize("value", ["no", "false", "'no'"])
def test_mixed_precision_no_reads_as_no_whichever_way_yaml_parses_it(data, tmp_path, value):
    assert _config(data, tmp_path, **{"train.mixed_precision": value}).train.mixed_precision == "no"


def test_mixed_precision_no_in_a_yaml_file(data, tmp_path):
    root, sd, shards = data
    file = tmp_path / "run.yaml"
    file.write_text(f"model:\n  base: {sd}\ndata:\n  shards: {shards}\ntrain:\n  mixed_precision: no\n"
                    f"  output_dir: {tmp_path / 'o'}\n")
    assert load_config(file).train.mixed_precision == "no"


@pytest.mark.parametrize("override, message", [
    ({"optim.beta1": 2}, r"optim.beta1 must be in \[0, 1\), got 2.0"),
    ({"optim.beta2": -0.1}, r"optim.beta2 must be in \[0, 1\), got -0.1"),
    ({"optim.weight_decay": -1}, r"optim.weight_decay must be >= 0, got -1.0"),
    ({"optim.warmup_steps": -5}, r"optim.warmup_steps must be >= 0, got -5"),
    ({"optim.eps": 0}, r"optim.eps must be positive, got 0.0"),
    ({"optim.max_grad_norm": -1}, r"optim.max_grad_norm must be >= 0, got -1.0"),
    ({"model.vae": "{tmp}/no-vae"}, r"model.vae '.*no-vae' does not exist"),
    ({"model.vae": "{tmp}"}, r"model.vae '.*' has no vae/config.json"),
    ({"model.content_encoder": "{tmp}/no-clip"}, r"model.content_encoder '.*no-clip' does not exist"),
])
def test_settings_are_checked_at_load_naming_the_key(data, tmp_path, override, message):
    override = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in override.items()}
    with pytest.raises(ValueError, match=message):
        _config(data, tmp_path / "o", **override)


def test_a_vae_folder_itself_is_a_model_vae(data, tmp_path):
    root, sd, shards = data
    assert _config(data, tmp_path / "o", **{"model.vae": str(sd / "vae")}).model.vae == str(sd / "vae")


def test_fsdp_where_accelerate_would_not_run_it_is_refused_before_training(data, tmp_path):
    with pytest.raises(ValueError, match=r"train.distributed is 'fsdp' but Accelerate runs this job as NO on cpu: "
                                         r"FSDP needs several GPU processes"):
        train(_config(data, tmp_path / "o", **{**SHORT, "train.distributed": "fsdp"}))
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_an_images_only_stage_on_video_only_shards_is_refused(data, tmp_path):
    root = data[0]
    with pytest.raises(ValueError, match=r"data.image_ratio is 1 \(images only\) but the data holds no images, only "
                                         r"4 video clips"):
        train(_config(data, tmp_path / "o", root / "vshards",
                      **{**SHORT, "model.trainable": "image", "data.image_ratio": 1.0}))


def test_an_export_without_a_vae_is_named_by_gen1_edit(tmp_path):
    from gen1.model_folders import not_a_pipeline_hint

    (tmp_path / "unet").mkdir()
    (tmp_path / "training.json").write_text("{}")
    assert "export without a VAE, so it is no pipeline: run the same `gen1 train` command again with " \
           "model.vae=PATH" in not_a_pipeline_hint(tmp_path)
    (tmp_path / "vae").mkdir()
    assert "did not write pipelines" in not_a_pipeline_hint(tmp_path)


def test_the_resume_hint_of_a_multi_process_run_keeps_its_global_batch(data, tmp_path):
    import argparse
    import shlex

    from gen1.commands.train import resume_hint

    root, sd, shards = data
    out = tmp_path / "run"
    overrides = base_overrides(sd, shards, out, {**SHORT, "data.batch_size": 2})
    args = argparse.Namespace(config="stage2_temporal", overrides=overrides)
    one, launcher = resume_hint(args, processes=4, global_batch=8).splitlines()
    assert launcher.startswith("or under the same launcher with 4 processes: gen1 train stage2_temporal")
    command = shlex.split(one.split("resume with: ", 1)[1])
    assert command[-2:] == ["data.batch_size=8", "train.resume=latest"] and "data.batch_size=2" not in command
    config = load_config(command[2], command[3:])
    assert config.data.batch_size * 1 == 8  # one process x 8: the checkpoint's global batch, which resumes
    assert resume_hint(args).count("\n") == 0 and "data.batch_size=2" in resume_hint(args)
    # FSDP's checkpoint is sharded: one process is refused, so only the launcher form is offered
    fsdp = resume_hint(args, processes=4, global_batch=8, distributed="fsdp")
    assert fsdp.count("\n") == 0 and fsdp.startswith("resume under the same launcher with 4 processes")
    assert "data.batch_size=8" not in fsdp


def test_architecture_settings_that_a_videounet_base_cannot_take_are_refused(data, tmp_path):
    from gen1.training.config import ModelConfig
    from gen1.training.model import load_video_unet
    from gen1.unet import VideoUNet

    root, sd, shards = data
    base = tmp_path / "video-unet"
    VideoUNet.from_image_unet(str(sd), subfolder="unet", max_frames=16, content_dim=16,
                              temporal_attention_head_dim=8).save_pretrained(str(base))
    same = ModelConfig(base=str(base), max_frames=16, temporal={"temporal_attention_head_dim": 8})
    assert load_video_unet(same, content_dim=16).max_frames == 16
    assert load_video_unet(ModelConfig(base=str(base)), content_dim=16).max_frames == 16  # defaults: the base's
    with pytest.raises(ValueError, match=r"is a VideoUNet with its own architecture, which these settings cannot "
                                         r"change: model.max_frames=8 \(the base has 16\), "
                                         r"model.temporal.temporal_attention_head_dim=16 \(the base has 8\)"):
        load_video_unet(ModelConfig(base=str(base), max_frames=8, temporal={"temporal_attention_head_dim": 16}),
                        content_dim=16)
    with pytest.raises(ValueError, match=r"model.structure_channels=2 \(the base has 1\)"):
        load_video_unet(ModelConfig(base=str(base), structure_channels=2), content_dim=16)


def test_a_key_given_twice_in_a_config_file_is_refused_naming_it(tmp_path):
    # PyYAML kept the last of two `lr:` lines without a word
    path = tmp_path / "twice.yaml"
    path.write_text("optim:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ValueError, match=r"not valid YAML \(line 3, column 3: the key 'lr' is given twice\)"):
        load_config(path)
