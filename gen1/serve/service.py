"""What the web page does, without the page: read a clip for the preview, run an edit, cancel it.

:class:`EditService` turns the page's values (:class:`EditForm`) into a :class:`gen1.editing.EditRequest` and
runs it with :func:`gen1.editing.run_edit`, the function ``gen1 edit`` runs, so a setting means the same thing
in both and the page can show the ``gen1 edit`` command line that reproduces its result. Every file it writes
goes into a fresh folder of its own work directory; uploads are only read. User mistakes are ``ValueError``s
whose messages name uploads by their file names, never by the server's paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gen1.editing import ClipLimits, EditRequest, check_request, edit_command, read_inputs, run_edit
from gen1.serve.models import ModelCatalog
from gen1.settings import check_settings, flag_label

if TYPE_CHECKING:
    import numpy as np

    from gen1.serve.preview import StructurePreview

UPLOAD_PIXELS_MIN = 4096 * 4096  # an image upload may always be this large (a photo), ...
UPLOAD_SCALE = 8  # ... or this many times the edit's short side on each side, whichever is more
MASK_CANVAS = 512  # the mask is drawn on a frame (the first, or the one the page chooses) enlarged to this short side
JOB_LIFETIME_S = 3600.0  # job folders older than this are removed (the page has long copied their files)
MODEL_RETRY_S = 600.0  # a tracker model found missing is not looked for again (the Hub is slow to say no) for this long
#: The downloads' names (edited video, comparison, drawn mask) of an edit and of a preview edit: distinct, so a user
#: who downloads both keeps both (and each command line names its own files).
OUTPUT_NAMES = {"edit": ("{stem}-edited.mp4", "{stem}-comparison.mp4", "mask.png"),
                "preview": ("{stem}-preview.mp4", "{stem}-preview-comparison.mp4", "mask-preview.png")}


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the server (set when it starts)."""

    max_frames: int = 120
    max_seconds: float = 20.0
    max_upload_mb: float = 200.0
    max_size: int = 1024
    max_session_mb: float = 1000.0  # one session's uploads and outputs on disk
    max_total_mb: float = 10000.0  # every session's uploads and outputs (gen1.serve.quota.UploadQuota)


@dataclass
class EditForm:
    """The page's values, as its widgets give them (``None`` or ``""`` where a field is empty).

    A field named as a setting of :class:`gen1.settings.EditSettings` is that setting; the others are the page's
    own ways of giving one (:data:`FORM_FIELDS`)."""

    video: str | None
    prompt: str = ""
    prompt_weight: float = 1.0
    references: list[tuple[str | None, float]] = field(default_factory=list)
    structure_level: float = 0.0
    guidance_scale: float | None = None  # None: the model's recommended w
    temporal_guidance_scale: float = 1.0
    num_inference_steps: int | None = None  # None: the model's own
    strength: float = 1.0
    full_strength_start: str = "noise"
    seed: int = 0
    size: int | None = None  # None: the size the model was trained at
    start: float = 0.0
    duration: float | str | None = None  # text from the page's fields: "" or None keeps the default
    max_frames: int | str | None = None
    fps: float | str | None = None
    scheduler: str | None = None
    window_size: int | str | None = None
    window_overlap: int | str | None = None
    negative_prompt: str = ""
    controlnet_conditioning_scale: float = 1.0
    mask_drawing: Any = None  # gradio ImageEditor value: {"background", "layers", "composite"}
    mask_file: str | None = None
    depth_file: str | None = None
    depth_invert: bool = False
    depth_cache: bool = True
    controlnet_guidance_start: float = 0.0
    controlnet_guidance_end: float = 1.0
    window_shift: bool = True
    erase: bool = False
    erase_strength: float | None = None
    drag_strength: float | None = None
    erase_fill: str | None = None  # not on the page: an erase fills from the frames that see the background
    mask_frame: int | None = None  # the mask is this frame's, tracked to every frame
    mask_structure: str | None = None
    mask_structure_level: float | None = None
    model: str | None = None
    direction_neutral: str = ""  # one global direction NEUTRAL -> TARGET (docs/directions.md), empty: none
    direction_target: str = ""
    direction_alpha: float = 1.0
    mask_tracker: str = "flow"  # how the mask of mask_frame follows the subject (gen1.tracking)
    mask_tracker_model: str | None = None  # not taken from the page: the server's default SAM 2 model
    mask_clicks: tuple | str = ()  # (x, y, positive) on mask_frame in pixels of the upload, or the page's text
    inpaint_controlnet_scale: float = 1.0
    drag_vectors: str = ""  # --drag: vectors X0,Y0:X1,Y1 separated by spaces or new lines (docs/drag.md), empty: none


#: The settings the page gives through fields of its own kind (every other setting is an EditForm field of its name).
FORM_FIELDS = {"prompt": ("prompt",), "reference_image": ("references",),
               "content_weights": ("prompt_weight", "references"), "mask": ("mask_drawing", "mask_file"),
               "depth": ("depth_file",), "direction": ("direction_neutral", "direction_target"),
               "direction_scale": ("direction_alpha",), "drag": ("drag_vectors",)}


