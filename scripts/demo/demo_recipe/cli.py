"""What the scripts in ``scripts/demo`` share: loading a pipeline, and checking a ``--json`` output before a
long run."""

from __future__ import annotations

from pathlib import Path

import torch


def load_pipeline(model: str | Path | None = None):
    """The pipeline in ``model`` (default: the bundled demo model) in float32, without progress bars."""
    from gen1.demo import bundled_model_dir
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_pretrained(str(model or bundled_model_dir()))
    pipe.cast(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prepare_json_output(path: str | Path | None) -> Path | None:
    """Before a long run: create the folder of a ``--json`` output and check that it can be written there
    (``ValueError`` naming the path otherwise), so a run never fails after all its work. ``None`` passes."""
    from gen1.atomic import check_output_path

    if path is None:
        return None
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--json: cannot create the folder of {str(path)!r} ({err})") from None
    return check_output_path(path)
