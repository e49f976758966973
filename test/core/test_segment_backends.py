"""Segmenter backends: the learned-model contract (TorchScript and ONNX files written
here, ONNX run by OpenCV and by ONNX Runtime), the classical backend behind the same
interface, and errors that name the parameter or say what the model returned."""

import re

import numpy as np
import pytest
import torch

from clusteringsdf_core.config import ConfigError
from clusteringsdf_core.segment import ClassicalSegmenter, ClassicalSegmenterConfig
from clusteringsdf_core.segment.backends import (LearnedSegmenterConfig, ModelOutputError,
                                                 Segmentation, image_to_input, interpret_outputs,
                                                 make_segmenter)

# torch 2.13 deprecates TorchScript (torch.jit.*); the backend still reads its files.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

H, W = 24, 32


def _image():
    """Black background, a red square, a green bar, and a second red square."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[2:10, 2:10] = (255, 0, 0)
    rgb[14:20, 4:28] = (0, 255, 0)
    rgb[2:10, 20:28] = (255, 0, 0)
    return rgb


def _regions(rgb):
    red = (rgb[..., 0] > 127) & (rgb[..., 1] <= 127)
    green = rgb[..., 1] > 127
    return red, green


# --------------------------------------------------------------------------- tiny models


class ChannelIds(torch.nn.Module):
    """Instance ids (1, H, W): 1 where red > 0.5, 2 where green > 0.5 (form 1, int64)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] > 0.5).to(torch.int64) + 2 * (x[:, 1] > 0.5).to(torch.int64)


class ChannelScores(torch.nn.Module):
    """Class scores (1, 4, H, W): R, G, B and a constant 0.5 for class 3 (dark pixels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.full_like(x[:, :1], 0.5)], dim=1)


class NamedOutputs(torch.nn.Module):
    """Form 3 as a dict: instance = 7 on red, semantic = 1 on red, confidence = blue channel."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        red = (x[:, 0:1] > 0.5).to(torch.int64)
        return {"instance": 7 * red, "semantic": red, "confidence": x[:, 2:3] * 0.5 + 0.25}


class TupleOutputs(torch.nn.Module):
    """Form 3 as a tuple (instance, semantic) at half resolution (a stride-2 head)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        small = x[:, :, ::2, ::2]
        green = (small[:, 1] > 0.5).to(torch.int32)
        return 5 * green, 2 * green


class WrongShape(torch.nn.Module):
    """Two images in a batch: not a shape of the contract."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, 0], x[:, 1]], dim=0)


