"""gen1 customize: a small LoRA adapter that loads, changes the output, and is removed exactly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tiny_models import tiny_unet
from training_helpers import CONTENT_DIM, TEMPORAL, make_encoder, make_media, make_sd_dir

from gen1.adapters import has_adapter, load_adapter, remove_adapter, save_adapter
from gen1.training.customize import CustomizeSettings, encode_images, train_adapter
from gen1.training.model import load_noise_scheduler
from gen1.unet import VideoUNet


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom")
    sd = make_sd_dir(root / "sd")
    media = make_media(root / "images", videos=0, images=3, size=32)
    data = encode_images(sorted(media.glob("*.png")), make_encoder(sd), 32)
    return root, sd, data


def _fresh():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # temporal layers and content_proj are randomly initialised
        return VideoUNet.from_image_unet(tiny_unet("sd1"), content_dim=CONTENT_DIM, **TEMPORAL).eval()


def _output(unet):
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(2, 5, 3, 8, 8, generator=g), torch.randn(2, 1, CONTENT_DIM, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([5, 500]), c, image_mode=torch.tensor([True, False])).sample


@pytest.mark.parametrize("full", [False, True])
def test_adapter_is_small_changes_output_and_removes_exactly(setup, full):
    root, sd, data = setup
    assert data["latents"].shape == (3, 4, 1, 16, 16) and data["content"].shape == (3, 1, CONTENT_DIM)
    trained = _fresh()
    settings = CustomizeSettings(steps=4, lr=1e-2, batch_size=2, full=full)
    losses = train_adapter(trained, data, load_noise_scheduler(str(sd)), settings, progress=False)
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    path = save_adapter(trained, root / f"adapter-{full}.safetensors")
    size = path.stat().st_size
    print(f"adapter ({'full' if full else 'LoRA r=4'}) size: {size} bytes")
    whole = sum(p.numel() * 4 for p in trained.parameters())
    if not full:
        assert size < 0.1 * whole  # the LoRA matrices only

    model = _fresh()
    before = _output(model)
    pipe = SimpleNamespace(unet=model)  # anything with .unet (a Gen1Pipeline) works
    load_adapter(pipe, path)
    assert has_adapter(model)
    after = _output(model)
    assert not torch.allclose(after, before)
    assert torch.allclose(after, _output(trained), atol=1e-6)  # the adapter reproduces the trained model
    remove_adapter(pipe)
    assert torch.equal(_output(model), before)
    assert not has_adapter(model)
    assert all(type(m).__module__.split(".")[0] != "peft" for m in model.modules())


def test_bad_adapters_are_named(setup, tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    root, sd, data = setup
    trained = _fresh()
    train_adapter(trained, data, load_noise_scheduler(str(sd)), CustomizeSettings(steps=1, lora_rank=2),
                  progress=False)
    good = save_adapter(trained, tmp_path / "good.safetensors")
    with safe_open(str(good), framework="pt") as handle:
        meta = handle.metadata()
    tensors = load_file(str(good))
    key = sorted(tensors)[0]
    tensors[key] = torch.zeros(7, 3)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    model = _fresh()
    before = _output(model)
    with pytest.raises(ValueError, match=f"'{key}' has shape \\(7, 3\\)"):
        load_adapter(model, tmp_path / "bad.safetensors")
    assert not has_adapter(model) and torch.equal(_output(model), before)  # left untouched
    with pytest.raises(FileNotFoundError, match="adapter file not found"):
        load_adapter(model, tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match="no gen1 adapter to remove"):
        remove_adapter(model)
    load_adapter(model, good)
    with pytest.raises(ValueError, match="already holds a gen1 adapter"):
        load_adapter(model, good)


def test_customize_cli_names_missing_model(tmp_path, capsys):
    from gen1.cli import main

    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "images" / "a.png")
    code = main(["customize", "--model", str(tmp_path / "nope"), "--images", str(tmp_path / "images"),
                 "--out", str(tmp_path / "a.safetensors")])
    assert code == 2 and "nope" in capsys.readouterr().err


def test_customize_checks_the_users_files_before_resolving_the_model(tmp_path, capsys, monkeypatch):
    import gen1.commands.customize as customize
    from gen1.cli import main

    monkeypatch.setattr(customize, "_check_model", lambda args: pytest.fail("resolved the model first"))
    code = main(["customize", "--model", "some-org/some-model", "--images", str(tmp_path / "typo"),
                 "--out", str(tmp_path / "a.safetensors")])
    assert code == 2 and "--images folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("settings, message", [
    (CustomizeSettings(steps=1, batch_size=1_000_000), "batch_size 1000000 is more than the 3 images: use at most 3"),
    (CustomizeSettings(steps=1, lora_rank=100_000), "lora_rank 100000 is larger than the narrowest adapted layer"),
    (CustomizeSettings(steps=3, lr=1e30), "the customisation diverged at step"),
])
def test_size_like_knobs_and_a_diverging_run_stop_before_anything_is_written(setup, settings, message):
    root, sd, data = setup
    with pytest.raises(ValueError, match=message):
        train_adapter(_fresh(), data, load_noise_scheduler(str(sd)), settings, progress=False)


def test_an_adapter_with_non_finite_weights_is_never_written(setup):
    root, sd, data = setup
    trained = _fresh()
    train_adapter(trained, data, load_noise_scheduler(str(sd)), CustomizeSettings(steps=1, lora_rank=2),
                  progress=False)
    with torch.no_grad():
        next(p for n, p in trained.named_parameters() if "lora_" in n).fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite weights"):
        save_adapter(trained, root / "nan.safetensors")
    assert not (root / "nan.safetensors").exists()


def _ctrl_c_after(step):
    """An ``on_step`` that sends this process Ctrl-C (SIGINT) right after step ``step``."""
    import os
    import signal

    def on_step(done, loss):
        if done == step:
            os.kill(os.getpid(), signal.SIGINT)

    return on_step


def test_ctrl_c_keeps_the_work_and_a_resumed_run_ends_where_an_uninterrupted_one_does(setup, tmp_path):
    # Ctrl-C during training discarded every step taken: no checkpoint, nothing written (gen1 train and
    # customize --imagic keep it)
    import signal

    from gen1.adapters import adapter_state_dict
    from gen1.training import checkpoint as ckpt
    from gen1.training.interrupt import TrainingInterrupted

    root, sd, data = setup
    settings = CustomizeSettings(steps=4, lr=1e-2, batch_size=2)
    straight = _fresh()
    straight_losses = train_adapter(straight, data, load_noise_scheduler(str(sd)), settings, progress=False)

    work = tmp_path / "a.safetensors.work"
    with pytest.raises(TrainingInterrupted) as stopped:
        train_adapter(_fresh(), data, load_noise_scheduler(str(sd)), settings, progress=False, work_dir=work,
                      key="k", on_step=_ctrl_c_after(2))
    assert stopped.value.step == 2 and stopped.value.checkpoint == str(ckpt.checkpoint_path(work, 2))
    assert [p.name for p in ckpt.list_checkpoints(work)] == ["checkpoint-00000002"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run: resume it \\(--resume\\)"):
        train_adapter(_fresh(), data, load_noise_scheduler(str(sd)), settings, progress=False, work_dir=work, key="k")
    with pytest.raises(ValueError, match="were made from other images, model or settings"):
        train_adapter(_fresh(), data, load_noise_scheduler(str(sd)), settings, progress=False, work_dir=work,
                      resume=True, key="other")

    resumed = _fresh()
    losses = train_adapter(resumed, data, load_noise_scheduler(str(sd)), settings, progress=False, work_dir=work,
                           resume=True, key="k")
    assert losses == straight_losses
    expected = adapter_state_dict(straight)
    assert all(torch.equal(value, expected[name]) for name, value in adapter_state_dict(resumed).items())


def _three_step_command(tmp_path):
    """``gen1 customize`` of two 64-px images for 3 steps: its arguments, its --out and its checkpoint folder."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(images / f"{i}.png")
    out = tmp_path / "a.safetensors"
    command = ["customize", "--images", str(images), "--out", str(out), "--steps", "3", "--size", "64"]
    return command, out, tmp_path / "a.safetensors.work"


