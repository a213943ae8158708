#!/usr/bin/env python
"""Compare a predicted mesh with ground truth (same as the `nid-eval-mesh` console script).

    python scripts/eval_mesh.py --pred mesh.ply --gt gt_mesh.ply --output metrics.json
"""

from nid_nerf.cli.eval_mesh import entrypoint

if __name__ == "__main__":
    entrypoint()
