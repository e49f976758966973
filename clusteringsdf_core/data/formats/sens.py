"""ScanNet ``.sens`` files read directly (the raw scan: colour JPEGs, zlib-compressed
depth, poses and intrinsics in one file), without exporting them first. Frames are
assembled like the export folders' (:mod:`.scannet`: the depth camera's grid, the
label mapping, stamps from the ``.sens`` timestamps in microseconds)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.data.dataset import SceneDataset
from clusteringsdf_core.data.formats.common import strided, warp_to_intrinsics
from clusteringsdf_core.data.formats.scannet import (Cameras, assemble_dataset, gt_and_machine, labels_setup,
                                                     skipped_warning, valid_pose)
from clusteringsdf_core.data.frame import Frame, Intrinsics

__all__ = ["SensFile", "SensHeader", "SensFrameRecord", "read_sens", "write_sens"]


_COLOR_COMPRESSION = {-1: "unknown", 0: "raw", 1: "png", 2: "jpeg"}
_DEPTH_COMPRESSION = {-1: "unknown", 0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
_FRAME_HEADER = struct.Struct("<16f4Q")   # camera_to_world, ts colour, ts depth, sizes


@dataclass(frozen=True)
class SensHeader:
    """The header of a ScanNet ``.sens`` file (version 4), little-endian."""

    version: int
    sensor_name: str
    intrinsic_color: np.ndarray   # (4, 4)
    extrinsic_color: np.ndarray   # (4, 4)
    intrinsic_depth: np.ndarray   # (4, 4)
    extrinsic_depth: np.ndarray   # (4, 4)
    color_compression: str        # raw | png | jpeg
    depth_compression: str        # raw_ushort | zlib_ushort
    color_width: int
    color_height: int
    depth_width: int
    depth_height: int
    depth_shift: float            # depth png value / depth_shift = metres (1000)
    num_frames: int


@dataclass(frozen=True)
class SensFrameRecord:
    """Where one RGB-D frame sits in the file, and its pose and timestamps."""

    T_world_cam: np.ndarray       # (4, 4) float64 (stored as float32)
    timestamp_color_us: int
    timestamp_depth_us: int
    color_offset: int
    color_size: int
    depth_offset: int
    depth_size: int


class SensFile:
    """A ``.sens`` file indexed in one pass over its frame headers; images read on demand.

    Layout (ScanNet ``SensReader``): uint32 version (4); uint64 name length + name;
    4x4 float32 intrinsic_color, extrinsic_color, intrinsic_depth, extrinsic_depth;
    int32 colour and depth compression; uint32 colour w, h, depth w, h; float32
    depth_shift; uint64 frame count; then per frame 4x4 float32 camera_to_world,
    uint64 colour and depth timestamps (microseconds), uint64 colour and depth byte
    counts, the colour bytes, the depth bytes; then IMU frames (ignored).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such .sens file")
        size = self.path.stat().st_size
        with self.path.open("rb") as f:
            self.header = self._read_header(f, size)
            self.frames = self._index(f, size)

    def _fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: {what}")

    def _read(self, f, n: int, what: str) -> bytes:
        data = f.read(n)
        if len(data) != n:
            raise self._fail(f"truncated in {what} (wanted {n} bytes, got {len(data)})")
        return data

    def _read_header(self, f, size: int) -> SensHeader:
        (version,) = struct.unpack("<I", self._read(f, 4, "header"))
        if version != 4:
            raise self._fail(f"unsupported .sens version {version} (expected 4)")
        (name_len,) = struct.unpack("<Q", self._read(f, 8, "header"))
        if name_len > size:
            raise self._fail(f"corrupt header (sensor name length {name_len})")
        name = self._read(f, name_len, "header").decode("utf-8", errors="replace")
        mats = np.frombuffer(self._read(f, 4 * 64, "header"), dtype="<f4").astype(np.float64)
        mats = mats.reshape(4, 4, 4)
        c_type, d_type = struct.unpack("<ii", self._read(f, 8, "header"))
        cw, ch, dw, dh = struct.unpack("<4I", self._read(f, 16, "header"))
        (shift,) = struct.unpack("<f", self._read(f, 4, "header"))
        (count,) = struct.unpack("<Q", self._read(f, 8, "header"))
        color = _COLOR_COMPRESSION.get(c_type)
        depth = _DEPTH_COMPRESSION.get(d_type)
        if color not in ("raw", "png", "jpeg"):
            raise self._fail(f"unsupported colour compression {c_type} ({color})")
        if depth not in ("raw_ushort", "zlib_ushort"):
            raise self._fail(f"unsupported depth compression {d_type} ({depth})")
        if min(cw, ch, dw, dh) == 0 or not shift > 0:
            raise self._fail(f"corrupt header (sizes {cw}x{ch}, {dw}x{dh}, depth_shift {shift})")
        return SensHeader(version, name, mats[0], mats[1], mats[2], mats[3], color, depth,
                          cw, ch, dw, dh, float(shift), int(count))

    def _index(self, f, size: int) -> list[SensFrameRecord]:
        frames = []
        pos = f.tell()
        for i in range(self.header.num_frames):
            if pos + _FRAME_HEADER.size > size:
                raise self._fail(f"truncated at frame {i} of {self.header.num_frames} (frame header)")
            f.seek(pos)
            values = _FRAME_HEADER.unpack(f.read(_FRAME_HEADER.size))
            T = np.array(values[:16], dtype=np.float64).reshape(4, 4)
            ts_c, ts_d, c_size, d_size = values[16:]
            c_off = pos + _FRAME_HEADER.size
            d_off = c_off + c_size
            pos = d_off + d_size
            if pos > size:
                raise self._fail(f"truncated at frame {i} of {self.header.num_frames} "
                                 f"(needs {c_size} colour + {d_size} depth bytes)")
            frames.append(SensFrameRecord(T, int(ts_c), int(ts_d), c_off, int(c_size), d_off, int(d_size)))
        return frames

    def __len__(self) -> int:
        return len(self.frames)

    def _bytes(self, offset: int, n: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read(n)

    def read_color(self, i: int) -> np.ndarray:
        """Frame ``i``'s colour image, (H, W, 3) uint8 RGB (raw frames are taken to be RGB order)."""
        h = self.header
        r = self.frames[i]
        data = self._bytes(r.color_offset, r.color_size)
        if h.color_compression == "raw":
            if len(data) != h.color_width * h.color_height * 3:
                raise self._fail(f"frame {i}: raw colour has {len(data)} bytes, expected "
                                 f"{h.color_width * h.color_height * 3}")
            return np.frombuffer(data, dtype=np.uint8).reshape(h.color_height, h.color_width, 3).copy()
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise self._fail(f"frame {i}: cannot decode {h.color_compression} colour image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read_depth_raw(self, i: int) -> np.ndarray:
        """Frame ``i``'s depth as stored, (H, W) uint16 (metres = value / depth_shift)."""
        h = self.header
        r = self.frames[i]
        data = self._bytes(r.depth_offset, r.depth_size)
        if h.depth_compression == "zlib_ushort":
            try:
                data = zlib.decompress(data)
            except zlib.error as exc:
                raise self._fail(f"frame {i}: corrupt zlib depth ({exc})") from None
        if len(data) != 2 * h.depth_width * h.depth_height:
            raise self._fail(f"frame {i}: depth has {len(data)} bytes, expected "
                             f"{2 * h.depth_width * h.depth_height}")
        return np.frombuffer(data, dtype="<u2").reshape(h.depth_height, h.depth_width).astype(np.uint16)


def read_sens(path: str | Path, *, stride: int = 1, label_table: str | Path | None = None,
              machine_instance_dir: str | Path | None = None,
              image_size: tuple[int, int] | None = None, test_every: int = 8,
              bounds_frames: int = 16, classes: ClassTable = SCANNET_REDUCED,
              name: str | None = None) -> SceneDataset:
    """Read a ScanNet ``.sens`` file directly (lazily: frames are decoded when indexed).

    Same conventions as :func:`read_scannet_export` (depth-camera grid, label
    mapping, invalid-pose skipping). ``Frame.index`` is the frame's position in the
    file; ``stamp_s`` is the colour timestamp in seconds. GT 2D labels are read from
    ``label-filt/`` and ``instance-filt/`` next to the file when they exist (the
    unzipped ``*_2d-label-filt.zip`` / ``*_2d-instance-filt.zip``).
    """
    sens = SensFile(path)
    h = sens.header
    root = sens.path.parent
    cams = Cameras.make(
        Intrinsics.from_opencv_K(h.intrinsic_color[:3, :3], h.color_width, h.color_height),
        Intrinsics.from_opencv_K(h.intrinsic_depth[:3, :3], h.depth_width, h.depth_height),
        image_size)
    label_dir = root / "label-filt" if (root / "label-filt").is_dir() else None
    instance_dir = root / "instance-filt" if (root / "instance-filt").is_dir() else None
    labels, label_meta = labels_setup(root, label_table, machine_instance_dir, classes,
                                       label_dir, instance_dir)
    kept, poses, skipped = [], [], []
    for i in strided(range(len(sens)), stride):
        T = valid_pose(sens.frames[i].T_world_cam)
        if T is None:
            skipped.append(i)
        else:
            kept.append(i)
            poses.append(T)
    skipped_warning(sens.path, skipped)
    if not kept:
        raise ValueError(f"{sens.path}: no frame with a valid pose")

    def depth_of(i: int) -> np.ndarray:
        d = warp_to_intrinsics(sens.read_depth_raw(i), cams.depth, cams.target, nearest=True)
        return d.astype(np.float32) / np.float32(h.depth_shift)

    def load(k: int) -> Frame:
        i = kept[k]
        rgb = warp_to_intrinsics(sens.read_color(i), cams.color, cams.target, nearest=False)
        gt_sem, gt_inst, inst = gt_and_machine(str(i), labels, cams)
        r = sens.frames[i]
        return Frame(index=i, rgb=rgb, T_world_cam=poses[k].copy(), intrinsics=cams.target,
                     stamp_s=stamps[k], depth_m=depth_of(i), instance=inst, gt_semantic=gt_sem,
                     gt_instance=gt_inst,
                     meta={"source": f"{sens.path}#{i}", "timestamp_depth_s": r.timestamp_depth_us * 1e-6}
                     ).validate()

    stamps = [sens.frames[i].timestamp_color_us * 1e-6 for i in kept]
    meta = {"format": "scannet-sens", "sensor_name": h.sensor_name, "skipped_invalid_pose": skipped,
            "image_grid": "depth camera", **label_meta}
    return assemble_dataset(name or sens.path.stem, root, kept, load, stamps,
                    lambda k: (depth_of(kept[k]), cams.target, poses[k]),
                    test_every=test_every, bounds_frames=bounds_frames, classes=classes, meta=meta)


def write_sens(path: str | Path, frames, *, sensor_name: str = "clusteringsdf", depth_shift: float = 1000.0,
               jpeg_quality: int = 95) -> Path:
    """Write RGB-D ``frames`` (rgb, depth, pose, intrinsics; one size and camera) as a
    ScanNet ``.sens`` file, version 4: JPEG colour, zlib depth in units of
    1 / ``depth_shift`` m (0 = no depth), the colour and depth cameras the same, stamps
    from ``stamp_s``. Labels are not part of the format. :func:`read_sens` reads it back."""
    frames = list(frames)
    if not frames:
        raise ValueError("write_sens: no frames")
    first = frames[0].intrinsics
    K = np.eye(4)
    # the file's K is in the OpenCV convention (pixel centres at integers)
    K[:3, :3] = [[first.fx, 0.0, first.cx - 0.5], [0.0, first.fy, first.cy - 0.5], [0.0, 0.0, 1.0]]
    name = sensor_name.encode()
    out = bytearray(struct.pack("<I", 4) + struct.pack("<Q", len(name)) + name)
    for m in (K, np.eye(4), K, np.eye(4)):        # colour intrinsics/extrinsics, depth the same
        out += np.asarray(m, "<f4").tobytes()
    out += struct.pack("<ii", 2, 1)               # jpeg, zlib_ushort
    out += struct.pack("<4I", first.width, first.height, first.width, first.height)
    out += struct.pack("<f", depth_shift) + struct.pack("<Q", len(frames))
    for f in frames:
        if f.intrinsics != first:
            raise ValueError(f"write_sens: frame {f.index} has other intrinsics than frame {frames[0].index}")
        if f.depth_m is None:
            raise ValueError(f"write_sens: frame {f.index} has no depth")
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise ValueError(f"write_sens: frame {f.index}: JPEG encoding failed")
        depth = np.nan_to_num(np.asarray(f.depth_m, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        depth = np.clip(np.round(depth * depth_shift), 0, 65535).astype("<u2")
        color, depth_bytes = jpg.tobytes(), zlib.compress(depth.tobytes())
        stamp_us = int(round(float(f.stamp_s) * 1e6))
        out += np.asarray(f.T_world_cam, "<f4").tobytes()
        out += struct.pack("<QQQQ", stamp_us, stamp_us, len(color), len(depth_bytes)) + color + depth_bytes
    out += struct.pack("<Q", 0)                   # no IMU frames
    path = Path(path)
    path.write_bytes(bytes(out))
    return path
