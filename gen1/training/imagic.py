"""Imagic for one clip (Kawar et al. 2023; Dreamix, Molad et al. 2023, for video): the two optimisations.

1. **Embedding.** Starting from the target text's embedding, in the space the route conditions on
   (:meth:`gen1.routes.Route.text_embedding`: native models a CLIP image embedding, the public route text hidden
   states), optimise it so that the frozen model reconstructs the clip at its own structure: the denoising loss on
   the clip's latents (:meth:`gen1.routes.Route.encode_source`) with its depth (:meth:`gen1.routes.Route.structure`
   at ``structure_level``), through the route's own model function (:meth:`gen1.routes.Route.bind`, the one an
   edit calls), in video mode over a window of the model's clip length.
2. **LoRA.** With that embedding fixed, fine-tune a LoRA (:func:`gen1.adapters.prepare_adapter`) on the clip: each
   step is the clip's window in video mode or, with probability ``image_ratio``, one of its frames in image mode
   (the temporal layers gated off), as Dreamix mixes the video with its frames.

Both phases stop early: every ``eval_every`` steps a fixed-draw loss (``eval_draws`` timesteps spread over the
schedule, fixed noise, every window of the clip) is measured; the best weights are kept and a phase ends after
``patience`` measurements without improvement. The first measurement of the embedding phase is the target's own
loss, so "the embedding loss falls" compares the optimised embedding with the target's on the same draws.

Progress bars, Ctrl-C and resuming are ``gen1 train``'s: :func:`gen1.training.interrupt.stop_on_interrupt` (the
first Ctrl-C or SIGTERM stops after the current step with a checkpoint and raises
:class:`~gen1.training.interrupt.TrainingInterrupted`, a second quits at once), checkpoints written and read by
:mod:`gen1.training.checkpoint` (atomic, safetensors for the weights, ``state.json`` last), numbered by the step
over both phases. Every step draws from its own generator (:func:`gen1.training.draws.micro_generator` of the seed,
the phase and the step), so a resumed run takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from gen1.adapters import prepare_adapter
from gen1.guidance import plan_guidance
from gen1.imagic import attach_embeddings
from gen1.routes import Content, ContentRequest
from gen1.training import checkpoint as ckpt
from gen1.training.draws import micro_generator, prediction_target
from gen1.training.interrupt import TrainingInterrupted, stop_on_interrupt
from gen1.training.model import with_prediction_type
from gen1.training.recompute import disable_recompute, enable_recompute

PHASES = ("embedding", "lora")
#: One term: the video model with the content (guidance w = 1, w_t = 1), the prediction the loss is taken on.
PLAN = plan_guidance(1.0, 1.0)
MIN_FRAMES = 2


@dataclass
class ImagicSettings:
    """The knobs of the two phases (``gen1 customize --imagic`` flags override them)."""

    embedding_steps: int = 40
    embedding_lr: float = 0.1  # relative: Adam's step is this x the RMS of the target embedding (route-free)
    steps: int = 40  # LoRA steps
    lr: float = 5e-3
    lora_rank: int = 4
    lora_alpha: Optional[float] = None
    include_temporal: bool = False
    image_ratio: float = 0.25  # the share of LoRA steps on one frame in image mode (Dreamix's mix)
    structure_level: float = 0.0  # t_s of the structure the clip is reconstructed at
    eval_every: int = 5
    eval_draws: int = 4
    patience: int = 4  # measurements without improvement before a phase stops
    min_improvement: float = 1e-3  # relative: a measurement improves when below best x (1 - this)
    checkpoint_every: int = 20
    seed: int = 0
    #: Recompute the denoisers' activations in the backward pass instead of keeping them, per layer and per block
    #: (:mod:`gen1.training.recompute`; about half the memory, 1.2-1.7x the time, the same losses and gradients).
    #: How a step is computed, not what: not part of a checkpoint's fingerprint.
    gradient_checkpointing: bool = False

    def validate(self) -> "ImagicSettings":
        for name in ("embedding_steps", "steps", "lora_rank", "eval_every", "eval_draws", "patience",
                     "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("embedding_lr", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (math.isfinite(self.image_ratio) and 0.0 <= self.image_ratio <= 1.0):
            raise ValueError(f"image_ratio must be in [0, 1], got {self.image_ratio!r}")
        if not (math.isfinite(self.min_improvement) and 0.0 <= self.min_improvement < 1.0):
            raise ValueError(f"min_improvement must be in [0, 1), got {self.min_improvement!r}")
        if not isinstance(self.gradient_checkpointing, bool):
            raise ValueError(f"gradient_checkpointing must be True or False, got {self.gradient_checkpointing!r}")
        return self


@dataclass
class ImagicClip:
    """A clip as the loss sees it: source latents ``(1, C, F, h, w)``, the route's structure input for every frame,
    the window (frames per video-mode sample) and the base content (null content, IP-Adapter tokens) of the route."""

    latents: torch.Tensor
    structure: Any
    window: int
    base: Optional[Content] = None

    @property
    def num_frames(self) -> int:
        return self.latents.shape[2]

    def windows(self) -> list[slice]:
        """The windows the fixed-draw loss covers: the first and the last (one when the clip fits a window)."""
        starts = sorted({0, self.num_frames - self.window})
        return [slice(start, start + self.window) for start in starts]


@dataclass
class ImagicResult:
    """What a run did: the optimised and target embeddings ``(1, L, D)``, the fixed-draw losses of each phase
    (``(step, loss)``; the first of ``embedding``: the target's), the steps taken and whether each stopped early."""

    optimised: torch.Tensor
    target: torch.Tensor
    history: dict[str, list[tuple[int, float]]]
    steps: dict[str, int]
    stopped_early: dict[str, bool]
    resumed_from: Optional[str] = None
    seconds: float = 0.0

    @property
    def embedding_loss(self) -> tuple[float, float]:
        """(the target embedding's fixed-draw loss, the optimised embedding's)."""
        losses = [loss for _, loss in self.history["embedding"]]
        return losses[0], min(losses)

    @property
    def lora_loss(self) -> tuple[float, float]:
        """(the fixed-draw loss before the LoRA, the best with it)."""
        losses = [loss for _, loss in self.history["lora"]] or [float("nan")]
        return losses[0], min(losses)

    def info(self, text: str, route: str, settings: ImagicSettings) -> dict:
        """The adapter's metadata (:func:`gen1.imagic.save_imagic_adapter`)."""
        return dict(text=text, route=route, settings=asdict(settings), steps=self.steps,
                    stopped_early=self.stopped_early,
                    history={k: [list(e) for e in v] for k, v in self.history.items()})


@dataclass
class _State:
    """Where a run stands: its phase, the step within it, the early-stopping record, what each phase measured."""

    phase: str = "embedding"
    phase_step: int = 0
    offset: int = 0  # the steps of earlier phases (checkpoints are numbered over both)
    best: float = math.inf
    bad: int = 0
    history: dict = field(default_factory=lambda: {name: [] for name in PHASES})
    steps: dict = field(default_factory=lambda: {name: 0 for name in PHASES})
    stopped_early: dict = field(default_factory=lambda: {name: False for name in PHASES})


def check_clip(frames: torch.Tensor, text: str) -> None:
    """``ValueError`` (one line) for a clip Imagic cannot fine-tune on or an empty target text."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the Imagic target text is empty: give the edit you want, e.g. --prompt 'red objects'")
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"the clip must be frames (F, 3, H, W), got shape {tuple(frames.shape)}")
    if frames.shape[0] < MIN_FRAMES:
        raise ValueError(f"the clip has {frames.shape[0]} frame(s): Imagic fine-tunes on a clip of at least "
                         f"{MIN_FRAMES} frames (for stills use gen1 customize --images)")
    if not torch.isfinite(frames).all():
        raise ValueError("the clip holds non-finite values")


@torch.no_grad()
def encode_clip(pipe, frames: torch.Tensor, structure_level: float, *, generator, device, depth=None) -> ImagicClip:
    """The clip's latents and structure, by the route's own conventions (as an edit encodes its source); ``depth``:
    the user's structure instead of the estimate (what ``Gen1Pipeline.__call__`` takes)."""
    route = pipe.route
    latents = route.encode_source(frames, generator=generator, device=device, chunk_size=8)
    depth = pipe.prepare_depth(frames, depth)
    _, structure = route.structure(depth, structure_level, tuple(latents.shape[-2:]))
    window = min(pipe.prepare_windows(None, None)[0], frames.shape[0])
    return ImagicClip(latents, structure.to(device), window)


def fingerprint(frames: torch.Tensor, text: str, settings: ImagicSettings, model: str) -> str:
    """What a checkpoint must have been made from to be resumed: the clip's pixels, the text, the settings (those
    that change the result: a run that ran out of memory resumes with gradient checkpointing) and the model (a
    hash)."""
    digest = hashlib.sha256(frames.float().cpu().numpy().tobytes())
    settings = {k: v for k, v in asdict(settings).items() if k != "gradient_checkpointing"}
    digest.update(json.dumps([text, settings, model], sort_keys=True).encode())
    return digest.hexdigest()


class ImagicRun:
    """One Imagic run on a pipeline (see the module docstring); :meth:`run` does both phases.

    ``frames`` the clip (at least 2 frames), as the pipeline takes a video (:func:`gen1.conditioning.video_to_tensor`:
    ``(F, 3, H, W)`` in [0, 1], a ``VideoClip`` from :func:`gen1.media.read_video`, uint8 ``(F, H, W, 3)``, a path),
    at the size it is given (a path is read whole at its own size: read it with ``read_video(path, size=...,
    max_frames=...)`` to choose); ``text`` the target; ``work_dir`` holds the checkpoints;
    ``model`` names the model in the checkpoints' fingerprint; ``depth`` the user's structure (None: estimated);
    ``on_step(phase, step, loss)`` is told after every step.
    """

    def __init__(self, pipe, frames: torch.Tensor, text: str, settings: ImagicSettings, work_dir, *, device,
                 model: str = "", progress: bool = True, depth=None,
                 on_step: Optional[Callable[[str, int, float], None]] = None):
        from diffusers import DDPMScheduler  # lazy: diffusers is heavy and only this path needs it

        from gen1.conditioning import video_to_tensor  # lazy: keeps this module's import light

        if not isinstance(frames, torch.Tensor):  # a tensor is checked as it is, shape included (check_clip)
            frames = video_to_tensor(frames)[0]
        check_clip(frames, text)
        self.pipe, self.settings, self.device = pipe, settings.validate(), torch.device(device)
        self.text = text
        self.work_dir, self.progress, self.on_step = Path(work_dir), progress, on_step
        self.route = pipe.route
        self.key = fingerprint(frames, text, settings, model)
        self.noise_scheduler = with_prediction_type(DDPMScheduler.from_config(pipe.scheduler.config))
        for module in pipe.route.denoisers():
            module.requires_grad_(False)
        generator = torch.Generator().manual_seed(settings.seed)
        self.clip = encode_clip(pipe, frames, settings.structure_level, generator=generator, device=self.device,
                                depth=depth)
        self.target = self.route.text_embedding(text, device=self.device).detach()
        base = self.route.encode_content(ContentRequest(content_embeds=self.target), generator=generator,
                                         device=self.device)
        self.clip.base = base
        self.embedding = torch.nn.Parameter(self.target.clone())
        self.state = _State()
        if settings.gradient_checkpointing:  # last, so that a refused run leaves the pipeline as it was; switched
            enable_recompute(pipe.route.denoisers())  # off when the run ends (and inactive without gradients)

    # ------------------------------------------------------------------------------------------- the loss
    def loss(self, context: torch.Tensor, frames: slice, timestep: torch.Tensor, noise: torch.Tensor,
             image_mode: bool) -> torch.Tensor:
        """The denoising loss of ``frames`` of the clip at ``timestep`` with ``noise``, the content ``context``,
        through the route's model function (video mode, or image mode with the temporal layers gated off)."""
        content = replace(self.clip.base, context=context)
        prediction = self.route.bind(content, self.clip.structure, PLAN, {})
        clean = self.clip.latents[:, :, frames]
        noisy = self.noise_scheduler.add_noise(clean, noise, timestep)
        output = prediction.evaluate(noisy, timestep.to(self.device), context, [True] if image_mode else None,
                                     frames)
        target = prediction_target(self.noise_scheduler, clean, noise, timestep,
                                   self.noise_scheduler.config.prediction_type)
        return F.mse_loss(output.float(), target.float())

    def draw_loss(self, context: torch.Tensor, phase: str, step: int) -> torch.Tensor:
        """The loss of step ``step`` of ``phase``: its own draws (window or frame, timestep, noise)."""
        gen = micro_generator(self.settings.seed, PHASES.index(phase) + 1, step)
        clip, total = self.clip, self.noise_scheduler.config.num_train_timesteps
        image_mode = phase == "lora" and float(torch.rand((), generator=gen)) < self.settings.image_ratio
        if image_mode:
            start, length = int(torch.randint(clip.num_frames, (), generator=gen)), 1
        else:
            start, length = int(torch.randint(clip.num_frames - clip.window + 1, (), generator=gen)), clip.window
        timestep = torch.randint(total, (1,), generator=gen)
        shape = (1, clip.latents.shape[1], length, *clip.latents.shape[-2:])
        noise = torch.randn(shape, generator=gen).to(self.device)
        return self.loss(context, slice(start, start + length), timestep, noise, image_mode)

    @torch.no_grad()
    def measure(self, context: torch.Tensor) -> float:
        """The fixed-draw loss (video mode): ``eval_draws`` timesteps spread over the schedule, the same noise each
        time, every window of :meth:`ImagicClip.windows`."""
        total, draws = self.noise_scheduler.config.num_train_timesteps, self.settings.eval_draws
        gen = torch.Generator().manual_seed(self.settings.seed + 7_919)
        clip, losses = self.clip, []
        for frames in clip.windows():
            for i in range(draws):
                timestep = torch.tensor([int((i + 0.5) * total / draws)])
                noise = torch.randn((1, clip.latents.shape[1], clip.window, *clip.latents.shape[-2:]), generator=gen)
                losses.append(float(self.loss(context, frames, timestep, noise.to(self.device), False)))
        return sum(losses) / len(losses)

    # ------------------------------------------------------------------------------------------- the phases
    def trainable(self, phase: str) -> dict[str, torch.Tensor]:
        """The weights phase ``phase`` changes, by name."""
        if phase == "embedding":
            return {"embedding": self.embedding}
        return {name: p for name, p in self.pipe.unet.named_parameters() if p.requires_grad}

    def start_lora(self) -> None:
        """Freeze the optimised embedding and add the LoRA (its initial weights drawn from the run's seed)."""
        self.embedding.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed)
            prepare_adapter(self.pipe.unet, rank=self.settings.lora_rank, alpha=self.settings.lora_alpha,
                            include_temporal=self.settings.include_temporal)
        self.pipe.unet.to(self.device)

    def tracked(self, phase: str, best: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What a checkpoint of ``phase`` holds: the embedding, the phase's weights and the best ones so far."""
        tracked = {"embedding": self.embedding, **self.trainable(phase)}
        tracked.update({f"best/{name}": value for name, value in best.items()})
        return tracked

    def optimizer(self, phase: str):
        from diffusers.optimization import get_scheduler  # lazy: diffusers is heavy and only this path needs it

        if phase == "embedding":  # relative to the embedding's scale: CLIP embeddings and text hidden states differ
            lr = self.settings.embedding_lr * float(self.target.square().mean().sqrt().clamp_min(1e-6))
        else:
            lr = self.settings.lr
        optimizer = torch.optim.AdamW(list(self.trainable(phase).values()), lr=lr, weight_decay=0.0)
        return optimizer, get_scheduler("constant", optimizer)

    def context(self) -> torch.Tensor:
        return self.embedding if self.state.phase == "embedding" else self.embedding.detach()

    def run_phase(self, phase: str, optimizer, lr_scheduler, best: dict[str, torch.Tensor], accelerator) -> bool:
        """Steps of ``phase`` from where the state stands to its end or an early stop; the best weights restored.
        Returns whether a Ctrl-C came as it ended (the next phase then stops at its start)."""
        from tqdm.auto import tqdm  # lazy: tqdm is heavy and only this path needs it

        state, settings = self.state, self.settings
        end = settings.embedding_steps if phase == "embedding" else settings.steps
        params = self.trainable(phase)
        if not state.history[phase]:  # the phase's starting point is its first measurement
            self.record(phase, 0, self.measure(self.context()), params, best)
        # advanced by hand: a bar that wraps the loop misses the step an early stop breaks out after; closed however
        # the phase ends (a refusal's line then starts a line of its own)
        with tqdm(initial=state.phase_step, total=end, desc=f"imagic {phase}", disable=not self.progress) as progress, \
                stop_on_interrupt() as stop:
            for step in range(state.phase_step, end):
                loss = self.draw_loss(self.context(), phase, step)
                loss.backward()
                try:
                    optimizer.step()
                except RuntimeError as error:  # a learning rate past float32's range overflows inside the step
                    if "overflow" not in str(error):
                        raise
                    raise ValueError(f"the Imagic {phase} optimisation overflowed at step {step + 1} (its learning "
                                     "rate is past what float32 holds); nothing was written (lower its learning "
                                     "rate)") from None
                value = float(loss.detach())
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if not math.isfinite(value):
                    raise ValueError(f"the Imagic {phase} optimisation diverged at step {step + 1}: the loss is "
                                     f"{value}; nothing was written (lower its learning rate)")
                state.phase_step = done = step + 1
                progress.update(1)
                progress.set_postfix(loss=f"{value:.4f}")
                if self.on_step is not None:
                    self.on_step(phase, done, value)
                if done % settings.eval_every == 0 or done == end:
                    self.record(phase, done, self.measure(self.context()), params, best)
                if state.bad >= settings.patience and done < end:  # out of patience on the last step: not early
                    state.stopped_early[phase] = True
                    break
                if done < end and (stop.asked or done % settings.checkpoint_every == 0):
                    path = self.save(accelerator, phase, optimizer, lr_scheduler, best)
                    if stop.asked:
                        raise TrainingInterrupted(state.offset + done, str(path))
        state.steps[phase] = state.phase_step
        with torch.no_grad():
            for name, value in best.items():
                params[name].copy_(value)
        return stop.asked

    def record(self, phase: str, done: int, loss: float, params, best) -> None:
        """One measurement: kept in the history; the best weights copied when it improves."""
        state = self.state
        state.history[phase].append((done, loss))
        if loss < state.best * (1.0 - self.settings.min_improvement):
            state.best, state.bad = loss, 0
            for name, value in params.items():
                best[name] = value.detach().clone()
        else:
            state.bad += 1

    # ------------------------------------------------------------------------------------------- checkpoints
    def save(self, accelerator, phase, optimizer, lr_scheduler, best) -> Path:
        state = self.state
        return ckpt.save_checkpoint(accelerator, self.work_dir, state.offset + state.phase_step,
                                    trainable=self.tracked(phase, best), optimizer=optimizer,
                                    lr_scheduler=lr_scheduler, ema=None, keep=2,
                                    state=dict(asdict(state), fingerprint=self.key))

    def resume(self, accelerator) -> Optional[dict]:
        """The state of the newest checkpoint in the work folder (None: there is none); its phase set up."""
        newest = ckpt.newest_of_this_run(self.work_dir, self.key, "another clip, text, model or settings")
        if newest is None:
            return None
        path, saved = newest
        fields_ = {k: saved[k] for k in asdict(_State()) if k in saved}
        fields_["history"] = {k: [tuple(e) for e in v] for k, v in fields_["history"].items()}
        self.state = _State(**fields_)
        return dict(path=path)

    def run(self, *, resume: bool = False) -> ImagicResult:
        """Both phases (resumed from the newest checkpoint in the work folder when ``resume``); gradient
        checkpointing, when the settings asked for it, is switched off again at the end (the edits that follow
        compute no gradients, and a pipeline that goes on training should choose for itself)."""
        try:
            return self._run(resume)
        finally:
            if self.settings.gradient_checkpointing:
                disable_recompute(self.route.denoisers())

    def _run(self, resume: bool) -> ImagicResult:
        import time

        from accelerate import PartialState  # lazy: accelerate is heavy and only this path needs it

        started, asked = time.perf_counter(), False
        accelerator = PartialState()
        if not resume:
            ckpt.refuse_earlier_checkpoints(self.work_dir, "--resume")
        resumed = self.resume(accelerator) if resume else None
        load_into = self.state.phase if resumed else None
        for phase in PHASES[PHASES.index(self.state.phase):]:
            if phase == "lora":
                self.start_lora()
            optimizer, lr_scheduler = self.optimizer(phase)
            best: dict[str, torch.Tensor] = {}
            if phase == load_into:
                best = {name: value.detach().clone() for name, value in self.trainable(phase).items()}
                ckpt.load_checkpoint(accelerator, resumed["path"], params=self.tracked(phase, best),
                                     optimizer=optimizer, lr_scheduler=lr_scheduler, ema=None)
            elif asked:  # Ctrl-C as the previous phase ended: this phase's start is the checkpoint
                best = {name: value.detach().clone() for name, value in self.trainable(phase).items()}
                path = self.save(accelerator, phase, optimizer, lr_scheduler, best)
                raise TrainingInterrupted(self.state.offset, str(path))
            asked = self.run_phase(phase, optimizer, lr_scheduler, best, accelerator)
            if phase == "embedding":
                self.state = replace(self.state, phase="lora", phase_step=0, offset=self.state.phase_step,
                                     best=math.inf, bad=0)
        self.pipe.unet.eval()
        attach_embeddings(self.pipe, self.embedding, self.target, {"text": self.text})
        return ImagicResult(self.embedding.detach().clone(), self.target.clone(), self.state.history,
                            self.state.steps, self.state.stopped_early,
                            str(resumed["path"]) if resumed else None, time.perf_counter() - started)
