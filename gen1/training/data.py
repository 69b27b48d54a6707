"""Joint image + video batching whose position is a single integer.

Videos (``F`` frames) and images (1-frame clips trained in image mode) have different frame counts, so a
batch is two parts, ``video`` and ``image`` (a :class:`~gen1.training.batch.JointBatch`), each stacked on its
own and sent through the UNet in its own forward (inside one module call, see :mod:`gen1.training.losses`).
Padding images to ``F`` frames was rejected: it wastes compute and would need masks in the temporal layers.

Every micro-batch is a pure function of its global index ``m``:

* the global batch has ``batch_size * world_size`` slots; slot counts of images follow a Bresenham
  schedule, ``floor((m+1)*G*r) - floor(m*G*r)``, so the long-run image fraction is exactly ``r``;
* images and videos are two endless streams, each a fresh seeded permutation per pass (epoch), and
  the position in each stream after ``m`` micro-batches is known in closed form;
* slot ``j`` goes to rank ``j % world_size`` so images spread across processes.

Resuming therefore needs only the step counter (saved in checkpoints as the data position); no
sampler state can drift, and DataLoader workers may prefetch freely. Which clip fills slot ``j`` of micro-batch
``m`` depends on the global batch ``G`` only, never on how the slots are split over processes, and the random
draws of a sample are keyed by its slot (:func:`gen1.training.draws.slot_generators`), so the same ``G`` at any
world size trains on the same samples with the same draws, and a run may resume at another world size.
"""

from __future__ import annotations

import functools
import math
from typing import Iterator, Sequence

import torch

from gen1.training.batch import collate_joint


class JointBatchPlan:
    """Which dataset indices micro-batch ``m`` holds on process ``rank``."""

    def __init__(self, is_image: Sequence[bool], *, batch_size: int, image_ratio: float, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.video_ids = [i for i, flag in enumerate(is_image) if not flag]
        self.image_ids = [i for i, flag in enumerate(is_image) if flag]
        if not self.video_ids and not self.image_ids:
            raise ValueError("the training data holds no clips")
        if not self.image_ids:
            image_ratio = 0.0
        elif not self.video_ids:
            image_ratio = 1.0
        self.image_ratio = image_ratio
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._perms: dict[tuple[int, int, int], list[int]] = {}

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def _images_before(self, m: int) -> int:
        return math.floor(m * self.global_batch * self.image_ratio + 1e-9)

    def _perm(self, n: int, epoch: int, salt: int) -> list[int]:
        """The seeded permutation of ``range(n)`` for one pass; the last few are cached (one ``randperm`` per
        pass instead of per sample: at a million clips that is 0.3 s per micro-batch saved)."""
        key = (n, epoch, salt)
        perm = self._perms.get(key)
        if perm is None:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 2 + salt)
            perm = torch.randperm(n, generator=gen).tolist()
            if len(self._perms) >= 4:
                self._perms.pop(next(iter(self._perms)))  # oldest first (dicts keep insertion order)
            self._perms[key] = perm
        return perm

    def _stream(self, ids: list[int], positions, salt: int) -> list[int]:
        """Items at ``positions`` of an endless stream of per-epoch permutations of ``ids``."""
        n = len(ids)
        out = []
        for k in positions:
            epoch, pos = divmod(k, n)
            out.append(ids[self._perm(n, epoch, salt)[pos]])
        return out

    def epoch_of(self, m: int) -> float:
        """Passes over the video data (or image data if there are no videos) before micro-batch ``m``."""
        if self.video_ids:
            return (m * self.global_batch - self._images_before(m)) / len(self.video_ids)
        return self._images_before(m) / len(self.image_ids)

    def image_only_batches(self) -> bool:
        """Whether some process's micro-batch can hold images only (the temporal layers then get no gradient there):
        a micro-batch's image slots are the global batch's first ``n_img`` (the floor or the ceiling of global batch
        x image_ratio), and a process's last slot is ``rank + W x (batch_size - 1)``, so rank 0's micro-batch is
        images only when ``n_img`` exceeds ``W x (batch_size - 1)``."""
        most_images = math.ceil(self.global_batch * self.image_ratio - 1e-9)
        return most_images > self.world_size * (self.batch_size - 1)

    def slots(self, m: int) -> tuple[list[int], list[int]]:
        """The global slots of micro-batch ``m`` this rank holds: ``(image slots, video slots)``, in the order
        :meth:`batch` lists their clips (the global batch's ``n_img`` image slots come first, then videos)."""
        n_img = self._images_before(m + 1) - self._images_before(m)
        mine = range(self.rank, self.global_batch, self.world_size)
        return [j for j in mine if j < n_img], [j for j in mine if j >= n_img]

    def batch(self, m: int) -> list[int]:
        """Dataset indices of micro-batch ``m`` for this rank (images first, then videos).

        Of the global batch's slots (``n_img`` images, then videos) this rank holds ``rank, rank + W, ...``
        (:meth:`slots`); only those are computed.
        """
        img_start = self._images_before(m)
        n_img = self._images_before(m + 1) - img_start
        vid_start = m * self.global_batch - img_start
        image_slots, video_slots = self.slots(m)
        images = self._stream(self.image_ids, [img_start + j for j in image_slots], salt=1)
        videos = self._stream(self.video_ids, [vid_start + j - n_img for j in video_slots], salt=0)
        return images + videos


class PlannedBatches(torch.utils.data.Sampler):
    """A batch sampler yielding ``plan.batch(m)`` for ``m = start, start+1, ...`` (endless)."""

    def __init__(self, plan: JointBatchPlan, start: int = 0):
        self.plan = plan
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        m = self.start
        while True:
            yield self.plan.batch(m)
            m += 1


def make_loader(dataset, plan: JointBatchPlan, *, start: int, part: type, num_workers: int = 0):
    """A DataLoader over ``dataset`` following ``plan`` from micro-batch ``start``, yielding
    :class:`~gen1.training.batch.JointBatch` es of ``part`` (see :func:`~gen1.training.batch.collate_joint`)."""

    return torch.utils.data.DataLoader(dataset, batch_sampler=PlannedBatches(plan, start),
                                       collate_fn=functools.partial(collate_joint, part=part), num_workers=num_workers)
