"""Messages <-> numpy: images (all encodings, padded rows, big-endian) and CameraInfo."""

import sys

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from clusteringsdf_core.data.frame import Intrinsics
from clusteringsdf_ros import conversions as conv

RNG = np.random.default_rng(0)
H, W = 5, 7


@pytest.fixture
def numpy_only(monkeypatch):
    """Force the numpy code path (what runs where cv_bridge is absent)."""
    monkeypatch.setattr(conv, "_cv_bridge_instance", None)


def _raw_message(pixels: np.ndarray, encoding: str, *, pad: int = 0,
                 bigendian: bool = False) -> Image:
    """An Image built by hand: rows padded with ``pad`` garbage bytes, given byte order."""
    dtype = pixels.dtype.newbyteorder(">" if bigendian else "<")
    rows = np.ascontiguousarray(pixels.astype(dtype)).reshape(pixels.shape[0], -1).view(np.uint8)
    rows = rows.reshape(pixels.shape[0], -1)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                is_bigendian=int(bigendian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


SAMPLES = {
    "rgb8": RNG.integers(0, 256, (H, W, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (H, W, 3), dtype=np.uint8),
    "rgba8": RNG.integers(0, 256, (H, W, 4), dtype=np.uint8),
    "bgra8": RNG.integers(0, 256, (H, W, 4), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (H, W), dtype=np.uint8),
    "8UC1": RNG.integers(0, 256, (H, W), dtype=np.uint8),
    "mono16": RNG.integers(0, 65536, (H, W), dtype=np.uint16),
    "16UC1": RNG.integers(0, 65536, (H, W), dtype=np.uint16),
    "32FC1": RNG.normal(size=(H, W)).astype(np.float32),
    "32SC1": RNG.integers(-2**31, 2**31 - 1, (H, W), dtype=np.int32),
}


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("encoding", list(SAMPLES))
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_image_decodes_every_encoding_with_padding_and_byte_order(numpy_only, encoding, pad,
                                                                  bigendian):
    pixels = SAMPLES[encoding]
    msg = _raw_message(pixels, encoding, pad=pad, bigendian=bigendian)
    out = conv.image_to_numpy(msg)
    assert out.dtype == pixels.dtype and out.dtype.isnative
    assert out.flags.writeable and out.flags.c_contiguous
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("encoding", list(SAMPLES))
@pytest.mark.parametrize("bigendian", [False, True])
def test_image_round_trip_through_builder(numpy_only, encoding, bigendian):
    pixels = SAMPLES[encoding]
    msg = conv.numpy_to_image(pixels, encoding, stamp_ns=1_500_000_001, frame_id="cam",
                              bigendian=bigendian)
    assert msg.is_bigendian == int(bigendian)
    assert msg.step == W * pixels.itemsize * (1 if pixels.ndim == 2 else pixels.shape[2])
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1, 500_000_001)
    assert msg.header.frame_id == "cam"
    np.testing.assert_array_equal(conv.image_to_numpy(msg), pixels)


def test_big_endian_bytes_are_really_swapped(numpy_only):
    msg = conv.numpy_to_image(np.array([[1, 258]], np.uint16), "16UC1", bigendian=True)
    assert bytes(msg.data) == b"\x00\x01\x01\x02"
    little = conv.numpy_to_image(np.array([[1, 258]], np.uint16), "16UC1", bigendian=False)
    assert bytes(little.data) == b"\x01\x00\x02\x01"


def test_image_decoding_does_not_alias_the_message(numpy_only):
    msg = conv.numpy_to_image(SAMPLES["mono8"], "mono8")
    out = conv.image_to_numpy(msg)
    out[:] = 0
    np.testing.assert_array_equal(conv.image_to_numpy(msg), SAMPLES["mono8"])


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_rgb_helpers_always_give_rgb(numpy_only, encoding):
    rgb = SAMPLES["rgb8"]
    msg = conv.rgb_to_image(rgb, encoding)
    assert msg.encoding == encoding
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)
    if encoding == "bgr8":
        np.testing.assert_array_equal(conv.image_to_numpy(msg)[..., 0], rgb[..., 2])
    if encoding.endswith("a8"):
        assert np.all(conv.image_to_numpy(msg)[..., 3] == 255)


def test_mono8_gives_grey_rgb(numpy_only):
    grey = SAMPLES["mono8"]
    rgb = conv.image_to_rgb(conv.numpy_to_image(grey, "mono8"))
    assert rgb.shape == (H, W, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)


def test_depth_16uc1_millimetres_and_32fc1_metres(numpy_only):
    depth = np.array([[0.0, 1.2344, np.nan], [np.inf, -1.0, 65.6]], np.float32)
    mm = conv.depth_to_image(depth, "16UC1")
    assert mm.encoding == "16UC1"
    np.testing.assert_array_equal(conv.image_to_numpy(mm), [[0, 1234, 0], [0, 0, 0]])
    back = conv.image_to_depth_m(mm)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, [[0, 1.234, 0], [0, 0, 0]], atol=1e-6)
    metres = conv.depth_to_image(depth, "32FC1")
    np.testing.assert_array_equal(conv.image_to_depth_m(metres),
                                  np.array([[0, 1.2344, 0], [0, 0, 65.6]], np.float32))