@dataclass
class ClipPreview:
    """A clip as the edit will read it: its structure, a playable copy, and the canvas to draw a mask on."""

    structure: StructurePreview
    source_video: Path
    mask_canvas: np.ndarray  # uint8 (H, W, 3): the first frame, enlarged (EditService.frame_canvas: another)
    num_frames: int  # the frames the edit reads (the page's frame choice goes up to num_frames - 1)
    frame: int = 0  # the frame mask_canvas shows (EditService.preview_clip's ``frame``, within the clip)


@dataclass
class EditOutcome:
    output: Path
    compare: Path
    downloads: list[Path]
    command: str
    summary: str  # what was edited, then the warnings, one paragraph each (shown as the page's status)
    warnings: list[str] = field(default_factory=list)  # what the edit warned about (unknown prompt words, ...)


class EditService:
    """Runs the page's previews and edits with the models of ``catalog`` within ``limits``, writing under
    ``workdir`` (a new temporary folder by default, removed by :meth:`close`)."""

    def __init__(self, catalog: ModelCatalog, limits: ServeLimits = ServeLimits(), workdir: Path | None = None,
                 upload_root: Path | None = None):
        self.catalog, self.limits = catalog, limits
        # where the web server stores uploads (gradio's upload folder): a session's uploads there are removed with
        # it; None: uploads are the caller's files and never removed
        self.upload_root = None if upload_root is None else Path(upload_root).resolve()
        self._session_files: dict[str, set[Path]] = {}  # each session's uploads and job folders
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="gen1-serve-")) if workdir is None else Path(workdir)
        self._cancel_events: dict[str, threading.Event] = {}
        self._cancel_lock = threading.Lock()
        self._idle = threading.Condition(self._cancel_lock)  # notified as each edit ends
        self._running = 0
        self._stopping = threading.Event()  # set by stop(): every edit is cancelled
        self._missing_models: dict[str, float] = {}  # tracker name -> when its model was found missing

    def close(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------- sessions
    def _claim(self, session: str, form: EditForm, job: Path) -> None:
        """Count ``form``'s uploads and ``job`` as ``session``'s; ``ValueError`` when its files on disk would be
        over :attr:`ServeLimits.max_session_mb` (the job folder is removed then)."""
        from gen1.serve.quota import MB, folder_bytes  # lazy: keeps this module's import light (no torch when it loads)

        uploads = [form.video, form.mask_file, form.depth_file] + [path for path, _ in form.references]
        with self._cancel_lock:
            files = self._session_files.setdefault(session, set())
            files.update(Path(path) for path in uploads if path and Path(path).is_file())
            files.add(job)
            used = sum(folder_bytes(path) if path.is_dir() else path.stat().st_size
                       for path in files if path.exists())
        if used > self.limits.max_session_mb * MB:
            shutil.rmtree(job, ignore_errors=True)
            raise ValueError(f"this session's uploads and results take {used / MB:.1f} MB, more than the "
                             f"{self.limits.max_session_mb:g} MB one session may use: reload the page to start "
                             "afresh")

    def end_session(self, session: str) -> None:
        """``session`` is over (its page was closed): remove its job folders and its uploads (those in
        :attr:`upload_root`)."""
        with self._cancel_lock:
            files = self._session_files.pop(session, set())
            self._cancel_events.pop(session, None)
        for path in files:
            if path.is_dir() and path.parent == self.workdir:
                shutil.rmtree(path, ignore_errors=True)
            elif self.upload_root is not None and path.resolve().is_relative_to(self.upload_root):
                path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _job(self, session: str, form: EditForm):
        """A fresh job folder booked to ``session`` with ``form``'s uploads (:meth:`_claim`); if what runs in it
        fails or is cancelled, the folder is removed and unbooked at once: a request that fails leaves no folder
        behind (only its own folder: nothing of another request or session is touched)."""
        job = self._new_job()
        try:
            self._claim(session, form, job)
            yield job
        except BaseException:
            self._drop_job(session, job)
            raise

    def _drop_job(self, session: str, job: Path) -> None:
        """Remove the job folder ``job`` of ``session`` and forget it."""
        with self._cancel_lock:
            self._session_files.get(session, set()).discard(job)
        shutil.rmtree(job, ignore_errors=True)

    # ------------------------------------------------------------------------------------------- preview
    @contextlib.contextmanager
    def _reading_clip(self, form: EditForm, session: str, *, keep_job: bool):
        """The clip of ``form`` read as an edit reads it (its content and mask play no part in that): yields the
        request (its outputs in a new job folder of ``session``) and the inputs read; the job folder is removed at the
        end unless ``keep_job``."""
        form = dataclasses.replace(form, prompt="preview", references=[], mask_drawing=None, mask_file=None)
        with _uploads_named(form), self._job(session, form) as job:
            request = self._request(form, job)
            yield request, read_inputs(request, limits=self._clip_limits(request.size))
            if not keep_job:
                self._drop_job(session, job)

    def preview_clip(self, form: EditForm, *, session: str = "", frame: int = 0) -> ClipPreview:
        """Read the clip as an edit of ``form`` would, estimate its depth once, and write a playable copy; its
        :attr:`ClipPreview.mask_canvas` shows frame ``frame`` (the page's chosen frame; the last one if the clip
        has fewer frames now)."""
        # lazy: keeps this module's import light (no torch when it loads)
        from gen1.media import write_video  # lazy: keeps this module's import light (no torch when it loads)

        # lazy: keeps this module's import light (no torch when it loads)
        from gen1.serve.preview import prepare_structure

        with self._reading_clip(form, session, keep_job=True) as (request, inputs):
            pipe = self.catalog.pipeline(self._model_name(form))
            structure = prepare_structure(pipe, inputs.clip.frames, inputs.depth)
            clip = inputs.clip
            source = write_video(Path(request.output).with_name("source.mp4"), clip.frames, clip.fps,
                                 audio_from=clip if clip.has_audio else None)
        shown = max(0, min(int(frame), len(clip.frames) - 1))
        return ClipPreview(structure=structure, source_video=Path(source), mask_canvas=_enlarge(clip.frames[shown]),
                           num_frames=len(clip.frames), frame=shown)

    def frame_canvas(self, form: EditForm, index: int, *, session: str = "") -> np.ndarray:
        """Frame ``index`` of the clip as an edit of ``form`` reads it, enlarged as :attr:`ClipPreview.mask_canvas`:
        the frame a mask is painted on, clicks and drags are given on and tracking starts from (``--mask-frame``),
        for a subject that is not in the first frame or is best seen later. No depth is estimated, nothing written."""
        with self._reading_clip(form, session, keep_job=False) as (_, inputs):
            frames = inputs.clip.frames
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(frames):
            raise ValueError(f"--mask-frame {index} is outside the clip (frames 0 to {len(frames) - 1})")
        return _enlarge(frames[index])

    # ------------------------------------------------------------------------------------------- tracking
    def track_preview(self, form: EditForm, *, session: str = "") -> Path:
        """The mask the edit of ``form`` will use, tracked over the clip before anything is generated: a video of
        the clip as the edit reads it with the region tinted red (written into a job folder). The region is
        :func:`gen1.masked_edits.edit_region`'s, as in the edit: the drawn / uploaded mask of ``mask_frame``, or the
        clicks (``mask_clicks``), carried by ``mask_tracker`` along the clip's depth (an erase's grown margin
        included)."""
        import torch  # lazy: torch is heavy and only this path needs it

        from gen1.masked_edits import edit_region  # lazy: keeps this module's import light (no torch when it loads)
        from gen1.media import write_video  # lazy: keeps this module's import light (no torch when it loads)
        from gen1.serve.preview import prepare_structure  # lazy: keeps this module's import light
        from gen1.tracking import make_tracker  # lazy: keeps this module's import light (no torch when it loads)

        # any content will do for a preview of the region; an erase takes none (--erase refuses a prompt)
        form = dataclasses.replace(form, prompt="" if form.erase else (form.prompt or "preview"),
                                   references=[] if form.erase else form.references)
        with _uploads_named(form), self._job(session, form) as job:
            request = self._request(form, job)
            if request.mask is None and not request.mask_clicks:
                raise ValueError("draw or upload a mask, or click on the subject, to see it tracked")
            inputs = read_inputs(request, limits=self._clip_limits(request.size))
            _check_tracker_model(request, self._missing_models)
            pipe = self.catalog.pipeline(self._model_name(form))
            source = pipe.source_as_read(inputs.clip.frames)
            depth = prepare_structure(pipe, inputs.clip.frames, inputs.depth).depth
            mask_frame = request.mask_frame if request.mask_frame is not None or not inputs.clicks else 0
            region = edit_region(inputs.mask, source.frames, source.input_size, mask_frame=mask_frame, depth=depth,
                                 erase=request.erase, tracker=make_tracker(request.mask_tracker),
                                 clicks=inputs.clicks)
            red = torch.tensor([1.0, 0.2, 0.35]).view(1, 3, 1, 1)
            inside = (region > 0.5).float()
            shown = source.frames * (1 - 0.55 * inside) + red * 0.55 * inside
            frames = (shown.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            return Path(write_video(job / "tracked-mask.mp4", frames, inputs.clip.fps))

    # ------------------------------------------------------------------------------------------- edit
    def arm(self, session: str) -> None:
        """A new edit of ``session`` is coming: a cancel from now on stops it (and no earlier cancel does)."""
        with self._cancel_lock:
            self._cancel_events[session] = threading.Event()

    def cancel(self, session: str) -> None:
        """Stop ``session``'s edit at the next denoising step (or before it starts, if it waits in the queue)."""
        with self._cancel_lock:
            self._cancel_events.setdefault(session, threading.Event()).set()

    def preview_edit(self, form: EditForm, *, session: str = "",
                     progress: Callable[[int, int], None] | None = None) -> EditOutcome:
        """The edit ``form`` describes, of the clip's first temporal window only (the frames one denoising window
        holds, at most the form's ``max_frames``), at the same settings: a window's share of the full edit's time,
        so a user can judge the settings before waiting for the whole clip. Its command line (``--max-frames``)
        reproduces it; the full edit's frames there differ a little (its windows overlap and its noise is drawn
        for every frame)."""
        pipe = self.catalog.pipeline(self._model_name(form))
        given = optional_number(form.window_size, "--window", whole=True)
        check_settings({"window_size": given}, flag_label)  # named --window, as the edit names it
        window, _ = pipe.prepare_windows(given, None)
        wanted = optional_number(form.max_frames, "--max-frames", whole=True)
        frames = min(window, wanted or window)
        mask_frame = optional_number(form.mask_frame, "--mask-frame", whole=True)
        if mask_frame is not None and mask_frame >= frames:
            raise ValueError(f"the preview edits the first window, frames 0 to {frames - 1}, but the subject is given "
                             f"on frame {mask_frame}: choose a frame within the window to preview it, or run the "
                             "whole edit")
        outcome = self._edit(dataclasses.replace(form, max_frames=frames), session, progress, kind="preview")
        outcome.summary = "Preview of the first window. " + outcome.summary
        return outcome

    def edit(self, form: EditForm, *, session: str = "", progress: Callable[[int, int], None] | None = None
             ) -> EditOutcome:
        """Run the edit ``form`` describes; :class:`gen1.editing.EditCancelled` if ``session`` cancels it."""
        return self._edit(form, session, progress, kind="edit")

    def _edit(self, form: EditForm, session: str, progress, *, kind: str) -> EditOutcome:
        """:meth:`edit`, its downloads named as :data:`OUTPUT_NAMES` ``[kind]`` says."""
        with self._cancel_lock:
            cancelled = self._cancel_events.setdefault(session, threading.Event())
            self._running += 1
        started = time.monotonic()
        try:
            # a failed or cancelled edit's folder (a drawn mask, a partial output) goes at once (EditService._job)
            with self._job(session, form) as job, _uploads_named(form), \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                request = self._request(form, job, names=OUTPUT_NAMES[kind])
                name = self._model_name(form)
                pipe = self.catalog.pipeline(name)
                pipe.route.check_settings(request.settings("edit"), label=flag_label, model=name)
                inputs = read_inputs(request, limits=self._clip_limits(request.size))
                _check_tracker_model(request, self._missing_models)
                result = run_edit(pipe, request, inputs, progress=progress,
                                  cancel=lambda: cancelled.is_set() or self._stopping.is_set())
        finally:
            with self._cancel_lock:
                # this edit is over: its cancel (if any) is spent, so the session's next edit starts uncancelled
                if self._cancel_events.get(session) is cancelled:
                    del self._cancel_events[session]
                self._running -= 1
                self._idle.notify_all()
        notes = _warning_lines(caught)
        drawn_mask = [Path(request.mask)] if request.mask is not None and Path(request.mask).parent == job else []
        downloads = [result.output, result.compare] + drawn_mask
        clip = inputs.clip
        audio = "audio kept" if clip.has_audio else "no audio in the source"
        summary = (f"Edited {result.num_frames} frames ({clip.width}×{clip.height}, {float(clip.fps):.3f} fps, "
                   f"{audio}) with {name} in {time.monotonic() - started:.1f} s."
                   + "".join(f"\n\nWarning: {note}" for note in notes))
        command = edit_command(_as_shown(request, _upload_names(form)), self.catalog.command_args(name))
        return EditOutcome(result.output, result.compare, downloads, command, summary, notes)

    @property
    def running(self) -> int:
        """How many edits are running now."""
        with self._cancel_lock:
            return self._running

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Cancel every edit (running or waiting) and wait up to ``timeout_s`` until none runs; True if none does.

        The server calls it on Ctrl-C / SIGTERM before exiting: leaving while a worker thread is inside torch
        aborts the process (``terminate called without an active exception``) instead of exiting cleanly."""
        self._stopping.set()
        with self._cancel_lock:
            return self._idle.wait_for(lambda: self._running == 0, timeout=timeout_s)

    # ------------------------------------------------------------------------------------------- helpers
    def _model_name(self, form: EditForm) -> str:
        return self.catalog.model(form.model or self.catalog.default_name).name

    def _new_job(self) -> Path:
        """A fresh folder for one preview or edit; folders older than :data:`JOB_LIFETIME_S` are removed (and the
        sessions' bookkeeping of files gone meanwhile: API clients' sessions may never end)."""
        now = time.time()
        removed = False
        for old in self.workdir.glob("job-*"):
            if now - old.stat().st_mtime > JOB_LIFETIME_S:
                shutil.rmtree(old, ignore_errors=True)
                removed = True
        if removed:
            self._forget_gone_files()
        job = self.workdir / f"job-{uuid.uuid4().hex[:12]}"
        job.mkdir(parents=True)
        return job

    def _forget_gone_files(self) -> None:
        """Drop from each session's files those no longer on disk (aged-out job folders, uploads gradio removed),
        and the sessions left with none: a session that never ends (an API client without gradio_client's
        heartbeat) must not keep its entries for the server's life."""
        with self._cancel_lock:
            for session, files in list(self._session_files.items()):
                files.difference_update([path for path in files if not path.exists()])
                if not files:
                    del self._session_files[session]

    def _clip_limits(self, size: int) -> ClipLimits:
        return ClipLimits(max_frames=self.limits.max_frames, max_seconds=self.limits.max_seconds,
                          max_image_pixels=upload_pixel_limit(size))

    def _request(self, form: EditForm, job: Path, names: tuple[str, str, str] = OUTPUT_NAMES["edit"]) -> EditRequest:
        """The request ``form`` describes, checked, with its outputs (and a drawn mask) in ``job``, named ``names``
        (:data:`OUTPUT_NAMES`)."""
        if not form.video:
            raise ValueError("upload a video first")
        if None in (form.size, form.guidance_scale, form.num_inference_steps):  # left out: the model's own
            defaults = self.catalog.defaults(self._model_name(form))
            form = replace(form, size=min(defaults.size, self.limits.max_size) if form.size is None else form.size,
                           guidance_scale=(defaults.guidance_scale if form.guidance_scale is None
                                           else form.guidance_scale),
                           num_inference_steps=(defaults.num_inference_steps if form.num_inference_steps is None
                                                else form.num_inference_steps))
        if form.mask_tracker_model:  # a page must not make the server fetch models of its choosing
            raise ValueError("--mask-tracker-model is the server's to choose: leave it empty")
        form = replace(form, size=_whole(form.size), num_inference_steps=_whole(form.num_inference_steps),
                       seed=_whole(form.seed))  # a value that is no whole number is refused naming its flag
        check_settings({"size": form.size, "num_inference_steps": form.num_inference_steps, "seed": form.seed},
                       flag_label)
        if form.size > self.limits.max_size:
            raise ValueError(f"--size {form.size} is above this server's limit of {self.limits.max_size}")
        stem = Path(form.video).stem or "video"
        prompts = (form.prompt.strip(),) if form.prompt and form.prompt.strip() else ()
        references = [(path, weight) for path, weight in form.references if path]
        weights = ([form.prompt_weight] if prompts else []) + [weight for _, weight in references]
        request = EditRequest(
            input=form.video, output=str(job / names[0].format(stem=stem)),
            compare=str(job / names[1].format(stem=stem)),
            prompt=prompts,
            reference_image=tuple(path for path, _ in references),
            content_weights=_content_weights(weights),
            negative_prompt=form.negative_prompt.strip() or None, structure_level=form.structure_level,
            guidance_scale=form.guidance_scale, temporal_guidance_scale=form.temporal_guidance_scale,
            controlnet_conditioning_scale=form.controlnet_conditioning_scale,
            controlnet_guidance_start=form.controlnet_guidance_start,
            controlnet_guidance_end=form.controlnet_guidance_end,
            inpaint_controlnet_scale=form.inpaint_controlnet_scale,
            num_inference_steps=form.num_inference_steps, scheduler=form.scheduler or None,
            strength=form.strength, full_strength_start=form.full_strength_start, seed=form.seed,
            mask=_mask_path(form, job, names[2]), depth=form.depth_file or None,
            depth_invert=bool(form.depth_invert and form.depth_file),  # the box goes with the upload
            depth_cache=bool(form.depth_cache), size=form.size,
            fps=optional_number(form.fps, "--fps"), start=form.start or 0.0,
            duration=optional_number(form.duration, "--duration"),
            max_frames=optional_number(form.max_frames, "--max-frames", whole=True),
            window_size=optional_number(form.window_size, "--window", whole=True),
            window_overlap=optional_number(form.window_overlap, "--overlap", whole=True),
            window_shift=bool(form.window_shift), erase=bool(form.erase),
            erase_strength=optional_number(form.erase_strength, "--erase-strength"),
            drag_strength=optional_number(form.drag_strength, "--drag-strength"), erase_fill=form.erase_fill or None,
            mask_frame=optional_number(form.mask_frame, "--mask-frame", whole=True),
            mask_structure=form.mask_structure or None,
            mask_structure_level=optional_number(form.mask_structure_level, "--mask-structure-level"),
            # the page's tracker choice stays set when nothing is followed: it is the edit's only when it is
            mask_tracker=(form.mask_tracker or "flow") if form.mask_frame is not None or form.mask_clicks else "flow",
            mask_clicks=parse_clicks(form.mask_clicks),
            **_direction(form),
            drag=drag_vectors(form.drag_vectors),
        )
        check_request(request)
        return request


def _content_weights(weights: list) -> tuple | None:
    """The page's weights (prompt, then references) as ``--content-weights``: left out (``None``) when they are
    equal and valid, as they change nothing then (they are normalised); otherwise given, so that what ``gen1 edit``
    refuses (a lone weight 0, all 0, a negative one) is refused here too, naming --content-weights, instead of being
    ignored."""
    if not weights:
        return None
    first = weights[0]
    equal = all(weight == first for weight in weights)
    valid = isinstance(first, (int, float)) and not isinstance(first, bool) and 0 < first < float("inf")
    return None if equal and valid else tuple(weights)


def _whole(value):
    """``value`` as an ``int`` when it is a whole number (the page's sliders send floats such as ``2.0``); anything
    else as it is, for :func:`gen1.settings.check_settings` to refuse naming the flag (``--steps must be an integer,
    got nan``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def drag_vectors(text) -> tuple[str, ...]:
    """The page's drag vectors (``X0,Y0:X1,Y1`` separated by spaces or new lines) as the request's ``drag``;
    ``ValueError`` in one line for anything else. ``gen1 edit --drag`` also takes a track file's path: the web app
    never does (a user names no file on the server), and its message neither shows a file nor says whether one
    exists, so a page cannot probe the server's files through this field."""
    from gen1.drag import is_track_file, parse_vector  # lazy: keeps this module's import light (no torch when it loads)

    vectors = tuple(_vector_text(text).split())
    for vector in vectors:
        try:
            parse_vector(vector)
        except ValueError:
            if is_track_file(vector) or any(mark in vector for mark in "/\\~"):  # a path: not shown back
                raise ValueError("--drag takes vectors X0,Y0:X1,Y1 here (pixels of the source video), not files "
                                 "or paths") from None
            shown = vector if len(vector) <= 40 else vector[:40] + "…"
            raise ValueError(f"--drag takes vectors X0,Y0:X1,Y1 here (pixels of the source video), got "
                             f"{shown!r}") from None
    return vectors


def _vector_text(value) -> str:
    """The page's drag vectors field as text ("" when empty); ``ValueError`` for an API client's other value."""
    if value is not None and not isinstance(value, str):
        raise ValueError("--drag: give the drag vectors as text, X0,Y0:X1,Y1 separated by spaces")
    return value or ""


def _check_tracker_model(request: EditRequest, missing: dict[str, float] | None = None) -> None:
    """Refuse a tracker whose model this server does not have (SAM 2 not installed) in one line a web user can act
    on: the full reason (the server's cache path, the download command) is for the operator, in the log. A model
    found missing is remembered in ``missing`` (tracker name -> when) for :data:`MODEL_RETRY_S`: each request would
    otherwise ask the Hub again (seconds each time); after that it is looked for again (an operator may install
    it meanwhile)."""
    from gen1.media import frame_size  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.tracking import check_clicks, make_tracker  # lazy: keeps this module's import light

    tracker = make_tracker(request.mask_tracker)
    if not tracker.takes_model or (request.mask_frame is None and not request.mask_clicks):
        return
    if request.mask_clicks:  # a click off the frame is the user's to fix first (as gen1 edit checks it)
        try:
            check_clicks(request.mask_clicks, 0, 1, frame_size(request.input))
        except ValueError as error:
            raise ValueError(f"--mask-click: {error}") from None
    clicks = "clicks on the subject need it: " if request.mask_clicks else ""
    missing = {} if missing is None else missing
    found_missing = missing.get(tracker.name)
    if found_missing is None or time.monotonic() - found_missing > MODEL_RETRY_S:
        try:
            tracker.check_model()
            missing.pop(tracker.name, None)
            return
        except (ValueError, OSError) as error:
            logging.getLogger("gen1.serve").warning("the %s tracker cannot run: %s", tracker.name, error)
            missing[tracker.name] = time.monotonic()
    raise ValueError(f"this server has no {tracker.name} model ({clicks}paint the subject's mask instead and "
                     f"follow it with flow, or ask the server's operator to install it)")


def upload_pixel_limit(size: int) -> int:
    """The most pixels an uploaded image (mask, depth, reference) may have for an edit at short side ``size``:
    :data:`UPLOAD_SCALE` times the edit's side squared, at least :data:`UPLOAD_PIXELS_MIN`. A larger image only
    costs memory (a 13000x13000 PNG of 194 KB decodes to 500 MB) before it is scaled down to the edit's size."""
    return max(UPLOAD_PIXELS_MIN, (UPLOAD_SCALE * int(size)) ** 2)


def optional_number(value, flag: str, *, whole: bool = False) -> float | int | None:
    """A field that may be left empty: ``None`` for nothing or blank text (the setting keeps its default), else the
    number given (text from the page's fields, numbers from API clients); ``ValueError`` naming ``flag`` for text
    that is no number (or no whole number where ``whole``). Ranges are :func:`gen1.editing.check_request`'s."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{flag} must be a number, got {value!r}")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be a number, got {str(value)!r}") from None
    if not whole:
        return number
    if not number.is_integer():
        raise ValueError(f"{flag} must be a whole number, got {str(value).strip()!r}")
    return int(number)


def _warning_lines(caught) -> list[str]:
    """The distinct messages of the ``UserWarning``s an edit raised, in order, also written to the server's log
    (where they went before the page showed them)."""

    notes = list(dict.fromkeys(str(item.message) for item in caught if issubclass(item.category, UserWarning)))
    for note in notes:
        logging.getLogger("gen1.serve").warning("%s", note)
    return notes


def _enlarge(frame: np.ndarray) -> np.ndarray:
    """The frame enlarged by a whole factor to about :data:`MASK_CANVAS` on its short side, for drawing a mask."""
    import cv2  # lazy: cv2 is heavy and only this path needs it

    factor = max(1, MASK_CANVAS // min(frame.shape[:2]))
    if factor == 1:
        return frame
    return cv2.resize(frame, (frame.shape[1] * factor, frame.shape[0] * factor), interpolation=cv2.INTER_CUBIC)


def _drawn_mask(drawing) -> np.ndarray | None:
    """White where any layer of the ImageEditor value has paint, else black; ``None`` if nothing is drawn."""
    import numpy as np  # lazy: numpy is heavy and only this path needs it

    if not isinstance(drawing, dict):
        return None
    painted = None
    for layer in drawing.get("layers") or []:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[-1] != 4:
            continue
        paint = layer[..., 3] > 0
        painted = paint if painted is None or painted.shape != paint.shape else painted | paint
    if painted is None or not painted.any():
        return None
    return np.where(painted, 255, 0).astype(np.uint8)


def fit_drawing(drawing, canvas: np.ndarray) -> dict:
    """The page's painting ``drawing`` (an ImageEditor value) on a new ``canvas`` (the chosen frame as the clip is
    read now, e.g. at another size): its paint layers scaled to the canvas, so the mask follows a change of the
    clip's size instead of being refused for the old canvas's size."""
    import cv2  # lazy: cv2 is heavy and only this path needs it
    import numpy as np  # lazy: keeps this module's import light

    height, width = canvas.shape[:2]
    layers = []
    for layer in (drawing.get("layers") or []) if isinstance(drawing, dict) else []:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[-1] != 4 or not layer[..., 3].any():
            continue
        if layer.shape[:2] != (height, width):
            layer = cv2.resize(layer, (width, height), interpolation=cv2.INTER_NEAREST)
        layers.append(layer)
    return {"background": canvas, "layers": layers, "composite": None}


def _mask_path(form: EditForm, job: Path, name: str = "mask.png") -> str | None:
    """The mask file of the edit: the uploaded one, or the drawn one saved as ``name`` in ``job``."""
    drawn = _drawn_mask(form.mask_drawing)
    if drawn is not None and form.mask_file:
        raise ValueError("give one mask: drawn on a frame or uploaded, not both (clear one of them)")
    if drawn is None:
        return form.mask_file or None
    from PIL import Image  # lazy: PIL is heavy and only this path needs it

    path = job / name
    Image.fromarray(drawn).save(path)  # at the canvas's size: read as gen1 edit reads the frames' shape (any size)
    return str(path)


def canvas_click(video: str, canvas_shape, x: float, y: float, positive: bool = True) -> tuple[float, float, bool]:
    """A click at ``(x, y)`` on the page's mask canvas (the clip's frame enlarged, ``canvas_shape`` ``(H, W, ...)``)
    as ``--mask-click`` takes it: in pixels of the source video ``video``, through the geometry the clip was fitted
    by (:func:`gen1.media.resize.unfit_points`; the canvas is that fit enlarged)."""
    from gen1.media import frame_size  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.media.resize import unfit_points  # lazy: keeps this module's import light (no torch when it loads)

    source_x, source_y = unfit_points([x, y], frame_size(video), tuple(canvas_shape[:2]))
    return float(source_x), float(source_y), bool(positive)


def parse_clicks(text) -> tuple:
    """The page's clicks field, ``X,Y[,+|-]`` separated by ``;`` or new lines (empty: none), as ``mask_clicks``;
    ``ValueError`` naming ``--mask-click`` for one that is no click."""
    import argparse

    from gen1.settings import click_value

    if not isinstance(text, str):  # already clicks (an API client's list)
        return tuple(tuple(click) for click in text or ())
    clicks = []
    for item in text.replace("\n", ";").split(";"):
        if item.strip():
            try:
                clicks.append(click_value(item))
            except argparse.ArgumentTypeError as error:
                raise ValueError(f"--mask-click: {error}") from None
    return tuple(clicks)


#: What the page does with the subject (the mask or clicks): edit it (restyle or replace: the prompt or reference),
#: erase it (--erase), or move it by the drag vectors (--drag).
SUBJECT_ACTIONS = ("edit", "erase", "drag")


def subject_settings(action: str | None, drag_vectors: str | None) -> dict:
    """The form's ``erase`` and ``drag_vectors`` for the page's choice ``action`` (:data:`SUBJECT_ACTIONS`; None:
    edit); ``ValueError`` for an unknown action or a drag without vectors."""
    action = action or "edit"
    if action not in SUBJECT_ACTIONS:
        raise ValueError(f"the subject's action must be one of {', '.join(SUBJECT_ACTIONS)}, got {action!r}")
    vectors = _vector_text(drag_vectors).strip()
    if action == "drag" and not vectors:
        raise ValueError("drag: give the drag vectors (--drag X0,Y0:X1,Y1; two clicks on the chosen frame, from and "
                         "to, add one)")
    return dict(erase=action == "erase", drag_vectors=vectors if action == "drag" else "")


def add_drag_point(vectors: str | None, x: float, y: float) -> str:
    """The page's drag vectors with a click at source pixel ``(x, y)`` added: the start of a new vector
    (``X,Y:``), or the end of one whose start is waiting."""
    text, point = (vectors or "").strip(), f"{x:.1f},{y:.1f}"
    if text.endswith(":"):
        return f"{text}{point}"
    return f"{text} {point}:".strip()


def drag_arrows(canvas: np.ndarray, video: str, vectors: str | None) -> np.ndarray:
    """A copy of the page's canvas ``canvas`` ``uint8 (H, W, 3)`` (the chosen frame, enlarged) with the drag
    ``vectors`` (the page's field: ``X0,Y0:X1,Y1`` in pixels of the source ``video``, a trailing ``X,Y:`` a start
    waiting for its end) drawn on it as arrows (a waiting start as a dot), so the user sees the drags given by
    clicks."""
    import cv2  # lazy: cv2 is heavy and only this path needs it
    import numpy as np  # lazy: keeps this module's import light

    from gen1.media import frame_size  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.media.resize import fit_points  # lazy: keeps this module's import light (no torch when it loads)

    source_size = frame_size(video)

    def on_canvas(point: str) -> tuple[int, int]:
        x, y = fit_points([float(value) for value in point.split(",")], source_size, tuple(canvas.shape[:2]))
        return round(float(x)), round(float(y))

    drawn = np.ascontiguousarray(canvas[..., :3], dtype=np.uint8).copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 160))
    for vector in (vectors or "").split():
        start, _, end = vector.partition(":")
        try:
            if end:
                cv2.arrowedLine(drawn, on_canvas(start), on_canvas(end), (255, 220, 0), thickness, tipLength=0.25)
            else:
                cv2.circle(drawn, on_canvas(start), 2 * thickness, (255, 220, 0), -1)
        except ValueError:
            continue  # a vector typed by hand that is no vector: the edit names it in one line
    return drawn


def format_clicks(clicks) -> str:
    """``mask_clicks`` as the page's clicks field shows them (``X,Y,+; X,Y,-``, pixels rounded to tenths)."""
    return "; ".join(f"{x:.1f},{y:.1f},{'+' if positive else '-'}" for x, y, positive in clicks)


