"""Atomic training checkpoints: save, find the latest complete one, load, prune.

A checkpoint is a directory ``OUTPUT/checkpoints/checkpoint-00000100/`` holding

* ``trainable.safetensors``  the trainable weights (names as in the unwrapped VideoUNet);
* ``ema.pt``                 diffusers EMAModel state (tensors and numbers only); under FSDP ``ema-rank{r}.pt``,
                             one per process, since each averages its own shard of the weights;
* ``optimizer.pt``, ``lr_scheduler.pt``  their ``state_dict()``s;
* ``rng-rank{r}.pt``         python / numpy / torch (/ CUDA) RNG states of every process;
* ``state.json``             step, micro-step (the data position), epoch, world size, global batch -- written last.

Elastic resume: a checkpoint resumes at any world size whose global batch (``data.batch_size`` x processes) is
the one it was written with: the data position and every draw are keyed by global sample slots, not ranks (see
:mod:`gen1.training.trainer`), and the weights, optimizer and EMA are whole on every process under DDP. A process
without an RNG file of its own rank takes rank 0's (the training draws use their own generators, not these).
With another global batch the same step would hold other samples with other draws, so the run would no longer
match an uninterrupted one: that is refused (:func:`check_elastic`), naming the batch size that resumes exactly.

Rank 0 builds it in a temporary directory (``gen1.atomic.atomic_directory``) whose path is broadcast
so every process can write its RNG file; it is renamed into place only after all processes are done.
A run killed mid-save leaves only a dot-prefixed temporary directory, which :func:`list_checkpoints`
ignores, so ``resume: latest`` picks the last complete checkpoint. All ``.pt`` files are loaded with
``torch.load(weights_only=True)``: RNG states are stored as tensors and tuples, never as pickled objects.
Under FSDP the model goes through Accelerate's ``save_fsdp_model`` (``fsdp/pytorch_model_fsdp.bin``, the whole
model gathered on rank 0) and each process saves its own shard's optimizer state (``optimizer-rank{r}.pt``):
Accelerate's gathered FSDP optimizer state did not resume exactly (the next step was 8e-4 off an uninterrupted
run) and costs a full gather on rank 0; per-process state resumes bit for bit at the same world size.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from gen1.atomic import atomic_directory

NAME_RE = re.compile(r"^checkpoint-(\d{8})$")


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_path(output_dir: str | Path, step: int) -> Path:
    """Where checkpoint ``step`` of a run lives."""
    return checkpoint_root(output_dir) / f"checkpoint-{step:08d}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints under ``output_dir``, oldest first (temporary directories are ignored)."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(NAME_RE.match(p.name).group(1)))


def resolve_resume(output_dir: str | Path, resume: Optional[str]) -> Optional[Path]:
    """Turn ``train.resume`` (None, "latest" or a path) into a checkpoint directory, or None to start fresh."""
    if resume is None:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"train.resume: {resume!r} is not a complete checkpoint directory")
    return path


def refuse_earlier_checkpoints(work_dir: str | Path, resume_with: str) -> None:
    """Refuse to start afresh in ``work_dir`` when it holds an earlier run's checkpoints (``resume_with`` says how to
    resume that run instead): a new run would mix its checkpoints with them."""
    if list_checkpoints(work_dir):
        raise ValueError(f"'{work_dir}' holds checkpoints of an earlier run: resume it ({resume_with}) or remove that "
                         "folder to start again")


def newest_of_this_run(work_dir: str | Path, key: str, made_from: str) -> Optional[tuple[Path, dict]]:
    """The newest checkpoint in ``work_dir`` and its saved state (None: there is none), for a run that resumes it
    (a customisation's, Imagic's): one whose ``fingerprint`` is not ``key`` is refused in one line saying it was made
    from ``made_from`` (e.g. "other images, model or settings")."""
    found = list_checkpoints(work_dir)
    if not found:
        return None
    state = _read_state(found[-1])
    if state.get("fingerprint") != key:
        raise ValueError(f"the checkpoints in '{work_dir}' were made from {made_from}: give the same ones to resume, "
                         "or remove that folder to start again")
    return found[-1], state


def check_fresh_output(output_dir: str | Path, resume: Optional[str]) -> None:
    """Refuse to start a new run (``train.resume`` unset) in a folder holding an earlier run's checkpoints or export:
    its export would be replaced and its checkpoints mixed with the new run's (a later ``resume: latest`` would
    continue the old weights with the new settings)."""
    if resume is not None:
        return
    output = Path(output_dir)
    export = output / "export"
    found = [f"checkpoints/{p.name}" for p in list_checkpoints(output)]
    if export.is_dir() and any(export.iterdir()):
        found.append("export/")
    if found:
        raise ValueError(f"train.output_dir '{output_dir}' holds an earlier run ({', '.join(found[:3])}"
                         f"{', ...' if len(found) > 3 else ''}): continue it with train.resume=latest, or start the "
                         "new run in a new train.output_dir")


def capture_rng() -> dict[str, Any]:
    """RNG states of this process as tensors / tuples (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": (version, torch.tensor(internal, dtype=torch.int64), gauss),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(accelerator, output_dir: str | Path, step: int, *, trainable: dict[str, torch.Tensor],
                    optimizer, lr_scheduler, ema, state: dict, fsdp: bool = False,
                    keep: Optional[int] = None, model=None) -> Path:
    """Write checkpoint ``step`` atomically from all processes; return its path (``model``: the FSDP-wrapped
    module, needed under FSDP)."""
    from accelerate.utils import broadcast_object_list  # lazy: accelerate is heavy and only this path needs it
    from safetensors.torch import save_file  # lazy: safetensors is heavy and only this path needs it

    target = checkpoint_path(output_dir, step)
    rank = accelerator.process_index
    if accelerator.is_main_process:
        with atomic_directory(target) as tmp:
            broadcast_object_list([str(tmp)], from_process=0) if accelerator.num_processes > 1 else None
            _write_parts(accelerator, Path(tmp), rank, trainable, optimizer, lr_scheduler, ema, fsdp, save_file,
                         model)
            accelerator.wait_for_everyone()
            # state.json last: its presence marks a complete checkpoint even outside atomic renames.
            (Path(tmp) / "state.json").write_text(json.dumps(dict(state, step=step), indent=2), encoding="utf-8")
    else:
        holder = [None]
        broadcast_object_list(holder, from_process=0)
        _write_parts(accelerator, Path(holder[0]), rank, trainable, optimizer, lr_scheduler, ema, fsdp, save_file,
                     model)
        accelerator.wait_for_everyone()
    accelerator.wait_for_everyone()
    if keep is not None and accelerator.is_main_process:
        for old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return target


