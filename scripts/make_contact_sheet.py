#!/usr/bin/env python
"""Contact sheet of rendered collections; see nid_nerf/benchmarks/contact_sheet.py.

    python scripts/make_contact_sheet.py blobs=COLL_A classic=COLL_B chairs=COLL_C ... \
--output docs/collections_contact_sheet.png
"""

from nid_nerf.benchmarks.contact_sheet import main

if __name__ == "__main__":
    main()