class Upload(str):
    """An upload's path on the server, as the page's file fields give it (a form's ``video``, ``mask_file``,
    ``depth_file`` and references may be these), with ``user_name``: the name of the user's file (:func:`upload_name`),
    which the stored name is not always (gradio cleans names: "mask $(x).png" is stored as "mask (x).png"). The
    command line and the messages name the upload by it. ``name`` is the path, as gradio's NamedString's."""

    def __new__(cls, path: str, user_name: str | None = None):
        upload = super().__new__(cls, path)
        upload.user_name, upload.name = upload_name(user_name, path), str(path)
        return upload


def _uploads(form: EditForm) -> list:
    """``form``'s upload fields (source, mask, depth, references), given or not."""
    return [form.video, form.mask_file, form.depth_file] + [path for path, _ in form.references]


def _upload_names(form: EditForm) -> dict[str, str]:
    """The user's names of ``form``'s uploads that are :class:`Upload` objects, by their paths on the server."""
    return {str(path): path.user_name for path in _uploads(form) if isinstance(path, Upload)}


def upload_name(given, path) -> str:
    """The name to show for the upload stored at ``path``: ``given`` (the name the client says the user's file has)
    when it is a plain file name fit to show in one line, else the stored file's name."""
    text = given if isinstance(given, str) else ""
    plain = (0 < len(text) <= 255 and text not in (".", "..") and not any(mark in text for mark in "/\\")
             and text.isprintable())
    return text if plain else Path(path).name