def ema_file(path: Path, rank: int, fsdp: bool) -> Path:
    """The EMA state of process ``rank``: per process under FSDP (each shadows its own shard), else one file."""
    return path / (f"ema-rank{rank}.pt" if fsdp else "ema.pt")


def _write_parts(accelerator, tmp: Path, rank, trainable, optimizer, lr_scheduler, ema, fsdp, save_file,
                 model=None) -> None:
    torch.save(capture_rng(), tmp / f"rng-rank{rank}.pt")
    if fsdp:
        from accelerate.utils import save_fsdp_model  # lazy: accelerate is heavy and only this path needs it

        save_fsdp_model(accelerator.state.fsdp_plugin, accelerator, model, str(tmp / "fsdp"))
        torch.save(optimizer.state_dict(), tmp / f"optimizer-rank{rank}.pt")
        if ema is not None:
            torch.save(ema.state_dict(), ema_file(tmp, rank, fsdp))
    if not accelerator.is_main_process:
        return
    if not fsdp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(lr_scheduler.state_dict(), tmp / "lr_scheduler.pt")
    if ema is not None and not fsdp:
        torch.save(ema.state_dict(), ema_file(tmp, rank, fsdp))


def check_elastic(path: Path, state: dict, processes: int, global_batch: Optional[int], *, fsdp: bool,
                  grad_accum: Optional[int] = None) -> None:
    """Refuse a resume that would not continue the run exactly (``ValueError``, one line saying what changes):
    another global batch or ``train.grad_accum``, or another world size under FSDP (its sharded state is per
    process) or from a checkpoint that did not record its global batch."""
    step, micro = state.get("step"), state.get("micro_step")
    if grad_accum is not None and step and micro is not None and micro != step * grad_accum:
        raise ValueError(f"checkpoint {str(path)!r} was written with train.grad_accum={micro // step}, this run has "
                         f"{grad_accum}: it would resume at another data position; use train.grad_accum="
                         f"{micro // step}")
    written = state.get("world_size", processes)
    saved = state.get("global_batch")
    if written == processes and (saved is None or global_batch is None or saved == global_batch):
        return
    where = f"checkpoint {str(path)!r} was written by {written} process(es)"
    if fsdp and written != processes:
        raise ValueError(f"{where}, this run has {processes}: FSDP checkpoints hold per-process shards, resume "
                         f"FSDP at the same world size (DDP resumes at any world size with the same global batch)")
    if saved is None:
        raise ValueError(f"{where} and does not record its global batch, this run has {processes}: resume it at "
                         f"{written} process(es)")
    if global_batch is not None and saved != global_batch:
        per = saved // processes if saved % processes == 0 else None
        fix = f"set data.batch_size={per}" if per else f"use a process count dividing {saved}"
        raise ValueError(f"{where} with a global batch of {saved}, this run's is {global_batch} ({processes} x "
                         f"data.batch_size): every later step would hold other samples with other random draws, so "
                         f"the run would not continue as it began; {fix} to resume exactly")


