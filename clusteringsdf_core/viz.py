"""Pictures: label maps in colour, depth in false colour, contact sheets of frames.

Colours of ids are a fixed function of the id (a hash into a palette), so the same
id has the same colour in every view and every figure: consistent GT ids look
consistent, view-inconsistent machine ids visibly change colour from view to view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

__all__ = ["label_colours", "colorize_labels", "colorize_depth", "contact_sheet", "save_png",
           "titled"]


def label_colours(ids: np.ndarray) -> np.ndarray:
    """(N,) ids -> (N, 3) uint8 colours; id 0 is black."""
    ids = np.asarray(ids, dtype=np.uint64)
    h = (ids * np.uint64(2654435761) + np.uint64(97)) & np.uint64(0xFFFFFF)
    # Golden-ratio steps around the hue circle keep neighbouring ids far apart.
    hue = np.floor(np.mod(ids.astype(np.float64) * 0.6180339887, 1.0) * 180).astype(np.uint8)
    sat = (150 + (h >> np.uint64(8)) % np.uint64(106)).astype(np.uint8)
    val = (140 + (h >> np.uint64(16)) % np.uint64(116)).astype(np.uint8)
    hsv = np.stack([hue, sat, val], -1).reshape(-1, 1, 3)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(-1, 3)
    rgb[ids == 0] = 0
    return rgb


def colorize_labels(labels: np.ndarray, *, boundaries: bool = True) -> np.ndarray:
    """(H, W) int labels -> (H, W, 3) uint8 RGB, with thin white boundaries between labels."""
    labels = np.asarray(labels)
    uniq, inverse = np.unique(labels, return_inverse=True)
    rgb = label_colours(uniq)[inverse.reshape(labels.shape)]
    if boundaries:
        edge = np.zeros(labels.shape, bool)
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge[1:, :] |= labels[1:, :] != labels[:-1, :]
        rgb[edge] = 255
    return rgb


def colorize_depth(depth_m: np.ndarray, max_m: float | None = None) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8 RGB (turbo colour map), invalid (0) black."""
    depth = np.asarray(depth_m, dtype=np.float32)
    valid = depth > 0
    top = max_m or (float(np.percentile(depth[valid], 99)) if valid.any() else 1.0)
    scaled = np.clip(depth / max(top, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def titled(image: np.ndarray, title: str, *, bar: int = 18) -> np.ndarray:
    """The image with a dark title bar on top."""
    h, w = image.shape[:2]
    out = np.zeros((h + bar, w, 3), np.uint8)
    out[bar:] = image if image.ndim == 3 else image[..., None]
    cv2.putText(out, title, (4, bar - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(rows: Sequence[Sequence[tuple[str, np.ndarray]]], *, pad: int = 4) -> np.ndarray:
    """A grid of titled panels: ``rows[i][j] = (title, RGB image)``; all panels of a
    sheet are resized to the first panel's size."""
    if not rows or not rows[0]:
        raise ValueError("contact_sheet needs at least one panel")
    h, w = rows[0][0][1].shape[:2]
    cols = max(len(r) for r in rows)
    rendered = []
    for row in rows:
        panels = []
        for title, image in row:
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            if image.shape[:2] != (h, w):
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST)
            panels.append(titled(image, title))
        while len(panels) < cols:
            panels.append(np.zeros_like(panels[0]))
        spaced = []
        for p in panels:
            spaced += [p, np.full((p.shape[0], pad, 3), 40, np.uint8)]
        rendered.append(np.concatenate(spaced[:-1], axis=1))
    out = []
    for r in rendered:
        out += [r, np.full((pad, r.shape[1], 3), 40, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def frames_contact_sheet(frames, *, max_rows: int = 4, label_title: str = "segmenter ids") -> np.ndarray:
    """One row per frame: RGB, depth, GT instances, GT semantics, machine instance labels
    (only the panels whose data the frames have)."""
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to show")
    step = max(1, len(frames) // max_rows)
    rows = []
    for frame in frames[::step][:max_rows]:
        row = [(f"#{frame.index} rgb", frame.rgb)]
        if frame.depth_m is not None:
            row.append(("depth", colorize_depth(frame.depth_m)))
        if frame.gt_instance is not None:
            row.append(("GT instance", colorize_labels(frame.gt_instance)))
        if frame.gt_semantic is not None:
            row.append(("GT semantic", colorize_labels(frame.gt_semantic)))
        if frame.instance is not None:
            row.append((label_title, colorize_labels(frame.instance)))
        rows.append(row)
    return contact_sheet(rows)
