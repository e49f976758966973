"""Evaluation metrics as pure functions over numpy arrays (scores in percent).

- panoptic: PQ^scene / SQ / RQ^scene, per-frame PQ, mIoU, 512x512 nearest resizing;
- edges: edge accuracy (EA) of ClusteringSDF;
- instance3d: ScanNet-style 3D instance AP (class-aware and class-agnostic);
- geometry: accuracy / completeness / Chamfer / F-score between meshes.
"""

from clusteringsdf_core.metrics.edges import EdgeAccuracyResult, edge_accuracy, edge_dice_per_label, label_edges
from clusteringsdf_core.metrics.geometry import (
    GeometryResult,
    mesh_metrics,
    per_object_mesh_metrics,
    point_cloud_metrics,
    sample_surface,
)
from clusteringsdf_core.metrics.instance3d import (
    COCO_THRESHOLDS,
    SCANNET_THRESHOLDS,
    ClassAP,
    InstanceAPResult,
    InstancePrediction,
    average_precision_from_matches,
    instance_ap,
    instance_ap_class_agnostic,
    predictions_from_instance_ids,
)
from clusteringsdf_core.metrics.panoptic import (
    ClassPanopticStats,
    MeanIoUResult,
    PanopticResult,
    mean_iou,
    panoptic_quality_frame,
    panoptic_quality_scene,
    resize_labels_nearest,
)

__all__ = [
    "COCO_THRESHOLDS",
    "SCANNET_THRESHOLDS",
    "ClassAP",
    "ClassPanopticStats",
    "EdgeAccuracyResult",
    "GeometryResult",
    "InstanceAPResult",
    "InstancePrediction",
    "MeanIoUResult",
    "PanopticResult",
    "average_precision_from_matches",
    "edge_accuracy",
    "edge_dice_per_label",
    "instance_ap",
    "instance_ap_class_agnostic",
    "label_edges",
    "mean_iou",
    "mesh_metrics",
    "panoptic_quality_frame",
    "panoptic_quality_scene",
    "per_object_mesh_metrics",
    "point_cloud_metrics",
    "predictions_from_instance_ids",
    "resize_labels_nearest",
    "sample_surface",
]