class FractionalIds(torch.nn.Module):
    """One channel of floats (0 and 0.5): neither ids nor class scores."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x[:, 0:1]


def _script(module, path):
    torch.jit.save(torch.jit.script(module), str(path))
    return str(path)


def _softmax(scores):
    e = np.exp(scores - scores.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


# --------------------------------------------------------------------------- TorchScript


def test_torchscript_instance_ids_model_gives_its_ids(tmp_path):
    seg = make_segmenter("torchscript", model_path=_script(ChannelIds(), tmp_path / "ids.pt"))
    rgb = _image()
    out = seg.segment(rgb)
    red, green = _regions(rgb)
    expected = red.astype(np.int32) + 2 * green.astype(np.int32)
    assert out.instance.dtype == np.int32 and out.instance.shape == (H, W)
    np.testing.assert_array_equal(out.instance, expected)
    assert out.semantic is None and out.confidence is None and out.num_instances == 2


def test_torchscript_class_scores_give_classes_confidence_and_connected_instances(tmp_path):
    seg = make_segmenter("torchscript", model_path=_script(ChannelScores(), tmp_path / "s.pt"),
                         background_classes=[3])
    rgb = _image()
    out = seg.segment(rgb)
    red, green = _regions(rgb)
    expected_classes = np.full((H, W), 3)
    expected_classes[red], expected_classes[green] = 0, 1
    np.testing.assert_array_equal(out.semantic, expected_classes)
    # the two red squares are one class but two instances; class 3 (background) is 0;
    # ids 1..3 by decreasing area: the green bar (144 px), then the squares (64 px each)
    assert (out.instance[expected_classes == 3] == 0).all()
    assert set(np.unique(out.instance[green])) == {1}
    left, right = np.unique(out.instance[:, :16][red[:, :16]]), np.unique(out.instance[:, 16:][red[:, 16:]])
    assert {left.item(), right.item()} == {2, 3}
    scores = np.concatenate([image_to_input(rgb)[0], np.full((1, H, W), 0.5, np.float32)])
    np.testing.assert_allclose(out.confidence, _softmax(scores).max(axis=0), rtol=1e-5)


def test_torchscript_named_outputs_at_a_fixed_input_size(tmp_path):
    seg = make_segmenter("torchscript", model_path=_script(NamedOutputs(), tmp_path / "n.pt"),
                         input_width=16, input_height=12)
    rgb = _image()
    rgb[20:24, 0:8, 2] = 255  # blue corner (2x2 pixels at 16x12)
    out = seg.segment(rgb)
    red, _ = _regions(rgb)
    assert out.instance.shape == out.semantic.shape == out.confidence.shape == (H, W)
    np.testing.assert_array_equal(out.instance, np.where(red, 7, 0))
    np.testing.assert_array_equal(out.semantic, red.astype(np.int32))
    assert out.confidence.dtype == np.float32
    assert out.confidence[22, 3] == pytest.approx(0.75) and out.confidence[5, 14] == pytest.approx(0.25)


def test_torchscript_tuple_outputs_at_lower_resolution_are_resized(tmp_path):
    seg = make_segmenter("torchscript", model_path=_script(TupleOutputs(), tmp_path / "t.pt"))
    rgb = _image()
    out = seg.segment(rgb)
    _, green = _regions(rgb)
    np.testing.assert_array_equal(out.instance, np.where(green, 5, 0))
    np.testing.assert_array_equal(out.semantic, np.where(green, 2, 0))
    assert out.confidence is None


@pytest.mark.parametrize("module, message", [(WrongShape(), "shape (2, 24, 32)"),
                                             (FractionalIds(), "non-integer")])
def test_outputs_outside_the_contract_are_refused_with_what_came(tmp_path, module, message):
    seg = make_segmenter("torchscript", model_path=_script(module, tmp_path / "bad.pt"))
    with pytest.raises(ModelOutputError, match=re.escape(message)) as info:
        seg.segment(_image())
    assert "(1, C, H, W)" in str(info.value)  # the message says what is accepted


# --------------------------------------------------------------------------- output rules


def test_interpret_outputs_rules():
    ids = np.zeros((4, 6), np.float32)  # OpenCV returns float ids
    ids[0, 0] = 3
    ids[2:, 2:] = 9
    out = interpret_outputs(ids[None, None], 8, 12)
    assert out.instance.shape == (8, 12) and out.instance.dtype == np.int32
    np.testing.assert_array_equal(out.instance[::2, ::2], ids)  # nearest, pixel centres aligned
    out = interpret_outputs(ids, 4, 6, LearnedSegmenterConfig(min_instance_area_px=2))
    assert set(np.unique(out.instance)) == {0, 9}  # id 3 covers 1 pixel < 2
    semantic = np.where(ids == 9, 4, 1)
    out = interpret_outputs({"instance": ids, "semantic": semantic, "logits": ids}, 4, 6,
                            LearnedSegmenterConfig(background_classes=[4]))
    assert set(np.unique(out.instance)) == {0, 3}  # class 4 is background; "logits" ignored
    assert out.semantic is not None and out.semantic.max() == 4
    with pytest.raises(ModelOutputError, match="'instance'"):
        interpret_outputs({"scores": ids, "semantic": semantic}, 4, 6)
    with pytest.raises(ModelOutputError, match="negative|0.."):
        interpret_outputs(-ids, 4, 6)
    with pytest.raises(ModelOutputError, match="4 outputs"):
        interpret_outputs((ids, ids, ids, ids), 4, 6)
    assert isinstance(interpret_outputs({"anything": ids}, 4, 6), Segmentation)


def test_interpret_outputs_min_area_counts_image_pixels():
    ids = np.zeros((4, 6), np.int64)
    ids[0, 0] = 3  # one output pixel = 4 image pixels at twice the size
    kept = interpret_outputs(ids, 8, 12, LearnedSegmenterConfig(min_instance_area_px=4))
    dropped = interpret_outputs(ids, 8, 12, LearnedSegmenterConfig(min_instance_area_px=5))
    assert (kept.instance == 3).sum() == 4 and not dropped.instance.any()


# --------------------------------------------------------------------------- ONNX


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field, n):
    return _varint(field << 3) + _varint(n)


def _bytes(field, data):
    data = data.encode() if isinstance(data, str) else data
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _onnx_model(nodes, initializers, inputs, outputs):
    """Protobuf bytes of an ONNX ModelProto (opset 13), written field by field so the
    test needs no `onnx` package. ``nodes``: (op, inputs, outputs, {int attributes});
    ``initializers``: {name: float32 array}; ``inputs``/``outputs``: (name, dims, elem
    type: 1 float, 7 int64, 10 float16), a dim a str for a symbolic size."""
    def node(op, ins, outs, attrs):
        return (b"".join(_bytes(1, i) for i in ins) + b"".join(_bytes(2, o) for o in outs)
                + _bytes(3, outs[0]) + _bytes(4, op)
                + b"".join(_bytes(5, _bytes(1, k) + _int(3, v) + _int(20, 2)) for k, v in attrs.items()))

    def tensor(name, array):
        array = np.ascontiguousarray(array, np.float32)
        return (b"".join(_int(1, d) for d in array.shape) + _int(2, 1) + _bytes(8, name)
                + _bytes(9, array.tobytes()))

    def value_info(name, dims, elem_type):
        shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
        return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, elem_type) + _bytes(2, shape)))

    graph = (b"".join(_bytes(1, node(*n)) for n in nodes) + _bytes(2, "test_graph")
             + b"".join(_bytes(5, tensor(k, v)) for k, v in initializers.items())
             + b"".join(_bytes(11, value_info(*i)) for i in inputs)
             + b"".join(_bytes(12, value_info(*o)) for o in outputs))
    return _int(1, 8) + _bytes(2, "clusteringsdf-test") + _bytes(7, graph) + _bytes(8, _int(2, 13))


def _scores_conv():
    """A 1x1 convolution giving ChannelScores' four class scores."""
    weight = np.zeros((4, 3, 1, 1), np.float32)
    weight[0, 0] = weight[1, 1] = weight[2, 2] = 1.0
    return {"w": weight, "b": np.array([0.0, 0.0, 0.0, 0.5], np.float32)}


