#!/usr/bin/env python
"""Export dictionary.pt from a nid-dict run (also written automatically with every checkpoint).

    python scripts/export_dictionary.py --load-config outputs/.../nid-dict/<run>/config.yml [--output dict.pt]
"""

from nid_nerf.cli.export_dictionary import entrypoint

if __name__ == "__main__":
    entrypoint()
