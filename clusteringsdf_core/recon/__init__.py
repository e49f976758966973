"""Classical reconstruction: TSDF fusion of depth frames into a coloured mesh."""

from clusteringsdf_core.recon.tsdf import TSDFConfig, TSDFVolume, fuse_frames, reconstruct_mesh

__all__ = ["TSDFConfig", "TSDFVolume", "fuse_frames", "reconstruct_mesh"]
