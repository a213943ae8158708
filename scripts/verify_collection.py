#!/usr/bin/env python
"""Check rendered scenes against their ground-truth meshes and report the numbers (nid_nerf/synthetic/verify.py).

    python scripts/verify_collection.py COLLECTION [COLLECTION ...] [--max-views N] [--json out.json]

For every scene: mean / p99 / max distance from back-projected depth pixels to gt_mesh.ply, in units of the scene
scale (the object radius); and the IoU between the masks and an independent rasterisation of gt_mesh.ply.
"""

import sys

from nid_nerf.errors import install_excepthook
from nid_nerf.synthetic.verify import main

if __name__ == "__main__":
    install_excepthook()
    sys.exit(main())
