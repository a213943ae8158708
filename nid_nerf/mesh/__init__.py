"""Mesh export from an SDF (chunked marching cubes, vertex colours) and mesh-to-mesh metrics."""

from nid_nerf.mesh.extract import extract_mesh, keep_largest_component, make_grid
from nid_nerf.mesh.metrics import mesh_metrics

__all__ = ["extract_mesh", "keep_largest_component", "make_grid", "mesh_metrics"]
