"""Ctrl-C (or SIGTERM) during training keeps the work: the first one asks the loop to stop after the current step
(it then saves a checkpoint and raises :class:`TrainingInterrupted`), a second one quits at once. SIGTERM is what
schedulers, containers and ``kill`` send (Slurm before a job's time runs out), so it is treated exactly as Ctrl-C.

Under several processes every rank gets the signal (a terminal sends it to the whole process group), but not
necessarily within the same step, so the ranks agree on it after each step (one tiny all-reduce) before they
write the checkpoint together.

Under ``torchrun`` or ``accelerate launch`` (a torch elastic launcher: ``TORCHELASTIC_RUN_ID`` is set) the launcher
forwards every SIGINT or SIGTERM it receives to its workers (then raises ``SignalException`` and prints its
traceback, which no worker can prevent). Where the workers share the terminal's process group (launchers that do
not start them in a session of their own; Slurm, which signals every process of a job step) one Ctrl-C can then
reach a worker twice, and counted as a second one that echo quit at once, in the middle of the checkpoint when it
came late enough. So there a repeat of the *same* signal within :data:`LAUNCHER_ECHO_SECONDS` of the first is taken
as the same one; a different one quits (torch 2.14's launcher relays a second Ctrl-C as SIGTERM). The launcher
kills its workers ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` seconds (30) after forwarding: the checkpoint must be written
by then.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional

#: Under a torch elastic launcher, the same signal this soon after the first is an echo of it, not a second.
LAUNCHER_ECHO_SECONDS = 2.0


def under_elastic_launcher(env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether this process is a worker of ``torchrun`` / ``accelerate launch`` (torch elastic sets
    ``TORCHELASTIC_RUN_ID`` for its workers), whose launcher forwards the signals it receives to them."""
    return "TORCHELASTIC_RUN_ID" in (os.environ if env is None else env)


def launcher_note(env: Optional[Mapping[str, str]] = None) -> str:
    """A line saying that the launcher's ``SignalException`` traceback, printed after gen1's message, reports the
    same Ctrl-C ("" outside a torch elastic launcher)."""
    if not under_elastic_launcher(env):
        return ""
    return ("\n(the launcher then reports the same Ctrl-C with a SignalException traceback: the checkpoint above "
            "is complete)")


class TrainingInterrupted(Exception):
    """Training stopped on request after optimizer step ``step``; ``checkpoint`` resumes it."""

    def __init__(self, step: int, checkpoint: Optional[str], main_process: bool = True, *, processes: int = 1,
                 global_batch: Optional[int] = None):
        super().__init__(f"interrupted after step {step}; checkpoint: {checkpoint}")
        self.step, self.checkpoint, self.main_process = step, checkpoint, main_process
        # the resume must keep the global batch (data.batch_size x processes): the hint gives both ways
        self.processes, self.global_batch = processes, global_batch


@dataclass
class StopRequest:
    """Set by the first Ctrl-C while :func:`stop_on_interrupt` is active."""

    asked: bool = False


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[StopRequest]:
    """While active, the first SIGINT or SIGTERM sets ``asked``; a second one raises ``KeyboardInterrupt`` (for
    SIGTERM, :class:`gen1.atomic.Terminated`, a ``KeyboardInterrupt``) as usual. Under a torch elastic launcher a
    repeat of the same signal within :data:`LAUNCHER_ECHO_SECONDS` of the first is an echo of it (see the module)
    and is ignored.

    Signal handlers live in the main thread only; elsewhere (a training loop driven from another thread) Ctrl-C
    keeps its default behaviour.
    """
    from gen1.atomic import Terminated  # lazy: keeps this module's import light (no torch when it loads)

    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    echoes = under_elastic_launcher()
    first_at, first_signal = [0.0], [None]

    def quit_now(signum, frame):
        if echoes and signum == first_signal[0] and time.monotonic() - first_at[0] < LAUNCHER_ECHO_SECONDS:
            return  # the first signal again, forwarded by the launcher
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)

    def first(signum, frame):
        request.asked = True
        first_at[0], first_signal[0] = time.monotonic(), signum
        for each in previous:  # a second signal quits at once
            signal.signal(each, quit_now)

    for signum in previous:
        signal.signal(signum, first)
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def agreed(accelerator, request: StopRequest) -> bool:
    """True on every process when any process was asked to stop (an all-reduce when there are several)."""
    if accelerator.num_processes == 1:
        return request.asked
    import torch  # lazy: torch is heavy and only this path needs it

    flag = torch.tensor([1.0 if request.asked else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
