#!/usr/bin/env python
"""Export a mesh from a trained nid-field / nid-dict checkpoint (same as the `nid-export-mesh` console script).

    python scripts/export_mesh.py --load-config outputs/.../config.yml --output mesh.ply [--resolution 256]
"""

from nid_nerf.cli.export_mesh import entrypoint

if __name__ == "__main__":
    entrypoint()
