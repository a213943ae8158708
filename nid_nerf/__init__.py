"""nid-nerf: Neural Implicit Dictionary fields and residual ray sampling for nerfstudio.

Importing the package (ns-train imports every installed plugin) has no side effects: the one-line
error printer for :class:`NIDInputError` is installed by nid-nerf's own commands and when a nid-nerf
method starts training (``nid_nerf.engine.nerfstudio_patches``).
"""

from nid_nerf.errors import NIDInputError

__all__ = ["NIDInputError"]
__version__ = "0.1.0"
