"""In-memory frames: what every data source (datasets, synthetic scenes, ROS) produces.

Conventions (used everywhere in the core):
- ``T_world_cam``: 4x4 float64 camera-to-world transform of the camera *optical*
  frame (x right, y down, z forward; OpenCV / ROS ``*_optical_frame``).
- The world frame is z-up (REP 103), metres.
- ``depth_m``: float32 metres along the optical axis (z), 0 where invalid.
- Label maps are int32; 0 means "no label" (instances) or void (semantics).
  Instance id :data:`UNKNOWN_INSTANCE` (-1) marks pixels whose label is unknown (e.g.
  a segment beyond the model's channel budget): the label losses ignore them, where 0
  would teach the background channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np

__all__ = ["Intrinsics", "Frame", "FrameSequence", "check_pose", "UNKNOWN_INSTANCE"]

#: Instance id of a pixel with an unknown label (ignored by the losses; not background).
UNKNOWN_INSTANCE = -1


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels.

    Pixel centres are at integer coordinates + 0.5 in the continuous image plane
    whose origin is the top-left corner of the top-left pixel (cx = width/2 for a
    centred principal point).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> "Intrinsics":
        K = np.asarray(K, dtype=np.float64)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    @classmethod
    def from_opencv_K(cls, K: np.ndarray, width: int, height: int) -> "Intrinsics":
        """From a K whose principal point uses the OpenCV/ROS convention (pixel centres at
        integers, as in ScanNet, Replica and CameraInfo): cx, cy shift by +0.5."""
        K = np.asarray(K, dtype=np.float64).copy()
        K[0, 2] += 0.5
        K[1, 2] += 0.5
        return cls.from_K(K, width, height)

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> "Intrinsics":
        f = float(0.5 * width / np.tan(np.radians(hfov_deg) / 2.0))
        return cls(f, f, width / 2.0, height / 2.0, int(width), int(height))

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The intrinsics of the same camera with the image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict) -> "Intrinsics":
        return cls(float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]),
                   int(d["width"]), int(d["height"]))


def check_pose(T: np.ndarray, *, atol: float = 1e-3) -> np.ndarray:
    """Return ``T`` as a 4x4 float64 rigid transform, or raise ValueError saying why not."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"pose must be 4x4, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError("pose contains NaN or infinite values")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=atol):
        raise ValueError(f"pose's last row must be [0 0 0 1], got {T[3]}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=atol) or np.linalg.det(R) < 0:
        raise ValueError("pose's rotation is not orthonormal with det +1 (non-rigid pose)")
    return T


@dataclass
class Frame:
    """One view: image, pose, intrinsics, and whatever labels the source has.

    ``instance`` holds the *machine* labels the method trains on: ids that are
    NOT consistent across views. ``gt_instance`` / ``gt_semantic`` hold ground truth
    (consistent ids) where the source has it; they are used for evaluation only.
    """

    index: int
    rgb: np.ndarray                      # (H, W, 3) uint8
    T_world_cam: np.ndarray              # (4, 4) float64, camera optical frame -> world
    intrinsics: Intrinsics
    stamp_s: float = 0.0
    depth_m: np.ndarray | None = None    # (H, W) float32, 0 = invalid
    instance: np.ndarray | None = None   # (H, W) int32, view-local ids, 0 = none, -1 = unknown
    semantic: np.ndarray | None = None   # (H, W) int32 class ids (machine labels), 0 = void
    confidence: np.ndarray | None = None  # (H, W) float32 in [0, 1]
    gt_instance: np.ndarray | None = None  # (H, W) int32, scene-consistent ids, 0 = none/stuff
    gt_semantic: np.ndarray | None = None  # (H, W) int32 class ids, 0 = void
    normal: np.ndarray | None = None     # (H, W, 3) float32 unit normals in the camera frame
    meta: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def validate(self) -> "Frame":
        """Check shapes, dtypes and pose; raise ValueError naming the problem."""
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"frame {self.index}: rgb must be (H, W, 3) uint8, got "
                             f"{self.rgb.shape} {self.rgb.dtype}")
        h, w = self.rgb.shape[:2]
        if (self.intrinsics.width, self.intrinsics.height) != (w, h):
            raise ValueError(f"frame {self.index}: intrinsics are for {self.intrinsics.width}x"
                             f"{self.intrinsics.height}, image is {w}x{h}")
        for name in ("depth_m", "instance", "semantic", "confidence", "gt_instance", "gt_semantic"):
            value = getattr(self, name)
            if value is not None and value.shape[:2] != (h, w):
                raise ValueError(f"frame {self.index}: {name} is {value.shape[1]}x{value.shape[0]}, "
                                 f"rgb is {w}x{h}")
        try:
            self.T_world_cam = check_pose(self.T_world_cam)
        except ValueError as exc:
            raise ValueError(f"frame {self.index}: {exc}") from None
        return self

    def with_labels(self, **labels) -> "Frame":
        """A shallow copy with some label maps replaced."""
        return replace(self, **labels)

    def resized(self, width: int, height: int) -> "Frame":
        """The frame at another resolution: area-averaged RGB, nearest-neighbour labels and depth."""
        import cv2

        if (width, height) == (self.width, self.height):
            return self

        def nearest(a):
            return None if a is None else cv2.resize(a, (width, height), interpolation=cv2.INTER_NEAREST)

        rgb = cv2.resize(self.rgb, (width, height), interpolation=cv2.INTER_AREA)
        normal = None
        if self.normal is not None:
            normal = nearest(self.normal)
            normal = normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-8)
        return replace(self, rgb=rgb, intrinsics=self.intrinsics.scaled(width, height),
                       depth_m=nearest(self.depth_m), instance=nearest(self.instance),
                       semantic=nearest(self.semantic), confidence=nearest(self.confidence),
                       gt_instance=nearest(self.gt_instance), gt_semantic=nearest(self.gt_semantic),
                       normal=normal)


class FrameSequence(Sequence[Frame]):
    """A lazily loaded, indexable sequence of frames (``loader(i)`` builds frame i)."""

    def __init__(self, count: int, loader, *, stamps: Sequence[float] | None = None):
        self._count = int(count)
        self._loader = loader
        self.stamps = list(stamps) if stamps is not None else None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._count))]
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(f"frame {i} out of range (0..{self._count - 1})")
        return self._loader(i)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self._count):
            yield self._loader(i)
