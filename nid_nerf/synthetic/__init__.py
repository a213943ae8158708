"""Data synthesis: render meshes and procedural shape families into posed nerfstudio scenes."""
