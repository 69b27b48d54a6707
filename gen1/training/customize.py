"""Customisation: fine-tune an adapter (:mod:`gen1.adapters`) on a few images of a subject or style.

Gen-1 customises by teaching the model to reproduce the subject *given its own CLIP image embedding*:
each image trains as a 1-frame clip in image mode (temporal layers off) with its embedding as content
and its depth as structure (t_s drawn from 0..7). No captions are needed.

On the public route (an SD-1.5 UNet with motion modules and a depth ControlNet) the content is text, so the
subject is tied to a prompt, as in DreamBooth-LoRA: an instance prompt such as "a photo of sks dog" (or the empty
prompt, which makes the adapter a style of every edit). Each image trains in image mode (motion modules off),
its depth obscured to a drawn t_s entering through the frozen ControlNet as at inference
(:func:`gen1.training.draws.draw_controlnet_inputs`), the LoRA on the image UNet's attention.

The adapter is trained on the frozen VideoUNet and saved with :func:`gen1.adapters.save_adapter`; inference
applies it with :func:`gen1.adapters.load_adapter`.

Ctrl-C and resuming are ``gen1 train``'s and ``gen1 customize --imagic``'s: given a work folder,
:func:`train_adapter` runs under :func:`gen1.training.interrupt.stop_on_interrupt` (the first Ctrl-C or SIGTERM
stops after the current step with a checkpoint and raises :class:`~gen1.training.interrupt.TrainingInterrupted`,
a second quits at once) and writes its checkpoints with :mod:`gen1.training.checkpoint` (atomic; every
``checkpoint_every`` steps too). Every step draws from its own generator, so a resumed run ends where an
uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from gen1.adapters import prepare_adapter
from gen1.conditioning import encode_latents
from gen1.depth import MAX_LEVEL
from gen1.prompts import encode_prompts
from gen1.training.batch import Clips, JointBatch
from gen1.training import checkpoint as ckpt
from gen1.training.config import DiffusionConfig
from gen1.training.draws import draw_controlnet_inputs, draw_inputs, micro_generator
from gen1.training.interrupt import StopRequest, TrainingInterrupted, stop_on_interrupt
from gen1.training.losses import DiffusionObjective
from gen1.training.model import with_prediction_type
from gen1.training.preprocess import InputItem, PreprocessSettings, load_clips


@dataclass
class CustomizeSettings:
    lora_rank: int = 4
    lora_alpha: Optional[float] = None  # None: equal to the rank (scale 1)
    full: bool = False
    include_temporal: bool = False
    steps: int = 200
    lr: float = 1e-4
    batch_size: int = 2
    content_dropout: float = 0.1
    structure_level_max: int = 7  # gen1.depth.MAX_LEVEL (kept literal: a dataclass default)
    seed: int = 0
    checkpoint_every: int = 100  # steps between checkpoints when train_adapter is given a work folder

    def validate(self) -> "CustomizeSettings":
        for name in ("lora_rank", "steps", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite positive number, got {self.lr}")

        if not 0 <= self.structure_level_max <= MAX_LEVEL:
            raise ValueError(f"structure_level_max must be in 0..{MAX_LEVEL}, got {self.structure_level_max}")
        return self


def draw_image_inputs(data: dict, pick: torch.Tensor, noise_scheduler, diffusion, generator, device):
    """A native model's training inputs for the images ``pick`` of ``data`` (latents, depth, content from
    :class:`gen1.training.preprocess.ClipEncoder`), in image mode, as training draws them."""

    clips = Clips(*(data[k][pick].to(device) for k in ("latents", "depth", "content")))
    return draw_inputs(clips, noise_scheduler, diffusion, generator, image_mode=True)


def controlnet_image_inputs(controlnet):
    """The public route's draw (see :func:`draw_image_inputs`): depth through the frozen ``controlnet``, the
    content the instance prompt's hidden states (:func:`encode_public_images`)."""

    def draw(data, pick, noise_scheduler, diffusion, generator, device):
        return draw_controlnet_inputs(controlnet, data["latents"][pick].to(device), data["depth"][pick].to(device),
                                      data["content"].to(device), data["null_content"].to(device),
                                      noise_scheduler, diffusion, generator)

    return draw


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: the run's checkpoints would diverge again when resumed, and a lower learning
    rate makes another run (its checkpoints are of no use to it)."""


def fingerprint(paths: list[Path], size: int, settings: CustomizeSettings, model: str, prompt: str = "") -> str:
    """What a customisation checkpoint must have been made from to be resumed: the images' bytes, the training
    size, the settings, the model (every part of it, as :func:`gen1.commands.customize` resolves them) and the
    instance prompt (a hash)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    digest.update(json.dumps([size, asdict(settings), model, prompt], sort_keys=True).encode())
    return digest.hexdigest()