def test_onnx_class_scores_model_via_opencv(tmp_path):
    path = tmp_path / "scores.onnx"
    path.write_bytes(_onnx_model([("Conv", ["image", "w", "b"], ["scores"], {})], _scores_conv(),
                                 [("image", [1, 3, "h", "w"], 1)], [("scores", [1, 4, "h", "w"], 1)]))
    onnx_out = make_segmenter("onnx", model_path=str(path)).segment(_image())
    torch_path = _script(ChannelScores(), tmp_path / "scores.pt")
    torch_out = make_segmenter("torchscript", model_path=torch_path).segment(_image())
    np.testing.assert_array_equal(onnx_out.semantic, torch_out.semantic)
    np.testing.assert_array_equal(onnx_out.instance, torch_out.instance)
    np.testing.assert_allclose(onnx_out.confidence, torch_out.confidence, rtol=1e-5)
    assert onnx_out.num_instances == 4  # three shapes + the background (class 3 is not dropped)


def test_onnx_named_outputs_and_fixed_input_size(tmp_path):
    path = tmp_path / "named.onnx"
    nodes = [("Conv", ["image", "w", "b"], ["scores"], {}),
             ("ArgMax", ["scores"], ["instance"], {"axis": 1, "keepdims": 1})]
    path.write_bytes(_onnx_model(nodes, _scores_conv(), [("image", [1, 3, 12, 16], 1)],
                                 [("scores", [1, 4, 12, 16], 1), ("instance", [1, 1, 12, 16], 7)]))
    seg = make_segmenter("onnx", model_path=str(path), input_width=16, input_height=12)
    rgb = _image()
    out = seg.segment(rgb)  # ArgMax gives int64 ids; "scores" is not a contract name: ignored
    red, green = _regions(rgb)
    assert out.instance.shape == (H, W) and out.semantic is None
    np.testing.assert_array_equal(out.instance, np.where(red, 0, np.where(green, 1, 3)))


