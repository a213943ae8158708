"""Dataparsers: single scenes (``nid-scene``) and scene collections (``nid-collection``)."""

from nid_nerf.dataparsers.collection import NIDCollectionDataParser, NIDCollectionDataParserConfig
from nid_nerf.dataparsers.outputs import SCENE_INDEX
from nid_nerf.dataparsers.scene import NIDSceneDataParser, NIDSceneDataParserConfig

__all__ = [
    "SCENE_INDEX",
    "NIDCollectionDataParser",
    "NIDCollectionDataParserConfig",
    "NIDSceneDataParser",
    "NIDSceneDataParserConfig",
]
