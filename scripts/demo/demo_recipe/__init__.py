"""The recipe that trained the bundled demo model (``gen1/assets/demo-model``): not part of the installed library.

The scripts beside this folder import it (``python scripts/demo/NAME.py`` puts ``scripts/demo`` on the path);
the tests find it through pytest's ``pythonpath``. docs/demo.md tells how the shipped weights were made.

* :mod:`demo_recipe.data` -- rendered training batches (the demo world is :mod:`gen1.demo.world`);
* :mod:`demo_recipe.loop` -- a small resumable training loop with atomic checkpoints (component trainers);
* :mod:`demo_recipe.vae`, :mod:`demo_recipe.content`, :mod:`demo_recipe.depth` -- the component trainers,
  :mod:`demo_recipe.tokenizer` -- the caption tokenizer of the content encoder;
* :mod:`demo_recipe.unet` -- the random image-UNet base that ``gen1 train`` inflates;
* :mod:`demo_recipe.shards` -- synthetic clips -> ``gen1 train`` shards (VAE latents, depth, CLIP);
* :mod:`demo_recipe.assemble` -- the trained components -> the fp16 pipeline that ships;
* :mod:`demo_recipe.benchmark` -- :mod:`gen1.eval.edit_benchmark` on the demo world's held-out edits;
* :mod:`demo_recipe.diagnostics`, :mod:`demo_recipe.sufficiency` -- probes that explain the benchmark's numbers;
* :mod:`demo_recipe.cli` -- what the scripts share (loading a pipeline, checking ``--json`` before a run).
"""