def test_onnx_exported_by_torch_runs_like_the_torch_module(tmp_path):
    pytest.importorskip("onnx", reason="the `onnx` package is not installed, and "
                        "torch.onnx.export needs it (the hand-written ONNX files above cover "
                        "the OpenCV backend)")
    path = tmp_path / "exported.onnx"
    torch.onnx.export(ChannelScores(), (torch.rand(1, 3, H, W),), str(path), dynamo=False,
                      input_names=["image"], output_names=["scores"])
    onnx_out = make_segmenter("onnx", model_path=str(path)).segment(_image())
    torch_out = make_segmenter("torchscript", model_path=_script(ChannelScores(), tmp_path / "s.pt")
                               ).segment(_image())
    np.testing.assert_array_equal(onnx_out.instance, torch_out.instance)
    np.testing.assert_array_equal(onnx_out.semantic, torch_out.semantic)


def _scores_model(path, dims=(1, 3, "h", "w")):
    out_dims = [1, 4, *dims[2:]]
    path.write_bytes(_onnx_model([("Conv", ["image", "w", "b"], ["scores"], {})], _scores_conv(),
                                 [("image", list(dims), 1)], [("scores", out_dims, 1)]))
    return str(path)


def test_onnxruntime_runs_the_class_scores_model_like_opencv_and_torch(tmp_path):
    path = _scores_model(tmp_path / "scores.onnx")
    seg = make_segmenter("onnxruntime", model_path=path, num_threads=1)
    assert "ONNX Runtime" in seg.describe() and "cpu" in seg.describe()
    ort_out = seg.segment(_image())
    cv_out = make_segmenter("onnx", model_path=path).segment(_image())
    torch_out = make_segmenter("torchscript", model_path=_script(ChannelScores(), tmp_path / "s.pt")
                               ).segment(_image())
    for other in (cv_out, torch_out):
        np.testing.assert_array_equal(ort_out.semantic, other.semantic)
        np.testing.assert_array_equal(ort_out.instance, other.instance)
        np.testing.assert_allclose(ort_out.confidence, other.confidence, rtol=1e-5)
    assert ort_out.num_instances == 4


def test_onnxruntime_feeds_a_float16_input_as_float16(tmp_path):
    path = tmp_path / "half.onnx"                 # image (float16) -> Cast to float -> scores
    path.write_bytes(_onnx_model([("Cast", ["image"], ["image32"], {"to": 1}),
                                  ("Conv", ["image32", "w", "b"], ["scores"], {})], _scores_conv(),
                                 [("image", [1, 3, "h", "w"], 10)], [("scores", [1, 4, "h", "w"], 1)]))
    half = make_segmenter("onnxruntime", model_path=str(path)).segment(_image())
    full = make_segmenter("onnxruntime", model_path=_scores_model(tmp_path / "s.onnx")).segment(_image())
    np.testing.assert_array_equal(half.semantic, full.semantic)
    np.testing.assert_array_equal(half.instance, full.instance)


def test_onnxruntime_takes_a_fixed_input_size_from_the_model(tmp_path):
    """A model whose input is fixed at 12x16, with int64 ids (ArgMax) as a named output:
    ONNX Runtime reads the size from the model; an explicit size still wins, and one the
    model refuses is a ModelOutputError that names the input's shape."""
    path = tmp_path / "named.onnx"
    nodes = [("Conv", ["image", "w", "b"], ["scores"], {}),
             ("ArgMax", ["scores"], ["instance"], {"axis": 1, "keepdims": 1})]
    path.write_bytes(_onnx_model(nodes, _scores_conv(), [("image", [1, 3, 12, 16], 1)],
                                 [("scores", [1, 4, 12, 16], 1), ("instance", [1, 1, 12, 16], 7)]))
    rgb = _image()
    red, green = _regions(rgb)
    out = make_segmenter("onnxruntime", model_path=str(path)).segment(rgb)
    assert out.instance.shape == (H, W) and out.semantic is None
    np.testing.assert_array_equal(out.instance, np.where(red, 0, np.where(green, 1, 3)))
    with pytest.raises(ModelOutputError, match="ONNX Runtime could not run the model on a "
                                               r"\(1, 3, 24, 32\) input"):
        make_segmenter("onnxruntime", model_path=str(path), input_width=W, input_height=H).segment(rgb)


