"""``gen1 serve``: a web app for editing videos, on this machine's browser port.

Example::

    gen1 serve                                     # the bundled demo model, http://127.0.0.1:7860
    gen1 serve --models sd=PIPELINE_DIR demo=gen1/assets/demo-model --host 0.0.0.0 --port 8080

The page edits with the same function as ``gen1 edit`` (:func:`gen1.editing.run_edit`) and shows the command line
that reproduces each result. It binds to 127.0.0.1 unless ``--host`` says otherwise; the models it offers are
the ones named here, and a web user can choose only among them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gen1.checks import check_integer, check_number
from gen1.commands._common import add_device_arguments, add_threads_argument, apply_threads, device_and_dtype
from gen1.commands._models import add_model_arguments, model_flags
from gen1.model_sources import PUBLIC_FLAGS, check_model_source

BUNDLED_NAME = "gen1 demo (64 px)"


def register(subparsers) -> None:
    from gen1.serve.service import ServeLimits  # lazy: keeps this module's import light (no torch when it loads)

    limits = ServeLimits()
    parser = subparsers.add_parser(
        "serve",
        help="a web app for editing videos (gradio)",
        description="Serve a web page for editing videos: upload a clip, give a prompt or reference images, "
        "watch the structure preview, edit and download the result (with its sound), a comparison and the "
        "gen1 edit command line that reproduces it. Needs gen1[serve] (gradio).",
    )
    models = parser.add_argument_group("models (default: the bundled demo model)")
    add_model_arguments(models)
    models.add_argument("--models", nargs="+", default=[], metavar="NAME=PATH",
                        help="more models to offer, each a pipeline folder (as --model) under a name; the first "
                        "model given is the default")
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    server.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    server.add_argument("--max-frames", type=int, default=limits.max_frames,
                        help=f"most frames one edit may have (default {limits.max_frames})")
    server.add_argument("--max-seconds", type=float, default=limits.max_seconds,
                        help=f"longest part of a video one edit may take, in seconds (default {limits.max_seconds:g})")
    server.add_argument("--max-upload-mb", type=float, default=limits.max_upload_mb,
                        help=f"largest upload in MB (default {limits.max_upload_mb:g})")
    server.add_argument("--max-session-mb", type=float, default=limits.max_session_mb,
                        help=f"disk one browser session's uploads and results may take, in MB (default "
                        f"{limits.max_session_mb:g}); removed when its page is closed")
    server.add_argument("--max-total-mb", type=float, default=limits.max_total_mb,
                        help=f"disk every session's uploads and results may take together, in MB (default "
                        f"{limits.max_total_mb:g}); an upload beyond it is refused")
    server.add_argument("--max-size", type=int, default=limits.max_size,
                        help=f"largest output short side in pixels (default {limits.max_size})")
    server.add_argument("--queue-size", type=int, default=32,
                        help="edits that may wait in the queue; more are turned away (default 32)")
    add_device_arguments(server)
    add_threads_argument(server)
    parser.set_defaults(func=run)


def _served_models(args) -> list:
    """The models to offer, checked (files present, configs readable) before anything loads."""
    from gen1.serve.models import ServedModel  # lazy: keeps this module's import light (no torch when it loads)

    served = []
    given_public = any(getattr(args, flag[2:].replace("-", "_")) for flag in PUBLIC_FLAGS)
    if args.model is not None or given_public or not args.models:
        source = check_model_source(args)
        if given_public:
            served.append(ServedModel(name=Path(args.base).name, source=source, model_args=tuple(model_flags(args))))
        elif args.model is not None:
            served.append(ServedModel(name=Path(args.model).name or args.model, source=source,
                                      model_args=("--model", args.model)))
        else:
            served.append(ServedModel(name=BUNDLED_NAME, source=source))
    for entry in args.models:
        name, separator, path = entry.partition("=")
        if not separator or not name.strip() or not path:
            raise ValueError(f"--models takes NAME=PATH, got '{entry}'")
        folder = argparse.Namespace(model=path, base=None, motion_adapter=None, controlnet=None, depth_model=None)
        try:
            source = check_model_source(folder)
        except (ValueError, OSError) as error:
            raise ValueError(f"--models {name}: {error}") from None
        served.append(ServedModel(name=name.strip(), source=source, model_args=("--model", path)))
    return served


def _limits(args):
    from gen1.media import MAX_SIZE, check_size  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.serve.service import ServeLimits  # lazy: keeps this module's import light (no torch when it loads)

    check_integer("--port", args.port, low=0, high=65535)
    check_integer("--max-frames", args.max_frames, low=1)
    check_number("--max-seconds", args.max_seconds, low=0, low_open=True)
    check_number("--max-upload-mb", args.max_upload_mb, low=0, low_open=True)
    check_number("--max-session-mb", args.max_session_mb, low=0, low_open=True)
    check_number("--max-total-mb", args.max_total_mb, low=0, low_open=True)
    check_size(args.max_size, "--max-size")
    check_integer("--queue-size", args.queue_size, low=1)
    return ServeLimits(max_frames=args.max_frames, max_seconds=args.max_seconds,
                       max_upload_mb=args.max_upload_mb, max_size=min(args.max_size, MAX_SIZE),
                       max_session_mb=args.max_session_mb, max_total_mb=args.max_total_mb)


def run(args: argparse.Namespace) -> int:
    limits = _limits(args)
    served = _served_models(args)
    device, dtype = device_and_dtype(args)
    try:
        import gradio  # noqa: F401 -- only to say what is missing before any model loads
    except ImportError:
        raise ValueError("gen1 serve needs gradio: pip install \"gen1[serve]\"") from None
    apply_threads(args.threads)
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.serve.app import build_app, launch_options, upload_folder
    from gen1.serve.models import ModelCatalog  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.serve.service import EditService  # lazy: keeps this module's import light (no torch when it loads)

    device_args = [word for flag, value in (("--device", args.device), ("--dtype", args.dtype)) if value
                   for word in (flag, value)]
    catalog = ModelCatalog(served, device=device, dtype=dtype, device_args=device_args)
    service = EditService(catalog, limits, upload_root=upload_folder())
    try:
        catalog.load_all()  # every offered model: a broken one fails here, not on a user's first edit
        app = build_app(service)
        app.queue(max_size=args.queue_size, default_concurrency_limit=1)
        print(f"gen1 serve: {', '.join(catalog.names)} on {device} ({str(dtype).removeprefix('torch.')}); at most "
              f"{limits.max_frames} frames and {limits.max_seconds:g} s per edit, uploads up to "
              f"{limits.max_upload_mb:g} MB", flush=True)
        app.launch(server_name=args.host, server_port=args.port, max_file_size=int(limits.max_upload_mb * 2**20),
                   show_error=True, ssr_mode=False, footer_links=["api"], **launch_options(service))
    finally:
        # Ctrl-C / SIGTERM: gradio has stopped taking requests; cancel a running edit and let its worker thread
        # leave torch before the interpreter exits (exiting under it aborts: "terminate called without an active
        # exception")
        if service.running:
            print("gen1 serve: cancelling the running edit before exiting", flush=True)
        if not service.stop(timeout_s=60):
            print("gen1 serve: an edit did not stop within 60 s; exiting anyway", file=sys.stderr, flush=True)
        service.close()
    return 0
