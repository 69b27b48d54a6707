"""What a folder given as a pipeline is, when it is not one, and how to get a pipeline from it.

A pipeline folder holds ``model_index.json`` (``Gen1Pipeline.save_pretrained`` and ``gen1 train``'s export write
one). Users often give the folder next to it -- a training run rather than its ``export/``, the ``unet/`` inside
an export, a Stable Diffusion checkpoint -- and the error should say which one it is and what to give instead.
Reads a few JSON files only, so commands call it before loading anything.

A model folder is untrusted input: its ``model_index.json`` names, for each component, a module and a class that
diffusers imports and calls. :func:`check_pipeline_folder` reads the index and every component's config, refuses
JSON of the wrong type (a list, ``null``) naming the file, and refuses any component whose module is not
diffusers, transformers or one of gen1's component classes (:data:`GEN1_COMPONENTS`), naming the entry -- without
importing anything it names (an entry ``["gen1.__main__", "X"]`` would otherwise run the ``gen1`` command again).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

PIPELINE_INDEX = "model_index.json"
#: What a ``gen1 train`` export trained (``trainable``, ``stage``, ``clip_length``), beside its weights: written by
#: :mod:`gen1.training.export`, read by :mod:`gen1.assembly` (both name it from here, so they cannot disagree).
EXPORT_RECORD = "training.json"
# the libraries whose classes a component may be (diffusers also resolves its own pipeline submodules, e.g.
# "stable_diffusion" for a safety checker: those are accepted when diffusers.pipelines has such a subpackage)
COMPONENT_LIBRARIES = ("diffusers", "transformers")
# gen1's own component classes, by the module save_pretrained records for them (and the package that exports them)
GEN1_COMPONENTS = {
    "VideoUNet": ("gen1.unet", "gen1"),
    "DepthEstimator": ("gen1.depth.base", "gen1.depth", "gen1"),
    "ContentEncoder": ("gen1.content", "gen1"),
}
# the components a Gen1Pipeline has: under these names only [library, class] or [null, null] is a valid entry
COMPONENT_NAMES = ("vae", "unet", "scheduler", "depth_estimator", "content_encoder", "prior", "prior_scheduler",
                   "controlnet", "text_encoder", "tokenizer", "image_encoder", "feature_extractor")
_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9_]*")  # a class, as diffusers and transformers name theirs
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def read_json_object(path: str | os.PathLike, what: str = "") -> dict:
    """The JSON object in ``path``; a ``ValueError`` naming the file for invalid JSON or JSON of another type (a
    list, ``null``, a number), which every reader of a config would otherwise meet as an ``AttributeError``.
    ``what`` says what the file should be (``"a pipeline index"``)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"'{path}' is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        kind = "null" if value is None else f"a JSON {type(value).__name__.replace('dict', 'object')}"
        raise ValueError(f"'{path}' holds {kind}, expected a JSON object{f' ({what})' if what else ''}")
    return value


def _class_name(config: Path) -> str | None:
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def _diffusers_pipeline_module(name: str) -> bool:
    """Whether ``name`` is a subpackage of ``diffusers.pipelines`` (found on disk, not imported)."""
    try:
        return importlib.util.find_spec(f"diffusers.pipelines.{name}") is not None
    except (ImportError, ValueError):
        return False


def check_component_source(index_path: str | os.PathLike, name: str, value) -> str | None:
    """The module a ``model_index.json`` entry ``name: [module, class]`` will be loaded from, checked against the
    allow-list without importing it: diffusers, transformers (and diffusers' own pipeline subpackages) or, for
    gen1's classes, the module gen1 saves them under (:data:`GEN1_COMPONENTS`). Returns the gen1 module to
    import first (None for the others and for an absent component, ``[null, null]``); anything else is a
    ``ValueError`` naming the entry."""
    where = f"'{index_path}': component {name!r} = {json.dumps(value)}"
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{where} must be [library, class] or [null, null]")
    library, cls = value
    if library is None and cls is None:
        return None
    if not isinstance(library, str) or not isinstance(cls, str) or not _CLASS_NAME.fullmatch(cls) \
            or not _DOTTED.fullmatch(library):
        raise ValueError(f"{where} must name a library (a module name) and a class (CamelCase)")
    if library in COMPONENT_LIBRARIES:
        return None
    if library in GEN1_COMPONENTS.get(cls, ()):
        return library
    if re.fullmatch(r"[a-z][a-z0-9_]*", library) and library != "gen1" and _diffusers_pipeline_module(library):
        return None
    known = ", ".join(f"[{modules[0]!r}, {cls!r}]" for cls, modules in GEN1_COMPONENTS.items())
    raise ValueError(f"{where} names a module gen1 does not load components from (a model folder may only use "
                     f"classes of {' or '.join(COMPONENT_LIBRARIES)}, or {known}); refused without importing it")


