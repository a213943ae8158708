#!/usr/bin/env python
"""Category benchmark (issue #13): held-out ShapeNet objects against scratch; nid_nerf/benchmarks/categories.py."""

from nid_nerf.benchmarks.categories import main

if __name__ == "__main__":
    main()
