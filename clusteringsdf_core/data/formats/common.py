"""Helpers the format readers share: sorting, text matrices, train / test splits,
resampling images onto another camera's pixel grid, class-id mapping, options."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.data.frame import Intrinsics

__all__ = ["numeric_key", "read_matrix", "split_train_test", "evenly_spaced", "warp_to_intrinsics",
           "class_lut", "map_class_ids", "resolve_optional_dir", "strided"]


def numeric_key(stem: str):
    """Sort key: numeric stems by value (``2`` before ``10``), others after, by name."""
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def read_matrix(path: Path, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    """A whitespace-separated text matrix (ScanNet pose / intrinsic files) as float64.

    Values such as ``-inf`` and ``nan`` are kept (callers decide what is invalid).
    """
    try:
        values = np.array(Path(path).read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: not a text matrix ({exc})") from None
    if values.size != shape[0] * shape[1]:
        raise ValueError(f"{path}: expected {shape[0]}x{shape[1]} numbers, found {values.size}")
    return values.reshape(shape)


def split_train_test(count: int, test_every: int) -> tuple[list[int], list[int]]:
    """Positions ``0..count-1`` split into (train, test): every ``test_every``-th view is
    held out, starting at ``test_every // 2`` (Semantic-NeRF's "in between" test views);
    ``test_every <= 0`` keeps every view for training."""
    if test_every <= 0:
        return list(range(count)), []
    test = [i for i in range(count) if i % test_every == test_every // 2]
    held = set(test)
    return [i for i in range(count) if i not in held], test


def evenly_spaced(count: int, k: int) -> list[int]:
    """At most ``k`` distinct indices spread evenly over ``0..count-1`` (ends included)."""
    if count <= 0 or k <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, count - 1, min(k, count))})


def _affine_to(src: Intrinsics, dst: Intrinsics) -> np.ndarray:
    """2x3 map from destination pixel indices to source pixel indices.

    Both cameras share the optical centre and axes; pixel ``i`` has its centre at
    ``i + 0.5`` in the continuous image plane (see :class:`Intrinsics`).
    """
    ax, ay = src.fx / dst.fx, src.fy / dst.fy
    bx = ax * (0.5 - dst.cx) + src.cx - 0.5
    by = ay * (0.5 - dst.cy) + src.cy - 0.5
    return np.array([[ax, 0.0, bx], [0.0, ay, by]], dtype=np.float64)


def _same(a: Intrinsics, b: Intrinsics) -> bool:
    return (a.width, a.height) == (b.width, b.height) and np.allclose(
        [a.fx, a.fy, a.cx, a.cy], [b.fx, b.fy, b.cx, b.cy], rtol=1e-6, atol=1e-6)


def warp_to_intrinsics(image: np.ndarray, src: Intrinsics, dst: Intrinsics, *,
                       nearest: bool) -> np.ndarray:
    """Resample ``image`` taken with ``src`` onto the pixel grid of ``dst`` (same camera centre).

    ``src`` may describe the camera at another resolution than ``image``; it is
    rescaled to the image first. When ``dst`` is just ``src`` at another size this is
    a plain resize (area-averaged, or nearest for labels/depth); otherwise an affine
    warp (principal point / focal differences, e.g. ScanNet colour -> depth camera),
    with area pre-shrinking for colour. Pixels that fall outside the source are 0.
    ``nearest=True`` for label maps and depth (never blend ids or depth edges).
    """
    h, w = image.shape[:2]
    if (src.width, src.height) != (w, h):
        src = src.scaled(w, h)
    if _same(src, dst):
        return image
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    if _same(src.scaled(dst.width, dst.height), dst):
        return cv2.resize(image, (dst.width, dst.height), interpolation=interp)
    if not nearest:
        # shrink by area first so that the affine warp (bilinear) does not alias
        mw = max(1, int(round(w * dst.fx / src.fx)))
        mh = max(1, int(round(h * dst.fy / src.fy)))
        if mw < w or mh < h:
            image = cv2.resize(image, (mw, mh), interpolation=cv2.INTER_AREA)
            src = src.scaled(mw, mh)
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(image, _affine_to(src, dst), (dst.width, dst.height), flags=flags,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def class_lut(class_map: Mapping[int, int], classes: ClassTable) -> np.ndarray:
    """Lookup table from a sparse id mapping; ids the mapping does not name become 0 (void)."""
    if not class_map:
        raise ValueError("class_map is empty")
    lut = np.zeros(max(int(k) for k in class_map) + 1, dtype=np.int32)
    for k, v in class_map.items():
        if int(k) < 0 or not 0 <= int(v) < len(classes):
            raise ValueError(f"class_map entry {k} -> {v}: target outside the class table "
                             f"(0..{len(classes) - 1}) or negative source")
        lut[int(k)] = int(v)
    return lut


def map_class_ids(ids: np.ndarray, lut: np.ndarray | None, classes: ClassTable, what: str) -> np.ndarray:
    """Class ids through ``lut`` (ids past its end -> void); with no lut, check they fit ``classes``."""
    ids = ids.astype(np.int64)
    if lut is None:
        if ids.size and (ids.min() < 0 or ids.max() >= len(classes)):
            raise ValueError(f"{what}: class id {int(ids.max())} outside the class table "
                             f"({len(classes)} classes); pass class_map")
        return ids.astype(np.int32)
    out = np.zeros(ids.shape, np.int32)
    ok = (ids >= 0) & (ids < len(lut))
    out[ok] = lut[ids[ok]]
    return out


def _check_positive(name: str, value: int) -> None:
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def resolve_optional_dir(root: Path, folder: str | Path | None, what: str) -> Path | None:
    """``folder`` resolved against ``root`` (absolute paths kept); must exist when given."""
    if folder is None:
        return None
    d = Path(folder).expanduser()
    if not d.is_absolute():
        d = root / d
    if not d.is_dir():
        raise FileNotFoundError(f"{what} folder {d} does not exist")
    return d


def strided(items: Sequence, stride: int) -> list:
    _check_positive("stride", stride)
    return list(items)[::int(stride)]
