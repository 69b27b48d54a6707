"""Encoder factories for the Ray preprocessing tests, importable by Ray's worker processes (which find this
folder on PYTHONPATH, set by the test before ``ray.init``)."""

from __future__ import annotations

import os
from pathlib import Path

from training_helpers import make_encoder


def tiny_encoder(sd_dir: str, device: str):
    """The tests' tiny ClipEncoder (deterministic weights), as ``make_encoder(device)`` of the Ray engine; it
    encodes with one thread, as the test's classic run does (Ray leaves an OMP_NUM_THREADS the caller set to its
    workers, and another thread count sums floats in another order), so the shards compare bit for bit."""
    import torch

    torch.set_num_threads(1)
    return make_encoder(Path(sd_dir))


class DiesOnce:
    """A ClipEncoder that kills its process the first time any actor calls it (``marker`` records that)."""

    def __init__(self, encoder, marker: str):
        self.encoder, self.marker = encoder, marker

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def __call__(self, frames):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return self.encoder(frames)
        os.close(fd)
        os._exit(1)  # the actor dies mid-shard, as a crashed or pre-empted GPU worker would


def dying_encoder(sd_dir: str, marker: str, device: str):
    return DiesOnce(tiny_encoder(sd_dir, device), marker)
