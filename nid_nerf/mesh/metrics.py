"""Mesh-to-mesh metrics from surface samples: Chamfer-L1, F-score, normal consistency.

Definitions (P: N points sampled uniformly by area on the predicted mesh, G: N points on the ground truth,
d(x, Y) = min_{y in Y} ||x - y||_2, the Euclidean distance to the nearest sample of the other set):

- accuracy      = mean_{p in P} d(p, G)
- completeness  = mean_{g in G} d(g, P)
- chamfer_l1    = (accuracy + completeness) / 2        (mean of the two directions; unsquared distances, as in
                                                        Occupancy Networks / the DTU protocol, not squared L2)
- precision(t)  = fraction of p in P with d(p, G) < t
- recall(t)     = fraction of g in G with d(g, P) < t
- f_score(t)    = 2 precision recall / (precision + recall)   (0 when both are 0)
- t             = 1% and 0.5% of the diagonal of the ground truth's axis-aligned bounding box
- normal_consistency = ( mean_{p} |n_p . n_nn(p)| + mean_{g} |n_g . n_nn(g)| ) / 2 with face normals of the sampled
                      faces and nn the nearest sample of the other set (absolute value: orientation-free, 1 is best)

Distances are in the meshes' own units. Both meshes are sampled with the same fixed seed, so a run is
reproducible and a mesh compared with itself scores exactly chamfer 0, F 1, normal consistency 1. Two different
samplings of one surface of area A would instead sit at a noise floor of roughly 0.5 * sqrt(A / N) per direction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import trimesh
from jaxtyping import Float
from scipy.spatial import cKDTree

from nid_nerf.errors import NIDInputError

DEFAULT_TAU_FRACTIONS = (0.01, 0.005)


def load_mesh(path: Path, role: str = "mesh") -> trimesh.Trimesh:
    """Load a triangle mesh (any format trimesh reads; scenes are concatenated).

    Raises:
        NIDInputError: missing, unreadable, or without any face of positive area.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise NIDInputError(f"{role} mesh {path} does not exist; pass the path of a .ply/.obj/.glb/.stl mesh")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as err:  # trimesh raises many types for corrupt files
        raise NIDInputError(
            f"{role} mesh {path} cannot be read ({type(err).__name__}: {err}); pass a valid mesh file"
        ) from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or not mesh.area > 0:
        raise NIDInputError(f"{role} mesh {path} has no triangles with area; pass a triangle mesh, not a point cloud")
    return mesh


def sample_surface(
    mesh: trimesh.Trimesh, num_points: int, seed: int = 0
) -> Tuple[Float[np.ndarray, "N 3"], Float[np.ndarray, "N 3"]]:
    """``num_points`` points uniformly by area on ``mesh`` and the unit normals of the faces they lie on."""
    points, face_index = trimesh.sample.sample_surface(mesh, int(num_points), seed=seed)
    return np.asarray(points, dtype=np.float64), np.asarray(mesh.face_normals[face_index], dtype=np.float64)


def nearest(
    queries: Float[np.ndarray, "N 3"], targets: Float[np.ndarray, "M 3"]
) -> Tuple[Float[np.ndarray, " N"], np.ndarray]:
    """Euclidean distance from each query to its nearest target, and that target's index."""
    dist, idx = cKDTree(targets).query(queries, k=1, workers=-1)
    return dist, idx


def f_score(dist_pred_to_gt: np.ndarray, dist_gt_to_pred: np.ndarray, tau: float) -> Dict[str, float]:
    """Precision, recall and their harmonic mean at threshold ``tau``."""
    precision = float(np.mean(dist_pred_to_gt < tau))
    recall = float(np.mean(dist_gt_to_pred < tau))
    fs = 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)
    return {"tau": float(tau), "precision": precision, "recall": recall, "f_score": fs}


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}pct"


def mesh_metrics(
    pred: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    num_points: int = 100_000,
    seed: int = 0,
    tau_fractions: Sequence[float] = DEFAULT_TAU_FRACTIONS,
) -> Dict[str, object]:
    """All metrics of this module's docstring, as a JSON-ready dict."""
    if int(num_points) < 1:
        raise NIDInputError(f"--num-points {num_points} must be at least 1 (e.g. 100000)")
    pred_pts, pred_nrm = sample_surface(pred, num_points, seed=seed)
    gt_pts, gt_nrm = sample_surface(gt, num_points, seed=seed)
    d_pg, i_pg = nearest(pred_pts, gt_pts)
    d_gp, i_gp = nearest(gt_pts, pred_pts)
    accuracy = float(d_pg.mean())
    completeness = float(d_gp.mean())
    nc_pred = float(np.abs(np.sum(pred_nrm * gt_nrm[i_pg], axis=1)).mean())
    nc_gt = float(np.abs(np.sum(gt_nrm * pred_nrm[i_gp], axis=1)).mean())
    diagonal = float(np.linalg.norm(gt.bounds[1] - gt.bounds[0]))
    out: Dict[str, object] = {
        "chamfer_l1": 0.5 * (accuracy + completeness),
        "accuracy": accuracy,
        "completeness": completeness,
        "normal_consistency": 0.5 * (nc_pred + nc_gt),
        "num_points": int(num_points),
        "gt_bbox_diagonal": diagonal,
        "seed": int(seed),
        "thresholds": {},
    }
    for fraction in tau_fractions:
        scores = f_score(d_pg, d_gp, fraction * diagonal)
        out[f"f_score_{_pct(fraction)}"] = scores["f_score"]
        out["thresholds"][_pct(fraction)] = {"fraction_of_diagonal": float(fraction), **scores}
    return out
