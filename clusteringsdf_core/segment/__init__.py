"""2D segmenters that make view-local instance maps for sequences without labels."""

from clusteringsdf_core.segment.classical import ClassicalSegmenter, ClassicalSegmenterConfig

__all__ = ["ClassicalSegmenter", "ClassicalSegmenterConfig"]
