"""Rays, samplers and volume rendering of the object-compositional SDF."""
