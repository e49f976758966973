"""Image and camera messages <-> numpy: where ROS messages meet the core's arrays
(poses and stamps: :mod:`clusteringsdf_ros.transforms`).

Images (``sensor_msgs/Image``)
    Decoders honour ``step`` (row padding) and ``is_bigendian`` and return
    contiguous, writable arrays in the host's byte order; builders write unpadded
    rows in the host's byte order (or big-endian on request). Supported encodings:
    ``rgb8 bgr8 rgba8 bgra8 mono8 8UC1 mono16 16UC1 32FC1 32SC1``. cv_bridge is used
    when it is importable; otherwise (as on the PyPI ROS wheels) equivalent numpy
    code runs. The decoders are duck-typed: they read ``height``, ``width``,
    ``encoding``, ``step``, ``is_bigendian`` and ``data`` only, so they also decode
    the messages that ``rosbags`` deserialises.

Camera intrinsics (``sensor_msgs/CameraInfo`` -> :class:`Intrinsics`)
    ROS (OpenCV) puts pixel centres at integer coordinates; the core puts them at
    integer + 0.5 (:class:`clusteringsdf_core.data.frame.Intrinsics`). Conversions
    in both directions shift ``cx``/``cy`` by :data:`PIXEL_CENTRE_OFFSET`.

Message classes are imported inside the builders, so the decoders work (e.g. on
``rosbags`` messages) where no ROS message package is installed.
"""

from __future__ import annotations

import array
import sys
from typing import Any

import numpy as np

from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_ros.transforms import header as make_header

__all__ = [
    "PIXEL_CENTRE_OFFSET", "IMAGE_ENCODINGS",
    # images
    "image_to_numpy", "numpy_to_image", "image_to_rgb", "image_to_depth_m", "image_to_labels",
    "image_to_confidence", "rgb_to_image", "depth_to_image", "labels_to_image",
    "confidence_to_image",
    # camera info
    "camera_info_to_intrinsics", "intrinsics_to_camera_info",
]

#: Added to a ROS/OpenCV principal point to get the core's (pixel centres at i + 0.5).
PIXEL_CENTRE_OFFSET = 0.5

#: encoding -> (numpy dtype, channels)
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "32SC1": (np.dtype(np.int32), 1),
}

_HOST_BIGENDIAN = sys.byteorder == "big"
_INT32_MAX = 2**31 - 1

# --------------------------------------------------------------------------- optional packages

_MISSING = object()
_cv_bridge_instance: Any = _MISSING


def _cv_bridge():
    """A cv_bridge.CvBridge where cv_bridge is importable, else None (cached)."""
    global _cv_bridge_instance
    if _cv_bridge_instance is _MISSING:
        try:
            from cv_bridge import CvBridge
            _cv_bridge_instance = CvBridge()
        except ImportError:
            _cv_bridge_instance = None
    return _cv_bridge_instance


# --------------------------------------------------------------------------- images: decoding


def _encoding_of(msg) -> tuple[str, np.dtype, int]:
    encoding = str(msg.encoding)
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: "
                         f"{', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    return encoding, dtype, channels


def _raw_bytes(data) -> memoryview:
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data).view(np.uint8).reshape(-1))
    return memoryview(data).cast("B")


