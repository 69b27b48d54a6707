"""Training curves of the demo model (loss vs step) -> one PNG.

    python scripts/demo/plot_curves.py --runs runs/demo --out docs/demo_training_curves.png
    python scripts/demo/plot_curves.py --runs runs/demo --unet-only --first-step 19100 --out docs/x.png
    python scripts/demo/plot_curves.py --panels content unet --first-stage unet_c2 --first-step 27900 --out docs/y.png

Component losses come from ``RUN/checkpoint/state.json`` (demo_recipe.loop; the content panel draws every
content encoder run, ``content`` to ``content4``, the depth panel ``depth`` to ``depth3``); the UNet's from
the TensorBoard events that ``gen1 train`` writes (``train/loss``), one curve per UNet stage (``UNET_STAGES``,
each starting where the previous one stopped; runs that are not there are skipped). ``--panels`` picks the
panels (``--unet-only`` = the UNet alone), ``--first-stage`` starts the UNet panel at a later run and
``--first-step`` puts that run at its step of the lineage (to plot later runs when earlier logs are gone).
Curves are smoothed with a running mean (raw in grey).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def unet_losses(run: Path) -> tuple[np.ndarray, np.ndarray]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps, values = {}, {}
    for events in sorted(run.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "train/loss" in acc.Tags().get("scalars", []):
            for event in acc.Scalars("train/loss"):
                steps[event.step] = event.step
                values[event.step] = event.value  # a resumed run's later file wins for repeated steps
    order = sorted(values)
    return np.array(order), np.array([values[s] for s in order])


UNET_STAGES = (("joint", "unet"), ("image (structure)", "unet_image"), ("image, continued", "unet_image2"),
               ("temporal only", "unet_video"), ("image, estimated depth + reference content", "unet_ref"),
               ("temporal only, same data", "unet_ref_video"), ("image, content encoder 2", "unet_c2"),
               ("image, continued at half the lr", "unet_c2b"), ("temporal only, same data", "unet_c2b_video"),
               ("image, content encoder 4", "unet_c4"), ("image, continued at half the lr", "unet_c4b"),
               ("temporal only, same data", "unet_c4b_video"), ("image, sign-aware depth estimator", "unet_d3"),
               ("temporal only, same data", "unet_d3_video"))
# component panel -> its runs (a later run of the same component is drawn over the first)
COMPONENT_RUNS = {"vae": ("vae",), "content": ("content", "content2", "content3", "content4"),
                  "depth": ("depth", "depth2", "depth3")}


def plot_run(ax, steps: np.ndarray, losses: np.ndarray, label: str | None = None) -> None:
    ax.plot(steps, losses, color="0.8", linewidth=0.6, zorder=1)
    window = max(1, len(losses) // 30)
    # smoothed curves above every run's raw values, so a later run's grey does not hide an earlier curve
    ax.plot(steps[window - 1:], smooth(losses, window), linewidth=1.5, label=label, zorder=3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/demo")
    parser.add_argument("--out", default="docs/demo_training_curves.png")
    parser.add_argument("--panels", nargs="+", choices=("vae", "content", "depth", "unet"),
                        default=["vae", "content", "depth", "unet"], help="which panels to draw (default all)")
    parser.add_argument("--unet-only", action="store_true", help="only the VideoUNet panel (= --panels unet)")
    parser.add_argument("--first-stage", choices=[run for _, run in UNET_STAGES], default=UNET_STAGES[0][1],
                        help="UNet panel: start at this run of UNET_STAGES (default the first)")
    parser.add_argument("--first-step", type=int, default=0, help="lineage step at which the first UNet run starts")
    args = parser.parse_args()
    try:
        import matplotlib
    except ImportError:
        parser.error("drawing the curves needs matplotlib: pip install 'gen1[plots]'")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gen1.atomic import atomic_path, check_output_path

    runs = Path(args.runs)
    panels = [("VAE (L1 + MSE + 1e-6 KL)", "vae"), ("content encoder (InfoNCE + align [+ attributes])", "content"),
              ("depth (SSI MSE; depth2, depth3: SSI MAE)", "depth"),
              ("VideoUNet (v-prediction MSE, gen1 train)", "unet")]
    chosen = ["unet"] if args.unet_only else args.panels
    panels = [(title, name) for title, name in panels if name in chosen]
    stages = UNET_STAGES[[run for _, run in UNET_STAGES].index(args.first_stage):]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    axes = axes[0]
    for ax, (title, name) in zip(axes, panels):
        if name == "unet":
            offset = args.first_step
            for label, run in stages:
                steps, losses = unet_losses(runs / run)
                if len(losses):
                    plot_run(ax, steps + offset, losses, f"{label}: {run}")
                    offset += int(steps[-1])
        else:
            for run in COMPONENT_RUNS[name]:
                state_file = runs / run / "checkpoint" / "state.json"
                history = json.loads(state_file.read_text())["history"] if state_file.is_file() else []
                if history:
                    plot_run(ax, np.array([row[0] for row in history]), np.array([row[1] for row in history]), run)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    axes[0].set_ylabel("loss")
    fig.tight_layout()
    with atomic_path(check_output_path(args.out)) as tmp:
        fig.savefig(tmp, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