def check_pipeline_folder(folder: str | os.PathLike) -> list[str]:
    """Check a pipeline folder before diffusers reads it: ``model_index.json`` and every component's JSON files
    are JSON objects, and every component comes from an allowed module (:func:`check_component_source`).
    Returns the gen1 modules its components need imported (nothing is imported here)."""
    folder = Path(folder)
    index_path = folder / PIPELINE_INDEX
    index = read_json_object(index_path, "a pipeline index: component name -> [library, class]")
    modules = []
    for name, value in index.items():
        if name.startswith("_") or (not isinstance(value, list) and name not in COMPONENT_NAMES):
            continue  # _class_name, _diffusers_version, and settings such as trained_size
        module = check_component_source(index_path, name, value)
        if module is not None:
            modules.append(module)
        component = folder / name
        if value != [None, None] and component.is_dir():
            for config in sorted(component.glob("*.json")):
                read_json_object(config, f"the {name!r} component's config")
    return sorted(set(modules))


def not_a_pipeline_hint(folder: str | os.PathLike) -> str:
    """Why ``folder`` (which has no ``model_index.json``) is not a pipeline, and what to do instead, in one line."""
    folder = Path(folder)
    if (folder / "export" / PIPELINE_INDEX).is_file():
        return f"it is a `gen1 train` output folder: give its export, '{folder / 'export'}'"
    if (folder / EXPORT_RECORD).is_file() and not (folder / "vae").is_dir():
        return ("it is a `gen1 train` export without a VAE, so it is no pipeline: run the same `gen1 train` command "
                "again with model.vae=PATH (the VAE the data was encoded with) and train.resume=latest")
    if (folder / EXPORT_RECORD).is_file():
        return ("it is a `gen1 train` export from a gen1 that did not write pipelines: run the same `gen1 train` "
                "command again with train.resume=latest to export it as one")
    if _class_name(folder / "config.json") == "VideoUNet":
        if (folder.parent / PIPELINE_INDEX).is_file():
            return f"it is the UNet of a pipeline: give the pipeline folder, '{folder.parent}'"
        return ("it is a VideoUNet alone: assemble a pipeline with Gen1Pipeline.from_stable_diffusion(SD_DIR, "
                "unet=..., depth_estimator=..., content_encoder=...).save_pretrained(DIR) (docs/training.md)")
    if _class_name(folder / "unet" / "config.json") == "UNet2DConditionModel":
        return ("it is a Stable Diffusion checkpoint: use it as --base of the public route (with --motion-adapter "
                "and --controlnet), or train a Gen-1 model from it (`gen1 train`, docs/training.md)")
    return "give a folder written by Gen1Pipeline.save_pretrained or by `gen1 train` (OUTPUT/export)"


def check_edit_components(flag: str, folder: str | os.PathLike, *, user_depth: bool) -> None:
    """A pipeline folder can edit from a prompt or reference: it has a content encoder (or, on the public route,
    a text encoder) and a depth estimator unless the user gives the depth. ``ValueError`` naming what is missing
    and how to add it, before anything loads; the folder is checked first (:func:`check_pipeline_folder`)."""
    folder = Path(folder)
    try:
        check_pipeline_folder(folder)
    except ValueError as error:
        raise ValueError(f"{flag} '{folder}': {error}") from None
    index = read_json_object(folder / PIPELINE_INDEX)

    def has(name: str) -> bool:
        value = index.get(name)
        return isinstance(value, list) and bool(value) and value[0] is not None

    exported = (folder / "training.json").is_file()
    if not has("content_encoder") and not has("text_encoder"):
        fix = ("run the `gen1 train` command again with model.content_encoder=PATH (the CLIP folder the data was "
               "encoded with) and train.resume=latest" if exported else
               "add one: pipe.content_encoder = load_content_encoder(PATH); pipe.save_pretrained(DIR)")
        raise ValueError(f"{flag} '{folder}' has no content encoder, so it cannot read a prompt or reference: {fix}")
    if not has("depth_estimator") and not user_depth:
        fix = ("or run the `gen1 train` command again with model.depth_estimator=PATH (a MiDaS .pt or a DPT / Depth "
               "Anything folder) and train.resume=latest" if exported else
               "or add one: pipe.depth_estimator = load_depth_estimator(PATH); pipe.save_pretrained(DIR)")
        raise ValueError(f"{flag} '{folder}' has no depth estimator: give your own structure with --depth, {fix}")
