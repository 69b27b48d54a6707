"""Two CPU processes (gloo, loopback only) train under Accelerate/DDP and end with identical weights.

The two ranks are not forked from the test process, so they inherit no thread pools or other state of it (a
forked rank hangs in OpenMP when the parent has used more than one thread): they start as fresh interpreters do,
forked from the session's fork server (``distributed_helpers.spawn_ranks``). Each sets the environment
``accelerate launch`` would set: RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1...
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import torch
from distributed_helpers import spawn_ranks
from safetensors.torch import load_file, save_file
from serve_helpers import free_port
from tiny_models import tiny_unet
from training_helpers import base_overrides, make_encoder, make_media, make_sd_dir

from gen1.training import checkpoint as ckpt
from gen1.training.preprocess import PreprocessSettings, list_inputs, preprocess


def _rank_main(rank: int, port: int, overrides: list[str], out: str) -> None:
    """One process of the job; exits the child directly with its status."""
    code = 1
    try:
        torch.set_num_threads(1)  # as the suite runs (tests/conftest.py): the models are tiny
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                          WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", ACCELERATE_USE_CPU="true")
        from gen1.training.config import load_config
        from gen1.training.trainer import train

        result = train(load_config(None, overrides))
        save_file({k: v.detach().contiguous() for k, v in result.unet.state_dict().items()},
                  f"{out}/rank{rank}.safetensors")
        Path(out, f"rank{rank}.txt").write_text(f"{result.seen['video']} {result.seen['image']}")
        torch.distributed.destroy_process_group()
        code = 0
    except BaseException:  # noqa: BLE001 -- report to the parent, which asserts on it
        Path(out, f"rank{rank}.error").write_text(traceback.format_exc())
    finally:
        os._exit(code)


def test_two_cpu_processes_stay_in_sync(tmp_path):
    sd = make_sd_dir(tmp_path / "sd")
    media = make_media(tmp_path / "media", videos=2, images=2, frames=4, size=32)
    preprocess(list_inputs(media), tmp_path / "shards", make_encoder(sd),
               PreprocessSettings(clip_length=4, stride=1, size=32, shard_size=2))
    out = tmp_path / "out"
    out.mkdir()
    overrides = base_overrides(sd, tmp_path / "shards", out, {
        "train.max_steps": 3, "train.checkpoint_every": 3, "optim.lr": 1e-3, "model.trainable": "all",
        "data.image_ratio": 0.5, "data.batch_size": 1, "train.export": "false"})
    port = free_port()
    spawn_ranks(_rank_main, [(rank, port, overrides, str(out)) for rank in (0, 1)], out)

    # both ranks trained on their own samples: 3 steps x batch 1 each, images spread over the ranks
    seen = [tuple(int(x) for x in (out / f"rank{r}.txt").read_text().split()) for r in (0, 1)]
    assert sum(v for v, _ in seen) == 3 and sum(i for _, i in seen) == 3

    # every parameter identical on both ranks, equal to the checkpoint, and actually trained
    rank0, rank1 = (load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    (final,) = ckpt.list_checkpoints(out)
    assert sorted(p.name for p in final.glob("rng-rank*.pt")) == ["rng-rank0.pt", "rng-rank1.pt"]
    for key, value in load_file(str(final / "trainable.safetensors")).items():
        assert torch.equal(value, rank0[key]), key
    assert not torch.equal(rank0["unet.conv_out.weight"], tiny_unet("sd1").state_dict()["conv_out.weight"])