def _as_shown(request: EditRequest, upload_names: dict[str, str] | None = None) -> EditRequest:
    """The request with every path shown by its file name: the names the page's downloads have and the names the
    user's uploads had on their side (``upload_names``, by path; else the stored file's name), for a command line
    to run where those files are."""
    upload_names = upload_names or {}

    def name(path):
        return None if path is None else upload_names.get(str(path)) or Path(path).name

    return dataclasses.replace(
        request, input=name(request.input), output=name(request.output), compare=name(request.compare),
        mask=name(request.mask), depth=name(request.depth), reference_image=tuple(map(name, request.reference_image)))


@contextlib.contextmanager
def _uploads_named(form: EditForm):
    """Re-raise user errors (``ValueError``, ``OSError``) with the server's paths of the uploads replaced by the
    files' names: the page tells a user about their files, not about the server's folders."""
    try:
        yield
    except (ValueError, OSError) as error:
        message, names = str(error), _upload_names(form)
        for path in sorted((str(p) for p in _uploads(form) if p), key=len, reverse=True):
            message = message.replace(path, names.get(path) or Path(path).name)
        raise ValueError(message) from None


def _direction(form: EditForm) -> dict:
    """The form's direction as the request's ``direction`` / ``direction_scale`` (nothing when both texts are
    empty; one text alone is refused by the request's check, naming --direction)."""
    neutral, target = (form.direction_neutral or "").strip(), (form.direction_target or "").strip()
    if not neutral and not target:
        return {}
    alpha = 1.0 if form.direction_alpha is None else form.direction_alpha
    return dict(direction=((neutral, target),), direction_scale=(alpha,))

