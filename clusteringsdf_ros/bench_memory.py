"""Resident memory of a running mapping node over a benchmark window (the soak of
:mod:`~clusteringsdf_ros.bench_callbacks`): samples, their summary and a picture."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["rss_mb", "sample_memory", "memory_summary", "plot_memory"]


def rss_mb() -> float:
    """Resident set size of this process, MiB (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def sample_memory(node, t0: float, period_s: float, done: threading.Event,
                  out: list[dict[str, float]]) -> None:
    """Append a sample of ``node`` every ``period_s`` until ``done`` is set (``t_s`` from
    ``t0``, monotonic): resident MiB, key frames held, iteration."""
    while True:
        stats = node.engine.stats()
        out.append({"t_s": round(time.monotonic() - t0, 2), "rss_mb": round(rss_mb(), 1),
                    "key_frames": stats["views"], "iteration": stats["iteration"]})
        if done.wait(period_s):
            return


def memory_summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    """Start, peak and end resident memory of the samples, and how much the peak of the
    second half exceeds the first half's (MiB; ``None`` with fewer than 4 samples)."""
    if not samples:
        return {"samples": []}
    rss = [s["rss_mb"] for s in samples]
    half = len(rss) // 2
    growth = round(max(rss[half:]) - max(rss[:half]), 1) if len(rss) >= 4 else None
    return {"rss_mb_start": rss[0], "rss_mb_peak": max(rss), "rss_mb_end": rss[-1],
            "second_half_peak_growth_mb": growth,
            "key_frames_end": samples[-1]["key_frames"], "samples": samples}


def plot_memory(summary: dict[str, Any], path: Path, *, width: int = 720, height: int = 360) -> Path:
    """The resident memory (and key frames held) over the window as a PNG."""
    import cv2

    from clusteringsdf_core.viz import save_png

    samples = summary["samples"]
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 30, 40
    t = np.array([s["t_s"] for s in samples], float)
    rss = np.array([s["rss_mb"] for s in samples], float)
    views = np.array([s["key_frames"] for s in samples], float)
    t_max = max(float(t.max()), 1.0)
    lo, hi = 0.0, max(float(rss.max()) * 1.1, 1.0)

    def xy(tv, v, vmax):
        return np.stack([left + tv / t_max * (width - left - right),
                         height - bottom - v / vmax * (height - top - bottom)], 1).astype(np.int32)

    cv2.rectangle(img, (left, top), (width - right, height - bottom), (200, 200, 200), 1)
    for frac in (0.0, 0.5, 1.0):
        y = int(height - bottom - frac * (height - top - bottom))
        cv2.putText(img, f"{lo + frac * (hi - lo):.0f}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        x = int(left + frac * (width - left - right))
        cv2.putText(img, f"{frac * t_max:.0f} s", (x - 15, height - bottom + 16), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 0, 0), 1)
    if len(samples) > 1:
        cv2.polylines(img, [xy(t, views, max(float(views.max()), 1.0))], False, (120, 170, 230), 1, cv2.LINE_AA)
        cv2.polylines(img, [xy(t, rss, hi)], False, (200, 40, 40), 2, cv2.LINE_AA)
    cv2.putText(img, f"resident memory, MiB (red; peak {rss.max():.0f})   key frames (blue; "
                f"{views.max():.0f} max = top of the plot)", (left, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1)
    return save_png(path, img)