def _check_layout(msg, dtype: np.dtype, channels: int) -> tuple[int, int, int, int]:
    """(height, width, step, row_bytes) of a valid image, or ValueError naming the problem."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(f"image step {step} is smaller than one row of {width} {msg.encoding} "
                         f"pixels ({row_bytes} bytes)")
    size = len(_raw_bytes(msg.data))
    if size != step * height:
        raise ValueError(f"image data has {size} bytes, expected step x height = "
                         f"{step} x {height} = {step * height}")
    return height, width, step, row_bytes


def _decode_numpy(msg, dtype: np.dtype, channels: int) -> np.ndarray:
    height, width, step, row_bytes = _check_layout(msg, dtype, channels)
    rows = np.frombuffer(_raw_bytes(msg.data), dtype=np.uint8).reshape(height, step)
    pixels = np.array(rows[:, :row_bytes])  # a copy without the row padding
    stored = dtype.newbyteorder(">" if bool(msg.is_bigendian) else "<")
    image = pixels.view(stored).astype(dtype, copy=False)  # byte-swaps only when needed
    return image.reshape((height, width) if channels == 1 else (height, width, channels))


def image_to_numpy(msg) -> np.ndarray:
    """The pixels of a ``sensor_msgs/Image`` as (H, W) or (H, W, C), native byte order.

    Raises ValueError for an unsupported encoding, a step shorter than a row, or a
    data size different from step x height.
    """
    encoding, dtype, channels = _encoding_of(msg)
    height, width, step, _ = _check_layout(msg, dtype, channels)
    bridge = _cv_bridge()
    if bridge is not None and step % (dtype.itemsize * channels) == 0:
        image = np.array(bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough"), dtype=dtype)
        expected = (height, width) if channels == 1 else (height, width, channels)
        if image.shape == expected:
            return image
    return _decode_numpy(msg, dtype, channels)


def image_to_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from rgb8, bgr8, rgba8, bgra8 or mono8/8UC1 (grey replicated)."""
    encoding = str(msg.encoding)
    if encoding not in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1"):
        raise ValueError(f"image encoding {encoding!r} is not a colour image "
                         "(expected rgb8, bgr8, rgba8, bgra8 or mono8)")
    image = image_to_numpy(msg)
    if encoding == "rgb8":
        return image
    if encoding == "bgr8":
        return np.ascontiguousarray(image[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(image[:, :, :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(image[:, :, 2::-1])
    return np.repeat(image[:, :, None], 3, axis=2)


def image_to_depth_m(msg, *, depth_unit_m: float = 0.001) -> np.ndarray:
    """(H, W) float32 depth in metres, 0 where invalid.

    16UC1/mono16 are integer units of ``depth_unit_m`` (millimetres by default);
    32FC1 is metres. NaN, infinite and negative depths become 0.
    """
    encoding = str(msg.encoding)
    if encoding in ("16UC1", "mono16"):
        return (image_to_numpy(msg).astype(np.float32) * np.float32(depth_unit_m))
    if encoding == "32FC1":
        depth = image_to_numpy(msg)
        depth[~np.isfinite(depth) | (depth < 0)] = 0.0
        return depth
    raise ValueError(f"image encoding {encoding!r} is not a depth image (expected 16UC1 "
                     "millimetres or 32FC1 metres)")


def image_to_labels(msg) -> np.ndarray:
    """(H, W) int32 label ids (instance or class ids) from 16UC1/mono16, 32SC1 or mono8/8UC1."""
    encoding = str(msg.encoding)
    if encoding not in ("16UC1", "mono16", "32SC1", "mono8", "8UC1"):
        raise ValueError(f"image encoding {encoding!r} is not a label image "
                         "(expected 16UC1, 32SC1 or mono8)")
    return image_to_numpy(msg).astype(np.int32, copy=False)


def image_to_confidence(msg) -> np.ndarray:
    """(H, W) float32 confidence in [0, 1].

    32FC1 as is (NaN -> 0, clipped); 16UC1 is confidence x 65535 (as the scene
    folders store it); mono8 is confidence x 255.
    """
    encoding = str(msg.encoding)
    if encoding == "32FC1":
        conf = image_to_numpy(msg)
        conf[~np.isfinite(conf)] = 0.0
        return np.clip(conf, 0.0, 1.0, out=conf)
    if encoding in ("16UC1", "mono16"):
        return image_to_numpy(msg).astype(np.float32) / np.float32(65535.0)
    if encoding in ("mono8", "8UC1"):
        return image_to_numpy(msg).astype(np.float32) / np.float32(255.0)
    raise ValueError(f"image encoding {encoding!r} is not a confidence image "
                     "(expected 32FC1, 16UC1 or mono8)")


# --------------------------------------------------------------------------- images: building


def numpy_to_image(image: np.ndarray, encoding: str, *, stamp_ns: int = 0, frame_id: str = "",
                   bigendian: bool | None = None):
    """A ``sensor_msgs/Image`` holding ``image`` (rows unpadded).

    ``image`` must already have the encoding's dtype and channel count.
    ``bigendian`` = None writes the host's byte order.
    """
    from sensor_msgs.msg import Image

    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: "
                         f"{', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    image = np.asarray(image)
    expected_ndim = 2 if channels == 1 else 3
    if image.ndim != expected_ndim or (channels > 1 and image.shape[2] != channels):
        shape = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ValueError(f"{encoding} needs an array of shape {shape}, got {image.shape}")
    if image.dtype != dtype:
        raise ValueError(f"{encoding} needs {dtype} pixels, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has no pixels ({image.shape[1]}x{image.shape[0]})")
    bigendian = _HOST_BIGENDIAN if bigendian is None else bool(bigendian)
    header = make_header(stamp_ns, frame_id)
    bridge = _cv_bridge()
    if bridge is not None and bigendian == _HOST_BIGENDIAN:
        msg = bridge.cv2_to_imgmsg(np.ascontiguousarray(image), encoding=encoding)
        msg.header = header
        return msg
    pixels = np.ascontiguousarray(image, dtype=dtype.newbyteorder(">" if bigendian else "<"))
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian)
    msg.step = msg.width * channels * dtype.itemsize
    data = array.array("B")
    data.frombytes(pixels.tobytes())
    msg.data = data
    return msg


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8", *, stamp_ns: int = 0,
                 frame_id: str = ""):
    """An rgb8/bgr8/rgba8/bgra8 image from (H, W, 3) uint8 RGB (alpha = 255)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[:, :, ::-1]
    elif encoding in ("rgba8", "bgra8"):
        colour = rgb if encoding == "rgba8" else rgb[:, :, ::-1]
        pixels = np.concatenate([colour, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    else:
        raise ValueError(f"cannot write RGB as {encoding!r} (expected rgb8, bgr8, rgba8 or bgra8)")
    return numpy_to_image(np.ascontiguousarray(pixels), encoding, stamp_ns=stamp_ns,
                          frame_id=frame_id)


def depth_to_image(depth_m: np.ndarray, encoding: str = "16UC1", *, stamp_ns: int = 0,
                   frame_id: str = "", bigendian: bool | None = None):
    """A depth image from (H, W) metres (0/NaN/inf/negative = invalid, written as 0).

    16UC1: rounded millimetres (depths beyond 65.535 m become 0, invalid); 32FC1: metres.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    if encoding == "16UC1":
        mm = np.where(valid, np.round(np.where(valid, depth, 0.0) * 1000.0), 0.0)
        mm[mm > 65535] = 0
        pixels = mm.astype(np.uint16)
    elif encoding == "32FC1":
        pixels = np.where(valid, depth, np.float32(0.0)).astype(np.float32)
    else:
        raise ValueError(f"cannot write depth as {encoding!r} (expected 16UC1 or 32FC1)")
    return numpy_to_image(pixels, encoding, stamp_ns=stamp_ns, frame_id=frame_id,
                          bigendian=bigendian)


def labels_to_image(labels: np.ndarray, encoding: str = "16UC1", *, stamp_ns: int = 0,
                    frame_id: str = "", bigendian: bool | None = None):
    """A label image (instance or class ids) from an (H, W) integer array."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an (H, W) integer array, got {labels.shape} "
                         f"{labels.dtype}")
    lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if encoding == "16UC1":
        if lo < 0 or hi > 65535:
            raise ValueError(f"label ids {lo}..{hi} do not fit 16UC1 (0..65535); use 32SC1")
        pixels = labels.astype(np.uint16)
    elif encoding == "32SC1":
        if lo < -2**31 or hi > _INT32_MAX:
            raise ValueError(f"label ids {lo}..{hi} do not fit 32SC1")
        pixels = labels.astype(np.int32)
    else:
        raise ValueError(f"cannot write labels as {encoding!r} (expected 16UC1 or 32SC1)")
    return numpy_to_image(pixels, encoding, stamp_ns=stamp_ns, frame_id=frame_id,
                          bigendian=bigendian)


def confidence_to_image(confidence: np.ndarray, encoding: str = "32FC1", *, stamp_ns: int = 0,
                        frame_id: str = "", bigendian: bool | None = None):
    """A 32FC1 confidence image (values clipped to [0, 1], NaN -> 0)."""
    if encoding != "32FC1":
        raise ValueError(f"cannot write confidence as {encoding!r} (expected 32FC1)")
    conf = np.asarray(confidence, dtype=np.float32)
    if conf.ndim != 2:
        raise ValueError(f"confidence must be (H, W), got {conf.shape}")
    conf = np.clip(np.nan_to_num(conf, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return numpy_to_image(conf.astype(np.float32), encoding, stamp_ns=stamp_ns,
                          frame_id=frame_id, bigendian=bigendian)


# --------------------------------------------------------------------------- camera info

_KNOWN_DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


def camera_info_to_intrinsics(msg, *, rectified: bool = False,
                              ignore_distortion: bool = False) -> Intrinsics:
    """Pinhole :class:`Intrinsics` of the image that ``msg`` describes.

    - ``rectified=False`` (a raw image, ``image_raw``): ``K``, which must describe an
      undistorted image: non-zero distortion coefficients are refused unless
      ``ignore_distortion`` (small-distortion cameras). ``K`` all zero falls back to
      ``P``.
    - ``rectified=True`` (``image_rect``): the left 3x3 block of ``P``; the
      distortion coefficients describe the raw image and do not apply.
    - Binning (``binning_x/y`` > 1) and the ROI (a sub-window given in full-
      resolution pixels) are applied: the image is ``roi.width / binning_x`` x
      ``roi.height / binning_y`` when the ROI is set, else ``width / binning_x`` x
      ``height / binning_y``; the principal point moves with the ROI offset.
    - ``cx, cy`` are shifted by :data:`PIXEL_CENTRE_OFFSET` into the core's
      convention.
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    if not np.all(np.isfinite(K)) or not np.all(np.isfinite(P)):
        raise ValueError("CameraInfo K or P contains NaN or infinite values")
    model = str(msg.distortion_model)
    D = np.asarray(msg.d, dtype=np.float64)
    if rectified:
        source, M = "P", P[:, :3]
    else:
        distorted = D.size > 0 and np.any(D != 0.0)
        if distorted and not ignore_distortion:
            known = ("" if model in _KNOWN_DISTORTION_MODELS
                     else f" (and {model!r} is not a model this package knows)")
            raise ValueError(
                f"CameraInfo has non-zero {model or 'unnamed'} distortion coefficients{known}: "
                "the image must be rectified (use image_rect with rectified=True), or allow "
                "ignoring the distortion (ignore_distortion)")
        source, M = ("K", K) if np.any(K != 0.0) else ("P", P[:, :3])
    fx, fy, cx, cy = M[0, 0], M[1, 1], M[0, 2], M[1, 2]
    if not (fx > 0 and fy > 0):
        raise ValueError(f"CameraInfo {source} has no positive focal lengths (fx={fx}, fy={fy}): "
                         "the camera is not calibrated")
    bx = int(msg.binning_x) if int(msg.binning_x) > 1 else 1
    by = int(msg.binning_y) if int(msg.binning_y) > 1 else 1
    roi = msg.roi
    full_w, full_h = int(msg.width), int(msg.height)
    if int(roi.width) > 0 and int(roi.height) > 0:
        off_x, off_y, w, h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
        if full_w > 0 and full_h > 0 and (off_x + w > full_w or off_y + h > full_h):
            raise ValueError(f"CameraInfo ROI {w}x{h}+{off_x}+{off_y} lies outside the "
                             f"{full_w}x{full_h} image")
    else:
        off_x, off_y, w, h = 0, 0, full_w, full_h
    if w <= 0 or h <= 0:
        raise ValueError(f"CameraInfo has no image size ({w}x{h})")
    # In the core's edge-origin plane, a ROI shifts and binning scales coordinates.
    return Intrinsics(
        fx=float(fx / bx), fy=float(fy / by),
        cx=float((cx + PIXEL_CENTRE_OFFSET - off_x) / bx),
        cy=float((cy + PIXEL_CENTRE_OFFSET - off_y) / by),
        width=w // bx, height=h // by)


def intrinsics_to_camera_info(intrinsics: Intrinsics, *, stamp_ns: int = 0, frame_id: str = ""):
    """A ``sensor_msgs/CameraInfo`` of an undistorted pinhole camera (plumb_bob, D = 0)."""
    from sensor_msgs.msg import CameraInfo

    K = intrinsics
    cx, cy = K.cx - PIXEL_CENTRE_OFFSET, K.cy - PIXEL_CENTRE_OFFSET
    msg = CameraInfo()
    msg.header = make_header(stamp_ns, frame_id)
    msg.width, msg.height = int(K.width), int(K.height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [float(K.fx), 0.0, float(cx), 0.0, float(K.fy), float(cy), 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(K.fx), 0.0, float(cx), 0.0, 0.0, float(K.fy), float(cy), 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg
