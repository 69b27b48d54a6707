"""``gen1 preprocess`` under a real two-process launch (two torchrun launchers on this machine, as two nodes start
it) writes the shards and index one process writes (issue 37).

The one-process reference is ``gen1 preprocess`` run in this process (with ``ACCELERATE_USE_CPU=true``, as the
launched processes run, and one thread, as the suite runs): a one-node torchrun of it wrote the same files and
cost a launcher and a fresh interpreter (half of this test's time)."""

from __future__ import annotations

from distributed_helpers import torchrun_nodes
from tiny_pipeline import tiny_content_encoder, tiny_depth_estimator
from training_helpers import assert_same_shards, make_media, make_sd_dir


def test_two_launched_processes_write_the_shards_of_one(tmp_path, monkeypatch):
    from gen1.cli import main

    sd = make_sd_dir(tmp_path / "sd")
    media = make_media(tmp_path / "media", videos=3, images=2, frames=8, size=32, corrupt=True)
    tiny_depth_estimator().save_pretrained(tmp_path / "depth")
    tiny_content_encoder().save_pretrained(tmp_path / "content")
    common = ["preprocess", "--input", str(media), "--model", str(sd), "--depth-model", str(tmp_path / "depth"),
              "--content-model", str(tmp_path / "content"), "--clip-length", "4", "--stride", "1", "--size", "32",
              "--shard-size", "2"]
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    assert main([*common, "--out", str(tmp_path / "shards1")]) == 0
    (tmp_path / "logs2").mkdir()
    torchrun_nodes(2, [*common, "--out", str(tmp_path / "shards2")], tmp_path / "logs2")
    assert len(list((tmp_path / "shards2").glob("shard-*.safetensors"))) == 3  # 6 inputs (one corrupt), 2 a shard
    assert_same_shards(tmp_path / "shards1", tmp_path / "shards2")
