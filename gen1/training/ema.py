"""Exponential moving average of the trainable weights (diffusers' ``EMAModel``, wrapped).

Only the trainable parameters are averaged -- the frozen base weights never change, so shadowing them
would double memory for nothing. The EMA weights are what :func:`gen1.training.trainer.train` exports.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from gen1.training.config import EMAConfig


def make_ema(params: Sequence[torch.nn.Parameter], config: EMAConfig):
    """An ``EMAModel`` over ``params`` or None when ``config.enabled`` is false."""
    if not config.enabled:
        return None
    from diffusers.training_utils import EMAModel  # lazy: diffusers is heavy and only this path needs it

    return EMAModel(list(params), decay=config.decay, use_ema_warmup=config.warmup)


@contextlib.contextmanager
def ema_weights(ema, params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Temporarily load the EMA weights into ``params`` (no-op when ``ema`` is None)."""
    if ema is None:
        yield
        return
    params = list(params)
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)