def test_onnxruntime_refuses_models_outside_the_contract_and_unavailable_devices(tmp_path):
    two = tmp_path / "two_inputs.onnx"
    two.write_bytes(_onnx_model([("Add", ["image", "other"], ["instance"], {})], {},
                                [("image", [1, 3, "h", "w"], 1), ("other", [1, 3, "h", "w"], 1)],
                                [("instance", [1, 3, "h", "w"], 1)]))
    with pytest.raises(ValueError, match="takes 2 inputs \\(image, other\\)"):
        make_segmenter("onnxruntime", model_path=str(two))
    flat = tmp_path / "flat.onnx"
    flat.write_bytes(_onnx_model([("Relu", ["image"], ["instance"], {})], {},
                                 [("image", ["h", "w"], 1)], [("instance", ["h", "w"], 1)]))
    with pytest.raises(ValueError, match="input of shape .*\\(1, 3, H, W\\)"):
        make_segmenter("onnxruntime", model_path=str(flat))
    path = _scores_model(tmp_path / "scores.onnx")
    with pytest.raises(ConfigError, match="device.*cpu, cuda or cuda:N"):
        make_segmenter("onnxruntime", model_path=path, device="tpu")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ConfigError, match="device.*no CUDA execution provider"):
            make_segmenter("onnxruntime", model_path=path, device="cuda:0")


# --------------------------------------------------------------------------- classical + errors


def test_classical_backend_is_the_classical_segmenter():
    rgb = _image()
    out = make_segmenter("classical", sigma=0.0, min_area_px=20).segment(rgb)
    expected = ClassicalSegmenter(ClassicalSegmenterConfig(sigma=0.0, min_area_px=20)).segment(rgb)
    np.testing.assert_array_equal(out.instance, expected)
    assert out.semantic is None and out.num_instances == 4  # background, two squares, bar


@pytest.mark.parametrize("kind, params, error, words", [
    ("torchscript", {"model_path": "/nonexistent/seg.pt"}, FileNotFoundError,
     ["model_path", "/nonexistent/seg.pt", "torch.jit.save"]),
    ("onnx", {"model_path": "/nonexistent/seg.onnx"}, FileNotFoundError,
     ["model_path", "/nonexistent/seg.onnx", "ONNX"]),
    ("onnx", {}, ConfigError, ["model_path", "needs a model file"]),
    ("torchscript", {"model_path": "x.pt", "scale": 3.0}, ConfigError, ["scale", "not a parameter"]),
    ("torchscript", {"model_path": "x.pt", "input_width": 64}, ConfigError, ["input_width"]),
    ("onnxruntime", {"model_path": "/nonexistent/seg.onnx"}, FileNotFoundError,
     ["model_path", "/nonexistent/seg.onnx", "ONNX"]),
    ("onnxruntime", {"model_path": "x.onnx", "num_threads": -1}, ConfigError, ["num_threads"]),
    ("classical", {"scale": -1.0}, ConfigError, ["classical_segmenter.scale", "> 0"]),
    ("classical", {"model_path": "x.pt"}, ConfigError, ["classical_segmenter.model_path", "unknown"]),
    ("mask2former", {}, ConfigError, ["backend", "classical", "torchscript", "onnx", "onnxruntime"]),
])
def test_bad_settings_raise_errors_that_name_the_parameter(kind, params, error, words):
    with pytest.raises(error) as info:
        make_segmenter(kind, **params)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("kind, words", [("torchscript", "as TorchScript"), ("onnx", "as ONNX"),
                                         ("onnxruntime", "as ONNX")])
def test_files_that_are_not_models_are_refused(tmp_path, kind, words):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=f"model_path: .*junk.bin.* {words}"):
        make_segmenter(kind, model_path=str(junk))


def test_torchscript_refuses_an_unavailable_device(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the refusal does not happen")
    path = _script(ChannelIds(), tmp_path / "ids.pt")
    with pytest.raises(ConfigError, match="device.*CUDA is not available"):
        make_segmenter("torchscript", model_path=path, device="cuda")


def test_image_to_input_follows_the_contract():
    rgb = _image()
    x = image_to_input(rgb)
    assert x.shape == (1, 3, H, W) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0, :, 5, 5], [1.0, 0.0, 0.0])  # red first, [0, 1]
    assert image_to_input(rgb, (16, 12)).shape == (1, 3, 12, 16)
    with pytest.raises(ValueError, match="uint8"):
        image_to_input(rgb.astype(np.float32))
