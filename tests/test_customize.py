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