class DamagedCheckpoint(ValueError):
    """A file of a checkpoint cannot be read (truncated, empty, of the wrong type, or a pickle a safe load refuses);
    the message names the file. ``gen1 train`` then resumes from the previous checkpoint (``resume: latest``)."""


def _read_state(path: Path) -> dict:
    file = path / "state.json"
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DamagedCheckpoint(f"'{file}' is damaged ({error})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise DamagedCheckpoint(f"'{file}' is damaged: it holds no run state (a JSON object with its step)")
    return state


def _safe_torch_load(file: Path):
    """``torch.load(weights_only=True)`` of one checkpoint file, its failures as :class:`DamagedCheckpoint`."""

    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DamagedCheckpoint(f"'{file}' is missing") from None
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):  # a class or function to call on load: what code-running pickles hold
            raise DamagedCheckpoint(f"'{file}' holds objects a safe load refuses (only tensors and plain values "
                                    "are loaded; a pickle that runs code is never executed)") from None
        detail = str(error).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        raise DamagedCheckpoint(f"'{file}' is damaged (not a readable tensor file: {' '.join(detail.split())[:200]})"
                                ) from None
    except (EOFError, RuntimeError, ValueError, OSError) as error:
        raise DamagedCheckpoint(f"'{file}' is damaged ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
                                ) from None


def _safe_load_file(file: Path) -> dict:
    from safetensors import SafetensorError  # lazy: safetensors is heavy and only this path needs it
    from safetensors.torch import load_file  # lazy: safetensors is heavy and only this path needs it

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as error:
        raise DamagedCheckpoint(f"'{file}' is damaged ({' '.join(str(error).split())[:200]})") from None


def load_checkpoint(accelerator, path: str | Path, *, params: dict[str, torch.nn.Parameter], optimizer,
                    lr_scheduler, ema, fsdp: bool = False, global_batch: Optional[int] = None, model=None,
                    grad_accum: Optional[int] = None) -> dict:
    """Restore everything saved by :func:`save_checkpoint`; return ``state.json``'s content.

    Trainable weights are checked by name and shape against ``params``; a mismatch raises ``ValueError``
    naming the key. ``global_batch``, ``grad_accum``: this run's, checked against the checkpoint's
    (:func:`check_elastic`).
    ``model``: the FSDP-wrapped module, needed under FSDP.
    """
    path = Path(path)
    state = _read_state(path)
    check_elastic(path, state, accelerator.num_processes, global_batch, fsdp=fsdp, grad_accum=grad_accum)
    if fsdp:
        from accelerate.utils import load_fsdp_model  # lazy: accelerate is heavy and only this path needs it

        load_fsdp_model(accelerator.state.fsdp_plugin, accelerator, model, str(path / "fsdp"))
        optimizer.load_state_dict(_safe_torch_load(path / f"optimizer-rank{accelerator.process_index}.pt"))
    else:
        weights = _safe_load_file(path / "trainable.safetensors")
        missing = sorted(set(params) - set(weights))
        unexpected = sorted(set(weights) - set(params))
        if missing or unexpected:
            raise ValueError(f"checkpoint {str(path)!r} does not match the trainable parameters: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        with torch.no_grad():
            for name, param in params.items():
                if tuple(weights[name].shape) != tuple(param.shape):
                    raise ValueError(f"checkpoint {str(path)!r}: '{name}' has shape {tuple(weights[name].shape)}, "
                                     f"the model expects {tuple(param.shape)}")
                param.copy_(weights[name].to(param.dtype))
        optimizer.load_state_dict(_safe_torch_load(path / "optimizer.pt"))
    lr_scheduler.load_state_dict(_safe_torch_load(path / "lr_scheduler.pt"))
    if ema is not None:
        saved = ema_file(path, accelerator.process_index, fsdp)
        if not saved.is_file():
            raise ValueError(f"checkpoint {str(path)!r} has no EMA state ({saved.name}) but ema.enabled is true")
        ema.load_state_dict(_safe_torch_load(saved))
    rng_file = path / f"rng-rank{accelerator.process_index}.pt"
    if not rng_file.is_file():  # resumed on more processes than wrote it: the new ranks start from rank 0's
        rng_file = path / "rng-rank0.pt"
    rng = _safe_torch_load(rng_file)
    if not isinstance(rng, dict):
        raise DamagedCheckpoint(f"'{rng_file}' is damaged: it holds no random-number state")
    restore_rng(rng)
    return state
