"""Gradient (activation) checkpointing of the denoisers at two levels, for fine-tuning in less memory.

diffusers' own checkpointing (``enable_gradient_checkpointing``) re-runs each resnet and transformer in the backward
pass, but keeps every block's internal boundaries and everything outside those layers; on the public route that saves
only a third of a training step's memory (docs/directions_results.md). :func:`enable_recompute` adds a second level:
each whole UNet / ControlNet block (down, mid, up) is checkpointed too, with diffusers' per-layer checkpointing nested
inside, so a step keeps the blocks' inputs and, while one block is re-run, that block's layer boundaries. Both levels
are exact: the forward is re-run with the same inputs, the losses and gradients are those of a plain step
(``tests/test_imagic.py``).

A block is checkpointed by giving it a ``forward`` of its own, bound to it (so a deep copy of the model rebinds it to
the copy) and marked, so that :func:`disable_recompute` removes only what it added. A gen1
:class:`~gen1.unet.VideoUNet` runs its temporal layers under a per-call frame context
(:mod:`gen1.temporal_layers.context`) that is gone when the backward pass re-runs a block: the block level restores
it with the same wrapper the per-layer level uses (``FrameContext.checkpointing_func``).
"""

from __future__ import annotations

import types

import torch
from torch.utils.checkpoint import checkpoint

#: The attribute a checkpointed block carries: the frame context its re-runs restore (None for a ControlNet's).
MARK = "_gen1_recompute_context"


def _blocks(model) -> list[torch.nn.Module]:
    """The down, mid and up blocks of a diffusers UNet or ControlNet (a VideoUNet's inner UNet's)."""
    unet = getattr(model, "image_unet", model)
    blocks = [*unet.down_blocks, unet.mid_block, *getattr(unet, "up_blocks", [])]
    return [block for block in blocks if block is not None]


def _checkpoint(function, *args, **kwargs):
    return checkpoint(function, *args, use_reentrant=False, **kwargs)


def _checkpointed_forward(block, *args, **kwargs):
    """A block's own ``forward``, checkpointed while gradients are on (its frame context restored for re-runs by
    :meth:`gen1.temporal_layers.context.FrameContext.checkpointing_func`, as the per-layer level restores it)."""
    forward = types.MethodType(type(block).forward, block)
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    context = getattr(block, MARK)
    run = _checkpoint if context is None else context.checkpointing_func(_checkpoint)
    return run(forward, *args, **kwargs)


def enable_recompute(modules) -> None:
    """Checkpoint each of ``modules`` (diffusers models: a VideoUNet, ControlNets) per layer and per block."""
    for model in modules:
        model.enable_gradient_checkpointing()
        context = getattr(model, "_frame_context", None)
        for block in _blocks(model):
            if "forward" not in vars(block):  # not wrapped twice, nor over somebody else's forward
                setattr(block, MARK, context)
                block.forward = types.MethodType(_checkpointed_forward, block)


def disable_recompute(modules) -> None:
    """Undo :func:`enable_recompute`: the blocks' own ``forward`` again, no per-layer checkpointing."""
    for model in modules:
        model.disable_gradient_checkpointing()
        for block in _blocks(model):
            if hasattr(block, MARK):
                del block.forward
                delattr(block, MARK)


def is_recomputing(model) -> bool:
    """Whether :func:`enable_recompute` is in effect on ``model`` (at either level)."""
    return model.is_gradient_checkpointing or any(hasattr(block, MARK) for block in _blocks(model))