def test_depth_decoder_cleans_nan_inf_and_negative_32fc1(numpy_only):
    raw = np.array([[np.nan, np.inf, -np.inf, -0.5, 2.5]], np.float32)
    msg = conv.numpy_to_image(raw, "32FC1", bigendian=True)
    np.testing.assert_array_equal(conv.image_to_depth_m(msg), [[0, 0, 0, 0, 2.5]])


def test_labels_and_confidence_round_trip(numpy_only):
    labels = RNG.integers(0, 300, (H, W)).astype(np.int32)
    for encoding in ("16UC1", "32SC1"):
        out = conv.image_to_labels(conv.labels_to_image(labels, encoding))
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, labels)
    small = conv.numpy_to_image((labels % 200).astype(np.uint8), "mono8")
    np.testing.assert_array_equal(conv.image_to_labels(small), labels % 200)
    with pytest.raises(ValueError, match="do not fit 16UC1"):
        conv.labels_to_image(np.full((2, 2), 70000), "16UC1")
    with pytest.raises(ValueError, match="do not fit 16UC1"):
        conv.labels_to_image(np.full((2, 2), -1), "16UC1")

    conf = np.array([[0.0, 0.25, 1.0], [np.nan, 1.5, -0.2]], np.float32)
    out = conv.image_to_confidence(conv.confidence_to_image(conf))
    np.testing.assert_array_equal(out, [[0.0, 0.25, 1.0], [0.0, 1.0, 0.0]])
    as16 = conv.numpy_to_image(np.array([[0, 65535, 32768]], np.uint16), "16UC1")
    np.testing.assert_allclose(conv.image_to_confidence(as16), [[0.0, 1.0, 32768 / 65535]])


def test_helpers_refuse_wrong_kind_of_image(numpy_only):
    with pytest.raises(ValueError, match="not a colour image"):
        conv.image_to_rgb(conv.numpy_to_image(SAMPLES["16UC1"], "16UC1"))
    with pytest.raises(ValueError, match="not a depth image"):
        conv.image_to_depth_m(conv.rgb_to_image(SAMPLES["rgb8"]))
    with pytest.raises(ValueError, match="not a label image"):
        conv.image_to_labels(conv.numpy_to_image(SAMPLES["32FC1"], "32FC1"))
    with pytest.raises(ValueError, match="not a confidence image"):
        conv.image_to_confidence(conv.rgb_to_image(SAMPLES["rgb8"]))
    with pytest.raises(ValueError, match="cannot write depth"):
        conv.depth_to_image(np.zeros((2, 2)), "mono8")
    with pytest.raises(ValueError, match="cannot write RGB"):
        conv.rgb_to_image(SAMPLES["rgb8"], "mono8")


def test_unsupported_encodings_and_bad_layouts_are_refused(numpy_only):
    msg = _raw_message(SAMPLES["rgb8"], "yuv422")
    with pytest.raises(ValueError, match="unsupported image encoding 'yuv422'"):
        conv.image_to_numpy(msg)
    short_step = _raw_message(SAMPLES["rgb8"], "rgb8")
    short_step.step = W * 3 - 1
    with pytest.raises(ValueError, match="step .* smaller than one row"):
        conv.image_to_numpy(short_step)
    truncated = _raw_message(SAMPLES["16UC1"], "16UC1")
    truncated.data = bytes(truncated.data)[:-2]
    with pytest.raises(ValueError, match="data has .* bytes, expected step x height"):
        conv.image_to_numpy(truncated)
    empty = Image(height=0, width=4, encoding="mono8", step=4)
    with pytest.raises(ValueError, match="no pixels"):
        conv.image_to_numpy(empty)
    with pytest.raises(ValueError, match="needs uint16 pixels"):
        conv.numpy_to_image(SAMPLES["mono8"], "16UC1")
    with pytest.raises(ValueError, match="shape"):
        conv.numpy_to_image(SAMPLES["rgb8"], "mono8")


def test_decoders_accept_rosbags_style_messages(numpy_only):
    """rosbags deserialises uint8[] as numpy arrays; the decoders are duck-typed."""
    from types import SimpleNamespace

    pixels = SAMPLES["16UC1"]
    rclpy_msg = _raw_message(pixels, "16UC1", pad=2, bigendian=True)
    duck = SimpleNamespace(height=rclpy_msg.height, width=rclpy_msg.width, encoding="16UC1",
                           is_bigendian=1, step=rclpy_msg.step,
                           data=np.frombuffer(bytes(rclpy_msg.data), np.uint8))
    np.testing.assert_array_equal(conv.image_to_labels(duck), pixels.astype(np.int32))


