"""Training for gen1: cached preprocessing, joint image+video training on Accelerate, customisation.

Modules, one job each:

* :mod:`~gen1.training.config`     typed dataclasses, YAML presets, ``key=value`` overrides;
* :mod:`~gen1.training.shards`     the safetensors shard format (writer, index, checked dataset);
* :mod:`~gen1.training.encoding`   clip pixels + depth -> latents, latent-grid depth, CLIP embeddings;
* :mod:`~gen1.training.preprocess` videos/images -> encoded clips -> shards;
* :mod:`~gen1.training.synthetic`  ``data.source: synthetic``: scenes rendered and encoded on the fly;
* :mod:`~gen1.training.sources`    the run's data source and the frozen encoders it needs;
* :mod:`~gen1.training.batch`      typed batches: rendered, encoded and noised clips, video and image parts;
* :mod:`~gen1.training.data`       joint image+video batches whose position is one integer;
* :mod:`~gen1.training.draws`      per-micro-batch draws: timesteps, noise, content frame and dropout, t_s;
* :mod:`~gen1.training.losses`     the objective as one module (one DDP forward per micro-batch);
* :mod:`~gen1.training.model`      base-model and scheduler loading, per-stage trainable parameters;
* :mod:`~gen1.training.ema`        EMA of the trainable weights (diffusers ``EMAModel``);
* :mod:`~gen1.training.checkpoint` atomic checkpoints and exact resume;
* :mod:`~gen1.training.validation` held-out loss and Gen1Pipeline samples (PNG strip, mp4, TensorBoard);
* :mod:`~gen1.training.trainer`    the Accelerate loop: setup, step, after-step;
* :mod:`~gen1.training.export`     the trained model written to ``OUTPUT/export``;
* :mod:`~gen1.training.interrupt`  Ctrl-C: checkpoint after the current step, then stop;
* :mod:`~gen1.training.launch`     refusing a launch whose processes Accelerate would not join;
* :mod:`~gen1.training.customize`  LoRA / full fine-tuning on a few images (adapters: :mod:`gen1.adapters`).

Nothing heavy is imported here; import the submodules you need.
"""
