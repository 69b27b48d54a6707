"""Training configurations that would write into their inputs, name keys nothing reads, or ask for more than the
machine has are refused in one line before any work (issues 32, 38)."""

from __future__ import annotations

import os

import pytest

from gen1.training.config import config_from_dict
from gen1.training.preprocess import PreprocessSettings


def _config(tmp_path, **sections):
    data = {"model": {"base": str(tmp_path / "base")}, "data": {"shards": str(tmp_path / "shards")},
            "train": {"output_dir": str(tmp_path / "run")}}
    for dotted, value in sections.items():
        section, key = dotted.split("__")
        data.setdefault(section, {})[key] = value
    return config_from_dict(data)


@pytest.mark.parametrize("sections, message", [
    (dict(train__output_dir="{tmp}/shards"), "train.output_dir '{tmp}/shards' is data.shards"),
    (dict(train__output_dir="{tmp}/base/runs"), "train.output_dir '{tmp}/base/runs' is inside model.base"),
    (dict(train__output_dir="{tmp}"), "train.output_dir '{tmp}' holds data.shards"),
    (dict(model__temporal={"temporal_heads": 4}), "model.temporal: unknown key(s) temporal_heads"),
    (dict(data__num_workers=10_000), "data.num_workers must be an integer from 0 to"),
])
def test_a_config_is_refused_naming_the_field(tmp_path, sections, message):
    values = {key: value.format(tmp=tmp_path) if isinstance(value, str) else value for key, value in sections.items()}
    config = _config(tmp_path, **values)
    with pytest.raises(ValueError, match=message.format(tmp=tmp_path).replace("(", r"\(").replace(")", r"\)")):
        config.validate()


def test_an_unknown_stage_is_refused(tmp_path):
    config = config_from_dict({"stage": 9, "model": {"base": str(tmp_path)}, "data": {"shards": str(tmp_path / "s")},
                               "train": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(ValueError, match="stage must be one of 1, 2, 3, 4"):
        config.validate()


def test_a_sound_config_passes(tmp_path):
    _config(tmp_path, data__num_workers=min(2, os.cpu_count() or 1)).validate()


def test_preprocessing_at_a_size_no_frame_can_have_is_refused():
    with pytest.raises(ValueError, match="size must be a multiple of 8 up to 4096, got 100000"):
        PreprocessSettings(size=100_000).validate()


def test_a_batch_larger_than_the_data_set_is_refused_before_a_step(tmp_path):
    from training_helpers import base_overrides, make_encoder, make_media, make_sd_dir

    from gen1.training.config import load_config
    from gen1.training.preprocess import list_inputs, preprocess
    from gen1.training.trainer import train

    sd = make_sd_dir(tmp_path / "sd")
    media = make_media(tmp_path / "media", videos=1, images=2, frames=8, size=32)
    preprocess(list_inputs(media), tmp_path / "shards", make_encoder(sd),
               PreprocessSettings(clip_length=4, stride=4, size=32, shard_size=2))
    config = load_config(None, base_overrides(sd, tmp_path / "shards", tmp_path / "run",
                                              {"data.batch_size": 100_000, "train.max_steps": 1}))
    with pytest.raises(ValueError, match="data.batch_size 100000 x 1 process\\(es\\) is more than the 2 clips and "
                                         "images of the data set: use at most 2"):
        train(config)
    assert not (tmp_path / "run" / "checkpoints").exists()
