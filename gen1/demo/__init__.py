"""The bundled demo model: a small Gen-1 trained by gen1's own code on synthetic scenes.

Submodules (imported on use so ``import gen1.demo`` stays light):

* :mod:`gen1.demo.data` -- seed policy (training vs held-out seeds) and batches of rendered frames;
* :mod:`gen1.demo.loop` -- a small resumable training loop with atomic checkpoints (component trainers);
* :mod:`gen1.demo.vae`, :mod:`gen1.demo.content`, :mod:`gen1.demo.depth` -- the component trainers;
* :mod:`gen1.demo.shards` -- synthetic clips -> ``gen1 train`` shards (VAE latents, exact depth, CLIP);
* :mod:`gen1.demo.assemble` -- the :class:`~gen1.pipeline.Gen1Pipeline` that ships in ``gen1/assets/demo``.

:func:`bundled_model_dir` is where ``gen1 edit`` finds the model when ``--model`` is not given.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_SUBDIR = ("assets", "demo-model")

DEMO_GUIDANCE = 1.0
"""Content guidance w the demo and its benchmark use by default. On the 32 held-out edits (docs/demo.md)
the bundled model scores higher PSNR at every structure level and at least the same style accuracy with
w = 1 than with w = 3 (guidance over-saturates the palette this small model renders), and w = 1 needs one
UNet pass per step instead of two."""


def bundled_model_dir() -> Path:
    """The directory of the bundled demo pipeline (``gen1/assets/demo-model``, where
    ``gen1 edit`` already looks when ``--model`` is not given).

    Raises ``FileNotFoundError`` if the package was installed without its data files.
    """
    path = Path(__file__).resolve().parents[1].joinpath(*BUNDLED_SUBDIR)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"the bundled demo model is missing: no model_index.json in {str(path)!r} "
                                "(reinstall gen1 with its package data, or pass --model)")
    return path
