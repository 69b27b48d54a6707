"""Replay the hostile-input families of issues 32 and 38 against gen1's lower layers and its commands; print counts.

Families: images that claim too many pixels (as a mask, a reference, a depth image; 8- and 16-bit; over gen1's
limit and over PIL's bomb limit) and other broken image files; ``.npy`` depth arrays with forged headers; model
folders whose ``model_index.json`` or component configs are JSON of the wrong type, or that name modules outside
the allow-list; Hub names with the Hub offline (not cached, several at once, names that look like local paths);
FIFOs and devices given as video or image; SIGTERM during an atomic write and during ``gen1 edit``; size-like knobs
and training configurations (``gen1 customize`` batch, LoRA rank and learning rate; ``gen1 train`` output folders
inside an input, unknown stages and keys, DataLoader workers; ``gen1 preprocess --size``); the editing modes' inputs
(erase / replace masks, the mask's frame, clicks, trackers, drags, directions, Imagic adapters and clips).

Every case expects a refusal. Each ends as one of:

* ``clean``: a ``ValueError`` / ``OSError`` (or, through the CLI, exit code 2 and one stderr line) whose message
  is one line naming the file, flag or entry at fault;
* ``traceback``: any other exception, a message of several lines, or one that names nothing (or a CLI traceback);
* ``hang``: no answer within ``--timeout`` seconds (in-process cases are stopped with SIGALRM);
* ``accepted``: no error at all (a refusal that did not happen).

Inputs (every file a case reads) are hashed before and after: ``inputs changed`` counts cases that altered one.
No network is used: the Hub is offline (``HF_HUB_OFFLINE=1``, an empty cache in a temporary folder).

Usage: ``python scripts/fuzz_inputs.py [--timeout 60] [--no-cli] [--family modes] [-v]`` from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "gen1" / "assets" / "demo-model"


# ------------------------------------------------------------------------------------------ hostile files
sys.path.insert(0, str(REPO / "tests"))
from bad_files import npy_claiming, png_claiming  # noqa: E402 - the tests' own makers of hostile files


def npy_with_header(path: Path, header: dict | str, data: bytes = b"\x00" * 64, magic: bytes = b"\x93NUMPY\x01\x00"
                    ) -> Path:
    """A ``.npy`` with any header text (``npy_claiming`` writes well-formed ones) and magic."""
    text = (repr(header) if isinstance(header, dict) else header).encode("latin1")
    text += b" " * (64 - (10 + len(text) + 1) % 64) + b"\n"
    path.write_bytes(magic + struct.pack("<H", len(text)) + text + data)
    return path


# ------------------------------------------------------------------------------------------ running cases
@dataclass
class Case:
    family: str
    name: str
    run: Callable[[], object]
    names: tuple[str, ...]  # at least one of these must appear in a clean message (the file, flag or entry)
    inputs: tuple[Path, ...] = ()
    cli: bool = False  # run() returns (exit code, stderr)


@dataclass
class Outcome:
    case: Case
    kind: str
    detail: str
    changed: bool = False


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)


class _Hang(BaseException):
    """Raised by SIGALRM in a case that did not return in time (BaseException: no case code catches it)."""


def _on_alarm(signum, frame):
    raise _Hang()


def _digest(paths: tuple[Path, ...]) -> dict:
    out = {}
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if path.is_fifo() or not path.exists():
                out[str(path)] = "special" if path.exists() else "absent"
                continue
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "other"
    return out


def _judge(case: Case, error: BaseException | None, result) -> tuple[str, str]:
    if case.cli:
        code, err = result
        # progress bars (tqdm, on stderr) are not messages: drop their lines
        text = "\n".join(line for line in err.replace("\r", "\n").splitlines()
                         if line.strip() and not ("%|" in line and "it/s" in line or "?it/s" in line)).strip()
        lines = text.splitlines()
        usage = lines and lines[0].startswith("usage:") and all(line.startswith(" ") for line in lines[1:-1])
        if code == 2 and usage and ": error: " in lines[-1] and "Traceback" not in text:
            text = lines[-1]  # argparse's refusal: the command's usage (indented lines), then one line
        if "Traceback" in text:
            return "traceback", text.splitlines()[-1] if text else ""
        if code == 0:
            return "accepted", "exit 0"
        one_line = len(text.splitlines()) == 1 and code in (2, 143, 130)
        named = any(n in text for n in case.names)
        return ("clean" if one_line and named else "traceback"), f"exit {code}: {text[:300]}"
    if error is None:
        return "accepted", repr(result)[:200]
    message = str(error)
    if isinstance(error, (ValueError, OSError)) and "\n" not in message and any(n in message for n in case.names):
        return "clean", message[:300]
    return "traceback", f"{type(error).__name__}: {message[:300]}"


def run_case(case: Case, timeout: float) -> Outcome:
    before = _digest(case.inputs)
    error, result = None, None
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = case.run()
    except _Hang:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        return Outcome(case, "hang", f"no answer in {timeout:g} s", _digest(case.inputs) != before)
    except BaseException as caught:  # noqa: BLE001 - a SystemExit (a module that runs the CLI) is a finding too
        error = caught
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    kind, detail = _judge(case, error, result)
    return Outcome(case, kind, detail, _digest(case.inputs) != before)


# ------------------------------------------------------------------------------------------ the families
def image_cases(work: Path) -> list[Case]:
    from gen1.content import ContentEncoder  # noqa: F401 - the reference path (read_image) is what the encoder reads
    from gen1.depth import load_structure
    from gen1.media import read_frames_or_images, read_image

    folder = work / "images"
    folder.mkdir()
    files = {
        "13000x13000 RGB (over gen1's limit)": png_claiming(folder / "big.png", 13000, 13000),
        "20000x20000 RGB (over PIL's bomb limit)": png_claiming(folder / "bomb.png", 20000, 20000),
        "20000x20000 16-bit grey": png_claiming(folder / "bomb16.png", 20000, 20000, bit_depth=16, colour_type=0),
        "13000x13000 16-bit grey": png_claiming(folder / "big16.png", 13000, 13000, bit_depth=16, colour_type=0),
        "100000x1 strip": png_claiming(folder / "strip.png", 100_000_000, 1),
    }
    broken = folder / "broken"
    broken.mkdir()
    (broken / "empty.png").write_bytes(b"")
    (broken / "random.png").write_bytes(os.urandom(4096))
    (broken / "text.jpg").write_text("not an image\n")
    (broken / "truncated.png").write_bytes(png_claiming(broken / "t.png", 64, 64).read_bytes()[:40])
    (broken / "t.png").unlink()
    (broken / "dir.png").mkdir()
    files.update({f"broken: {p.name}": p for p in sorted(broken.iterdir())})
    readers = {
        "mask (read_frames_or_images)": lambda p: read_frames_or_images(p),
        "reference (read_image)": lambda p: read_image(p, what="reference image"),
        "depth (load_structure)": lambda p: load_structure(p),
    }
    cases = []
    for label, path in files.items():
        for reader_name, reader in readers.items():
            cases.append(Case("images", f"{label} as {reader_name}", lambda r=reader, p=path: r(p), (str(path),),
                              (path,)))
    return cases


def npy_cases(work: Path) -> list[Case]:
    from gen1.depth import load_structure

    folder = work / "npy"
    folder.mkdir()
    variants = {
        "petabyte shape": npy_claiming(folder / "huge.npy", (10**6, 10**5, 10**5)),
        "truncated data": npy_with_header(folder / "short.npy", {"descr": "<f4", "fortran_order": False,
                                                                  "shape": (4, 64, 64)}),
        "object dtype": npy_with_header(folder / "objects.npy", {"descr": "|O", "fortran_order": False,
                                                                  "shape": (2,)}, data=b"\x80\x04N."),
        "five dimensions": npy_with_header(folder / "five.npy", {"descr": "<f4", "fortran_order": False,
                                                                  "shape": (1, 1, 1, 2, 8)}),
        "zero-size frame": npy_with_header(folder / "zero.npy", {"descr": "<f4", "fortran_order": False,
                                                                  "shape": (0, 8, 8)}, data=b""),
        "string dtype": npy_with_header(folder / "str.npy", {"descr": "<U4", "fortran_order": False,
                                                              "shape": (1, 2, 2)}, data=b"\x00" * 64),
        "header not a dict": npy_with_header(folder / "list.npy", "[1, 2, 3]"),
        "bad magic": npy_with_header(folder / "magic.npy", {"descr": "<f4", "fortran_order": False, "shape": (2, 2)},
                                     magic=b"\x93NUMPZ\x01\x00"),
        "empty file": folder / "empty.npy",
        "header length beyond the file": folder / "cut.npy",
    }
    variants["empty file"].write_bytes(b"")
    variants["header length beyond the file"].write_bytes(b"\x93NUMPY\x01\x00\xff\xff{'descr'")
    stack = folder / "stack"  # a folder of depth maps, one of them forged
    stack.mkdir()
    import numpy as np

    np.save(stack / "0001.npy", np.zeros((8, 8), np.float32))
    shutil.copy(variants["petabyte shape"], stack / "0002.npy")
    variants["forged map in a folder"] = stack
    return [Case("npy", label, lambda p=path: load_structure(p),
                 (str(path) if path.is_file() else str(stack / "0002.npy"),), (path,))
            for label, path in variants.items()]


def model_folder_cases(work: Path) -> list[Case]:
    from gen1.pipeline import Gen1Pipeline

    cases = []

    def damaged(label: str, change: Callable[[Path], Path]) -> None:
        folder = Path(shutil.copytree(DEMO_MODEL, work / "models" / label.replace(" ", "_").replace("/", "_")))
        culprit = change(folder)
        cases.append(Case("model folders", label, lambda f=folder: Gen1Pipeline.from_pretrained(f),
                          (str(culprit),) if isinstance(culprit, Path) else (culprit,), (folder,)))

    for content in ("[]", "null", "3", '"unet"', "{", ""):
        damaged(f"model_index.json = {content!r}",
                lambda f, c=content: ((f / "model_index.json").write_text(c), f / "model_index.json")[1])
    for part in ("vae/config.json", "unet/config.json", "scheduler/scheduler_config.json",
                 "content_encoder/config.json", "depth_estimator/config.json"):
        for content in ("[]", "null"):
            damaged(f"{part} = {content}", lambda f, p=part, c=content: ((f / p).write_text(c), f / p)[1])
    entries = [["gen1.__main__", "X"], ["os", "system"], ["builtins", "eval"], ["subprocess", "Popen"],
               ["gen1.cli", "main"], ["gen1.unet", "ContentEncoder"], ["pickle", "loads"], ["diffusers", "__class__"],
               ["diffusers", "os"], ["../evil", "X"], ["gen1", "cli"], "diffusers", None, {"a": 1}]

    def set_unet(folder: Path, value) -> str:
        index = folder / "model_index.json"
        data = json.loads(index.read_text())
        data["unet"] = value
        index.write_text(json.dumps(data))
        return "component 'unet'"

    for entry in entries:
        damaged(f"unet = {json.dumps(entry)}", lambda f, e=entry: set_unet(f, e))
    return cases


def hub_cases(work: Path) -> list[Case]:
    from gen1 import hub
    from gen1.hub import BASE, CONTROLNET, IP_ADAPTER, LORA, MOTION_ADAPTER, PIPELINE_INDEX, resolve
    from gen1.pipeline import Gen1Pipeline

    here = work / "cwd"
    (here / "runs").mkdir(parents=True)
    cases = []
    for name in ("org/absent", "stable-diffusion-v1-5/stable-diffusion-v1-5", "guoyww/animatediff/mm_sd_v15_v3.ckpt"):
        cases.append(Case("hub", f"not cached: {name}", lambda n=name: resolve(n, MOTION_ADAPTER, flag="--x"),
                          (f"--x '{name}'",)))
    cases.append(Case("hub", "pipeline not cached (Python API)", lambda: Gen1Pipeline.from_pretrained("org/absent"),
                      ("org/absent",)))
    parts = [("--base", "a/base", BASE), ("--motion-adapter", "a/motion", MOTION_ADAPTER),
             ("--controlnet", "a/controlnet", CONTROLNET), ("--ip-adapter", "a/ip", IP_ADAPTER),
             ("--model", "a/model", PIPELINE_INDEX)]
    cases.append(Case("hub", "five parts missing at once", lambda: hub.resolve_all(parts),
                      ("5 of 5 model parts are missing",)))
    for name in ("./runs/export", "../runs/export", "runs/export", "runs/model.safetensors", "out/lora.safetensors",
                 "adapters/style.pt", "~/models/x", "/nonexistent/model"):
        cases.append(Case("hub", f"local-looking name {name}",
                          lambda n=name: _in(here, lambda: resolve(n, LORA, flag="--lora")), (f"'{name}'",)))
    return cases


def _in(folder: Path, run: Callable[[], object]):
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return run()
    finally:
        os.chdir(cwd)


def special_file_cases(work: Path) -> list[Case]:
    from gen1.depth import load_structure
    from gen1.media import read_frames_or_images, read_image, read_video

    folder = work / "special"
    folder.mkdir()
    fifo_video, fifo_image = folder / "in.mp4", folder / "frame.png"
    os.mkfifo(fifo_video)
    os.mkfifo(fifo_image)
    cases = [
        Case("special files", "FIFO as video (read_video)", lambda: read_video(fifo_video), (str(fifo_video),)),
        Case("special files", "FIFO as input (read_frames_or_images)", lambda: read_frames_or_images(fifo_video),
             (str(fifo_video),)),
        Case("special files", "FIFO as image (read_image)", lambda: read_image(fifo_image), (str(fifo_image),)),
        Case("special files", "FIFO as depth (load_structure)", lambda: load_structure(fifo_image),
             (str(fifo_image),)),
        Case("special files", "/dev/zero as video", lambda: read_video("/dev/zero"), ("/dev/zero",)),
        Case("special files", "/dev/null as image", lambda: read_image("/dev/null"), ("/dev/null",)),
    ]
    return cases


def signal_cases(work: Path, timeout: float) -> list[Case]:
    out = work / "signals" / "out.bin"
    out.parent.mkdir()
    out.write_bytes(b"previous")
    code = ("import sys, time\nfrom gen1.atomic import atomic_path, sigterm_as_interrupt, Terminated\n"
            "try:\n    with sigterm_as_interrupt():\n"
            f"        with atomic_path({str(out)!r}) as tmp:\n"
            "            tmp.write_bytes(b'half')\n"
            "            print('writing', flush=True)\n"
            "            time.sleep(300)\n"
            "except Terminated:\n    print('gen1: terminated (SIGTERM)', file=sys.stderr)\n    sys.exit(2)\n")

    def atomic_write():
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=_env(), text=True)
        try:
            process.stdout.readline()
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
        left = sorted(p.name for p in out.parent.iterdir() if p.name != "out.bin")
        if left:
            err = f"{err}\nTraceback-like leftover: temporaries {left}"
        return process.returncode, err

    return [Case("signals", "SIGTERM during an atomic write", atomic_write, ("terminated",), (out,), cli=True)]


def cli_cases(work: Path, timeout: float) -> list[Case]:
    """A few families through `gen1 edit` in a subprocess (what a user sees: exit code and stderr)."""
    import numpy as np

    from gen1.media import write_video

    folder = work / "cli"
    folder.mkdir()
    clip = folder / "clip.mp4"
    write_video(clip, np.full((2, 64, 64, 3), 100, np.uint8), fps=8)
    mask = png_claiming(folder / "mask.png", 13000, 13000)
    reference = png_claiming(folder / "ref.png", 20000, 20000)
    depth = npy_claiming(folder / "depth.npy", (10**6, 10**5, 10**5))
    bad_model = Path(shutil.copytree(DEMO_MODEL, folder / "model"))
    index = json.loads((bad_model / "model_index.json").read_text())
    index["unet"] = ["gen1.__main__", "VideoUNet"]
    (bad_model / "model_index.json").write_text(json.dumps(index))
    list_model = Path(shutil.copytree(DEMO_MODEL, folder / "model_list"))
    (list_model / "model_index.json").write_text("[]")
    fifo = folder / "in.mp4"
    os.mkfifo(fifo)
    out = folder / "out.mp4"
    base = ["edit", str(clip), "-o", str(out), "--prompt", "x", "--size", "64", "--max-frames", "2", "--steps", "1"]
    variants = [
        ("--mask 13000x13000", [*base, "--mask", str(mask)], (str(mask),), (mask, clip)),
        ("--reference 20000x20000", [*base, "--reference", str(reference)], (str(reference),), (reference, clip)),
        ("--depth forged .npy", [*base, "--depth", str(depth)], (str(depth),), (depth, clip)),
        ("--model naming gen1.__main__", [*base, "--model", str(bad_model)], ("gen1.__main__",), (bad_model,)),
        ("--model index a list", [*base, "--model", str(list_model)], (str(list_model / "model_index.json"),),
         (list_model,)),
        ("FIFO as INPUT", ["edit", str(fifo), "-o", str(out), "--prompt", "x"], (str(fifo),), ()),
        ("--model ./missing/relative", [*base, "--model", "./missing/relative"], ("missing/relative",), ()),
        ("--base runs/model.safetensors", [*base, "--base", "runs/model.safetensors", "--motion-adapter", "a/b",
                                           "--controlnet", "c/d", "--depth-model", "e/f"],
         ("runs/model.safetensors",), ()),
    ]
    cases = [Case("cli", name, lambda a=args: _gen1(a, timeout), names, inputs, cli=True)
             for name, args, names, inputs in variants]

    def sigterm_edit():
        command = [sys.executable, "-m", "gen1", "edit", str(clip), "-o", str(out), "--prompt", "x", "--size", "64",
                   "--max-frames", "2", "--steps", "1000", "--threads", "1"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
                                   cwd=folder, text=True)
        err = ""
        try:
            while "/1000" not in err:  # the denoising progress bar
                char = process.stderr.read(1)
                if not char:
                    break
                err += char
            process.send_signal(signal.SIGTERM)
            rest = process.communicate(timeout=timeout)[1]
        finally:
            if process.poll() is None:
                process.kill()
        last = (err + rest).replace("\r", "\n").strip().splitlines()
        left = [p.name for p in folder.iterdir() if p.name.startswith(".out.mp4")]
        tail = "\n".join(line for line in last if "Traceback" in line) or (last[-1] if last else "")
        return process.returncode, tail + (f"\nTraceback-like leftover: {left}" if left else "")

    cases.append(Case("cli", "SIGTERM during gen1 edit", sigterm_edit, ("terminated",), (clip,), cli=True))
    return cases


def knob_cases(work: Path, timeout: float) -> list[Case]:
    """Size-like knobs and training configurations through the commands (issue 38): each refused in one line naming
    the setting, before memory is taken or an input is written into."""
    import numpy as np
    from PIL import Image

    folder = work / "knobs"
    images = folder / "images"
    images.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(images / f"i{i}.png")
    shards = folder / "shards"
    shards.mkdir()
    adapter = folder / "adapter.safetensors"
    customize = ["customize", "--images", str(images), "--out", str(adapter), "--size", "32", "--threads", "1"]
    train = ["train", "stage2_temporal", f"model.base={DEMO_MODEL}", f"data.shards={shards}",
             f"train.output_dir={folder / 'run'}"]
    variants = [
        ("customize --batch-size 1000000", [*customize, "--batch-size", "1000000", "--steps", "1"], ("batch_size",)),
        ("customize --lora-rank 100000", [*customize, "--lora-rank", "100000", "--steps", "1"], ("lora_rank",)),
        ("customize --lr 1e30", [*customize, "--lr", "1e30", "--steps", "4"], ("diverged",)),
        ("train output_dir = shards", [*train, f"train.output_dir={shards}"], ("train.output_dir",)),
        ("train stage: 9", [*train, "stage=9"], ("stage",)),
        ("train unknown model.temporal key", [*train, "model.temporal.temporal_heads=4"], ("model.temporal",)),
        ("train data.num_workers=10000", [*train, "data.num_workers=10000"], ("data.num_workers",)),
        ("preprocess --size 100000", ["preprocess", "--input", str(images), "--out", str(folder / "out"), "--model",
                                      str(DEMO_MODEL), "--size", "100000"], ("size",)),
    ]
    return [Case("knobs", name, lambda a=args: _gen1(a, timeout), names, (images, shards, DEMO_MODEL), cli=True)
            for name, args, names in variants]


def mode_cases(work: Path, timeout: float) -> list[Case]:
    """The editing modes' own inputs through the commands (issues 33-35): erase and replace (masks, the frame they
    are given on, clicks, trackers, structure inside the mask), drags, directions, Imagic (its adapter, its scale, its
    clip); each refused in one line naming the flag or file, before the model runs."""
    import numpy as np
    from PIL import Image

    from gen1.media import write_video

    folder = work / "modes"
    folder.mkdir()
    clip = folder / "clip.mp4"
    write_video(clip, np.full((2, 64, 64, 3), 100, np.uint8), fps=8)
    masks = {}
    for name, fill in (("empty", 0), ("full", 255), ("square", None)):
        pixels = np.full((64, 64), fill or 0, np.uint8)
        if fill is None:
            pixels[20:40, 20:40] = 255
        masks[name] = folder / f"{name}.png"
        Image.fromarray(pixels).save(masks[name])
    masks["small"] = folder / "small.png"
    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(masks["small"])
    masks["video"] = folder / "masks.mp4"
    write_video(masks["video"], np.full((2, 64, 64, 3), 255, np.uint8), fps=8)
    text_adapter = folder / "adapter.safetensors"
    text_adapter.write_text("not weights")
    empty_folder = folder / "empty-adapter"
    empty_folder.mkdir()
    out = folder / "out.mp4"
    base = ["edit", str(clip), "-o", str(out), "--size", "64", "--max-frames", "2", "--steps", "1", "--threads", "1"]
    square = ["--mask", str(masks["square"]), "--mask-frame", "0"]
    variants = [
        ("--erase with an empty mask", [*base, "--erase", "--mask", str(masks["empty"])], ("mask",)),
        ("--erase with a full mask", [*base, "--erase", "--mask", str(masks["full"])], ("mask",)),
        ("--erase with a mask of another size", [*base, "--erase", "--mask", str(masks["small"])], ("mask",)),
        ("--erase without a mask", [*base, "--erase"], ("--erase", "mask")),
        ("--erase with --prompt", [*base, "--erase", *square, "--prompt", "x"], ("--erase", "--prompt")),
        ("--erase-strength 0", [*base, "--erase", *square, "--erase-strength", "0"], ("--erase-strength",)),
        ("--erase-strength nan", [*base, "--erase", *square, "--erase-strength", "nan"], ("--erase-strength",)),
        ("--erase-fill nearest", [*base, "--erase", *square, "--erase-fill", "nearest"], ("--erase-fill",)),
        ("--erase-fill without --erase", [*base, *square, "--prompt", "x", "--erase-fill", "boundary"],
         ("--erase-fill",)),
        ("--mask-frame 2 of 2 frames", [*base, "--erase", "--mask", str(masks["square"]), "--mask-frame", "2"],
         ("--mask-frame", "mask_frame")),
        ("--mask-frame -1", [*base, "--erase", "--mask", str(masks["square"]), "--mask-frame", "-1"],
         ("--mask-frame",)),
        ("--mask-frame 0.5", [*base, "--erase", "--mask", str(masks["square"]), "--mask-frame", "0.5"],
         ("--mask-frame",)),
        ("--mask-frame with a per-frame mask video", [*base, "--erase", "--mask", str(masks["video"]),
                                                      "--mask-frame", "0"], ("--mask-frame", "mask")),
        ("--mask-click with the flow tracker", [*base, "--erase", "--mask-click", "5,5"], ("--mask-click", "flow")),
        ("--mask-click outside the frame", [*base, "--erase", "--mask-tracker", "sam2", "--mask-click", "900,5"],
         ("--mask-click", "--mask-tracker-model")),  # SAM 2 is not in the offline cache: that is found first
        ("--mask-click nan,5", [*base, "--erase", "--mask-tracker", "sam2", "--mask-click", "nan,5"],
         ("--mask-click",)),
        ("--mask-click 5,5,x", [*base, "--erase", "--mask-tracker", "sam2", "--mask-click", "5,5,x"],
         ("--mask-click",)),
        ("--mask-tracker nope", [*base, "--erase", *square, "--mask-tracker", "nope"], ("--mask-tracker",)),
        ("--mask-tracker-model missing folder", [*base, "--erase", *square, "--mask-tracker", "sam2",
                                                 "--mask-tracker-model", str(folder / "no-sam")],
         ("--mask-tracker-model", "no-sam")),
        ("--mask-structure sideways", [*base, *square, "--prompt", "x", "--mask-structure", "sideways"],
         ("--mask-structure",)),
        ("--mask-structure-level 99", [*base, *square, "--prompt", "x", "--mask-structure-level", "99"],
         ("--mask-structure-level",)),
        ("--drag without a mask", [*base, "--drag", "30,30:40,40"], ("--drag",)),
        ("--drag malformed", [*base, *square, "--drag", "30,30:40"], ("--drag",)),
        ("--drag nan", [*base, *square, "--drag", "nan,30:40,40"], ("--drag",)),
        ("--drag outside the frame", [*base, *square, "--drag", "30,30:4000,40"], ("--drag",)),
        ("--drag from off the subject", [*base, *square, "--drag", "2,2:10,10"], ("drag 2,2:10,10",)),
        ("--drag with --strength 0.5", [*base, *square, "--drag", "30,30:40,40", "--strength", "0.5"],
         ("--strength", "--drag")),
        ("--drag-strength 0", [*base, *square, "--drag", "30,30:40,40", "--drag-strength", "0"],
         ("--drag-strength",)),
        ("--drag with --erase", [*base, *square, "--drag", "30,30:40,40", "--erase"], ("--drag", "--erase")),
        ("--drag track file missing", [*base, *square, "--drag", str(folder / "track.csv")], ("--drag", "track")),
        ("--direction with an empty text", [*base, "--direction", "", "red objects"], ("--direction",)),
        ("--direction NEUTRAL = TARGET", [*base, "--direction", "red", "red"], ("--direction",)),
        ("--direction-scale nan", [*base, "--direction", "red", "blue", "--direction-scale", "nan"],
         ("--direction-scale",)),
        ("two scales for one direction", [*base, "--direction", "red", "blue", "--direction-scale", "1",
                                          "--direction-scale", "2"], ("--direction-scale",)),
        ("--direction-scale without a direction", [*base, "--prompt", "x", "--direction-scale", "1"],
         ("--direction-scale",)),
        ("--imagic-scale without an adapter", [*base, "--imagic-scale", "0.5"], ("--imagic-scale",)),
        ("--imagic-scale inf", [*base, "--imagic-scale", "inf", "--adapter", str(empty_folder)], ("--imagic-scale",)),
        ("--adapter a text file", [*base, "--prompt", "x", "--adapter", str(text_adapter)], (str(text_adapter),)),
        ("--adapter an empty folder", [*base, "--prompt", "x", "--adapter", str(empty_folder)],
         (str(empty_folder),)),
        ("customize --imagic, a 1-frame clip", ["customize", "--imagic", "--video", str(masks["square"]),
                                                "--prompt", "x", "--out", str(folder / "imagic"), "--threads", "1"],
         ("--video",)),
        ("customize --imagic --video missing", ["customize", "--imagic", "--video", str(folder / "none.mp4"),
                                                "--prompt", "x", "--out", str(folder / "imagic")], ("none.mp4",)),
        ("customize --imagic --image-ratio 2", ["customize", "--imagic", "--video", str(clip), "--prompt", "x",
                                                "--out", str(folder / "imagic"), "--image-ratio", "2"],
         ("--image-ratio",)),
        ("customize --images with --gradient-checkpointing", ["customize", "--images", str(folder), "--out",
                                                              str(folder / "a.safetensors"),
                                                              "--gradient-checkpointing"],
         ("--gradient-checkpointing",)),
    ]
    inputs = (clip, *masks.values(), text_adapter, empty_folder, DEMO_MODEL)
    return [Case("modes", name, lambda a=args: _gen1(a, timeout), names, inputs, cli=True)
            for name, args, names in variants]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1")


def _gen1(args: list[str], timeout: float):
    try:
        result = subprocess.run([sys.executable, "-m", "gen1", *args], capture_output=True, text=True,
                                timeout=timeout, env=_env())
    except subprocess.TimeoutExpired:
        raise _Hang() from None
    return result.returncode, result.stderr


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    parser.add_argument("--no-cli", action="store_true", help="skip the cases run through `gen1 edit` subprocesses")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case, not only the failures")
    parser.add_argument("--family", action="append", help="run only this family's cases (repeatable), e.g. modes")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gen1-fuzz-") as tmp:
        work = Path(tmp)
        hf = work / "hf"
        (hf / "hub").mkdir(parents=True)
        os.environ.update(HF_HOME=str(hf), HF_HUB_CACHE=str(hf / "hub"), HF_HUB_OFFLINE="1")
        from huggingface_hub import constants

        constants.HF_HOME, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(hf), str(hf / "hub"), True

        cases = (image_cases(work) + npy_cases(work) + model_folder_cases(work) + hub_cases(work)
                 + special_file_cases(work) + signal_cases(work, args.timeout))
        if not args.no_cli:
            cases += cli_cases(work, args.timeout) + knob_cases(work, args.timeout) + mode_cases(work, args.timeout)
        if args.family:
            cases = [case for case in cases if case.family in args.family]
        tally = Tally()
        started = time.monotonic()
        for case in cases:
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                outcome = run_case(case, args.timeout)
            tally.outcomes.append(outcome)
            if args.verbose or outcome.kind != "clean" or outcome.changed:
                flag = " (INPUT CHANGED)" if outcome.changed else ""
                print(f"[{outcome.kind}] {case.family}: {case.name}{flag}\n    {outcome.detail}")
        families = sorted({o.case.family for o in tally.outcomes})
        print(f"\n{'family':<16}{'cases':>7}{'clean':>7}{'traceback':>11}{'hang':>6}{'accepted':>10}{'changed':>9}")
        for family in families + ["all"]:
            rows = [o for o in tally.outcomes if family in ("all", o.case.family)]
            counts = [sum(1 for o in rows if o.kind == k) for k in ("clean", "traceback", "hang", "accepted")]
            print(f"{family:<16}{len(rows):>7}{counts[0]:>7}{counts[1]:>11}{counts[2]:>6}{counts[3]:>10}"
                  f"{sum(o.changed for o in rows):>9}")
        print(f"({time.monotonic() - started:.0f} s)")
        bad = len(tally.outcomes) - tally.count("clean") + sum(o.changed for o in tally.outcomes)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
