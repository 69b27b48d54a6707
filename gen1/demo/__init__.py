"""The bundled demo model: a small Gen-1 trained by gen1's own code on synthetic scenes.

What the library needs at run time, and nothing more (the recipe that trained the model lives in
``scripts/demo``, docs/demo.md describes it):

* :func:`bundled_model_dir` -- where the pipeline ships (``gen1/assets/demo-model``; ``gen1 edit`` loads it
  when ``--model`` is not given);
* :data:`DEMO_GUIDANCE` -- the content guidance the demo uses by default;
* :mod:`gen1.demo.world` -- the synthetic world it was trained on and its held-out edit cases;
* :mod:`gen1.demo.showcase` -- ``gen1 demo``: edit a sample clip and show the result.

Submodules are imported on use, so ``import gen1.demo`` stays light.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_SUBDIR = ("assets", "demo-model")

DEMO_GUIDANCE = 1.0
"""Content guidance w that ``gen1 demo`` and the demo's benchmark use by default. The bundled model renders a
small palette that guidance over-saturates: on its held-out edits w = 1 scores higher PSNR at every structure
level and at least the same style accuracy as w = 3 (docs/demo.md), and needs one UNet pass per step
instead of two."""


def bundled_model_dir() -> Path:
    """The directory of the bundled demo pipeline (``gen1/assets/demo-model``).

    Raises ``FileNotFoundError`` if the package was installed without its data files.
    """
    path = Path(__file__).resolve().parents[1].joinpath(*BUNDLED_SUBDIR)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"the bundled demo model is missing: no model_index.json in {str(path)!r} "
                                "(reinstall gen1 with its package data, or pass --model)")
    return path
