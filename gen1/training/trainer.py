"""The Accelerate training loop: joint image+video batches, accumulation, EMA, checkpoints, export.

One function, :func:`train`, driven by a :class:`~gen1.training.config.Config`. It runs unchanged on one
CPU, one GPU or many processes under ``accelerate launch`` (DDP, or FSDP via ``train.distributed``).

Determinism and resuming: the batch of micro-step ``m`` (:class:`~gen1.training.data.JointBatchPlan`)
and its random draws (:func:`~gen1.training.noise.micro_generator`) are functions of ``(seed, rank, m)``,
and checkpoints restore weights, optimizer, EMA, LR schedule and RNG states, so a resumed run takes the
same steps as an uninterrupted one. Master weights stay float32; ``train.mixed_precision`` sets autocast.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from gen1.training.config import Config, config_to_dict

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run did: per-step mean losses, sample counts by kind, the last step, the export, the model."""

    losses: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=lambda: {"video": 0, "image": 0})
    step: int = 0
    resumed_from: Optional[str] = None
    export_dir: Optional[str] = None
    validation: list[tuple[int, float]] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # validation sample strips written (main process)
    unet: Optional[torch.nn.Module] = None  # the trained (unwrapped) VideoUNet of this process, raw weights


def make_accelerator(config: Config):
    """An ``Accelerator`` for the config: precision, DDP kwargs or the FSDP plugin, TensorBoard tracker."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    kwargs = dict(mixed_precision=config.train.mixed_precision, project_dir=config.train.output_dir)
    if config.train.tensorboard:
        kwargs["log_with"] = "tensorboard"
    if config.train.distributed == "fsdp":
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(use_orig_params=True)
    else:
        kwargs["kwargs_handlers"] = [
            DistributedDataParallelKwargs(find_unused_parameters=config.train.find_unused_parameters)]
    return Accelerator(**kwargs)


def _to_device(sub: Optional[dict], device) -> Optional[dict]:
    return None if sub is None else {k: v.to(device) for k, v in sub.items()}


def _hparams(config: Config) -> dict:
    flat = {}

    def walk(prefix, node):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk("", config_to_dict(config))
    return flat


@dataclass
class TrainingData:
    """Where batches come from: the dataset, its content size, and how a collated sub-batch becomes
    ``latents / depth / content`` on the device (identity for shards, VAE + CLIP for synthetic)."""

    dataset: object
    content_dim: int
    encoder: Optional[object] = None  # synthetic: SyntheticEncoder
    vae: Optional[torch.nn.Module] = None
    content_encoder: Optional[torch.nn.Module] = None

    def encode(self, sub: Optional[dict], generator: torch.Generator, device) -> Optional[dict]:
        if sub is None:
            return None
        if self.encoder is None:
            return _to_device(sub, device)
        return self.encoder(sub, generator, device=device)


def _encoder_dtype(config: Config, device) -> torch.dtype:
    if torch.device(device).type == "cuda" and config.train.mixed_precision == "bf16":
        return torch.bfloat16
    return torch.float32


def load_frozen_vae(config: Config, device):
    """The VAE from ``model.vae`` (default ``model.base``), frozen, in eval mode."""
    from gen1.training.components import load_vae

    vae = load_vae(config.model.vae or config.model.base, device, _encoder_dtype(config, device),
                   what="model.vae" if config.model.vae else "model.base")
    return vae.requires_grad_(False)


def load_frozen_content(config: Config, device):
    """The content encoder from ``model.content_encoder`` (default ``model.base/content_encoder``)."""
    from gen1.training.components import load_content

    encoder = load_content(config.model.base, config.model.content_encoder or None, device,
                           what="model.content_encoder")
    return encoder.requires_grad_(False)


def build_dataset(config: Config, device="cpu") -> TrainingData:
    """The training data for ``data.source``: cached shards, or synthetic scenes encoded on the fly."""
    needs_vae = config.validation.every > 0 and config.validation.samples
    if config.data.source == "shards":
        from gen1.training.shards import ShardDataset

        dataset = ShardDataset(config.data.shards)
        vae = load_frozen_vae(config, device) if needs_vae else None
        return TrainingData(dataset, dataset.content_dim, vae=vae)
    if config.data.source == "synthetic":
        from gen1.training.synthetic import SyntheticClips, SyntheticEncoder

        syn = config.data.synthetic
        vae, content = load_frozen_vae(config, device), load_frozen_content(config, device)
        encoder = SyntheticEncoder(vae, content, content_frames=syn.content_frames, batch=syn.encode_batch)
        return TrainingData(SyntheticClips(syn), encoder.content_dim, encoder=encoder, vae=vae,
                            content_encoder=content)
    raise ValueError(f"data.source must be 'shards' or 'synthetic', got {config.data.source!r}")


def _held_out(config: Config, data: TrainingData):
    from gen1.training.validation import held_out_from_shards, held_out_synthetic

    if data.encoder is not None:
        return held_out_synthetic(config, data.encoder)
    return held_out_from_shards(data.dataset, data.vae)


def train(config: Config, *, stop_at: Optional[int] = None,
          on_step: Optional[Callable[[int, float], None]] = None) -> TrainResult:
    """Run (or resume) training as configured; return a :class:`TrainResult` (meaningful on every rank).

    ``stop_at`` ends the loop after that many optimizer steps without exporting -- it simulates a job
    being pre-empted (tests use it to check that resuming reproduces an uninterrupted run).
    """
    from diffusers.optimization import get_scheduler

    from gen1.training import checkpoint as ckpt
    from gen1.training.data import JointBatchPlan, make_loader
    from gen1.training.ema import ema_weights, make_ema
    from gen1.training.losses import DiffusionObjective
    from gen1.training.model import (data_clip_length, load_noise_scheduler, load_video_unet,
                                      optimizer_groups, record_clip_length, select_trainable)
    from gen1.training.noise import draw_conditioning, micro_generator, model_inputs

    config.validate()
    accelerator = make_accelerator(config)
    rank, world = accelerator.process_index, accelerator.num_processes
    data = build_dataset(config, accelerator.device)
    dataset, content_dim = data.dataset, data.content_dim
    torch.manual_seed(config.train.seed)  # identical temporal-layer init on every rank

    unet = load_video_unet(config.model, content_dim=content_dim)
    record_clip_length(unet, data_clip_length(config, dataset))  # the pipeline's default window
    noise_scheduler = load_noise_scheduler(config.model.base)
    prediction_type = config.diffusion.prediction_type or noise_scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"the base scheduler's prediction_type {prediction_type!r} is not supported "
                         "(set diffusion.prediction_type to 'epsilon' or 'v_prediction')")
    if unet.content_dim != content_dim:
        raise ValueError(f"the model takes content of size {unet.content_dim}, the data has {content_dim}")
    if config.model.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    params = select_trainable(unet, config.model.trainable)
    trainable = list(params.values())

    optimizer = torch.optim.AdamW(optimizer_groups(params, config.model.trainable, config.optim.weight_decay),
                                  lr=config.optim.lr, betas=(config.optim.beta1, config.optim.beta2),
                                  eps=config.optim.eps, weight_decay=config.optim.weight_decay)
    lr_scheduler = get_scheduler(config.optim.lr_schedule, optimizer, num_warmup_steps=config.optim.warmup_steps,
                                 num_training_steps=config.train.max_steps)
    objective, optimizer = accelerator.prepare(DiffusionObjective(unet), optimizer)
    ema = make_ema(trainable, config.ema)
    if ema is not None:
        ema.to(accelerator.device)
    fsdp = config.train.distributed == "fsdp"

    result = TrainResult()
    start = 0
    resume = ckpt.resolve_resume(config.train.output_dir, config.train.resume)
    if resume is not None:
        state = ckpt.load_checkpoint(accelerator, resume, params=params, optimizer=optimizer,
                                     lr_scheduler=lr_scheduler, ema=ema, fsdp=fsdp)
        if ema is not None:
            ema.to(accelerator.device)
        start = int(state["step"])
        result.resumed_from = str(resume)
        accelerator.print(f"resumed from {resume} at step {start}")
    if config.train.tensorboard:
        accelerator.init_trackers("gen1", config=_hparams(config))

    accum = config.train.grad_accum
    plan = JointBatchPlan(dataset.is_image, batch_size=config.data.batch_size, image_ratio=config.data.image_ratio,
                          seed=config.train.seed, rank=rank, world_size=world)
    batches = iter(make_loader(dataset, plan, start=start * accum, num_workers=config.data.num_workers))
    device = accelerator.device
    end = config.train.max_steps if stop_at is None else min(stop_at, config.train.max_steps)

    from tqdm.auto import tqdm

    progress = tqdm(range(start, end), initial=start, total=end, disable=not accelerator.is_local_main_process,
                    desc="train")
    step = start
    held = None
    for step in progress:
        step_loss = 0.0
        for a in range(accum):
            m = step * accum + a
            batch = next(batches)
            gen = micro_generator(config.train.seed, rank, m)
            data_gen = micro_generator(config.train.seed, rank, m, stream=1)
            subs = {}
            for kind in ("video", "image"):
                sub = data.encode(batch[kind], data_gen, device)
                if sub is not None:
                    result.seen[kind] += sub["latents"].shape[0]
                    sub = model_inputs(draw_conditioning(sub, noise_scheduler, config.diffusion, gen, prediction_type))
                subs[kind] = sub
            sync = a == accum - 1
            context = accelerator.no_sync(objective) if not sync and world > 1 else contextlib.nullcontext()
            with context:
                with accelerator.autocast():  # the forward only: PyTorch advises against backward under autocast
                    loss, _ = objective(subs["video"], subs["image"])
                accelerator.backward(loss / accum)
            step_loss += loss.detach().item() / accum
        if config.optim.max_grad_norm > 0:
            accelerator.clip_grad_norm_(trainable, config.optim.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(trainable)
        done = step + 1
        result.losses.append(step_loss)
        result.steps.append(done)
        if on_step is not None:
            on_step(done, step_loss)
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"training loss became {step_loss} at step {done}")
        if done % config.train.log_every == 0 or done == end:
            progress.set_postfix(loss=f"{step_loss:.4f}")
            if config.train.tensorboard:
                accelerator.log({"train/loss": step_loss, "train/lr": lr_scheduler.get_last_lr()[0],
                                 "train/epoch": plan.epoch_of(done * accum)}, step=done)
        if config.validation.every and done % config.validation.every == 0:
            if held is None:
                held = _held_out(config, data)
            with ema_weights(ema, trainable):
                run_validation(accelerator, objective, held, data, noise_scheduler, config, prediction_type, done,
                               result)
        if done % config.train.checkpoint_every == 0 or done == config.train.max_steps:
            unwrapped = accelerator.unwrap_model(objective).unet
            weights = {n: p for n, p in unwrapped.named_parameters() if n in params}
            ckpt.save_checkpoint(accelerator, config.train.output_dir, done, trainable=weights, optimizer=optimizer,
                                 lr_scheduler=lr_scheduler, ema=ema, fsdp=fsdp, keep=config.train.keep_checkpoints,
                                 state=dict(micro_step=done * accum, epoch=plan.epoch_of(done * accum),
                                            world_size=world, trainable=config.model.trainable))
        step = done
    result.step = step if end > start else start
    result.unet = accelerator.unwrap_model(objective).unet

    if stop_at is None and config.train.export and result.step >= config.train.max_steps:
        result.export_dir = str(export_model(accelerator, objective, ema, trainable, config, data))
    if config.train.tensorboard:
        accelerator.end_training()
    return result


def run_validation(accelerator, objective, held, data: TrainingData, noise_scheduler, config: Config,
                   prediction_type: str, step: int, result: TrainResult) -> None:
    """Held-out loss (every process) and, on the main process, a pipeline sample written and logged."""
    from gen1.training.validation import make_pipeline, sample, validation_loss, write_sample

    value = validation_loss(objective, held, noise_scheduler, config, prediction_type, accelerator.device)
    result.validation.append((step, value))
    if config.train.tensorboard:
        accelerator.log({"val/loss": value}, step=step)
    if not config.validation.samples:
        return
    if config.train.distributed == "fsdp":
        if step == config.validation.every:
            logger.warning("validation.samples is skipped under FSDP (the UNet is sharded across processes)")
        return
    if accelerator.is_main_process:
        unet = accelerator.unwrap_model(objective).unet
        pipe = make_pipeline(data.vae, unet, noise_scheduler, data.content_encoder)
        with accelerator.autocast():
            output = sample(pipe, held, config)
        written = write_sample(Path(config.train.output_dir) / "samples", step, held.frames, output,
                               mp4=config.validation.mp4)
        result.samples.append(written["png"])
        if config.train.tensorboard:
            writer = accelerator.get_tracker("tensorboard", unwrap=True)
            writer.add_image("val/sample", written["strip"], global_step=step, dataformats="HWC")
    accelerator.wait_for_everyone()


def export_model(accelerator, objective, ema, trainable, config: Config, data: Optional[TrainingData] = None) -> Path:
    """Save the trained VideoUNet (EMA weights when enabled) to ``OUTPUT/export``, atomically.

    ``export/unet/`` is a ``save_pretrained`` folder, ``export/temporal.safetensors`` the new layers only,
    ``export/scheduler/`` the training scheduler (so the export can be ``model.base`` of a later stage), and
    ``export/training.json`` records what trained (``trainable``, ``stage``, ``clip_length``) so that
    :meth:`gen1.pipeline.Gen1Pipeline.from_stable_diffusion` can warn when ``temporal.safetensors`` alone would
    drop trained image weights. When the run loaded frozen encoders (synthetic source, validation samples),
    float32 copies are saved too (``export/vae/``, ``export/content_encoder/``; see :func:`save_frozen_encoders`).
    """
    import json

    from gen1.atomic import atomic_directory
    from gen1.training.ema import ema_weights
    from gen1.training.model import load_noise_scheduler

    target = Path(config.train.output_dir) / "export"
    accelerator.wait_for_everyone()
    unet = accelerator.unwrap_model(objective).unet
    if accelerator.is_main_process:
        with ema_weights(ema, trainable), atomic_directory(target) as tmp:
            unet.save_pretrained(str(Path(tmp) / "unet"))
            unet.save_new_layers(str(Path(tmp) / "temporal.safetensors"))
            load_noise_scheduler(config.model.base).save_pretrained(str(Path(tmp) / "scheduler"))
            save_frozen_encoders(data, Path(tmp))
            record = {"trainable": config.model.trainable, "stage": config.stage,
                      "clip_length": unet.config.clip_length}
            (Path(tmp) / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    accelerator.wait_for_everyone()
    return target


EXPORT_RECORD = "training.json"


def save_frozen_encoders(data: Optional[TrainingData], folder: Path) -> None:
    """Save float32 copies of the run's frozen VAE / content encoder (if loaded) to ``folder/vae`` and
    ``folder/content_encoder``, whatever dtype they ran in (bf16 on CUDA with the presets), so the export can be
    the ``model.base`` of a later stage. The copies leave the modules in use untouched."""
    import copy

    for name in ("vae", "content_encoder"):
        module = getattr(data, name, None)
        if module is not None:
            torch.nn.Module.to(copy.deepcopy(module), dtype=torch.float32).save_pretrained(str(folder / name))
