"""Quadric decimation of meshes that are too large to render quickly (open3d)."""

from __future__ import annotations

import numpy as np

from nid_nerf.synthetic.colored_mesh import ColoredMesh, MeshPart


def decimate_mesh(mesh: ColoredMesh, target_faces: int) -> ColoredMesh:
    """Quadric-decimate every part to its share of ``target_faces``.

    Vertex colours survive decimation; a texture or per-face colours become the part's area-weighted mean colour.
    """
    import open3d as o3d  # slow import; only huge meshes need it

    total = mesh.num_faces
    parts = []
    for part in mesh.parts:
        share = max(4, int(np.ceil(target_faces * len(part.faces) / total)))
        if len(part.faces) <= share:
            parts.append(part)
            continue
        legacy = o3d.geometry.TriangleMesh(
            o3d.utility.Vector3dVector(part.vertices), o3d.utility.Vector3iVector(part.faces.astype(np.int32))
        )
        if part.vertex_colors is not None:
            legacy.vertex_colors = o3d.utility.Vector3dVector(part.vertex_colors)
        small = legacy.simplify_quadric_decimation(target_number_of_triangles=share)
        small.remove_unreferenced_vertices()
        vertices = np.asarray(small.vertices, dtype=np.float64)
        faces = np.asarray(small.triangles, dtype=np.int64)
        if len(faces) == 0:
            continue
        if part.vertex_colors is not None and small.has_vertex_colors():
            parts.append(MeshPart(vertices, faces, vertex_colors=np.asarray(small.vertex_colors, dtype=np.float64)))
        else:
            parts.append(MeshPart(vertices, faces, face_colors=np.tile(part.mean_color(), (len(faces), 1))))
    return ColoredMesh(parts=parts, color_source=mesh.color_source)
