"""The gradio page of ``gen1 serve``: upload a clip, set the content and the knobs, watch the structure preview,
edit, download.

Only the layout and the wiring live here; :class:`gen1.serve.service.EditService` does the work. Edits go
through gradio's queue one at a time (``concurrency_id="device"``): other users see their place in the queue.
The edit is also the app's public API (``api_name="edit"``), callable with ``gradio_client``.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
from gradio_client import utils as client_utils

from gen1.editing import DEFAULTS, EditCancelled
from gen1.serve.service import (
    SUBJECT_ACTIONS,
    Upload,
    EditForm,
    EditService,
    add_drag_point,
    canvas_click,
    drag_arrows,
    fit_drawing,
    format_clicks,
    optional_number,
    parse_clicks,
    subject_settings,
)
from gen1.settings import MAX_LEVEL, SCHEDULERS, TRACKER_NAMES

REFERENCE_SLOTS = 3
MODEL_DEFAULT_SCHEDULER = "model's own"
VIDEO_TYPES = [".mp4", ".mov", ".m4v", ".webm", ".gif", ".mkv", ".avi"]
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"]
PREVIEW_HEIGHT = 240
MAX_FAILURES_KEPT = 1000  # sessions whose last edit's error is kept for the page's status
FAILURES_LOCK = threading.Lock()  # the kept errors are written from gradio's worker threads
OUTPUT_HEIGHT = 360
CSS = """
#structure-preview img, #mask-editor canvas { image-rendering: pixelated; }
#structure-preview img { width: 100%; height: 100%; object-fit: contain; }
"""

log = logging.getLogger("gen1.serve")


def build_app(service: EditService):
    """The gradio Blocks app over ``service``."""
    with gr.Blocks(title="gen1: edit a video", analytics_enabled=False, delete_cache=(1800, 3600)) as app:
        gr.Markdown("# gen1: edit a video\nUpload a clip, say what it should look like, and keep its structure "
                    "(depth) at the level you choose. The result keeps the clip's sound.")
        ui = SimpleNamespace(structure_state=gr.State(None), failures={})  # failures: each session's last edit error
        with gr.Row():
            with gr.Column(scale=5):
                _source_inputs(ui, service)
                _content_inputs(ui)
                _knob_inputs(ui, service)
                with gr.Row():
                    ui.edit_button = gr.Button("Edit", variant="primary", elem_id="edit-button")
                    ui.preview_button = gr.Button("Preview first window", elem_id="preview-button")
                    ui.cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel-button")
            with gr.Column(scale=4):
                _outputs(ui)
        _wire(ui, service)
        # the page was closed: its job folders and uploads go (they count against the quotas until then)
        def end_session(request: gr.Request):
            ui.failures.pop(_session(request), None)
            service.end_session(_session(request))

        app.unload(end_session)
    return app


def launch_options(service: EditService | None = None) -> dict:
    """Options for ``Blocks.launch``: theme and style (system fonts only, so the page loads nothing from
    elsewhere) and, with ``service``, the total upload quota (:class:`gen1.serve.quota.UploadQuota` over gradio's
    upload folder and the service's work folder, :attr:`ServeLimits.max_total_mb`)."""
    fonts = ["ui-sans-serif", "system-ui", "sans-serif"]
    theme = gr.themes.Default(font=fonts, font_mono=["ui-monospace", "monospace"])
    options = dict(theme=theme, css=CSS)
    if service is not None:
        from starlette.middleware import Middleware  # lazy: starlette is heavy and only this path needs it

        from gen1.serve.quota import MB, UploadQuota  # lazy: keeps this module's import light (no torch when it loads)

        folders = [upload_folder(), service.workdir]
        options["app_kwargs"] = {"middleware": [Middleware(UploadQuota, folders=lambda: folders,
                                                           total_bytes=int(service.limits.max_total_mb * MB))]}
    return options


def upload_folder():
    """Where gradio stores uploads (``GRADIO_TEMP_DIR``, else the system's temporary folder)."""

    return Path(gr.utils.get_upload_folder()).resolve()


# ----------------------------------------------------------------------------------------------- uploads
def uploaded_file(**options) -> gr.File:
    """``gr.File(type="filepath", **options)`` for one file that gives the handler a
    :class:`gen1.serve.service.Upload` (the stored path, as gr.File gives it, and the user's file name), and leaves
    nothing behind: gradio 6's ``File._process_single_file`` opens a ``NamedTemporaryFile(delete=False)`` in the
    upload folder for every file it passes on, never uses it and never removes it (an empty file per upload and per
    event: 275 after a QA run). A file of a type not offered is refused by gr.File itself, as before. (The
    instance's method is wrapped, not the class subclassed: gradio writes a ``.pyi`` stub beside the source of
    every Component subclass.)"""
    component = gr.File(type="filepath", **options)
    process_single_file = component._process_single_file

    def upload(f):
        if component.file_types and not client_utils.is_valid_file(f.path, component.file_types):
            return process_single_file(f)  # gr.File's own refusal of the file's type
        return Upload(f.path, f.orig_name)

    component._process_single_file = upload
    return component


def uploaded_image(**options) -> gr.Image:
    """``gr.Image(type="filepath", image_mode=None, **options)`` giving a :class:`gen1.serve.service.Upload`: the
    file as uploaded (gen1 reads it as ``gen1 edit --reference`` does, so the command line the page shows, naming
    the user's file, gives the same edit), and a file gr.Image's preprocess cannot open (not an image, or too large
    for PIL: its decompression-bomb check) passed on as uploaded, for the edit to refuse it in one line naming
    --reference and the user's file (:func:`gen1.editing.read_inputs`; gradio's own message named neither, and
    showed the server's path). Wrapped as :func:`uploaded_file` is."""
    component = gr.Image(type="filepath", image_mode=None, **options)
    preprocess = component.preprocess

    def upload(payload):
        from PIL import Image  # lazy: PIL is heavy and only this path needs it

        if payload is None:
            return None
        try:
            value = preprocess(payload)
        except (Image.DecompressionBombError, OSError, ValueError):  # PIL's UnidentifiedImageError is an OSError
            value = payload.path  # gen1 refuses it naming --reference and the user's file (not gradio's message)
        return value if value is None else Upload(value, payload.orig_name)

    component.preprocess = upload
    return component


# ----------------------------------------------------------------------------------------------- layout
def _source_inputs(ui, service: EditService) -> None:
    ui.video = uploaded_file(label="Source video (mp4, mov, webm, gif)", file_types=VIDEO_TYPES,
                             elem_id="source-upload")
    with gr.Row():
        ui.source_preview = gr.Video(label="What will be edited (frames, size and sound)", interactive=False,
                                     height=PREVIEW_HEIGHT, elem_id="source-preview")
        ui.structure_image = gr.Image(label="Structure the edit keeps (first frame)", type="numpy",
                                      interactive=False, format="png", height=PREVIEW_HEIGHT,
                                      elem_id="structure-preview")
    ui.structure_level = gr.Slider(0, MAX_LEVEL, value=DEFAULTS["structure_level"], step=0.1,
                                   label="Structure level t_s",
                                   info="--structure-level: 0 keeps every depth detail, 7 only the coarse layout",
                                   elem_id="structure-level")
    if len(service.catalog.names) > 1:
        ui.model = gr.Dropdown(service.catalog.names, value=service.catalog.default_name, label="Model",
                               elem_id="model")
    else:
        ui.model = gr.State(service.catalog.default_name)


def _content_inputs(ui) -> None:
    ui.prompt = gr.Textbox(label="Prompt", placeholder="what the video should look like, e.g. red striped objects "
                           "on a blue floor (words the bundled demo model knows)",
                           lines=2, elem_id="prompt")
    with gr.Accordion("Reference images (the look to copy) and weights", open=False):
        ui.prompt_weight = gr.Slider(0, 1, value=1, step=0.05, label="Prompt weight", info="--content-weights")
        ui.references = []
        with gr.Row():
            for slot in range(1, REFERENCE_SLOTS + 1):
                with gr.Column(min_width=120):
                    image = uploaded_image(label=f"Reference {slot}", sources=["upload"], height=160)
                    weight = gr.Slider(0, 1, value=1, step=0.05, label=f"Weight {slot}")
                    ui.references.append((image, weight))


def _knob_inputs(ui, service: EditService) -> None:
    defaults = service.catalog.defaults(service.catalog.default_name)
    limits = service.limits
    with gr.Row():
        ui.guidance_scale = gr.Slider(0, 20, value=defaults.guidance_scale, step=0.1, label="Content guidance ω",
                                      info="--guidance: how strongly the prompt or reference is followed")
        ui.temporal_guidance_scale = gr.Slider(0, 5, value=DEFAULTS["temporal_guidance_scale"], step=0.1,
                                               label="Temporal guidance ω_t", info="--temporal-guidance: "
                                               "frame-to-frame "
                                         "consistency (1 = plain video model)")
    with gr.Row():
        ui.num_inference_steps = gr.Slider(1, 100, value=defaults.num_inference_steps, step=1, label="Steps",
                                           info="--steps", elem_id="steps")
        ui.strength = gr.Slider(0.05, 1, value=DEFAULTS["strength"], step=0.05, label="Strength",
                                info="--strength: below 1 starts from the noised source")
        # no precision: gradio would round an API client's 2.7 to 3 unseen; --seed refuses it, naming the flag
        ui.seed = gr.Number(value=DEFAULTS["seed"], minimum=0, step=1, label="Seed", info="--seed")
    with gr.Accordion("Size and which frames", open=False):
        with gr.Row():
            ui.size = gr.Slider(8, limits.max_size, value=min(defaults.size, limits.max_size), step=8,
                                label="Size (short side, pixels)", info="--size", elem_id="size")
            ui.fps = _optional_number("Frame rate", "--fps (empty: the source's)", "fps")
        with gr.Row():
            ui.start = gr.Number(value=0, minimum=0, label="Start (s)", info="--start")
            ui.duration = _optional_number("Duration (s)", "--duration (empty: to the end)", "duration")
            ui.max_frames = _optional_number("Max frames", f"--max-frames (empty: all; this server edits at most "
                                             f"{limits.max_frames} frames, {limits.max_seconds:g} s)", "max-frames")
    with gr.Accordion("Mask: edit only part of the frame", open=False):
        gr.Markdown("Paint the region to edit on a frame (the first, or the one chosen below), or upload a mask "
                    "image or video (white = edit, black = keep).")
        ui.mask_frame = gr.Slider(0, _last_frame(limits.max_frames), value=0, step=1,
                                  label="Frame to paint, click and drag on",
                                  info="--mask-frame: for a subject that enters later or is best seen there; choosing "
                                  "another frame clears the painting, the clicks and the drags", elem_id="mask-frame")
        ui.mask_drawing = gr.ImageEditor(label="Draw the mask", type="numpy", sources=[], transforms=(),
                                         layers=False, brush=gr.Brush(colors=["#ff3070"], color_mode="fixed"),
                                         eraser=gr.Eraser(), format="png", elem_id="mask-editor")
        ui.mask_file = uploaded_file(label="…or upload a mask", file_types=IMAGE_TYPES + VIDEO_TYPES + [".npy"])
        _tracking_inputs(ui)
    with gr.Accordion("Your own depth (render a mock-up)", open=False):
        ui.depth_file = uploaded_file(label="Depth video, image or .npy (brighter = nearer)",
                                      file_types=IMAGE_TYPES + VIDEO_TYPES + [".npy"])
        ui.depth_invert = gr.Checkbox(label="It holds distance (far = bright), e.g. a Blender Z pass",
                                      info="--depth-invert")
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            ui.scheduler = gr.Dropdown([MODEL_DEFAULT_SCHEDULER, *SCHEDULERS], value=MODEL_DEFAULT_SCHEDULER,
                                       label="Sampler", info="--scheduler")
            ui.window_size = _optional_number("Window (frames)", "--window (empty: the model's clip length)",
                                              "window")
            ui.window_overlap = _optional_number("Overlap (frames)", "--overlap (empty: window // 4)", "overlap")
            ui.window_shift = gr.Checkbox(value=DEFAULTS["window_shift"], label="Shift the windows every step",
                                          info="unticked: --fixed-windows")
        with gr.Row():
            ui.negative_prompt = gr.Textbox(label="Negative prompt (public-route models)", info="--negative-prompt")
            ui.controlnet_conditioning_scale = gr.Slider(0, 2, value=DEFAULTS["controlnet_conditioning_scale"],
                                                         step=0.05, label="ControlNet scale (public-route models)",
                                                         info="--controlnet-scale")
        with gr.Row():  # a global direction (docs/directions.md): the source's own content moved by alpha
            ui.direction_neutral = gr.Textbox(label="Direction from (NEUTRAL)", info="--direction NEUTRAL TARGET")
            ui.direction_target = gr.Textbox(label="Direction to (TARGET)", info="empty: no direction")
            ui.direction_alpha = gr.Slider(-1, 3, value=1.0, step=0.05, label="Direction strength alpha",
                                           info="--direction-scale (0 = the source's own content)")


def _tracking_inputs(ui) -> None:
    """A mask given on one frame (painted, or clicks on the subject) that follows the subject to every frame,
    and a preview of where it goes (docs/masked_edits.md)."""
    gr.Markdown("Give the subject on one frame only and let it be followed: tick the box below for a painted "
                "mask, or click on the subject (SAM 2). *Preview the tracked mask* shows the region on every frame.")
    with gr.Row():
        ui.track_drawn = gr.Checkbox(label="The painted / uploaded mask is the chosen frame's: follow the subject",
                                     info="--mask-frame N", elem_id="track-drawn")
        ui.mask_tracker = gr.Radio(list(TRACKER_NAMES), value=DEFAULTS["mask_tracker"], label="Follow it with",
                                   info="--mask-tracker: flow (optical flow and depth edges) or sam2 (SAM 2; "
                                   "clicks need it)", elem_id="mask-tracker")
    with gr.Row():
        ui.click_canvas = gr.Image(label="…or click on the subject (the chosen frame)", type="numpy",
                                   interactive=False, format="png", elem_id="click-canvas")
        with gr.Column():
            ui.click_sign = gr.Radio(["subject", "not the subject"], value="subject", label="A click marks")
            ui.mask_clicks = gr.Textbox(label="Clicks (pixels of the source video)", info="--mask-click X,Y[,+|-]; "
                                        "separated by ;", placeholder="no clicks", elem_id="mask-clicks")
            ui.clear_clicks = gr.Button("Clear the clicks and drags", size="sm")
    ui.shown_frame = gr.State(None)  # the chosen frame's click canvas, for the drag arrows to be drawn on afresh
    with gr.Row():
        ui.subject_action = gr.Radio(list(SUBJECT_ACTIONS), value="edit", label="With the subject",
                                     info="edit: restyle or replace it (the prompt or reference); erase: remove it "
                                     "(--erase; no prompt); drag: move it (--drag)", elem_id="subject-action")
        ui.drag_vectors = gr.Textbox(label="Drag vectors (pixels of the source video)",
                                     info="--drag X0,Y0:X1,Y1; with drag chosen, two clicks on the chosen frame (from, "
                                     "then to) add one", placeholder="no drag", elem_id="drag-vectors")
    ui.track_button = gr.Button("Preview the tracked mask", elem_id="track-button")
    ui.track_video = gr.Video(label="The region the edit will change, on every frame", interactive=False,
                              height=PREVIEW_HEIGHT, loop=True, elem_id="track-video")


def _optional_number(label: str, info: str, elem_id: str):
    """A number that may be left empty (meaning: keep the default). A text field, not ``gr.Number``: the browser
    shows an empty ``gr.Number`` as 0 and sends 0, which would be taken for a value (and fail ``minimum``).
    :func:`gen1.serve.service.optional_number` reads it."""
    return gr.Textbox(value="", label=label, info=info, placeholder="empty: keep", max_lines=1, elem_id=elem_id)


def _outputs(ui) -> None:
    ui.output_video = gr.Video(label="Edited video", interactive=False, height=OUTPUT_HEIGHT,
                               loop=True, elem_id="output-video")
    ui.compare_video = gr.Video(label="Source | structure | edit", interactive=False, height=PREVIEW_HEIGHT,
                                loop=True, elem_id="compare-video")
    ui.downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
    ui.command = gr.Code(label="The same edit on the command line", language="shell", interactive=False,
                         lines=2, max_lines=6, wrap_lines=True, elem_id="command")
    ui.status = gr.Markdown("", elem_id="status")


# ----------------------------------------------------------------------------------------------- events
def _wire(ui, service: EditService) -> None:
    clip_inputs = [ui.video, ui.size, ui.start, ui.duration, ui.max_frames, ui.fps, ui.depth_file, ui.depth_invert,
                   ui.model, ui.structure_level]
    preview_outputs = [ui.source_preview, ui.structure_image, ui.structure_state]
    frame_outputs = [ui.mask_drawing, ui.click_canvas, ui.mask_clicks, ui.shown_frame, ui.drag_vectors]

    # Every handler has a fixed signature: gradio passes the gr.Request (whose session books the preview's files, so
    # they go when the page closes and count against its own quota) only to parameters it can see, not to *args.
    def read_clip(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model, *, frame=0,
                  progress, request):
        if not video:
            return None
        progress(None, desc="reading the clip and estimating its depth")
        form = _clip_form(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model)
        with _page_errors():
            return service.preview_clip(form, session=_session(request), frame=frame)

    def preview(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model, level, frame,
                drawing, vectors, request: gr.Request = None, progress=gr.Progress()):
        """The clip read again after a change of its settings: the chosen frame is kept (the last one if the clip
        has fewer frames now), shown afresh on the canvases with the painting scaled to them."""
        with _page_errors():
            frame = _frame_index(frame)
        clip = read_clip(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model, frame=frame,
                         progress=progress, request=request)
        if clip is None:
            return (None, None, None) + (gr.skip(),) * 4
        if clip.frame != frame:
            gr.Info(f"The clip now has {clip.num_frames} frames: the frame to paint, click and drag on is now "
                    f"{clip.frame} (it was {frame}); check the mask, clicks and drags on it.")
        canvas = clip.mask_canvas
        with _page_errors():
            shown = drag_arrows(canvas, video, vectors) if isinstance(vectors, str) and vectors.strip() else canvas
        return (str(clip.source_video), clip.structure.image(level), clip.structure, fit_drawing(drawing, canvas),
                shown, canvas, gr.Slider(maximum=_last_frame(clip.num_frames), value=clip.frame))

    def preview_upload(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model, level,
                       request: gr.Request = None, progress=gr.Progress()):
        clip = read_clip(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model,
                         progress=progress, request=request)
        if clip is None:  # no video: every output empty, as clearing the video leaves them
            return (None,) * 6 + (None, "", gr.Slider(value=0))
        return (str(clip.source_video), clip.structure.image(level), clip.structure,
                *_frame_outputs(clip.mask_canvas), gr.Slider(maximum=_last_frame(clip.num_frames), value=0))

    ui.video.upload(preview_upload, clip_inputs, preview_outputs + frame_outputs + [ui.mask_frame],
                    concurrency_id="preview", api_visibility="private")
    ui.video.clear(lambda: (None,) * 6 + (None, "", gr.Slider(value=0)), None,
                   preview_outputs + frame_outputs + [ui.mask_frame], api_visibility="private")

    def choose_frame(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model, level, index,
                     request: gr.Request = None):
        if not video:
            return (gr.skip(),) * 5
        with _page_errors():
            form = _clip_form(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model)
            return _frame_outputs(service.frame_canvas(form, _frame_index(index), session=_session(request)))

    # input: a drag of the slider or its arrow keys (not the value the upload sets)
    ui.mask_frame.input(choose_frame, clip_inputs + [ui.mask_frame], frame_outputs, concurrency_id="preview",
                        trigger_mode="always_last", api_visibility="private")
    settings = [ui.size.release, ui.start.submit, ui.duration.submit, ui.max_frames.submit, ui.fps.submit,
                ui.depth_file.change, ui.depth_invert.change]
    # the settings' preview keeps the painting, the clicks and the drags, on the chosen frame as read now
    settings_inputs = clip_inputs + [ui.mask_frame, ui.mask_drawing, ui.drag_vectors]
    settings_outputs = preview_outputs + [ui.mask_drawing, ui.click_canvas, ui.shown_frame, ui.mask_frame]
    if isinstance(ui.model, gr.Dropdown):
        ui.model.change(lambda name: _model_defaults(service, name), ui.model,
                        [ui.size, ui.guidance_scale, ui.num_inference_steps],
                        api_visibility="private").then(preview, settings_inputs, settings_outputs,
                                                       concurrency_id="preview", api_visibility="private")
    gr.on(settings, preview, settings_inputs, settings_outputs, trigger_mode="always_last",
          concurrency_id="preview", api_visibility="private")
    ui.structure_level.change(lambda structure, level: None if structure is None else structure.image(level),
                              [ui.structure_state, ui.structure_level], ui.structure_image, queue=False,
                              show_progress="hidden", api_visibility="private")
    _wire_tracking(ui, service)
    _wire_edit(ui, service)


def _frame_index(value) -> int:
    """The page's chosen frame (the slider's value, ``None`` or empty: 0) as an ``int``; ``ValueError`` naming
    ``--mask-frame`` for one that is no whole number >= 0 (an API client's NaN, say)."""
    if value is None or value == "":
        return 0
    number = optional_number(value, "--mask-frame", whole=True)
    if number < 0:
        raise ValueError(f"--mask-frame must be a frame of the clip (0 or more), got {number}")
    return number


def _frame_outputs(canvas):
    """The page's fields for a newly shown frame: the painting canvas (cleared), the click canvas, no clicks, the
    frame kept for redrawing the drag arrows, no drags."""
    return {"background": canvas, "layers": [], "composite": None}, canvas, "", canvas, ""


def _last_frame(num_frames: int) -> int:
    """The slider's maximum for a clip of ``num_frames`` frames (at least 1: a slider needs a range)."""
    return max(1, num_frames - 1)


def mask_frame_of(frame, track_drawn, mask_clicks, drag_vectors="") -> int | None:
    """``--mask-frame`` from the page: the chosen frame where the painted / uploaded mask is to be followed or the
    clicks were given on it; ``None`` for a mask of every frame. Drags are taken on the mask's frame (else the
    first): drags given on another frame without a followed mask are refused in one line."""
    frame = _frame_index(frame)
    if track_drawn or (mask_clicks or "").strip():
        return frame
    if frame and (drag_vectors or "").strip():
        raise ValueError(f"the drags were given on frame {frame}: tick 'follow the subject' (or click on it) so that "
                         f"the subject is taken on that frame too (--mask-frame {frame})")
    return None


def _clip_form(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model, **fields) -> EditForm:
    """The form of the page's clip fields (how the edit reads the clip: its size, which frames, its depth), and any
    other ``fields``."""
    return EditForm(video=video, size=int(size), start=start or 0.0, duration=duration, max_frames=max_frames, fps=fps,
                    depth_file=depth_file, depth_invert=depth_invert, model=model, **fields)


def _tracking_form(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model, mask_drawing,
                   mask_file, track_drawn, mask_tracker, mask_clicks, frame=0, erase=False) -> EditForm:
    """The form of a tracking preview: the clip as the edit reads it, the mask or clicks, the frame, the tracker."""
    return _clip_form(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model,
                      mask_drawing=mask_drawing, mask_file=mask_file,
                      mask_frame=mask_frame_of(frame, track_drawn, mask_clicks), mask_tracker=mask_tracker or "flow",
                      mask_clicks=mask_clicks or "", erase=bool(erase))


def _wire_tracking(ui, service: EditService) -> None:
    def click(video, canvas, sign, clicks, action, vectors, shown_frame, event: gr.SelectData):
        """A click on the chosen frame: a point on (or off) the subject, or with drag chosen a drag's start or end
        (the drags are drawn as arrows on the frame)."""
        if not video or canvas is None:
            return gr.skip(), gr.skip(), gr.skip()
        with _page_errors():
            added = canvas_click(video, canvas.shape, *event.index, positive=sign == "subject")
            if action == "drag":
                vectors = add_drag_point(vectors, added[0], added[1])
                return gr.skip(), vectors, drag_arrows(canvas if shown_frame is None else shown_frame, video, vectors)
            return format_clicks(parse_clicks(clicks or "") + (added,)), gr.skip(), gr.skip()

    ui.click_canvas.select(click, [ui.video, ui.click_canvas, ui.click_sign, ui.mask_clicks, ui.subject_action,
                                   ui.drag_vectors, ui.shown_frame], [ui.mask_clicks, ui.drag_vectors,
                                                                      ui.click_canvas],
                           queue=False, api_visibility="private")
    ui.clear_clicks.click(lambda shown_frame: ("", "", shown_frame), ui.shown_frame,
                          [ui.mask_clicks, ui.drag_vectors, ui.click_canvas], queue=False, api_visibility="private")

    def track(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model, mask_drawing,
              mask_file, track_drawn, mask_tracker, mask_clicks, frame, action, request: gr.Request = None,
              progress=gr.Progress()):
        progress(None, desc="reading the clip and following the subject")
        with _page_errors():
            # an erase's region is grown as the erase grows it
            form = _tracking_form(video, size, start, duration, max_frames, fps, depth_file, depth_invert, model,
                                  mask_drawing, mask_file, track_drawn, mask_tracker, mask_clicks, frame=frame,
                                  erase=action == "erase")
            return str(service.track_preview(form, session=_session(request)))

    ui.track_button.click(track, [ui.video, ui.size, ui.start, ui.duration, ui.max_frames, ui.fps, ui.depth_file,
                                  ui.depth_invert, ui.model, ui.mask_drawing, ui.mask_file, ui.track_drawn,
                                  ui.mask_tracker, ui.mask_clicks, ui.mask_frame, ui.subject_action], ui.track_video,
                          concurrency_id="preview", api_visibility="private")


def _model_defaults(service: EditService, name: str):
    with _page_errors():
        defaults = service.catalog.defaults(name)
    return min(defaults.size, service.limits.max_size), defaults.guidance_scale, defaults.num_inference_steps


def _wire_edit(ui, service: EditService) -> None:
    references = [component for pair in ui.references for component in pair]
    inputs = [ui.video, ui.prompt, ui.prompt_weight, *references, ui.structure_level, ui.guidance_scale,
              ui.temporal_guidance_scale, ui.num_inference_steps, ui.strength, ui.seed, ui.size, ui.start,
              ui.duration, ui.max_frames, ui.fps, ui.scheduler, ui.window_size, ui.window_overlap, ui.window_shift,
              ui.negative_prompt, ui.controlnet_conditioning_scale, ui.mask_drawing,
              ui.mask_file, ui.depth_file, ui.depth_invert, ui.model, ui.direction_neutral, ui.direction_target,
              ui.direction_alpha, ui.track_drawn, ui.mask_tracker, ui.mask_clicks, ui.subject_action,
              ui.drag_vectors, ui.mask_frame]
    outputs = [ui.output_video, ui.compare_video, ui.downloads, ui.command, ui.status]

    # Edit: the whole clip; Preview: its first temporal window (EditService.preview_edit)
    failures = ui.failures  # each session's last edit error, for the status (failed)
    edit, preview = _edit_handler(service.edit, failures), _edit_handler(service.preview_edit, failures)

    def arm(request: gr.Request):
        service.arm(_session(request))
        return "Editing… (edits run one at a time: the bar shows your place in the queue, then the progress)"

    def cancel(request: gr.Request):
        service.cancel(_session(request))

    def failed(request: gr.Request):
        """The edit failed (its message shown as gradio's error): the status says so, and the previous result,
        which the page would otherwise show as this edit's, is cleared."""
        return _failed_outputs(failures.pop(_session(request), None))

    # one progress bar, on the edited video's panel (not one per output, and not under the status text)
    ui.edit_button.click(arm, None, ui.status, queue=False, show_progress="hidden", api_visibility="private").then(
        edit, inputs, outputs, api_name="edit", concurrency_id="device", concurrency_limit=1,
        show_progress_on=[ui.output_video]).failure(failed, None, outputs, queue=False, show_progress="hidden",
                                                    api_visibility="private")
    ui.preview_button.click(arm, None, ui.status, queue=False, show_progress="hidden",
                            api_visibility="private").then(
        preview, inputs, outputs, api_name="preview_edit", concurrency_id="device", concurrency_limit=1,
        show_progress_on=[ui.output_video]).failure(failed, None, outputs, queue=False, show_progress="hidden",
                                                    api_visibility="private")
    ui.cancel_button.click(cancel, None, None, queue=False, api_visibility="private")


def _failed_outputs(error: str | None) -> tuple:
    """The edit's outputs after it failed with ``error`` (the message gradio showed): no video, downloads or
    command (they were the previous edit's), and a status that says so."""
    reason = f": {html.escape(error)}" if error else " (the message above says why)"  # the status renders HTML
    return None, None, None, "", f"The edit failed{reason}. Nothing was written; change the settings and try again."


def _edit_handler(run, failures: dict | None = None):
    """A gradio handler for ``run`` (``EditService.edit`` or ``preview_edit``), taking the page's fields by name;
    the message of an edit that fails is kept in ``failures`` under its session, for the page's status."""

    # Defaults of None make those parameters optional for API clients (the widgets' values are the other defaults).
    def edit(video, prompt=None, prompt_weight=1.0, reference_1=None, weight_1=1.0, reference_2=None, weight_2=1.0,
             reference_3=None, weight_3=1.0, structure_level=0.0, guidance_scale=None, temporal_guidance_scale=1.0,
             num_inference_steps=None, strength=1.0, seed=0, size=None, start=0.0, duration=None, max_frames=None,
             fps=None, scheduler=None, window_size=None, window_overlap=None, window_shift=True,
             negative_prompt=None, controlnet_conditioning_scale=1.0, mask_drawing=None, mask_file=None,
             depth_file=None, depth_invert=False, model=None, direction_neutral=None, direction_target=None,
             direction_alpha=1.0, track_drawn=None, mask_tracker=None, mask_clicks=None, subject="edit",
             drag_vectors=None, mask_frame=0, request: gr.Request = None, progress=gr.Progress()):
        with _page_errors(request):
            subject_form = subject_settings(subject, drag_vectors)
            mask_frame = mask_frame_of(mask_frame, track_drawn, mask_clicks, drag_vectors)
        form = EditForm(
            video=video, prompt=prompt or "", prompt_weight=prompt_weight,
            references=[(reference_1, weight_1), (reference_2, weight_2), (reference_3, weight_3)],
            structure_level=structure_level, guidance_scale=guidance_scale,
            temporal_guidance_scale=temporal_guidance_scale, num_inference_steps=num_inference_steps,
            strength=strength, seed=seed if seed is not None else 0, size=size, start=start or 0.0,
            duration=duration, max_frames=max_frames, fps=fps,
            scheduler=None if scheduler in (None, MODEL_DEFAULT_SCHEDULER) else scheduler, window_size=window_size,
            window_overlap=window_overlap, window_shift=window_shift if window_shift is not None else True,
            negative_prompt=negative_prompt or "", controlnet_conditioning_scale=controlnet_conditioning_scale,
            mask_drawing=mask_drawing, mask_file=mask_file, depth_file=depth_file, depth_invert=depth_invert,
            model=model, direction_neutral=direction_neutral or "", direction_target=direction_target or "",
            direction_alpha=direction_alpha, mask_frame=mask_frame,
            mask_tracker=mask_tracker or "flow", mask_clicks=mask_clicks or "", **subject_form)
        progress(0, desc="reading the clip and loading the model")

        def report(done, total):
            progress((done, total), desc="denoising (steps × windows)", unit="steps")

        try:
            with _page_errors(request):
                outcome = run(form, session=_session(request), progress=report)
        except EditCancelled:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), "Edit cancelled: nothing was written."
        log.info("%s", outcome.summary.split("\n")[0])  # the warnings are logged as they are caught
        for note in outcome.warnings:
            gr.Warning(_shown(note, request))
        return (str(outcome.output), str(outcome.compare), [str(p) for p in outcome.downloads], outcome.command,
                outcome.summary)

    @functools.wraps(edit)  # the same signature: gradio reads the fields, the request and the progress from it
    def remembering_failures(*args, **kwargs):
        try:
            return edit(*args, **kwargs)
        except gr.Error as error:
            if failures is not None:
                try:
                    session = _session(inspect.signature(edit).bind(*args, **kwargs).arguments.get("request"))
                except TypeError:  # arguments gradio did not bind as the signature says: the error stands alone
                    session = _session(kwargs.get("request"))
                with FAILURES_LOCK:  # edits of several sessions fail at once on gradio's worker threads
                    failures.pop(session, None)
                    failures[session] = getattr(error, "text", error.message)  # plain: the status escapes it
                    while len(failures) > MAX_FAILURES_KEPT:  # API clients' sessions may never end: keep the newest
                        failures.pop(next(iter(failures)))
            raise

    return remembering_failures


