"""Evaluation reports: an ordered set of metric values (or skip notes), printed as a table or saved as JSON."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

# metric key -> (label, direction) shown in the table; order = table order
METRICS: dict[str, tuple[str, str]] = {
    "warp_error": ("warp error (Lai et al.)", "lower is better"),
    "warp_error_source": ("warp error of the source (reference)", "lower is better"),
    "seam_ratio": ("seam ratio (warp error at window seams / inside)", "1 = seams invisible, lower is better"),
    "seam_ratio_source": ("seam ratio of the source (reference)", "the clip's own level at those frames"),
    "clip_frame_consistency": ("CLIP frame consistency", "higher is better"),
    "clip_prompt_consistency": ("CLIP prompt consistency", "higher is better"),
    "depth_fidelity": ("depth error (scale/shift-invariant RMSE)", "lower is better"),
    "psnr": ("PSNR vs ground truth [dB]", "higher is better"),
    "ssim": ("SSIM vs ground truth", "higher is better"),
    "style_accuracy": ("style accuracy (closer to GT than to source)", "higher is better"),
    "style_score": ("style score d_src/(d_src+d_gt)", "higher is better"),
}


@dataclass
class Report:
    """Metric values (``None`` = skipped, with a note saying why) plus information about the inputs."""

    info: dict = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=lambda: {key: None for key in METRICS})
    notes: dict[str, str] = field(default_factory=dict)

    def set(self, key: str, value: float) -> None:
        if key not in METRICS:
            raise KeyError(f"unknown metric {key!r}")
        self.metrics[key] = float(value)

    def skip(self, key: str, why: str) -> None:
        if key not in METRICS:
            raise KeyError(f"unknown metric {key!r}")
        self.metrics[key] = None
        self.notes[key] = why

    def to_dict(self) -> dict:
        return {"info": self.info, "metrics": dict(self.metrics), "notes": dict(self.notes)}

    def table(self) -> str:
        """Fixed-width text table: metric, value (or 'skipped'), and the note or direction."""
        rows = [("metric", "value", "")]
        for key, (label, direction) in METRICS.items():
            value = self.metrics.get(key)
            if value is None:
                rows.append((label, "skipped", self.notes.get(key, "")))
            else:
                text = f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e4 else f"{value:.4g}"
                rows.append((label, text, self.notes.get(key, direction)))
        width0 = max(len(r[0]) for r in rows)
        width1 = max(len(r[1]) for r in rows)
        lines = [f"{a:<{width0}}  {b:>{width1}}  {c}".rstrip() for a, b, c in rows]
        lines.insert(1, "-" * max(len(line) for line in lines))
        for key, value in self.info.items():
            if key.startswith("note"):
                lines.append(f"note: {value}")
        return "\n".join(lines)

    def save_json(self, path: str | Path) -> Path:
        """Write the report as JSON, atomically."""
        from gen1.atomic import atomic_path  # lazy: keeps this module's import light (no torch when it loads)

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)
