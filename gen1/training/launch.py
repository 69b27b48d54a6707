"""How many processes a run was launched as, and refusing a launch that would not train as one job.

``accelerate launch --multi_gpu --num_processes N`` (torchrun underneath) on a machine without GPUs starts N
processes that each see one process: Accelerate joins them only on GPUs or with ``ACCELERATE_USE_CPU=true``, so
they would run N independent jobs into one output folder. Without ``--multi_gpu`` (and without several GPUs)
``accelerate launch --num_processes N`` starts a single process. Both are refused here, naming the command
that works on CPU: ``ACCELERATE_USE_CPU=true torchrun --nproc_per_node N -m gen1 <command> ...``.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

UNDER_ACCELERATE_LAUNCH = "ACCELERATE_DYNAMO_BACKEND"  # set by accelerate launch for the program it starts


def launched_processes(env: Mapping[str, str]) -> Optional[int]:
    """The number of processes the launcher started (``WORLD_SIZE``), 0 when ``accelerate launch`` was asked for
    several but started one (it sets ``MASTER_ADDR`` only then), or None when the environment does not say."""
    if env.get("WORLD_SIZE", "").isdigit():
        return int(env["WORLD_SIZE"])
    if UNDER_ACCELERATE_LAUNCH in env and "MASTER_ADDR" in env and "RANK" not in env:
        return 0
    return None


def program_and_args(argv: Sequence[str]) -> str:
    """``-m gen1 ARGS`` for the gen1 command (``python -m gen1`` or the ``gen1`` script), else ``SCRIPT ARGS``."""
    program = Path(argv[0]) if argv else Path("gen1")
    is_gen1 = program.name == "gen1" or (program.name == "__main__.py" and program.parent.name == "gen1")
    return shlex.join(["-m", "gen1", *argv[1:]] if is_gen1 else list(argv))


def check_process_count(seen: int, *, env: Optional[Mapping[str, str]] = None,
                        argv: Optional[Sequence[str]] = None) -> None:
    """Raise ``ValueError`` when the launcher asked for more processes than the run sees (``seen``), naming the
    command that works on CPU. ``env`` / ``argv``: default this process's environment and ``sys.argv``."""
    env = os.environ if env is None else env
    launched = launched_processes(env)
    if launched is None or launched == 1 or seen > 1:
        return
    run = program_and_args(sys.argv if argv is None else argv)
    if launched == 0:
        raise ValueError("accelerate launch was asked for several processes but started one: without GPUs "
                         "--num_processes needs --multi_gpu, and with it the CPU processes would run alone. On CPU "
                         f"run: ACCELERATE_USE_CPU=true torchrun --nproc_per_node N {run}; on N GPUs: accelerate "
                         f"launch --multi_gpu --num_processes N {run}")
    raise ValueError(f"this run was launched as {launched} processes (WORLD_SIZE={launched}) but Accelerate joined "
                     "none of them (no GPU, and ACCELERATE_USE_CPU is not set), so they would run as independent "
                     f"jobs into one output folder. On CPU run: ACCELERATE_USE_CPU=true torchrun --nproc_per_node "
                     f"{launched} {run}")
