#!/usr/bin/env python
"""Time and peak memory of mesh export at 256^3 and 512^3; see nid_nerf/benchmarks/mesh_export.py.

    python scripts/benchmark_mesh_export.py                                   # analytic only
    python scripts/benchmark_mesh_export.py --load-config outputs/.../config.yml --output docs/mesh_export_benchmark.md
"""

from nid_nerf.benchmarks.mesh_export import main

if __name__ == "__main__":
    main()
