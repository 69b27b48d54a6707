"""Launch ``gen1.training.trainer.train`` as several CPU processes joined over gloo on the loopback.

The processes are not forked from the test process, so they inherit no thread pools or other state of it: a
forked rank hangs in OpenMP when the parent has used more than one thread. They are forked from multiprocessing's
fork server instead: a fresh interpreter, started once per test session, that only imports what every rank imports
(:data:`PRELOAD`: torch, diffusers, accelerate and the trainer, most of a rank's start-up) and runs nothing, so
each rank starts as a fresh interpreter that has imported them, without importing them again (spawned ranks
imported them afresh for every launch). Each rank runs in the test process's environment of the moment, then
sets the environment a launcher sets (RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, ...) and
``ACCELERATE_USE_CPU=true``, and saves its final UNet weights as ``OUT/rank{r}.safetensors``.

``fsdp=True`` runs the processes under FSDP (``train.distributed=fsdp``). Accelerate (1.15) chooses FSDP only on
accelerators: on CPU it accepts the FSDP plugin and silently runs DDP. So these processes set the Accelerator's
state to FSDP on the CPU device after building it (:func:`_force_fsdp`), and PyTorch's FSDP then shards the
model over gloo: the trainer's FSDP code (prepare, clipping, checkpoints, per-process optimizer and EMA state,
gathered export) runs as on GPUs; what is not exercised on CPU is NCCL, CUDA streams and mixed precision.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from serve_helpers import free_port

# The fork server imports this module first: with one intra-op thread (as the suite runs, tests/conftest.py) no
# import after it can start an OpenMP thread pool that the forked ranks would inherit.
torch.set_num_threads(1)

#: What the fork server imports once, before it forks any rank: this module (torch), then the trainer.
PRELOAD = ["distributed_helpers", "gen1.training.config", "gen1.training.trainer"]


def _force_fsdp(trainer) -> None:
    """Make ``trainer.make_accelerator`` return an Accelerator in FSDP mode on the CPU (see the module)."""
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.utils import DistributedType

    real = trainer.make_accelerator

    def make(config):
        from accelerate.state import PartialState

        accelerator = real(config)
        # both states: an AcceleratorState built later (e.g. by save_state) copies PartialState's fields again
        for state in (PartialState(), accelerator.state):
            state.distributed_type = DistributedType.FSDP
            state.device = torch.device("cpu")  # FSDP refuses "cpu:0" as a compute device
        accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(use_orig_params=True)
        return accelerator

    trainer.make_accelerator = make


def _rank_main(rank: int, world: int, port: int, overrides: list[str], out: str, fsdp: bool) -> None:
    """One process of the job; writes its weights and how the model was wrapped; exits with its status."""
    code = 1
    try:
        torch.set_num_threads(1)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                          WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world), ACCELERATE_USE_CPU="true")
        import gen1.training.trainer as trainer
        from gen1.training.config import load_config

        if fsdp:
            _force_fsdp(trainer)
        real_setup = trainer.setup

        def setup(config):
            run = real_setup(config)
            Path(out, f"rank{rank}.wrapper").write_text(type(run.objective).__name__)
            return run

        trainer.setup = setup
        result = trainer.train(load_config(None, overrides))
        if not fsdp:  # under FSDP each process holds shards only: the checkpoints and the export are whole
            save_file({k: v.detach().contiguous() for k, v in result.unet.state_dict().items()},
                      f"{out}/rank{rank}.safetensors")
        torch.distributed.destroy_process_group()
        code = 0
    except BaseException:  # noqa: BLE001 -- reported to the parent, which asserts on it
        Path(out, f"rank{rank}.error").write_text(traceback.format_exc())
    finally:
        os._exit(code)


def _in_environment(environ: dict, target, args: tuple) -> None:
    """Run ``target(*args)`` in ``environ``: a process forked from the fork server has the fork server's
    environment, which is the test process's when an earlier test started it (its own GEN1_CACHE_DIR, say)."""
    os.environ.clear()
    os.environ.update(environ)
    target(*args)


def spawn_ranks(target, rank_args: list[tuple], out: Path) -> None:
    """Run ``target(*rank_args[r])`` in one process per rank (gloo on this machine), forked from the fork server
    (see the module) in the test process's environment; assert that every rank exited 0 and that none wrote a
    ``*.error`` file (a rank's traceback) into ``out``."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # takes effect when the session's fork server starts
    procs = [context.Process(target=_in_environment, args=(dict(os.environ), target, args)) for args in rank_args]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)  # the first launch of a session waits for the fork server's imports
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    errors = {p.name: p.read_text() for p in out.glob("*.error")}
    assert not errors, errors
    assert [p.exitcode for p in procs] == [0] * len(rank_args)


def launch(world: int, overrides: list[str], out: Path, *, fsdp: bool = False) -> list[dict]:
    """Train as ``world`` gloo processes (see the module) writing into ``out``; each process's final weights
    (DDP), or ``[]`` under FSDP. Asserts that every process ended cleanly."""
    if fsdp:
        overrides = [*overrides, "train.distributed=fsdp"]
    port = free_port()
    spawn_ranks(_rank_main, [(r, world, port, overrides, str(out), fsdp) for r in range(world)], out)
    wrappers = {(out / f"rank{r}.wrapper").read_text() for r in range(world)}
    assert wrappers == {"FullyShardedDataParallel" if fsdp else "DistributedDataParallel"}, wrappers
    return [] if fsdp else [load_file(str(out / f"rank{r}.safetensors")) for r in range(world)]


def torchrun_nodes(nodes: int, command: list[str], log_dir: Path, *, timeout: float = 300) -> None:
    """Run ``torchrun --nnodes NODES --nproc_per_node 1 -m gen1 COMMAND`` as NODES launchers on this machine (one
    per "node", joined by static rendezvous on 127.0.0.1), as a multi-node job is started; asserts every node
    exited cleanly (their output is in ``log_dir/node{r}.log``)."""
    import subprocess
    import sys

    port = free_port()
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes), "--nproc_per_node", "1",
                "--master_addr", "127.0.0.1", "--master_port", str(port)]
    procs, logs = [], []
    for rank in range(nodes):
        log = open(log_dir / f"node{rank}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([*torchrun, "--node_rank", str(rank), "-m", "gen1", *command], env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [proc.wait(timeout=timeout) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for log in logs:
            log.close()
    output = {r: (log_dir / f"node{r}.log").read_text()[-3000:] for r in range(nodes)}
    assert codes == [0] * nodes, output
