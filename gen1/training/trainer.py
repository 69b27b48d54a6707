"""The Accelerate training loop: joint image+video batches, accumulation, EMA, checkpoints, export.

:func:`train` runs a :class:`~gen1.training.config.Config` unchanged on one CPU, one GPU or many processes
under ``accelerate launch`` (DDP, or FSDP via ``train.distributed``). It is three parts: :func:`setup` builds
a :class:`Run` (model, optimizer, EMA, data plan; resumed from a checkpoint when asked), :func:`train_step`
takes one optimizer step of ``grad_accum`` micro-batches, and :func:`after_step` logs, validates and saves.

Determinism and resuming: the global batch of micro-step ``m`` (:class:`~gen1.training.data.JointBatchPlan`)
and the random draws of each of its samples (:func:`~gen1.training.draws.slot_generators`) are functions of
``(seed, m, global slot)``, never of the rank, and the loss is the mean over the global batch, so the same global
batch (``data.batch_size`` x processes) gives the same update at any world size. Checkpoints restore weights,
optimizer, EMA, LR schedule and RNG states, so a resumed run takes the same steps as an uninterrupted one, also
when it resumes at another world size with the same global batch (see :mod:`gen1.training.checkpoint`).
Master weights stay float32; ``train.mixed_precision`` sets autocast.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from gen1.training.batch import JointBatch
from gen1.training.checkpoint import check_fresh_output, checkpoint_path
from gen1.training.config import Config, config_to_dict
from gen1.training.data import JointBatchPlan, make_loader
from gen1.training.draws import draw_joint, joint_slot_generators
from gen1.training.ema import ema_weights, make_ema
from gen1.training.export import export_model
from gen1.training.interrupt import TrainingInterrupted, agreed, stop_on_interrupt
from gen1.training.launch import check_process_count
from gen1.training.losses import DiffusionObjective
from gen1.training.model import (build_unet, load_noise_scheduler, optimizer_groups, select_trainable,
                                  temporal_layer_names)
from gen1.training.run import Run
from gen1.training.sources import build_dataset, held_out
from gen1.training.validation import make_pipeline, sample, validation_loss, write_sample

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
    main_process: bool = True  # whether this process is the main one (it alone reports)


def make_accelerator(config: Config):
    """An ``Accelerator`` for the config: precision, DDP kwargs or the FSDP plugin, TensorBoard tracker."""
    from accelerate import Accelerator  # lazy: accelerate is heavy and only this path needs it
    from accelerate.utils import DistributedDataParallelKwargs  # lazy: accelerate is heavy and only this path needs it

    kwargs = dict(mixed_precision=config.train.mixed_precision, project_dir=config.train.output_dir)
    if config.train.tensorboard:
        kwargs["log_with"] = "tensorboard"
    if config.train.distributed == "fsdp":
        from accelerate import FullyShardedDataParallelPlugin  # lazy: accelerate is heavy and only this path needs it

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(use_orig_params=True)
    else:
        # find_unused_parameters is set once the trainable parameters and the batches are known (setup)
        kwargs["kwargs_handlers"] = [DistributedDataParallelKwargs()]
    return Accelerator(**kwargs)


def check_fsdp(config: Config, accelerator) -> None:
    """Refuse ``train.distributed: fsdp`` when Accelerate did not set the run up for FSDP (on CPU, or one device):
    it accepts the plugin and runs without it, and the first FSDP checkpoint would then fail."""
    from accelerate.utils import DistributedType  # lazy: accelerate is heavy and only this path needs it

    if config.train.distributed == "fsdp" and accelerator.distributed_type != DistributedType.FSDP:
        raise ValueError(f"train.distributed is 'fsdp' but Accelerate runs this job as "
                         f"{accelerator.distributed_type.value} on {accelerator.device.type}: FSDP needs several GPU "
                         "processes (accelerate launch --multi_gpu --num_processes N); use train.distributed=ddp here")


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


def make_optimizer(config: Config, params: dict[str, torch.nn.Parameter]):
    """AdamW over the trainable parameters and the LR schedule of ``optim``."""
    from diffusers.optimization import get_scheduler  # lazy: diffusers is heavy and only this path needs it

    optim = config.optim
    optimizer = torch.optim.AdamW(optimizer_groups(params, config.model.trainable, optim.weight_decay), lr=optim.lr,
                                  betas=(optim.beta1, optim.beta2), eps=optim.eps, weight_decay=optim.weight_decay)
    lr_scheduler = get_scheduler(optim.lr_schedule, optimizer, num_warmup_steps=optim.warmup_steps,
                                 num_training_steps=config.train.max_steps)
    return optimizer, lr_scheduler


def find_unused_parameters(config: Config, unet, params: dict, plan: JointBatchPlan) -> bool:
    """DDP's ``find_unused_parameters`` for this run: ``train.find_unused_parameters`` when set, else True only
    when some trainable parameters can get no gradient in a micro-batch: the temporal layers train and a process's
    micro-batch can hold images only (image mode gates them off). Set without need, DDP traverses the autograd
    graph every step for nothing and warns; unset when needed, it fails at the first such micro-batch."""
    if config.train.find_unused_parameters is not None:
        return config.train.find_unused_parameters
    temporal = temporal_layer_names(unet)
    return any(name in temporal for name in params) and plan.image_only_batches()


def setup(config: Config) -> Run:
    """Build the run of ``config`` on this process; resume it when ``train.resume`` names a checkpoint."""

    accelerator = make_accelerator(config)
    check_process_count(accelerator.num_processes)
    check_fsdp(config, accelerator)
    data = build_dataset(config, accelerator.device)
    torch.manual_seed(config.train.seed)  # identical new-layer init on every rank
    unet = build_unet(config, data)
    noise_scheduler = load_noise_scheduler(config.model.base, config.diffusion.prediction_type)
    params = select_trainable(unet, config.model.trainable)
    optimizer, lr_scheduler = make_optimizer(config, params)
    samples, global_batch = len(data.dataset.is_image), config.data.batch_size * accelerator.num_processes
    if global_batch > samples:  # each step would hold every sample more than once, in memory at once
        raise ValueError(f"data.batch_size {config.data.batch_size} x {accelerator.num_processes} process(es) is more "
                         f"than the {samples} clips and images of the data set: use at most "
                         f"{max(samples // accelerator.num_processes, 1)}")
    plan = JointBatchPlan(data.dataset.is_image, batch_size=config.data.batch_size,
                          image_ratio=config.data.image_ratio, seed=config.train.seed,
                          rank=accelerator.process_index, world_size=accelerator.num_processes)
    if accelerator.ddp_handler is not None:  # DDP (not FSDP): read when prepare wraps the objective
        accelerator.ddp_handler.find_unused_parameters = find_unused_parameters(config, unet, params, plan)
    objective, optimizer = accelerator.prepare(DiffusionObjective(unet), optimizer)
    ema = make_ema(list(params.values()), config.ema)
    if ema is not None:
        ema.to(accelerator.device)
    if config.model.trainable == "temporal" and not plan.video_ids:
        raise ValueError("model.trainable is 'temporal' but the data holds no video clips: images run in image "
                         "mode, with the temporal layers gated off, so they would train nothing")
    if config.data.image_ratio == 1.0 and not plan.image_ids:
        raise ValueError(f"data.image_ratio is 1 (images only) but the data holds no images, only "
                         f"{len(plan.video_ids)} video clips: they would train the model through its temporal "
                         "layers; add images to the shards, or set data.image_ratio below 1 for video training")
    run = Run(config, accelerator, data, noise_scheduler, objective, optimizer, lr_scheduler, ema, params, plan)
    resume(run)
    if config.train.tensorboard:
        accelerator.init_trackers("gen1", config=_hparams(config))
    return run


def resume(run: Run) -> None:
    """Restore ``run`` from the checkpoint ``train.resume`` names (``latest``: the newest one, if any)."""
    from gen1.training import checkpoint as ckpt  # lazy: its own package, loaded by the time this runs

    path = ckpt.resolve_resume(run.config.train.output_dir, run.config.train.resume)
    if path is None:
        return
    # resume: latest falls back past damaged checkpoints, newest first (train.keep_checkpoints keep some to fall
    # back to); a checkpoint named by its path is that one or none
    candidates = ckpt.list_checkpoints(run.config.train.output_dir)[::-1] if run.config.train.resume == "latest" \
        else [path]
    for index, path in enumerate(candidates):
        try:
            state = ckpt.load_checkpoint(run.accelerator, path, params=run.params, optimizer=run.optimizer,
                                         lr_scheduler=run.lr_scheduler, ema=run.ema, fsdp=run.fsdp,
                                         global_batch=run.plan.global_batch, model=run.objective,
                                         grad_accum=run.config.train.grad_accum)
            break
        except ckpt.DamagedCheckpoint as damage:
            if index + 1 == len(candidates):
                older = [p for p in ckpt.list_checkpoints(run.config.train.output_dir) if p != path]
                hint = f"; an earlier one: train.resume={older[-1]}" if older and len(candidates) == 1 else ""
                raise ckpt.DamagedCheckpoint(f"cannot resume: {damage}{hint}") from None
            run.accelerator.print(f"checkpoint {path.name} cannot be resumed: {damage}; resuming from the one "
                                  f"before it, {candidates[index + 1].name}")
    if run.ema is not None:
        run.ema.to(run.accelerator.device)
    run.start = int(state["step"])
    run.resumed_from = str(path)
    run.accelerator.print(f"resumed from {path} at step {run.start}")


def batches(run: Run) -> Iterator[JointBatch]:
    """This process's micro-batches from the run's start on (the plan's position: ``start * grad_accum``)."""

    return iter(make_loader(run.data.dataset, run.plan, start=run.start * run.config.train.grad_accum,
                            part=run.data.part, num_workers=run.config.data.num_workers))


def micro_step(run: Run, batch: JointBatch, m: int, *, sync: bool, seen: dict[str, int]) -> float:
    """Forward and backward of micro-batch ``m`` (gradients reduced across processes only when ``sync``);
    adds its clips to ``seen``; returns its loss."""

    config, accelerator = run.config, run.accelerator
    slots = run.plan.slots(m)  # the global slots this process holds: the draws are theirs, not the rank's
    clips = run.data.encode(batch, joint_slot_generators(config.train.seed, m, slots, stream=1), accelerator.device)
    for kind, count in clips.count().items():
        seen[kind] += count
    generators = joint_slot_generators(config.train.seed, m, slots)
    inputs = draw_joint(clips, run.noise_scheduler, config.diffusion, generators,
                        inpainting=run.unet.inpainting_input)
    skip_sync = not sync and accelerator.num_processes > 1
    with accelerator.no_sync(run.objective) if skip_sync else contextlib.nullcontext():
        with accelerator.autocast():  # the forward only: PyTorch advises against backward under autocast
            loss = run.objective(inputs)
        accelerator.backward(loss / config.train.grad_accum)
    return loss.detach().item()


def train_step(run: Run, micro_batches: Iterator[JointBatch], step: int, seen: dict[str, int]) -> float:
    """Optimizer step ``step`` (0-based): ``grad_accum`` micro-batches, clipping, AdamW, LR schedule, EMA.
    Returns the mean loss of its micro-batches over the global batch (all processes)."""
    accum = run.config.train.grad_accum
    loss = 0.0
    for a in range(accum):
        loss += micro_step(run, next(micro_batches), step * accum + a, sync=a == accum - 1, seen=seen) / accum
    if run.config.optim.max_grad_norm > 0:
        clip_gradients(run, run.config.optim.max_grad_norm)
    run.optimizer.step()
    run.lr_scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.step(run.trainable)
    return global_mean(run.accelerator, loss)


def global_mean(accelerator, value: float) -> float:
    """The mean of ``value`` over all processes (each process's loss is the mean over its own equal share of the
    global batch, so this is the global batch's loss): what is shown, logged and returned, the same on every rank
    and at every world size."""
    if accelerator.num_processes == 1:
        return value
    total = accelerator.reduce(torch.tensor([value], dtype=torch.float64, device=accelerator.device), reduction="sum")
    return total.item() / accelerator.num_processes


def clip_gradients(run: Run, max_norm: float) -> None:
    """Clip the trainable gradients to a total norm of ``max_norm``, the norm taken over all processes' shards.

    Under FSDP each process holds a shard of every gradient; Accelerate's ``clip_grad_norm_`` takes the global
    norm only when it is handed exactly the wrapped model's parameters, and otherwise clips each shard by its
    own local norm (so ``model.trainable: temporal`` would clip differently from DDP). The FSDP root's
    ``clip_grad_norm_`` takes the norm over every gradient it holds, which are the trainable ones (frozen
    parameters have none): the DDP result.
    """
    if run.fsdp and hasattr(run.objective, "clip_grad_norm_"):
        run.objective.clip_grad_norm_(max_norm)
    else:
        run.accelerator.clip_grad_norm_(run.trainable, max_norm)


def after_step(run: Run, done: int, loss: float, *, end: int, result: TrainResult, progress) -> None:
    """What follows optimizer step ``done`` (1-based): logging, validation and checkpoints when they are due."""
    config = run.config
    if done % config.train.log_every == 0 or done == end:
        progress.set_postfix(loss=f"{loss:.4f}")
        if config.train.tensorboard:
            epoch = run.plan.epoch_of(done * config.train.grad_accum)
            run.accelerator.log({"train/loss": loss, "train/lr": run.lr_scheduler.get_last_lr()[0],
                                 "train/epoch": epoch}, step=done)
    if config.validation.every and done % config.validation.every == 0:
        run_validation(run, done, result)
    if checkpoint_due(config, done):
        save_run_checkpoint(run, done)


def checkpoint_due(config: Config, done: int) -> bool:
    """Whether step ``done`` writes a checkpoint: every ``train.checkpoint_every`` steps and the last step."""
    return done % config.train.checkpoint_every == 0 or done == config.train.max_steps


def save_run_checkpoint(run: Run, done: int):
    """Checkpoint step ``done``: trainable weights, optimizer, LR schedule, EMA, RNG, the data position."""
    from gen1.training import checkpoint as ckpt  # lazy: its own package, loaded by the time this runs

    config = run.config
    weights = {n: p for n, p in run.unet.named_parameters() if n in run.params}
    micro = done * config.train.grad_accum
    return ckpt.save_checkpoint(
        run.accelerator, config.train.output_dir, done, trainable=weights, optimizer=run.optimizer,
        lr_scheduler=run.lr_scheduler, ema=run.ema, fsdp=run.fsdp, keep=config.train.keep_checkpoints,
        model=run.objective,
        state=dict(micro_step=micro, epoch=run.plan.epoch_of(micro), world_size=run.accelerator.num_processes,
                   global_batch=run.plan.global_batch,
                   trainable=config.model.trainable))


def train(config: Config, *, stop_at: Optional[int] = None,
          on_step: Optional[Callable[[int, float], None]] = None) -> TrainResult:
    """Run (or resume) training as configured; return a :class:`TrainResult` (meaningful on every rank).

    ``stop_at`` ends the loop after that many optimizer steps without exporting -- it simulates a job
    being pre-empted (tests use it to check that resuming reproduces an uninterrupted run). A first Ctrl-C
    ends the loop after the current step with a checkpoint and raises
    :class:`~gen1.training.interrupt.TrainingInterrupted`; a second one raises ``KeyboardInterrupt`` at once.
    """
    from tqdm.auto import tqdm  # lazy: tqdm is heavy and only this path needs it

    config.validate()
    check_fresh_output(config.train.output_dir, config.train.resume)
    run = setup(config)
    result = TrainResult(resumed_from=run.resumed_from, step=run.start,
                         main_process=run.accelerator.is_main_process)
    end = config.train.max_steps if stop_at is None else min(stop_at, config.train.max_steps)
    micro_batches = batches(run)
    progress = tqdm(range(run.start, end), initial=run.start, total=end, desc="train",
                    disable=not run.accelerator.is_local_main_process)
    with stop_on_interrupt() as stop:
        for step in progress:
            loss = train_step(run, micro_batches, step, result.seen)
            done = result.step = step + 1
            result.losses.append(loss)
            result.steps.append(done)
            if on_step is not None:
                on_step(done, loss)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at step {done}")
            after_step(run, done, loss, end=end, result=result, progress=progress)
            if done < config.train.max_steps and agreed(run.accelerator, stop):
                progress.close()
                raise interrupted(run, done)
    result.unet = run.unet
    if stop_at is None and config.train.export and result.step >= config.train.max_steps:
        result.export_dir = str(export_model(run))
    if config.train.tensorboard:
        run.accelerator.end_training()
    return result


def interrupted(run: Run, done: int):
    """Checkpoint step ``done`` (unless it just was) and describe the stop as a ``TrainingInterrupted``."""

    if not checkpoint_due(run.config, done):
        save_run_checkpoint(run, done)
    path = checkpoint_path(run.config.train.output_dir, done)
    return TrainingInterrupted(done, str(path), run.accelerator.is_main_process,
                               processes=run.accelerator.num_processes, global_batch=run.plan.global_batch)


def run_validation(run: Run, step: int, result: TrainResult) -> None:
    """Held-out loss (every process) and, on the main process, a pipeline sample written and logged;
    EMA weights swapped in."""

    config, accelerator = run.config, run.accelerator
    if run.held is None:
        run.held = held_out(config, run.data)
    with ema_weights(run.ema, run.trainable):
        value = validation_loss(run.objective, run.held, run.noise_scheduler, config, accelerator.device,
                                inpainting=run.unet.inpainting_input)
        result.validation.append((step, value))
        if config.train.tensorboard:
            accelerator.log({"val/loss": value}, step=step)
        if not config.validation.samples:
            return
        if run.fsdp:
            if step == config.validation.every:
                logger.warning("validation.samples is skipped under FSDP (the UNet is sharded across processes)")
            return
        if accelerator.is_main_process:
            _write_validation_sample(run, step, result)
        accelerator.wait_for_everyone()


def _write_validation_sample(run: Run, step: int, result: TrainResult) -> None:
    config, accelerator = run.config, run.accelerator
    pipe = make_pipeline(run.data.vae, run.unet, run.noise_scheduler, run.data.content_encoder)
    with accelerator.autocast():
        output = sample(pipe, run.held, config)
    written = write_sample(Path(config.train.output_dir) / "samples", step, run.held.frames, output,
                           mp4=config.validation.mp4)
    result.samples.append(written["png"])
    if config.train.tensorboard:
        writer = accelerator.get_tracker("tensorboard", unwrap=True)
        writer.add_image("val/sample", written["strip"], global_step=step, dataformats="HWC")