def train_adapter(unet, data: dict, noise_scheduler, settings: CustomizeSettings, *, device="cpu",
                  prediction_type: Optional[str] = None, progress: bool = True,
                  draw=draw_image_inputs, work_dir=None, resume: bool = False, key: str = "",
                  on_step: Optional[Callable[[int, float], None]] = None) -> list[float]:
    """Fine-tune ``unet`` on encoded images; return the per-step losses.

    ``data`` holds the encoded images and ``draw(data, pick, noise_scheduler, diffusion, generator, device)`` turns
    the images ``pick`` into a batch of training inputs: :func:`draw_image_inputs` for a native model (``latents
    (N,C,1,h,w)``, ``depth (N,1,1,h,w)``, ``content (N,1,D)``), :func:`controlnet_image_inputs` for the public route
    (what :func:`encode_public_images` returns). Each step draws ``batch_size`` images.

    ``work_dir`` (None: no checkpoints, Ctrl-C raises ``KeyboardInterrupt`` as usual) holds the run's checkpoints:
    one every ``checkpoint_every`` steps and one when the first Ctrl-C or SIGTERM stops the run after the current
    step (then :class:`~gen1.training.interrupt.TrainingInterrupted` is raised); ``resume`` continues from the
    newest there, which must carry the fingerprint ``key`` (:func:`fingerprint`). ``on_step(step, loss)`` is told
    after every step.
    """
    from tqdm.auto import tqdm  # lazy: tqdm is heavy and only this path needs it

    settings.validate()
    if settings.batch_size > data["latents"].shape[0]:
        n = data["latents"].shape[0]
        raise ValueError(f"batch_size {settings.batch_size} is more than the {n} images: use at most {n} (each step "
                         "draws that many of them)")
    if work_dir is not None and not resume:  # before any work: a new run would mix its checkpoints with them
        ckpt.refuse_earlier_checkpoints(work_dir, "--resume")
    noise_scheduler = with_prediction_type(noise_scheduler, prediction_type)
    with torch.random.fork_rng(devices=[]):  # the LoRA's initial weights drawn from the run's seed, as every step's
        torch.manual_seed(settings.seed)    # draws are: a run (and a resumed one) is reproducible from its settings
        params = prepare_adapter(unet, rank=settings.lora_rank, alpha=settings.lora_alpha, full=settings.full,
                                 include_temporal=settings.include_temporal)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    run = _Checkpoints(work_dir, unet, optimizer, key) if work_dir is not None else None
    losses = run.resume() if run is not None and resume else []
    objective = DiffusionObjective(unet).to(device).train()
    diffusion = DiffusionConfig(content_dropout=settings.content_dropout, use_structure=True,
                                structure_level_min=0, structure_level_max=settings.structure_level_max)
    n = data["latents"].shape[0]
    interruptible = stop_on_interrupt() if run is not None else contextlib.nullcontext(StopRequest())
    with interruptible as stop, tqdm(initial=len(losses), total=settings.steps, desc="customize",
                                     disable=not progress) as bar:
        for step in range(len(losses), settings.steps):
            gen = micro_generator(settings.seed, 0, step)
            pick = torch.randint(0, n, (settings.batch_size,), generator=gen)
            part = draw(data, pick, noise_scheduler, diffusion, gen, device)
            loss = objective(JointBatch(image=part))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise TrainingDiverged(f"the customisation diverged at step {step + 1}: the loss is {losses[-1]}; "
                                       f"nothing was written (lower --lr, now {settings.lr:g})")
            bar.update(1)
            if on_step is not None:
                on_step(step + 1, losses[-1])
            done = step + 1
            if run is not None and done < settings.steps and (stop.asked or done % settings.checkpoint_every == 0):
                path = run.save(losses)
                if stop.asked:
                    bar.close()
                    raise TrainingInterrupted(done, str(path))
    unet.eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    return losses


