"""Open any supported scene on disk as a :class:`SceneDataset`: the formats, detected.

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
of a few evenly spaced frames
(:func:`clusteringsdf_core.geometry.bounds.bounds_from_depth`). The readers live in
:mod:`.scannet`, :mod:`.sens`, :mod:`.replica` and :mod:`.panoptic_lifting` (the canonical layout in
:mod:`clusteringsdf_core.data.dataset`); what they share in :mod:`.common`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clusteringsdf_core.data.dataset import SceneDataset

__all__ = ["DatasetFormat", "FORMATS", "detect_format", "open_dataset"]


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
    from clusteringsdf_core.data.formats.sens import read_sens

    path = p if p.is_file() else _sens_files(p)[0]
    return read_sens(path, machine_instance_dir=labels, **options)


def _open_panoptic_lifting(p: Path, labels, options):
    from clusteringsdf_core.data.formats.panoptic_lifting import read_panoptic_lifting

    if labels is not None:
        options = {**options, "labels": labels}
    return read_panoptic_lifting(p, **options)


def _open_scannet_export(p: Path, labels, options):
    from clusteringsdf_core.data.formats.scannet import read_scannet_export

    return read_scannet_export(p, machine_instance_dir=labels, **options)


def _open_replica(p: Path, labels, options):
    from clusteringsdf_core.data.formats.replica import read_replica

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
