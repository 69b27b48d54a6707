"""Recipe tests: the building blocks of the demo model's training recipe (scripts/demo/demo_recipe) and the
scripts that drive them (CPU, a few seconds each)."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.recipe

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts" / "demo"


def test_caption_tokenizer_makes_every_vocabulary_word_one_token():
    from demo_recipe.tokenizer import build_caption_tokenizer
    from gen1.synthetic import CAPTION_VOCABULARY, sample_style

    tok = build_caption_tokenizer(CAPTION_VOCABULARY, 32)
    for word in CAPTION_VOCABULARY:
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    caption = sample_style(3).caption
    ids = tok(caption).input_ids
    # start + one token per word + the comma + end
    assert len(ids) == len(caption.replace(",", " ,").split()) + 2
    assert tok.decode(ids, skip_special_tokens=True).replace(" ,", ",") == caption
    # text outside the vocabulary still tokenizes (byte fallback)
    assert len(tok("zebra", add_special_tokens=False).input_ids) > 1


def test_component_loop_resume_equals_uninterrupted_run(tmp_path):
    from demo_recipe.loop import run_loop

    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        return model, torch.optim.AdamW(model.parameters(), lr=0.1)

    data = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))

    def loss_of(model):
        return lambda step: ((model(data[step % 8:step % 8 + 2]) - 1).square().mean(), {})

    full, opt = make()
    state = run_loop(tmp_path / "full", full, opt, loss_of(full), max_steps=6, checkpoint_every=3)
    assert state["done"] and [row[0] for row in state["history"]] == list(range(1, 7))

    first, opt = make()
    run_loop(tmp_path / "split", first, opt, loss_of(first), max_steps=3, checkpoint_every=3)
    resumed, opt = make()  # a fresh process: weights and optimizer come from the checkpoint
    state = run_loop(tmp_path / "split", resumed, opt, loss_of(resumed), max_steps=6, checkpoint_every=3)
    assert len(state["history"]) == 6
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loop_checkpoint_rejects_other_shapes(tmp_path):
    from demo_recipe.loop import run_loop

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters())
    run_loop(tmp_path, model, opt, lambda s: (model(torch.ones(1, 3)).sum(), {}), max_steps=1)
    other = torch.nn.Linear(4, 1)
    with pytest.raises(ValueError, match="weight"):
        run_loop(tmp_path, other, torch.optim.AdamW(other.parameters()), lambda s: (other(torch.ones(1, 4)).sum(), {}),
                 max_steps=2)


def test_demo_shards_hold_exact_or_estimated_depth_and_refuse_to_mix(bundled_pipe, tmp_path):
    from demo_recipe.data import render_clip
    from demo_recipe.shards import build_shards
    from gen1.conditioning import depth_to_latent_grid
    from gen1.training.shards import ShardDataset

    vae, content, estimator = bundled_pipe.vae, bundled_pipe.content_encoder, bundled_pipe.depth_estimator
    exact = build_shards(tmp_path / "exact", vae, content, videos=1, images=2, frames=2, shard_size=2)
    est = build_shards(tmp_path / "est", vae, content, videos=1, images=2, frames=2, shard_size=2,
                       depth_estimator=estimator)
    assert (exact["depth"], est["depth"]) == ("exact (renderer)", "estimated (depth_estimator)")
    assert exact["num_clips"] == est["num_clips"] == 3 and len(est["shards"]) == 2
    exact_data, est_data = ShardDataset(tmp_path / "exact"), ShardDataset(tmp_path / "est")
    assert exact_data.is_image == est_data.is_image == [False, True, True]
    # the video clip (seed 0): same latents and content, depth is the estimator's map on the latent grid
    rgb, _, _ = render_clip(0, 0, 2)
    want = depth_to_latent_grid(estimator.estimate(rgb), (16, 16)).permute(1, 0, 2, 3)
    torch.testing.assert_close(est_data[0]["depth"], want.half().float())
    torch.testing.assert_close(est_data[0]["latents"], exact_data[0]["latents"])
    assert (est_data[0]["depth"] - exact_data[0]["depth"]).abs().mean() > 0.01
    with pytest.raises(ValueError, match="depth is 'exact .renderer.'; refusing to add shards whose depth is 'est"):
        build_shards(tmp_path / "exact", vae, content, videos=1, images=2, frames=2, shard_size=2,
                     depth_estimator=estimator)
    with pytest.raises(ValueError, match="content is \"the clip's own frames\"; refusing"):
        build_shards(tmp_path / "exact", vae, content, videos=1, images=2, frames=2, shard_size=2,
                     reference_content=True)
    (tmp_path / "exact" / "index.json").unlink()  # an interrupted build has no index yet
    with pytest.raises(ValueError, match="refusing to add shards whose depth is 'est"):
        build_shards(tmp_path / "exact", vae, content, videos=1, images=2, frames=2, shard_size=2,
                     depth_estimator=estimator)


def test_demo_shards_reference_content_comes_from_another_scene_in_the_same_style(bundled_pipe, tmp_path):
    from demo_recipe.data import render_clip
    from demo_recipe.shards import build_shards, reference_scene_seed
    from gen1.training.shards import ShardDataset

    vae, content = bundled_pipe.vae, bundled_pipe.content_encoder
    own = build_shards(tmp_path / "own", vae, content, videos=1, images=1, frames=2)
    ref = build_shards(tmp_path / "ref", vae, content, videos=1, images=1, frames=2, reference_content=True)
    assert ref["content"] == "another scene, same style" and own["content"] == "the clip's own frames"
    own_data, ref_data = ShardDataset(tmp_path / "own"), ShardDataset(tmp_path / "ref")
    torch.testing.assert_close(ref_data[1]["latents"], own_data[1]["latents"])  # the clip itself is unchanged
    torch.testing.assert_close(ref_data[1]["depth"], own_data[1]["depth"])
    assert reference_scene_seed(1) != 1
    reference, _, caption = render_clip(reference_scene_seed(1), 1, 1)
    assert caption == render_clip(1, 1, 1)[2]  # same style
    torch.testing.assert_close(ref_data[1]["content"], content.encode_image(reference).half().float())
    assert not torch.allclose(ref_data[1]["content"], own_data[1]["content"])


def test_assemble_script_rebuilds_the_bundled_model_from_component_folders(tmp_path, monkeypatch, capsys):
    """scripts/demo/assemble.py with every component given as a folder (here: the bundled model's own) writes an
    fp16 pipeline with the same weights (fp16 -> fp32 -> fp16 is exact)."""
    from safetensors.torch import load_file

    from gen1.demo import bundled_model_dir

    model, out = bundled_model_dir(), tmp_path / "model"
    monkeypatch.setattr(sys, "argv", ["assemble.py", "--runs", str(tmp_path / "no-runs"), "--out", str(out),
                                      "--vae", str(model / "vae"), "--content", str(model / "content_encoder"),
                                      "--depth", str(model / "depth_estimator"), "--unet", str(model / "unet")])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPTS / "assemble.py"), run_name="__main__")
    assert done.value.code == 0 and "total" in capsys.readouterr().out
    for sub in ("vae", "unet", "content_encoder", "depth_estimator"):
        (want,) = (model / sub).glob("*.safetensors")
        got = load_file(str(out / sub / want.name))
        for key, value in load_file(str(want)).items():
            assert got[key].dtype == value.dtype and torch.equal(got[key], value), (sub, key)


def test_depth_usage_probe_shows_the_bundled_model_uses_depth(bundled_pipe):
    """The probe (demo_recipe.diagnostics) on 16 held-out images at high noise: the bundled model's loss is lowest
    with the true depth and higher when the depth is obscured to t_s = 7 or belongs to another image."""
    from diffusers import DDPMScheduler

    from demo_recipe.diagnostics import CONDITIONS, format_usage, probe_images, structure_usage

    images = probe_images(bundled_pipe.vae, bundled_pipe.content_encoder, num_images=16)
    assert images["latents"].shape == (16, 4, 1, 16, 16) and images["depth"].shape == (16, 1, 1, 16, 16)
    scheduler = DDPMScheduler.from_config(bundled_pipe.scheduler.config)
    result = structure_usage(bundled_pipe.unet, scheduler, images, timesteps=(850,))
    row = result[850]
    assert set(row) == set(CONDITIONS)
    assert row["true"] < row["ts=7"] and row["true"] < row["shuffled"], row
    table_row = [line for line in format_usage(result).splitlines() if line.startswith("| 850 |")][0]
    assert table_row.endswith(f"| {row['ts=7'] / row['true']:.3f} |")
    with pytest.raises(ValueError, match="timestep 1000 is outside the scheduler's 0..999"):
        structure_usage(bundled_pipe.unet, scheduler, images, timesteps=(1000,))
    # a model with inpainting input is probed with nothing known: its channels added at zero, the same losses
    widened = structure_usage(bundled_pipe.unet.with_inpainting_input(), scheduler, images, timesteps=(850,))[850]
    assert widened == pytest.approx(row, rel=1e-4)
    with pytest.raises(ValueError, match="at least 2 images"):
        probe_images(bundled_pipe.vae, bundled_pipe.content_encoder, num_images=1)


def test_probe_images_take_estimated_depth_and_reference_content_like_the_shards(bundled_pipe):
    from demo_recipe.data import render_clip
    from demo_recipe.diagnostics import PROBE_SEED_OFFSET, REFERENCE_SEED_OFFSET, probe_images
    from gen1.conditioning import depth_to_latent_grid
    from gen1.demo.world import HELD_OUT_START

    vae, content, estimator = bundled_pipe.vae, bundled_pipe.content_encoder, bundled_pipe.depth_estimator
    plain = probe_images(vae, content, num_images=2)
    probed = probe_images(vae, content, num_images=2, depth_estimator=estimator, reference_content=True)
    torch.testing.assert_close(probed["latents"], plain["latents"])
    seed = HELD_OUT_START + PROBE_SEED_OFFSET + 1
    rgb, _, caption = render_clip(seed, seed, 1)
    want_depth = depth_to_latent_grid(estimator.estimate(rgb), (16, 16)).permute(1, 0, 2, 3)
    torch.testing.assert_close(probed["depth"][1], want_depth)
    reference, _, ref_caption = render_clip(HELD_OUT_START + REFERENCE_SEED_OFFSET + 1, seed, 1)
    assert ref_caption == caption  # same style, another scene
    torch.testing.assert_close(probed["content"][1], content.encode_image(reference)[0])
    assert not torch.allclose(probed["content"], plain["content"])


def test_error_decomposition_separates_palette_from_layout_and_texture():
    from demo_recipe.diagnostics import error_decomposition

    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 3, 32, 32, generator=gen) * 0.5 + 0.25
    same = error_decomposition(truth, truth)
    assert same["palette_mse"] == 0 and same["psnr"] == same["psnr_blurred"] >= 99
    shifted = error_decomposition(truth + 0.1, truth)  # palette wrong, layout and texture right
    assert shifted["palette_mse"] == pytest.approx(0.01, rel=1e-4)
    assert shifted["psnr"] == pytest.approx(20.0, abs=0.01) and shifted["psnr_palette_corrected"] >= 99
    noisy = error_decomposition(truth + 0.1 * torch.randn(truth.shape, generator=gen), truth)  # texture only
    assert noisy["psnr_blurred"] > noisy["psnr"] + 10 and noisy["palette_mse"] < 1e-4
    with pytest.raises(ValueError, match="must both be .F, 3, H, W."):
        error_decomposition(truth, truth[:1])


class _LosslessVAE(torch.nn.Module):
    """encode/decode as the identity: the ideal scores' VAE path then changes nothing."""

    config = type("Config", (), {"scaling_factor": 1.0, "shift_factor": 0.0})()

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def encode(self, images):
        return type("Encoded", (), {"latent_dist": type("Dist", (), {"mean": images})()})()

    def decode(self, latents):
        return type("Decoded", (), {"sample": latents})()


def test_ideal_scores_rank_predictions_with_and_without_the_layout():
    from demo_recipe.diagnostics import ideal_scores
    from gen1.demo.world import edit_case
    from gen1.eval.image_metrics import PSNR_CAP

    case = edit_case(0, frames=2, size=32)
    scores = ideal_scores(case, _LosslessVAE(), other_layouts=3)
    assert scores["vae_round_trip"] == PSNR_CAP  # a lossless VAE returns the ground truth itself
    # knowing the layout beats guessing it, and the least-squares guess beats a sharp wrong sample
    assert scores["mean_textures"] > scores["other_layout_mean"] > scores["other_layout"]
    assert scores["frame_mean_colour"] < PSNR_CAP
    assert ideal_scores(case, _LosslessVAE(), other_layouts=3) == scores  # deterministic
    with pytest.raises(ValueError, match="other_layouts must be >= 1"):
        ideal_scores(case, _LosslessVAE(), other_layouts=0)


def test_prepare_json_output_creates_the_folder_and_refuses_a_directory(tmp_path):
    from demo_recipe.cli import prepare_json_output

    assert prepare_json_output(None) is None
    assert prepare_json_output(tmp_path / "runs" / "demo" / "x.json") == tmp_path / "runs" / "demo" / "x.json"
    assert (tmp_path / "runs" / "demo").is_dir()
    with pytest.raises(ValueError, match="is a directory"):
        prepare_json_output(tmp_path / "runs")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot create the folder"):
        prepare_json_output(tmp_path / "file" / "x.json")


def test_evaluate_script_writes_what_it_prints_into_a_new_folder(tmp_path, monkeypatch, capsys):
    """scripts/demo/evaluate.py, run as a user runs it (its own process): --json into a folder that does not
    exist yet is created before the evaluation, and the printed table and checks are those of the saved result."""
    from gen1.eval.edit_benchmark import format_table, thresholds

    out = tmp_path / "runs" / "demo" / "eval.json"
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # gen1 of this checkout
    done = subprocess.run([sys.executable, str(SCRIPTS / "evaluate.py"), "--edits", "1", "--steps", "1", "--frames",
                           "2", "--threads", "1", "--json", str(out)], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=python_path), timeout=600)
    assert done.returncode == 0, done.stderr
    saved = json.loads(out.read_text())
    checks = saved.pop("checks")
    table = format_table(saved)
    assert done.stdout.startswith(table + "\n")
    assert json.loads(done.stdout[len(table):]) == checks == thresholds(saved)
    assert saved["num_edits"] == 1 and set(saved["means"]) == set(saved["runs"])
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "--first-edit", "-1"])
    with pytest.raises(SystemExit) as refused:
        runpy.run_path(str(SCRIPTS / "evaluate.py"), run_name="__main__")
    assert refused.value.code == 2 and "--first-edit must be >= 0" in capsys.readouterr().err
