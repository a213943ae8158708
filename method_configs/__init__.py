"""nerfstudio method specifications of nid-nerf: ``nid-field`` and ``nid-dict``."""