class _Checkpoints:
    """A customisation's checkpoints in ``work_dir`` (:mod:`gen1.training.checkpoint`, as Imagic's): the adapter's
    weights, the optimizer, the losses so far and the run's fingerprint."""

    def __init__(self, work_dir, unet, optimizer, key: str):
        from accelerate import PartialState  # lazy: accelerate is heavy and only this path needs it
        from diffusers.optimization import get_scheduler  # lazy: diffusers is heavy and only this path needs it

        self.work_dir, self.key, self.optimizer = Path(work_dir), key, optimizer
        self.params = {name: p for name, p in unet.named_parameters() if p.requires_grad}
        self.lr_scheduler = get_scheduler("constant", optimizer)  # a checkpoint holds one (the rate is constant)
        self.accelerator = PartialState()

    def save(self, losses: list[float]) -> Path:
        return ckpt.save_checkpoint(self.accelerator, self.work_dir, len(losses), trainable=self.params,
                                    optimizer=self.optimizer, lr_scheduler=self.lr_scheduler, ema=None, keep=2,
                                    state=dict(losses=losses, fingerprint=self.key))

    def resume(self) -> list[float]:
        """The losses of the newest checkpoint's steps, its weights and optimizer loaded (none: no steps)."""
        newest = ckpt.newest_of_this_run(self.work_dir, self.key, "other images, model or settings")
        if newest is None:
            return []
        path, state = newest
        ckpt.load_checkpoint(self.accelerator, path, params=self.params, optimizer=self.optimizer,
                             lr_scheduler=self.lr_scheduler, ema=None)
        return [float(loss) for loss in state["losses"]]


def _read_images(paths: list[Path], size: int):
    """Each image as uint8 ``(1, size, size, 3)``, centre-cropped as preprocessing crops training clips."""

    settings = PreprocessSettings(clip_length=1, stride=1, size=size)
    for path in paths:
        ((_, frames),) = load_clips(InputItem(str(path)), settings)
        yield frames


def encode_images(paths: list[Path], encoder, size: int) -> dict:
    """Images -> ``latents (N,C,1,h,w)``, ``depth (N,1,1,h,w)``, ``content (N,1,D)`` with a ClipEncoder."""
    out = {"latents": [], "depth": [], "content": []}
    for frames in _read_images(paths, size):
        latents, depth, content = encoder(frames)
        out["latents"].append(latents)
        out["depth"].append(depth)
        out["content"].append(content)
    return {k: torch.stack(v) for k, v in out.items()}


@torch.no_grad()
def encode_public_images(paths: list[Path], pipe, depth_estimator, prompt: str, size: int) -> dict:
    """Images -> what :func:`train_adapter` takes on the public route: ``latents (N,C,1,h,w)`` (the VAE's
    convention, :func:`gen1.conditioning.encode_latents`), ``depth (N,1,size,size)`` (each image's normalised
    inverse depth on the ControlNet's pixel grid), ``content`` / ``null_content`` ``(1,L,D)`` (the hidden states of
    ``prompt`` and of the empty prompt, through the base's text encoder)."""

    latents, depth = [], []
    for frames in _read_images(paths, size):
        pixels = torch.from_numpy(frames.copy()).permute(0, 3, 1, 2).float() / 255.0  # (1, 3, H, W)
        latents.append(encode_latents(pipe.vae, pixels).cpu()[:, :, None])  # (1, C, 1, h, w)
        depth.append(depth_estimator.estimate(frames).float().cpu())  # (1, 1, H, W)
    content = encode_prompts(pipe.tokenizer, pipe.text_encoder, [prompt]).cpu()
    null = encode_prompts(pipe.tokenizer, pipe.text_encoder, [""]).cpu()
    return {"latents": torch.cat(latents), "depth": torch.cat(depth), "content": content, "null_content": null}
