"""``gen1 preprocess --engine ray`` writes the classic engine's shards and index, survives a dying encoder actor
and an interrupted driver, and a rerun writes only what is missing.

One local Ray (2 CPUs, a 150 MB object store) serves the module. Shards are compared tensor by tensor with
``torch.equal`` and their metadata and the index as JSON.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from ray_helpers import dying_encoder, tiny_encoder  # noqa: E402
from training_helpers import assert_same_shards, make_encoder, make_media, make_sd_dir  # noqa: E402

from gen1.training.preprocess import PreprocessSettings, list_inputs, preprocess  # noqa: E402
from gen1.training.ray_preprocess import RaySettings, preprocess_ray  # noqa: E402
from gen1.training.shards import INDEX_NAME  # noqa: E402

SETTINGS = PreprocessSettings(clip_length=4, stride=1, size=32, shard_size=2, max_clips_per_video=2)


@pytest.fixture(scope="module")
def local_ray():
    tests = str(Path(__file__).resolve().parent)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (tests, *sys.path) if p)  # workers import gen1, helpers
    ray.init(num_cpus=2, object_store_memory=150 * 2**20, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def classic(tmp_path_factory):
    """The inputs (5 videos, 2 images, one corrupt file: 4 shards) and the classic engine's shards of them."""
    root = tmp_path_factory.mktemp("rayprep")
    sd = make_sd_dir(root / "sd")
    media = make_media(root / "media", videos=5, images=2, frames=12, size=32, corrupt=True)
    inputs = list_inputs(media)
    # one thread, as Ray runs each encoder actor (num_cpus=1): with another thread count the float sums run in
    # another order and fp16 latents can differ in their last bit, whatever the caller's OMP_NUM_THREADS
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        preprocess(inputs, root / "classic", make_encoder(sd), SETTINGS)
    finally:
        torch.set_num_threads(threads)
    return sd, inputs, root / "classic"


def test_ray_writes_the_classic_shards_and_index_including_a_corrupt_input_while_an_encoder_actor_dies(
        local_ray, classic, tmp_path):
    """A first run whose encoder actor dies on its first shard (and is restarted) writes the classic engine's
    shards, index and summary; a rerun writes nothing. (One run for both: each run here starts a fresh actor,
    which imports torch and diffusers, the most of a run's time; a run where no actor dies takes the same path.)"""
    sd, inputs, expected = classic
    out = tmp_path / "ray"
    marker = tmp_path / "died"
    summary = preprocess_ray(inputs, out, functools.partial(dying_encoder, str(sd), str(marker)), SETTINGS,
                             RaySettings(encoders=1))
    assert marker.is_file()  # an actor did die on its first shard, and was restarted
    assert_same_shards(expected, out)
    assert summary["written"] == 4 and [Path(p).name for p, _ in summary["failed"]] == ["broken.mp4"]
    assert summary["index"]["num_failed"] == 1

    again = preprocess_ray(inputs, out, functools.partial(tiny_encoder, str(sd)), SETTINGS)
    assert again["written"] == 0 and again["skipped"] == 4  # a rerun writes only what is missing: nothing
    assert_same_shards(expected, out)


def test_an_interrupted_driver_leaves_no_index_and_a_rerun_writes_only_the_missing_shards(local_ray, classic,
                                                                                          tmp_path):
    sd, inputs, expected = classic

    class Interrupted(Exception):
        pass

    done = []

    def stop_after_two(k: int) -> None:
        done.append(k)
        if len(done) == 2:
            raise Interrupted

    out = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        preprocess_ray(inputs, out, functools.partial(tiny_encoder, str(sd)), SETTINGS, on_shard=stop_after_two)
    assert not (out / INDEX_NAME).exists()
    assert len(list(out.glob("shard-*.safetensors"))) >= 2
    rerun = preprocess_ray(inputs, out, functools.partial(tiny_encoder, str(sd)), SETTINGS)
    assert rerun["skipped"] >= 2 and rerun["written"] == 4 - rerun["skipped"]  # only the missing ones
    assert_same_shards(expected, out)


def test_only_the_frames_of_the_kept_clips_are_decoded(classic, monkeypatch):

    sd, inputs, _ = classic
    import gen1.training.preprocess as preprocess_module

    real, asked = preprocess_module.read_frames_or_images, []

    def recording(path, **kwargs):
        frames = real(path, **kwargs)
        asked.append((Path(path).name, kwargs.get("max_frames"), len(frames)))
        return frames

    monkeypatch.setattr(preprocess_module, "read_frames_or_images", recording)  # where load_clips looks it up
    from gen1.training.preprocess import load_clips

    video = next(item for item in inputs if item.path.endswith("video0.mp4"))
    clips = load_clips(video, SETTINGS)
    assert [start for start, _ in clips] == [0, 4]
    assert asked == [("video0.mp4", 8, 8)]  # 12 frames in the file, 2 clips of 4 kept: 8 decoded


def test_ray_options_are_checked_in_one_line(classic, capsys):
    from gen1.cli import main

    sd, inputs, _ = classic
    media = str(Path(inputs[0].path).parent)
    common = ["preprocess", "--input", media, "--out", str(sd.parent / "cli"), "--model", str(sd)]
    assert main([*common, "--engine", "ray", "--encoders", "0"]) == 2
    assert "encoders must be a positive integer, got 0" in capsys.readouterr().err
    assert main([*common, "--address", "ray://head:10001"]) == 2
    assert "--address and --encoders apply to --engine ray only" in capsys.readouterr().err
