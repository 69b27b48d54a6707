"""gen1 preprocess: media -> shards (latents, depth, CLIP embeddings), resumable, corrupt inputs skipped."""

from __future__ import annotations

import json

import pytest
import torch

from training_helpers import CONTENT_DIM, make_encoder, make_media, make_sd_dir

from gen1.training.preprocess import PreprocessSettings, list_inputs, preprocess
from gen1.training.shards import ClipRecord, ShardDataset, read_index, write_index, write_shard

SETTINGS = dict(clip_length=4, stride=1, size=32, shard_size=2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    sd = make_sd_dir(root / "sd")
    media = make_media(root / "media", corrupt=True)
    return root, sd, media, make_encoder(sd)


def test_preprocess_writes_checked_shards_and_skips_corrupt_input(setup, caplog):
    root, sd, media, encoder = setup
    inputs = list_inputs(media)
    assert [p.path.split("/")[-1] for p in inputs] == ["broken.mp4", "image0.png", "image1.png", "video0.mp4",
                                                        "video1.mp4"]
    out = root / "shards"
    summary = preprocess(inputs, out, encoder, PreprocessSettings(**SETTINGS))
    index = summary["index"]
    # 2 videos x (8 frames // 4) clips + 2 images; the corrupt file is counted, not fatal
    assert index["num_clips"] == 6 and index["num_failed"] == 1
    assert len(summary["failed"]) == 1 and summary["failed"][0][0].endswith("broken.mp4")
    assert [s["file"] for s in index["shards"]] == ["shard-00000.safetensors", "shard-00001.safetensors",
                                                     "shard-00002.safetensors"]
    assert index["scaling_factor"] == encoder.scaling_factor and index["content_dim"] == CONTENT_DIM
    data = ShardDataset(out)
    assert sum(data.is_image) == 2 and len(data) == 6
    video = data[data.is_image.index(False)]
    image = data[data.is_image.index(True)]
    assert video["latents"].shape == (4, 4, 16, 16) and image["latents"].shape == (4, 1, 16, 16)
    assert video["depth"].shape == (1, 4, 16, 16) and 0 <= video["depth"].min() and video["depth"].max() <= 1
    assert video["content"].shape == (4, CONTENT_DIM)

    # resumable: a rerun skips every finished shard and leaves the files untouched
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    again = preprocess(inputs, out, encoder, PreprocessSettings(**SETTINGS))
    assert again["written"] == 0 and again["skipped"] == 3
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    assert again["index"]["num_failed"] == 1

    # changed settings on the same folder are refused, naming the setting
    with pytest.raises(ValueError, match="clip_length"):
        preprocess(inputs, out, encoder, PreprocessSettings(**dict(SETTINGS, clip_length=2)))


def test_ranks_split_shards_and_lists_with_captions(setup):
    root, sd, media, encoder = setup
    listing = root / "list.jsonl"
    listing.write_text("\n".join(json.dumps({"path": f"media/{n}", "caption": f"c{n}"})
                                 for n in ("video0.mp4", "image0.png", "image1.png")))
    inputs = list_inputs(listing)
    assert inputs[0].caption == "c video0.mp4".replace(" ", "")
    out = root / "ranked"
    settings = PreprocessSettings(**dict(SETTINGS, shard_size=1))
    second = preprocess(inputs, out, encoder, settings, rank=1, world_size=2)
    first = preprocess(inputs, out, encoder, settings, rank=0, world_size=2)
    assert second["written"] == 1 and first["written"] == 2  # shard k goes to rank k % 2
    assert first["index"]["num_clips"] == 4
    csv_list = root / "list.csv"
    csv_list.write_text("name,caption\nmedia/video0.mp4,x\n")
    with pytest.raises(ValueError, match="'path' column"):
        list_inputs(csv_list)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_inputs(root / "nowhere")


def test_shard_with_wrong_tensor_shape_is_named(tmp_path):
    clip = ClipRecord(torch.zeros(4, 4, 8, 8), torch.zeros(1, 4, 8, 8), torch.zeros(4, CONTENT_DIM), source="x")
    with pytest.raises(ValueError, match="depth must have shape"):
        write_shard(tmp_path / "bad.safetensors", [ClipRecord(clip.latents, torch.zeros(1, 3, 8, 8), clip.content, "x")])
    write_shard(tmp_path / "shard-00000.safetensors", [clip])
    # an index that claims 3 latent channels: every clip is checked against it when the dataset opens
    write_index(tmp_path, dict(clip_length=4, stride=1, size=16, latent_channels=3, content_dim=CONTENT_DIM,
                               scaling_factor=1.0))
    with pytest.raises(ValueError, match=r"shard-00000.safetensors.*'00000.latents' has shape \(4, 4, 8, 8\)"):
        ShardDataset(tmp_path)
    write_index(tmp_path, dict(clip_length=4, stride=1, size=16, latent_channels=4, content_dim=8,
                               scaling_factor=1.0))
    with pytest.raises(ValueError, match=r"'00000.content' has shape \(4, 16\), expected \(4, 8\)"):
        ShardDataset(tmp_path)
    assert read_index(tmp_path)["num_clips"] == 1


def test_preprocess_cli_reports_missing_model(tmp_path, capsys):
    from gen1.cli import main

    make_media(tmp_path / "media", videos=0, images=1)
    code = main(["preprocess", "--input", str(tmp_path / "media"), "--out", str(tmp_path / "s"),
                 "--model", str(tmp_path / "no-such-model")])
    assert code == 2 and "no-such-model" in capsys.readouterr().err


class _FailsOnSecondClip:
    """A ClipEncoder stand-in that encodes the first clip and raises on the second."""

    def __init__(self, encoder):
        self.encoder, self.calls = encoder, 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def __call__(self, frames):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("encoder failed on clip 2")
        return self.encoder(frames)


def test_an_input_failing_midway_leaves_none_of_its_clips(setup, tmp_path):
    root, sd, media, encoder = setup
    video = [item for item in list_inputs(media) if item.path.endswith("video0.mp4")]
    summary = preprocess(video, tmp_path / "shards", _FailsOnSecondClip(encoder), PreprocessSettings(**SETTINGS))
    assert summary["index"]["num_failed"] == 1 and summary["index"]["num_clips"] == 0


def test_one_latent_convention_with_a_shifted_vae(setup):
    """preprocess, the synthetic encoder, validation and the pipeline share gen1.conditioning's convention,
    including a VAE shift_factor (SD VAEs have none, so only a shifted VAE tells them apart)."""
    import copy

    from gen1.conditioning import decode_latents, encode_latents
    from gen1.training.batch import RenderedClips
    from gen1.training.synthetic import SyntheticEncoder

    root, sd, media, encoder = setup
    vae = copy.deepcopy(encoder.vae)
    vae.register_to_config(shift_factor=0.25, scaling_factor=0.5)
    frames = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean = vae.encode(frames * 2 - 1).latent_dist.mean
    expected = (mean - 0.25) * 0.5
    torch.testing.assert_close(encode_latents(vae, frames), expected)
    shifted = type(encoder)(vae, encoder.depth, encoder.content, device="cpu")
    z, _, _ = shifted((frames.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8"))
    z_ref = encode_latents(vae, torch.from_numpy((frames.permute(0, 2, 3, 1).numpy() * 255).round() / 255).permute(0, 3, 1, 2).float())
    torch.testing.assert_close(z, z_ref.permute(1, 0, 2, 3))
    rendered = RenderedClips(frames[None], torch.zeros(1, 2, 1, 32, 32))  # one 2-frame clip
    from_rendered = SyntheticEncoder(vae, encoder.content)(rendered).latents[0]
    torch.testing.assert_close(from_rendered, expected.permute(1, 0, 2, 3))
    with torch.no_grad():
        pixels = vae.decode(mean).sample
    torch.testing.assert_close(decode_latents(vae, expected), (pixels / 2 + 0.5).clamp(0, 1))