def test_cv_bridge_path_matches_numpy_path():
    pytest.importorskip("cv_bridge", reason="cv_bridge is not installed (PyPI ROS wheels)")
    conv._cv_bridge_instance = conv._MISSING
    assert conv._cv_bridge() is not None
    for encoding, pixels in SAMPLES.items():
        msg = conv.numpy_to_image(pixels, encoding)  # built by cv_bridge
        np.testing.assert_array_equal(conv.image_to_numpy(msg), pixels)
        padded = _raw_message(pixels, encoding, pad=pixels.itemsize * 2)
        np.testing.assert_array_equal(conv.image_to_numpy(padded), pixels)


def test_numpy_path_runs_without_cv_bridge():
    if "cv_bridge" in sys.modules or conv._cv_bridge() is not None:
        pytest.skip("cv_bridge is installed here; the numpy path is covered by the other tests")
    assert conv._cv_bridge() is None


# --------------------------------------------------------------------------- camera info


def _camera_info(**kw) -> CameraInfo:
    msg = CameraInfo(width=640, height=480, distortion_model="plumb_bob")
    msg.d = [0.0] * 5
    msg.k = [500.0, 0.0, 319.5, 0.0, 510.0, 239.5, 0.0, 0.0, 1.0]
    msg.p = [500.0, 0.0, 319.5, 0.0, 0.0, 510.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    for key, value in kw.items():
        setattr(msg, key, value)
    return msg


def test_camera_info_round_trip_and_pixel_centre_convention():
    K = Intrinsics(fx=500.0, fy=510.0, cx=320.0, cy=240.0, width=640, height=480)
    msg = conv.intrinsics_to_camera_info(K, stamp_ns=3, frame_id="cam")
    # ROS/OpenCV: pixel centres at integers, so a centred principal point is (w-1)/2.
    assert msg.k[2] == 319.5 and msg.k[5] == 239.5 and msg.p[2] == 319.5
    assert msg.distortion_model == "plumb_bob" and list(msg.d) == [0.0] * 5
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 3
    assert conv.camera_info_to_intrinsics(msg) == K


def test_camera_info_zero_k_falls_back_to_p_and_rectified_uses_p():
    msg = _camera_info(k=[0.0] * 9)
    assert conv.camera_info_to_intrinsics(msg).fx == 500.0
    rect = _camera_info(p=[450.0, 0.0, 300.5, 0.0, 0.0, 455.0, 220.5, 0.0, 0.0, 0.0, 1.0, 0.0],
                        d=[0.1, -0.05, 0.0, 0.0, 0.0])
    K = conv.camera_info_to_intrinsics(rect, rectified=True)
    assert (K.fx, K.fy, K.cx, K.cy) == (450.0, 455.0, 301.0, 221.0)
    uncalibrated = _camera_info(k=[0.0] * 9, p=[0.0] * 12)
    with pytest.raises(ValueError, match="not calibrated"):
        conv.camera_info_to_intrinsics(uncalibrated)


def test_camera_info_binning_and_roi():
    binned = conv.camera_info_to_intrinsics(_camera_info(binning_x=2, binning_y=2))
    assert (binned.width, binned.height) == (320, 240)
    assert (binned.fx, binned.fy, binned.cx, binned.cy) == (250.0, 255.0, 160.0, 120.0)
    msg = _camera_info()
    msg.roi.do_rectify = True
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 100, 40, 200, 120
    roi = conv.camera_info_to_intrinsics(msg)
    assert (roi.width, roi.height) == (200, 120)
    assert (roi.cx, roi.cy) == (220.0, 200.0)
    assert roi.fx == 500.0
    msg.binning_x = msg.binning_y = 2
    both = conv.camera_info_to_intrinsics(msg)
    assert (both.width, both.height, both.cx, both.cy, both.fx) == (100, 60, 110.0, 100.0, 250.0)
    msg.binning_x = msg.binning_y = 1
    msg.roi.x_offset = 500
    with pytest.raises(ValueError, match="ROI .* outside"):
        conv.camera_info_to_intrinsics(msg)


def test_camera_info_distortion_is_refused_unless_allowed():
    distorted = _camera_info(d=[0.1, -0.2, 0.001, 0.0, 0.0])
    with pytest.raises(ValueError, match="must be rectified"):
        conv.camera_info_to_intrinsics(distorted)
    assert conv.camera_info_to_intrinsics(distorted, ignore_distortion=True).fx == 500.0
    fisheye = _camera_info(distortion_model="kannala_brandt_x", d=[0.3, 0.1])
    with pytest.raises(ValueError, match="not a model this package knows"):
        conv.camera_info_to_intrinsics(fisheye)
    for model in ("rational_polynomial", "equidistant", "whatever"):
        undistorted = _camera_info(distortion_model=model, d=[0.0] * 8)
        assert conv.camera_info_to_intrinsics(undistorted).fx == 500.0
    assert conv.camera_info_to_intrinsics(_camera_info(d=[])).fx == 500.0
    nan = _camera_info(k=[float("nan")] + [0.0] * 8)
    with pytest.raises(ValueError, match="NaN"):
        conv.camera_info_to_intrinsics(nan)


# --------------------------------------------------------------------------- poses