def _session(request) -> str:
    return getattr(request, "session_hash", None) or ""


@contextlib.contextmanager
def _page_errors(request=None):
    """Show user errors on the page as ``gr.Error`` (the app keeps running); anything else becomes a short
    ``gr.Error`` too, with the traceback in the server's log. The message is as :func:`_shown` shows it to the
    client of ``request`` (escaped for the page, which renders it as HTML; plain for API clients); its plain text
    is the error's ``text``."""
    try:
        yield
    except (EditCancelled, gr.Error):
        raise
    except (ValueError, OSError) as error:
        raise _error(str(error), request, print_exception=False) from None
    except Exception as error:
        log.exception("the request failed")
        raise _error(f"the edit failed ({type(error).__name__}: {error})", request) from None


def _error(text: str, request, **options) -> gr.Error:
    """A ``gr.Error`` showing ``text`` to the client of ``request`` (:func:`_shown`), with ``text`` kept as ``text``."""
    error = gr.Error(_shown(text, request), **options)
    error.text = text
    return error


def _shown(text: str, request=None) -> str:
    """``text`` as the client of ``request`` should get it. gradio's page renders messages as HTML, so for the page
    (which sends ``x-gradio-user: app`` with each event) and where no request is known it is escaped: a file name
    or a word typed by a user is shown as typed, never taken as markup. API clients (gradio_client sends ``api``,
    raw HTTP nothing) get the plain text, which they show as text (it read ``&#x27;`` and ``&lt;`` there)."""
    if request is None:
        return html.escape(text)
    headers = getattr(request, "headers", None) or {}
    return html.escape(text) if headers.get("x-gradio-user") == "app" else text
