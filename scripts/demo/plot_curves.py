"""Training curves of the demo model (loss vs step) -> one PNG.

    python scripts/demo/plot_curves.py --runs runs/demo --out docs/demo_training_curves.png
    python scripts/demo/plot_curves.py --runs runs/demo --unet-only --first-step 19100 --out docs/x.png

Component losses come from ``RUN/checkpoint/state.json`` (gen1.demo.loop); the UNet's from the TensorBoard
events that ``gen1 train`` writes (``train/loss``), one curve per UNet stage (``UNET_STAGES``, each starting
where the previous one stopped; runs that are not there are skipped). ``--unet-only`` draws the UNet panel alone
and ``--first-step`` puts its first run at that step of the lineage (to plot later runs when earlier logs are
gone). Curves are smoothed with a running mean (raw in grey).
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
               ("temporal only, same data", "unet_ref_video"))


def plot_run(ax, steps: np.ndarray, losses: np.ndarray, label: str | None = None) -> None:
    ax.plot(steps, losses, color="0.8", linewidth=0.6)
    window = max(1, len(losses) // 30)
    ax.plot(steps[window - 1:], smooth(losses, window), linewidth=1.5, label=label)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/demo")
    parser.add_argument("--out", default="docs/demo_training_curves.png")
    parser.add_argument("--unet-only", action="store_true", help="only the VideoUNet panel")
    parser.add_argument("--first-step", type=int, default=0, help="lineage step at which the first UNet run starts")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gen1.atomic import atomic_path, check_output_path

    runs = Path(args.runs)
    panels = [("VAE (L1 + MSE + 1e-6 KL)", "vae"), ("content encoder (InfoNCE + align)", "content"),
              ("depth (scale-shift-invariant MSE)", "depth"), ("VideoUNet (v-prediction MSE, gen1 train)", "unet")]
    if args.unet_only:
        panels = panels[-1:]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    axes = axes[0]
    for ax, (title, name) in zip(axes, panels):
        if name == "unet":
            offset = args.first_step
            for label, run in UNET_STAGES:
                steps, losses = unet_losses(runs / run)
                if len(losses):
                    plot_run(ax, steps + offset, losses, f"{label}: {run}")
                    offset += int(steps[-1])
            ax.legend(fontsize=7)
        else:
            state_file = runs / name / "checkpoint" / "state.json"
            history = json.loads(state_file.read_text())["history"] if state_file.is_file() else []
            if history:
                plot_run(ax, np.array([row[0] for row in history]), np.array([row[1] for row in history]))
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
