"""Classical (label-free) segmenter: alignment with objects, depth awareness, post-processing."""


import numpy as np
import pytest

from clusteringsdf_core.config import ConfigError
from clusteringsdf_core.segment import ClassicalSegmenter, ClassicalSegmenterConfig
from clusteringsdf_core.segment.classical import merge_small_segments, relabel_by_area, split_at_depth_edges

H, W = 120, 160
RECTS = [  # (region id, colour, y0, y1, x0, x1, depth m)
    (1, (200, 40, 40), 15, 55, 15, 60, 1.5),
    (2, (40, 180, 60), 20, 70, 90, 140, 1.8),
    (3, (40, 60, 200), 70, 110, 20, 75, 1.2),
    (4, (220, 200, 60), 80, 112, 100, 150, 2.0),
]


def background_depth():
    """A tilted wall: inverse depth linear in the pixel coordinates (a 3D plane)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    return (1.0 / (0.30 + 0.0004 * u + 0.0002 * v)).astype(np.float32)


def rect_scene(seed: int = 0, h: int = H, w: int = W):
    """Coloured rectangles in front of a grey wall, with mild pixel noise; region 0 = wall."""
    sy, sx = h / H, w / W
    rgb = np.full((h, w, 3), 128.0)
    regions = np.zeros((h, w), np.int32)
    depth = background_depth()
    if (h, w) != (H, W):
        import cv2
        depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
    for rid, colour, y0, y1, x0, x1, z in RECTS:
        box = slice(int(y0 * sy), int(y1 * sy)), slice(int(x0 * sx), int(x1 * sx))
        rgb[box] = colour
        regions[box] = rid
        depth[box] = z
    rgb += np.random.default_rng(seed).normal(0.0, 3.0, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), depth.astype(np.float32), regions


def coverage_and_purity(labels, regions):
    """Per GT region: share of it in its majority segment; per segment: share of it in
    its majority region."""
    cover = {r: np.bincount(labels[regions == r]).max() / (regions == r).sum()
             for r in np.unique(regions)}
    purity = {s: np.bincount(regions[labels == s]).max() / (labels == s).sum()
              for s in np.unique(labels)}
    return cover, purity


@pytest.mark.parametrize("use_depth", [False, True])
def test_felzenszwalb_segments_align_with_rectangles(use_depth):
    rgb, depth, regions = rect_scene()
    labels = ClassicalSegmenter(ClassicalSegmenterConfig(use_depth=use_depth)).segment(rgb, depth)
    cover, purity = coverage_and_purity(labels, regions)
    assert min(cover.values()) > 0.9, cover
    assert min(purity.values()) > 0.9, purity


def test_slic_superpixels_stay_inside_rectangles():
    rgb, depth, regions = rect_scene()
    cfg = ClassicalSegmenterConfig(method="slic", n_segments=40, min_area_px=50)
    labels = ClassicalSegmenter(cfg).segment(rgb, depth)
    _, purity = coverage_and_purity(labels, regions)
    areas = np.bincount(labels.ravel())
    weighted = sum(purity[s] * areas[s] for s in purity) / labels.size
    assert weighted > 0.95
    for r in range(1, 5):  # each rectangle tiled by superpixels that stay inside it
        pure = [s for s in np.unique(labels[regions == r]) if purity[s] > 0.9]
        assert np.isin(labels[regions == r], pure).mean() > 0.9


@pytest.mark.parametrize("method", ["felzenszwalb", "slic"])
def test_depth_splits_same_colour_at_different_depths(method):
    rgb = np.full((H, W, 3), 90, np.uint8)
    rgb[30:90, 30:130] = (180, 60, 60)  # one red block ...
    depth = np.full((H, W), 3.0, np.float32)
    depth[30:90, 30:80] = 1.0  # ... whose halves lie at 1 m and 2 m
    depth[30:90, 80:130] = 2.0
    base = dict(method=method, n_segments=12, compactness=20.0)
    left, right = (slice(35, 85), slice(35, 75)), (slice(35, 85), slice(85, 125))

    plain = ClassicalSegmenter(ClassicalSegmenterConfig(use_depth=False, **base)).segment(rgb, depth)
    aware = ClassicalSegmenter(ClassicalSegmenterConfig(use_depth=True, **base)).segment(rgb, depth)

    def majority(labels, box):
        return np.bincount(labels[box].ravel()).argmax()

    if method == "felzenszwalb":  # colour alone cannot separate the halves
        assert majority(plain, left) == majority(plain, right)
    assert majority(aware, left) != majority(aware, right)
    for box in (left, right):  # and no depth-aware segment straddles the step
        ids = np.unique(aware[box])
        assert not (set(ids) & set(np.unique(aware[left if box is right else right])))


def test_ids_are_contiguous_and_min_area_and_max_segments_hold():
    rgb, depth, _ = rect_scene()
    noise = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    rgb[:40, :40] = noise[:40, :40]  # a textured corner that Felzenszwalb shatters
    for cfg in (ClassicalSegmenterConfig(min_area_px=80, min_size=5, scale=50.0, max_segments=0),
                ClassicalSegmenterConfig(min_area_px=10, min_size=5, scale=50.0, max_segments=12),
                ClassicalSegmenterConfig(method="slic", n_segments=200, min_area_px=60)):
        labels = ClassicalSegmenter(cfg).segment(rgb, depth)
        assert labels.dtype == np.int32 and labels.shape == (H, W)
        ids = np.unique(labels)
        np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
        areas = np.bincount(labels.ravel())[1:]
        assert areas.min() >= cfg.min_area_px
        assert np.all(np.diff(areas) <= 0)  # id 1 is the largest
        if cfg.max_segments:
            assert len(ids) <= cfg.max_segments


def test_drop_background_removes_the_planar_wall_only():
    rgb, depth, regions = rect_scene()
    cfg = ClassicalSegmenterConfig(drop_background=True)
    labels = ClassicalSegmenter(cfg).segment(rgb, depth)
    wall = regions == 0
    assert (labels[wall] == 0).mean() > 0.9
    for r in range(1, 5):
        assert (labels[regions == r] > 0).mean() > 0.9
    ids = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    # A wall that is not planar in depth (a bumpy surface) is kept.
    bumpy = depth.copy()
    bumpy[wall] += 0.3 * np.sin(np.arange(W) / 5.0)[None, :].repeat(H, 0)[wall]
    kept = ClassicalSegmenter(cfg.replace(use_depth=False)).segment(rgb, bumpy)
    assert (kept[wall] == 0).mean() < 0.1
    assert np.all(ClassicalSegmenter().segment(rgb, depth) > 0)


def test_max_side_px_segments_a_smaller_copy_at_full_size():
    rgb, depth, regions = rect_scene(h=2 * H, w=2 * W)
    cfg = ClassicalSegmenterConfig(max_side_px=W, scale=200.0)
    labels = ClassicalSegmenter(cfg).segment(rgb, depth)
    assert labels.shape == (2 * H, 2 * W)
    ids = np.unique(labels)
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    cover, purity = coverage_and_purity(labels, regions)
    assert min(cover.values()) > 0.9 and min(purity.values()) > 0.9


def test_deterministic_validated_and_fast():
    rgb, depth, _ = rect_scene()
    seg = ClassicalSegmenterConfig().setup()
    np.testing.assert_array_equal(seg.segment(rgb, depth), seg.segment(rgb, depth))
    np.testing.assert_array_equal(seg.segment(rgb), ClassicalSegmenter(
        ClassicalSegmenterConfig(use_depth=False)).segment(rgb, depth))
    with pytest.raises(ValueError, match="rgb"):
        seg.segment(rgb[..., 0])
    with pytest.raises(ValueError, match="differ"):
        seg.segment(rgb, depth[:-1])
    with pytest.raises(ConfigError, match="method"):
        ClassicalSegmenterConfig(method="watershed")
    big, big_depth, _ = rect_scene(h=240, w=320)
    labels = seg.segment(big, big_depth)
    assert labels.shape == (240, 320) and labels.min() >= 1


def test_post_processing_helpers():
    labels = np.ones((20, 20), np.int64)
    labels[10:, :] = 2
    labels[3:5, 3:5] = 7  # a 4-pixel island inside 1
    merged = merge_small_segments(labels, 10)
    assert np.all(merged[3:5, 3:5] == merged[0, 0]) and len(np.unique(merged)) == 2
    np.testing.assert_array_equal(relabel_by_area(np.array([[5, 5, 5, 0, 9]])), [[1, 1, 1, 0, 2]])
    np.testing.assert_array_equal(relabel_by_area(np.array([[5, 5, 0, 9]]), keep_zero=False),
                                  [[1, 1, 2, 3]])
    # ids far above the pixel count or negative take the sorting path: the same answer
    np.testing.assert_array_equal(relabel_by_area(np.array([[10**9, 10**9, 0, -4]])), [[1, 1, 0, 2]])
    np.testing.assert_array_equal(relabel_by_area(np.array([[10**9, 0, 0, -4]]), keep_zero=False),
                                  [[3, 1, 1, 2]])   # ties: the smaller id first
    depth = np.where(np.arange(20)[None, :] < 10, 1.0, 2.0).repeat(20, 0).astype(np.float32)
    depth[:, 5] = 0.0  # invalid depth never cuts
    split = split_at_depth_edges(np.ones((20, 20), np.int64), depth, 0.1)
    assert len(np.unique(split)) == 2 and split[0, 0] == split[0, 9] != split[0, 10]
    # An island with only depth-discontinuous borders still merges (no lone fragments).
    island_depth = np.full((20, 20), 1.0, np.float32)
    island_depth[3:5, 3:5] = 5.0
    merged = merge_small_segments(labels, 10, depth=island_depth, depth_edge_m=0.1)
    assert len(np.unique(merged)) == 2
