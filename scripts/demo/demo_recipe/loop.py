"""A small resumable training loop for the demo's component models (VAE, CLIP, depth).

Why not ``gen1 train``: that trainer is the VideoUNet's diffusion objective on shards. The components
have other objectives, are tiny, and train on freshly rendered batches; they share this loop.

Checkpoint: ``OUT/checkpoint/`` (written with :func:`gen1.atomic.atomic_directory`, so a kill leaves
the previous one intact) holds ``model.safetensors``, ``optimizer.pt`` (loaded with
``weights_only=True``) and ``state.json`` (step, loss history). Batches are a function of the step, so a
resumed run continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import torch

from gen1.atomic import atomic_directory
from gen1.weights import check_state_dict


def save_checkpoint(out: Path, model: torch.nn.Module, optimizer, state: dict) -> None:
    from safetensors.torch import save_file

    with atomic_directory(out / "checkpoint") as tmp:
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(weights, str(Path(tmp) / "model.safetensors"))
        torch.save(optimizer.state_dict(), Path(tmp) / "optimizer.pt")
        (Path(tmp) / "state.json").write_text(json.dumps(state), encoding="utf-8")


def load_checkpoint(out: Path, model: torch.nn.Module, optimizer) -> dict | None:
    """Restore model/optimizer from ``OUT/checkpoint`` if present; return its state (or None)."""
    from safetensors.torch import load_file

    folder = out / "checkpoint"
    if not (folder / "state.json").is_file():
        return None
    weights = load_file(str(folder / "model.safetensors"))
    check_state_dict(model.state_dict(), weights, f"checkpoint {str(folder)!r}")
    model.load_state_dict(weights, strict=True)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    return json.loads((folder / "state.json").read_text(encoding="utf-8"))


def run_loop(out: str | Path, model: torch.nn.Module, optimizer, loss_fn: Callable[[int], tuple[torch.Tensor, dict]],
             *, max_steps: int, checkpoint_every: int = 100, max_minutes: float | None = None,
             log_every: int = 20, lr_at: Callable[[int], float] | None = None) -> dict:
    """Train ``model`` with ``loss_fn(step) -> (loss, extra logs)`` until ``max_steps`` (or ``max_minutes``
    of wall time, then checkpoint and return: the next call resumes). Returns the state dict:
    ``step``, ``history`` (list of ``[step, loss, extras...]`` rows), ``done``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(out, model, optimizer) or dict(step=0, history=[])
    if state["step"] > 0:
        print(f"resumed {out} at step {state['step']}", flush=True)
    start = time.monotonic()
    model.train()
    step = state["step"]
    while step < max_steps:
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
        loss, extra = loss_fn(step)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        state["history"].append([step, value, {k: float(v) for k, v in extra.items()}])
        if step % log_every == 0:
            logs = " ".join(f"{k}={float(v):.4f}" for k, v in extra.items())
            print(f"step {step}/{max_steps} loss={value:.4f} {logs} ({time.monotonic() - start:.0f}s)", flush=True)
        out_of_time = max_minutes is not None and time.monotonic() - start > 60 * max_minutes
        if step % checkpoint_every == 0 or step == max_steps or out_of_time:
            state["step"] = step
            save_checkpoint(out, model, optimizer, state)
        if out_of_time:
            break
    state["step"] = step
    state["done"] = step >= max_steps
    model.eval()
    return state


def cosine_lr(base: float, max_steps: int, warmup: int = 50) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 10% of ``base``."""
    def lr_at(step: int) -> float:
        if step < warmup:
            return base * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
        return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    return lr_at
