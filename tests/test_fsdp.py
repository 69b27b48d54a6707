"""FSDP trains, checkpoints and exports what DDP does, on two CPU processes.

Both runs are two spawned gloo processes on the same data with the same settings; under FSDP the model is
sharded by PyTorch's FSDP (forced on the CPU, see ``distributed_helpers``). The trained weights in the last
checkpoint (Accelerate's gathered FSDP state) and the exported (EMA) UNet, gathered from the shards, must equal
DDP's. Not covered: resuming FSDP from its checkpoint restores the weights exactly and the optimizer's step count,
but the next step then differs from an uninterrupted run by up to 8e-4 (measured here); that is an open issue.
Clipping is on (``optim.max_grad_norm`` 1.0): under FSDP it must take the norm over all processes' shards.
"The same" is within 1e-5: FSDP reduce-scatters gradients where DDP all-reduces them, which rounds differently
(measured: at most 7e-7 after three steps), and AdamW's eps is 1e-6 so that entries whose gradient is rounding
noise are not amplified (see ``test_elastic``). Without the global-norm clipping fix they differed by 4e-4.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from distributed_helpers import launch
from training_helpers import base_overrides, make_encoder, make_media, make_sd_dir

from gen1.training import checkpoint as ckpt
from gen1.training.preprocess import PreprocessSettings, list_inputs, preprocess

RUN = {"train.max_steps": 3, "train.checkpoint_every": 2, "optim.lr": 1e-3, "model.trainable": "all",
       "data.image_ratio": 0.5, "data.batch_size": 2, "ema.decay": 0.5, "optim.max_grad_norm": 1.0, "optim.eps": 1e-6}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    sd = make_sd_dir(root / "sd")
    media = make_media(root / "media", videos=2, images=2, frames=5, size=32)
    preprocess(list_inputs(media), root / "shards", make_encoder(sd),
               PreprocessSettings(clip_length=4, stride=1, size=32, shard_size=2))
    return sd, root / "shards"


def _trained(out, step: int) -> dict:
    """The whole trained UNet of checkpoint ``step`` (DDP: trainable.safetensors; FSDP: Accelerate's gathered
    full state dict, keyed like the DiffusionObjective it wraps)."""
    path = ckpt.checkpoint_path(out, step)
    if (path / "trainable.safetensors").is_file():
        return load_file(str(path / "trainable.safetensors"))
    full = torch.load(path / "accelerate" / "pytorch_model_fsdp.bin", map_location="cpu", weights_only=True)
    return {k[len("unet."):]: v for k, v in full.items()}


def _exported(out) -> dict:
    return load_file(str(out / "export" / "unet" / "diffusion_pytorch_model.safetensors"))


def _assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    worst = max((a[key] - b[key]).abs().max().item() for key in a)
    assert worst <= 1e-5, f"{what}: weights differ by {worst}"


def test_fsdp_trains_and_exports_what_ddp_does(data, tmp_path):
    sd, shards = data
    runs = {}
    for name, fsdp in (("ddp", False), ("fsdp", True)):
        out = runs[name] = tmp_path / name
        out.mkdir()
        launch(2, base_overrides(sd, shards, out, RUN), out, fsdp=fsdp)
    _assert_same(_trained(runs["ddp"], 3), _trained(runs["fsdp"], 3), "trained weights")
    _assert_same(_exported(runs["ddp"]), _exported(runs["fsdp"]), "exported EMA UNet")
    assert not torch.equal(_exported(runs["ddp"])["unet.conv_out.weight"], _trained(runs["ddp"], 3)["unet.conv_out.weight"])

