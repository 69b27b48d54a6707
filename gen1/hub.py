"""Models by name: a local path, or a Hugging Face Hub repo id fetched through huggingface_hub's cache.

Every model option of gen1 (``gen1 edit --model/--base/--motion-adapter/--controlnet/--depth-model/--ip-adapter/
--image-encoder/--lora``, ``gen1 preprocess --model/--depth-model/--content-model``,
``gen1 customize --depth-model/--content-model``,
``Gen1Pipeline.from_pretrained``, ``from_animatediff``, ``load_ip_adapter``) takes a name that :func:`resolve`
turns into a local path:

* a local path that exists is used as it is, always (a folder named like a repo id wins over the Hub);
* ``ORG/NAME`` is a repo: its files of the expected :class:`Layout` (``unet/config.json``, ...), fetched
  with ``snapshot_download`` and only those (``allow_patterns``; safetensors rather than ``.bin`` where a repo
  has both), with huggingface_hub's progress bars;
* ``ORG/NAME/PATH/IN/REPO`` is one file of a repo (``guoyww/animatediff/mm_sd_v15_v2.ckpt``) or one folder
  of it (``h94/IP-Adapter/models/image_encoder``).

A name that looks like a local path is never tried on the Hub (:func:`local_path_reason`): one starting with
``./``, ``../``, ``/`` or ``~``, one whose first folder exists here, one whose name ends in a file suffix
(``runs/model.safetensors``); when it does not exist it is a missing path, at once.

Files come from the cache (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``) when the Hub cannot be
reached or ``HF_HUB_OFFLINE=1`` is set. Whether the Hub answers is asked once per name with a single request
(no retries: a name that is not in the cache fails at once when the network is down, instead of after
huggingface_hub's back-off of about 25 s). :func:`resolve_all` resolves several named parts and reports every
missing one in one message. Every failure is one ``ValueError`` line that names the option, the
repo and what to do: a repo that is not cached gets the ``hf download`` command that fetches exactly what gen1
needs; a cached copy missing files (an interrupted download) is named with the files it lacks; a repo that does
not hold the expected model (no ``model_index.json`` / ``config.json`` / file) is refused before anything large
is downloaded.

``resolve(..., weights=False)`` fetches configs only (and single-file checkpoints), so that the parts of a model
can be checked against each other before gigabytes of weights come down.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
LISTING_TIMEOUT = 10.0  # seconds for the one request that lists a repo (and tells whether the Hub answers)
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# one segment of a repo id (huggingface_hub's rules: letters, digits, '-', '_', '.'; no '--' or '..')
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_HUB_NAME = re.compile(rf"(?P<repo>{_SEGMENT}/{_SEGMENT})(?:/(?P<path>[^\\]+))?")


@dataclass(frozen=True)
class Layout:
    """What a model of one kind holds, in paths relative to its folder.

    ``files``: required files, each entry a tuple of alternatives, preferred first; the first entry is what makes
    a folder this kind of model (its absence means "not a ..."). ``folders``: folders taken whole (a tokenizer;
    a pipeline's components). ``optional``: patterns fetched when the repo has them. ``file_suffixes``: a single file with one of
    these suffixes is this kind of model too (an original checkpoint). ``whole``: the repo (or its folder) holds
    just this model, so the command that fetches it takes it whole (a saved pipeline).
    """

    what: str
    files: tuple[tuple[str, ...], ...]
    folders: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    file_suffixes: tuple[str, ...] = ()
    whole: bool = False

    def is_file(self, sub: str) -> bool:
        return bool(self.file_suffixes) and sub.lower().endswith(self.file_suffixes)


def _model(prefix: str, weights: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return (f"{prefix}config.json",), tuple(prefix + name for name in weights)


BASE = Layout(
    "a Stable Diffusion model in diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/, "
    "scheduler/)",
    files=(("model_index.json",), *_model("unet/", DIFFUSERS_WEIGHTS), *_model("vae/", DIFFUSERS_WEIGHTS),
           *_model("text_encoder/", TRANSFORMERS_WEIGHTS), ("tokenizer/tokenizer_config.json",),
           ("scheduler/scheduler_config.json",)),
    folders=("tokenizer",),
)
MOTION_ADAPTER = Layout("AnimateDiff motion modules (a MotionAdapter folder, or an original .ckpt/.safetensors file)",
                        files=_model("", DIFFUSERS_WEIGHTS), file_suffixes=(".ckpt", ".safetensors", ".pt", ".pth"))
CONTROLNET = Layout("a ControlNet in diffusers layout (config.json + diffusion_pytorch_model.safetensors)",
                    files=_model("", DIFFUSERS_WEIGHTS))
DEPTH_MODEL = Layout("a depth estimator (a DPT / Depth Anything folder, or a MiDaS .pt file)",
                     files=_model("", TRANSFORMERS_WEIGHTS + DIFFUSERS_WEIGHTS), optional=("preprocessor_config.json",),
                     file_suffixes=(".pt", ".pth", ".ckpt"))
IMAGE_ENCODER = Layout("a CLIP image encoder (a CLIPVisionModelWithProjection folder)",
                       files=_model("", TRANSFORMERS_WEIGHTS))
CONTENT_MODEL = Layout(
    "a content encoder (a gen1 ContentEncoder folder, or a transformers CLIP model such as "
    "openai/clip-vit-large-patch14: config.json, model.safetensors, tokenizer and preprocessor files)",
    files=_model("", TRANSFORMERS_WEIGHTS + DIFFUSERS_WEIGHTS),
    optional=("preprocessor_config.json", "tokenizer_config.json", "tokenizer.json", "vocab.json", "merges.txt",
              "special_tokens_map.json", "tokenizer/*"))  # tokenizer/: a gen1 ContentEncoder's
IP_ADAPTER = Layout("an IP-Adapter (ip-adapter_sd15.safetensors)",
                    files=(("ip-adapter_sd15.safetensors", "ip-adapter_sd15.bin"),),
                    file_suffixes=(".safetensors", ".bin"))
IP_ADAPTER_TEXT_ENCODER = Layout(
    "a CLIP text encoder with its projection and tokenizer (config.json, model.safetensors, tokenizer files; a whole "
    "CLIPModel such as laion/CLIP-ViT-H-14-laion2B-s32B-b79K is one)",
    files=(*_model("", TRANSFORMERS_WEIGHTS), ("tokenizer_config.json",), ("tokenizer.json", "vocab.json")),
    optional=("tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json"))
LORA = Layout("a LoRA (pytorch_lora_weights.safetensors)", files=(("pytorch_lora_weights.safetensors",),),
              file_suffixes=(".safetensors",))
PIPELINE_INDEX = Layout("a pipeline folder (model_index.json)", files=(("model_index.json",),), whole=True)


def pipeline_layout(index: dict) -> Layout:
    """The files a diffusers / gen1 pipeline folder holds, from its ``model_index.json``: each component's config
    and, for models, weights. Component folders are fetched whole (a pipeline repo holds what its pipeline saved,
    nested folders such as a content encoder's tokenizer included); the required files name what a cut-short
    download lacks."""
    files: list[tuple[str, ...]] = [("model_index.json",)]
    folders = []
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2 or value[0] is None:
            continue
        library, cls = value
        if cls.endswith("Scheduler"):
            files.append((f"{name}/scheduler_config.json",))
        elif "Tokenizer" in cls:
            files.append((f"{name}/tokenizer_config.json",))
        elif cls.endswith(("ImageProcessor", "FeatureExtractor")):
            files.append((f"{name}/preprocessor_config.json",))
        else:
            weights = (TRANSFORMERS_WEIGHTS + DIFFUSERS_WEIGHTS if library == "transformers"
                       else DIFFUSERS_WEIGHTS + TRANSFORMERS_WEIGHTS)
            files.extend(_model(f"{name}/", weights))
        folders.append(name)
    return Layout("a pipeline folder", files=tuple(files), folders=tuple(dict.fromkeys(folders)), whole=True)


# ------------------------------------------------------------------------------------------------ names
# suffixes of files a user passes as a model (weights, configs, media): a repo's name never ends in one of these
LOCAL_FILE_SUFFIXES = WEIGHT_SUFFIXES + (".json", ".yaml", ".yml", ".txt", ".npy", ".npz", ".png", ".jpg", ".jpeg",
                                         ".mp4", ".mov", ".onnx", ".gguf")


def local_path_reason(name) -> str | None:
    """Why ``name`` is a local path and no Hub repo id (None when it may be one): it starts with ``./``, ``../``,
    ``/`` or ``~``, its first folder exists in the working directory, or its repo part ends in a file suffix
    (:data:`LOCAL_FILE_SUFFIXES`: ``runs/model.safetensors``). A file inside a repo (``ORG/NAME/file.ckpt``) keeps
    its suffix: only the ``ORG/NAME`` part is looked at."""
    text = os.fspath(name)
    if text.startswith(("./", "../", ".\\", "..\\", "/", "~")) or text in (".", ".."):
        return "it starts like a local path"
    first = text.replace("\\", "/").split("/", 1)[0]
    if "/" in text.replace("\\", "/") and first and Path(first).is_dir():
        return f"its first folder '{first}' exists here"
    parsed = hub_name(text)
    if parsed is not None and parsed[0].split("/", 1)[1].lower().endswith(LOCAL_FILE_SUFFIXES):
        return f"'{parsed[0]}' ends in a file suffix"
    return None


def hub_name(name) -> tuple[str, str] | None:
    """``(repo_id, path in the repo)`` when ``name`` is shaped like a Hub name (``ORG/NAME[/PATH]``), else None."""
    text = os.fspath(name)
    if text.startswith((".", "/", "~")) or "//" in text or text.endswith("/"):
        return None
    match = _HUB_NAME.fullmatch(text)
    if match is None or "--" in match["repo"] or ".." in text:
        return None
    return match["repo"], match["path"] or ""


def companion(name, child: str, *, of_file: bool) -> str:
    """The Hub name of ``child`` inside the folder ``name`` or, ``of_file``, beside the file ``name`` (where a repo
    keeps a companion, e.g. an IP-Adapter's ``image_encoder/``)."""
    text = os.fspath(name)
    return f"{text.rsplit('/', 1)[0] if of_file else text}/{child}"


def fetch_command(repo: str, layout: Layout, sub: str = "") -> str:
    """The ``hf download`` command that fetches what gen1 needs of ``repo`` (the preferred file of each kind)."""
    if layout.is_file(sub):
        return f"hf download {repo} {sub}"
    if layout.whole:
        return f"hf download {repo}" + (f" {sub}/" if sub else "")
    prefix = f"{sub}/" if sub else ""
    inside = tuple(f"{folder}/" for folder in layout.folders)
    parts = [group[0] for group in layout.files if not group[0].startswith(inside)]
    parts += [pattern for pattern in layout.optional if "*" not in pattern] + list(inside)
    return f"hf download {repo} {' '.join(prefix + part for part in parts)}"


# ------------------------------------------------------------------------------------------------ resolution
def resolve(name, layout: Layout, *, flag: str, weights: bool = True) -> Path:
    """The local path of ``name`` (see the module docstring); ``ValueError`` / ``FileNotFoundError`` in one line.

    ``flag`` names the option in messages (``--base``, or an argument name in the Python API). ``weights=False``
    skips the weight files of a folder (configs only).
    """
    path = Path(name)
    if path.exists():
        return path
    local = local_path_reason(name)
    if local is not None:
        raise FileNotFoundError(f"{flag} path not found: '{name}' ({local}, so it is taken as a local path, "
                                f"not a Hub repo; resolved from '{Path.cwd()}')")
    parsed = hub_name(name)
    if parsed is None:
        raise FileNotFoundError(f"{flag} path not found: '{name}' (nor is it a Hub repo id ORG/NAME)")
    repo, sub = parsed
    return _HubRequest(str(name), repo, sub, layout, flag, weights).resolve()


def resolve_pipeline(name, *, flag: str, weights: bool = True) -> Path:
    """A pipeline folder (``model_index.json`` and the components it lists) by local path or Hub name."""
    folder = resolve(name, PIPELINE_INDEX, flag=flag, weights=weights)
    if Path(name).exists():
        return folder
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.model_folders import check_component_source, read_json_object

    index_path = folder / "model_index.json"
    try:  # the index is checked before any component is fetched: JSON object, components from allowed modules
        index = read_json_object(index_path, "a pipeline index")
        for key, value in index.items():
            if not key.startswith("_") and isinstance(value, list):
                check_component_source(index_path, key, value)
    except ValueError as error:
        raise ValueError(f"{flag} '{name}': {error}") from None
    return resolve(name, pipeline_layout(index), flag=flag, weights=weights)


def preprocess_model_layout(*, own_depth: bool, own_content: bool) -> Layout:
    """What ``gen1 preprocess --model`` reads of a Stable Diffusion or gen1 pipeline repo: its ``vae/``, and the
    pipeline's own ``depth_estimator/`` and ``content_encoder/`` when ``--depth-model`` / ``--content-model`` do
    not name others (``own_depth`` / ``own_content``; fetched when the repo has them, as a gen1 pipeline does)."""
    optional = ("model_index.json",) + (("depth_estimator/*",) if own_depth else ()) + (
        ("content_encoder/*",) if own_content else ())
    return Layout("a Stable Diffusion or gen1 pipeline in diffusers layout (vae/config.json and its weights)",
                  files=_model("vae/", DIFFUSERS_WEIGHTS), optional=optional)


def resolve_preprocess_models(model, depth_model, content_model) -> tuple:
    """``--model``, ``--depth-model`` and ``--content-model`` of ``gen1 preprocess`` as local paths, each a path or a
    Hub repo id (the encoders None: the model's own, left None); every missing one named in one message."""
    layout = preprocess_model_layout(own_depth=depth_model is None, own_content=content_model is None)
    paths = resolve_all([("--model", model, layout), ("--depth-model", depth_model, DEPTH_MODEL),
                         ("--content-model", content_model, CONTENT_MODEL)])
    return tuple(None if path is None else str(path) for path in paths)


def resolve_encoders(depth_model, content_model) -> tuple:
    """``--depth-model`` and ``--content-model`` of ``gen1 customize`` (None: the model's own,
    left None) as local paths, each a path or a Hub repo id (both missing: one message naming both)."""
    depth, content = resolve_all([("--depth-model", depth_model, DEPTH_MODEL),
                                  ("--content-model", content_model, CONTENT_MODEL)])
    return (None if depth is None else str(depth)), (None if content is None else str(content))


def resolve_all(parts, *, weights: bool = True) -> list[Path]:
    """Resolve several named parts at once; every part that cannot be had is reported, in one ``ValueError``.

    ``parts``: ``(flag, name, layout)`` triples, ``layout`` a :class:`Layout` (:data:`PIPELINE_INDEX` resolves a
    whole pipeline, as :func:`resolve_pipeline`); a part whose name is None is skipped (its path is None). Returns
    the local paths in the order given. Each part is tried once (a name not in the cache fails at once when the
    Hub cannot be reached), so a user missing four repos learns of all four from one run: the message joins
    each part's one-line error with "; ", after a count (``"2 of 4 model parts are missing: --base ...; ..."``).
    """
    paths: list[Path | None] = []
    errors: list[str] = []
    for flag, name, layout in parts:
        if name is None:
            paths.append(None)
            continue
        try:
            paths.append(resolve_pipeline(name, flag=flag, weights=weights) if layout is PIPELINE_INDEX
                         else resolve(name, layout, flag=flag, weights=weights))
        except (ValueError, FileNotFoundError) as error:
            paths.append(None)
            errors.append(error)
    if len(errors) == 1:  # one part missing: its own error, as resolving it alone would raise it
        raise errors[0]
    if errors:
        given = sum(1 for _, name, _ in parts if name is not None)
        raise ValueError(f"{len(errors)} of {given} model parts are missing: "
                         + "; ".join(" ".join(str(error).split()) for error in errors))
    return paths


@dataclass
class _HubRequest:
    """One name to fetch: which files of which repo, and the messages that name them."""

    name: str
    repo: str
    sub: str
    layout: Layout
    flag: str
    weights: bool

    def resolve(self) -> Path:
        listing, unreachable = self._list_repo()
        root = self._download(listing) if listing is not None else self._cached_root(unreachable)
        missing = [group for group in self._groups() if not any((root / f).is_file() for f in group)]
        if missing:
            self._refuse_missing(missing, online=listing is not None)
        return root / self.sub if self.sub else root

    # -------------------------------------------------------------------------------------- what is wanted
    def _groups(self) -> list[tuple[str, ...]]:
        if self.layout.is_file(self.sub):
            return [(self.sub,)]
        prefix = f"{self.sub}/" if self.sub else ""
        groups = [tuple(prefix + f for f in group) for group in self.layout.files]
        if not self.weights:
            groups = [g for g in groups if not all(f.endswith(WEIGHT_SUFFIXES) for f in g)]
        return groups

    def _patterns(self) -> list[str]:
        prefix = f"{self.sub}/" if self.sub and not self.layout.is_file(self.sub) else ""
        patterns = [f"{prefix}{folder}/*" for folder in self.layout.folders]
        return patterns + [prefix + pattern for pattern in self.layout.optional]

    # -------------------------------------------------------------------------------------- the Hub
    def _list_repo(self):
        """(the repo's file list, None), or (None, why the Hub cannot be reached).

        One request, ``model_info`` (its ``siblings`` are the repo's files), with no retries: huggingface_hub's
        ``list_repo_files`` retries a refused connection five times with back-off (about 25 s per name) before
        the cache is even looked at.
        """
        from huggingface_hub import HfApi, constants  # lazy: huggingface_hub is heavy and only this path needs it

        # lazy: huggingface_hub is heavy and only this path needs it
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

        if constants.HF_HUB_OFFLINE:
            return None, "HF_HUB_OFFLINE is set"
        try:
            info = HfApi().model_info(self.repo, timeout=LISTING_TIMEOUT)
            return [sibling.rfilename for sibling in info.siblings or ()], None
        except GatedRepoError:
            raise self._gated() from None
        except RepositoryNotFoundError:
            raise ValueError(f"{self.flag} '{self.name}': no local path and no Hub repo '{self.repo}' (a typo? a "
                             "private repo needs `hf auth login`)") from None
        except Exception as error:  # no connection, a timeout, the Hub down: the cache may still hold the files
            first_line = (str(error).splitlines() or [""])[0]
            return None, f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__

    def _download(self, listing: list[str]) -> Path:
        from huggingface_hub import snapshot_download  # lazy: huggingface_hub is heavy and only this path needs it
        from huggingface_hub.errors import GatedRepoError  # lazy: huggingface_hub is heavy and only this path needs it

        files = set(listing)
        chosen, missing = [], []
        for group in self._groups():
            present = [f for f in group if f in files]
            (chosen if present else missing).append(present[0] if present else group)
        if missing:
            self._refuse_missing(missing, online=True)
        try:
            return Path(snapshot_download(self.repo, allow_patterns=chosen + self._patterns()))
        except GatedRepoError:  # a gated repo's listing is public (model_info), its files are not
            raise self._gated() from None

    def _gated(self) -> ValueError:
        return ValueError(f"{self.flag} '{self.name}': the Hub repo '{self.repo}' is gated: accept its terms at "
                          f"https://huggingface.co/{self.repo} and log in with `hf auth login`")

    def _cached_root(self, unreachable: str) -> Path:
        # lazy: huggingface_hub is heavy and only this path needs it
        from huggingface_hub import constants, snapshot_download

        # lazy: huggingface_hub is heavy and only this path needs it
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:  # the cached snapshot of the main revision; no pattern: nothing is checked or fetched here
            return Path(snapshot_download(self.repo, local_files_only=True, allow_patterns=[]))
        except LocalEntryNotFoundError:
            raise ValueError(
                f"{self.flag} '{self.name}': no local path, and the Hub repo '{self.repo}' is not in the Hugging Face "
                f"cache ({constants.HF_HUB_CACHE}) while the Hub cannot be reached ({unreachable}); fetch it "
                f"beforehand: {fetch_command(self.repo, self.layout, self.sub)}"
            ) from None

    def _refuse_missing(self, missing: list[tuple[str, ...]], *, online: bool):
        single_file = self.layout.is_file(self.sub)
        marker_missing = missing[0] == self._groups()[0]
        if marker_missing:  # what makes a folder this kind of model is absent: name it alone
            missing = missing[:1]
        names = ", ".join(group[0] for group in missing[:3]) + (f" and {len(missing) - 3} more"
                                                                if len(missing) > 3 else "")
        start = f"{self.flag} '{self.name}': the Hub repo '{self.repo}'"
        if online:
            raise ValueError(f"{start}{'' if single_file else f' is not {self.layout.what}: it'} has no {names}")
        command = fetch_command(self.repo, self.layout, self.sub)
        if marker_missing and not single_file:
            raise ValueError(f"{start} is cached without {names}: it is not {self.layout.what}, or its download "
                             f"was cut short (then: {command})")
        raise ValueError(f"{start} is cached without {names} (an incomplete download?); complete it: {command}")
