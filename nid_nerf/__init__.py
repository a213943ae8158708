"""nid-nerf: Neural Implicit Dictionary fields and residual ray sampling for nerfstudio."""

from nid_nerf.errors import NIDInputError, install_excepthook

install_excepthook()

__all__ = ["NIDInputError"]
__version__ = "0.1.0"
