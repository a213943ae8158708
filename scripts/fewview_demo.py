#!/usr/bin/env python
"""The main job: pretrain a dictionary, solve a held-out scene from 3 views; see nid_nerf/benchmarks/fewview_demo.py.

    python scripts/fewview_demo.py                  # defaults: about 10 minutes on 2 CPU cores
    python scripts/fewview_demo.py --dict-steps 3000 --count 40   # a better dictionary, longer
"""

from nid_nerf.benchmarks.fewview_demo import main

if __name__ == "__main__":
    main()
