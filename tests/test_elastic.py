"""World-size-independent training: the same global batch gives the same weights at any world size, a run
checkpointed at two processes resumes at one and matches, and FSDP trains and exports what DDP does.

The reference trains one process with ``data.batch_size`` 4; the same run as a two-"node" job on this machine
(``torchrun --nnodes 2`` twice, gloo, one process with a DataLoader worker and batch 2 per node) must reach the
same weights, and so must the one-process run resumed (with two DataLoader workers) from the two-node run's
step-2 checkpoint.
Tolerance 1e-5: the gradients of 4 samples are summed in another order (two halves, then all-reduced), which
changes them by float rounding only (about 1e-7 of each tensor's largest entry). AdamW divides each entry by
``|g| + eps``, so for entries near zero that rounding is amplified by ``lr / eps``: with the default eps 1e-8 an
entry off by 1e-9 moves its weight by 1e-4. The runs here use eps 1e-6, which bounds that at 1e-6.

FSDP: the same two-process run under FSDP (PyTorch's FSDP sharding the model over gloo, forced on the CPU, see
``distributed_helpers``), stopped after two steps and resumed for the third: its trained weights (the gathered
FSDP model of each checkpoint) and its exported EMA UNet, gathered from the shards, must equal DDP's within 1e-5
(measured 7e-7: reduce-scatter rounds differently from all-reduce). Clipping is on (``optim.max_grad_norm`` 1.0)
and must take the norm over all processes' shards (without that, 4e-4 off); the resume must restore each
process's optimizer shard exactly (through Accelerate's gathered optimizer state, 8e-4 off).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from distributed_helpers import launch, torchrun_nodes
from training_helpers import base_overrides, make_encoder, make_media, make_sd_dir

from gen1.training import checkpoint as ckpt
from gen1.training.config import load_config
from gen1.training.data import JointBatchPlan
from gen1.training.draws import slot_generators
from gen1.training.preprocess import PreprocessSettings, list_inputs, preprocess
from gen1.training.trainer import train

RUN = {"train.max_steps": 3, "train.checkpoint_every": 2, "optim.lr": 1e-3, "optim.eps": 1e-6,
       "optim.max_grad_norm": 1.0, "model.trainable": "all", "data.image_ratio": 0.5, "train.export": "false",
       "diffusion.content_dropout": 0.3, "diffusion.structure_level_max": 7, "ema.decay": 0.5}
TWO = {**RUN, "data.batch_size": 2, "data.num_workers": 1, "train.export": "true"}  # per process, with an export


def _state(unet) -> dict:
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}


def _assert_close(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-5, f"{what}: weights differ by {worst}"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("elastic")
    sd = make_sd_dir(root / "sd")
    media = make_media(root / "media", videos=2, images=2, frames=5, size=32)
    preprocess(list_inputs(media), root / "shards", make_encoder(sd),
               PreprocessSettings(clip_length=4, stride=1, size=32, shard_size=2))
    return root, sd, root / "shards"


def test_the_global_batch_and_its_draws_do_not_depend_on_the_world_size():
    is_image = [i % 3 == 0 for i in range(10)]
    one = JointBatchPlan(is_image, batch_size=4, image_ratio=0.4, seed=5)
    two = [JointBatchPlan(is_image, batch_size=2, image_ratio=0.4, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for m in range(12):
        by_slot = {}
        for plan in two:
            images, videos = plan.slots(m)
            by_slot.update(zip(images + videos, plan.batch(m)))
        images, videos = one.slots(m)
        assert images + videos == sorted(by_slot)
        assert [by_slot[j] for j in images + videos] == one.batch(m)
    a, b = slot_generators(0, 3, [0, 1]), slot_generators(0, 3, [1])
    assert torch.equal(torch.rand(4, generator=a[1]), torch.rand(4, generator=b[0]))  # keyed by slot, not order
    assert not torch.equal(torch.rand(4, generator=slot_generators(0, 3, [0])[0]),
                           torch.rand(4, generator=slot_generators(0, 4, [0])[0]))


@pytest.fixture(scope="module")
def ddp_two(data, tmp_path_factory):
    """The run as a two-node job on this machine (``torchrun --nnodes 2``, one process of batch 2 per node, a
    DataLoader worker each, ``gen1 train`` as a user runs it): its output folder."""
    root, sd, shards = data
    out = tmp_path_factory.mktemp("ddp-two")
    defaults = out / "defaults.yaml"
    defaults.write_text("{}\n")  # the config defaults, as the in-process runs here use them
    torchrun_nodes(2, ["train", str(defaults), *base_overrides(sd, shards, out, TWO)], out)
    return out


def _trained(out, step: int) -> dict:
    """The whole trained UNet of checkpoint ``step`` (DDP: trainable.safetensors; FSDP: Accelerate's gathered
    full state dict, keyed like the DiffusionObjective it wraps)."""
    path = ckpt.checkpoint_path(out, step)
    if (path / "trainable.safetensors").is_file():
        return load_file(str(path / "trainable.safetensors"))
    full = torch.load(path / "fsdp" / "pytorch_model_fsdp.bin", map_location="cpu", weights_only=True)
    return {k[len("unet."):]: v for k, v in full.items()}


def _exported(out) -> dict:
    return load_file(str(out / "export" / "unet" / "diffusion_pytorch_model.safetensors"))


def test_world_size_two_matches_one_and_resumes_at_one(data, ddp_two, tmp_path):
    root, sd, shards = data
    single = train(load_config(None, base_overrides(sd, shards, tmp_path / "w1", {**RUN, "data.batch_size": 4})))
    reference = _state(single.unet)

    out = ddp_two
    state = json.loads((ckpt.checkpoint_path(out, 3) / "state.json").read_text())
    assert (state["world_size"], state["global_batch"]) == (2, 4)  # the two nodes joined as one job
    _assert_close(reference, _trained(out, 3), "two nodes x batch 2 vs one process x 4")
    # the reported loss is the global batch's (all processes'), not rank 0's half of it
    (printed,) = [line for line in (out / "node0.log").read_text().splitlines() if "last loss" in line]
    assert abs(float(printed.rsplit(" ", 1)[1]) - single.losses[-1]) < 2e-4, (printed, single.losses[-1])
    assert not torch.equal(reference["unet.conv_out.weight"], _trained(out, 2)["unet.conv_out.weight"])  # it trained

    # the two-process run's step-2 checkpoint, resumed by one process with batch 4 (and two DataLoader workers)
    moved = tmp_path / "resumed"
    shutil.copytree(ckpt.checkpoint_path(out, 2), ckpt.checkpoint_path(moved, 2))
    resumed = train(load_config(None, base_overrides(sd, shards, moved, {
        **RUN, "data.batch_size": 4, "data.num_workers": 2, "train.resume": "latest"})))
    assert resumed.resumed_from.endswith("checkpoint-00000002") and resumed.steps == [3]
    _assert_close(reference, _state(resumed.unet), "resumed at world size 1 from a world size 2 checkpoint")


def test_a_resume_with_another_global_batch_is_refused_saying_what_changes(data, tmp_path):
    path = tmp_path / "ck"
    state = {"world_size": 2, "global_batch": 4}
    ckpt.check_elastic(path, state, 1, 4, fsdp=False)  # same global batch: allowed
    ckpt.check_elastic(path, state, 4, 4, fsdp=False)
    with pytest.raises(ValueError, match=r"global batch of 4, this run's is 6 .*set data.batch_size=2"):
        ckpt.check_elastic(path, state, 2, 6, fsdp=False)
    with pytest.raises(ValueError, match="FSDP checkpoints hold per-process shards"):
        ckpt.check_elastic(path, state, 1, 4, fsdp=True)
    with pytest.raises(ValueError, match="does not record its global batch"):
        ckpt.check_elastic(path, {"world_size": 2}, 1, 4, fsdp=False)
    written = {**state, "step": 3, "micro_step": 6}  # two micro-batches per step
    ckpt.check_elastic(path, written, 1, 4, fsdp=False, grad_accum=2)
    with pytest.raises(ValueError, match="written with train.grad_accum=2, this run has 1"):
        ckpt.check_elastic(path, written, 1, 4, fsdp=False, grad_accum=1)


def test_fsdp_trains_resumes_and_exports_what_ddp_does(data, ddp_two, tmp_path):
    root, sd, shards = data
    ddp = ddp_two
    fsdp = tmp_path / "fsdp"
    fsdp.mkdir()
    # two steps, stopped (the LR schedule is constant), then resumed for the third by a fresh pair of processes
    launch(2, base_overrides(sd, shards, fsdp, {**TWO, "train.max_steps": 2, "train.export": "false"}), fsdp,
           fsdp=True)
    assert [p.name for p in ckpt.list_checkpoints(fsdp)] == ["checkpoint-00000002"]
    launch(2, base_overrides(sd, shards, fsdp, {**TWO, "train.resume": "latest"}), fsdp, fsdp=True)
    _assert_close(_trained(ddp, 2), _trained(fsdp, 2), "FSDP's trained weights vs DDP's at step 2")
    _assert_close(_trained(ddp, 3), _trained(fsdp, 3), "FSDP resumed at step 2 vs DDP at step 3")
    _assert_close(_exported(ddp), _exported(fsdp), "FSDP's exported EMA UNet vs DDP's")
    assert not torch.equal(_exported(ddp)["unet.conv_out.weight"], _trained(ddp, 3)["unet.conv_out.weight"])
