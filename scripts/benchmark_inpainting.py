#!/usr/bin/env python
"""Inpainting benchmark (issue #4, occlusion): hidden training pixels; see nid_nerf/benchmarks/inpainting.py."""

from nid_nerf.benchmarks.inpainting import main

if __name__ == "__main__":
    main()
