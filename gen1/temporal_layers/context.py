"""Frame context: how the temporal layers learn the clip length and which samples are in image mode.

diffusers' UNet blocks call their resnets and transformers with per-image tensors only (batch ``(b f)``),
so the temporal layers wrapped inside them cannot receive the number of frames or the per-sample image-mode
gate as arguments. :class:`VideoUNet` instead sets a :class:`FrameState` on a :class:`FrameContext` that its
own wrappers share, for the duration of one forward call, and clears it afterwards.

* One context per model (never a module-level global), so two models never see each other's state.
* The state is thread-local: two threads running the same model do not clash.
* Gradient checkpointing re-runs checkpointed modules during backward, after ``forward`` has returned and
  possibly on another thread (CUDA autograd workers). :meth:`FrameContext.checkpointing_func` wraps the
  checkpoint function so that the state captured at forward time is restored during the re-run.
* The gate: :func:`apply_gated` computes ``x + delta(x)`` only for video-mode samples and returns ``x``
  untouched for image-mode samples, so image mode reproduces the image model exactly (no ``0 * delta``
  arithmetic, which would also turn a non-finite delta into NaN). :func:`apply_gated_replace` is the same gate
  for layers that return their output rather than a delta.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
from einops import rearrange


@dataclass(frozen=True)
class FrameState:
    """Per-call state: frames per clip and which clips run in video mode.

    ``video_index`` is a long tensor of the sample indices (in ``0..B-1``) in video mode, on the model's
    device; ``None`` means every sample is in video mode.
    """

    num_frames: int
    num_samples: int
    video_index: Optional[torch.Tensor] = None

    @property
    def all_video(self) -> bool:
        return self.video_index is None or self.video_index.numel() == self.num_samples

    @property
    def all_image(self) -> bool:
        return self.video_index is not None and self.video_index.numel() == 0

    @classmethod
    def from_image_mode(
        cls, num_frames: int, image_mode: Optional[torch.Tensor], num_samples: int, device: torch.device | None = None
    ) -> "FrameState":
        """Build the state from a bool ``image_mode`` tensor of shape (B,) (True = temporal layers off).

        Pass the gate on the CPU: which samples are video samples is decided on the host, so a CUDA model
        needs no device synchronisation per forward (``.any()``/``nonzero`` on a CUDA gate would force one,
        and break ``torch.compile`` graphs). ``video_index`` is then moved to ``device``.
        """
        if image_mode is None or not bool(image_mode.any()):
            return cls(num_frames=num_frames, num_samples=num_samples, video_index=None)
        video_index = torch.nonzero(~image_mode, as_tuple=False).flatten()
        if device is not None:
            video_index = video_index.to(device, non_blocking=True)
        return cls(num_frames=num_frames, num_samples=num_samples, video_index=video_index)


class FrameContext:
    """Holds the :class:`FrameState` of the forward call in progress, per thread.

    Copies (``copy.deepcopy``, pickling) start empty: a copied model gets its own context, which the copied
    wrappers share because ``deepcopy`` keeps shared references shared.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __deepcopy__(self, memo) -> "FrameContext":
        return FrameContext()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._local = threading.local()

    def current(self) -> FrameState:
        """The active state; raises ``RuntimeError`` when a temporal layer runs outside ``VideoUNet.forward``."""
        state = getattr(self._local, "state", None)
        if state is None:
            raise RuntimeError(
                "a gen1 temporal layer ran without a frame context: call the model through VideoUNet.forward "
                "(and enable gradient checkpointing with VideoUNet.enable_gradient_checkpointing, not on .unet)"
            )
        return state

    @contextlib.contextmanager
    def active(self, state: FrameState) -> Iterator[FrameState]:
        """Make ``state`` current inside the block; the previous state (usually none) is restored after."""
        previous = getattr(self._local, "state", None)
        self._local.state = state
        try:
            yield state
        finally:
            self._local.state = previous

    def checkpointing_func(self, inner: Callable) -> Callable:
        """Wrap a diffusers gradient-checkpointing function ``inner(module, *args, **kwargs)`` so re-runs during
        backward see the same state."""

        def checkpoint_with_frame_state(module, *args, **kwargs):
            state = getattr(self._local, "state", None)
            if state is None:
                return inner(module, *args, **kwargs)

            def run(*inputs, **named):
                with self.active(state):
                    return module(*inputs, **named)

            return inner(run, *args, **kwargs)

        return checkpoint_with_frame_state


def apply_gated(x: torch.Tensor, delta_fn: Callable[[torch.Tensor, int], torch.Tensor], context: FrameContext) -> torch.Tensor:
    """Return ``x + delta_fn(x, F)`` for video-mode clips and ``x`` itself for image-mode clips.

    ``x`` has batch ``(b f)`` (clip-major). ``delta_fn`` receives only the rows of video-mode clips, so
    image-mode samples cost nothing and each clip's result does not depend on the other clips in the batch.
    """
    return apply_gated_replace(x, lambda video, frames: video + delta_fn(video, frames), context)


def apply_gated_replace(
    x: torch.Tensor, fn: Callable[[torch.Tensor, int], torch.Tensor], context: FrameContext
) -> torch.Tensor:
    """Return ``fn(x, F)`` for video-mode clips and ``x`` itself for image-mode clips.

    For temporal layers that add their own residual (AnimateDiff's motion modules): video clips get exactly
    what the layer computes, image clips exactly their input. ``fn`` sees only the video-mode rows, as in
    :func:`apply_gated`.
    """
    state = context.current()
    frames = state.num_frames
    if x.shape[0] != state.num_samples * frames:
        raise RuntimeError(
            f"temporal layer got a batch of {x.shape[0]} images, expected {state.num_samples} clips x {frames} frames"
        )
    if state.all_image:
        return x
    if state.all_video:
        return fn(x, frames)
    clips = rearrange(x, "(b f) ... -> b f ...", f=frames)
    video = rearrange(clips[state.video_index], "b f ... -> (b f) ...")
    result = rearrange(fn(video, frames), "(b f) ... -> b f ...", f=frames)
    return rearrange(clips.index_copy(0, state.video_index, result), "b f ... -> (b f) ...")
