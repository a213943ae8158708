#!/usr/bin/env python
"""Render a folder of meshes, or a procedural shape family, into posed nerfstudio scenes.

    python scripts/render_collection.py --meshes DIR --output OUT [--views-train 50 --views-test 10 \
        --resolution 64 --seed 0 --workers N]
    python scripts/render_collection.py --family chairs --count 100 --output OUT

Same as the ``nid-render-collection`` console script; see ``--help``.
"""

from nid_nerf.cli.render_collection import entrypoint

if __name__ == "__main__":
    entrypoint()
