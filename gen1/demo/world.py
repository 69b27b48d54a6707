"""The demo world: the synthetic scenes the bundled model was trained on, its seed policy, and the held-out
edit cases that ``gen1 demo`` shows and the demo's benchmark scores.

Seeds: training uses scene/style seeds in ``[0, TRAIN_SEEDS)``; every evaluation uses seeds from
``HELD_OUT_START`` upward, so no held-out scene or style was seen in training.

Scenes: :func:`gen1.synthetic.sample_scene` with the camera rolled up to ``MAX_ROLL`` degrees. With a
level camera the horizon sits at about the same height in every frame, so the layout is mostly predictable
without depth; a rolled camera makes the layout something only the structure input can tell, which is what
the demo model must learn and what its evaluation measures (docs/demo.md).
"""

from __future__ import annotations

TRAIN_SEEDS = 1_000_000
HELD_OUT_START = 10_000_000
FRAME_SIZE = 64  # the bundled model's frame size (64x64 frames, 16x16 latents)
MAX_ROLL = 90.0  # degrees: horizons from vertical to vertical, never upside down
EDIT_SOURCE_OFFSET = 100_000  # held-out edit case i: source scene/style HELD_OUT_START + this + i
EDIT_TARGET_OFFSET = 200_000  # ... and target style / reference scene HELD_OUT_START + this + i


def demo_scene(seed: int):
    """Scene ``seed`` of the demo world (see the module docstring)."""
    from gen1.synthetic import sample_scene  # lazy: keeps this module's import light (no torch when it loads)

    return sample_scene(seed, max_roll=MAX_ROLL)


def edit_case(index: int, *, frames: int = 8, size: int = FRAME_SIZE):
    """Held-out edit case ``index`` of the demo world (a :class:`gen1.eval.edit_benchmark.EditCase`)."""
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.eval.edit_benchmark import synthetic_edit_case

    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    source_seed = HELD_OUT_START + EDIT_SOURCE_OFFSET + index
    target_seed = HELD_OUT_START + EDIT_TARGET_OFFSET + index
    return synthetic_edit_case(source_seed, target_seed, frames=frames, size=size, scene_of=demo_scene)
