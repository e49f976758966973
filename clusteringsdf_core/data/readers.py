"""Open any supported scene on disk as a :class:`SceneDataset`, and helpers the readers share.

Supported formats (see :data:`FORMATS`, checked in this order):

============== =================================================================
canonical      ``<dir>/scene.json`` (this project's layout,
               :func:`clusteringsdf_core.data.dataset.load_scene`)
scannet-sens   a ``*.sens`` file, or a folder holding exactly one ``*.sens`` and
               no exported ``color/`` folder (ScanNet's raw scan folder)
panoptic-lifting  ``color/``, ``pose/``, ``intrinsic/`` plus one of ``splits.json``,
               ``m2f_semantics/``, ``rs_semantics/`` (Panoptic Lifting /
               Contrastive Lift preprocessing)
scannet-export ``color/``, ``pose/``, ``intrinsic/`` (ScanNet's ``reader.py`` export)
replica        ``traj_w_c.txt`` and ``rgb/`` (Semantic-NeRF renders of Replica)
============== =================================================================

Every reader keeps the dataset's own world frame (no re-orientation; ScanNet's and
Replica's worlds happen to be z-up already), returns frames lazily through
:class:`FrameSequence`, and estimates ``SceneDataset.bounds`` from the depth maps
of a few evenly spaced frames (:func:`bounds_from_depth`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import cv2
import numpy as np

from clusteringsdf_core.data.classes import ClassTable
from clusteringsdf_core.data.dataset import SceneDataset
from clusteringsdf_core.data.frame import Intrinsics

__all__ = ["DatasetFormat", "FORMATS", "open_dataset", "detect_format", "bounds_from_depth",
           "warp_to_intrinsics", "split_train_test", "read_matrix", "numeric_key",
           "evenly_spaced", "class_lut", "map_class_ids", "resolve_optional_dir", "strided"]


# --------------------------------------------------------------------------- shared helpers


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


def bounds_from_depth(samples: Iterable[tuple[np.ndarray, Intrinsics, np.ndarray]], *,
                      max_depth_m: float = 10.0, pixels_per_frame: int = 4800) -> np.ndarray | None:
    """World AABB ``[[min xyz], [max xyz]]`` of the back-projected depth of some frames.

    ``samples`` yields ``(depth_m, intrinsics, T_world_cam)``. Each depth map is read
    on a regular pixel lattice of about ``pixels_per_frame`` pixels (every pixel for
    small images); depths that are 0, non-finite or beyond ``max_depth_m`` are dropped
    (sensor outliers). Returns None when no valid depth was seen.
    """
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for depth, K, T in samples:
        if depth is None:
            continue
        h, w = depth.shape
        step = max(1, int(np.sqrt(h * w / max(pixels_per_frame, 1))))
        v, u = np.mgrid[0:h:step, 0:w:step]
        z = depth[v, u].astype(np.float64)
        ok = np.isfinite(z) & (z > 0) & (z <= max_depth_m)
        if not ok.any():
            continue
        u, v, z = u[ok] + 0.5, v[ok] + 0.5, z[ok]
        sx, sy = w / K.width, h / K.height
        p_cam = np.stack([(u - K.cx * sx) / (K.fx * sx) * z, (v - K.cy * sy) / (K.fy * sy) * z, z], 1)
        T = np.asarray(T, dtype=np.float64)
        p_world = p_cam @ T[:3, :3].T + T[:3, 3]
        lo, hi = np.minimum(lo, p_world.min(0)), np.maximum(hi, p_world.max(0))
    if not np.all(np.isfinite(lo)):
        return None
    return np.stack([lo, hi])


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


# --------------------------------------------------------------------------- detection


def _is_dir(p: Path, *names: str) -> bool:
    return all((p / n).is_dir() for n in names)


def _sens_files(p: Path) -> list[Path]:
    return sorted(p.glob("*.sens")) if p.is_dir() else []


def _detect_canonical(p: Path) -> bool:
    return p.is_dir() and (p / "scene.json").is_file()


def _detect_sens(p: Path) -> bool:
    if p.is_file():
        return p.suffix == ".sens"
    return len(_sens_files(p)) == 1 and not (p / "color").is_dir()


_PL_MARKERS = ("splits.json", "m2f_semantics", "rs_semantics")


def _detect_panoptic_lifting(p: Path) -> bool:
    return _is_dir(p, "color", "pose", "intrinsic") and any((p / m).exists() for m in _PL_MARKERS)


def _detect_scannet_export(p: Path) -> bool:
    return _is_dir(p, "color", "pose", "intrinsic") and not _detect_panoptic_lifting(p)


def _detect_replica(p: Path) -> bool:
    return p.is_dir() and (p / "traj_w_c.txt").is_file() and (p / "rgb").is_dir()


def _open_canonical(p: Path, labels, options):
    from clusteringsdf_core.data.dataset import load_scene

    if options:
        raise TypeError(f"{p}: canonical scenes take no reader options, got {sorted(options)}")
    if labels is None:
        variants = json.loads((p / "scene.json").read_text()).get("label_variants", [])
        labels = "sim" if "sim" in variants else (variants[0] if variants else None)
    return load_scene(p, labels=labels)


def _open_sens(p: Path, labels, options):
    from clusteringsdf_core.data.scannet import read_sens

    path = p if p.is_file() else _sens_files(p)[0]
    return read_sens(path, machine_instance_dir=labels, **options)


def _open_panoptic_lifting(p: Path, labels, options):
    from clusteringsdf_core.data.panoptic_lifting import read_panoptic_lifting

    if labels is not None:
        options = {**options, "labels": labels}
    return read_panoptic_lifting(p, **options)


def _open_scannet_export(p: Path, labels, options):
    from clusteringsdf_core.data.scannet import read_scannet_export

    return read_scannet_export(p, machine_instance_dir=labels, **options)


def _open_replica(p: Path, labels, options):
    from clusteringsdf_core.data.replica import read_replica

    return read_replica(p, machine_instance_dir=labels, **options)


@dataclass(frozen=True)
class DatasetFormat:
    """One on-disk format :func:`open_dataset` recognises."""

    name: str
    detected_by: str                          # human-readable detection rule
    labels: str                               # what ``open_dataset(labels=...)`` means here
    detect: Callable[[Path], bool]
    open: Callable[[Path, object, dict], SceneDataset]


#: The formats in detection order (first match wins).
FORMATS: tuple[DatasetFormat, ...] = (
    DatasetFormat("canonical", "a folder with scene.json",
                  "label variant under labels/ (default: 'sim' or the first one)",
                  _detect_canonical, _open_canonical),
    DatasetFormat("scannet-sens", "a *.sens file, or a folder with exactly one *.sens and no color/",
                  "folder of machine instance pngs <frame>.png (default: none)",
                  _detect_sens, _open_sens),
    DatasetFormat("panoptic-lifting",
                  "color/, pose/, intrinsic/ and one of splits.json, m2f_semantics/, rs_semantics/",
                  "machine-label prefix: <prefix>_semantics/, <prefix>_instance/, "
                  "<prefix>_probabilities/ (default: 'm2f')",
                  _detect_panoptic_lifting, _open_panoptic_lifting),
    DatasetFormat("scannet-export", "color/, pose/ and intrinsic/ (ScanNet reader export)",
                  "folder of machine instance pngs <frame>.png (default: none)",
                  _detect_scannet_export, _open_scannet_export),
    DatasetFormat("replica", "traj_w_c.txt and rgb/ (Semantic-NeRF Replica renders)",
                  "folder of machine instance pngs <i>.png or *_<i>.png (default: none)",
                  _detect_replica, _open_replica),
)


def detect_format(path: str | Path) -> DatasetFormat:
    """The first of :data:`FORMATS` that matches ``path``; raises if none does."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    for fmt in FORMATS:
        if fmt.detect(p):
            return fmt
    looked_for = "\n".join(f"  - {f.name}: {f.detected_by}" for f in FORMATS)
    raise ValueError(f"{p}: not a recognised scene; looked for:\n{looked_for}")


def open_dataset(path: str | Path, *, labels: str | None = None, **options) -> SceneDataset:
    """Open the scene at ``path`` in whichever supported format it is in.

    ``labels`` selects the machine labels (meaning per format: see ``FORMATS[i].labels``;
    relative folders are resolved against the scene folder by the readers). Other
    keyword options go to the format's reader (e.g. ``stride``, ``image_size``,
    ``test_every``, ``class_map``). Raises FileNotFoundError when ``path`` does not
    exist and ValueError listing the formats looked for when none matches.
    """
    p = Path(path).expanduser()
    fmt = detect_format(p)
    dataset = fmt.open(p, labels, options)
    dataset.meta.setdefault("source_format", fmt.name)
    return dataset


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