def test_an_interrupted_command_says_what_was_kept_and_resumes_with_resume(tmp_path, capsys, monkeypatch):
    import gen1.training.customize as customize_training
    from gen1.cli import main
    from gen1.training import checkpoint as ckpt
    command, out, work = _three_step_command(tmp_path)
    train = customize_training.train_adapter
    with monkeypatch.context() as patched:
        patched.setattr(customize_training, "train_adapter",
                        lambda *a, **k: train(*a, **k, on_step=_ctrl_c_after(1), progress=False))
        assert main(command) == 130
    err = capsys.readouterr().err
    assert f"interrupted after step 1; checkpoint saved: {ckpt.checkpoint_path(work, 1)}" in err
    assert "resume with: the same command and --resume" in err
    assert ckpt.list_checkpoints(work) and not out.exists()
    assert main(command) == 2  # without --resume: refused, naming how to go on
    assert "holds checkpoints of an earlier run: resume it (the same command and --resume)" in capsys.readouterr().err
    assert main([*command, "--resume"]) == 0, capsys.readouterr().err
    assert out.is_file() and not work.exists()


def test_a_diverged_run_leaves_no_checkpoints_so_a_lower_lr_can_run(tmp_path, capsys, monkeypatch):
    # the message says "lower --lr", but the diverged run's checkpoints refused that rerun (an earlier run's) and
    # its --resume (other settings)
    import gen1.training.customize as customize_training
    from gen1.cli import main
    command, out, work = _three_step_command(tmp_path)
    train = customize_training.train_adapter
    with monkeypatch.context() as patched:  # a checkpoint after step 1, then the loss is NaN at step 2
        import dataclasses

        losses = iter([0.5, float("nan")])
        forward = customize_training.DiffusionObjective.forward
        patched.setattr(customize_training.DiffusionObjective, "forward",
                        lambda self, batch: forward(self, batch) * 0 + next(losses))
        patched.setattr(customize_training, "train_adapter", lambda unet, data, scheduler, settings, **kwargs: train(
            unet, data, scheduler, dataclasses.replace(settings, checkpoint_every=1), **kwargs, progress=False))
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "the customisation diverged at step 2" in err and "lower --lr" in err
    assert not work.exists() and not out.exists()
    assert main([*command, "--lr", "1e-5"]) == 0, capsys.readouterr().err
    assert out.is_file() and not work.exists()


def test_the_checkpoint_key_names_every_model_part(tmp_path):
    from types import SimpleNamespace

    from gen1.commands._models import model_parts
    from gen1.model_sources import ModelSource

    model, other = tmp_path / "model", tmp_path / "other-depth"
    model.mkdir()
    other.mkdir()
    source = ModelSource(model_dir=model)
    plain = model_parts(source, SimpleNamespace(depth_model=None, content_model=None))
    depth = model_parts(source, SimpleNamespace(depth_model=str(other), content_model=None))
    hub = model_parts(source, SimpleNamespace(depth_model=None, content_model="openai/clip-vit-large-patch14"))
    assert len({plain, depth, hub}) == 3  # another encoder is another run
    public = ModelSource(base=model, motion_adapter=tmp_path / "m", controlnet=tmp_path / "c")
    assert model_parts(public, SimpleNamespace()) != model_parts(
        ModelSource(base=model, motion_adapter=tmp_path / "m", controlnet=tmp_path / "c2"), SimpleNamespace())
